//! `date` and `timestamptz` without a date library: proleptic Gregorian
//! calendar arithmetic (Howard Hinnant's days-from-civil algorithms), the
//! conversion of PostgreSQL's decoded input fields ([`super::dtparse`]) to
//! values, PostgreSQL's ISO output (`DateStyle=ISO`, `TimeZone=UTC`), and the
//! binary forms (days / microseconds since 2000-01-01, with `i32`/`i64`
//! extremes meaning `-infinity`/`infinity`).
//!
//! The range is PostgreSQL's own: dates from 4714-11-24 BC to 5874897 AD,
//! timestamps from 4714-11-24 BC to 294276 AD, printed as PostgreSQL prints
//! them (`0044-03-15 BC`, `10000-01-01`).

use std::fmt;

use super::dtparse::{decode, Decoded, DtErr, Tm};
use super::{InputSettings, ValueError};
use crate::rules::model::LogicalType;

/// Days from 1970-01-01 (Unix) to 2000-01-01 (Postgres epoch).
pub(crate) const PG_EPOCH_UNIX_DAYS: i64 = 10_957;
pub(crate) const USECS_PER_DAY: i64 = 86_400_000_000;
const USECS_PER_SEC: i64 = 1_000_000;
/// 0001-01-01 and 9999-12-31 as days since 2000-01-01.
#[cfg(test)]
pub(crate) const MIN_PG_DAYS: i64 = days_from_civil(1, 1, 1) - PG_EPOCH_UNIX_DAYS;
#[cfg(test)]
pub(crate) const MAX_PG_DAYS: i64 = days_from_civil(9999, 12, 31) - PG_EPOCH_UNIX_DAYS;
const JULIAN_MINYEAR: i64 = -4713;
const JULIAN_MAXYEAR: i64 = 5_874_898;
/// PostgreSQL's valid date range, days since 2000-01-01, end exclusive
/// (`IS_VALID_DATE`: Julian day 0 to 5874898-01-01).
const MIN_DATE_DAYS: i64 = -2_451_545;
const END_DATE_DAYS: i64 = 2_147_483_494 - 2_451_545;
/// `IS_VALID_TIMESTAMP`: 4714-11-24 00:00 BC to 294277-01-01 00:00 UTC.
const MIN_TIMESTAMP: i64 = -211_813_488_000_000_000;
const END_TIMESTAMP: i64 = 9_223_371_331_200_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date. `m` in 1..=12.
pub(crate) const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub(crate) const fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

#[cfg(test)]
fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// A date as days since 2000-01-01.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Date {
    NegInf,
    Days(i32),
    PosInf,
}

/// A timestamptz as microseconds since 2000-01-01 00:00:00 UTC.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timestamp {
    NegInf,
    Micros(i64),
    PosInf,
}

fn unsupported(ty: LogicalType, reason: &'static str) -> ValueError {
    ValueError::Unsupported { ty, reason }
}

fn binary(ty: LogicalType, reason: &'static str) -> ValueError {
    ValueError::Binary { ty, reason }
}

impl Date {
    pub(crate) fn from_pg_days(days: i32) -> Result<Date, ValueError> {
        match days {
            i32::MIN => Ok(Date::NegInf),
            i32::MAX => Ok(Date::PosInf),
            d if (MIN_DATE_DAYS..END_DATE_DAYS).contains(&i64::from(d)) => Ok(Date::Days(d)),
            _ => Err(binary(LogicalType::Date, "date out of range")),
        }
    }

    pub(crate) fn to_pg_days(self) -> i32 {
        match self {
            Date::NegInf => i32::MIN,
            Date::Days(d) => d,
            Date::PosInf => i32::MAX,
        }
    }

    /// First day of the year (`month == false`) or of the month.
    pub(crate) fn truncate(self, month: bool) -> Date {
        match self {
            Date::Days(d) => {
                let (y, m, _) = civil_from_days(i64::from(d) + PG_EPOCH_UNIX_DAYS);
                let m = if month { m } else { 1 };
                // The first representable day is 4714-11-24 BC: truncating
                // inside that year or month clamps to it, so the mask of a
                // valid date is a valid date (the client may parse it).
                let first = (days_from_civil(y, m, 1) - PG_EPOCH_UNIX_DAYS).max(MIN_DATE_DAYS);
                Date::Days(first as i32)
            }
            inf => inf,
        }
    }
}

/// Redacted: values are PII.
impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Date(..)")
    }
}

/// Redacted: values are PII.
impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Timestamp(..)")
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Date::NegInf => f.write_str("-infinity"),
            Date::PosInf => f.write_str("infinity"),
            Date::Days(d) => {
                let (y, m, d) = civil_from_days(i64::from(*d) + PG_EPOCH_UNIX_DAYS);
                write!(f, "{:04}-{m:02}-{d:02}", ad_year(y))?;
                if y <= 0 {
                    f.write_str(" BC")?;
                }
                Ok(())
            }
        }
    }
}

impl Timestamp {
    pub(crate) fn from_pg_micros(us: i64) -> Result<Timestamp, ValueError> {
        match us {
            i64::MIN => Ok(Timestamp::NegInf),
            i64::MAX => Ok(Timestamp::PosInf),
            u if (MIN_TIMESTAMP..END_TIMESTAMP).contains(&u) => Ok(Timestamp::Micros(u)),
            _ => Err(binary(LogicalType::Timestamptz, "timestamp out of range")),
        }
    }

    pub(crate) fn to_pg_micros(self) -> i64 {
        match self {
            Timestamp::NegInf => i64::MIN,
            Timestamp::Micros(u) => u,
            Timestamp::PosInf => i64::MAX,
        }
    }

    /// Midnight UTC of the first day of the UTC year or month.
    pub(crate) fn truncate(self, month: bool) -> Timestamp {
        match self {
            Timestamp::Micros(us) => {
                let day = us.div_euclid(USECS_PER_DAY);
                // `day` is in the supported range, so it fits an i32.
                let day = i32::try_from(day).unwrap_or(0);
                // Clamped to the first representable instant, as for dates.
                Timestamp::Micros(
                    (i64::from(Date::Days(day).truncate(month).to_pg_days()) * USECS_PER_DAY)
                        .max(MIN_TIMESTAMP),
                )
            }
            inf => inf,
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = match self {
            Timestamp::NegInf => return f.write_str("-infinity"),
            Timestamp::PosInf => return f.write_str("infinity"),
            Timestamp::Micros(u) => *u,
        };
        let (y, m, d) = civil_from_days(us.div_euclid(USECS_PER_DAY) + PG_EPOCH_UNIX_DAYS);
        let rem = us.rem_euclid(USECS_PER_DAY);
        let secs = rem / USECS_PER_SEC;
        let frac = rem % USECS_PER_SEC;
        write!(
            f,
            "{:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            ad_year(y),
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if frac > 0 {
            let digits = format!("{frac:06}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        f.write_str("+00")?;
        if y <= 0 {
            f.write_str(" BC")?;
        }
        Ok(())
    }
}

/// The year as PostgreSQL prints it: astronomical 0 is 1 BC.
fn ad_year(y: i64) -> i64 {
    if y > 0 {
        y
    } else {
        1 - y
    }
}

fn dt_err(ty: LogicalType, e: DtErr) -> ValueError {
    match e {
        DtErr::BadFormat => ValueError::DatetimeFormat { ty },
        DtErr::FieldOverflow => overflow(ty, FIELD_OVERFLOW, false),
        DtErr::MdFieldOverflow => overflow(ty, FIELD_OVERFLOW, true),
        DtErr::TzDispOverflow => ValueError::TimeZoneDisplacement { ty },
        DtErr::Unsupported(reason) => unsupported(ty, reason),
    }
}

const FIELD_OVERFLOW: &str = "date/time field value out of range";

fn overflow(ty: LogicalType, reason: &'static str, datestyle_hint: bool) -> ValueError {
    ValueError::DatetimeOverflow {
        ty,
        reason,
        datestyle_hint,
    }
}

/// `IS_VALID_JULIAN`: the calendar range date2j is defined on.
fn valid_julian(y: i64, m: i64) -> bool {
    (y > JULIAN_MINYEAR || (y == JULIAN_MINYEAR && m >= 11))
        && (y < JULIAN_MAXYEAR || (y == JULIAN_MAXYEAR && m < 6))
}

fn pg_days(tm: &Tm) -> i64 {
    // Months and days were validated by the decoder (1..=12, 1..=31).
    days_from_civil(tm.year, tm.mon as u32, tm.mday as u32) - PG_EPOCH_UNIX_DAYS
}

/// `date_in`: any spelling PostgreSQL accepts (see [`super::dtparse`]); a
/// time of day and a zone may be present and are ignored, as there.
pub(crate) fn parse_date(input: &[u8], set: &InputSettings) -> Result<Date, ValueError> {
    let ty = LogicalType::Date;
    let tm = match decode(input, set).map_err(|e| dt_err(ty, e))? {
        Decoded::Late => return Ok(Date::PosInf),
        Decoded::Early => return Ok(Date::NegInf),
        Decoded::Epoch => return Ok(Date::Days(-PG_EPOCH_UNIX_DAYS as i32)),
        Decoded::Fields { tm, .. } => tm,
    };
    let out = || overflow(ty, "date out of range", false);
    if !valid_julian(tm.year, tm.mon) {
        return Err(out());
    }
    let days = pg_days(&tm);
    if !(MIN_DATE_DAYS..END_DATE_DAYS).contains(&days) {
        return Err(out());
    }
    Ok(Date::Days(days as i32))
}

/// `timestamptz_in`: any spelling PostgreSQL accepts, stored as the UTC
/// instant. Without a zone in the input, the session's TimeZone applies; when
/// pgveil does not know it the value is refused rather than guessed.
pub(crate) fn parse_timestamptz(
    input: &[u8],
    set: &InputSettings,
) -> Result<Timestamp, ValueError> {
    let ty = LogicalType::Timestamptz;
    let (tm, tz) = match decode(input, set).map_err(|e| dt_err(ty, e))? {
        Decoded::Late => return Ok(Timestamp::PosInf),
        Decoded::Early => return Ok(Timestamp::NegInf),
        Decoded::Epoch => return Ok(Timestamp::Micros(-PG_EPOCH_UNIX_DAYS * USECS_PER_DAY)),
        Decoded::Fields { tm, tz } => (tm, tz),
    };
    let Some(tz) = tz else {
        return Err(unsupported(
            ty,
            "a timestamptz without a UTC offset depends on the session's TimeZone, which pgveil does not know; add an offset or Z",
        ));
    };
    let out = || overflow(ty, "timestamp out of range", false);
    if !valid_julian(tm.year, tm.mon) {
        return Err(out());
    }
    let time = ((tm.hour * 60 + tm.min) * 60 + tm.sec) * USECS_PER_SEC + tm.fsec;
    let local = pg_days(&tm)
        .checked_mul(USECS_PER_DAY)
        .and_then(|d| d.checked_add(time))
        .ok_or_else(out)?;
    let utc = local.checked_sub(tz * USECS_PER_SEC).ok_or_else(out)?;
    if !(MIN_TIMESTAMP..END_TIMESTAMP).contains(&utc) {
        return Err(out());
    }
    Ok(Timestamp::Micros(utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::values::DateOrder;

    fn ts(s: &str) -> String {
        parse_timestamptz(s.as_bytes(), &InputSettings::default())
            .map(|t| t.to_string())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn civil_round_trips_and_matches_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 1, 1), PG_EPOCH_UNIX_DAYS);
        assert_eq!(
            days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28),
            2
        );
        assert_eq!(
            days_from_civil(1900, 3, 1) - days_from_civil(1900, 2, 28),
            1
        );
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(MIN_PG_DAYS, -730_119);
        for z in (MIN_PG_DAYS..=MAX_PG_DAYS).step_by(97) {
            let (y, m, d) = civil_from_days(z + PG_EPOCH_UNIX_DAYS);
            assert!(d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d) - PG_EPOCH_UNIX_DAYS, z);
        }
    }

    fn date(s: &str) -> String {
        parse_date(s.as_bytes(), &InputSettings::default())
            .map(|d| d.to_string())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn dates_accept_what_postgres_accepts() {
        // Expected values printed by PostgreSQL 15 (DateStyle ISO, MDY).
        for (input, want) in [
            (" 2024-1-5\n", "2024-01-05"),
            ("2024-02-29", "2024-02-29"),
            ("-INFINITY", "-infinity"),
            ("epoch", "1970-01-01"),
            ("1990-01-02T00:00:00.000Z", "1990-01-02"),
            ("1990-01-02 +00", "1990-01-02"),
            ("1990-01-02 23:59:59-05", "1990-01-02"),
            ("0044-03-15 BC", "0044-03-15 BC"),
            ("10000-01-01", "10000-01-01"),
            ("5874897-12-31", "5874897-12-31"),
            ("4714-11-24 BC", "4714-11-24 BC"),
            ("J2451545", "2000-01-01"),
            ("1990.360", "1990-12-26"),
            ("19900102", "1990-01-02"),
            ("Tue Jan 02 00:00:00 1990 UTC", "1990-01-02"),
            ("January 2, 1990", "1990-01-02"),
            ("2 Jan 1990", "1990-01-02"),
            ("1990-Jan-02", "1990-01-02"),
            ("1990-01-02 12:00:60.5", "1990-01-02"),
        ] {
            assert_eq!(date(input), want, "{input}");
        }
    }

    #[test]
    fn dates_refuse_what_postgres_refuses() {
        for bad in ["0000-01-01", "2023-02-29", "1990-01-02 25:00"] {
            assert!(
                date(bad).starts_with("ERR date/time field value out of range"),
                "{bad}: {}",
                date(bad)
            );
        }
        for bad in ["5874898-01-01", "4714-11-23 BC"] {
            assert_eq!(date(bad), "ERR date out of range", "{bad}");
        }
        for bad in [
            "",
            "z",
            "+infinity",
            "infinity 1990-01-02",
            "Tue 1990-01-02",
            "12:00 1990-01-02",
        ] {
            assert_eq!(date(bad), "ERR invalid input syntax for type date", "{bad}");
        }
        assert_eq!(
            date("1990-01-02 +16"),
            "ERR time zone displacement out of range"
        );
        let msg = date("1999-13-45");
        assert!(!msg.contains("1999"), "{msg}");
    }

    #[test]
    fn field_order_needs_the_datestyle() {
        for s in ["01/02/1990", "02.01.1990", "1/2/90", "90-01-02"] {
            assert!(date(s).starts_with("ERR unsupported"), "{s}: {}", date(s));
        }
        let with = |o, s: &str| {
            let set = InputSettings {
                date_order: Some(o),
                utc_offset_secs: None,
            };
            parse_date(s.as_bytes(), &set).map(|d| d.to_string())
        };
        assert_eq!(with(DateOrder::Mdy, "01/02/90"), Ok("1990-01-02".into()));
        assert_eq!(with(DateOrder::Dmy, "01/02/90"), Ok("1990-02-01".into()));
        assert_eq!(with(DateOrder::Ymd, "01/02/03"), Ok("2001-02-03".into()));
        assert_eq!(with(DateOrder::Mdy, "02.01.1990"), Ok("1990-02-01".into()));
        let e = parse_date(
            b"13/01/1990",
            &InputSettings {
                date_order: Some(DateOrder::Mdy),
                utc_offset_secs: None,
            },
        );
        assert!(e.as_ref().is_err_and(|e| e.hint().is_some()), "{e:?}");
    }

    #[test]
    fn timestamps_normalise_to_utc_like_postgres() {
        // Expected values printed by Postgres 15 with TimeZone=UTC.
        for (input, want) in [
            ("2024-01-02T03:04:05Z", "2024-01-02 03:04:05+00"),
            ("2024-01-02 03:04:05 +0530", "2024-01-01 21:34:05+00"),
            ("2024-01-02 03:04:05+5", "2024-01-01 22:04:05+00"),
            ("2024-01-02 03:04:05+15:59:59", "2024-01-01 11:04:06+00"),
            ("2024-01-02 03:04+00", "2024-01-02 03:04:00+00"),
            ("2024-01-02 3:04:05+00", "2024-01-02 03:04:05+00"),
            ("2024-01-01 24:00:00+00", "2024-01-02 00:00:00+00"),
            (
                "2024-01-02 03:04:05.1234565+00",
                "2024-01-02 03:04:05.123456+00",
            ),
            (
                "2024-01-02 03:04:05.0000015+00",
                "2024-01-02 03:04:05.000002+00",
            ),
            ("2024-01-02 03:04:05.0000005+00", "2024-01-02 03:04:05+00"),
            (
                "2024-01-02 03:04:05.12000-01:30",
                "2024-01-02 04:34:05.12+00",
            ),
            ("2016-12-31 23:59:60Z", "2017-01-01 00:00:00+00"),
            ("1999-12-31 23:59:59.9999999 UTC", "2000-01-01 00:00:00+00"),
            (" infinity ", "infinity"),
            ("epoch", "1970-01-01 00:00:00+00"),
            ("1990-01-02 12:59:60.5+00", "1990-01-02 13:00:00.5+00"),
            ("1990-01-02 256199+00", "1990-01-03 02:02:39+00"),
            ("19900102T040506Z", "1990-01-02 04:05:06+00"),
            ("1990-01-02 040506-05", "1990-01-02 09:05:06+00"),
            ("1990-01-02 12:30.5+00", "1990-01-02 00:12:30.5+00"),
            ("1990-01-02 +05:", "1990-01-01 19:00:00+00"),
            ("jan 1 1990 10:00 pm +00", "1990-01-01 22:00:00+00"),
            ("1990-01-02 12:00 am z", "1990-01-02 00:00:00+00"),
            ("0044-03-15 BC 10:00+00", "0044-03-15 10:00:00+00 BC"),
            (
                "294276-12-31 23:59:59.999999+00",
                "294276-12-31 23:59:59.999999+00",
            ),
            ("1990-01-02 allballs", "1990-01-02 00:00:00+00"),
        ] {
            assert_eq!(ts(input), want, "{input}");
        }
        for bad in [
            "2024-01-02 24:00:00.1+00",
            "2024-01-02 23:59:60.5+00",
            "1990-01-02 13:00 pm +00",
        ] {
            assert!(
                ts(bad).starts_with("ERR date/time field value out of range"),
                "{bad}: {}",
                ts(bad)
            );
        }
        for bad in ["2024-01-02 03:04:05+16", "2024-01-02 03:04:05-030405"] {
            assert_eq!(ts(bad), "ERR time zone displacement out of range", "{bad}");
        }
        assert_eq!(ts("294277-01-01 00:00:00+00"), "ERR timestamp out of range");
        for bad in [
            "2024-01-02 03:04:05",
            "2024-01-02",
            "now",
            "2024-01-02 03:04 EST",
            "2024-01-02 03:04 Europe/Paris",
        ] {
            assert!(ts(bad).starts_with("ERR unsupported"), "{bad}: {}", ts(bad));
        }
        for bad in ["1990-01-02 12:00 +05 z", "allballs 1990-01-02"] {
            assert_eq!(
                ts(bad),
                "ERR invalid input syntax for type timestamp with time zone",
                "{bad}"
            );
        }
        let utc = InputSettings::from_reported(Some("ISO, MDY"), Some("Etc/UTC"));
        let t = parse_timestamptz(b"2024-01-02 03:04:05", &utc).map(|t| t.to_string());
        assert_eq!(t, Ok("2024-01-02 03:04:05+00".into()));
        let west = InputSettings::from_reported(None, Some("Etc/GMT+5"));
        let t = parse_timestamptz(b"2024-01-02 03:04:05", &west).map(|t| t.to_string());
        assert_eq!(t, Ok("2024-01-02 08:04:05+00".into()));
        assert_eq!(
            InputSettings::from_reported(None, Some("Europe/Paris")).utc_offset_secs,
            None
        );
    }

    #[test]
    fn binary_extremes_and_range() {
        assert_eq!(Date::from_pg_days(i32::MAX), Ok(Date::PosInf));
        assert_eq!(Timestamp::from_pg_micros(i64::MIN), Ok(Timestamp::NegInf));
        assert!(Date::from_pg_days(MIN_DATE_DAYS as i32 - 1).is_err());
        assert!(Date::from_pg_days(END_DATE_DAYS as i32).is_err());
        assert!(Timestamp::from_pg_micros(END_TIMESTAMP).is_err());
        assert!(Timestamp::from_pg_micros(MIN_TIMESTAMP - 1).is_err());
        assert_eq!(
            Timestamp::from_pg_micros(END_TIMESTAMP - 1).map(|t| t.to_string()),
            Ok("294276-12-31 23:59:59.999999+00".into())
        );
        assert_eq!(
            Timestamp::from_pg_micros(MIN_TIMESTAMP).map(|t| t.to_string()),
            Ok("4714-11-24 00:00:00+00 BC".into())
        );
        assert_eq!(
            Date::from_pg_days(END_DATE_DAYS as i32 - 1).map(|t| t.to_string()),
            Ok("5874897-12-31".into())
        );
        assert_eq!(
            Timestamp::Micros(-1).to_string(),
            "1999-12-31 23:59:59.999999+00"
        );
    }

    #[test]
    fn truncation_keeps_type_and_uses_utc() {
        let t = parse_timestamptz(b"2024-05-06 01:02:03+05", &InputSettings::default())
            .map(|t| t.truncate(false).to_string());
        assert_eq!(t, Ok("2024-01-01 00:00:00+00".into()));
        let t = parse_timestamptz(b"2024-03-01 01:00:00+05", &InputSettings::default())
            .map(|t| t.truncate(true).to_string());
        assert_eq!(t, Ok("2024-02-01 00:00:00+00".into()));
        let d = parse_date(b"0001-12-31", &InputSettings::default())
            .map(|d| d.truncate(true).to_string());
        assert_eq!(d, Ok("0001-12-01".into()));
        assert_eq!(Timestamp::PosInf.truncate(true), Timestamp::PosInf);
    }
}

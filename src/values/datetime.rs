//! `date` and `timestamptz` without a date library: proleptic Gregorian
//! calendar arithmetic (Howard Hinnant's days-from-civil algorithms), the
//! strict ISO 8601 text forms the proxy accepts, and the Postgres binary forms
//! (days / microseconds since 2000-01-01, with `i32`/`i64` extremes meaning
//! `-infinity`/`infinity`).
//!
//! Supported years are 0001–9999, the range where Postgres's ISO output is
//! exactly `YYYY-MM-DD`; BC dates and five-digit years are refused rather than
//! printed differently from Postgres.

use std::fmt;

use super::{trim_pg_space, ValueError};
use crate::rules::model::LogicalType;

/// Days from 1970-01-01 (Unix) to 2000-01-01 (Postgres epoch).
pub(crate) const PG_EPOCH_UNIX_DAYS: i64 = 10_957;
pub(crate) const USECS_PER_DAY: i64 = 86_400_000_000;
const USECS_PER_SEC: i64 = 1_000_000;
/// 0001-01-01 and 9999-12-31 as days since 2000-01-01.
pub(crate) const MIN_PG_DAYS: i64 = days_from_civil(1, 1, 1) - PG_EPOCH_UNIX_DAYS;
pub(crate) const MAX_PG_DAYS: i64 = days_from_civil(9999, 12, 31) - PG_EPOCH_UNIX_DAYS;
const MIN_MICROS: i64 = MIN_PG_DAYS * USECS_PER_DAY;
const MAX_MICROS: i64 = (MAX_PG_DAYS + 1) * USECS_PER_DAY - 1;

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

fn syntax(ty: LogicalType, reason: &'static str) -> ValueError {
    ValueError::Syntax { ty, reason }
}

fn range(ty: LogicalType, reason: &'static str) -> ValueError {
    ValueError::OutOfRange { ty, reason }
}

fn unsupported(ty: LogicalType, reason: &'static str) -> ValueError {
    ValueError::Unsupported { ty, reason }
}

fn binary(ty: LogicalType, reason: &'static str) -> ValueError {
    ValueError::Binary { ty, reason }
}

impl Date {
    /// A validated date in the supported range.
    pub(crate) fn from_ymd(y: i64, m: u32, d: u32) -> Result<Date, ValueError> {
        let ty = LogicalType::Date;
        if !(1..=9999).contains(&y) {
            return Err(range(ty, "only years 0001 to 9999 are supported"));
        }
        if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
            return Err(range(ty, "date field value out of range"));
        }
        Ok(Date::Days(
            (days_from_civil(y, m, d) - PG_EPOCH_UNIX_DAYS) as i32,
        ))
    }

    pub(crate) fn from_pg_days(days: i32) -> Result<Date, ValueError> {
        match days {
            i32::MIN => Ok(Date::NegInf),
            i32::MAX => Ok(Date::PosInf),
            d if (MIN_PG_DAYS..=MAX_PG_DAYS).contains(&i64::from(d)) => Ok(Date::Days(d)),
            _ => Err(binary(
                LogicalType::Date,
                "outside the supported years 0001 to 9999",
            )),
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
                Date::Days((days_from_civil(y, m, 1) - PG_EPOCH_UNIX_DAYS) as i32)
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
                write!(f, "{y:04}-{m:02}-{d:02}")
            }
        }
    }
}

impl Timestamp {
    pub(crate) fn from_pg_micros(us: i64) -> Result<Timestamp, ValueError> {
        match us {
            i64::MIN => Ok(Timestamp::NegInf),
            i64::MAX => Ok(Timestamp::PosInf),
            u if (MIN_MICROS..=MAX_MICROS).contains(&u) => Ok(Timestamp::Micros(u)),
            _ => Err(binary(
                LogicalType::Timestamptz,
                "outside the supported years 0001 to 9999",
            )),
        }
    }

    /// Checks the supported range for a computed instant.
    fn checked(us: i64) -> Result<Timestamp, ValueError> {
        if (MIN_MICROS..=MAX_MICROS).contains(&us) {
            Ok(Timestamp::Micros(us))
        } else {
            Err(range(
                LogicalType::Timestamptz,
                "only years 0001 to 9999 (UTC) are supported",
            ))
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
                Timestamp::Micros(
                    i64::from(Date::Days(day).truncate(month).to_pg_days()) * USECS_PER_DAY,
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
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if frac > 0 {
            let digits = format!("{frac:06}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        f.write_str("+00")
    }
}

/// A tiny byte cursor for the fixed grammars below.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    /// Up to `max` ASCII digits, at least `min`.
    fn digits(&mut self, min: usize, max: usize) -> Option<(u64, usize)> {
        let n = self
            .0
            .iter()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if n < min {
            return None;
        }
        let v = self.0[..n]
            .iter()
            .fold(0u64, |a, d| a * 10 + u64::from(d - b'0'));
        self.0 = &self.0[n..];
        Some((v, n))
    }

    fn eat(&mut self, b: u8) -> bool {
        match self.0 {
            [first, rest @ ..] if *first == b => {
                self.0 = rest;
                true
            }
            _ => false,
        }
    }

    fn skip_spaces(&mut self) -> usize {
        let n = self
            .0
            .iter()
            .take_while(|b| super::is_pg_space(**b))
            .count();
        self.0 = &self.0[n..];
        n
    }
}

/// `YYYY-M[M]-D[D]`, validated.
fn ymd(c: &mut Cursor<'_>, ty: LogicalType) -> Result<i64, ValueError> {
    let syntax = || {
        syntax(
            ty,
            "expected an ISO 8601 date YYYY-MM-DD (years 0001 to 9999)",
        )
    };
    let (y, _) = c.digits(4, 4).ok_or_else(syntax)?;
    if !c.eat(b'-') {
        return Err(syntax());
    }
    let (m, _) = c.digits(1, 2).ok_or_else(syntax)?;
    if !c.eat(b'-') {
        return Err(syntax());
    }
    let (d, _) = c.digits(1, 2).ok_or_else(syntax)?;
    let date = Date::from_ymd(y as i64, m as u32, d as u32).map_err(|e| match e {
        ValueError::OutOfRange { reason, .. } => range(ty, reason),
        other => other,
    })?;
    Ok(i64::from(date.to_pg_days()))
}

fn infinity(s: &[u8]) -> Option<bool> {
    match s.to_ascii_lowercase().as_slice() {
        b"infinity" => Some(true),
        b"-infinity" => Some(false),
        _ => None,
    }
}

/// ISO `YYYY-MM-DD` with optional surrounding whitespace, or `[-]infinity`.
pub(crate) fn parse_date(input: &[u8]) -> Result<Date, ValueError> {
    let s = trim_pg_space(input);
    if let Some(pos) = infinity(s) {
        return Ok(if pos { Date::PosInf } else { Date::NegInf });
    }
    let mut c = Cursor(s);
    let days = ymd(&mut c, LogicalType::Date)?;
    if !c.0.is_empty() {
        return Err(syntax(
            LogicalType::Date,
            "expected an ISO 8601 date YYYY-MM-DD (years 0001 to 9999)",
        ));
    }
    Ok(Date::Days(days as i32))
}

/// `YYYY-MM-DD[T| ]HH:MM[:SS[.frac]][ ]offset` where offset is `Z`, `UTC`,
/// `±H[H]`, `±HHMM`, `±H[H]:MM` or `±H[H]:MM:SS`; or `[-]infinity`. The
/// fraction is rounded to microseconds, ties to even as Postgres's `rint`.
pub(crate) fn parse_timestamptz(input: &[u8]) -> Result<Timestamp, ValueError> {
    let ty = LogicalType::Timestamptz;
    let syntax = || {
        syntax(
            ty,
            "expected an ISO 8601 timestamp YYYY-MM-DD HH:MM[:SS[.ffffff]] with a UTC offset",
        )
    };
    let s = trim_pg_space(input);
    if let Some(pos) = infinity(s) {
        return Ok(if pos {
            Timestamp::PosInf
        } else {
            Timestamp::NegInf
        });
    }
    let mut c = Cursor(s);
    let days = ymd(&mut c, ty)?;
    if !(c.eat(b'T') || c.eat(b't') || c.skip_spaces() > 0) {
        return Err(if c.0.is_empty() {
            unsupported(
                ty,
                "a timestamptz needs a time and an explicit UTC offset or Z",
            )
        } else {
            syntax()
        });
    }
    let (h, _) = c.digits(1, 2).ok_or_else(syntax)?;
    if !c.eat(b':') {
        return Err(syntax());
    }
    let (mi, _) = c.digits(2, 2).ok_or_else(syntax)?;
    let (mut sec, mut frac_us) = (0u64, 0i64);
    if c.eat(b':') {
        sec = c.digits(2, 2).ok_or_else(syntax)?.0;
        if c.eat(b'.') {
            let n = c.0.iter().take_while(|b| b.is_ascii_digit()).count();
            if n == 0 {
                return Err(syntax());
            }
            frac_us = round_fraction(&c.0[..n]);
            c.0 = &c.0[n..];
        }
    }
    let range = || range(ty, "date/time field value out of range");
    // Postgres allows 24:00:00 exactly and a leap second 60 without fraction.
    let over = h == 24 && (mi > 0 || sec > 0 || frac_us > 0);
    if h > 24 || over || mi > 59 || sec > 60 || (sec == 60 && frac_us > 0) {
        return Err(range());
    }
    c.skip_spaces();
    let offset = parse_offset(&mut c, ty)?;
    c.skip_spaces();
    if !c.0.is_empty() {
        return Err(syntax());
    }
    let local = ((days * 86_400) + (h * 3600 + mi * 60 + sec) as i64) * USECS_PER_SEC + frac_us;
    Timestamp::checked(local - offset * USECS_PER_SEC)
}

/// Rounds a decimal fraction of a second to microseconds, ties to even.
fn round_fraction(digits: &[u8]) -> i64 {
    let mut us = digits
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(6)
        .fold(0i64, |a, d| a * 10 + i64::from(d - b'0'));
    let rest = digits.get(6..).unwrap_or(&[]);
    if let Some((first, tail)) = rest.split_first() {
        let above_half = *first > b'5' || (*first == b'5' && tail.iter().any(|d| *d != b'0'));
        let tie = *first == b'5' && tail.iter().all(|d| *d == b'0');
        if above_half || (tie && us % 2 == 1) {
            us += 1;
        }
    }
    us
}

/// The UTC offset in seconds (east positive).
fn parse_offset(c: &mut Cursor<'_>, ty: LogicalType) -> Result<i64, ValueError> {
    let missing = || unsupported(ty, "a timestamptz needs an explicit UTC offset or Z");
    let syntax = || syntax(ty, "invalid UTC offset");
    if c.eat(b'Z') || c.eat(b'z') {
        return Ok(0);
    }
    if c.0.len() >= 3 && c.0[..3].eq_ignore_ascii_case(b"utc") {
        c.0 = &c.0[3..];
        return Ok(0);
    }
    let sign = if c.eat(b'+') {
        1
    } else if c.eat(b'-') {
        -1
    } else {
        return Err(if c.0.is_empty() { missing() } else { syntax() });
    };
    let (first, n) = c.digits(1, 4).ok_or_else(syntax)?;
    let (h, mut m, mut s) = match n {
        1 | 2 => (first, 0, 0),
        4 => (first / 100, first % 100, 0),
        _ => return Err(syntax()),
    };
    if n <= 2 && c.eat(b':') {
        m = c.digits(2, 2).ok_or_else(syntax)?.0;
        if c.eat(b':') {
            s = c.digits(2, 2).ok_or_else(syntax)?.0;
        }
    }
    if h > 15 || m > 59 || s > 59 {
        return Err(range(ty, "time zone displacement out of range"));
    }
    Ok(sign * (h * 3600 + m * 60 + s) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> String {
        parse_timestamptz(s.as_bytes())
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

    #[test]
    fn dates_parse_strictly() {
        let d = |s: &str| parse_date(s.as_bytes()).map(|d| d.to_string());
        assert_eq!(d(" 2024-1-5\n"), Ok("2024-01-05".into()));
        assert_eq!(d("2024-02-29"), Ok("2024-02-29".into()));
        assert_eq!(d("-INFINITY"), Ok("-infinity".into()));
        assert_eq!(d("0001-01-01").map(|_| ()), Ok(()));
        assert!(matches!(
            parse_date(b"2023-02-29"),
            Err(ValueError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_date(b"0000-01-01"),
            Err(ValueError::OutOfRange { .. })
        ));
        for bad in [
            "20240105",
            "Jan 5 2024",
            "2024-01-05 x",
            "10000-01-01",
            "2024/01/05",
            "",
        ] {
            assert!(
                matches!(parse_date(bad.as_bytes()), Err(ValueError::Syntax { .. })),
                "{bad}"
            );
        }
        let msg = parse_date(b"1999-13-45")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!msg.contains("1999"), "{msg}");
    }

    #[test]
    fn timestamps_normalise_to_utc_like_postgres() {
        // Expected values printed by Postgres 15 with TimeZone=UTC.
        assert_eq!(ts("2024-01-02T03:04:05Z"), "2024-01-02 03:04:05+00");
        assert_eq!(ts("2024-01-02 03:04:05 +0530"), "2024-01-01 21:34:05+00");
        assert_eq!(ts("2024-01-02 03:04:05+5"), "2024-01-01 22:04:05+00");
        assert_eq!(ts("2024-01-02 03:04:05+15:59:59"), "2024-01-01 11:04:06+00");
        assert_eq!(ts("2024-01-02 03:04+00"), "2024-01-02 03:04:00+00");
        assert_eq!(ts("2024-01-02 3:04:05+00"), "2024-01-02 03:04:05+00");
        assert_eq!(ts("2024-01-01 24:00:00+00"), "2024-01-02 00:00:00+00");
        assert_eq!(
            ts("2024-01-02 03:04:05.1234565+00"),
            "2024-01-02 03:04:05.123456+00"
        );
        assert_eq!(
            ts("2024-01-02 03:04:05.0000015+00"),
            "2024-01-02 03:04:05.000002+00"
        );
        assert_eq!(
            ts("2024-01-02 03:04:05.0000005+00"),
            "2024-01-02 03:04:05+00"
        );
        assert_eq!(
            ts("2024-01-02 03:04:05.12000-01:30"),
            "2024-01-02 04:34:05.12+00"
        );
        assert_eq!(ts("2016-12-31 23:59:60Z"), "2017-01-01 00:00:00+00");
        assert_eq!(
            ts("1999-12-31 23:59:59.9999999 UTC"),
            "2000-01-01 00:00:00+00"
        );
        assert_eq!(ts(" infinity "), "infinity");
        for bad in [
            "2024-01-02 03:04:05+16",
            "2024-01-02 24:00:00.1+00",
            "2024-01-02 23:59:60.5+00",
            "0001-01-01 00:30:00+01",
        ] {
            assert!(
                ts(bad).starts_with("ERR value out of range"),
                "{bad}: {}",
                ts(bad)
            );
        }
        for bad in ["2024-01-02 03:04:05", "2024-01-02"] {
            assert!(ts(bad).starts_with("ERR unsupported"), "{bad}: {}", ts(bad));
        }
        for bad in [
            "2024-01-02 03:04:05-030405",
            "2024-01-02x03:04Z",
            "2024-01-02 03:4Z",
            "now",
        ] {
            assert!(
                ts(bad).starts_with("ERR invalid input syntax"),
                "{bad}: {}",
                ts(bad)
            );
        }
    }

    #[test]
    fn binary_extremes_and_range() {
        assert_eq!(Date::from_pg_days(i32::MAX), Ok(Date::PosInf));
        assert_eq!(Timestamp::from_pg_micros(i64::MIN), Ok(Timestamp::NegInf));
        assert!(Date::from_pg_days(MIN_PG_DAYS as i32 - 1).is_err());
        assert!(Timestamp::from_pg_micros(MAX_MICROS + 1).is_err());
        assert_eq!(
            Timestamp::from_pg_micros(MAX_MICROS).map(|t| t.to_string()),
            Ok("9999-12-31 23:59:59.999999+00".into())
        );
        assert_eq!(
            Timestamp::Micros(-1).to_string(),
            "1999-12-31 23:59:59.999999+00"
        );
    }

    #[test]
    fn truncation_keeps_type_and_uses_utc() {
        let t = parse_timestamptz(b"2024-05-06 01:02:03+05").map(|t| t.truncate(false).to_string());
        assert_eq!(t, Ok("2024-01-01 00:00:00+00".into()));
        let t = parse_timestamptz(b"2024-03-01 01:00:00+05").map(|t| t.truncate(true).to_string());
        assert_eq!(t, Ok("2024-02-01 00:00:00+00".into()));
        let d = parse_date(b"0001-12-31").map(|d| d.truncate(true).to_string());
        assert_eq!(d, Ok("0001-12-01".into()));
        assert_eq!(Timestamp::PosInf.truncate(true), Timestamp::PosInf);
    }
}

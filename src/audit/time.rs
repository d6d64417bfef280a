//! Record timestamps: RFC 3339 in UTC with microseconds, formatted and
//! parsed without a date library (the audit's only date arithmetic).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, UTC. Formats and parses RFC 3339
/// without a date library (days/civil conversion after H. Hinnant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

impl Timestamp {
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Saturates outside ±292,000 years instead of panicking.
    pub fn from_system_time(t: SystemTime) -> Self {
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(micros(d)),
            Err(e) => Timestamp(micros(e.duration()).saturating_neg()),
        }
    }

    /// Parses `YYYY-MM-DD[(T| )HH:MM:SS[.fraction](Z|±HH:MM)]`. A date alone
    /// means midnight UTC. Fractions beyond microseconds are truncated.
    pub fn parse(s: &str) -> Result<Self, TimeParseError> {
        let b = s.as_bytes();
        let err = || TimeParseError(s.chars().take(64).collect());
        let num = |from: usize, len: usize| -> Result<i64, TimeParseError> {
            let part = b.get(from..from + len).ok_or_else(err)?;
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(err());
            }
            Ok(part
                .iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
        };
        let expect = |at: usize, c: u8| -> Result<(), TimeParseError> {
            if b.get(at) == Some(&c) {
                Ok(())
            } else {
                Err(err())
            }
        };
        let year = num(0, 4)?;
        expect(4, b'-')?;
        let month = num(5, 2)?;
        expect(7, b'-')?;
        let day = num(8, 2)?;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(err());
        }
        let days = days_from_civil(year, month, day);
        if b.len() == 10 {
            return Ok(Timestamp(days * SECS_PER_DAY * MICROS_PER_SEC));
        }
        if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
            return Err(err());
        }
        let hour = num(11, 2)?;
        expect(13, b':')?;
        let minute = num(14, 2)?;
        expect(16, b':')?;
        let second = num(17, 2)?;
        if hour > 23 || minute > 59 || second > 60 {
            return Err(err());
        }
        // 60 is a leap second; fold it into :59 rather than reject it.
        let second = second.min(59);
        let mut pos = 19;
        let mut micros = 0i64;
        if b.get(pos) == Some(&b'.') {
            pos += 1;
            let start = pos;
            while b.get(pos).is_some_and(u8::is_ascii_digit) {
                if pos - start < 6 {
                    micros = micros * 10 + i64::from(b[pos] - b'0');
                }
                pos += 1;
            }
            if pos == start {
                return Err(err());
            }
            for _ in (pos - start)..6 {
                micros *= 10;
            }
        }
        let offset_secs = match b.get(pos) {
            Some(b'Z' | b'z') if b.len() == pos + 1 => 0,
            Some(sign @ (b'+' | b'-')) if b.len() == pos + 6 => {
                let oh = num(pos + 1, 2)?;
                expect(pos + 3, b':')?;
                let om = num(pos + 4, 2)?;
                if oh > 23 || om > 59 {
                    return Err(err());
                }
                let off = oh * 3600 + om * 60;
                if *sign == b'+' {
                    off
                } else {
                    -off
                }
            }
            _ => return Err(err()),
        };
        let secs = days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset_secs;
        Ok(Timestamp(secs * MICROS_PER_SEC + micros))
    }
}

impl fmt::Display for Timestamp {
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(MICROS_PER_SEC);
        let micros = self.0.rem_euclid(MICROS_PER_SEC);
        let days = secs.div_euclid(SECS_PER_DAY);
        let sod = secs.rem_euclid(SECS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }
}

/// An unparsable timestamp (the input, cut to 64 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp: {0:?}")]
pub struct TimeParseError(pub String);

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            Timestamp(1_714_564_800_000_001).to_string(),
            "2024-05-01T12:00:00.000001Z"
        );
        // Leap day and a pre-epoch instant.
        assert_eq!(
            Timestamp(951_782_400 * MICROS_PER_SEC).to_string(),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999999Z");
        let before = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(
            Timestamp::from_system_time(before).to_string(),
            "1969-12-31T00:00:00.000000Z"
        );
    }

    #[test]
    fn parse_round_trips_every_day_over_decades() {
        // Walk days across leap years and century boundaries (1900, 2000, 2100).
        let mut t = Timestamp::parse("1899-12-25T23:59:59.123456Z").unwrap().0;
        for _ in 0..(365 * 210) {
            let s = Timestamp(t).to_string();
            assert_eq!(Timestamp::parse(&s).unwrap().0, t, "{s}");
            t += SECS_PER_DAY * MICROS_PER_SEC + 7;
        }
    }

    #[test]
    fn parse_accepts_offsets_and_dates_and_rejects_garbage() {
        let z = Timestamp::parse("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(Timestamp::parse("2024-05-01T14:00:00+02:00").unwrap(), z);
        assert_eq!(Timestamp::parse("2024-05-01 07:30:00-04:30").unwrap(), z);
        assert_eq!(
            Timestamp::parse("2024-05-01T12:00:00.5Z").unwrap().0,
            z.0 + 500_000
        );
        assert_eq!(
            Timestamp::parse("2024-05-01T12:00:00.123456789Z")
                .unwrap()
                .0,
            z.0 + 123_456
        );
        assert_eq!(
            Timestamp::parse("2024-05-01").unwrap().to_string(),
            "2024-05-01T00:00:00.000000Z"
        );
        for bad in [
            "",
            "2024-13-01",
            "2023-02-29",
            "2024-02-30T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00Zjunk",
            "2024-05-01T12:00:00+0200",
            "２０２４-05-01",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        assert!(Timestamp::parse("2024-02-29").is_ok());
    }
}

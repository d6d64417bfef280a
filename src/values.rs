//! Conversions between the wire forms of the logical types of tagged columns.
//!
//! The proxy encrypts the *canonical text form* of a value, so that two
//! spellings of one value (`007` and `7`, `TRUE` and `t`, `2024-01-02T03:04:05Z`
//! and `2024-01-02 04:04:05+01`) give the same deterministic ciphertext and
//! equality search agrees with what Postgres's `=` would say. It also has to hand
//! values back in the format the client asked for (text 0 / binary 1), so this
//! module converts both ways between text, canonical text and the Postgres
//! binary wire formats.
//!
//! Canonical forms (what [`canonical_text`] returns, and what every other
//! function here and in `mask` produces):
//!
//! | type | canonical text |
//! | --- | --- |
//! | text, varchar | the UTF-8 bytes unchanged (must be valid UTF-8 without NUL) |
//! | int4, int8 | decimal, no sign for positives, no leading zeros, `0` never negative |
//! | numeric | plain decimal with the *smallest* scale that keeps the value (see below), `NaN`, `Infinity`, `-Infinity` |
//! | bool | `t` or `f` |
//! | date | `YYYY-MM-DD`, or `infinity` / `-infinity` |
//! | timestamptz | UTC `YYYY-MM-DD HH:MM:SS[.ffffff]+00`, fraction without trailing zeros (Postgres's own output with `TimeZone=UTC`), or `infinity` / `-infinity` |
//! | bytea | `\x` followed by lower-case hex |
//!
//! **Numeric equality semantics.** Postgres keeps the scale a value was written
//! with (`1.50` prints as `1.50`) but compares by value (`1.50 = 1.5`). A
//! deterministic ciphertext can only follow one of the two, and a lookup that
//! silently misses rows is worse than a value printed with fewer zeros, so the
//! canonical form follows *value* equality: trailing fractional zeros are
//! dropped (`01.50` → `1.5`, `1.5e1` → `15`, `-0.00` → `0`). An encrypted
//! numeric column therefore reads back without trailing zeros; the binary form
//! carries the matching (minimal) `dscale`.
//!
//! **Accepted input.** Every type accepts what PostgreSQL 15's input
//! function accepts in a text parameter or literal: integers, numerics,
//! booleans and bytea with surrounding whitespace, signs, exponents, `NaN`,
//! `t`/`yes`/`on`/`1`, hex and escape bytea; dates and timestamps in all the
//! spellings of PostgreSQL's date/time input (ISO with `T` or space, SQL,
//! Postgres and German styles, month names, BC, Julian days, run-together
//! forms, numeric zones, `infinity`, `epoch`; see [`dtparse`]). Three things
//! depend on session state PostgreSQL knows and pgveil may not (see
//! [`InputSettings`]): the field order of `01/02/03`-style dates (DateStyle),
//! the zone of a timestamptz given without one (TimeZone), and zone names and
//! abbreviations other than UTC. With the setting unknown those are refused
//! (`Unsupported`), never guessed.
//!
//! Errors never contain the value: they name the type and what was wrong.

use crate::rules::model::LogicalType;

pub(crate) mod datetime;
pub(crate) mod dtparse;
pub(crate) mod numeric;

pub(crate) use datetime::{Date, Timestamp};
pub(crate) use numeric::Numeric;

/// Why a value could not be read or converted. Never carries the value itself,
/// since values are exactly the PII the proxy protects. Messages are
/// PostgreSQL's own wording for the same input, without the quoted value.
///
/// One variant per SQLSTATE class, so the error map can translate without
/// looking at messages: `Syntax` 22P02 invalid_text_representation,
/// `OutOfRange` 22003 numeric_value_out_of_range, `DatetimeFormat` 22007
/// invalid_datetime_format, `DatetimeOverflow` 22008
/// datetime_field_overflow, `TimeZoneDisplacement` 22009
/// invalid_time_zone_displacement_value, `Unsupported` 0A000
/// feature_not_supported, `Binary` 22P03 invalid_binary_representation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not a valid text form of a non-date/time type.
    #[error("invalid input syntax for type {}", pg_type_name(*ty))]
    Syntax {
        ty: LogicalType,
        /// What was wrong, for tests and debugging; not sent.
        reason: &'static str,
    },
    /// A malformed hex bytea, which PostgreSQL's `hex_decode` reports as
    /// 22023 invalid_parameter_value rather than a syntax error.
    #[error("{reason}")]
    InvalidParameter {
        ty: LogicalType,
        reason: &'static str,
    },
    /// Well-formed but outside the range of a numeric type.
    #[error("{reason}")]
    OutOfRange {
        ty: LogicalType,
        reason: &'static str,
    },
    /// Not a date/time spelling PostgreSQL accepts.
    #[error("invalid input syntax for type {}", pg_type_name(*ty))]
    DatetimeFormat { ty: LogicalType },
    /// A date/time field or the whole value is out of range. With
    /// `datestyle_hint`, PostgreSQL adds the hint [`ValueError::hint`] gives.
    #[error("{reason}")]
    DatetimeOverflow {
        ty: LogicalType,
        reason: &'static str,
        datestyle_hint: bool,
    },
    /// A numeric zone beyond ±15:59:59.
    #[error("time zone displacement out of range")]
    TimeZoneDisplacement { ty: LogicalType },
    /// A form PostgreSQL may accept but whose value pgveil cannot determine
    /// (it depends on session settings or the server's clock).
    #[error("unsupported input for type {}: {reason}", pg_type_name(*ty))]
    Unsupported {
        ty: LogicalType,
        reason: &'static str,
    },
    /// A malformed binary-format value.
    #[error("invalid binary value for type {}: {reason}", pg_type_name(*ty))]
    Binary {
        ty: LogicalType,
        reason: &'static str,
    },
}

impl ValueError {
    /// PostgreSQL's HINT for the same error, if it sends one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ValueError::DatetimeOverflow {
                datestyle_hint: true,
                ..
            } => Some("Perhaps you need a different \"datestyle\" setting."),
            _ => None,
        }
    }
}

/// The SQLSTATE PostgreSQL's input function raises for the same input, so a
/// client (and its retry logic) cannot tell pgveil's refusal from the
/// server's; `Unsupported` is pgveil's own and says so.
impl crate::error::ClientError for ValueError {
    fn sqlstate(&self) -> &'static str {
        use crate::error::sqlstate::*;
        match self {
            ValueError::Syntax { .. } => INVALID_TEXT_REPRESENTATION,
            ValueError::InvalidParameter { .. } => INVALID_PARAMETER_VALUE,
            ValueError::OutOfRange { .. } => NUMERIC_VALUE_OUT_OF_RANGE,
            ValueError::DatetimeFormat { .. } => INVALID_DATETIME_FORMAT,
            ValueError::DatetimeOverflow { .. } => DATETIME_FIELD_OVERFLOW,
            ValueError::TimeZoneDisplacement { .. } => INVALID_TIME_ZONE_DISPLACEMENT_VALUE,
            ValueError::Unsupported { .. } => FEATURE_NOT_SUPPORTED,
            ValueError::Binary { .. } => INVALID_BINARY_REPRESENTATION,
        }
    }

    fn hint(&self) -> Option<String> {
        ValueError::hint(self).map(str::to_owned)
    }
}

/// The type name PostgreSQL's input errors use.
pub fn pg_type_name(ty: LogicalType) -> &'static str {
    use LogicalType::*;
    match ty {
        Text => "text",
        Varchar => "character varying",
        Date => "date",
        Timestamptz => "timestamp with time zone",
        Int4 => "integer",
        Int8 => "bigint",
        Numeric => "numeric",
        Bool => "boolean",
        Bytea => "bytea",
    }
}

/// The order of numeric day, month and year fields (DateStyle's second part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOrder {
    Ymd,
    Dmy,
    Mdy,
}

/// The session settings PostgreSQL's date/time input depends on. `None`
/// means "not known to pgveil": inputs that depend on it are refused. The
/// server reports both in ParameterStatus (DateStyle and TimeZone are
/// GUC_REPORT), so a session can fill this in with
/// [`InputSettings::from_reported`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputSettings {
    pub date_order: Option<DateOrder>,
    /// The session TimeZone as a fixed offset, seconds east of UTC; only
    /// zones without daylight saving rules can be represented.
    pub utc_offset_secs: Option<i32>,
}

impl InputSettings {
    /// From the server's reported `DateStyle` (e.g. `ISO, MDY`) and
    /// `TimeZone` (e.g. `Etc/UTC`). Zones other than UTC and `Etc/GMT±N`
    /// stay unknown: their offset depends on the date and the tz database.
    pub fn from_reported(datestyle: Option<&str>, timezone: Option<&str>) -> Self {
        let date_order = datestyle.and_then(|d| {
            d.split(',')
                .find_map(|part| match part.trim().to_ascii_lowercase().as_str() {
                    "mdy" | "us" | "noneuropean" | "non-european" => Some(DateOrder::Mdy),
                    "dmy" | "euro" | "european" => Some(DateOrder::Dmy),
                    "ymd" => Some(DateOrder::Ymd),
                    _ => None,
                })
        });
        let utc_offset_secs = timezone.and_then(fixed_zone_offset);
        InputSettings {
            date_order,
            utc_offset_secs,
        }
    }
}

/// Seconds east of UTC for the zone names that are fixed offsets.
fn fixed_zone_offset(tz: &str) -> Option<i32> {
    let t = tz.trim().to_ascii_lowercase();
    let t = t.strip_prefix("etc/").unwrap_or(&t);
    match t {
        "utc" | "gmt" | "uct" | "universal" | "zulu" | "greenwich" | "gmt0" | "gmt+0" | "gmt-0" => {
            return Some(0)
        }
        _ => {}
    }
    // POSIX sign convention: Etc/GMT+5 is five hours *west*.
    let rest = t.strip_prefix("gmt")?;
    let (sign, hours) = match rest.as_bytes().first()? {
        b'+' => (-1, &rest[1..]),
        b'-' => (1, &rest[1..]),
        _ => return None,
    };
    let h: i32 = hours.parse().ok().filter(|h| (0..=14).contains(h))?;
    (tz.trim().to_ascii_lowercase().starts_with("etc/")).then_some(sign * h * 3600)
}

/// A parsed value of one of the logical types; the common ground of the text
/// and binary codecs and of the masks.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Text(String),
    /// int4 and int8 (the logical type says which range applies).
    Int(i64),
    Numeric(Numeric),
    Bool(bool),
    Date(Date),
    Timestamptz(Timestamp),
    Bytea(Vec<u8>),
}

/// No Debug of the payload: values are PII.
impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Value(..)")
    }
}

/// Validates a text-format value and returns its canonical text form (see the
/// module docs). Equal values give equal bytes whatever spelling was used.
/// Session settings are taken as unknown (see [`canonical_text_with`]).
pub fn canonical_text(ty: LogicalType, input: &[u8]) -> Result<Vec<u8>, ValueError> {
    canonical_text_with(ty, input, &InputSettings::default())
}

/// [`canonical_text`] under the session's known DateStyle and TimeZone.
pub fn canonical_text_with(
    ty: LogicalType,
    input: &[u8],
    settings: &InputSettings,
) -> Result<Vec<u8>, ValueError> {
    Ok(parse_text_with(ty, input, settings)?.to_text())
}

/// Converts a binary-format value (as a client sends it in Bind with format 1)
/// to canonical text.
pub fn binary_to_text(ty: LogicalType, bin: &[u8]) -> Result<Vec<u8>, ValueError> {
    Ok(parse_binary(ty, bin)?.to_text())
}

/// Whether a parameter declared as integer type `declared` is coerced into a
/// `ty` column by [`binary_param_to_text`] (and so may keep its declared type
/// in ParameterDescription, as PostgreSQL's does).
pub fn coerces_declared_integer(ty: LogicalType, declared: u32) -> bool {
    use LogicalType::{Int4, Int8, Numeric};
    matches!(
        (declared, ty),
        (21, Int4 | Int8 | Numeric) | (23, Int8 | Numeric) | (20, Int4 | Numeric)
    )
}

/// Converts a binary-format parameter the client declared with type `declared`
/// (an OID from its Parse; 0 = unspecified) to canonical text of `ty`.
///
/// Why: drivers pick the narrowest binary type for a value (psycopg 3 sends
/// `12344` as int2, SQLAlchemy too through it), and PostgreSQL coerces the
/// declared integer type to the column's on assignment. pgveil sends the
/// column a ciphertext, so it must do that coercion itself: integer widths
/// into int4, int8 and numeric columns, with PostgreSQL's range check.
/// Other declared types are read as the column's own binary form.
pub fn binary_param_to_text(
    ty: LogicalType,
    declared: u32,
    bin: &[u8],
) -> Result<Vec<u8>, ValueError> {
    const INT2: u32 = 21;
    const INT4: u32 = 23;
    const INT8: u32 = 20;
    use LogicalType::{Int4, Int8, Numeric};
    let wrong_len = ValueError::Binary {
        ty,
        reason: "wrong length for the declared integer type",
    };
    let int: i64 = match (declared, ty) {
        (INT2, Int4 | Int8 | Numeric) => <[u8; 2]>::try_from(bin)
            .map(|b| i16::from_be_bytes(b).into())
            .map_err(|_| wrong_len)?,
        (INT4, Int8 | Numeric) => <[u8; 4]>::try_from(bin)
            .map(|b| i32::from_be_bytes(b).into())
            .map_err(|_| wrong_len)?,
        (INT8, Int4 | Numeric) => <[u8; 8]>::try_from(bin)
            .map(i64::from_be_bytes)
            .map_err(|_| wrong_len)?,
        _ => return binary_to_text(ty, bin),
    };
    canonical_text(ty, int.to_string().as_bytes())
}

/// Converts a text value (normally canonical; any accepted spelling works) to
/// the Postgres binary wire format of `ty`, for clients that asked for binary
/// results.
pub fn text_to_binary(ty: LogicalType, canonical: &[u8]) -> Result<Vec<u8>, ValueError> {
    parse_text(ty, canonical)?.to_binary(ty)
}

/// The whitespace Postgres's input functions skip (C `isspace` on bytes).
pub(crate) fn is_pg_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

pub(crate) fn trim_pg_space(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_pg_space(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_pg_space(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Parses a text-format value of `ty` (session settings unknown).
pub(crate) fn parse_text(ty: LogicalType, input: &[u8]) -> Result<Value, ValueError> {
    parse_text_with(ty, input, &InputSettings::default())
}

fn parse_text_with(
    ty: LogicalType,
    input: &[u8],
    set: &InputSettings,
) -> Result<Value, ValueError> {
    use LogicalType::*;
    match ty {
        Text | Varchar => parse_utf8(ty, input).map(|s| Value::Text(s.to_owned())),
        Int4 => parse_int(ty, input, i32::MIN.into(), i32::MAX.into()).map(Value::Int),
        Int8 => parse_int(ty, input, i64::MIN, i64::MAX).map(Value::Int),
        Numeric => numeric::parse(input).map(Value::Numeric),
        Bool => parse_bool(input).map(Value::Bool),
        Date => datetime::parse_date(input, set).map(Value::Date),
        Timestamptz => datetime::parse_timestamptz(input, set).map(Value::Timestamptz),
        Bytea => parse_bytea(input).map(Value::Bytea),
    }
}

/// Parses a binary-format value of `ty`.
pub(crate) fn parse_binary(ty: LogicalType, bin: &[u8]) -> Result<Value, ValueError> {
    use LogicalType::*;
    let wrong_len = ValueError::Binary {
        ty,
        reason: "wrong length",
    };
    match ty {
        Text | Varchar => parse_utf8(ty, bin)
            .map(|s| Value::Text(s.to_owned()))
            .map_err(|_| ValueError::Binary {
                ty,
                reason: "not valid UTF-8 without NUL bytes",
            }),
        Int4 => <[u8; 4]>::try_from(bin)
            .map(|b| Value::Int(i32::from_be_bytes(b).into()))
            .map_err(|_| wrong_len),
        Int8 => <[u8; 8]>::try_from(bin)
            .map(|b| Value::Int(i64::from_be_bytes(b)))
            .map_err(|_| wrong_len),
        // Postgres's boolrecv treats any non-zero byte as true.
        Bool => match bin {
            [b] => Ok(Value::Bool(*b != 0)),
            _ => Err(wrong_len),
        },
        Numeric => numeric::from_binary(bin).map(Value::Numeric),
        Date => <[u8; 4]>::try_from(bin)
            .map_err(|_| wrong_len)
            .and_then(|b| datetime::Date::from_pg_days(i32::from_be_bytes(b)))
            .map(Value::Date),
        Timestamptz => <[u8; 8]>::try_from(bin)
            .map_err(|_| wrong_len)
            .and_then(|b| datetime::Timestamp::from_pg_micros(i64::from_be_bytes(b)))
            .map(Value::Timestamptz),
        Bytea => Ok(Value::Bytea(bin.to_vec())),
    }
}

impl Value {
    /// The canonical text form.
    pub(crate) fn to_text(&self) -> Vec<u8> {
        match self {
            Value::Text(s) => s.as_bytes().to_vec(),
            Value::Int(i) => i.to_string().into_bytes(),
            Value::Numeric(n) => n.to_string().into_bytes(),
            Value::Bool(b) => {
                if *b {
                    b"t".to_vec()
                } else {
                    b"f".to_vec()
                }
            }
            Value::Date(d) => d.to_string().into_bytes(),
            Value::Timestamptz(t) => t.to_string().into_bytes(),
            Value::Bytea(b) => {
                let mut out = Vec::with_capacity(2 + 2 * b.len());
                out.extend_from_slice(b"\\x");
                out.extend_from_slice(hex::encode(b).as_bytes());
                out
            }
        }
    }

    /// The Postgres binary wire form for `ty`; `Int` is 4 bytes for int4 and
    /// 8 for int8 (int4 values were range-checked when parsed).
    pub(crate) fn to_binary(&self, ty: LogicalType) -> Result<Vec<u8>, ValueError> {
        Ok(match self {
            Value::Text(s) => s.as_bytes().to_vec(),
            Value::Int(i) if ty == LogicalType::Int4 => {
                // Saturate rather than panic if a caller broke the invariant.
                let v = i32::try_from(*i).unwrap_or(if *i < 0 { i32::MIN } else { i32::MAX });
                v.to_be_bytes().to_vec()
            }
            Value::Int(i) => i.to_be_bytes().to_vec(),
            Value::Numeric(n) => n.to_binary()?,
            Value::Bool(b) => vec![u8::from(*b)],
            Value::Date(d) => d.to_pg_days().to_be_bytes().to_vec(),
            Value::Timestamptz(t) => t.to_pg_micros().to_be_bytes().to_vec(),
            Value::Bytea(b) => b.clone(),
        })
    }
}

fn parse_utf8(ty: LogicalType, input: &[u8]) -> Result<&str, ValueError> {
    let s = std::str::from_utf8(input).map_err(|_| ValueError::Syntax {
        ty,
        reason: "not valid UTF-8",
    })?;
    if s.contains('\0') {
        return Err(ValueError::Syntax {
            ty,
            reason: "text cannot contain NUL characters",
        });
    }
    Ok(s)
}

/// Postgres 15 `pg_strtoint32/64`: whitespace, optional sign, decimal digits.
fn parse_int(ty: LogicalType, input: &[u8], min: i64, max: i64) -> Result<i64, ValueError> {
    let s = trim_pg_space(input);
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ValueError::Syntax {
            ty,
            reason: "expected a whole number",
        });
    }
    let out_of_range = ValueError::OutOfRange {
        ty,
        reason: if ty == LogicalType::Int8 {
            "value is out of range for type bigint"
        } else {
            "value is out of range for type integer"
        },
    };
    // Accumulate negatively so that i64::MIN parses.
    let mut acc: i64 = 0;
    for d in digits {
        acc = acc
            .checked_mul(10)
            .and_then(|a| a.checked_sub(i64::from(d - b'0')))
            .ok_or(out_of_range.clone())?;
    }
    let v = if neg {
        acc
    } else {
        acc.checked_neg().ok_or(out_of_range.clone())?
    };
    if v < min || v > max {
        return Err(out_of_range);
    }
    Ok(v)
}

/// Postgres `boolin`: any unambiguous prefix of true/false/yes/no, `on`,
/// `off` (at least `of`), `1`, `0`, case-insensitive, whitespace trimmed.
fn parse_bool(input: &[u8]) -> Result<bool, ValueError> {
    let s = trim_pg_space(input).to_ascii_lowercase();
    let prefix_of = |word: &[u8], min: usize| s.len() >= min && word.starts_with(&s);
    if prefix_of(b"true", 1) || prefix_of(b"yes", 1) || s == b"on" || s == b"1" {
        Ok(true)
    } else if prefix_of(b"false", 1) || prefix_of(b"no", 1) || prefix_of(b"off", 2) || s == b"0" {
        Ok(false)
    } else {
        Err(ValueError::Syntax {
            ty: LogicalType::Bool,
            reason: "expected one of t, f, true, false, yes, no, on, off, 1, 0",
        })
    }
}

/// Postgres `byteain`: `\x` hex form (whitespace allowed between byte pairs)
/// or the traditional escape form (`\\` and `\ooo` octal escapes).
fn parse_bytea(input: &[u8]) -> Result<Vec<u8>, ValueError> {
    let syntax = |reason| ValueError::Syntax {
        ty: LogicalType::Bytea,
        reason,
    };
    let param = |reason| ValueError::InvalidParameter {
        ty: LogicalType::Bytea,
        reason,
    };
    if let Some(hex) = input.strip_prefix(b"\\x") {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut i = 0;
        while i < hex.len() {
            if matches!(hex[i], b' ' | b'\n' | b'\t' | b'\r') {
                i += 1;
                continue;
            }
            let bad_digit = param("invalid hexadecimal digit");
            let hi = hex_val(hex[i]).ok_or(bad_digit.clone())?;
            let lo = match hex.get(i + 1) {
                None => return Err(param("invalid hexadecimal data: odd number of digits")),
                Some(b) => hex_val(*b).ok_or(bad_digit)?,
            };
            out.push(hi << 4 | lo);
            i += 2;
        }
        return Ok(out);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' {
            out.push(input[i]);
            i += 1;
        } else if input.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            match input.get(i + 1..i + 4) {
                Some([a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7']) => {
                    out.push((a - b'0') << 6 | (b - b'0') << 3 | (c - b'0'));
                    i += 4;
                }
                _ => return Err(syntax("invalid escape sequence in bytea escape format")),
            }
        }
    }
    Ok(out)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use LogicalType::*;

    fn canon(ty: LogicalType, s: &str) -> Result<String, ValueError> {
        canonical_text(ty, s.as_bytes()).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    #[test]
    fn integers_follow_postgres_input_rules() {
        assert_eq!(canon(Int4, " +007\n"), Ok("7".into()));
        assert_eq!(canon(Int4, "-0"), Ok("0".into()));
        assert_eq!(canon(Int4, "-2147483648"), Ok("-2147483648".into()));
        assert_eq!(
            canon(Int8, "-9223372036854775808"),
            Ok("-9223372036854775808".into())
        );
        assert!(matches!(
            canon(Int4, "2147483648"),
            Err(ValueError::OutOfRange { .. })
        ));
        assert!(matches!(
            canon(Int8, "9223372036854775808"),
            Err(ValueError::OutOfRange { .. })
        ));
        for bad in ["", "-", "1.0", "1e3", "0x10", "1_000", "- 1", "12a"] {
            assert!(
                matches!(canon(Int4, bad), Err(ValueError::Syntax { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            text_to_binary(Int4, b"-2"),
            Ok(vec![0xff, 0xff, 0xff, 0xfe])
        );
        assert_eq!(text_to_binary(Int8, b"1"), Ok(vec![0, 0, 0, 0, 0, 0, 0, 1]));
        assert_eq!(
            binary_to_text(Int4, &[0x80, 0, 0, 0]),
            Ok(b"-2147483648".to_vec())
        );
        assert!(binary_to_text(Int4, &[0, 0, 0]).is_err());
    }

    #[test]
    fn booleans_accept_boolin_spellings() {
        for t in ["t", "TRUE", "tr", " yes ", "y", "on", "1"] {
            assert_eq!(canon(Bool, t), Ok("t".into()), "{t}");
        }
        for f in ["f", "False", "no", "n", "off", "of", "0"] {
            assert_eq!(canon(Bool, f), Ok("f".into()), "{f}");
        }
        for bad in ["o", "", "2", "truex", "yess"] {
            assert!(canon(Bool, bad).is_err(), "{bad}");
        }
        assert_eq!(binary_to_text(Bool, &[7]), Ok(b"t".to_vec()));
        assert_eq!(text_to_binary(Bool, b"f"), Ok(vec![0]));
    }

    #[test]
    fn bytea_hex_and_escape_forms() {
        assert_eq!(canon(Bytea, "\\xDEAD beef"), Ok("\\xdeadbeef".into()));
        assert_eq!(canon(Bytea, "a\\\\b\\001"), Ok("\\x615c6201".into()));
        assert_eq!(canon(Bytea, ""), Ok("\\x".into()));
        for bad in ["\\q", "\\400", "\\12"] {
            assert!(
                matches!(canon(Bytea, bad), Err(ValueError::Syntax { .. })),
                "{bad}"
            );
        }
        // hex_decode's errors are 22023, as in PostgreSQL.
        for bad in ["\\xabc", "\\xzz", "\\xa z"] {
            assert!(
                matches!(canon(Bytea, bad), Err(ValueError::InvalidParameter { .. })),
                "{bad}"
            );
        }
        assert_eq!(text_to_binary(Bytea, b"\\x00ff"), Ok(vec![0, 255]));
        assert_eq!(binary_to_text(Bytea, &[0, 255]), Ok(b"\\x00ff".to_vec()));
    }

    #[test]
    fn text_must_be_utf8_without_nul() {
        assert_eq!(
            canon(Varchar, " keep  spaces "),
            Ok(" keep  spaces ".into())
        );
        assert!(canon(Text, "a\0b").is_err());
        assert!(canonical_text(Text, &[0xff]).is_err());
        assert!(binary_to_text(Text, &[0xc3]).is_err());
        assert_eq!(
            binary_to_text(Text, "é".as_bytes()),
            Ok("é".as_bytes().to_vec())
        );
    }

    #[test]
    fn dates_and_timestamps_in_binary() {
        assert_eq!(
            text_to_binary(Date, b"2000-01-02"),
            Ok(1i32.to_be_bytes().to_vec())
        );
        assert_eq!(
            text_to_binary(Date, b"infinity"),
            Ok(i32::MAX.to_be_bytes().to_vec())
        );
        assert_eq!(
            text_to_binary(Timestamptz, b"2000-01-01 00:00:01.5+00"),
            Ok(1_500_000i64.to_be_bytes().to_vec())
        );
        assert_eq!(
            binary_to_text(Timestamptz, &(-1i64).to_be_bytes()),
            Ok(b"1999-12-31 23:59:59.999999+00".to_vec())
        );
    }

    #[test]
    fn binary_parameters_of_a_narrower_declared_integer_type() {
        assert_eq!(
            binary_param_to_text(Int4, 21, &12344i16.to_be_bytes()),
            Ok(b"12344".to_vec())
        );
        assert_eq!(
            binary_param_to_text(Numeric, 23, &(-7i32).to_be_bytes()),
            Ok(b"-7".to_vec())
        );
        assert_eq!(
            binary_param_to_text(Int8, 21, &(-1i16).to_be_bytes()),
            Ok(b"-1".to_vec())
        );
        // int8 into int4: PostgreSQL's range check, not a truncation.
        assert!(matches!(
            binary_param_to_text(Int4, 20, &(1i64 << 40).to_be_bytes()),
            Err(ValueError::OutOfRange { .. })
        ));
        assert!(matches!(
            binary_param_to_text(Int4, 21, &[0, 0, 0, 1]),
            Err(ValueError::Binary { .. })
        ));
        // Undeclared or the column's own type: its own binary form.
        assert_eq!(
            binary_param_to_text(Int4, 0, &5i32.to_be_bytes()),
            Ok(b"5".to_vec())
        );
        assert!(binary_param_to_text(Int4, 0, &5i16.to_be_bytes()).is_err());
    }

    #[test]
    fn debug_does_not_print_values() {
        let v = parse_text(Text, b"secret-value").map(|v| format!("{v:?}"));
        assert_eq!(v, Ok("Value(..)".into()));
    }

    fn any_value(ty: LogicalType) -> BoxedStrategy<String> {
        match ty {
            Text | Varchar => "[^\u{0}]{0,20}".boxed(),
            Int4 => any::<i32>().prop_map(|v| format!(" {v:+}")).boxed(),
            Int8 => any::<i64>().prop_map(|v| v.to_string()).boxed(),
            Numeric => "[+-]?0{0,3}[0-9]{0,25}\\.?[0-9]{1,20}([eE][+-]?[0-9]{1,2})?".boxed(),
            Bool => proptest::sample::select(vec!["t", "yes", "OFF", "0"]).prop_map(String::from).boxed(),
            Date => "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])".prop_filter("year 0", |s| !s.starts_with("0000")).boxed(),
            Timestamptz => "[1-9][0-9]{3}-0[1-9]-1[0-9][T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]0[0-9](:[0-5][0-9])?)".boxed(),
            Bytea => proptest::collection::vec(any::<u8>(), 0..30).prop_map(|b| format!("\\x{}", hex::encode(b))).boxed(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// canonical -> binary -> canonical is the identity, and
        /// canonicalising is idempotent, for every type.
        #[test]
        fn binary_round_trip((ty, v) in proptest::sample::select(LogicalType::ALL.to_vec())
            .prop_flat_map(|t| any_value(t).prop_map(move |v| (t, v))))
        {
            let c = canonical_text(ty, v.as_bytes());
            prop_assert!(c.is_ok(), "{} rejected", ty);
            let c = c.unwrap_or_default();
            prop_assert_eq!(canonical_text(ty, &c), Ok(c.clone()));
            let bin = text_to_binary(ty, &c);
            prop_assert!(bin.is_ok());
            prop_assert_eq!(binary_to_text(ty, &bin.unwrap_or_default()), Ok(c));
        }

        /// The calendar arithmetic agrees with chrono across 0001-9999.
        #[test]
        fn dates_agree_with_chrono(days in datetime::MIN_PG_DAYS..=datetime::MAX_PG_DAYS, secs in 0i64..86_400, us in 0i64..1_000_000) {
            let base = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
            let want = base + chrono::Duration::days(days);
            prop_assert_eq!(datetime::Date::Days(days as i32).to_string(), want.format("%Y-%m-%d").to_string());
            let micros = days * datetime::USECS_PER_DAY + secs * 1_000_000 + us;
            let dt = base.and_hms_opt(0, 0, 0).unwrap_or_default() + chrono::Duration::microseconds(micros);
            let mut want = dt.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            while want.ends_with('0') { want.pop(); }
            if want.ends_with('.') { want.pop(); }
            prop_assert_eq!(Timestamp::Micros(micros).to_string(), format!("{want}+00"));
        }

        /// Numeric text agrees with exact integer arithmetic where both apply.
        #[test]
        fn numeric_integers_agree_with_i128(v in any::<i64>(), zeros in 0usize..5) {
            let text = format!("{v}.{}", "0".repeat(zeros));
            let text = text.trim_end_matches('.');
            prop_assert_eq!(canon(Numeric, text), Ok(v.to_string()));
        }
    }
}

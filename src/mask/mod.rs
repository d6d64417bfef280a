//! Masking functions: what a restricted role sees instead of a value.
//!
//! Two implementations of the same functions, kept exactly equal:
//!
//! - [`apply`] works in the proxy, on the canonical text form of a value
//!   (see [`crate::values`]), for encrypted columns that the proxy decrypts
//!   and then masks. It returns canonical text of the same logical type, so
//!   the caller can convert it to binary with [`crate::values::text_to_binary`].
//! - [`sql_expr`] builds a Postgres expression for plaintext-at-rest columns,
//!   which the SQL rewriter puts into the masked derived table that replaces a
//!   protected table for a restricted role. Only schema-qualified `pg_catalog`
//!   functions, operators and types are used, so `search_path` tricks cannot
//!   swap in a user function. The `pg_equiv` tests compare both against a real
//!   Postgres 15.
//!
//! NULL stays NULL: [`apply_opt`] and every [`sql_expr`] map NULL to NULL.
//!
//! # The masks, per logical type
//!
//! - `redact`: a fixed placeholder that is a valid value of the type:
//!   text/varchar `[REDACTED]`, int4/int8/numeric `0`, bool `f`, date
//!   `1970-01-01`, timestamptz `1970-01-01 00:00:00+00`, bytea empty. The
//!   epoch rather than year 1 so that clients converting to local time never
//!   step into BC or out of their date range.
//! - `partial(F,L)` (text, varchar): keeps the first `F` and last `L` Unicode
//!   alphanumerics (`char::is_alphanumeric`), replaces every other
//!   alphanumeric by `*`, keeps all other characters, so length and
//!   punctuation are preserved: `123-45-6789` with `partial(0,4)` gives
//!   `***-**-6789`. A value with at most `F+L` alphanumerics is unchanged: it
//!   reveals no more than `F+L` of them either way.
//! - `email` (text, varchar): splits at the *last* `@`; keeps the first
//!   character of the local part, stars the rest of it one for one, keeps
//!   the `@` and domain: `alice@example.com` → `a****@example.com`. A value
//!   without `@` is starred entirely (every character).
//! - `hash`: HMAC-SHA256 under a per-column pseudonym key, so equal inputs
//!   give equal outputs (joins and GROUP BY still work) and nobody without
//!   the key can compute them. The message is the value's binary wire form
//!   (setting-independent: no DateStyle or TimeZone), except numeric, whose
//!   message is its canonical text (Postgres's `numeric_send` writes a
//!   meaningless dscale for infinities). Output: text/varchar `h:` followed
//!   by the first 16 hex digits (64 bits: collisions are negligible at table
//!   sizes); int4 the first 4 bytes as a non-negative integer; int8 and
//!   numeric the first 8 bytes as a non-negative integer; bool the lowest bit
//!   of the first byte; date a day between 1900-01-01 and 2099-12-31; timestamptz
//!   a whole second in the same range; bytea the 32 HMAC bytes.
//! - `year`, `month` (date, timestamptz): the first day of the year or
//!   month; a timestamptz becomes midnight UTC of that UTC day. Infinities
//!   stay infinite.
//! - `round(N)` (int4, int8, numeric): the nearest multiple of `N`, halves
//!   away from zero, computed exactly. If that multiple does not fit an int4
//!   or int8, the multiple next to it towards zero is used, so masking never
//!   fails on a valid value. numeric NaN and infinities are unchanged.

mod sql;

#[cfg(test)]
mod pg_equiv;
#[cfg(test)]
mod proptests;

pub use sql::sql_expr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::rules::model::{LogicalType, Mask};
use crate::values::{self, Timestamp, Value, ValueError};

/// Why a mask could not be applied or expressed. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    /// The rules should have refused this combination (`Mask::applies_to`).
    #[error("mask {mask} does not apply to type {ty}")]
    NotApplicable { mask: Mask, ty: LogicalType },
    /// `round(N)` with N <= 0.
    #[error("mask {mask} has an invalid parameter")]
    BadParameter { mask: Mask },
    /// The input is not a valid value of the logical type.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// `hash` without a (non-empty) pseudonym key.
    #[error("the hash mask needs a pseudonym key")]
    MissingHashKey,
    /// The pseudonym key given to [`sql_expr`] is not hex.
    #[error("the hash mask pseudonym key is not valid hex")]
    BadHashKey,
    /// No exact SQL equivalent exists for this mask with these parameters.
    #[error("mask {mask} on type {ty} has no exact SQL equivalent: {reason}")]
    NoSqlEquivalent {
        mask: Mask,
        ty: LogicalType,
        reason: &'static str,
    },
}

/// Placeholder of `redact` for text and varchar.
pub const REDACTED_TEXT: &str = "[REDACTED]";

/// `hash` dates fall in [1900-01-01, 2099-12-31].
const HASH_FIRST_YEAR: i64 = 1900;
const HASH_DAY_SPAN: u64 = 73_049;
/// Seconds from 1900-01-01 back to the Unix epoch, for the SQL form.
const UNIX_SECS_OF_1900: i64 = 2_208_988_800;

/// Applies `mask` to a non-NULL value given in (canonical) text form of `ty`
/// and returns canonical text of `ty`. `hash_key` is the column's pseudonym
/// key; it is used only by `hash`.
pub fn apply(
    mask: Mask,
    ty: LogicalType,
    canonical: &[u8],
    hash_key: &[u8],
) -> Result<Vec<u8>, MaskError> {
    let keyed = match mask {
        Mask::Hash if !hash_key.is_empty() => <Hmac<Sha256> as Mac>::new_from_slice(hash_key).ok(),
        _ => None,
    };
    apply_keyed(mask, ty, canonical, keyed.as_ref())
}

/// [`apply`] with the `hash` mask's HMAC already keyed (per column, once),
/// as the session's row transforms call it for every value.
pub fn apply_keyed(
    mask: Mask,
    ty: LogicalType,
    canonical: &[u8],
    keyed: Option<&Hmac<Sha256>>,
) -> Result<Vec<u8>, MaskError> {
    if !mask.applies_to(ty) {
        return Err(MaskError::NotApplicable { mask, ty });
    }
    let value = values::parse_text(ty, canonical)?;
    let out = match mask {
        Mask::Redact => redact(ty),
        Mask::Partial { first, last } => Value::Text(partial(text(&value), first, last)),
        Mask::Email => Value::Text(email(text(&value))),
        Mask::Hash => hash(ty, &value, keyed)?,
        Mask::Year | Mask::Month => truncate(value, mask == Mask::Month),
        Mask::Round(n) => {
            let n = u64::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or(MaskError::BadParameter { mask })?;
            round(ty, value, n)
        }
    };
    Ok(out.to_text())
}

/// [`apply`] lifted over NULL: NULL in, NULL out.
pub fn apply_opt(
    mask: Mask,
    ty: LogicalType,
    value: Option<&[u8]>,
    hash_key: &[u8],
) -> Result<Option<Vec<u8>>, MaskError> {
    value.map(|v| apply(mask, ty, v, hash_key)).transpose()
}

fn text(v: &Value) -> &str {
    match v {
        Value::Text(s) => s,
        _ => "",
    }
}

fn redact(ty: LogicalType) -> Value {
    use LogicalType::*;
    match ty {
        Text | Varchar => Value::Text(REDACTED_TEXT.to_string()),
        Int4 | Int8 => Value::Int(0),
        Numeric => Value::Numeric(values::Numeric::from_u64(0)),
        Bool => Value::Bool(false),
        Date => Value::Date(values::Date::Days(UNIX_EPOCH_PG_DAYS)),
        Timestamptz => Value::Timestamptz(Timestamp::Micros(
            i64::from(UNIX_EPOCH_PG_DAYS) * values::datetime::USECS_PER_DAY,
        )),
        Bytea => Value::Bytea(Vec::new()),
    }
}

/// 1970-01-01 as days since 2000-01-01.
const UNIX_EPOCH_PG_DAYS: i32 = -(values::datetime::PG_EPOCH_UNIX_DAYS as i32);

fn partial(s: &str, first: u32, last: u32) -> String {
    let n = s.chars().filter(|c| c.is_alphanumeric()).count() as u64;
    let (first, last) = (u64::from(first), u64::from(last));
    if n <= first + last {
        return s.to_string();
    }
    let mut k = 0u64;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !c.is_alphanumeric() {
            out.push(c);
            continue;
        }
        let keep = k < first || k >= n - last;
        k += 1;
        out.push(if keep { c } else { '*' });
    }
    out
}

fn email(s: &str) -> String {
    match s.rfind('@') {
        None => "*".repeat(s.chars().count()),
        Some(at) => {
            let (local, domain) = s.split_at(at);
            let mut out = String::with_capacity(s.len());
            let mut chars = local.chars();
            if let Some(c) = chars.next() {
                out.push(c);
                out.extend(chars.map(|_| '*'));
            }
            out.push_str(domain);
            out
        }
    }
}

/// HMAC-SHA256 of the value's hash message (see the module docs).
fn hash(ty: LogicalType, value: &Value, keyed: Option<&Hmac<Sha256>>) -> Result<Value, MaskError> {
    let mut mac = keyed.cloned().ok_or(MaskError::MissingHashKey)?;
    let message = match value {
        Value::Numeric(n) => n.to_string().into_bytes(),
        other => other.to_binary(ty)?,
    };
    mac.update(&message);
    let h: [u8; 32] = mac.finalize().into_bytes().into();
    let u32_at0 = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
    let u63 =
        u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) & (i64::MAX as u64);
    let first_day = values::datetime::days_from_civil(HASH_FIRST_YEAR, 1, 1)
        - values::datetime::PG_EPOCH_UNIX_DAYS;
    use LogicalType::*;
    Ok(match ty {
        Text | Varchar => Value::Text(format!("h:{}", hex::encode(&h[..8]))),
        Int4 => Value::Int((u32_at0 & 0x7FFF_FFFF) as i64),
        Int8 => Value::Int(u63 as i64),
        Numeric => Value::Numeric(values::Numeric::from_u64(u63)),
        Bool => Value::Bool(h[0] & 1 == 1),
        Date => Value::Date(values::Date::Days(
            (first_day + (u32_at0 % HASH_DAY_SPAN) as i64) as i32,
        )),
        Timestamptz => {
            let secs = first_day * 86_400 + (u63 % (HASH_DAY_SPAN * 86_400)) as i64;
            Value::Timestamptz(Timestamp::Micros(secs * 1_000_000))
        }
        Bytea => Value::Bytea(h.to_vec()),
    })
}

fn truncate(value: Value, month: bool) -> Value {
    match value {
        Value::Date(d) => Value::Date(d.truncate(month)),
        Value::Timestamptz(t) => Value::Timestamptz(t.truncate(month)),
        other => other,
    }
}

fn round(ty: LogicalType, value: Value, n: u64) -> Value {
    match value {
        Value::Numeric(x) => Value::Numeric(x.round_to_multiple(n)),
        Value::Int(v) => {
            let (lo, hi) = if ty == LogicalType::Int4 {
                (i128::from(i32::MIN), i128::from(i32::MAX))
            } else {
                (i128::from(i64::MIN), i128::from(i64::MAX))
            };
            let (v, n) = (i128::from(v), i128::from(n));
            let base = v - v % n;
            let r = if 2 * (v % n).abs() >= n {
                base + v.signum() * n
            } else {
                base
            };
            let out = if r < lo || r > hi { base } else { r };
            // `base` lies between 0 and v, so it always fits.
            Value::Int(i64::try_from(out).unwrap_or(0))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LogicalType::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn m(mask: Mask, ty: LogicalType, v: &str) -> String {
        match apply(mask, ty, v.as_bytes(), KEY) {
            Ok(o) => String::from_utf8_lossy(&o).into_owned(),
            Err(e) => format!("ERR {e}"),
        }
    }

    fn p(first: u32, last: u32) -> Mask {
        Mask::Partial { first, last }
    }

    #[test]
    fn issue_examples() {
        assert_eq!(m(p(0, 4), Text, "123-45-6789"), "***-**-6789");
        assert_eq!(m(p(1, 4), Text, "+1-202-555-0143"), "+1-***-***-0143");
        assert_eq!(
            m(Mask::Email, Text, "alice@example.com"),
            "a****@example.com"
        );
    }

    #[test]
    fn partial_edges() {
        assert_eq!(m(p(2, 2), Varchar, "ab"), "ab");
        assert_eq!(m(p(1, 1), Text, "abc"), "a*c");
        assert_eq!(m(p(0, 0), Text, "Ünïcödé 42!"), "******* **!");
        assert_eq!(m(p(1, 0), Text, "日本語テキスト"), "日******");
        assert_eq!(m(p(0, 2), Text, "--"), "--");
        assert_eq!(m(p(0, 2), Text, ""), "");
        assert_eq!(
            m(p(3, 3), Text, "4111 1111 1111 1111"),
            "411* **** **** *111"
        );
    }

    #[test]
    fn email_edges() {
        assert_eq!(m(Mask::Email, Text, "no-at-sign"), "**********");
        assert_eq!(m(Mask::Email, Text, "@example.com"), "@example.com");
        assert_eq!(m(Mask::Email, Text, "\"a@b\"@c.org"), "\"****@c.org");
        assert_eq!(m(Mask::Email, Varchar, "éve@x.fr"), "é**@x.fr");
        assert_eq!(m(Mask::Email, Text, ""), "");
    }

    #[test]
    fn redact_placeholders_are_valid_values() {
        for ty in LogicalType::ALL {
            let out = apply(Mask::Redact, ty, b"", KEY).err();
            // Empty input is only valid for text, varchar and bytea.
            assert_eq!(out.is_none(), matches!(ty, Text | Varchar | Bytea), "{ty}");
        }
        assert_eq!(m(Mask::Redact, Date, "2024-02-03"), "1970-01-01");
        assert_eq!(
            m(Mask::Redact, Timestamptz, "2024-02-03 00:00:00Z"),
            "1970-01-01 00:00:00+00"
        );
        assert_eq!(m(Mask::Redact, Numeric, "12.5"), "0");
        assert_eq!(m(Mask::Redact, Bool, "t"), "f");
        assert_eq!(m(Mask::Redact, Bytea, "\\x0102"), "\\x");
        assert_eq!(m(Mask::Redact, Text, "secret"), REDACTED_TEXT);
    }

    #[test]
    fn hash_is_stable_typed_and_keyed() {
        let a = m(Mask::Hash, Text, "alice@example.com");
        assert!(a.starts_with("h:") && a.len() == 18, "{a}");
        assert_eq!(a, m(Mask::Hash, Text, "alice@example.com"));
        assert_ne!(a, m(Mask::Hash, Text, "alice@example.org"));
        let other_key = apply(Mask::Hash, Text, b"alice@example.com", b"another key").ok();
        assert_ne!(Some(a.into_bytes()), other_key);
        // Spelling-independent for typed values.
        assert_eq!(m(Mask::Hash, Int4, " +007"), m(Mask::Hash, Int4, "7"));
        assert_eq!(
            m(Mask::Hash, Numeric, "1.50"),
            m(Mask::Hash, Numeric, "1.5")
        );
        assert_eq!(
            m(Mask::Hash, Timestamptz, "2024-01-02T03:04:05Z"),
            m(Mask::Hash, Timestamptz, "2024-01-02 04:04:05+01")
        );
        let d = m(Mask::Hash, Date, "2024-01-02");
        assert!(
            d.as_str() >= "1900-01-01" && d.as_str() <= "2099-12-31",
            "{d}"
        );
        assert!(!m(Mask::Hash, Int8, "5").starts_with('-'));
        assert_eq!(
            apply(Mask::Hash, Text, b"x", b""),
            Err(MaskError::MissingHashKey)
        );
        // Known answer: HMAC-SHA256(KEY, "abc"), first 8 bytes.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(KEY).map_err(|_| ());
        if let Ok(mac) = mac.as_mut() {
            mac.update(b"abc");
        }
        let want = mac.map(|m| format!("h:{}", hex::encode(&m.finalize().into_bytes()[..8])));
        assert_eq!(Ok(m(Mask::Hash, Text, "abc")), want);
    }

    #[test]
    fn truncation_and_rounding() {
        assert_eq!(m(Mask::Year, Date, "2024-05-17"), "2024-01-01");
        assert_eq!(m(Mask::Month, Date, "2024-05-17"), "2024-05-01");
        assert_eq!(
            m(Mask::Month, Timestamptz, "2024-06-01 01:00:00+02"),
            "2024-05-01 00:00:00+00"
        );
        assert_eq!(m(Mask::Year, Timestamptz, "-infinity"), "-infinity");
        // Fuzz finding: the year of the first representable day starts
        // before it; the mask clamps instead of producing an invalid date.
        assert_eq!(m(Mask::Year, Date, "4714-12-01 BC"), "4714-11-24 BC");
        assert_eq!(m(Mask::Month, Date, "4714-11-30 BC"), "4714-11-24 BC");
        assert_eq!(
            m(Mask::Year, Timestamptz, "4714-12-01 10:00:00+00 BC"),
            "4714-11-24 00:00:00+00 BC"
        );
        assert_eq!(m(Mask::Round(10), Int4, "15"), "20");
        assert_eq!(m(Mask::Round(10), Int4, "-15"), "-20");
        assert_eq!(m(Mask::Round(10), Int4, "14"), "10");
        assert_eq!(m(Mask::Round(10), Int4, "2147483647"), "2147483640");
        assert_eq!(m(Mask::Round(10), Int4, "-2147483648"), "-2147483640");
        assert_eq!(m(Mask::Round(3_000_000_000), Int4, "2147483647"), "0");
        assert_eq!(
            m(Mask::Round(10), Int8, "9223372036854775807"),
            "9223372036854775800"
        );
        assert_eq!(m(Mask::Round(100), Numeric, "149.99"), "100");
        assert_eq!(m(Mask::Round(100), Numeric, "-150"), "-200");
        assert!(m(Mask::Round(0), Int4, "1").starts_with("ERR"));
    }

    #[test]
    fn wrong_types_and_bad_input_are_errors_without_values() {
        assert_eq!(
            apply(Mask::Year, Text, b"2024-01-01", KEY),
            Err(MaskError::NotApplicable {
                mask: Mask::Year,
                ty: Text
            })
        );
        let e = apply(Mask::Round(5), Int4, b"12x34", KEY)
            .err()
            .map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| !e.contains("12")), "{e:?}");
        assert_eq!(apply_opt(Mask::Hash, Int4, None, KEY), Ok(None));
        assert_eq!(
            apply_opt(Mask::Redact, Int4, Some(b"5"), KEY),
            Ok(Some(b"0".to_vec()))
        );
    }
}

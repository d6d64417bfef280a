//! The SQL form of the masks, for plaintext-at-rest columns.
//!
//! Every function, operator and type is schema-qualified to `pg_catalog`,
//! literals are plain ASCII (non-ASCII characters are written as regex
//! escapes inside `E''` strings, so neither `client_encoding` nor
//! `standard_conforming_strings` changes their meaning), and nothing depends
//! on `DateStyle`, `TimeZone`, `IntervalStyle`, `bytea_output`, `lc_*` or the
//! database collation. The expressions need Postgres 15 (`regexp_instr`) and
//! a UTF-8 database.
//!
//! `column_sql` is evaluated several times and must be a side-effect-free
//! expression, normally a column reference. `partial` wraps it in a
//! correlated scalar subquery using the aliases `pgveil_r`, `pgveil_s` and
//! `pgveil_m`, so `column_sql` must not refer to relations of those names.
//!
//! # The `hash` key in SQL
//!
//! Postgres 15 has `pg_catalog.sha256` but no HMAC without pgcrypto, so the
//! expression computes HMAC-SHA256 itself: `H((K0 ^ opad) || H((K0 ^ ipad) || m))`
//! with the two 64-byte pad blocks as hex literals. The blocks reveal the key,
//! and SQL text can end up in server logs, `pg_stat_activity` and
//! `pg_stat_statements`. So the caller must pass a dedicated per-column
//! *pseudonym* key (derived separately from, and useless for, the encryption
//! keys), never a keyring secret. The trade-off: whoever reads the SQL of a
//! statement over a hashed plaintext column can compute that column's
//! pseudonyms, and so invert them for guessable values (phone numbers, SSNs).
//! Such a reader already has access to the server and its plaintext data, so
//! this exposes no stored value that the server does not hold already; it
//! only weakens unlinkability of the pseudonyms. Rotating the pseudonym key
//! changes every pseudonym.

use std::fmt::Write as _;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::{MaskError, HASH_DAY_SPAN, HASH_FIRST_YEAR, REDACTED_TEXT, UNIX_SECS_OF_1900};
use crate::rules::model::{LogicalType, Mask};

/// Builds a Postgres expression applying `mask` to `column_sql` (a value of
/// logical type `ty`) that gives, for every value the proxy's codec accepts,
/// exactly what [`super::apply`] gives on its canonical text, as a value of
/// `ty`, and NULL for NULL. Values outside that domain (BC dates, years after
/// 9999) are still masked, but the result is not pinned to the Rust one,
/// which refuses them. `hash_key_hex` is the hex of the column's
/// pseudonym key (the same bytes [`super::apply`] takes), needed by `hash`
/// only; see the module docs for why it may appear in SQL at all.
pub fn sql_expr(
    mask: Mask,
    ty: LogicalType,
    column_sql: &str,
    hash_key_hex: Option<&str>,
) -> Result<String, MaskError> {
    if !mask.applies_to(ty) {
        return Err(MaskError::NotApplicable { mask, ty });
    }
    let t = ty.sql_name();
    let v = format!("CAST(({column_sql}) AS pg_catalog.{t})");
    let body = match mask {
        Mask::Redact => redact(ty),
        Mask::Partial { first, last } => partial(mask, ty, &v, first, last)?,
        Mask::Email => email(&v),
        Mask::Hash => hash(ty, &v, hash_key_hex)?,
        Mask::Year | Mask::Month => truncate(ty, &v, mask == Mask::Month),
        Mask::Round(n) if n > 0 => round(ty, &v, n),
        Mask::Round(_) => return Err(MaskError::BadParameter { mask }),
    };
    Ok(format!(
        "(CASE WHEN ({column_sql}) IS NULL THEN NULL ELSE CAST(({body}) AS pg_catalog.{t}) END)"
    ))
}

/// `a OPERATOR(pg_catalog.op) b`, parenthesised.
fn op(a: &str, o: &str, b: &str) -> String {
    format!("({a} OPERATOR(pg_catalog.{o}) {b})")
}

fn redact(ty: LogicalType) -> String {
    use LogicalType::*;
    match ty {
        Text | Varchar => format!("CAST('{REDACTED_TEXT}' AS pg_catalog.text)"),
        Int4 | Int8 | Numeric => "0".to_string(),
        Bool => "false".to_string(),
        Date => "pg_catalog.make_date(1970, 1, 1)".to_string(),
        Timestamptz => "pg_catalog.to_timestamp(0)".to_string(),
        Bytea => "pg_catalog.decode('', 'hex')".to_string(),
    }
}

/// The set of `char::is_alphanumeric` code points as an ARE bracket
/// expression inside an `E''` literal. Derived from the very function the
/// Rust side uses, so both agree whatever Unicode version the standard
/// library implements, and independent of the database's locale (Postgres's
/// `[[:alnum:]]` follows `lc_ctype` and is ASCII-only under `C`).
fn alnum_class() -> &'static str {
    static CLASS: OnceLock<String> = OnceLock::new();
    CLASS.get_or_init(|| {
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            if !c.is_alphanumeric() {
                continue;
            }
            let cp = c as u32;
            match ranges.last_mut() {
                Some((_, end)) if *end + 1 == cp => *end = cp,
                _ => ranges.push((cp, cp)),
            }
        }
        let esc = |cp: u32| -> String {
            match char::from_u32(cp) {
                Some(c) if c.is_ascii_alphanumeric() => c.to_string(),
                _ if cp <= 0xFFFF => format!("\\\\u{cp:04X}"),
                _ => format!("\\\\U{cp:08X}"),
            }
        };
        let mut s = String::from("E'[");
        for (a, b) in ranges {
            s.push_str(&esc(a));
            if b > a {
                let _ = write!(s, "-{}", esc(b));
            }
        }
        s.push_str("]'");
        s
    })
}

/// Largest `F` or `L` that `partial` supports in SQL; the ARE patterns grow
/// linearly with it (Postgres caps one `{m}` bound at 255, so larger counts
/// are written as a sequence of bounded repetitions).
const MAX_PARTIAL_SQL: u32 = 1000;

/// `(?:atom){count}` for any count, as a sequence of bounds of at most 255.
fn repeated(atom: &str, mut count: u32) -> String {
    let mut out = String::new();
    while count > 0 {
        let n = count.min(255);
        let _ = write!(out, "(?:{atom}){{{n}}}");
        count -= n;
    }
    out
}

/// `partial(F,L)`: a correlated scalar subquery computes, once per value, a
/// skeleton `sk` in which every alphanumeric became `a` (one character for
/// one, so positions agree with the value). Counting the alphanumerics and
/// measuring the kept head (`^(?:[^a]*a){F}`) and tail (`(?:a[^a]*){L}$`)
/// then only needs tiny patterns on `sk`, and the starred middle is the
/// skeleton's middle with `a` replaced by `*`. `OFFSET 0` keeps the planner
/// from flattening the subqueries, which would substitute the expensive
/// skeleton expression into each of its uses.
fn partial(
    mask: Mask,
    ty: LogicalType,
    v: &str,
    first: u32,
    last: u32,
) -> Result<String, MaskError> {
    if first > MAX_PARTIAL_SQL || last > MAX_PARTIAL_SQL {
        return Err(MaskError::NoSqlEquivalent {
            mask,
            ty,
            reason: "partial(F,L) in SQL supports F and L up to 1000",
        });
    }
    let keep = u64::from(first) + u64::from(last);
    let measure = |pattern: String| {
        format!("pg_catalog.length(pg_catalog.substring(pgveil_s.sk, '{pattern}'))")
    };
    let head_len = match first {
        0 => "0".to_string(),
        f => measure(format!("^{}", repeated("[^a]*a", f))),
    };
    let tail_len = match last {
        0 => "0".to_string(),
        l => measure(format!("{}$", repeated("a[^a]*", l))),
    };
    let count = op(
        "pg_catalog.length(pgveil_s.sk)",
        "-",
        "pg_catalog.length(pg_catalog.replace(pgveil_s.sk, 'a', ''))",
    );
    let len = "pg_catalog.length(pgveil_m.sk)";
    let head = "pg_catalog.substr(pgveil_m.v, 1, pgveil_m.hl)";
    let middle = format!(
        "pg_catalog.replace(pg_catalog.substr(pgveil_m.sk, {}, {}), 'a', '*')",
        op("pgveil_m.hl", "+", "1"),
        op(&op(len, "-", "pgveil_m.hl"), "-", "pgveil_m.tl")
    );
    let tail = format!(
        "pg_catalog.substr(pgveil_m.v, {})",
        op(&op(len, "-", "pgveil_m.tl"), "+", "1")
    );
    let masked = op(&op(head, "||", &middle), "||", &tail);
    Ok(format!(
        "(SELECT CASE WHEN {} THEN pgveil_m.v ELSE {masked} END \
         FROM (SELECT pgveil_s.v, pgveil_s.sk, {count} AS n, {head_len} AS hl, {tail_len} AS tl \
         FROM (SELECT pgveil_r.v, pg_catalog.regexp_replace(pgveil_r.v, {}, 'a', 'g') AS sk \
         FROM (SELECT CAST({v} AS pg_catalog.text) AS v) AS pgveil_r OFFSET 0) AS pgveil_s OFFSET 0) AS pgveil_m)",
        op("pgveil_m.n", "<=", &keep.to_string()),
        alnum_class(),
    ))
}

/// `email`: the domain is the match of `@[^@]*$` (from the last `@`).
fn email(v: &str) -> String {
    let v = format!("CAST({v} AS pg_catalog.text)");
    let domain = format!("pg_catalog.substring({v}, '@[^@]*$')");
    let local_len = op(
        &format!("pg_catalog.length({v})"),
        "-",
        &format!("pg_catalog.length({domain})"),
    );
    let local = format!(
        "CASE WHEN {} THEN '' ELSE {} END",
        op(&local_len, "=", "0"),
        op(
            &format!("pg_catalog.left({v}, 1)"),
            "||",
            &format!("pg_catalog.repeat('*', {})", op(&local_len, "-", "1"))
        )
    );
    format!(
        "CASE WHEN {} THEN pg_catalog.repeat('*', pg_catalog.length({v})) ELSE {} END",
        op(&format!("pg_catalog.strpos({v}, '@')"), "=", "0"),
        op(&format!("({local})"), "||", &domain)
    )
}

fn hash(ty: LogicalType, v: &str, key_hex: Option<&str>) -> Result<String, MaskError> {
    let key = hex::decode(key_hex.ok_or(MaskError::MissingHashKey)?.trim())
        .map_err(|_| MaskError::BadHashKey)?;
    if key.is_empty() {
        return Err(MaskError::MissingHashKey);
    }
    let (ipad, opad) = hmac_pads(&key);
    use LogicalType::*;
    let message = match ty {
        Text | Varchar => format!("pg_catalog.convert_to({v}, 'UTF8')"),
        Bytea => v.to_string(),
        Numeric => format!(
            "pg_catalog.convert_to(CAST(pg_catalog.trim_scale({v}) AS pg_catalog.text), 'UTF8')"
        ),
        Int4 => format!("pg_catalog.int4send({v})"),
        Int8 => format!("pg_catalog.int8send({v})"),
        Bool => format!("pg_catalog.boolsend({v})"),
        Date => format!("pg_catalog.date_send({v})"),
        Timestamptz => format!("pg_catalog.timestamptz_send({v})"),
    };
    let inner = format!(
        "pg_catalog.sha256({})",
        op(
            &format!("pg_catalog.decode('{}', 'hex')", hex::encode(ipad)),
            "||",
            &message
        )
    );
    let h = format!(
        "pg_catalog.sha256({})",
        op(
            &format!("pg_catalog.decode('{}', 'hex')", hex::encode(opad)),
            "||",
            &inner
        )
    );
    // The first `hex_digits` hex digits of the HMAC as a non-negative int8.
    let as_int8 = |hex_digits: usize| {
        let zeros = "0".repeat(16 - hex_digits);
        format!(
            "CAST(CAST(('x{zeros}' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.encode({h}, 'hex'), {hex_digits})) \
             AS pg_catalog.bit(64)) AS pg_catalog.int8)"
        )
    };
    let u63 = || op(&as_int8(16), "&", &i64::MAX.to_string());
    Ok(match ty {
        Text | Varchar => op(
            "CAST('h:' AS pg_catalog.text)",
            "||",
            &format!("pg_catalog.left(pg_catalog.encode({h}, 'hex'), 16)"),
        ),
        Int4 => op(&as_int8(8), "&", "2147483647"),
        Int8 | Numeric => u63(),
        Bool => op(
            &op(&format!("pg_catalog.get_byte({h}, 0)"), "&", "1"),
            "=",
            "1",
        ),
        Date => op(
            &format!("pg_catalog.make_date({HASH_FIRST_YEAR}, 1, 1)"),
            "+",
            &format!(
                "CAST({} AS pg_catalog.int4)",
                op(&as_int8(8), "%", &HASH_DAY_SPAN.to_string())
            ),
        ),
        Timestamptz => format!(
            "pg_catalog.to_timestamp(CAST({} AS pg_catalog.float8))",
            op(
                &op(&u63(), "%", &(HASH_DAY_SPAN * 86_400).to_string()),
                "-",
                &UNIX_SECS_OF_1900.to_string()
            )
        ),
        Bytea => h,
    })
}

/// The HMAC-SHA256 inner and outer pad blocks of `key` (RFC 2104).
pub(super) fn hmac_pads(key: &[u8]) -> ([u8; 64], [u8; 64]) {
    let mut k0 = [0u8; 64];
    if key.len() > 64 {
        k0[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k0[..key.len()].copy_from_slice(key);
    }
    (k0.map(|b| b ^ 0x36), k0.map(|b| b ^ 0x5c))
}

fn truncate(ty: LogicalType, v: &str, month: bool) -> String {
    let unit = if month { "month" } else { "year" };
    if ty == LogicalType::Date {
        format!("pg_catalog.date_trunc('{unit}', CAST({v} AS pg_catalog.timestamp))")
    } else {
        format!("pg_catalog.date_trunc('{unit}', {v}, 'UTC')")
    }
}

/// `round(N)` with exact numeric arithmetic: `mod` is exact where `x / N`
/// would round the quotient to a limited scale.
fn round(ty: LogicalType, v: &str, n: i64) -> String {
    let x = format!("CAST({v} AS pg_catalog.numeric)");
    let n = format!("CAST('{n}' AS pg_catalog.numeric)");
    let m = format!("pg_catalog.mod({x}, {n})");
    let base = op(&x, "-", &m);
    let up = op(&op(&format!("pg_catalog.abs({m})"), "*", "2"), ">=", &n);
    let r = op(
        &base,
        "+",
        &format!(
            "CASE WHEN {up} THEN {} ELSE 0 END",
            op(&format!("pg_catalog.sign({x})"), "*", &n)
        ),
    );
    let (lo, hi) = match ty {
        LogicalType::Int4 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        LogicalType::Int8 => (i64::MIN, i64::MAX),
        _ => {
            let special = format!(
                "{} OR {}",
                op(&x, "=", "CAST('NaN' AS pg_catalog.numeric)"),
                op(
                    &format!("pg_catalog.abs({x})"),
                    "=",
                    "CAST('Infinity' AS pg_catalog.numeric)"
                )
            );
            return format!("CASE WHEN {special} THEN {x} ELSE pg_catalog.trim_scale({r}) END");
        }
    };
    let out_of_range = format!(
        "{} OR {}",
        op(&r, "<", &format!("CAST('{lo}' AS pg_catalog.numeric)")),
        op(&r, ">", &format!("CAST('{hi}' AS pg_catalog.numeric)"))
    );
    format!("CASE WHEN {out_of_range} THEN {base} ELSE {r} END")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};

    #[test]
    fn pads_reproduce_hmac() {
        for key in [&b"k"[..], &[7u8; 64][..], &[9u8; 100][..]] {
            let (ipad, opad) = hmac_pads(key);
            let mut inner = Sha256::new();
            inner.update(ipad);
            inner.update(b"message");
            let mut outer = Sha256::new();
            outer.update(opad);
            outer.update(inner.finalize());
            let manual = outer.finalize().to_vec();
            let lib = <Hmac<Sha256> as Mac>::new_from_slice(key).map(|mut m| {
                m.update(b"message");
                m.finalize().into_bytes().to_vec()
            });
            assert_eq!(lib.ok(), Some(manual));
        }
    }

    /// Every identifier that is followed by `(` must be `pg_catalog.`-qualified
    /// or SQL syntax; every operator must go through OPERATOR(pg_catalog.x).
    #[test]
    fn only_qualified_functions_and_operators() {
        let masks = [
            Mask::Redact,
            Mask::Partial { first: 1, last: 2 },
            Mask::Partial { first: 0, last: 0 },
            Mask::Email,
            Mask::Hash,
            Mask::Year,
            Mask::Month,
            Mask::Round(10),
        ];
        let syntax = [
            "CASE", "CAST", "AS", "OPERATOR", "THEN", "ELSE", "SELECT", "FROM", "IN", "bit",
        ];
        for ty in LogicalType::ALL {
            for mask in masks.iter().filter(|m| m.applies_to(ty)) {
                let sql = sql_expr(*mask, ty, "c.col", Some("00ff")).unwrap_or_default();
                assert!(!sql.is_empty(), "{mask} {ty}");
                // Strip string literals, then look at the words before '('.
                let mut plain = String::new();
                let mut in_str = false;
                for ch in sql.chars() {
                    if ch == '\'' {
                        in_str = !in_str;
                    } else if !in_str {
                        plain.push(ch);
                    }
                }
                let bytes = plain.as_bytes();
                for (i, _) in plain.match_indices('(') {
                    let word: String = plain[..i]
                        .chars()
                        .rev()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    let ok = word.is_empty()
                        || word.starts_with("pg_catalog.")
                        || syntax.contains(&word.as_str())
                        || word == "E";
                    assert!(ok, "{mask} {ty}: unqualified call {word}");
                }
                let is_op = |c: &u8| b"+-*/%<>=|&!~^#@".contains(c);
                for (i, c) in bytes.iter().enumerate() {
                    // The start of each run of operator characters.
                    if is_op(c) && (i == 0 || !is_op(&bytes[i - 1])) {
                        let before = &plain[..i];
                        assert!(
                            before.ends_with("OPERATOR(pg_catalog."),
                            "{mask} {ty}: bare operator"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(
            sql_expr(Mask::Hash, LogicalType::Text, "c", None),
            Err(MaskError::MissingHashKey)
        );
        assert_eq!(
            sql_expr(Mask::Hash, LogicalType::Text, "c", Some("zz")),
            Err(MaskError::BadHashKey)
        );
        assert!(matches!(
            sql_expr(
                Mask::Partial {
                    first: 1001,
                    last: 1
                },
                LogicalType::Text,
                "c",
                None
            ),
            Err(MaskError::NoSqlEquivalent { .. })
        ));
        assert!(matches!(
            sql_expr(Mask::Email, LogicalType::Int4, "c", None),
            Err(MaskError::NotApplicable { .. })
        ));
    }

    #[test]
    fn alnum_class_is_compact_ascii() {
        let c = alnum_class();
        assert!(c.is_ascii());
        assert!(c.starts_with("E'[0-9A-Za-z"), "{}", &c[..20]);
        assert!(c.len() < 20_000, "{}", c.len());
    }
}

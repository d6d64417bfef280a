//! `numeric`: text parsing as Postgres 15 accepts it, canonical output with
//! value-equality semantics (see the parent module), the NUMERIC binary wire
//! format, and exact rounding to a multiple for the `round(N)` mask.
//!
//! Values are kept as decimal digit strings, never as floats: a numeric may
//! have up to 131072 digits before the point and 16383 after, and any
//! approximation would break deterministic equality.

use std::fmt;

use super::{trim_pg_space, ValueError};
use crate::rules::model::LogicalType;

/// Postgres limits: digits before the decimal point, and display scale.
const MAX_INT_DIGITS: i64 = 131_072;
const MAX_DSCALE: i64 = 0x3FFF;

const SIGN_POS: u16 = 0x0000;
const SIGN_NEG: u16 = 0x4000;
const SIGN_NAN: u16 = 0xC000;
const SIGN_PINF: u16 = 0xD000;
const SIGN_NINF: u16 = 0xF000;

/// A numeric value in normalised form.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Numeric {
    NaN,
    PosInf,
    NegInf,
    /// `(-1)^neg × coef × 10^-scale`. `coef` holds ASCII digits without
    /// leading zeros (empty means zero); when `scale > 0` its last digit is
    /// not `0`. Zero is never negative and has scale 0.
    Finite {
        neg: bool,
        coef: Vec<u8>,
        scale: u32,
    },
}

fn syntax(reason: &'static str) -> ValueError {
    ValueError::Syntax {
        ty: LogicalType::Numeric,
        reason,
    }
}

fn overflow() -> ValueError {
    ValueError::OutOfRange {
        ty: LogicalType::Numeric,
        reason: "value overflows numeric format",
    }
}

fn bad_binary(reason: &'static str) -> ValueError {
    ValueError::Binary {
        ty: LogicalType::Numeric,
        reason,
    }
}

impl Numeric {
    /// Builds a normalised finite value from raw parts; `coef` may have
    /// leading zeros and trailing fractional zeros.
    fn finite(neg: bool, mut coef: Vec<u8>, mut scale: u32) -> Numeric {
        while scale > 0 && coef.last() == Some(&b'0') {
            coef.pop();
            scale -= 1;
        }
        let lead = coef.iter().take_while(|d| **d == b'0').count();
        coef.drain(..lead);
        if coef.is_empty() {
            return Numeric::Finite {
                neg: false,
                coef,
                scale: 0,
            };
        }
        Numeric::Finite { neg, coef, scale }
    }

    /// A whole number, for the hash mask.
    pub(crate) fn from_u64(v: u64) -> Numeric {
        Numeric::finite(false, v.to_string().into_bytes(), 0)
    }

    /// The NUMERIC binary wire format: ndigits, weight, sign, dscale (each
    /// 16 bits) then base-10000 digits, stripped of leading and trailing zero
    /// digits the way Postgres's `make_result` strips them.
    pub(crate) fn to_binary(&self) -> Result<Vec<u8>, ValueError> {
        let (neg, coef, scale) = match self {
            Numeric::NaN => return Ok(header(0, 0, SIGN_NAN, 0)),
            Numeric::PosInf => return Ok(header(0, 0, SIGN_PINF, 0)),
            Numeric::NegInf => return Ok(header(0, 0, SIGN_NINF, 0)),
            Numeric::Finite { neg, coef, scale } => (*neg, coef, *scale as usize),
        };
        let (int, frac): (&[u8], Vec<u8>) = if coef.len() > scale {
            let (i, f) = coef.split_at(coef.len() - scale);
            (i, f.to_vec())
        } else {
            let mut f = vec![b'0'; scale - coef.len()];
            f.extend_from_slice(coef);
            (&[], f)
        };
        let mut padded = vec![b'0'; (4 - int.len() % 4) % 4];
        padded.extend_from_slice(int);
        let int_groups = padded.len() / 4;
        padded.extend_from_slice(&frac);
        padded.resize(padded.len().div_ceil(4) * 4, b'0');
        let mut groups: Vec<u16> = padded
            .chunks(4)
            .map(|c| c.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0')))
            .collect();
        let mut weight = int_groups as i64 - 1;
        let lead = groups.iter().take_while(|g| **g == 0).count();
        groups.drain(..lead);
        weight -= lead as i64;
        while groups.last() == Some(&0) {
            groups.pop();
        }
        let sign = if neg { SIGN_NEG } else { SIGN_POS };
        if groups.is_empty() {
            return Ok(header(0, 0, SIGN_POS, scale as u16));
        }
        let ndigits = i16::try_from(groups.len()).map_err(|_| overflow())?;
        let weight = i16::try_from(weight).map_err(|_| overflow())?;
        let mut out = header(ndigits, weight, sign, scale as u16);
        for g in groups {
            out.extend_from_slice(&g.to_be_bytes());
        }
        Ok(out)
    }

    /// Rounds to the nearest multiple of `n` (> 0), halves away from zero.
    /// NaN and infinities are returned unchanged. Exact for any precision.
    pub(crate) fn round_to_multiple(&self, n: u64) -> Numeric {
        let (neg, coef, scale) = match self {
            Numeric::Finite { neg, coef, scale } => (*neg, coef, *scale as usize),
            other => return other.clone(),
        };
        let n = n.max(1);
        let int_len = coef.len().saturating_sub(scale);
        let int = &coef[..int_len];
        // First fractional digit: it is a padding zero when the coefficient
        // is shorter than the scale.
        let first_frac = if scale > 0 && coef.len() >= scale {
            coef[int_len]
        } else {
            b'0'
        };
        let r = int.iter().fold(0u128, |acc, d| {
            (acc * 10 + u128::from(d - b'0')) % u128::from(n)
        });
        let (r2, n) = (2 * r, u128::from(n));
        // |v| = q*n + r + f with 0 <= f < 1; round up iff r + f >= n/2.
        let up = r2 >= n || (r2 + 1 == n && first_frac >= b'5');
        let mut mag = sub_small(int, r);
        if up {
            mag = add_small(&mag, n);
        }
        Numeric::finite(neg, mag, 0)
    }
}

fn header(ndigits: i16, weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    out
}

/// `digits - small` for a decimal digit string with `digits >= small`.
fn sub_small(digits: &[u8], small: u128) -> Vec<u8> {
    let mut out = digits.to_vec();
    let mut borrow = small;
    for d in out.iter_mut().rev() {
        if borrow == 0 {
            break;
        }
        let cur = u128::from(*d - b'0');
        let sub = borrow % 10;
        borrow /= 10;
        if cur >= sub {
            *d = b'0' + (cur - sub) as u8;
        } else {
            *d = b'0' + (cur + 10 - sub) as u8;
            borrow += 1;
        }
    }
    out
}

/// `digits + small` for a decimal digit string.
fn add_small(digits: &[u8], small: u128) -> Vec<u8> {
    let mut out = digits.to_vec();
    let mut carry = small;
    for d in out.iter_mut().rev() {
        if carry == 0 {
            break;
        }
        let cur = u128::from(*d - b'0') + carry;
        *d = b'0' + (cur % 10) as u8;
        carry = cur / 10;
    }
    if carry > 0 {
        let mut head = carry.to_string().into_bytes();
        head.extend_from_slice(&out);
        out = head;
    }
    out
}

/// Redacted: values are PII.
impl fmt::Debug for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Numeric(..)")
    }
}

impl fmt::Display for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (neg, coef, scale) = match self {
            Numeric::NaN => return f.write_str("NaN"),
            Numeric::PosInf => return f.write_str("Infinity"),
            Numeric::NegInf => return f.write_str("-Infinity"),
            Numeric::Finite { neg, coef, scale } => (*neg, coef, *scale as usize),
        };
        if neg {
            f.write_str("-")?;
        }
        let digits = |d: &[u8]| String::from_utf8_lossy(d).into_owned();
        if coef.len() > scale {
            let (i, fr) = coef.split_at(coef.len() - scale);
            f.write_str(&digits(i))?;
            if scale > 0 {
                write!(f, ".{}", digits(fr))?;
            }
        } else {
            f.write_str("0")?;
            if scale > 0 {
                write!(f, ".{}{}", "0".repeat(scale - coef.len()), digits(coef))?;
            }
        }
        Ok(())
    }
}

/// Parses numeric text as Postgres 15's `numeric_in` does: whitespace,
/// `NaN`, `[+-]Infinity`, `[+-]inf`, or `[+-]digits[.digits][e[+-]digits]`.
pub(crate) fn parse(input: &[u8]) -> Result<Numeric, ValueError> {
    let s = trim_pg_space(input);
    let lower = s.to_ascii_lowercase();
    match lower.as_slice() {
        b"nan" => return Ok(Numeric::NaN),
        b"infinity" | b"+infinity" | b"inf" | b"+inf" => return Ok(Numeric::PosInf),
        b"-infinity" | b"-inf" => return Ok(Numeric::NegInf),
        _ => {}
    }
    let (neg, mut rest) = match s {
        [b'-', r @ ..] => (true, r),
        [b'+', r @ ..] => (false, r),
        _ => (false, s),
    };
    let take_digits = |r: &mut &[u8]| -> Vec<u8> {
        let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
        let (d, tail) = r.split_at(n);
        *r = tail;
        d.to_vec()
    };
    let mut coef = take_digits(&mut rest);
    let mut frac_len = 0i64;
    if let [b'.', r @ ..] = rest {
        rest = r;
        let frac = take_digits(&mut rest);
        frac_len = frac.len() as i64;
        coef.extend_from_slice(&frac);
    }
    if coef.is_empty() {
        return Err(syntax("expected a number"));
    }
    let mut exp = 0i64;
    if let [b'e' | b'E', r @ ..] = rest {
        rest = r;
        let eneg = match rest {
            [b'-', r @ ..] => {
                rest = r;
                true
            }
            [b'+', r @ ..] => {
                rest = r;
                false
            }
            _ => false,
        };
        let ed = take_digits(&mut rest);
        if ed.is_empty() {
            return Err(syntax("exponent without digits"));
        }
        // Saturate: anything this large overflows below anyway.
        let mag = ed.iter().fold(0i64, |acc, d| {
            (acc * 10 + i64::from(d - b'0')).min(1_000_000_000)
        });
        exp = if eneg { -mag } else { mag };
    }
    if !rest.is_empty() {
        return Err(syntax("unexpected characters after the number"));
    }
    let scale = frac_len - exp;
    if scale > MAX_DSCALE {
        return Err(overflow());
    }
    let lead = coef.iter().take_while(|d| **d == b'0').count();
    coef.drain(..lead);
    if !coef.is_empty() && coef.len() as i64 - scale > MAX_INT_DIGITS {
        return Err(overflow());
    }
    if scale < 0 {
        if !coef.is_empty() {
            coef.resize(coef.len() + (-scale) as usize, b'0');
        }
        return Ok(Numeric::finite(neg, coef, 0));
    }
    Ok(Numeric::finite(neg, coef, scale as u32))
}

/// Reads the NUMERIC binary format. Like Postgres's `numeric_recv`, digits
/// hidden by `dscale` are truncated away; the result is then normalised.
pub(crate) fn from_binary(b: &[u8]) -> Result<Numeric, ValueError> {
    let word = |i: usize| -> Result<u16, ValueError> {
        b.get(i..i + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
            .ok_or(bad_binary("truncated"))
    };
    let ndigits = word(0)? as i16;
    let weight = i64::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = word(6)?;
    if ndigits < 0 || b.len() != 8 + 2 * ndigits as usize {
        return Err(bad_binary("length does not match the digit count"));
    }
    match sign {
        SIGN_NAN => return Ok(Numeric::NaN),
        SIGN_PINF => return Ok(Numeric::PosInf),
        SIGN_NINF => return Ok(Numeric::NegInf),
        SIGN_POS | SIGN_NEG => {}
        _ => return Err(bad_binary("invalid sign")),
    }
    if dscale > MAX_DSCALE as u16 {
        return Err(bad_binary("invalid dscale"));
    }
    let n = ndigits as usize;
    let mut coef = Vec::with_capacity(4 * n);
    for i in 0..n {
        let g = word(8 + 2 * i)?;
        if g > 9999 {
            return Err(bad_binary("digit out of range"));
        }
        coef.extend_from_slice(format!("{g:04}").as_bytes());
    }
    // Value = coef × 10^(4 × (weight - ndigits + 1)).
    let e10 = 4 * (weight - n as i64 + 1);
    let mut scale = if e10 >= 0 {
        coef.resize(coef.len() + e10 as usize, b'0');
        0
    } else {
        (-e10) as usize
    };
    let dscale = usize::from(dscale);
    if scale > dscale {
        let cut = (scale - dscale).min(coef.len());
        coef.truncate(coef.len() - cut);
        scale = dscale;
    }
    let num = Numeric::finite(sign == SIGN_NEG, coef, scale as u32);
    if let Numeric::Finite { coef, scale, .. } = &num {
        if coef.len() as i64 - i64::from(*scale) > MAX_INT_DIGITS {
            return Err(overflow());
        }
    }
    Ok(num)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        parse(s.as_bytes())
            .map(|n| n.to_string())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn text_forms_normalise_to_value() {
        for (input, want) in [
            ("01.50", "1.5"),
            ("1.5e1", "15"),
            ("1.50e1", "15"),
            ("-0.00", "0"),
            ("-0", "0"),
            (" +.5 ", "0.5"),
            ("5.", "5"),
            ("00012.3400e-2", "0.1234"),
            ("1E-3", "0.001"),
            ("-123.456", "-123.456"),
            ("1e+5", "100000"),
            ("0.000", "0"),
            ("100", "100"),
            (" nan ", "NaN"),
            ("-INF", "-Infinity"),
            ("+Infinity", "Infinity"),
        ] {
            assert_eq!(canon(input), want, "input {input:?}");
        }
    }

    #[test]
    fn invalid_text_is_rejected_without_echo() {
        for bad in [
            ".",
            "1e",
            "- 5",
            "1_000",
            "0x10",
            "+NaN",
            "infinityx",
            "",
            "1.2.3",
            "e5",
        ] {
            let err = parse(bad.as_bytes()).err();
            assert!(
                matches!(err, Some(ValueError::Syntax { .. })),
                "{bad:?} gave {err:?}"
            );
        }
        assert!(matches!(
            parse(b"1e-16384"),
            Err(ValueError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse(b"1e131072"),
            Err(ValueError::OutOfRange { .. })
        ));
        assert!(parse(b"1e131071").is_ok());
        assert!(parse(b"123e-16383").is_ok());
        let msg = parse(b"12345abc")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!msg.contains("12345"), "{msg}");
    }

    #[test]
    fn binary_matches_postgres_numeric_send() {
        // Hex captured from Postgres 15 numeric_send.
        for (text, hex) in [
            ("1.5", "000200000000000100011388"),
            ("0", "0000000000000000"),
            ("NaN", "00000000c0000000"),
            ("-12345.678", "0003000140000003000109291a7c"),
            ("10000", "00010001000000000001"),
            ("0.0001", "0001ffff000000040001"),
            ("-0.00012", "0002ffff40000005000107d0"),
        ] {
            let n = parse(text.as_bytes()).map_err(|e| e.to_string());
            let bin = n
                .clone()
                .and_then(|n| n.to_binary().map_err(|e| e.to_string()));
            assert_eq!(bin.map(hex::encode), Ok(hex.to_string()), "{text}");
            let back = hex::decode(hex).map_err(|e| e.to_string()).and_then(|b| {
                from_binary(&b)
                    .map(|n| n.to_string())
                    .map_err(|e| e.to_string())
            });
            assert_eq!(back, Ok(text.to_string()));
        }
    }

    #[test]
    fn binary_truncates_to_dscale_and_rejects_garbage() {
        // Digits 0001 2532 (1.2532) with dscale 2 read as 1.25, as
        // numeric_recv truncates digits the dscale hides.
        let b = hex::decode("0002000000000002000109e4").unwrap_or_default();
        assert_eq!(from_binary(&b).map(|n| n.to_string()), Ok("1.25".into()));
        assert!(from_binary(&[0, 1]).is_err());
        assert!(from_binary(&hex::decode("0001000000000000ffff").unwrap_or_default()).is_err());
        assert!(from_binary(&hex::decode("0000000012340000").unwrap_or_default()).is_err());
        assert!(from_binary(&hex::decode("000100000000000000").unwrap_or_default()).is_err());
        assert_eq!(
            from_binary(&hex::decode("00000000d0000020").unwrap_or_default()),
            Ok(Numeric::PosInf)
        );
    }

    #[test]
    fn rounding_is_exact_and_half_away_from_zero() {
        let r = |s: &str, n: u64| {
            parse(s.as_bytes())
                .map(|v| v.round_to_multiple(n).to_string())
                .unwrap_or_default()
        };
        assert_eq!(r("14.5", 10), "10");
        assert_eq!(r("15", 10), "20");
        assert_eq!(r("-15", 10), "-20");
        assert_eq!(r("-14.999", 10), "-10");
        assert_eq!(r("2.5", 1), "3");
        assert_eq!(r("-2.5", 1), "-3");
        assert_eq!(r("0.4", 1), "0");
        assert_eq!(r("-0.4", 1), "0");
        assert_eq!(r("0.00005", 1), "0");
        assert_eq!(r("1.49999999999999999999999", 1), "1");
        assert_eq!(r("7.5", 15), "15");
        assert_eq!(r("7.49", 15), "0");
        assert_eq!(r("22.5", 15), "30");
        assert_eq!(r("999999999999999999999.5", 1), "1000000000000000000000");
        assert_eq!(r("NaN", 10), "NaN");
        assert_eq!(r("-Infinity", 10), "-Infinity");
        assert_eq!(r("123", u64::MAX), "0");
    }
}

//! Property tests of the masks over generated values of every logical type.

use proptest::prelude::*;

use super::{apply, apply_opt};
use crate::rules::model::{LogicalType, Mask};
use crate::values::{canonical_text, datetime};

const KEY: &[u8] = b"proptest pseudonym key";

/// Canonical text of an arbitrary value of `ty`.
fn value_of(ty: LogicalType) -> BoxedStrategy<String> {
    use LogicalType::*;
    match ty {
        Text | Varchar => prop_oneof![
            any::<String>(),
            "[a-zA-Z0-9@.+ _-]{0,30}",
            "[a-z]{0,8}@[a-z]{1,8}\\.[a-z]{2,3}",
            "[0-9]{3}-[0-9]{2}-[0-9]{4}",
        ]
        .prop_map(|s: String| s.replace('\0', ""))
        .boxed(),
        Int4 => any::<i32>().prop_map(|v| v.to_string()).boxed(),
        Int8 => any::<i64>().prop_map(|v| v.to_string()).boxed(),
        Numeric => prop_oneof![
            "-?[0-9]{1,25}(\\.[0-9]{1,20})?",
            Just("NaN".to_string()),
            Just("-Infinity".to_string()),
        ]
        .boxed(),
        Bool => any::<bool>()
            .prop_map(|b| if b { "t" } else { "f" }.to_string())
            .boxed(),
        Date => (datetime::MIN_PG_DAYS as i32..=datetime::MAX_PG_DAYS as i32)
            .prop_map(|d| datetime::Date::Days(d).to_string())
            .boxed(),
        Timestamptz => (datetime::MIN_PG_DAYS * datetime::USECS_PER_DAY
            ..(datetime::MAX_PG_DAYS + 1) * datetime::USECS_PER_DAY)
            .prop_map(|u| datetime::Timestamp::Micros(u).to_string())
            .boxed(),
        Bytea => proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| format!("\\x{}", hex::encode(b)))
            .boxed(),
    }
}

fn masks() -> impl Strategy<Value = Mask> {
    prop_oneof![
        Just(Mask::Redact),
        (0u32..6, 0u32..6).prop_map(|(first, last)| Mask::Partial { first, last }),
        Just(Mask::Email),
        Just(Mask::Hash),
        Just(Mask::Year),
        Just(Mask::Month),
        prop_oneof![1i64..20, Just(1000), Just(i64::MAX)].prop_map(Mask::Round),
    ]
}

fn typed_case() -> impl Strategy<Value = (Mask, LogicalType, String)> {
    (masks(), proptest::sample::select(LogicalType::ALL.to_vec()))
        .prop_filter("mask applies", |(m, t)| m.applies_to(*t))
        .prop_flat_map(|(m, t)| value_of(t).prop_map(move |v| (m, t, v)))
}

fn run(mask: Mask, ty: LogicalType, v: &[u8]) -> Vec<u8> {
    match apply(mask, ty, v, KEY) {
        Ok(o) => o,
        Err(e) => panic!("{mask} on {ty} failed: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn output_is_canonical_value_of_the_type((mask, ty, v) in typed_case()) {
        let out = run(mask, ty, v.as_bytes());
        prop_assert_eq!(canonical_text(ty, &out), Ok(out.clone()));
        prop_assert_eq!(apply_opt(mask, ty, None, KEY), Ok(None));
        prop_assert_eq!(apply_opt(mask, ty, Some(v.as_bytes()), KEY), Ok(Some(out)));
    }

    #[test]
    fn idempotent_where_it_applies((mask, ty, v) in typed_case()) {
        prop_assume!(mask != Mask::Hash);
        let once = run(mask, ty, v.as_bytes());
        prop_assert_eq!(run(mask, ty, &once), once);
    }

    #[test]
    fn partial_reveals_at_most_f_plus_l(v in value_of(LogicalType::Text), first in 0u32..6, last in 0u32..6) {
        let out = String::from_utf8(run(Mask::Partial { first, last }, LogicalType::Text, v.as_bytes()))
            .unwrap_or_default();
        let (a, b): (Vec<char>, Vec<char>) = (v.chars().collect(), out.chars().collect());
        prop_assert_eq!(a.len(), b.len());
        let n = a.iter().filter(|c| c.is_alphanumeric()).count();
        let mut revealed = 0;
        for (x, y) in a.iter().zip(&b) {
            if x.is_alphanumeric() {
                prop_assert!(y == x || *y == '*');
                revealed += usize::from(y == x);
            } else {
                prop_assert_eq!(x, y);
            }
        }
        prop_assert!(revealed <= (first + last) as usize);
        prop_assert_eq!(revealed, n.min((first + last) as usize));
    }

    #[test]
    fn email_keeps_domain_and_one_char(v in value_of(LogicalType::Text)) {
        let out = String::from_utf8(run(Mask::Email, LogicalType::Text, v.as_bytes())).unwrap_or_default();
        prop_assert_eq!(out.chars().count(), v.chars().count());
        match v.rfind('@') {
            None => prop_assert!(out.chars().all(|c| c == '*')),
            Some(at) => {
                prop_assert_eq!(&out[out.len() - (v.len() - at)..], &v[at..]);
                prop_assert_eq!(out.chars().next(), v.chars().next());
                let local = out.chars().count() - v[at..].chars().count();
                prop_assert!(out.chars().take(local).skip(1).all(|c| c == '*'));
            }
        }
    }

    #[test]
    fn hash_is_stable_and_key_dependent((ty, v) in proptest::sample::select(vec![
        LogicalType::Text, LogicalType::Int8, LogicalType::Numeric, LogicalType::Timestamptz, LogicalType::Bytea,
    ]).prop_flat_map(|t| value_of(t).prop_map(move |v| (t, v)))) {
        let a = run(Mask::Hash, ty, v.as_bytes());
        prop_assert_eq!(&run(Mask::Hash, ty, v.as_bytes()), &a);
        let other = apply(Mask::Hash, ty, v.as_bytes(), b"a different key");
        prop_assert_ne!(other, Ok(a));
    }

    #[test]
    fn round_gives_nearest_multiple(v in any::<i64>(), n in prop_oneof![1i64..50, Just(1000i64)]) {
        let out = run(Mask::Round(n), LogicalType::Int8, v.to_string().as_bytes());
        let r: i128 = String::from_utf8_lossy(&out).parse().unwrap_or(i128::MAX);
        prop_assert_eq!(r % i128::from(n), 0);
        let (v, n) = (i128::from(v), i128::from(n));
        let diff = (r - v).abs();
        if 2 * diff > n {
            // Only allowed when the nearest multiple (one step further from
            // zero) does not fit an int8: then the one towards zero is used.
            prop_assert!(r.abs() <= v.abs() && diff < n);
            let away = r + v.signum() * n;
            prop_assert!(away > i128::from(i64::MAX) || away < i128::from(i64::MIN));
        }
    }

    #[test]
    fn year_and_month_truncate_within_the_same_period(v in value_of(LogicalType::Date)) {
        let y = String::from_utf8(run(Mask::Year, LogicalType::Date, v.as_bytes())).unwrap_or_default();
        let m = String::from_utf8(run(Mask::Month, LogicalType::Date, v.as_bytes())).unwrap_or_default();
        prop_assert_eq!(&y[..4], &v[..4]);
        prop_assert!(y.ends_with("-01-01"));
        prop_assert_eq!(&m[..7], &v[..7]);
        prop_assert!(m.ends_with("-01"));
    }
}

//! Unit tests of the port's pieces; `tests/values_vs_postgres.rs` compares
//! the whole against a real server. Expected values are PostgreSQL 15's.

use super::lex::{keyword, tokenize, Ft, Kw};
use super::*;

fn fields(s: &str) -> Vec<(Ft, String)> {
    tokenize(s.as_bytes())
        .unwrap_or_default()
        .into_iter()
        .map(|(t, f)| (t, String::from_utf8_lossy(&f).into_owned()))
        .collect()
}

fn known(order: DateOrder) -> InputSettings {
    InputSettings {
        date_order: Some(order),
        utc_offset_secs: None,
    }
}

fn ymd_tz(s: &str, set: &InputSettings) -> Result<(i64, i64, i64, Option<i64>), DtErr> {
    match decode(s.as_bytes(), set)? {
        Decoded::Fields { tm, tz } => Ok((tm.year, tm.mon, tm.mday, tz)),
        other => panic!("{s}: {other:?}"),
    }
}

#[test]
fn tokenizer_types_fields_as_parse_date_time_does() {
    use Ft::*;
    let f = fields("1990-01-02T00:00:00.000Z");
    let want = [
        (Date, "1990-01-02"),
        (Str, "t"),
        (Time, "00:00:00.000"),
        (Str, "z"),
    ];
    assert_eq!(f.len(), want.len(), "{f:?}");
    for ((t, s), (wt, ws)) in f.iter().zip(want) {
        assert_eq!((*t, s.as_str()), (wt, ws));
    }
    assert_eq!(fields("1990-01-02 +00")[1], (Tz, "+00".into()));
    // A known keyword followed by digits stays a word (`j2451545`), an
    // unknown one is a zone-like Date field (`gmt+5` is not, but `abc5` is).
    assert_eq!(fields("J2451545")[0], (Str, "j".into()));
    assert_eq!(fields("abc5")[0], (Date, "abc5".into()));
    assert_eq!(fields("Europe/Paris")[0], (Date, "europe/paris".into()));
    // `1990.360` is a number with a dot; `02.01.1990` a date.
    assert_eq!(fields("1990.360")[0], (Number, "1990.360".into()));
    assert_eq!(fields("02.01.1990")[0], (Date, "02.01.1990".into()));
    assert_eq!(fields("-infinity")[0], (Special, "-infinity".into()));
    // Punctuation between fields is skipped, other bytes refuse.
    assert_eq!(fields("1990,01").len(), 2);
    assert_eq!(
        tokenize("1990-01-02\u{e9}".as_bytes()),
        Err(DtErr::BadFormat)
    );
    assert_eq!(tokenize(b"+"), Err(DtErr::BadFormat));
}

#[test]
fn tokenizer_bounds_fields_and_buffer() {
    let many = "1 ".repeat(MAXDATEFIELDS + 1);
    assert_eq!(tokenize(many.as_bytes()), Err(DtErr::BadFormat));
    let ok = "1 ".repeat(MAXDATEFIELDS);
    assert_eq!(tokenize(ok.as_bytes()).map(|f| f.len()), Ok(MAXDATEFIELDS));
    let long = "1".repeat(200);
    assert_eq!(tokenize(long.as_bytes()), Err(DtErr::BadFormat));
}

#[test]
fn keywords_and_utc_abbreviations() {
    assert_eq!(keyword(b"sept"), Some(Kw::Month(9)));
    assert_eq!(keyword(b"weds"), Some(Kw::Dow));
    assert_eq!(keyword(b"allballs"), Some(Kw::Zulu));
    assert_eq!(keyword(b"est"), None);
    assert!(utc_abbrev(b"zulu") && utc_abbrev(b"z") && !utc_abbrev(b"est"));
}

#[test]
fn fractions_allow_a_lone_dot() {
    assert_eq!(parse_fraction(b"."), Ok(0));
    assert_eq!(parse_fraction(b".5"), Ok(500_000));
    assert_eq!(parse_fraction(b".0000005"), Ok(0));
    assert_eq!(parse_fraction(b".0000015"), Ok(2));
    assert_eq!(parse_fraction(b".5x"), Err(DtErr::BadFormat));
    assert_eq!(parse_fraction(b"5"), Err(DtErr::BadFormat));
}

#[test]
fn time_zone_displacements() {
    assert_eq!(decode_timezone(b"+05"), Ok(5 * 3600));
    assert_eq!(decode_timezone(b"-0530"), Ok(-(5 * 3600 + 30 * 60)));
    assert_eq!(decode_timezone(b"+5:30:15"), Ok(5 * 3600 + 30 * 60 + 15));
    assert_eq!(decode_timezone(b"+15:59:59"), Ok(57_599));
    assert_eq!(decode_timezone(b"+16"), Err(DtErr::TzDispOverflow));
    assert_eq!(decode_timezone(b"+05:60"), Err(DtErr::TzDispOverflow));
    assert_eq!(decode_timezone(b"+05x"), Err(DtErr::BadFormat));
    assert_eq!(decode_timezone(b"05"), Err(DtErr::BadFormat));
    assert_eq!(decode_timezone(b"+99999999999"), Err(DtErr::TzDispOverflow));
}

#[test]
fn julian_days_with_an_attached_zone() {
    let set = known(DateOrder::Mdy);
    assert_eq!(ymd_tz("J2451545", &set), Ok((2000, 1, 1, None)));
    assert_eq!(
        ymd_tz("J2451545-05", &set),
        Ok((2000, 1, 1, Some(-5 * 3600)))
    );
    // The attached zone claims the time, so a later time field conflicts
    // (after the time's own range check, as in PostgreSQL).
    assert_eq!(decode(b"J2451545-05 12:00", &set), Err(DtErr::BadFormat));
    assert_eq!(
        decode(b"J2451545-05 59:59", &set),
        Err(DtErr::FieldOverflow)
    );
    assert_eq!(decode(b"J2451545/05", &set), Err(DtErr::BadFormat));
}

#[test]
fn unknown_datestyle_decides_only_order_free_spellings() {
    let unknown = InputSettings::default();
    for s in [
        "1990-01-02",
        "Jan 2 1990",
        "2 Jan 1990",
        "19900102",
        "1990.002",
    ] {
        assert_eq!(
            ymd_tz(s, &unknown).map(|v| (v.0, v.1, v.2)),
            Ok((1990, 1, 2)),
            "{s}"
        );
    }
    for s in ["01/02/1990", "02.01.1990", "90-01-02", "1/2/3"] {
        assert!(
            matches!(decode(s.as_bytes(), &unknown), Err(DtErr::Unsupported(r)) if r.contains("DateStyle")),
            "{s}"
        );
    }
    // Out of range in every order is an overflow, not "unsupported"; the
    // DateStyle hint only when every order would give it.
    assert_eq!(decode(b"99/99/1990", &unknown), Err(DtErr::MdFieldOverflow));
    assert_eq!(decode(b"02/30/1990", &unknown), Err(DtErr::FieldOverflow));
    // The same spelling under each known order.
    assert_eq!(
        ymd_tz("01/02/1990", &known(DateOrder::Mdy)).map(|v| v.1),
        Ok(1)
    );
    assert_eq!(
        ymd_tz("01/02/1990", &known(DateOrder::Dmy)).map(|v| v.1),
        Ok(2)
    );
    assert_eq!(
        decode(b"13/01/1990", &known(DateOrder::Mdy)),
        Err(DtErr::MdFieldOverflow)
    );
}

#[test]
fn specials_clock_words_and_zone_names() {
    let set = known(DateOrder::Ymd);
    assert_eq!(decode(b" Infinity ", &set), Ok(Decoded::Late));
    assert_eq!(decode(b"-infinity", &set), Ok(Decoded::Early));
    assert_eq!(decode(b"epoch", &set), Ok(Decoded::Epoch));
    assert_eq!(decode(b"+infinity", &set), Err(DtErr::BadFormat));
    for s in [
        "now",
        "today",
        "1990-01-02 EST",
        "1990-01-02 Europe/Paris",
        "1990-01-02 y",
    ] {
        assert!(
            matches!(decode(s.as_bytes(), &set), Err(DtErr::Unsupported(_))),
            "{s}"
        );
    }
    assert_eq!(
        ymd_tz("1990-01-02 12:00 zulu", &set).map(|v| v.3),
        Ok(Some(0))
    );
    // Session offset fills in only when the input has none.
    let utc5 = InputSettings {
        date_order: Some(DateOrder::Ymd),
        utc_offset_secs: Some(5 * 3600),
    };
    assert_eq!(ymd_tz("1990-01-02", &utc5).map(|v| v.3), Ok(Some(5 * 3600)));
    assert_eq!(
        ymd_tz("1990-01-02 -01", &utc5).map(|v| v.3),
        Ok(Some(-3600))
    );
}

#[test]
fn calendar_validation() {
    let set = known(DateOrder::Ymd);
    assert!(ymd_tz("2000-02-29", &set).is_ok());
    assert_eq!(decode(b"1900-02-29", &set), Err(DtErr::FieldOverflow));
    assert_eq!(decode(b"0000-01-01", &set), Err(DtErr::FieldOverflow));
    assert_eq!(ymd_tz("0001-01-01 BC", &set).map(|v| v.0), Ok(0));
    assert_eq!(ymd_tz("99-12-31", &set).map(|v| v.0), Ok(1999));
    assert_eq!(ymd_tz("69-12-31", &set).map(|v| v.0), Ok(2069));
    assert_eq!(
        decode(b"1990-01-02 13:00 pm", &set),
        Err(DtErr::FieldOverflow)
    );
    match decode(b"1990-01-02 12:00 am", &set) {
        Ok(Decoded::Fields { tm, .. }) => assert_eq!(tm.hour, 0),
        other => panic!("{other:?}"),
    }
}

//! Issue 11, defect 3: pgveil's text input for the logical types of encrypted
//! columns, checked against the real PostgreSQL the harness starts.
//!
//! Why against the server and not a table of expected values: the point of
//! the port in `src/values/dtparse.rs` is that a deterministic ciphertext is
//! computed from the value PostgreSQL would have stored. So every spelling
//! here (hand-picked driver spellings, plus the product of many date, time
//! and zone forms) goes through `date_in` / `timestamptz_in` / … on the
//! server and through `values::canonical_text_with` in pgveil, under several
//! DateStyle/TimeZone settings, and the two must agree: the same canonical
//! value, or the same SQLSTATE and wording. pgveil may instead refuse as
//! `Unsupported` (0A000) only for what it cannot decide without the server
//! (zone names, the clock, an unknown DateStyle or TimeZone), and then the
//! reason must say so.
//!
//! The last test sends the spellings of postgres.js and pgjdbc as text
//! parameters through the proxy into an encrypted `date` column.

mod common;

use std::collections::BTreeMap;
use std::error::Error;

use bytes::BytesMut;
use pgveil::error::ClientError;
use pgveil::rules::LogicalType;
use pgveil::values::{canonical_text_with, DateOrder, InputSettings, ValueError};
use postgres_types::{to_sql_checked, Format, IsNull, ToSql, Type};

use common::*;

/// What one side made of one input.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Value(String),
    /// SQLSTATE and message without the quoted input.
    Refused(String, String),
    /// pgveil only: cannot be decided without the server; the reason.
    Unsupported(String),
}

fn ours(ty: LogicalType, input: &str, set: &InputSettings) -> Outcome {
    match canonical_text_with(ty, input.as_bytes(), set) {
        Ok(v) => Outcome::Value(String::from_utf8_lossy(&v).into_owned()),
        Err(ValueError::Unsupported { reason, .. }) => Outcome::Unsupported(reason.to_string()),
        Err(e) => Outcome::Refused(e.sqlstate().to_string(), e.to_string()),
    }
}

/// PostgreSQL's message with the quoted input taken out, as pgveil words it
/// (pgveil never repeats a value).
fn strip_input(msg: &str, input: &str) -> String {
    let quoted = format!("\"{input}\"");
    let m = msg.replace(&quoted, "");
    // `invalid hexadecimal digit: "z"` quotes a piece of the input.
    let m = match m.rfind(": \"") {
        Some(p) if m.ends_with('"') => m[..p].to_string(),
        _ => m,
    };
    let m = m.split_whitespace().collect::<Vec<_>>().join(" ");
    m.trim_end_matches(':').trim_end().to_string()
}

const TRY_IN: &str = r#"
CREATE FUNCTION try_in(v text, ty text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    r text;
    t timestamptz;
    old text;
BEGIN
    IF ty = 'timestamptz' THEN
        EXECUTE 'SELECT CAST($1 AS timestamptz)' INTO t USING v;
        old := current_setting('TimeZone');
        PERFORM set_config('TimeZone', 'UTC', false);
        r := t::text;
        PERFORM set_config('TimeZone', old, false);
        RETURN r;
    ELSIF ty = 'numeric' THEN
        EXECUTE 'SELECT pg_catalog.trim_scale(CAST($1 AS numeric))::text' INTO r USING v;
    ELSIF ty = 'bool' THEN
        EXECUTE 'SELECT CASE WHEN CAST($1 AS bool) THEN ''t'' ELSE ''f'' END' INTO r USING v;
    ELSIF ty = 'bytea' THEN
        EXECUTE 'SELECT CAST($1 AS bytea)::text' INTO r USING v;
    ELSE
        EXECUTE format('SELECT CAST($1 AS %s)::text', ty) INTO r USING v;
    END IF;
    RETURN r;
EXCEPTION WHEN others THEN
    RETURN E'\x01' || SQLSTATE || ' ' || SQLERRM;
END
$f$;
"#;

/// One session setting under which both sides are compared.
struct Setting {
    datestyle: &'static str,
    timezone: &'static str,
    known: InputSettings,
}

const SETTINGS: [Setting; 3] = [
    Setting {
        datestyle: "ISO, MDY",
        timezone: "UTC",
        known: InputSettings {
            date_order: Some(DateOrder::Mdy),
            utc_offset_secs: Some(0),
        },
    },
    Setting {
        datestyle: "ISO, DMY",
        timezone: "Etc/GMT+5",
        known: InputSettings {
            date_order: Some(DateOrder::Dmy),
            utc_offset_secs: Some(-5 * 3600),
        },
    },
    Setting {
        datestyle: "ISO, YMD",
        timezone: "Etc/GMT-3",
        known: InputSettings {
            date_order: Some(DateOrder::Ymd),
            utc_offset_secs: Some(3 * 3600),
        },
    },
];

/// The server's outcome for every input, under `set`.
async fn server_outcomes(
    client: &tokio_postgres::Client,
    set: &Setting,
    ty: LogicalType,
    inputs: &[String],
) -> Vec<Outcome> {
    client
        .batch_execute(&format!(
            "SET DateStyle = '{}'; SET TimeZone = '{}'; SET bytea_output = 'hex';",
            set.datestyle, set.timezone
        ))
        .await
        .expect("set session");
    let rows = client
        .query(
            "SELECT try_in(x, $2) FROM unnest($1::text[]) WITH ORDINALITY AS u(x, n) ORDER BY n",
            &[&inputs, &ty.sql_name()],
        )
        .await
        .expect("try_in");
    rows.iter()
        .zip(inputs)
        .map(|(row, input)| {
            let v: String = row.get(0);
            match v.strip_prefix('\u{1}') {
                Some(err) => {
                    let (code, msg) = err.split_at(5);
                    Outcome::Refused(code.to_string(), strip_input(msg.trim_start(), input))
                }
                None => Outcome::Value(v),
            }
        })
        .collect()
}

/// Reasons an `Unsupported` refusal may give: each names what pgveil
/// would need from the server.
fn clear_reason(reason: &str) -> bool {
    [
        "time zone name",
        "server's clock",
        "DateStyle",
        "TimeZone",
        "labelled",
        "daylight-saving",
        "over-long year",
    ]
    .iter()
    .any(|k| reason.contains(k))
}

const DATES: &[&str] = &[
    "1990-01-02",
    "1990-1-2",
    "19900102",
    "900102",
    "1990.002",
    "1990.360",
    "Jan 2 1990",
    "2 Jan 1990",
    "January 2, 1990",
    "1990-Jan-02",
    "02-Jan-1990",
    "Jan-02-1990",
    "Tue Jan 02 1990",
    "Tuesday, January 2, 1990",
    "01/02/1990",
    "1/2/90",
    "02.01.1990",
    "90-01-02",
    "01-02-03",
    "1990/01/02",
    "J2447894",
    "1990-02-29",
    "2000-02-29",
    "1900-02-29",
    "0044-03-15 BC",
    "44-03-15 BC",
    "4714-11-24 BC",
    "4714-11-23 BC",
    "5874897-12-31",
    "294276-12-31",
    "294277-01-01",
    "1990-13-01",
    "1990-00-01",
    "0000-01-01",
    "1990-01-32",
    "12/31/1999",
    "31/12/1999",
    "1999-12-31 AD",
    "1990-01-02 bc",
    "99-12-31",
    "1990--01-02",
    "1990 01 02",
    "Jan 1990 2",
    "1990 Jan 2",
    "2 1990 Jan",
    "13 Jan 90",
    "Feb 30 2001",
    "99999999-01-01",
    "11111111111111",
];

const TIMES: &[&str] = &[
    "",
    " 00:00:00",
    "T00:00:00.000",
    "T00:00:00",
    " 12:34",
    " 12:34:56.789",
    " 23:59:60",
    " 24:00:00",
    " 24:00:01",
    " 12:60",
    " 1:02:03 pm",
    " 12:00 am",
    " 13:00 pm",
    " 040506",
    "T040506",
    " allballs",
    " 12:34:56.1234567",
    " 25:00",
    " 12:34.5",
    " 12:",
];

const ZONES: &[&str] = &[
    "",
    "Z",
    "z",
    " +00",
    "+00",
    " -05",
    "+05:30",
    "+0530",
    " UTC",
    " GMT",
    " +16",
    "-15:59:59",
    " EST",
    " Europe/Paris",
    " +5",
    "-03:30:15",
    " +00:00",
    " UT",
    " zulu",
    " -0800",
    " PST",
    " +05:",
    " -1:2:3",
];

/// Spellings worth checking on their own: driver output, specials, garbage.
const SINGLES: &[&str] = &[
    "1990-01-02T00:00:00.000Z",
    "1990-01-02 +00",
    "1990-01-02 00:00:00+00",
    "1990-01-02 00:00:00.000000+00:00",
    "1990-01-02T00:00:00+00:00",
    "Tue Jan 02 1990 00:00:00 GMT+0000",
    "Tue Jan 02 00:00:00 1990 UTC",
    "Tue Jan 02 1990",
    " 2024-1-5\n",
    "\t1990-01-02\t",
    "infinity",
    "-infinity",
    "+infinity",
    "INFINITY",
    "Infinity 1990-01-02",
    "epoch",
    "EPOCH",
    "now",
    "today",
    "tomorrow",
    "yesterday",
    "allballs",
    "1990-01-02 allballs",
    "allballs 1990-01-02",
    "J2451545",
    "j 2451545",
    "J2451545.5",
    "julian 2451545",
    "1990-01-02 J",
    "19900102T040506Z",
    "19900102 040506",
    "1990-01-02 040506-05",
    "1990-01-02 256199+00",
    "1990-01-02 12:00 +05 z",
    "2016-12-31 23:59:60Z",
    "1999-12-31 23:59:59.9999999 UTC",
    "2024-01-02 03:04:05.0000005+00",
    "2024-01-02 03:04:05.0000015+00",
    "1990-01-02 at 12:00",
    "on 1990-01-02",
    "1990-01-02 12:00 dst",
    "1990-01-02 y",
    "y1990m01d02",
    "1990-01-02 doy",
    "1990-01-02T",
    "T12:00 1990-01-02",
    "1990-01-02TT12:00",
    "12:00 1990-01-02",
    "12:00",
    "",
    " ",
    "z",
    "garbage",
    "1990-01-02 garbage",
    "1990-01-02 +",
    "1990-01-02 -",
    "1990-01-02 +-5",
    "1990-01-02 ++5",
    "1990-01-02 +ab",
    "1990-01-02,12:00",
    "1990-01-02;12:00",
    "1990_01_02",
    "1990-01-02 12:00:00.",
    "1990-01-02 12:00:00.5.5",
    "1990-01-02 .5",
    "1990-01-02 12.5",
    "1990-01-02 123.5",
    "1990-01-02 1234.5",
    "1990-01-02 pm",
    "1990-01-02 12 pm",
    "1990-01-02 bc bc",
    "1990-01-02 ad bc",
    "Jan Feb 1990",
    "1990-01-02 Jan",
    "Tue Wed 1990-01-02",
    "2024-01-02 03:04:05+15:59:59",
    "2024-01-02 03:04:05+15:60",
    "2024-01-02 03:04:05-030405",
    "2024-01-02 03:04:05+2147483648",
    "99999999999-01-01",
    "1990-99999999999-01",
    "1990-01-02 99999999999:00",
    "1990-01-02 00:00:00+1:2:3:4",
    "1990-01-02 00:00:00 +05:30 ",
    "1990-01-02 00:00:00Europe/Paris",
    "1990-01-02 00:00:00-infinity",
    "1990-01-02 -infinity",
    "0001-01-01 00:00:00+00 BC",
    "4714-11-24 00:00:00+00 BC",
    "4714-11-23 23:59:59+00 BC",
    "4714-11-24 00:00:00+01 BC",
    "294276-12-31 23:59:59.999999+00",
    "294276-12-31 23:59:59.999999-01",
    "5874897-12-31 +00",
    "5874898-01-01",
    "99/99/1990",
    "02/30/1990",
    "J2451545-05",
    "J2451545-05 12:00",
    "J2451545-05 59:59",
    "１９９０-01-02",
    "1990‐01‐02",
];

fn date_time_inputs() -> Vec<String> {
    let mut out: Vec<String> = SINGLES.iter().map(|s| s.to_string()).collect();
    for d in DATES {
        for t in TIMES {
            for z in ZONES {
                out.push(format!("{d}{t}{z}"));
            }
        }
    }
    out
}

fn other_inputs(ty: LogicalType) -> Vec<String> {
    let list: &[&str] = match ty {
        LogicalType::Int4 | LogicalType::Int8 => &[
            " +007 ",
            "-0",
            "2147483647",
            "-2147483648",
            "2147483648",
            "-2147483649",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "1.0",
            "",
            "-",
            "0x1F",
            "1_000",
            "\t12\n",
            "00000000000000000000001",
            "5 5",
            "+-5",
            "1e3",
        ],
        LogicalType::Numeric => &[
            "01.50",
            "1.5e1",
            "-0.00",
            ".5",
            "5.",
            ".",
            "1e",
            "+.5",
            "NaN",
            "-nan",
            "inf",
            "-Infinity",
            "+inf",
            "123e-16383",
            "00012.3400e-2",
            "- 5",
            "1.2.3",
            "1e+5",
            "  -1.000e3  ",
            "0e-5",
            "12345678901234567890.123456789",
            "0x10",
            "1_000",
        ],
        LogicalType::Bool => &[
            "t", "TRUE", "tr", "yes", "y", "on", "1", "f", "no", "of", "off", "0", "o", "2", "",
            " true ", "truex",
        ],
        LogicalType::Bytea => &[
            "\\xDEAD beef",
            "\\x",
            "\\xabc",
            "a\\\\b\\001",
            "\\400",
            "\\q",
        ],
        _ => &[],
    };
    list.iter().map(|s| s.to_string()).collect()
}

#[derive(Default)]
struct Tally {
    agreed_values: usize,
    agreed_refusals: usize,
    unsupported: BTreeMap<String, usize>,
    failures: Vec<String>,
}

impl Tally {
    fn compare(&mut self, what: &str, input: &str, ours: &Outcome, pg: &Outcome) {
        match (ours, pg) {
            (a, b) if a == b => match a {
                Outcome::Value(_) => self.agreed_values += 1,
                _ => self.agreed_refusals += 1,
            },
            (Outcome::Unsupported(r), _) if clear_reason(r) => {
                *self.unsupported.entry(r.clone()).or_default() += 1;
            }
            _ => self.failures.push(format!(
                "{what} {input:?}: pgveil {ours:?}, postgres {pg:?}"
            )),
        }
    }
}

/// Every input, every setting: known settings must agree exactly (or be a
/// clear Unsupported); with settings unknown, pgveil's answer must be the
/// server's under each of them, or Unsupported.
#[tokio::test]
async fn text_input_agrees_with_postgres() {
    let c = shared();
    let db = c.fresh_db("values_vs_pg");
    c.sql(&db, TRY_IN);
    let client = connect(c.pg.port(), &db, APP_USER, APP_PASSWORD)
        .await
        .expect("connect to PostgreSQL directly");
    let mut tally = Tally::default();
    let unknown = InputSettings::default();
    let mut accepted_unknown = 0usize;
    let mut total = 0usize;
    for ty in LogicalType::ALL {
        let inputs = match ty {
            LogicalType::Date | LogicalType::Timestamptz => date_time_inputs(),
            LogicalType::Text | LogicalType::Varchar => continue,
            _ => other_inputs(ty),
        };
        total += inputs.len();
        let mine_unknown: Vec<Outcome> = inputs.iter().map(|i| ours(ty, i, &unknown)).collect();
        accepted_unknown += mine_unknown
            .iter()
            .filter(|o| matches!(o, Outcome::Value(_)))
            .count();
        for set in &SETTINGS {
            let pg = server_outcomes(&client, set, ty, &inputs).await;
            let label = format!("{ty} [{} / {}]", set.datestyle, set.timezone);
            for (i, input) in inputs.iter().enumerate() {
                tally.compare(&label, input, &ours(ty, input, &set.known), &pg[i]);
                let label = format!("{label} settings unknown");
                tally.compare(&label, input, &mine_unknown[i], &pg[i]);
            }
        }
    }
    let shown: Vec<_> = tally.failures.iter().take(400).collect();
    assert!(
        tally.failures.is_empty(),
        "{} disagreements with PostgreSQL (first 400):\n{}",
        tally.failures.len(),
        shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "{total} inputs x {} settings x 2: {} values and {} refusals agree; {accepted_unknown} accepted with settings unknown",
        SETTINGS.len(),
        tally.agreed_values,
        tally.agreed_refusals
    );
    for (reason, n) in &tally.unsupported {
        eprintln!("  unsupported x{n}: {reason}");
    }
    // A comparison that accepts nothing proves nothing.
    assert!(tally.agreed_values > 10_000, "{}", tally.agreed_values);
    assert!(tally.agreed_refusals > 10_000, "{}", tally.agreed_refusals);
}

/// The driver spellings of the issue need no session settings at all.
#[test]
fn driver_spellings_need_no_settings() {
    let unknown = InputSettings::default();
    for (ty, input, want) in [
        (LogicalType::Date, "1990-01-02T00:00:00.000Z", "1990-01-02"),
        (LogicalType::Date, "1990-01-02 +00", "1990-01-02"),
        (LogicalType::Date, "1990-01-02", "1990-01-02"),
        (LogicalType::Date, "Tue Jan 02 1990", "1990-01-02"),
        (LogicalType::Date, "0044-03-15 BC", "0044-03-15 BC"),
        (
            LogicalType::Timestamptz,
            "1990-01-02T03:04:05.678Z",
            "1990-01-02 03:04:05.678+00",
        ),
        (
            LogicalType::Timestamptz,
            "1990-01-02 03:04:05.678+01",
            "1990-01-02 02:04:05.678+00",
        ),
        (
            LogicalType::Timestamptz,
            "1990-01-02 03:04:05-05:30",
            "1990-01-02 08:34:05+00",
        ),
    ] {
        assert_eq!(
            ours(ty, input, &unknown),
            Outcome::Value(want.to_string()),
            "{input}"
        );
    }
}

/// A text-format parameter, whatever type the statement declares: what
/// postgres.js and pgjdbc send.
#[derive(Debug)]
struct TextParam<'a>(&'a str);

impl ToSql for TextParam<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }
    to_sql_checked!();
}

/// Through the proxy: the spellings of postgres.js (`…T00:00:00.000Z`) and
/// pgjdbc `setDate` (`… +00`) land in the encrypted `birth_date` as the
/// same date, read back as that date; the refusals carry PostgreSQL's codes
/// and never the value.
#[tokio::test]
async fn driver_date_spellings_through_the_proxy() {
    use common::customers::*;
    let env = setup("dates_wire");
    let admin = as_role(&env, ADMIN).await;
    let insert = "INSERT INTO customers (full_name, birth_date) VALUES ($1, $2)";
    for (name, spelling) in [
        ("postgresjs", "1990-01-02T00:00:00.000Z"),
        ("pgjdbc", "1990-01-02 +00"),
        ("iso", "1990-01-02"),
    ] {
        admin
            .execute(insert, &[&name, &TextParam(spelling)])
            .await
            .unwrap_or_else(|e| panic!("{spelling}: {e:?}\n{}", env.proxy.log()));
    }
    let want = chrono::NaiveDate::from_ymd_opt(1990, 1, 2).expect("date");
    let rows = admin
        .query(
            "SELECT full_name, birth_date FROM customers ORDER BY id",
            &[],
        )
        .await
        .expect("read back");
    assert_eq!(rows.len(), 3);
    for r in &rows {
        let d: chrono::NaiveDate = r.get(1);
        assert_eq!(d, want, "{}", r.get::<_, String>(0));
    }
    // Text results too, and equal in the simple protocol.
    let text = admin
        .simple_query("SELECT birth_date FROM customers")
        .await
        .expect("simple");
    let dates: Vec<_> = text
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(dates, ["1990-01-02"; 3]);
    // At rest: ciphertext, not the date.
    let raw = cluster().sql(&env.db, "SELECT birth_date FROM customers");
    assert!(!raw.contains("1990"), "{raw}");
    assert_eq!(raw.matches("\\x").count(), 3, "{raw}");

    for (spelling, code, words) in [
        ("1990-13-45", "22008", "date/time field value out of range"),
        (
            "1990-01-02 +",
            "22007",
            "invalid input syntax for type date",
        ),
        // An unknown word may be a zone name only the server knows.
        ("garbage", "0A000", "time zone name"),
        ("now", "0A000", "server's clock"),
        ("1990-01-02 EST", "0A000", "time zone name"),
        ("01/02/1990", "0A000", "DateStyle"),
        (
            "1990-01-02 +16",
            "22009",
            "time zone displacement out of range",
        ),
    ] {
        let e = admin
            .execute(insert, &[&"bad", &TextParam(spelling)])
            .await
            .expect_err(spelling);
        let db = e.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), code, "{spelling}: {}", db.message());
        assert!(db.message().contains(words), "{spelling}: {}", db.message());
        assert!(db.message().contains("birth_date"), "{}", db.message());
        // Never the value (a keyword such as `now` may be named).
        if spelling.contains(|c: char| c.is_ascii_digit()) {
            assert!(!db.message().contains(spelling), "{}", db.message());
        }
    }
    let n: i64 = admin
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 3, "a refused parameter must not insert a row");
}

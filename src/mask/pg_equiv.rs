//! Equivalence of [`super::apply`] and [`super::sql_expr`] against a real
//! Postgres 15, through `psql` so that no async client is needed. The test
//! starts its own throwaway cluster ([`crate::pgtemp`]) unless
//! `PGVEIL_MASK_PG_PORT` points it at an existing one; it is skipped, with a
//! message, only when no PostgreSQL binaries are installed.
//!
//! Environment: `PGVEIL_MASK_PG_PORT`, `PGVEIL_MASK_PG_HOST`
//! (default `/tmp`), `PGVEIL_MASK_PG_USER` and `PGVEIL_MASK_PG_DB` (default
//! `postgres`, a UTF-8 database),
//! `PGVEIL_PSQL` (default the Debian Postgres 15 psql, else `psql`).
//!
//! Two passes: one compares the text Postgres prints (`DateStyle=ISO`,
//! `TimeZone=UTC`) with the Rust output; one runs under hostile session
//! settings and compares binary send forms, which proves the expressions do
//! not depend on those settings.

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::{apply, sql_expr};
use crate::rules::model::{LogicalType, Mask};
use crate::values::{canonical_text, text_to_binary};

const KEY: &[u8] = b"pgveil test pseudonym key 32 by!";

struct Case {
    mask: Mask,
    ty: LogicalType,
    input: String,
    key: Vec<u8>,
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Characters from every class the masks care about: ASCII letters, digits,
/// punctuation, whitespace, `@`, non-ASCII letters and digits (BMP and
/// astral), letter numbers, other numbers, combining marks, emoji.
const POOL: &[char] = &[
    'a',
    'Z',
    'q',
    '0',
    '7',
    '9',
    '-',
    '.',
    ' ',
    '@',
    '+',
    '_',
    '\'',
    '\\',
    '%',
    '\t',
    '\n',
    'é',
    'Ü',
    'ß',
    'ǅ',
    '日',
    '本',
    'テ',
    '٣',
    '۴',
    '໒',
    'Ⅻ',
    'ⅷ',
    '½',
    '²',
    '𝔘',
    '𝟘',
    '😀',
    '\u{0301}',
    '\u{0345}',
    '\u{00AD}',
    '\u{200B}',
    '—',
    '€',
    '中',
    'я',
    'Ω',
    'ª',
    'º',
    '\u{10FFFD}',
    '\u{E000}',
];

fn text_inputs(rng: &mut Rng) -> Vec<String> {
    let mut v: Vec<String> = [
        "alice@example.com",
        "123-45-6789",
        "+1-202-555-0143",
        "",
        "a",
        "ab",
        "@",
        "@@",
        "a@",
        "@b",
        "x@y@z",
        "--..--",
        "   ",
        "4111 1111 1111 1111",
        "John O'Neil",
        "back\\slash",
        "tab\tnew\nline",
        "Ünïcödé 42!",
        "日本語テキスト",
        "émile@exämple.fr",
        "Ⅻ roman ⅷ",
        "½ ¼ ² vulgar",
        "𝔘𝔫𝔦 𝟘𝟙",
        "😀 emoji 🎉",
        "a\u{0301}b\u{0345}c",
        "ß-ǅ",
        "\"quoted@local\"@host.example",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("ab-".repeat(300));
    v.push("é1 ".repeat(200) + &"𝟘-".repeat(200));
    for _ in 0..150 {
        let len = rng.below(14);
        v.push(
            (0..len)
                .map(|_| POOL[rng.below(POOL.len() as u64) as usize])
                .collect(),
        );
    }
    v
}

fn cases() -> Vec<Case> {
    use LogicalType::*;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::new();
    let mut add = |masks: &[Mask], ty: LogicalType, inputs: &[String]| {
        for mask in masks {
            for input in inputs {
                out.push(Case {
                    mask: *mask,
                    ty,
                    input: input.clone(),
                    key: KEY.to_vec(),
                });
            }
        }
    };
    let texts = text_inputs(&mut rng);
    let partials = [
        (0, 0),
        (0, 4),
        (1, 4),
        (2, 2),
        (3, 0),
        (0, 1),
        (5, 5),
        (1, 1),
        (256, 1),
        (3, 300),
    ]
    .map(|(first, last)| Mask::Partial { first, last });
    for ty in [Text, Varchar] {
        add(&partials, ty, &texts);
        add(&[Mask::Email, Mask::Hash, Mask::Redact], ty, &texts);
    }
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut ints = s(&[
        "0",
        "1",
        "-1",
        "15",
        "-15",
        "14",
        "-14",
        "5",
        "-5",
        "25",
        "-25",
        "2147483647",
        "-2147483648",
        " +007 ",
        "1000000",
        "-999",
    ]);
    ints.extend((0..40).map(|_| (rng.next() as i32 >> rng.below(31)).to_string()));
    let rounds = [1, 2, 3, 10, 1000, 3_000_000_000, i64::MAX].map(Mask::Round);
    add(&rounds, Int4, &ints);
    add(&[Mask::Redact, Mask::Hash], Int4, &ints);
    let mut bigs = ints.clone();
    bigs.extend(s(&[
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775805",
        "-4611686018427387904",
    ]));
    bigs.extend((0..40).map(|_| (rng.next() as i64 >> rng.below(63)).to_string()));
    add(&rounds, Int8, &bigs);
    add(&[Mask::Redact, Mask::Hash], Int8, &bigs);
    let mut nums = s(&[
        "0",
        "1.50",
        "-1.5",
        "14.5",
        "-14.5",
        "15",
        "2.5",
        "-2.5",
        "0.0001",
        "-0.00",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e20",
        "7.5",
        "22.5",
        "-7.49",
        "99999999999999999999.5",
        "0.5",
        "-0.5",
        "123456789012345678901234567890.123456789",
        "1.49999999999999999999999999999999999999999999999999999",
        "14999999999999999999999999.9999999999999999999999999999",
        "1234.5678e-10",
    ]);
    nums.extend((0..40).map(|_| {
        let int = rng.next() as i64 >> rng.below(63);
        format!(
            "{int}.{:0width$}",
            rng.below(1_000_000),
            width = rng.below(7) as usize
        )
    }));
    let nrounds = [1, 3, 10, 15, 1_000_000, i64::MAX].map(Mask::Round);
    add(&nrounds, Numeric, &nums);
    add(&[Mask::Redact, Mask::Hash], Numeric, &nums);
    add(&[Mask::Redact, Mask::Hash], Bool, &s(&["t", "f"]));
    let mut dates = s(&[
        "2024-01-15",
        "2024-12-31",
        "0001-01-01",
        "9999-12-31",
        "2000-02-29",
        "1970-01-01",
        "1900-03-01",
        "infinity",
        "-infinity",
    ]);
    dates.extend((0..40).map(|_| {
        let y = 1 + rng.below(9999);
        format!("{y:04}-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28))
    }));
    let dmasks = [Mask::Redact, Mask::Hash, Mask::Year, Mask::Month];
    add(&dmasks, Date, &dates);
    let mut stamps = s(&[
        "2024-01-15 13:45:12.345678+00",
        "2024-12-31 23:59:59.999999+00",
        "0001-01-01 00:00:00+00",
        "9999-12-31 23:59:59.999999+00",
        "2024-03-01 00:30:00+05",
        "2024-01-01 00:00:00-01",
        "1969-12-31 23:59:59.5Z",
        "infinity",
        "-infinity",
    ]);
    stamps.extend((0..40).map(|_| {
        let y = 2 + rng.below(9997);
        format!(
            "{y:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}{}{:02}:{:02}",
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1_000_000),
            if rng.below(2) == 0 { '+' } else { '-' },
            rng.below(15),
            rng.below(60)
        )
    }));
    add(&dmasks, Timestamptz, &stamps);
    let mut bytes = s(&["\\x", "\\x00", "\\xdeadbeef"]);
    bytes.extend((0..20).map(|_| {
        let n = rng.below(40) as usize;
        format!(
            "\\x{}",
            (0..n)
                .map(|_| format!("{:02x}", rng.below(256)))
                .collect::<String>()
        )
    }));
    add(&[Mask::Redact, Mask::Hash], Bytea, &bytes);
    // A key longer than the SHA-256 block, which HMAC hashes first.
    for ty in LogicalType::ALL {
        let input = match ty {
            Text | Varchar => "long key",
            Int4 | Int8 | Numeric => "42",
            Bool => "t",
            Date => "2024-01-02",
            Timestamptz => "2024-01-02 03:04:05Z",
            Bytea => "\\x0102",
        };
        out.push(Case {
            mask: Mask::Hash,
            ty,
            input: input.into(),
            key: vec![0xA5; 100],
        });
    }
    out
}

/// The SQL literal of a test input, immune to `standard_conforming_strings`.
fn literal(ty: LogicalType, input: &str) -> String {
    match ty {
        LogicalType::Text | LogicalType::Varchar => format!(
            "CAST(pg_catalog.convert_from(pg_catalog.decode('{}', 'hex'), 'UTF8') AS pg_catalog.{})",
            hex::encode(input),
            ty.sql_name()
        ),
        LogicalType::Bytea => {
            format!("pg_catalog.decode('{}', 'hex')", input.trim_start_matches("\\x"))
        }
        _ => format!("CAST('{input}' AS pg_catalog.{})", ty.sql_name()),
    }
}

fn send_fn(ty: LogicalType) -> &'static str {
    use LogicalType::*;
    match ty {
        Text => "pg_catalog.textsend",
        Varchar => "pg_catalog.varcharsend",
        Int4 => "pg_catalog.int4send",
        Int8 => "pg_catalog.int8send",
        Bool => "pg_catalog.boolsend",
        Date => "pg_catalog.date_send",
        Timestamptz => "pg_catalog.timestamptz_send",
        Bytea => "pg_catalog.byteasend",
        // numeric_send's dscale of infinities is an artefact; compare text.
        Numeric => "",
    }
}

/// Runs `script` through psql and returns the NUL-separated fields. With
/// `stop_on_error` false, a failing statement just yields no row.
struct Server {
    host: String,
    port: String,
}

/// Where to run: an existing server named by the environment, or a fresh
/// throwaway cluster (kept alive by the returned guard).
fn target() -> Option<(Server, Option<crate::pgtemp::PgTemp>)> {
    if let Ok(port) = std::env::var("PGVEIL_MASK_PG_PORT") {
        let host = std::env::var("PGVEIL_MASK_PG_HOST").unwrap_or_else(|_| "/tmp".into());
        return Some((Server { host, port }, None));
    }
    match crate::pgtemp::PgTemp::start(&Default::default()) {
        Ok(pg) => {
            let server = Server {
                host: pg.socket_dir().display().to_string(),
                port: pg.port().to_string(),
            };
            Some((server, Some(pg)))
        }
        Err(e) => {
            eprintln!("no PostgreSQL to compare against ({e}): skipping");
            None
        }
    }
}

fn psql(script: &str, server: &Server, stop_on_error: bool) -> Vec<String> {
    let (host, port) = (&server.host, &server.port);
    let psql = std::env::var("PGVEIL_PSQL").unwrap_or_else(|_| {
        let debian = "/usr/lib/postgresql/15/bin/psql";
        if std::path::Path::new(debian).exists() {
            debian.into()
        } else {
            "psql".into()
        }
    });
    let user = std::env::var("PGVEIL_MASK_PG_USER").unwrap_or_else(|_| "postgres".into());
    let db = std::env::var("PGVEIL_MASK_PG_DB").unwrap_or_else(|_| "postgres".into());
    let mut child = Command::new(psql)
        .args(["-X", "-q", "-A", "-t", "-z", "-0", "-v"])
        .arg(if stop_on_error {
            "ON_ERROR_STOP=1"
        } else {
            "ON_ERROR_STOP=0"
        })
        .args(["-h", host, "-p", port, "-U", &user, "-d", &db])
        .env("PGCLIENTENCODING", "UTF8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let script = script.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
    let out = child.wait_with_output().expect("psql runs");
    let _ = writer.join();
    if stop_on_error {
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let mut fields: Vec<String> = text.split('\0').map(str::to_string).collect();
    // Every record ends with the separator, so the split leaves one empty tail.
    if fields.last().is_some_and(|f| f.is_empty()) {
        fields.pop();
    }
    fields
}

#[test]
fn sql_masks_equal_rust_masks_on_postgres() {
    let Some((server, _pg)) = target() else {
        return;
    };
    let cases = cases();
    let mut expected_text = Vec::new();
    let mut expected_bin = Vec::new();
    let mut text_script = String::from(
        "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET bytea_output = 'hex';\n",
    );
    let mut bin_script = String::from(
        "SET TimeZone = 'America/St_Johns'; SET DateStyle = 'SQL, DMY'; SET bytea_output = 'escape';\n\
         SET IntervalStyle = 'sql_standard'; SET standard_conforming_strings = off;\n\
         SET extra_float_digits = -15; SET search_path = pg_temp, public;\n",
    );
    for (i, c) in cases.iter().enumerate() {
        let canon = canonical_text(c.ty, c.input.as_bytes())
            .unwrap_or_else(|e| panic!("case {i} ({} {}): input rejected: {e}", c.mask, c.ty));
        let want = apply(c.mask, c.ty, &canon, &c.key)
            .unwrap_or_else(|e| panic!("case {i} ({} {}): {e}", c.mask, c.ty));
        let bin = text_to_binary(c.ty, &want).expect("mask output re-parses");
        let expr = sql_expr(
            c.mask,
            c.ty,
            &literal(c.ty, &c.input),
            Some(&hex::encode(&c.key)),
        )
        .unwrap_or_else(|e| panic!("case {i}: {e}"));
        text_script.push_str(&format!("SELECT {i}, {expr};\n"));
        let as_bytes = match send_fn(c.ty) {
            "" => format!("pg_catalog.convert_to(CAST({expr} AS pg_catalog.text), 'UTF8')"),
            f => format!("{f}({expr})"),
        };
        bin_script.push_str(&format!(
            "SELECT {i}, pg_catalog.encode({as_bytes}, 'hex');\n"
        ));
        expected_text.push(String::from_utf8(want).expect("UTF-8 mask output"));
        expected_bin.push(match send_fn(c.ty) {
            "" => hex::encode(&expected_text[i]),
            _ => hex::encode(bin),
        });
    }
    for ty in LogicalType::ALL {
        for mask in [
            Mask::Redact,
            Mask::Hash,
            Mask::Email,
            Mask::Partial { first: 1, last: 1 },
            Mask::Year,
            Mask::Round(10),
        ] {
            if mask.applies_to(ty) {
                let null = format!("CAST(NULL AS pg_catalog.{})", ty.sql_name());
                let expr = sql_expr(mask, ty, &null, Some("00")).expect("sql");
                text_script.push_str(&format!("SELECT -1, ({expr}) IS NULL;\n"));
            }
        }
    }
    let mut failures = Vec::new();
    for (pass, script, expected) in [
        ("text", &text_script, &expected_text),
        ("binary", &bin_script, &expected_bin),
    ] {
        let fields = psql(script, &server, true);
        let mut it = fields.chunks(2);
        let mut seen = 0;
        for rec in it.by_ref() {
            let [idx, got] = rec else {
                panic!("{pass}: odd field count")
            };
            if idx == "-1" {
                assert_eq!(got, "t", "{pass}: a mask of NULL is not NULL");
                continue;
            }
            let i: usize = idx.parse().expect("index");
            seen += 1;
            if got != &expected[i] {
                let c = &cases[i];
                failures.push(format!(
                    "{pass} case {i}: {} {} input {:?}: rust {:?} sql {:?}",
                    c.mask, c.ty, c.input, expected[i], got
                ));
            }
        }
        assert_eq!(seen, cases.len(), "{pass}: every case answered");
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{} cases equal in both passes", cases.len());
}

/// The codec accepts what Postgres's input functions accept (except the
/// documented refusals) and canonicalises to what Postgres prints.
#[test]
fn codec_agrees_with_postgres_input_functions() {
    let Some((server, _pg)) = target() else {
        return;
    };
    use LogicalType::*;
    let inputs: &[(LogicalType, &[&str])] = &[
        (
            Int4,
            &[
                " +007 ",
                "-0",
                "2147483647",
                "-2147483648",
                "2147483648",
                "1.0",
                "",
                "-",
                "0x1F",
                "1_0",
                "\t12\n",
                "00000000000000000000001",
            ],
        ),
        (
            Int8,
            &[
                "9223372036854775807",
                "-9223372036854775808",
                "9223372036854775808",
                "+5",
                "5 5",
            ],
        ),
        (
            Numeric,
            &[
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
                "+NaN",
                "inf",
                "-Infinity",
                "+inf",
                "1e-16384",
                "123e-16383",
                "00012.3400e-2",
                "- 5",
                "1.2.3",
                "1e+5",
                "  -1.000e3  ",
                "0e-5",
            ],
        ),
        (
            Bool,
            &[
                "t", "TRUE", "tr", "yes", "y", "on", "1", "f", "no", "of", "off", "0", "o", "2",
                "", " true ",
            ],
        ),
        (
            Bytea,
            &[
                "\\xDEAD beef",
                "\\x",
                "\\xabc",
                "a\\\\b\\001",
                "\\400",
                "\\q",
                "plain",
            ],
        ),
        (
            Date,
            &[
                "2024-01-05",
                " 2024-1-5 ",
                "2024-02-29",
                "2023-02-29",
                "0001-01-01",
                "9999-12-31",
                "infinity",
                "-INFINITY",
                "2024-13-01",
                "2024-00-10",
            ],
        ),
        (
            Timestamptz,
            &[
                "2024-01-02T03:04:05Z",
                "2024-01-02 03:04:05 +0530",
                "2024-01-02 03:04:05+5",
                "2024-01-02 03:04:05+15:59:59",
                "2024-01-02 03:04+00",
                "2024-01-01 24:00:00+00",
                "2024-01-02 03:04:05.1234565+00",
                "2016-12-31 23:59:60Z",
                "2024-01-02 03:04:05-01:30",
                "2024-01-02 03:04:05+16",
                "2024-01-02 24:00:00.1+00",
                "2024-01-02 23:59:60.5+00",
                "1999-12-31 23:59:59.9999999 UTC",
                "infinity",
                "2024-02-30 00:00:00Z",
            ],
        ),
    ];
    let mut script = String::from(
        "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET bytea_output = 'hex';\n",
    );
    let mut flat = Vec::new();
    for (ty, list) in inputs {
        for input in *list {
            let input = input.replace("\\t", "\t").replace("\\n", "\n");
            let i = flat.len();
            let text = format!(
                "pg_catalog.convert_from(pg_catalog.decode('{}', 'hex'), 'UTF8')",
                hex::encode(&input)
            );
            let cast = format!("CAST({text} AS pg_catalog.{})", ty.sql_name());
            let shown = if *ty == Numeric {
                format!("pg_catalog.trim_scale({cast})")
            } else {
                cast
            };
            script.push_str(&format!("SELECT {i}, {shown};\n"));
            flat.push((*ty, input));
        }
    }
    let fields = psql(&script, &server, false);
    let mut pg: Vec<Option<String>> = vec![None; flat.len()];
    for rec in fields.chunks(2) {
        if let [idx, val] = rec {
            pg[idx.parse::<usize>().expect("index")] = Some(val.clone());
        }
    }
    let mut failures = Vec::new();
    for (i, (ty, input)) in flat.iter().enumerate() {
        let ours =
            canonical_text(*ty, input.as_bytes()).map(|v| String::from_utf8_lossy(&v).into_owned());
        if ours.as_ref().ok() != pg[i].as_ref() {
            failures.push(format!(
                "{ty} {input:?}: ours {ours:?}, postgres {:?}",
                pg[i]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let accepted = pg.iter().filter(|v| v.is_some()).count();
    eprintln!(
        "codec: {} inputs, {accepted} accepted by both, the rest refused by both",
        flat.len()
    );
}

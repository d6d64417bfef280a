//! Results of the driver runs and the published matrix (`docs/drivers.md`).
//!
//! Every driver script prints one line per feature:
//! `RESULT {"driver":…,"version":…,"feature":…,"status":…,"detail":…}`
//! with status `pass`, `fail` or `refused` (a refusal the script expected:
//! pgveil refusing by design, with its SQLSTATE). The harness adds
//! `absent` for a driver whose toolchain or package is missing.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Outcome {
    pub driver: String,
    pub version: String,
    pub feature: String,
    pub status: String,
    #[serde(default)]
    pub detail: String,
}

impl Outcome {
    pub fn new(driver: &str, version: &str, feature: &str, status: &str, detail: &str) -> Self {
        Outcome {
            driver: driver.into(),
            version: version.into(),
            feature: feature.into(),
            status: status.into(),
            detail: detail.into(),
        }
    }
}

/// The `RESULT` lines of a script's output; anything else is ignored (and
/// shown on failure by the caller).
pub fn parse(stdout: &str) -> Vec<Outcome> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|j| {
            serde_json::from_str(j).unwrap_or_else(|e| {
                Outcome::new(
                    "?",
                    "?",
                    "?",
                    "fail",
                    &format!("bad RESULT line {j:?}: {e}"),
                )
            })
        })
        .collect()
}

/// Features in the order of the matrix, with what each one exercises.
pub const FEATURES: &[(&str, &str)] = &[
    (
        "params",
        "a row with a parameter of every logical type, read back equal",
    ),
    ("binary", "binary-format parameters and/or results"),
    ("lookup", "`WHERE t = $1` on the deterministic column"),
    (
        "prepared",
        "a server-side prepared statement executed repeatedly",
    ),
    (
        "pipeline",
        "several statements in flight before the first result",
    ),
    ("batch", "executemany / executeBatch of inserts"),
    ("copy_in", "COPY … FROM STDIN (text) into encrypted columns"),
    ("copy_out", "COPY … TO STDOUT decrypted"),
    ("cancel", "a cancel request for a running statement"),
    ("notify", "LISTEN/NOTIFY through the proxy"),
    (
        "masked",
        "the masked role reads masks with the column's type",
    ),
    (
        "orm",
        "ORM insert (multi-row VALUES), query, update, delete",
    ),
    ("metadata", "result and parameter metadata (types)"),
    (
        "server_prepared",
        "pgjdbc switching to a named statement after prepareThreshold",
    ),
    ("copy_binary", "COPY in binary format"),
    ("notify_masked", "LISTEN as the masked role"),
];

fn cell(o: Option<&Outcome>) -> String {
    match o {
        None => "—".into(),
        Some(o) => match o.status.as_str() {
            "pass" => "pass".into(),
            "refused" => "refused ¹".into(),
            "absent" => "absent".into(),
            other => other.to_string(),
        },
    }
}

/// The Markdown page. Deterministic for a given set of outcomes (no
/// timings, no dates), so regenerating it only changes it when a result,
/// a version or a feature changes.
pub fn render(outcomes: &[Outcome]) -> String {
    let mut drivers: Vec<(String, String)> = Vec::new();
    for o in outcomes {
        let key = (o.driver.clone(), o.version.clone());
        if !drivers.contains(&key) {
            drivers.push(key);
        }
    }
    let used: Vec<&(&str, &str)> = FEATURES
        .iter()
        .filter(|(f, _)| outcomes.iter().any(|o| o.feature == *f))
        .collect();
    let mut md = String::from(
        "# Driver matrix\n\n\
         Generated from the test run by `tests/drivers.rs` (`cargo test --test drivers`;\n\
         `PGVEIL_WRITE_DRIVERS_DOC=1` writes this file, otherwise it goes to\n\
         `target/drivers/drivers.md`). Each driver runs against a table with an\n\
         encrypted column of every logical type (text, varchar, date, timestamptz,\n\
         int4, int8, numeric, bool, bytea) and a plaintext column, through the real\n\
         proxy and a real PostgreSQL, as a role with plaintext access and as a role\n\
         that sees masks. Drivers are installed by `scripts/install-drivers.sh`.\n\n\
         `pass`: works and the values are checked; `refused ¹`: pgveil refuses by\n\
         design, with the reason below; `—`: the driver has no such API or the\n\
         feature is not exercised for it; `absent`: the driver's toolchain was\n\
         missing on the machine that generated this page.\n\n",
    );
    md.push_str("| driver | version |");
    for (f, _) in &used {
        md.push_str(&format!(" {f} |"));
    }
    md.push_str("\n|---|---|");
    for _ in &used {
        md.push_str("---|");
    }
    md.push('\n');
    for (d, v) in &drivers {
        md.push_str(&format!("| {d} | {v} |"));
        for (f, _) in &used {
            let o = outcomes
                .iter()
                .find(|o| &o.driver == d && &o.version == v && o.feature == *f);
            md.push_str(&format!(" {} |", cell(o)));
        }
        md.push('\n');
    }
    md.push_str("\n## Features\n\n");
    for (f, what) in &used {
        md.push_str(&format!("- `{f}`: {what}\n"));
    }
    md.push_str("\n## ¹ Refused by design\n\n");
    for o in outcomes.iter().filter(|o| o.status == "refused") {
        md.push_str(&format!("- {} `{}`: {}\n", o.driver, o.feature, o.detail));
    }
    let notes: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.status == "pass" && !o.detail.is_empty())
        .collect();
    if !notes.is_empty() {
        md.push_str("\n## Notes\n\n");
        for o in notes {
            md.push_str(&format!("- {} `{}`: {}\n", o.driver, o.feature, o.detail));
        }
    }
    md
}

//! Shared by the audit tests: the proxy under rules with an audit directory, reading and
//! summarising records, the CLI.

pub use std::path::{Path, PathBuf};
pub use std::process::Command;
pub use std::time::Duration;

pub use crate::common::*;
pub use serde_json::Value;

pub use crate::common::customers::{
    cluster, keygen, pgveil, proxy_with_rules, ADMIN, ANALYST, OUTSIDER, PW, SUPPORT, TABLE,
};

/// A database with `public.customers`, a keyring, and a proxy auditing to `audit`.
pub struct Env {
    pub db: String,
    pub proxy: Proxy,
    pub audit: PathBuf,
    pub dir: tempfile::TempDir,
}

/// `audit_dir`: where the audit goes (default: `<tmp>/audit`, not yet created, so the
/// writer's own directory creation is exercised). `config`: body of an `[audit]` section.
pub fn setup(tag: &str, audit_dir: Option<PathBuf>, config: Option<&str>, flags: &[&str]) -> Env {
    let c = cluster();
    let db = c.fresh_db(tag);
    c.sql(&db, TABLE);
    let dir = tempfile::tempdir().expect("tempdir");
    let keyring = keygen(dir.path());
    let audit = audit_dir.unwrap_or_else(|| dir.path().join("audit"));
    let mut args: Vec<String> = vec!["--audit-dir".into(), audit.display().to_string()];
    if let Some(body) = config {
        let path = dir.path().join("pgveil.toml");
        std::fs::write(&path, format!("[audit]\n{body}\n")).unwrap();
        args.push("--config".into());
        args.push(path.display().to_string());
    }
    args.extend(flags.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = proxy_with_rules(c, &keyring, &refs);
    Env {
        db,
        proxy,
        audit,
        dir,
    }
}

pub async fn connect_app(env: &Env, role: &str, app: &str) -> tokio_postgres::Client {
    let mut cfg = pg_config(env.proxy.port, &env.db, role, PW);
    cfg.application_name(app);
    connect_with(cfg)
        .await
        .unwrap_or_else(|e| panic!("connect as {role}: {e}\n{}", env.proxy.log()))
}

/// Every complete record in the directory, in chain order (segment name order).
pub fn read_records(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for p in segments(dir) {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        for line in text.split_inclusive('\n') {
            if !line.ends_with('\n') {
                continue; // a line being written right now
            }
            let v: Value = serde_json::from_str(line.trim_end())
                .unwrap_or_else(|e| panic!("{}: unparsable record {e}: {line}", p.display()));
            out.push(v);
        }
    }
    out
}

/// The records as an auditor reads them: each `pending` statement record (strict mode
/// writes a tagged statement's record before the statement runs) with the outcome, rows
/// and duration its later `outcomes` record gives it, and the `outcomes` records
/// themselves left out. Panics on an outcome for a record that is not pending before it,
/// or a second outcome for one: either is a writer bug.
pub fn merged(records: Vec<Value>) -> Vec<Value> {
    let mut pending: std::collections::HashMap<u64, usize> = Default::default();
    let mut out: Vec<Value> = Vec::new();
    for r in records {
        if r["kind"] == "outcomes" {
            let list = r["outcomes"].as_array().expect("outcomes list");
            assert!(!list.is_empty(), "empty outcomes record {r}");
            for o in list {
                let of = o["of"].as_u64().expect("outcome names a seq");
                let i = pending
                    .remove(&of)
                    .unwrap_or_else(|| panic!("outcome for {of}, no pending record before: {r}"));
                for k in ["rows", "duration_us", "outcome"] {
                    out[i][k] = o[k].clone();
                }
            }
            continue;
        }
        if r["outcome"] == "pending" {
            pending.insert(r["seq"].as_u64().expect("seq"), out.len());
        }
        out.push(r);
    }
    out
}

/// Segment files in chain order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(x) => x.clone(),
        Value::Null => "<null>".into(),
        other => other.to_string(),
    }
}

/// Records of `kind` whose application_name is `app`, outcomes merged in.
pub fn records_of(dir: &Path, app: &str, kind: &str) -> Vec<Value> {
    merged(read_records(dir))
        .into_iter()
        .filter(|r| r["kind"] == kind && r["application_name"] == app)
        .collect()
}

/// Waits until `n` statement records of `app` exist, none still pending (untagged
/// statements and outcomes are recorded without waiting for the disk), then returns them.
pub fn wait_statements(env: &Env, app: &str, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    wait_until(Duration::from_secs(5), || {
        got = records_of(&env.audit, app, "statement");
        got.len() >= n && got.iter().all(|r| r["outcome"] != "pending")
    });
    got
}

/// One statement record in a comparable form:
/// `kind | fingerprint | tables | col:action[(mask)],… (sorted) | rows=N | outcome`.
pub fn summary(r: &Value) -> String {
    let tables: Vec<String> = r["tables"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t.as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default();
    let cols = cols(r);
    format!(
        "{} | {} | [{}] | [{}] | rows={} | {}",
        s(r, "statement_kind"),
        s(r, "fingerprint"),
        tables.join(","),
        cols.join(","),
        r["rows"],
        s(r, "outcome")
    )
}

/// Collects record mismatches so one run reports every wrong record, not just the first.
#[derive(Default)]
pub struct Mismatches(pub Vec<String>);

impl Mismatches {
    pub fn check<T: AsRef<str> + std::fmt::Debug>(&mut self, got: Vec<String>, want: Vec<T>) {
        let want: Vec<String> = want.iter().map(|w| w.as_ref().to_string()).collect();
        if got != want {
            self.0.push(format!(
                "records differ:\n  got:  {got:#?}\n  want: {want:#?}"
            ));
        }
    }

    pub fn finish(self) {
        assert!(self.0.is_empty(), "{}", self.0.join("\n"));
    }
}

pub fn summaries(rs: &[Value]) -> Vec<String> {
    rs.iter().map(summary).collect()
}

/// psql through the proxy with `application_name` = `app`; `Err` when it had not finished
/// after `limit` (it is killed then).
pub fn psql_app(
    env: &Env,
    role: &str,
    app: &str,
    args: &[&str],
    limit: Duration,
) -> Result<ToolOut, String> {
    let mut cmd = client_cmd("psql", env.proxy.port, &env.db, role, PW);
    cmd.env("PGAPPNAME", app).arg("-X").args(args);
    let mut child = cmd.spawn().expect("spawn psql");
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait psql").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("psql output");
            return Err(format!(
                "psql {args:?} still running after {limit:?}; stderr so far: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child.wait_with_output().expect("psql output").into())
}

/// Asserts the session-level facts every statement record of `app` carries.
pub fn assert_who(rs: &[Value], role: &str, db: &str) {
    for r in rs {
        assert_eq!(r["v"], 3, "{r}");
        assert_eq!(s(r, "login_role"), role, "{r}");
        assert_eq!(r["effective_roles"], serde_json::json!([role]), "{r}");
        assert_eq!(s(r, "database"), db, "{r}");
        assert!(s(r, "client_addr").starts_with("127.0.0.1:"), "{r}");
        assert!(r["session_id"].is_string(), "{r}");
        assert!(
            r["rules_version"].as_str().is_some_and(|v| !v.is_empty()),
            "{r}"
        );
        assert!(r["duration_us"].is_u64(), "{r}");
    }
}

pub const ZELDA_EMAIL: &str = "zelda.q@audit-test.example";
pub const ZELDA_SSN: &str = "111-22-3333";
pub const ZELDA_PHONE: &str = "+1-202-555-0177";
pub const ZELDA_PHONE2: &str = "+1-202-555-0188";
pub const YORICK: (&str, &str, &str) = (
    "Yorick Pennyfeather",
    "yorick.p@audit-test.example",
    "222-33-4444",
);
pub const XAVIA: (&str, &str, &str) = (
    "Xavia Thornbury",
    "xavia.t@audit-test.example",
    "333-44-5555",
);
pub const COPY_ROWS: [(&str, &str, &str); 2] = [
    (
        "Wilhelmina Copperfield",
        "wilhelmina.c@audit-test.example",
        "444-55-6666",
    ),
    (
        "Vasco Drummondine",
        "vasco.d@audit-test.example",
        "555-66-7777",
    ),
];
pub const MISSING_EMAIL: &str = "nobody.here@audit-test.example";
pub const UNTAGGED_NUMBER: &str = "7319864205";

pub fn rows_of(msgs: &[tokio_postgres::SimpleQueryMessage]) -> usize {
    msgs.iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count()
}

/// Searches every file in `dir` (not only segments) for each secret, as written, in ASCII
/// lower case, and hex-encoded (both cases).
pub fn assert_no_values(dir: &Path, secrets: &[&str]) {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert!(
        !segments(dir).is_empty(),
        "no segments in {}",
        dir.display()
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let lower = text.to_ascii_lowercase();
        for secret in secrets {
            let forms = [
                secret.to_string(),
                secret.to_ascii_lowercase(),
                hex::encode(secret),
                hex::encode(secret).to_ascii_uppercase(),
            ];
            for form in &forms {
                assert!(
                    !text.contains(form.as_str()) && !lower.contains(&form.to_ascii_lowercase()),
                    "value {secret:?} (as {form:?}) found in {}",
                    f.display()
                );
            }
        }
    }
}

/// Stops the proxy cleanly so nothing is being appended while files are tampered with.
pub fn stop(env: &mut Env) {
    env.proxy.signal(libc::SIGTERM);
    assert!(
        env.proxy.wait_exit(Duration::from_secs(20)).is_some(),
        "proxy did not exit on SIGTERM"
    );
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

pub fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_string()
}

pub fn lines_of(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn put_lines(p: &Path, lines: &[String]) {
    std::fs::write(
        p,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

/// `pgveil audit verify DIR`: (exit code, stdout, stderr).
pub fn verify_cli(dir: &Path) -> (i32, String, String) {
    let out = pgveil(&["audit", "verify", dir.to_str().unwrap()]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The record's `(column, action)` pairs, sorted, mask appended as `action(mask)`.
pub fn cols(r: &Value) -> Vec<String> {
    let mut v: Vec<String> = r["columns"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    let name = s(c, "column");
                    let name = name.strip_prefix("public.customers.").unwrap_or(&name);
                    match &c["mask"] {
                        Value::String(m) => format!("{name}:{}({m})", s(c, "action")),
                        _ => format!("{name}:{}", s(c, "action")),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

//! The driver matrix (issue 11): real drivers, in the languages applications
//! use, against encrypted and masked tables through the real proxy.
//!
//! One PostgreSQL and one proxy serve every driver; each language runs in one
//! process (Python: psycopg 3, psycopg2, asyncpg, SQLAlchemy 2; Node: pg,
//! postgres.js; Java: pgjdbc), alongside tokio-postgres in this process and
//! psql/pgbench, all at once. Each reports one outcome per feature; the test
//! fails on any `fail`, and writes the matrix (`target/drivers/drivers.md`,
//! or `docs/drivers.md` with `PGVEIL_WRITE_DRIVERS_DOC=1`).
//!
//! A driver whose toolchain or package is missing (see
//! `scripts/install-drivers.sh`) is reported as absent, not failed, unless
//! `PGVEIL_REQUIRE_DRIVERS=1` (then absence fails too).

mod common;
#[path = "drivers/findings.rs"]
mod findings;
#[path = "drivers/fixture.rs"]
mod fixture;
#[path = "drivers/matrix.rs"]
mod matrix;
#[path = "drivers/tokio_pg.rs"]
mod tokio_pg;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fixture::{repo, Fixture};
use matrix::Outcome;

/// A script's output, or why it could not run.
fn run_script(mut cmd: Command, fx: &Fixture, limit: Duration) -> Result<String, String> {
    cmd.envs(fx.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let pid = child.id() as i32;
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.map_err(|e| e.to_string())?,
        Err(_) => {
            // SAFETY: plain syscall on our own child's pid.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            return Err(format!("killed after {limit:?}"));
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "{:?} finished in {:.1}s ({})",
        cmd.get_program(),
        start.elapsed().as_secs_f64(),
        out.status
    );
    if !out.status.success() || !stdout.contains("RESULT ") {
        return Err(format!(
            "exit {}; stdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        ));
    }
    if !stderr.trim().is_empty() {
        eprintln!("stderr of {:?}:\n{stderr}", cmd.get_program());
    }
    Ok(stdout)
}

/// Runs one language's script, or reports its drivers absent / failed.
fn language(
    fx: &Fixture,
    drivers: &[&str],
    program: Option<PathBuf>,
    why_absent: &str,
    args: &[&str],
) -> Vec<Outcome> {
    let Some(program) = program else {
        return drivers
            .iter()
            .map(|d| Outcome::new(d, "-", "params", "absent", why_absent))
            .collect();
    };
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(repo());
    match run_script(cmd, fx, Duration::from_secs(120)) {
        Ok(stdout) => matrix::parse(&stdout),
        Err(e) => drivers
            .iter()
            .map(|d| Outcome::new(d, "?", "params", "fail", &e))
            .collect(),
    }
}

fn existing(p: PathBuf) -> Option<PathBuf> {
    p.exists().then_some(p)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn python(fx: &Fixture) -> Vec<Outcome> {
    let venv = repo().join("target/drivers/venv/bin/python");
    language(
        fx,
        &["psycopg", "psycopg2", "asyncpg", "sqlalchemy"],
        existing(venv),
        "no target/drivers/venv (python3 absent or scripts/install-drivers.sh not run)",
        &["tests/drivers/python_drivers.py"],
    )
}

fn node(fx: &Fixture) -> Vec<Outcome> {
    let have = repo().join("target/drivers/node/node_modules/pg").exists();
    let node = on_path("node").filter(|_| have);
    language(
        fx,
        &["node-pg", "postgres.js"],
        node,
        "node or target/drivers/node/node_modules absent",
        &["tests/drivers/node_drivers.js"],
    )
}

fn java(fx: &Fixture) -> Vec<Outcome> {
    let jar = Path::new("/usr/share/java/postgresql.jar");
    let (Some(javac), Some(java)) = (on_path("javac"), on_path("java")) else {
        return vec![Outcome::new(
            "pgjdbc",
            "-",
            "params",
            "absent",
            "java/javac absent",
        )];
    };
    if !jar.exists() {
        return vec![Outcome::new(
            "pgjdbc",
            "-",
            "params",
            "absent",
            "libpostgresql-jdbc-java absent",
        )];
    }
    let classes = repo().join("target/drivers/java");
    std::fs::create_dir_all(&classes).expect("classes dir");
    let out = Command::new(javac)
        .args(["-d"])
        .arg(&classes)
        .args(["-cp", jar.to_str().expect("utf8")])
        .arg(repo().join("tests/drivers/JdbcDrivers.java"))
        .output()
        .expect("run javac");
    if !out.status.success() {
        return vec![Outcome::new(
            "pgjdbc",
            "?",
            "params",
            "fail",
            &format!("javac: {}", String::from_utf8_lossy(&out.stderr)),
        )];
    }
    let cp = format!("{}:{}", classes.display(), jar.display());
    language(
        fx,
        &["pgjdbc"],
        Some(java),
        "",
        &[
            "-Xshare:auto",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            &cp,
            "JdbcDrivers",
        ],
    )
}

#[test]
fn driver_matrix() {
    let fx = fixture::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut all: Vec<Outcome> = Vec::new();
    std::thread::scope(|s| {
        let py = s.spawn(|| python(&fx));
        let js = s.spawn(|| node(&fx));
        let jv = s.spawn(|| java(&fx));
        let cli = s.spawn(|| tokio_pg::libpq_tools(&fx));
        let tk = rt.block_on(tokio_pg::run(&fx));
        for h in [py, js, jv, cli] {
            all.extend(h.join().unwrap_or_else(|_| {
                vec![Outcome::new(
                    "?",
                    "?",
                    "params",
                    "fail",
                    "driver thread panicked",
                )]
            }));
        }
        all.extend(tk);
    });
    // At rest: the plaintext written by any driver is nowhere in the tables.
    for t in fixture::TABLES {
        let raw = fx.at_rest(t);
        // (Only spellings that cannot occur in hex: digits alone could.)
        for secret in [
            "alice@example.com",
            "bob@example.org",
            "copy@example.com",
            "1990-01-02",
        ] {
            if raw.contains(secret) {
                all.push(Outcome::new(
                    t,
                    "-",
                    "params",
                    "fail",
                    &format!("plaintext {secret:?} at rest in drv_{t}"),
                ));
            }
        }
    }
    let md = matrix::render(&all);
    let out_dir = repo().join("target/drivers");
    std::fs::create_dir_all(&out_dir).expect("target/drivers");
    std::fs::write(out_dir.join("drivers.md"), &md).expect("write matrix");
    // The committed page is regenerated by hand (below), never compared as
    // a failure: a machine without Java would otherwise fail CI for a doc.
    let doc = repo().join("docs/drivers.md");
    if std::env::var("PGVEIL_WRITE_DRIVERS_DOC").as_deref() == Ok("1") {
        std::fs::write(&doc, &md).expect("write docs/drivers.md");
    } else if std::fs::read_to_string(&doc).ok().as_deref() != Some(md.as_str()) {
        eprintln!(
            "note: docs/drivers.md differs from this run's matrix (target/drivers/drivers.md); \
             regenerate with PGVEIL_WRITE_DRIVERS_DOC=1 cargo test --test drivers"
        );
    }
    eprintln!("{md}");
    let require = std::env::var("PGVEIL_REQUIRE_DRIVERS").as_deref() == Ok("1");
    let bad: Vec<String> = all
        .iter()
        .filter(|o| o.status == "fail" || (require && o.status == "absent"))
        .map(|o| {
            format!(
                "{} {} {}: {} {}",
                o.driver, o.version, o.feature, o.status, o.detail
            )
        })
        .collect();
    let absent: Vec<&str> = all
        .iter()
        .filter(|o| o.status == "absent")
        .map(|o| o.driver.as_str())
        .collect();
    if !absent.is_empty() {
        eprintln!(
            "drivers absent (not failed): {absent:?}; install with scripts/install-drivers.sh"
        );
    }
    assert!(
        bad.is_empty(),
        "driver failures:\n{}\n----- pgveil log -----\n{}",
        bad.join("\n"),
        fx.proxy.log()
    );
    // A matrix that ran nothing proves nothing.
    let passed = all.iter().filter(|o| o.status == "pass").count();
    assert!(passed >= 20, "only {passed} passing outcomes");
}

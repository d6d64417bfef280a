//! `pgveil check` as CI runs it: `--format json`, exit codes (0 clean,
//! 1 findings, 2 usage or connection error), `--config FILE`, and
//! `--upstream` connecting as libpq would (sslmode, PG* environment,
//! password file), over TLS to a PostgreSQL that requires it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::customers::{cluster, keygen, rules_dir, TABLE};
use common::*;

/// `pgveil check ARGS` with a clean libpq environment plus `envs`.
fn check(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgveil"));
    cmd.arg("check").args(args);
    for v in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGPASSFILE",
        "PGVEIL_KEYRING",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("HOME", "/nonexistent").envs(envs.iter().copied());
    cmd.output().expect("run pgveil check")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn rules() -> String {
    rules_dir().to_str().expect("utf8").to_string()
}

#[test]
fn json_findings_and_exit_codes() {
    let out = check(&["--rules", &rules(), "--format", "json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let j = json(&out);
    assert_eq!(j["findings"].as_array().map(Vec::len), Some(0), "{j}");
    assert!(j["tagged_columns"].as_u64().is_some_and(|n| n > 0), "{j}");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[column]]\ntable = \"public.t\"\n",
    )
    .unwrap();
    let out = check(
        &["--rules", dir.path().to_str().unwrap(), "--format", "json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let j = json(&out);
    let f = &j["findings"][0];
    assert_eq!(f["kind"], "rules", "{j}");
    assert!(
        f["file"].as_str().is_some_and(|p| p.ends_with("bad.toml")),
        "{j}"
    );
    assert!(f["line"].as_u64().is_some(), "{j}");

    // A database that cannot be reached is not a finding: exit 2.
    let url = format!("postgres://127.0.0.1:{}?sslmode=disable", free_port());
    let out = check(
        &["--rules", &rules(), "--upstream", &url, "--format", "json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(json(&out)["error"].as_str().is_some(), "{out:?}");
    // Usage errors are 2 as well (clap).
    let out = check(&["--format", "json"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn a_config_file_is_validated_with_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keyring = keygen(dir.path());
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "listen = \"127.0.0.1:6432\"\nrules = \"{}\"\nkeyring = \"{}\"\nadmin_roles = [\"ops\"]\nclient_idle_timeout_secs = 600\n",
            rules(),
            keyring.display()
        ),
    )
    .unwrap();
    let out = check(&["--config", good.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"nope\"\nlog_format = \"xml\"\nadmin_auth_database = \"pgveil\"\n",
    )
    .unwrap();
    let out = check(
        &["--config", bad.to_str().unwrap(), "--format", "json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let j = json(&out);
    let msgs: Vec<&str> = j["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["kind"] == "config")
        .filter_map(|f| f["message"].as_str())
        .collect();
    assert_eq!(msgs.len(), 3, "{j}");
    // A world-readable keyring named by the config is a keyring finding.
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(
        &["--config", good.to_str().unwrap(), "--format", "json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(json(&out)["findings"][0]["kind"], "keyring", "{out:?}");
}

/// A database with the customers table, readable by the TLS-only role.
fn tls_db(c: &Cluster) -> String {
    let db = c.fresh_db("check_tls");
    c.sql(&db, TABLE);
    c.sql(
        &db,
        &format!("GRANT SELECT ON public.customers TO {TLS_ONLY_USER};"),
    );
    db
}

#[test]
fn check_upstream_connects_over_tls_when_the_server_requires_it() {
    let c = cluster();
    let db = tls_db(c);
    let port = c.pg.port().to_string();
    let ca = c.certs.ca.to_str().expect("utf8").to_string();
    let creds = [("PGUSER", TLS_ONLY_USER), ("PGPASSWORD", TLS_ONLY_PASSWORD)];
    let run = |url: &str, extra: &[(&str, &str)]| {
        let mut envs = creds.to_vec();
        envs.extend_from_slice(extra);
        check(
            &["--rules", &rules(), "--upstream", url, "--format", "json"],
            &envs,
        )
    };
    let url = format!("postgres://localhost:{port}/{db}?sslmode=verify-full&sslrootcert={ca}");
    let out = run(&url, &[]);
    assert_eq!(out.status.code(), Some(0), "verify-full: {out:?}");
    // The role is refused without TLS: proof the TLS connection was real.
    let out = run(
        &format!("postgres://localhost:{port}/{db}?sslmode=disable"),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "disable must fail: {out:?}");
    for mode in ["require", "verify-ca", "prefer", "allow"] {
        let url = format!("postgres://127.0.0.1:{port}/{db}?sslmode={mode}&sslrootcert={ca}");
        assert_eq!(run(&url, &[]).status.code(), Some(0), "{mode}");
    }
    // A CA that did not sign the server's certificate fails verification.
    let other = TestCerts::generate();
    let url = format!(
        "postgres://localhost:{port}/{db}?sslmode=verify-full&sslrootcert={}",
        other.ca.display()
    );
    assert_eq!(
        run(&url, &[]).status.code(),
        Some(2),
        "a foreign CA must fail"
    );
    // Everything from the libpq environment.
    let out = run(
        "postgres://",
        &[
            ("PGHOST", "localhost"),
            ("PGPORT", &port),
            ("PGDATABASE", &db),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", &ca),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "libpq env: {out:?}");

    // explain --upstream connects the same way (TLS, verify-full).
    let url = format!("postgres://localhost:{port}/{db}?sslmode=verify-full&sslrootcert={ca}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgveil"));
    cmd.args([
        "explain",
        "--rules",
        &rules(),
        "--role",
        "support",
        "--upstream",
        &url,
    ])
    .arg("SELECT email FROM customers")
    .env_remove("PGSSLMODE")
    .envs(creds);
    let out = cmd.output().expect("run pgveil explain");
    assert!(
        out.status.success(),
        "explain over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_upstream_reads_the_password_file() {
    let c = cluster();
    let db = tls_db(c);
    let port = c.pg.port();
    let dir = tempfile::tempdir().expect("tempdir");
    let pgpass = dir.path().join("pgpass");
    std::fs::write(
        &pgpass,
        format!("# test\nlocalhost:{port}:{db}:{TLS_ONLY_USER}:{TLS_ONLY_PASSWORD}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = format!("postgres://{TLS_ONLY_USER}@localhost:{port}/{db}?sslmode=require");
    let env = [("PGPASSFILE", pgpass.to_str().unwrap())];
    let out = check(&["--rules", &rules(), "--upstream", &url], &env);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // libpq ignores a password file others can read; so does pgveil.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(&["--rules", &rules(), "--upstream", &url], &env);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

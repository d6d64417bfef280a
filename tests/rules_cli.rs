//! Rules and DBA tooling through the real proxy and CLI: hot reload (file
//! change and SIGHUP semantics), `pgveil check --upstream`, `pgveil explain`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::customers::*;
use common::*;

#[tokio::test]
async fn rules_hot_reload_on_file_change_keeps_old_rules_when_invalid() {
    let c = cluster();
    let db = c.fresh_db("enc_reload");
    c.sql(&db, TABLE);
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let original = std::fs::read_to_string(rules_dir().join("customers.toml")).unwrap();
    std::fs::write(rules.join("customers.toml"), &original).unwrap();
    let keyring = dir.path().join("k.toml");
    assert!(pgveil(&["keygen", "--out", keyring.to_str().unwrap()])
        .status
        .success());
    let proxy = Proxy::start(
        &c.url(),
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--keyring",
            keyring.to_str().unwrap(),
        ],
    );
    let env = Env {
        db,
        proxy,
        keyring,
        _dir: dir,
    };
    let admin = as_role(&env, ADMIN).await;
    insert_alice(&admin).await;
    let analyst = as_role(&env, ANALYST).await;
    // analyst: phone is `null` under the original rules.
    let row = analyst
        .query_one("SELECT phone FROM customers", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None);
    // Prepared before the reload, executed after it.
    let prepared = analyst
        .prepare("SELECT phone FROM customers")
        .await
        .unwrap();

    // An invalid edit is rejected and counted; the old rules stay in force.
    std::fs::write(
        rules.join("customers.toml"),
        original.replace("type = \"date\"", "type = \"dat\""),
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            metric(env.proxy.metrics_port, "pgveil_rules_reload_failures_total") >= 1.0
        }),
        "{}",
        env.proxy.log()
    );
    let row = analyst
        .query_one("SELECT phone FROM customers", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None);

    // A valid edit: analyst now sees the phone in plaintext, from the next statement
    // of the already open session.
    let edited = original.replacen("analyst = \"null\"", "analyst = \"plaintext\"", 1);
    assert_ne!(edited, original);
    std::fs::write(rules.join("customers.toml"), edited).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || env
            .proxy
            .log()
            .matches("rules reloaded")
            .count()
            >= 1),
        "{}",
        env.proxy.log()
    );
    let row = analyst
        .query_one("SELECT phone FROM customers", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some(ALICE.2));
    let row = analyst.query_one(&prepared, &[]).await.unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some(ALICE.2),
        "cached statement kept old rules"
    );

    // And back to `deny`: the statement prepared earlier is now refused.
    let denied = original.replacen("analyst = \"null\"", "analyst = \"deny\"", 1);
    std::fs::write(rules.join("customers.toml"), denied).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || env
            .proxy
            .log()
            .matches("rules reloaded")
            .count()
            >= 2),
        "{}",
        env.proxy.log()
    );
    let e = analyst
        .query_one(&prepared, &[])
        .await
        .expect_err("denied after reload");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
}

#[test]
fn check_against_live_schema_reports_plaintext_left_behind() {
    let env = setup("enc_check");
    let c = cluster();
    // One row written around pgveil, straight into the bytea column.
    c.sql(&env.db, "INSERT INTO customers (full_name, email) VALUES ('Raw', 'raw-left-behind@example.com'::bytea)");
    let run = |rules: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_pgveil"))
            .args([
                "check",
                "--rules",
                rules.to_str().unwrap(),
                "--upstream",
                &c.url(),
                "--keyring",
            ])
            .arg(&env.keyring)
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", c.pg.superuser_password())
            .env("PGDATABASE", &env.db)
            .output()
            .expect("run check")
    };
    let out = run(&rules_dir());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("public.customers.email") && err.contains("1 of 1"),
        "{err}"
    );
    assert!(!err.contains("raw-left-behind"), "value printed: {err}");

    // A rule naming a column the table does not have, and a non-bytea encrypted column.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[column]]\ntable = \"public.customers\"\nname = \"nickname\"\ntype = \"text\"\n\n\
         [[column]]\ntable = \"public.customers\"\nname = \"full_name\"\ntype = \"text\"\nencrypt = \"randomized\"\n",
    )
    .unwrap();
    let out = run(dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nickname") && err.contains("bytea"), "{err}");
}

#[test]
fn explain_offline_and_with_live_schema() {
    let env = setup("enc_explain");
    let c = cluster();
    let explain = |role: &str, sql: &str, live: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgveil"));
        cmd.args([
            "explain",
            "--rules",
            rules_dir().to_str().unwrap(),
            "--role",
            role,
        ]);
        if live {
            cmd.args(["--upstream", &c.url()])
                .env("PGUSER", "postgres")
                .env("PGPASSWORD", c.pg.superuser_password())
                .env("PGDATABASE", &env.db);
        }
        let out = cmd.arg(sql).output().expect("run explain");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Offline: the rules' verdict per tagged column, and no literal echoed.
    let off = explain(
        SUPPORT,
        "SELECT full_name FROM customers WHERE email = 'secret@example.com'",
        false,
    );
    assert!(
        off.contains("partial(1,0)") && off.contains("full_name"),
        "{off}"
    );
    assert!(!off.contains("secret@example.com"), "{off}");
    // With the live schema: support's statement is rewritten into the masked derived table.
    let live = explain(SUPPORT, "SELECT full_name FROM customers", true);
    assert!(!live.contains("REFUSED"), "{live}");
    assert!(live.to_lowercase().contains("masked"), "{live}");
    // analyst reading ssn is refused, with the reason.
    let denied = explain(ANALYST, "SELECT ssn FROM customers", true);
    assert!(
        denied.contains("REFUSED") && denied.contains("42501"),
        "{denied}"
    );
    // admin: forwarded as is.
    let admin = explain(ADMIN, "SELECT full_name FROM customers", true);
    assert!(admin.contains("unrestricted"), "{admin}");
}

#[test]
fn serve_refuses_a_readable_or_malformed_keyring() {
    use std::os::unix::fs::PermissionsExt;
    let c = cluster();
    let dir = tempfile::tempdir().unwrap();
    let keyring = keygen(dir.path());
    let serve = |k: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_pgveil"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "off",
                "--upstream",
                &c.url(),
            ])
            .arg("--rules")
            .arg(rules_dir())
            .arg("--keyring")
            .arg(k)
            .output()
            .expect("run serve")
    };
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = serve(&keyring);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with a world-readable keyring"
    );
    assert!(err.contains("chmod 600"), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "format = 1\nactive = 1\n[[key]]\nid = 1\nmaterial = \"zz\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = serve(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a malformed keyring");
    assert!(err.contains("bad.toml") && !err.contains("\"zz\""), "{err}");
}

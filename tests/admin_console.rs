//! The admin console: `psql -d pgveil` to the proxy port as a role in
//! `admin_roles`, authenticated by PostgreSQL, answered by pgveil itself.

mod common;

use std::time::Duration;

use common::customers::{self, cluster, keygen, pgveil, ADMIN, PW, SUPPORT};
use common::*;

/// One console command through psql, unaligned and tuples only (`a|b|c`).
fn console(port: u16, user: &str, sql: &str) -> ToolOut {
    psql(port, "pgveil", user, PW, &["-A", "-t", "-c", sql], None)
}

fn ok(out: &ToolOut, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}{}", out.stdout, out.stderr);
    out.stdout.clone()
}

/// The hex material of every key in a keyring file (what must never leak).
fn materials(keyring: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(keyring).expect("read keyring");
    let m: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("material"))
        .map(|l| {
            l.trim_start_matches([' ', '='])
                .trim()
                .trim_matches('"')
                .to_string()
        })
        .collect();
    assert!(!m.is_empty() && m.iter().all(|k| k.len() == 64), "{text}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_clients_rules_and_keys_but_never_key_material() {
    let c = cluster();
    let db = c.fresh_db("admin_console");
    let dir = tempfile::tempdir().expect("tempdir");
    let keyring = keygen(dir.path());
    let audit = dir.path().join("audit");
    let proxy = customers::proxy_with_rules(
        c,
        &keyring,
        &[
            "--admin-roles",
            &format!("{ADMIN},ops"),
            "--audit-dir",
            audit.to_str().expect("utf8"),
        ],
    );
    // An application session to be listed.
    let mut cfg = pg_config(proxy.port, &db, SUPPORT, PW);
    cfg.application_name("support-app");
    let app = connect_with(cfg).await.expect("connect as support");
    app.simple_query("SELECT 1").await.expect("select");

    let clients = ok(&console(proxy.port, ADMIN, "SHOW CLIENTS"), "SHOW CLIENTS");
    let rows: Vec<Vec<&str>> = clients.lines().map(|l| l.split('|').collect()).collect();
    // id|client_addr|login_role|database|application_name|state|since|statements|rules_version
    let me = rows
        .iter()
        .find(|r| r.get(2) == Some(&ADMIN) && r.get(3) == Some(&"pgveil"))
        .unwrap_or_else(|| panic!("the admin is not in SHOW CLIENTS:\n{clients}"));
    assert_eq!(me[4], "pgveil-tests", "{clients}");
    assert_eq!(me[5], "active", "{clients}");
    assert!(me[1].starts_with("127.0.0.1:"), "{clients}");
    let other = rows
        .iter()
        .find(|r| r.get(2) == Some(&SUPPORT))
        .unwrap_or_else(|| panic!("the support session is not listed:\n{clients}"));
    assert_eq!(
        (other[3], other[4], other[5]),
        (db.as_str(), "support-app", "idle")
    );
    assert!(
        other[7].parse::<u64>().expect("statements") >= 1,
        "{clients}"
    );
    assert!(!other[8].is_empty(), "rules version: {clients}");

    let keys = ok(&console(proxy.port, ADMIN, "show keys;"), "SHOW KEYS");
    let key_rows: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(key_rows.len(), 1, "{keys}");
    assert!(
        key_rows[0].ends_with("|t") || key_rows[0].ends_with("|true"),
        "{keys}"
    );
    let rules = ok(&console(proxy.port, ADMIN, "SHOW RULES"), "SHOW RULES");
    assert!(rules.contains("public.customers.email"), "{rules}");
    assert!(rules.contains("admin=plaintext"), "{rules}");
    let mut everything = keys.clone() + &rules;
    for cmd in [
        "SHOW CONFIG",
        "SHOW STATS",
        "SHOW AUDIT",
        "SHOW VERSION",
        "SHOW HELP",
    ] {
        everything.push_str(&ok(&console(proxy.port, ADMIN, cmd), cmd));
    }
    assert!(
        everything.contains("pgveil_client_connections_total|"),
        "{everything}"
    );
    assert!(everything.contains("healthy|true"), "{everything}");
    assert!(everything.contains("fsync_lag_records|"), "{everything}");
    assert!(everything.contains("admin_roles|admin,ops"), "{everything}");
    let bad = console(proxy.port, ADMIN, "SELECT 1");
    assert!(
        !bad.status.success() && bad.stderr.contains("unknown command"),
        "{bad:?}"
    );

    let secrets = materials(&keyring);
    for k in &secrets {
        assert!(
            !everything.to_lowercase().contains(&k.to_lowercase()),
            "key material shown"
        );
    }
    // Every command is audited, under its canonical name, with no secret.
    let audit_s = audit.to_str().expect("utf8").to_string();
    let mut records = String::new();
    let seen = wait_until(Duration::from_secs(20), || {
        records =
            String::from_utf8_lossy(&pgveil(&["audit", "search", &audit_s]).stdout).into_owned();
        records.contains("pgveil admin: SHOW KEYS") && records.contains("pgveil admin: unknown")
    });
    assert!(seen, "console commands not audited:\n{records}");
    assert!(records.contains("\"outcome\":\"42601\""), "{records}");
    for k in &secrets {
        assert!(
            !records.to_lowercase().contains(&k.to_lowercase()),
            "key material audited"
        );
    }
    drop(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_roles_get_42501_and_the_console_speaks_only_simple_query() {
    let c = cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    let keyring = keygen(dir.path());
    let proxy = customers::proxy_with_rules(c, &keyring, &["--admin-roles", ADMIN]);
    let e = connect(proxy.port, "pgveil", SUPPORT, PW)
        .await
        .expect_err("a non-admin role must be refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    // Authentication is PostgreSQL's: a wrong password fails as it would directly.
    let e = connect(proxy.port, "pgveil", ADMIN, "wrong-password")
        .await
        .expect_err("a wrong password must be refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");
    let out = console(proxy.port, SUPPORT, "SHOW CLIENTS");
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("admin console"), "{out:?}");

    let admin = connect(proxy.port, "pgveil", ADMIN, PW)
        .await
        .expect("admin");
    let rows = admin
        .simple_query("SHOW VERSION")
        .await
        .expect("simple query");
    let version = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert!(version.is_some_and(|v| v.starts_with("pgveil ")));
    // The extended protocol ends the console session (FATAL 0A000).
    let e = admin
        .query("SHOW VERSION", &[])
        .await
        .expect_err("extended refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{e}");
}

const GOOD_RULE: &str = "[[column]]\ntable = \"public.people\"\nname = \"full_name\"\ntype = \"text\"\nclass = \"name\"\n[column.access]\nadmin = \"plaintext\"\ndefault = \"deny\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_new_rules_and_reports_a_rejected_reload() {
    let c = cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    // admin_roles from the environment alone (12-factor).
    let proxy = Proxy::start_with_env(
        &c.url(),
        &["--rules", rules.to_str().expect("utf8")],
        &[("PGVEIL_ADMIN_ROLES", ADMIN)],
    );
    let before = ok(&console(proxy.port, ADMIN, "SHOW RULES"), "SHOW RULES");
    assert!(!before.contains("public.people"), "{before}");

    std::fs::write(rules.join("people.toml"), GOOD_RULE).expect("write rules");
    let out = console(proxy.port, ADMIN, "RELOAD");
    assert!(out.status.success(), "{out:?}");
    let after = ok(&console(proxy.port, ADMIN, "SHOW RULES"), "SHOW RULES");
    assert!(after.contains("public.people.full_name"), "{after}");
    assert!(after.contains("admin=plaintext"), "{after}");

    std::fs::write(rules.join("broken.toml"), "[[column]]\ntable = 1\n").expect("write");
    let out = console(proxy.port, ADMIN, "RELOAD");
    assert!(
        !out.status.success(),
        "a broken rule file must fail RELOAD: {out:?}"
    );
    assert!(out.stderr.contains("reload rejected"), "{out:?}");
    let kept = ok(&console(proxy.port, ADMIN, "SHOW RULES"), "SHOW RULES");
    assert_eq!(kept, after, "the previous rules stay in force");
}

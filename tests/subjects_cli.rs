//! `[[subject]]` rule entries and `pgveil install` through the real binary
//! against a real PostgreSQL (issue 15): `check` offline and `--upstream`,
//! and an idempotent install of pgveil's own subject tables.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::customers::*;

const SUBJECT_RULES: &str = r#"[[subject]]
table = "public.customers"
key = "id"

[[subject]]
table = "public.orders"
key = "customer_id"
subject = "public.customers"

[[column]]
table = "public.customers"
name = "email"
type = "text"
encrypt = "deterministic"
"#;

fn run(db: &str, args: &[&str], rules: &Path, keyring: &Path) -> Output {
    let c = cluster();
    Command::new(env!("CARGO_BIN_EXE_pgveil"))
        .args(args)
        .arg("--rules")
        .arg(rules)
        .arg("--keyring")
        .arg(keyring)
        .args(["--upstream", &c.url()])
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", c.pg.superuser_password())
        .env("PGDATABASE", db)
        .output()
        .expect("run pgveil")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_validates_subjects_offline_and_live_and_install_is_idempotent() {
    let c = cluster();
    let db = c.fresh_db("subj_install");
    c.sql(
        &db,
        "CREATE TABLE customers (id int PRIMARY KEY, email bytea); \
         CREATE TABLE orders (id int PRIMARY KEY, customer_id bigint)",
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("subjects.toml"), SUBJECT_RULES).unwrap();
    let keyring = keygen(dir.path());

    // Offline: the entries are reported in the summary.
    let out = pgveil(&["check", "--rules", rules.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("2 subject tables (1 defining subjects)"),
        "{}",
        text(&out)
    );

    // Live: the child key's type differs, and pgveil's tables are missing.
    let out = run(&db, &["check"], &rules, &keyring);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("subjects.toml:5: error: subject key public.orders.customer_id is bigint but the key of its subject public.customers.id is integer"), "{t}");
    assert!(t.contains("schema pgveil does not exist"), "{t}");
    assert!(
        t.contains("table pgveil.subject_keys does not exist"),
        "{t}"
    );
    assert!(t.contains("table pgveil.erasures does not exist"), "{t}");
    c.sql(&db, "ALTER TABLE orders ALTER customer_id TYPE int");

    // Install creates everything, then has nothing to do.
    let out = run(&db, &["install"], &rules, &keyring);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("created schema pgveil"), "{t}");
    assert!(t.contains("created table pgveil.subject_keys"), "{t}");
    assert!(t.contains("created table pgveil.erasures"), "{t}");
    let out = run(&db, &["install"], &rules, &keyring);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    let cols = c.sql(
        &db,
        "SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum) \
         FROM pg_attribute WHERE attrelid = 'pgveil.subject_keys'::regclass AND attnum > 0",
    );
    assert_eq!(
        cols.trim(),
        "subject_table:text,subject_id:text,key_id:text,wrapped:bytea,created:timestamp with time zone"
    );
    let pk = c.sql(
        &db,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = 'pgveil.erasures'::regclass AND contype = 'p'",
    );
    assert_eq!(pk.trim(), "PRIMARY KEY (subject_table, subject_token)");
    let analyst_can = c.sql(
        &db,
        &format!("SELECT has_table_privilege('{ANALYST}', 'pgveil.subject_keys', 'SELECT')"),
    );
    assert_eq!(analyst_can.trim(), "f");

    // Clean now: check passes and mentions the subjects.
    let out = run(&db, &["check"], &rules, &keyring);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2 subject tables"), "{}", text(&out));

    // A grant to PUBLIC is reported by check and revoked by install.
    c.sql(&db, "GRANT SELECT ON pgveil.erasures TO PUBLIC");
    let out = run(&db, &["check"], &rules, &keyring);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("PUBLIC holds privileges on pgveil.erasures"),
        "{}",
        text(&out)
    );
    let out = run(&db, &["install"], &rules, &keyring);
    assert!(
        text(&out).contains("revoked PUBLIC privileges on pgveil.erasures"),
        "{}",
        text(&out)
    );
    let out = run(&db, &["check"], &rules, &keyring);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn check_rejects_a_tagged_key_and_an_unknown_subject_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[subject]]\ntable = \"public.customers\"\nkey = \"email\"\n\n\
         [[subject]]\ntable = \"public.orders\"\nkey = \"customer_id\"\nsubject = \"public.clients\"\n\n\
         [[column]]\ntable = \"public.customers\"\nname = \"email\"\ntype = \"text\"\n",
    )
    .unwrap();
    let out = pgveil(&["check", "--rules", dir.path().to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("bad.toml:1: error: subject key public.customers.email is also a tagged column"),
        "{t}"
    );
    assert!(t.contains("bad.toml:5: error: [[subject]] for public.orders names subject public.clients, which no [[subject]] entry declares"), "{t}");
}

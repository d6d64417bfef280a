//! Write path: INSERT, UPDATE, upserts, COPY, parameters and SQL-level
//! PREPARE / EXECUTE.

use std::collections::HashMap;

use super::super::*;
use super::{admin, hex_of, refused, rewritten, Env};

#[test]
fn inserts_encrypt_literals_and_retype_parameters() {
    let (sql, plans) = rewritten(admin(
        "INSERT INTO customers (id, email, ssn, phone) VALUES (1, 'a@x.org', $1, DEFAULT), (2, NULL, E'o\\'s', $2::text)",
    ));
    assert!(
        !sql.contains("a@x.org") && !sql.contains("o's") && !sql.contains("o''s"),
        "{sql}"
    );
    assert!(
        sql.contains(&hex_of("ENC(public.customers.email:a@x.org)")),
        "{sql}"
    );
    assert!(
        sql.contains(&hex_of("ENC(public.customers.ssn:o's)")),
        "{sql}"
    );
    assert!(
        sql.contains("$1::BYTEA, DEFAULT)")
            && sql.contains("(2, NULL, E'\\\\x")
            && sql.contains("$2::BYTEA)"),
        "{sql}"
    );
    let p = &plans[0];
    assert_eq!(p.kind, StatementKind::Insert);
    assert!(
        matches!(&p.params[0], ParamPlan::Encrypt { rule, usage: ParamUse::Write } if rule.name == "ssn")
    );
    assert!(
        matches!(&p.params[1], ParamPlan::Encrypt { rule, usage: ParamUse::Write } if rule.name == "phone")
    );
    assert!(p
        .columns
        .iter()
        .any(|c| c.column == "public.customers.email" && c.action == ColumnAction::EncryptedWrite));
    // Without a column list: schema order online, refused offline.
    let (sql, _) = rewritten(admin(
        "INSERT INTO customers VALUES (1, 'n', 'e@x', 'p', 's', 5, 'c')",
    ));
    assert!(
        sql.contains(&hex_of("ENC(public.customers.age:5)")) && sql.contains("(1, 'n', E'"),
        "{sql}"
    );
    refused(
        Env::new().run(
            "admin",
            false,
            "INSERT INTO customers VALUES (1, 'n', 'e@x')",
        ),
        "0A000",
    );
    // Offline with a column list works from the rules alone.
    rewritten(Env::new().run("admin", false, "INSERT INTO customers (email) VALUES ('e')"));
}

#[test]
fn writes_the_proxy_cannot_encrypt_are_refused() {
    for sql in [
        "UPDATE customers SET email = lower(email)",
        "UPDATE customers SET email = 'a' || 'b'",
        "INSERT INTO customers (email) VALUES (upper('x'))",
        "INSERT INTO customers (email) SELECT phone FROM customers",
        "INSERT INTO customers (email) SELECT 'x'",
        "INSERT INTO customers (email) VALUES ('a') ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.phone",
        "UPDATE customers SET (email, name) = ('a', 'b')",
        "INSERT INTO customers (email) VALUES ('x'::int4)",
    ] {
        let r = refused(admin(sql), "0A000");
        assert!(r.message.contains("public.customers.email"), "{sql}: {}", r.message);
    }
    // Copying protected data somewhere pgveil cannot protect it.
    for sql in [
        "UPDATE customers SET name = email",
        "INSERT INTO other (x) SELECT email FROM customers",
        "INSERT INTO customers (name) SELECT ssn FROM customers",
        "CREATE TABLE t2 AS SELECT email FROM customers",
        "SELECT email INTO t3 FROM customers",
        "CREATE VIEW v AS SELECT id, email FROM customers",
    ] {
        refused(admin(sql), "0A000");
    }
}

#[test]
fn updates_upserts_and_returning() {
    let (sql, plans) = rewritten(admin("UPDATE customers SET email = 'n@x', phone = $1, ssn = NULL, age = DEFAULT WHERE email = $2 RETURNING id, email"));
    assert!(
        sql.contains(&hex_of("ENC(public.customers.email:n@x)"))
            && sql.contains("phone = $1::BYTEA"),
        "{sql}"
    );
    assert!(
        sql.contains(
            "ssn = NULL, age = DEFAULT WHERE (email = ANY($2::BYTEA[])) RETURNING id, email"
        ),
        "{sql}"
    );
    assert_eq!(plans[0].kind, StatementKind::Update);
    assert!(matches!(
        plans[0].params[0],
        ParamPlan::Encrypt {
            usage: ParamUse::Write,
            ..
        }
    ));
    assert!(matches!(
        plans[0].params[1],
        ParamPlan::Encrypt {
            usage: ParamUse::Match,
            ..
        }
    ));
    let (sql, _) = rewritten(admin(
        "INSERT INTO customers (id, email) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, phone = 'p' RETURNING email",
    ));
    assert!(
        sql.contains("SET email = EXCLUDED.email, phone = E'\\\\x"),
        "{sql}"
    );
    rewritten(admin(
        "INSERT INTO customers (email) SELECT email FROM customers WHERE id = 1",
    ));
    refused(
        Env::new().run(
            "nobody",
            true,
            "DELETE FROM customers WHERE id = 1 RETURNING ssn",
        ),
        "42501",
    );
    let (_, plans) = rewritten(admin("DELETE FROM customers WHERE email = 'a'"));
    assert_eq!(plans[0].kind, StatementKind::Delete);
}

#[test]
fn parameters_used_two_ways_are_refused() {
    refused(
        admin("INSERT INTO customers (email, name) VALUES ($1, $1)"),
        "0A000",
    );
    refused(
        admin("SELECT 1 FROM customers WHERE email = $1 OR phone = $1"),
        "0A000",
    );
    refused(
        admin("UPDATE customers SET email = $1 WHERE email = $1"),
        "0A000",
    );
    // The same parameter twice for the same rule and use is fine.
    let (_, p) = rewritten(admin(
        "SELECT 1 FROM customers WHERE email = $1 OR email = $1",
    ));
    assert_eq!(p[0].params.len(), 1);
}

#[test]
fn copy_in_and_out_plans() {
    let (_, p) = rewritten(admin(
        "COPY customers (id, email, name) FROM STDIN WITH (FORMAT csv, HEADER true, NULL 'NA')",
    ));
    let ci = p[0].copy_in.as_ref().expect("copy_in plan");
    assert_eq!(ci.format, CopyFormat::Csv);
    assert_eq!(
        (ci.delimiter, ci.null.as_str(), ci.header),
        (',', "NA", true)
    );
    assert_eq!(
        ci.fields
            .iter()
            .map(|f| f.as_ref().map(|r| r.name.as_str()))
            .collect::<Vec<_>>(),
        vec![None, Some("email"), None]
    );
    let (_, p) = rewritten(admin("COPY customers FROM STDIN"));
    let ci = p[0].copy_in.as_ref().expect("copy_in plan");
    assert_eq!(
        (ci.format, ci.delimiter, ci.null.as_str()),
        (CopyFormat::Text, '\t', "\\N")
    );
    assert_eq!(ci.fields.len(), 7);
    for sql in [
        "COPY customers FROM STDIN WITH (FORMAT binary)",
        "COPY customers FROM STDIN BINARY",
    ] {
        let (_, p) = rewritten(admin(sql));
        let ci = p[0].copy_in.as_ref().expect("binary copy_in plan");
        assert_eq!(ci.format, CopyFormat::Binary, "{sql}");
        assert!(ci.fields.iter().any(Option::is_some), "{sql}");
    }
    refused(admin("COPY customers (email) FROM '/tmp/x'"), "0A000");
    refused(
        Env::new().run("admin", false, "COPY customers FROM STDIN"),
        "0A000",
    );
    // Restricted sessions may not COPY tagged data out at all.
    refused(
        Env::new().run(
            "analyst",
            true,
            "COPY (SELECT id, ssn FROM customers) TO STDOUT",
        ),
        "42501",
    );
    refused(
        Env::new().run("nobody", true, "COPY customers (email) TO STDOUT"),
        "42501",
    );
    // Untagged columns only: nothing to do.
    let (_, p) = rewritten(admin("COPY customers (id, name) FROM STDIN"));
    assert!(p[0].copy_in.is_none());
}

#[test]
fn sql_level_prepare_and_execute() {
    let e = Env::new();
    let (sql, p) = rewritten(e.run(
        "admin",
        true,
        "PREPARE q (text, int) AS SELECT id FROM customers WHERE email = $1 AND id = $2",
    ));
    assert!(sql.starts_with("PREPARE q (BYTEA[], INT) AS"), "{sql}");
    let sp = p[0].sql_prepare.clone().expect("prepare plan");
    assert!(p[0].params.is_empty());
    let mut m = HashMap::new();
    m.insert(sp.name.clone(), sp.params);
    let (sql, _) = rewritten(e.run_prep("admin", true, "EXECUTE q('alice', 3)", Some(&m)));
    assert!(
        !sql.contains("alice") && sql.contains("ARRAY[E'\\\\x") && sql.ends_with("::BYTEA[], 3)"),
        "{sql}"
    );
    // In one simple query.
    let (sql, p) = rewritten(e.run(
        "admin",
        true,
        "PREPARE w AS INSERT INTO customers (email) VALUES ($1); EXECUTE w('bob')",
    ));
    assert!(
        sql.contains(&hex_of("ENC(public.customers.email:bob)")),
        "{sql}"
    );
    assert_eq!(p.len(), 2);
    // Unknown prepared statements are not ours.
    assert_eq!(
        e.run("admin", true, "EXECUTE other_stmt('x')"),
        Analysis::Passthrough
    );
}

#[test]
fn copy_from_stdin_does_not_swallow_following_statements() {
    // sqlparser alone would read the SELECT as inline COPY data.
    let r = refused(
        Env::new().run(
            "nobody",
            true,
            "COPY customers (email) FROM STDIN; SELECT ssn FROM customers",
        ),
        "42501",
    );
    assert!(r.message.contains("public.customers.ssn"), "{}", r.message);
    let (sql, p) = rewritten(admin("COPY customers (email) FROM STDIN; SELECT 1"));
    assert_eq!(sql, "COPY customers (email) FROM STDIN;\nSELECT 1");
    assert_eq!(p.len(), 2);
}

#[test]
fn unparsable_untagged_statements_are_forwarded_verbatim_beside_rewritten_ones() {
    let Analysis::Rewritten { sql, statements: p } =
        admin("FROBNICATE widgets; SELECT 1 FROM customers WHERE email = 'a'")
    else {
        panic!("expected Rewritten")
    };
    assert!(
        sql.starts_with("FROBNICATE widgets;\nSELECT 1 FROM customers WHERE (email IN"),
        "{sql}"
    );
    assert_eq!(p[0].kind, StatementKind::Other);
}

//! Restricted sessions: the statement classes of the design guide's §9
//! threat model that must be refused (or rewritten) for a role with any
//! non-plaintext access, and what such a role can still run.

use super::super::*;
use super::masking::{assert_masked_only, Ex};
use super::{refused, rewritten};

/// Each refusal names the rule that restricts the session and no literal.
#[track_caller]
fn refused_restricted(ex: &Ex, role: &str, sql: &str) -> Refusal {
    let r = match ex.run(role, sql) {
        Analysis::Refused(r) => r,
        other => panic!("{sql}: expected a refusal, got {other:?}"),
    };
    assert_eq!(r.sqlstate, "42501", "{sql}: {r:?}");
    assert!(
        r.message.contains("rules/customers.toml:"),
        "{sql}: {}",
        r.message
    );
    for secret in ["Alice", "4111", "/etc/passwd", "evil"] {
        assert!(!r.message.contains(secret), "{sql}: {}", r.message);
    }
    r
}

/// Statements a restricted session must be refused, by §9 threat class.
fn threat_classes() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        (
            "SQL hidden in strings",
            &[
                "DO $$ BEGIN RAISE NOTICE '%', (SELECT full_name FROM customers LIMIT 1); END $$",
                "do language plpgsql 'begin perform 1; end'",
                "SELECT query_to_xml('select full_name from customers', true, true, '')",
                "SELECT pg_catalog.query_to_xml_and_xmlschema('select 1', true, true, '')",
                "SELECT table_to_xml('customers', true, true, '')",
                "SELECT schema_to_xml('public', true, true, '')",
                "SELECT cursor_to_xml('c', 10, true, true, '')",
                "SELECT ts_stat('select to_tsvector(full_name) from customers')",
                "SELECT * FROM dblink('dbname=x', 'select full_name from customers') AS t(x text)",
            ],
        ),
        (
            "code that runs later or elsewhere",
            &[
                "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS 'select full_name from customers'",
                "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql AS $$ select 1 $$",
                "CREATE VIEW v AS SELECT full_name FROM customers",
                "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
                "CREATE MATERIALIZED VIEW mv AS SELECT full_name FROM customers",
                "CREATE RULE r AS ON INSERT TO other DO ALSO NOTIFY x",
                "CREATE TRIGGER t BEFORE INSERT ON other FOR EACH ROW EXECUTE FUNCTION f()",
                "CREATE AGGREGATE a (text) (sfunc = textcat, stype = text)",
                "CREATE OPERATOR === (leftarg = text, rightarg = text, function = texteq)",
                "CREATE CAST (text AS int4) WITH FUNCTION f(text)",
                "CREATE EXTENSION dblink",
                "CREATE FOREIGN TABLE ft (x text) SERVER s",
                "ALTER FUNCTION f() SECURITY DEFINER",
                "CALL p()",
                "SELECT public.leak(full_name) FROM customers",
                "SELECT leak()",
                "SELECT * FROM leak_rows()",
                "SELECT full_name OPERATOR(public.###) 'x' FROM customers",
                "SELECT full_name ### 'x' FROM customers",
            ],
        ),
        (
            "copying data elsewhere",
            &[
                "CREATE TABLE t2 AS SELECT full_name FROM customers",
                "CREATE TEMP TABLE t2 AS SELECT 1",
                "SELECT full_name INTO t2 FROM customers",
                "SELECT * INTO TEMP t3 FROM people",
                "COPY customers TO STDOUT",
                "COPY customers (id) TO STDOUT",
                "COPY (SELECT full_name FROM customers) TO STDOUT",
                "COPY (SELECT 1 FROM other JOIN people USING (id)) TO STDOUT",
                "COPY people TO '/etc/passwd'",
            ],
        ),
        (
            "reads whose text names no protected table",
            &[
                "SELECT * FROM customer_names",
                "SELECT * FROM public.customers_2023",
                "SELECT 1 FROM other o JOIN customer_names n ON true",
                "EXPLAIN SELECT full_name FROM customers",
                "EXPLAIN (ANALYZE, FORMAT JSON) SELECT 1",
            ],
        ),
    ]
}

/// The second half of [`threat_classes`].
fn more_threat_classes() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        (
            "out-of-band channels and files",
            &[
                "SELECT set_config('role', 'admin', false)",
                "SELECT pg_catalog.set_config('search_path', 'evil', true)",
                "SELECT lo_import('/etc/passwd')",
                "SELECT lo_get(1234)",
                "SELECT pg_read_file('/etc/passwd')",
                "SELECT pg_read_binary_file('x')",
                "SELECT pg_ls_dir('.')",
                "LOAD 'evil'",
            ],
        ),
        (
            "statistics and activity views",
            &[
                "SELECT most_common_vals FROM pg_stats WHERE tablename = 'customers'",
                "SELECT * FROM pg_catalog.pg_statistic",
                "SELECT * FROM pg_stats_ext",
                "SELECT query FROM pg_stat_activity",
                "SELECT query FROM pg_stat_statements",
            ],
        ),
        (
            "escalation and name resolution",
            &[
                "SET ROLE admin",
                "SET LOCAL ROLE admin",
                "SET SESSION AUTHORIZATION admin",
                "SET SESSION AUTHORIZATION DEFAULT",
                "RESET ROLE",
                "RESET SESSION AUTHORIZATION",
                "SET search_path = evil, public",
                "SET LOCAL search_path TO evil",
                "set \"search_path\" to evil",
                "SET SCHEMA 'evil'",
                "SET standard_conforming_strings = off",
                "SET client_encoding TO 'SQL_ASCII'",
                "SET NAMES 'LATIN1'",
                "ALTER ROLE support SET search_path = evil",
                "ALTER ROLE support SUPERUSER",
                "ALTER SYSTEM SET search_path = evil",
                "ALTER DATABASE postgres SET search_path = evil",
                "ALTER SCHEMA public RENAME TO evil",
                "ALTER TABLE customers RENAME TO evil",
                "ALTER TABLE customers_2023 RENAME TO evil",
                "ALTER TABLE customers ADD CONSTRAINT c CHECK (full_name NOT LIKE 'A%')",
                "CREATE UNIQUE INDEX ON customers (full_name)",
                "CREATE POLICY p ON customers USING (full_name LIKE 'A%')",
                "SELECT data FROM pg_largeobject",
                "GRANT SELECT ON customers TO public",
                "GRANT admin TO support",
                "REVOKE admin FROM support",
                "CREATE ROLE evil LOGIN",
            ],
        ),
        (
            "parser differentials",
            &[
                "SELECT * FROM U&\"\\0063ustomers\"",
                "SELECT 'x\\' , full_name FROM customers",
                "SELECT full_name FROM ONLY customers",
            ],
        ),
        (
            "audit evasion and multi-statement",
            &[
                "SELECT 1; DO $$ BEGIN END $$",
                "SELECT full_name FROM customers; SET ROLE admin",
            ],
        ),
    ]
}

#[test]
fn restricted_sessions_are_refused_per_threat_class() {
    let ex = Ex::new();
    let mut classes = threat_classes();
    classes.extend(more_threat_classes());
    let mut n = 0;
    for (class, sqls) in &classes {
        for sql in *sqls {
            for role in ["support", "analyst"] {
                let r = refused_restricted(&ex, role, sql);
                assert!(r.hint.is_some(), "{class}: {sql}");
            }
            n += 1;
        }
    }
    assert!(n >= 80, "only {n} adversarial statements");
    // None of these is refused for admin for being restricted: admin is not.
    for sql in [
        "SET search_path = public",
        "EXPLAIN SELECT 1",
        "SELECT set_config('a.b', 'c', false)",
    ] {
        assert!(
            !matches!(ex.run("admin", sql), Analysis::Refused(_)),
            "{sql}"
        );
    }
}

#[test]
fn unparsable_statements_are_refused_for_restricted_sessions_only() {
    let ex = Ex::new();
    let r = refused(ex.run("support", "FROBNICATE the widgets"), "42601");
    assert!(r.message.contains("cannot analyse"), "{}", r.message);
    refused(ex.run("support", "SELEC 1"), "42601");
    refused(
        ex.run("support", "ALTER TABLE public.customers SET SCHEMA evil"),
        "42601",
    );
    assert_eq!(
        ex.run("admin", "FROBNICATE the widgets"),
        Analysis::Passthrough
    );
}

#[test]
fn what_a_restricted_role_can_still_run() {
    let ex = Ex::new();
    for sql in [
        "SELECT 1",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT a",
        "SET statement_timeout = 0",
        "SET application_name = 'x'",
        "SHOW search_path",
        "SELECT current_setting('search_path')",
        "LISTEN jobs",
        "UNLISTEN *",
        "NOTIFY jobs, 'done'",
        "SELECT pg_notify('jobs', full_name) FROM customers",
        "CREATE TEMP TABLE scratch (x text)",
        "INSERT INTO scratch SELECT full_name FROM customers",
        "COPY other TO STDOUT",
        "COPY customers (full_name) FROM STDIN",
        "FETCH 10 FROM c",
        "CLOSE c",
        "TRUNCATE other",
        "CREATE INDEX ON other (x)",
        "SELECT pg_catalog.lower(full_name) FROM customers",
        "SELECT coalesce(nullif(full_name, ''), 'n/a') FROM customers",
    ] {
        match ex.run("support", sql) {
            Analysis::Rewritten { sql: out, .. } => {
                if out.contains("customers") && !out.starts_with("COPY") {
                    assert_masked_only(&out, "customers", &["full_name"]);
                }
            }
            other => panic!("{sql}: expected it to be forwarded, got {other:?}"),
        }
    }
    // RESET of a harmless setting (sqlparser cannot parse RESET) is forwarded as written.
    match ex.run("support", "RESET statement_timeout") {
        Analysis::Rewritten { sql, .. } => assert_eq!(sql, "RESET statement_timeout"),
        other => panic!("{other:?}"),
    }
    // DISCARD ALL is allowed and forgets SQL-level prepared statements.
    let (_, p) = rewritten(ex.run("support", "DISCARD ALL"));
    assert_eq!(p[0].sql_deallocate, Some(None));
}

#[test]
fn cursors_and_sql_level_prepare_are_rewritten_the_same_way() {
    let ex = Ex::new();
    for sql in [
        "DECLARE c CURSOR FOR SELECT full_name FROM customers",
        "DECLARE c CURSOR WITH HOLD FOR SELECT upper(full_name) FROM customers WHERE full_name LIKE 'A%'",
        "PREPARE q AS SELECT full_name FROM customers WHERE id = $1",
        "PREPARE q (text) AS SELECT id FROM customers WHERE full_name = $1",
        "PREPARE q AS SELECT full_name FROM customers; EXECUTE q",
    ] {
        let (out, _) = rewritten(ex.run("support", sql));
        assert_masked_only(&out, "customers", &["full_name"]);
    }
    refused_restricted(
        &ex,
        "support",
        "PREPARE q AS SELECT query_to_xml('select full_name from customers', true, true, '')",
    );
}

#[test]
fn search_path_that_shadows_pg_catalog_blocks_unqualified_functions() {
    let mut ex = Ex::new();
    ex.schema.search_path = vec!["public".into(), "pg_catalog".into()];
    refused_restricted(&ex, "support", "SELECT lower(full_name) FROM customers");
    rewritten(ex.run(
        "support",
        "SELECT pg_catalog.lower(full_name) FROM customers",
    ));
}

#[test]
fn explain_reports_decisions_rules_and_forwarded_sql_without_values() {
    let ex = Ex::new();
    let out = ex.with("support", true, true, |c| {
        let text = explain(
            "SELECT full_name, email FROM customers WHERE email = 'alice@example.com'",
            c,
        );
        Analysis::Rewritten {
            sql: text,
            statements: Vec::new(),
        }
    });
    let Analysis::Rewritten { sql: report, .. } = out else {
        unreachable!()
    };
    assert!(report.contains("session: restricted"), "{report}");
    assert!(
        report.contains("public.customers.full_name (name, plaintext at rest): masked with partial(1,0); rule rules/customers.toml:"),
        "{report}"
    );
    assert!(
        report
            .contains("public.customers.email (contact, encrypted): equality match on ciphertext"),
        "{report}"
    );
    assert!(report.contains("<ciphertext>"), "{report}");
    assert!(report.contains("path: output-only masking"), "{report}");
    assert!(!report.contains("AS pgveil_t"), "{report}");
    let report = match ex.with("support", true, true, |c| Analysis::Rewritten {
        sql: explain("SELECT id FROM customers WHERE full_name LIKE 'A%'", c),
        statements: Vec::new(),
    }) {
        Analysis::Rewritten { sql, .. } => sql,
        _ => unreachable!(),
    };
    assert!(report.contains("AS pgveil_t"), "{report}");
    assert!(!report.contains("path: output-only"), "{report}");
    assert!(!report.contains("alice"), "{report}");
    let report = match ex.with("analyst", true, true, |c| Analysis::Rewritten {
        sql: explain("SELECT ssn FROM customers", c),
        statements: Vec::new(),
    }) {
        Analysis::Rewritten { sql, .. } => sql,
        _ => unreachable!(),
    };
    assert!(report.contains("REFUSED with SQLSTATE 42501"), "{report}");
    assert!(report.contains("public.customers.ssn"), "{report}");
    let report = match ex.with("admin", false, true, |c| Analysis::Rewritten {
        sql: explain("SELECT 1", c),
        statements: Vec::new(),
    }) {
        Analysis::Rewritten { sql, .. } => sql,
        _ => unreachable!(),
    };
    assert!(
        report.contains("unrestricted") && report.contains("offline"),
        "{report}"
    );
    assert!(report.contains("forwarded unchanged"), "{report}");
}

#[test]
fn redact_hides_ciphertext_and_pseudonym_pads() {
    let pad = "ab".repeat(64);
    let s = format!("x IN (E'\\\\x6b31'::BYTEA) AND pg_catalog.decode('{pad}', 'hex') = 'a'");
    assert_eq!(
        explain::redact(&s),
        "x IN (<ciphertext>::BYTEA) AND pg_catalog.decode('<pseudonym key>', 'hex') = 'a'"
    );
}

#[test]
fn prefilter_sends_discard_to_the_analysis() {
    let n = TaggedNames::new(&Ex::new().rules);
    assert!(mentions_tagged(&n, "DISCARD ALL"));
    assert!(!mentions_tagged(&n, "SELECT 1"));
}

#[test]
fn dependent_views_query_names_views_and_children() {
    let q = crate::schema::dependent_views_query([&tn2("public", "customers")]);
    assert!(
        q.contains("pg_catalog.pg_rewrite") && q.contains("pg_catalog.pg_inherits"),
        "{q}"
    );
    assert!(q.contains("('public', 'customers')"), "{q}");
    assert!(crate::schema::dependent_views_query(std::iter::empty()).contains("WHERE false"));
    let rows = vec![
        vec![
            Some("public".to_string()),
            Some("customer_names".to_string()),
        ],
        vec![None, Some("broken".to_string())],
    ];
    let v = crate::schema::protected_views_from_rows(&rows);
    assert_eq!(v.len(), 1);
    assert!(v.contains(&tn2("public", "customer_names")));
}

fn tn2(s: &str, n: &str) -> crate::rules::model::TableName {
    super::tn(s, n)
}

//! Masked reads over the example rules (`rules/customers.toml`): admin gets
//! statements unrewritten, support and analyst read protected tables only
//! through the masked derived table, whatever the shape of the query.
//!
//! Besides `public.customers` from the example, the fixture has
//! `public.people` (plaintext at rest only: `name` masked for support and
//! hashed for analyst, `zip` redacted for support and denied to analyst), so
//! whole-row shapes and `deny` on plaintext columns are covered too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::visit_relations;

use super::super::*;
use super::{canon, refused, rewritten, tn, FakeEnc};
use crate::rules::model::{Access, ColumnRule, LogicalType, Mask, RuleSet, SourceLoc};
use crate::rules::parse::parse_str;
use crate::schema::{ColumnInfo, SchemaSnapshot, TableInfo};

pub(super) struct Ex {
    pub rules: RuleSet,
    pub schema: SchemaSnapshot,
}

fn people_rule(name: &str, support: Access, analyst: Access) -> ColumnRule {
    let mut access = BTreeMap::new();
    access.insert("admin".to_string(), Access::Plaintext);
    access.insert("support".to_string(), support);
    access.insert("analyst".to_string(), analyst);
    ColumnRule {
        table: tn("public", "people"),
        name: name.into(),
        ty: LogicalType::Text,
        encrypt: None,
        class: "name".into(),
        access,
        default: Access::Deny,
        source: SourceLoc {
            file: "rules/people.toml".into(),
            line: 7,
        },
    }
}

fn table(oid: u32, cols: &[(&str, u32, &str)]) -> TableInfo {
    TableInfo {
        oid,
        relkind: 'r',
        columns: cols
            .iter()
            .enumerate()
            .map(|(i, (n, o, t))| ColumnInfo {
                name: n.to_string(),
                attnum: i as i16 + 1,
                type_oid: *o,
                type_name: t.to_string(),
            })
            .collect(),
    }
}

impl Ex {
    pub fn new() -> Self {
        let mut cols = parse_str(
            "rules/customers.toml",
            include_str!("../../../rules/customers.toml"),
        )
        .unwrap_or_else(|d| panic!("example rules do not parse: {d:?}"));
        cols.push(people_rule(
            "name",
            Access::Mask(Mask::Partial { first: 1, last: 0 }),
            Access::Mask(Mask::Hash),
        ));
        cols.push(people_rule("zip", Access::Mask(Mask::Redact), Access::Deny));
        let mut t = HashMap::new();
        t.insert(
            tn("public", "customers"),
            table(
                200,
                &[
                    ("id", 20, "bigint"),
                    ("full_name", 25, "text"),
                    ("email", 17, "bytea"),
                    ("ssn", 17, "bytea"),
                    ("phone", 17, "bytea"),
                    ("birth_date", 17, "bytea"),
                    ("card_number", 17, "bytea"),
                ],
            ),
        );
        t.insert(
            tn("public", "people"),
            table(
                201,
                &[
                    ("id", 20, "bigint"),
                    ("name", 25, "text"),
                    ("zip", 25, "text"),
                ],
            ),
        );
        let mut schema = SchemaSnapshot::new(vec!["public".into()], t);
        schema.protected_views = HashSet::from([
            tn("public", "customer_names"),
            tn("public", "customers_2023"),
        ]);
        Ex {
            rules: RuleSet::new(cols, "ex".into()),
            schema,
        }
    }

    pub fn with(
        &self,
        role: &str,
        online: bool,
        key: bool,
        f: impl FnOnce(&Context) -> Analysis,
    ) -> Analysis {
        let roles = vec![role.to_string()];
        let with_key = |_: &ColumnRule| Some("00112233445566778899aabbccddeeff".to_string());
        let no_key = |_: &ColumnRule| None;
        let ctx = Context {
            rules: &self.rules,
            schema: online.then_some(&self.schema),
            roles: &roles,
            encryptor: &FakeEnc,
            canonicalize: &canon,
            sql_prepared: None,
            restricted: false,
            hash_key_hex: if key { &with_key } else { &no_key },
        };
        f(&ctx)
    }

    pub fn run(&self, role: &str, sql: &str) -> Analysis {
        self.with(role, true, true, |ctx| analyse(sql, ctx))
    }
}

/// `sql` (forwarded text) reads `table` only through masked derived tables:
/// every relation of that name is our `"public"."<table>"`, once per
/// derived table, and no masked column is passed through raw.
#[track_caller]
pub(super) fn assert_masked_only(sql: &str, table: &str, masked_cols: &[&str]) {
    let mut hits = 0;
    for chunk in lex::split_statements(sql) {
        let st = parse_one(chunk).unwrap_or_else(|| panic!("forwarded SQL does not parse: {sql}"));
        let _ = visit_relations(&st, |n| {
            if n.0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case(table))
            {
                assert_eq!(
                    n.to_string(),
                    format!("\"public\".\"{table}\""),
                    "raw reference to {table} in: {sql}"
                );
                hits += 1;
            }
            ControlFlow::<()>::Continue(())
        });
    }
    assert!(hits > 0, "no masked derived table in: {sql}");
    assert_eq!(
        sql.matches(&format!("FROM \"public\".\"{table}\" AS pgveil_t)"))
            .count(),
        hits,
        "a reference to {table} outside a derived table: {sql}"
    );
    for c in masked_cols {
        assert!(
            !sql.contains(&format!("pgveil_t.\"{c}\" AS \"{c}\"")),
            "{c} passed through unmasked: {sql}"
        );
    }
}

/// `sql` is served masked: every statement either reads the protected
/// tables only through masked derived tables, or (output-only masking, see
/// `output_mask`) names their masked columns only as bare select-list items
/// of a subquery-free SELECT, which the session masks by origin.
#[track_caller]
pub(super) fn masked(ex: &Ex, role: &str, sql: &str) -> (String, Vec<StatementPlan>) {
    let (out, plans) = rewritten(ex.run(role, sql));
    let chunks = lex::split_statements(&out);
    assert_eq!(chunks.len(), plans.len(), "{out}");
    for (chunk, plan) in chunks.iter().zip(&plans) {
        if plan.output_masked {
            super::output_mask::assert_output_only(chunk, &["full_name", "name", "zip"]);
            continue;
        }
        for (table, cols) in [
            ("customers", &["full_name"][..]),
            ("people", &["name", "zip"]),
        ] {
            if chunk.contains(&format!("FROM \"public\".\"{table}\" AS pgveil_t)")) {
                assert_masked_only(chunk, table, cols);
            } else if chunk.to_ascii_lowercase().contains(table) {
                // Not replaced: the statement cannot name a masked column.
                super::output_mask::assert_names_none(chunk, cols);
            }
        }
    }
    (out, plans)
}

#[test]
fn support_reads_every_query_shape_through_the_masked_table() {
    let ex = Ex::new();
    // Expression wrapping, whole-row/json, aggregates, windows, set
    // operations, CTEs (recursive too), subqueries of every kind, joins,
    // predicates and ordering: all see masked values only.
    let shapes = [
        "SELECT full_name FROM customers",
        "SELECT upper(full_name) FROM customers",
        "SELECT full_name || '' FROM customers",
        "SELECT reverse(full_name), md5(full_name), encode(convert_to(full_name, 'UTF8'), 'base64') FROM customers",
        "SELECT full_name::bytea FROM customers",
        "SELECT row_to_json(p) FROM people p",
        "SELECT to_jsonb(p.*) FROM people p",
        "SELECT p FROM people p",
        "SELECT json_agg(full_name) FROM customers",
        "SELECT string_agg(full_name, ',' ORDER BY full_name) FROM customers",
        "SELECT * FROM (SELECT * FROM people) s",
        "SELECT * FROM (SELECT * FROM (SELECT full_name FROM customers) a) b",
        "WITH x AS (SELECT full_name FROM customers) SELECT * FROM x",
        "WITH RECURSIVE r(n, v) AS (SELECT 1, full_name FROM customers UNION ALL SELECT n + 1, v FROM r WHERE n < 2) SELECT v FROM r",
        "SELECT full_name FROM customers UNION SELECT 'x'",
        "SELECT full_name FROM customers INTERSECT SELECT name FROM people",
        "SELECT id FROM customers WHERE full_name LIKE 'A%'",
        "SELECT id FROM customers WHERE full_name = 'Alice Smith'",
        "SELECT id FROM customers WHERE full_name = $1",
        "SELECT id FROM customers WHERE full_name > 'M' ORDER BY full_name",
        "SELECT id FROM customers WHERE substr(full_name, 2, 1) = 'l'",
        "SELECT count(*) FROM customers GROUP BY full_name HAVING count(*) > 1",
        "SELECT DISTINCT full_name FROM customers",
        "SELECT rank() OVER (PARTITION BY full_name ORDER BY full_name) FROM customers",
        "SELECT (SELECT full_name FROM customers LIMIT 1)",
        "SELECT 1 FROM people WHERE name IN (SELECT full_name FROM customers)",
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM customers c WHERE c.full_name LIKE 'A%')",
        "SELECT x.n FROM people p, LATERAL (SELECT full_name AS n FROM customers c WHERE c.id = p.id) x",
        "SELECT c.full_name, p.name FROM customers c JOIN people p ON p.name = c.full_name",
        "SELECT 1 FROM customers a JOIN customers b ON a.full_name = b.full_name",
        "SELECT 1 FROM people NATURAL JOIN people",
        "SELECT CASE WHEN full_name LIKE 'A%' THEN 1 / 0 END FROM customers",
        "SELECT Full_Name FROM Public.CUSTOMERS",
        "SELECT \"full_name\" FROM \"public\".\"customers\"",
        "SELECT customers.full_name FROM customers",
        "SELECT c.* FROM customers c",
        "SELECT * FROM customers",
        "SELECT * FROM customers c(a, b)",
        "SELECT b FROM customers c(a, b) WHERE b LIKE 'A%'",
        "SELECT count(*) FROM customers, people",
        "INSERT INTO other (x) SELECT full_name FROM customers",
        "UPDATE other SET x = c.full_name FROM customers c WHERE c.id = other.id",
        "DELETE FROM other USING customers c WHERE c.full_name = other.x",
        "SELECT 1; SELECT full_name FROM customers",
    ];
    for sql in shapes {
        let (out, plans) = masked(&ex, "support", sql);
        assert!(
            plans
                .iter()
                .any(|p| p.tables.contains(&tn("public", "customers"))
                    || p.tables.contains(&tn("public", "people"))),
            "{sql}: {plans:?}"
        );
        // Literals the client wrote are not in the plan's fingerprint.
        for p in &plans {
            assert!(!p.fingerprint.contains("Alice"), "{}", p.fingerprint);
        }
        let _ = out;
    }
}

#[test]
fn masked_columns_are_recorded_and_masks_use_pg_catalog_only() {
    let ex = Ex::new();
    let (out, p) = masked(
        &ex,
        "support",
        "SELECT full_name, email FROM customers WHERE full_name LIKE 'A%'",
    );
    assert!(p[0]
        .columns
        .iter()
        .any(|c| c.column == "public.customers.full_name" && c.action == ColumnAction::Masked));
    assert!(p[0]
        .columns
        .iter()
        .any(|c| c.column == "public.customers.email" && c.action == ColumnAction::Masked));
    // Encrypted columns pass through as plain references (origin kept).
    assert!(out.contains("pgveil_t.\"email\" AS \"email\""), "{out}");
    assert!(out.contains("OPERATOR(pg_catalog."), "{out}");
    // analyst: full_name is `null` at rest -> typed NULL, never the column.
    let (out, p) = masked(&ex, "analyst", "SELECT upper(full_name) FROM customers");
    assert!(
        out.contains("CAST(NULL AS pg_catalog.text) AS \"full_name\""),
        "{out}"
    );
    assert!(!out.contains("pgveil_t.\"full_name\""), "{out}");
    assert!(p[0]
        .columns
        .iter()
        .any(|c| c.column == "public.customers.full_name" && c.action == ColumnAction::Null));
    // analyst: hash on people.name uses the pseudonym key; without one, refused.
    let (out, _) = masked(&ex, "analyst", "SELECT upper(name) FROM people");
    assert!(out.contains("pg_catalog.sha256"), "{out}");
    let r = refused(
        ex.with("analyst", true, false, |c| {
            analyse("SELECT name FROM people", c)
        }),
        "42501",
    );
    assert!(r.message.contains("public.people.name"), "{}", r.message);
    // One derived table per reference, each complete.
    let (out, _) = masked(
        &ex,
        "support",
        "SELECT a.name FROM people a, people b WHERE a.name < b.name",
    );
    assert_eq!(out.matches("AS pgveil_t)").count(), 2, "{out}");
}

#[test]
fn admin_gets_statements_unrewritten() {
    let ex = Ex::new();
    for sql in [
        "SELECT full_name FROM customers",
        "SELECT upper(full_name) FROM customers WHERE full_name LIKE 'A%'",
        "SELECT p.* FROM people p JOIN customers c USING (id)",
    ] {
        let (out, _) = rewritten(ex.run("admin", sql));
        assert!(!out.contains("pgveil_t"), "{out}");
    }
    assert_eq!(ex.run("admin", "SELECT 1"), Analysis::Passthrough);
    assert!(!is_restricted(&ex.rules, &["admin".to_string()]));
    for r in ["support", "analyst", "nobody"] {
        assert!(is_restricted(&ex.rules, &[r.to_string()]), "{r}");
    }
    // The most permissive role wins: admin membership lifts the restriction.
    assert!(!is_restricted(
        &ex.rules,
        &["support".to_string(), "admin".to_string()]
    ));
}

#[test]
fn deny_on_a_plaintext_column_refuses_any_reference() {
    let ex = Ex::new();
    for sql in [
        "SELECT zip FROM people",
        "SELECT * FROM people",
        "SELECT p.* FROM people p",
        "SELECT * FROM (SELECT * FROM people) s",
        "SELECT upper(zip) FROM people",
        "SELECT count(*) FROM people WHERE zip = '12345'",
        "SELECT id FROM people ORDER BY zip",
        "SELECT row_to_json(p) FROM people p",
        "SELECT p FROM people p",
        "SELECT z FROM people p(i, n, z)",
    ] {
        let r = match ex.run("analyst", sql) {
            Analysis::Refused(r) => r,
            other => panic!("{sql}: expected refusal, got {other:?}"),
        };
        assert!(
            r.message.contains("public.people") && !r.message.contains("12345"),
            "{sql}: {}",
            r.message
        );
    }
    // Not referenced: served, and not even projected by the derived table.
    let (out, _) = masked(
        &ex,
        "analyst",
        "SELECT id, name FROM people WHERE name LIKE 'h:%'",
    );
    assert!(
        out.contains("AS pgveil_t)") && !out.contains("zip"),
        "{out}"
    );
    let (out, _) = masked(&ex, "analyst", "SELECT id, name FROM people");
    assert!(!out.contains("zip"), "{out}");
}

#[test]
fn encrypted_columns_are_served_masked_and_searchable_by_masked_roles() {
    let ex = Ex::new();
    let (out, p) = rewritten(ex.run(
        "support",
        "SELECT email, birth_date FROM customers WHERE email = 'alice@example.com'",
    ));
    assert!(!out.contains("alice"), "{out}");
    let acts: Vec<_> = p[0]
        .columns
        .iter()
        .map(|c| (c.column.as_str(), c.action))
        .collect();
    assert!(
        acts.contains(&("public.customers.email", ColumnAction::Match)),
        "{acts:?}"
    );
    assert!(
        acts.contains(&("public.customers.email", ColumnAction::Masked)),
        "{acts:?}"
    );
    assert!(
        acts.contains(&("public.customers.birth_date", ColumnAction::Masked)),
        "{acts:?}"
    );
    rewritten(ex.run("support", "SELECT id FROM customers WHERE ssn IN ('1', $1)"));
    // analyst: hash on email allows equality; null/deny columns do not.
    rewritten(ex.run("analyst", "SELECT id FROM customers WHERE email = $1"));
    for sql in [
        "SELECT id FROM customers WHERE phone IS NULL",
        "SELECT id FROM customers WHERE card_number = '4111111111111111'",
        "SELECT ssn FROM customers",
        "SELECT 1 FROM customers a JOIN customers b ON a.card_number = b.card_number",
    ] {
        let r = refused(ex.run("analyst", sql), "42501");
        assert!(!r.message.contains("4111"), "{}", r.message);
    }
    // Computing on ciphertext stays refused for everyone.
    for sql in [
        "SELECT lower(email) FROM customers",
        "SELECT email || '' FROM customers",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT id FROM customers ORDER BY email",
        "SELECT email FROM customers UNION SELECT 'x'",
    ] {
        refused(ex.run("support", sql), "0A000");
    }
}

#[test]
fn writes_on_protected_tables_never_filter_or_return_raw_values() {
    let ex = Ex::new();
    // Writing new values is fine; the target stays a table.
    let (out, _) = rewritten(ex.run(
        "support",
        "UPDATE customers SET full_name = 'Bob' WHERE id = 1",
    ));
    assert!(out.starts_with("UPDATE customers SET"), "{out}");
    rewritten(ex.run(
        "support",
        "INSERT INTO customers (full_name) VALUES ('Bob') RETURNING id",
    ));
    rewritten(ex.run("support", "DELETE FROM customers WHERE id = 3"));
    // A subquery over the target table reads it masked.
    let (out, _) = rewritten(ex.run(
        "support",
        "DELETE FROM customers WHERE id IN (SELECT id FROM customers WHERE full_name LIKE 'A%')",
    ));
    assert!(
        out.starts_with(
            "DELETE FROM customers WHERE id IN (SELECT id FROM (SELECT pgveil_t.\"id\""
        ),
        "{out}"
    );
    for sql in [
        "UPDATE customers SET full_name = 'x' WHERE full_name LIKE 'A%'",
        "DELETE FROM customers WHERE full_name = 'Alice Smith'",
        "DELETE FROM customers c WHERE upper(c.full_name) = 'ALICE SMITH'",
        "UPDATE customers SET id = id WHERE length(full_name) > 3",
        "UPDATE customers SET full_name = upper(full_name)",
        "UPDATE people SET name = zip",
        // RETURNING of the target is served masked (see failclosed), but an
        // expression over a raw target column is still refused.
        "UPDATE customers SET full_name = 'x' RETURNING upper(full_name)",
        "DELETE FROM customers RETURNING full_name || ''",
        "INSERT INTO customers (full_name) VALUES ('x') RETURNING customers",
        "INSERT INTO customers (id, full_name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET full_name = customers.full_name || 'x'",
        "UPDATE customers c SET full_name = 'x' WHERE row_to_json(c)::text LIKE '%A%'",
    ] {
        let r = match ex.run("support", sql) {
            Analysis::Refused(r) => r,
            other => panic!("{sql}: expected refusal, got {other:?}"),
        };
        assert!(
            r.message.contains("public.") && !r.message.contains("Alice"),
            "{sql}: {}",
            r.message
        );
    }
}

#[test]
fn masking_needs_the_live_schema() {
    let ex = Ex::new();
    let r = refused(
        ex.with("support", false, true, |c| {
            analyse("SELECT full_name FROM customers", c)
        }),
        "0A000",
    );
    assert!(r.message.contains("public.customers"), "{}", r.message);
    // Offline admin is unaffected.
    rewritten(ex.with("admin", false, true, |c| {
        analyse("SELECT full_name FROM customers", c)
    }));
}

//! Output-only masking (issue 12): which statements are forwarded as
//! written with their masked columns masked by the session, and which keep
//! the masked derived table; what a derived table projects.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, SelectItem, SetExpr, Statement, Visit, Visitor};

use super::super::*;
use super::masking::{masked, Ex};
use super::{refused, rewritten, tn};
use crate::rules::model::RuleSet;

/// The fast path's invariant, checked on the forwarded text independently
/// of the analysis: one subquery-free SELECT in which every reference to a
/// masked column is a bare select-list item.
#[track_caller]
pub(super) fn assert_output_only(chunk: &str, masked_cols: &[&str]) {
    let st = parse_one(chunk).unwrap_or_else(|| panic!("forwarded SQL does not parse: {chunk}"));
    let Statement::Query(q) = &st else {
        panic!("fast path on a non-query: {chunk}");
    };
    let SetExpr::Select(sel) = q.body.as_ref() else {
        panic!("fast path on a set operation: {chunk}");
    };
    fn strip(e: &Expr) -> &Expr {
        match e {
            Expr::Nested(inner) => strip(inner),
            other => other,
        }
    }
    let is_masked = |e: &Expr| {
        let last = match e {
            Expr::Identifier(i) => Some(i),
            Expr::CompoundIdentifier(ids) => ids.last(),
            _ => None,
        };
        last.is_some_and(|i| masked_cols.contains(&i.value.to_ascii_lowercase().as_str()))
    };
    let bare = sel
        .projection
        .iter()
        .filter(|i| match i {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                is_masked(strip(e))
            }
            _ => false,
        })
        .count();
    struct V<'f>(usize, usize, &'f dyn Fn(&Expr) -> bool);
    impl Visitor for V<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if (self.2)(e) {
                self.0 += 1;
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, _q: &sqlparser::ast::Query) -> ControlFlow<()> {
            self.1 += 1;
            ControlFlow::Continue(())
        }
    }
    let mut v = V(0, 0, &is_masked);
    let _ = st.visit(&mut v);
    assert_eq!(v.1, 1, "a subquery on the fast path: {chunk}");
    assert_eq!(
        v.0, bare,
        "a masked column used outside the select list: {chunk}"
    );
    assert!(
        sel.distinct.is_none() && sel.having.is_none() && sel.into.is_none(),
        "{chunk}"
    );
}

/// A protected table left in place by the slow path: the text names none of
/// its masked columns and expands no `*`.
#[track_caller]
pub(super) fn assert_names_none(chunk: &str, masked_cols: &[&str]) {
    let mut buf = String::new();
    for tok in lex::Lexer::new(chunk) {
        if let lex::Tok::Op(op) = tok {
            assert!(!op.contains('*'), "`*` over an unreplaced table: {chunk}");
        } else if lex::fold_into(&tok, &mut buf) {
            assert!(
                !masked_cols.contains(&buf.as_str()),
                "{buf} named, table unreplaced: {chunk}"
            );
        }
    }
}

fn fast(ex: &Ex, role: &str, sql: &str) -> (String, StatementPlan) {
    let (out, mut plans) = masked(ex, role, sql);
    assert_eq!(plans.len(), 1);
    let p = plans.remove(0);
    assert!(p.output_masked, "{role}: {sql} took the slow path: {out}");
    assert!(!out.contains("pgveil_t"), "{role}: {sql} -> {out}");
    (out, p)
}

fn slow(ex: &Ex, role: &str, sql: &str) -> String {
    let (out, plans) = masked(ex, role, sql);
    assert!(
        plans.iter().all(|p| !p.output_masked),
        "{role}: {sql} took the fast path: {out}"
    );
    assert!(out.contains("AS pgveil_t)"), "{role}: {sql} -> {out}");
    out
}

#[test]
fn bare_reads_are_forwarded_as_written_and_masked_by_origin() {
    let ex = Ex::new();
    for role in ["support", "analyst"] {
        for sql in [
            "SELECT full_name FROM customers",
            "SELECT id, full_name, email FROM customers WHERE id = 1",
            "SELECT id, full_name FROM customers WHERE id BETWEEN 1 AND 20 ORDER BY id LIMIT 5",
            "SELECT Full_Name FROM Public.CUSTOMERS",
            "SELECT \"full_name\" FROM \"public\".\"customers\"",
            "SELECT customers.full_name FROM customers",
            "SELECT c.full_name AS n FROM customers c WHERE c.id = $1",
            "SELECT (c).full_name FROM customers c",
            "SELECT (full_name) FROM customers",
            "SELECT a.full_name, b.full_name FROM customers a JOIN customers b ON b.id = a.id",
            "SELECT b FROM customers c(a, b)",
            "SELECT ctid, xmin, tableoid::regclass, full_name FROM customers",
            "SELECT full_name FROM customers ORDER BY id FOR UPDATE",
            "SELECT name FROM people WHERE id = 1",
            "SELECT count(*) FROM customers",
            "SELECT c.full_name, p.name FROM customers c JOIN people p ON p.id = c.id",
        ] {
            let (_, p) = fast(&ex, role, sql);
            if sql.contains("full_name") {
                let want = if role == "support" {
                    ColumnAction::Masked
                } else {
                    ColumnAction::Null
                };
                assert!(
                    p.columns
                        .iter()
                        .any(|c| c.column == "public.customers.full_name" && c.action == want),
                    "{role} {sql}: {:?}",
                    p.columns
                );
            }
        }
        // Encrypted columns keep their own rewrite on the fast path.
        let (out, p) = fast(
            &ex,
            role,
            "SELECT full_name, email FROM customers WHERE email = 'a@b.c'",
        );
        assert!(!out.contains("a@b.c") && out.contains("IN ("), "{out}");
        assert!(p.columns.iter().any(|c| c.action == ColumnAction::Match));
    }
    // support may read every column: `*` takes the fast path too.
    fast(&ex, "support", "SELECT * FROM customers");
    fast(&ex, "support", "SELECT c.* FROM customers c");
    fast(&ex, "support", "TABLE customers");
}

#[test]
fn a_masked_column_used_anywhere_but_the_select_list_keeps_the_derived_table() {
    let ex = Ex::new();
    for role in ["support", "analyst"] {
        for sql in [
            "SELECT full_name FROM customers WHERE full_name LIKE 'A%'",
            "SELECT full_name FROM customers WHERE full_name = 'Alice'",
            "SELECT full_name FROM customers WHERE full_name = $1",
            "SELECT full_name FROM customers WHERE full_name IS NULL",
            "SELECT full_name FROM customers WHERE full_name IN ('a', 'b')",
            "SELECT full_name FROM customers ORDER BY full_name",
            "SELECT full_name AS n FROM customers ORDER BY n",
            "SELECT id, full_name FROM customers ORDER BY 2",
            "SELECT full_name FROM customers ORDER BY full_name < 'M'",
            "SELECT full_name, count(*) FROM customers GROUP BY full_name",
            "SELECT id, full_name FROM customers GROUP BY id",
            "SELECT DISTINCT full_name FROM customers",
            "SELECT DISTINCT ON (full_name) id FROM customers",
            "SELECT full_name, rank() OVER (ORDER BY full_name) FROM customers",
            "SELECT full_name, count(*) OVER (PARTITION BY full_name) FROM customers",
            "SELECT full_name FROM customers UNION SELECT 'x'",
            "SELECT full_name FROM customers UNION ALL SELECT full_name FROM customers",
            "WITH c AS (SELECT full_name FROM customers) SELECT full_name FROM c",
            "SELECT full_name FROM (SELECT full_name FROM customers) s",
            "SELECT (SELECT full_name FROM customers LIMIT 1)",
            "SELECT full_name FROM customers WHERE id IN (SELECT id FROM customers)",
            "SELECT full_name FROM customers c WHERE EXISTS (SELECT 1 FROM customers d WHERE d.full_name = c.full_name)",
            "SELECT l.n FROM customers c, LATERAL (SELECT c.full_name AS n) l",
            "SELECT a.full_name FROM customers a JOIN customers b ON a.full_name = b.full_name",
            "SELECT a.full_name FROM customers a JOIN customers b USING (full_name)",
            "SELECT a.full_name FROM customers a NATURAL JOIN customers b",
            "SELECT full_name, upper(full_name) FROM customers",
            "SELECT full_name, full_name || '' FROM customers",
            "SELECT full_name::text FROM customers",
            "SELECT full_name COLLATE \"C\" FROM customers",
            "SELECT full_name, length(full_name) FROM customers",
            "SELECT full_name, CASE WHEN full_name LIKE 'A%' THEN 1 END FROM customers",
            "SELECT full_name, row_to_json(c) FROM customers c",
            "SELECT c, full_name FROM customers c",
            "SELECT (c.*)::text FROM customers c",
            "SELECT max(full_name) FROM customers",
            "SELECT string_agg(full_name, ',') FROM customers",
            "SELECT full_name FROM customers LIMIT (SELECT count(*) FROM customers)",
        ] {
            match ex.run(role, sql) {
                Analysis::Refused(_) => {}
                _ => {
                    slow(&ex, role, sql);
                }
            }
        }
    }
    // Writes and copies never take the fast path.
    for sql in [
        "INSERT INTO other (x) SELECT full_name FROM customers",
        "DECLARE c CURSOR FOR SELECT full_name FROM customers",
        "PREPARE p AS SELECT full_name FROM customers",
    ] {
        let (_, plans) = masked(&ex, "support", sql);
        assert!(plans.iter().all(|p| !p.output_masked), "{sql}");
    }
}

#[test]
fn derived_tables_project_only_what_the_statement_names() {
    let ex = Ex::new();
    // Masked column in a predicate: only id and full_name are projected.
    let out = slow(
        &ex,
        "support",
        "SELECT id FROM customers WHERE full_name LIKE 'A%' OR id IN (SELECT 1)",
    );
    for absent in [
        "\"email\"",
        "\"ssn\"",
        "\"phone\"",
        "\"card_number\"",
        "\"birth_date\"",
    ] {
        assert!(!out.contains(absent), "{absent} projected: {out}");
    }
    // Needing every column: `*`, whole rows, alias lists, NATURAL.
    for sql in [
        "SELECT * FROM (SELECT * FROM customers) s WHERE full_name LIKE 'A%'",
        "SELECT row_to_json(p) FROM people p WHERE name LIKE 'A%'",
        "SELECT b FROM people c(a, b) WHERE b LIKE 'A%'",
        "SELECT 1 FROM people NATURAL JOIN people",
    ] {
        let out = slow(&ex, "support", sql);
        let other = if sql.contains("customers") {
            "\"card_number\""
        } else {
            "\"zip\""
        };
        assert!(
            out.contains("\"id\"") && out.contains(other),
            "{sql}: {out}"
        );
    }
    // Nothing masked named, whatever the shape: no derived table at all.
    for sql in [
        "SELECT email, ssn FROM customers WHERE email = 'a@b.c'",
        "SELECT id FROM customers WHERE id IN (SELECT id FROM customers WHERE id > 1)",
        "WITH x AS (SELECT id FROM customers) SELECT id FROM x",
    ] {
        let (out, _) = masked(&ex, "support", sql);
        assert!(!out.contains("pgveil_t"), "{sql}: {out}");
    }
}

/// A plaintext `date` with `year` (its text depends on DateStyle) stays
/// masked in SQL on the fast path, in a derived table that passes the other
/// columns through; text columns beside it are masked on the wire.
#[test]
fn settings_dependent_masks_stay_in_sql_on_the_fast_path() {
    let toml = "[[column]]\ntable = \"public.p2\"\nname = \"born\"\ntype = \"date\"\n\
                [column.access]\nadmin = \"plaintext\"\nsupport = \"year\"\n\
                [[column]]\ntable = \"public.p2\"\nname = \"nick\"\ntype = \"text\"\n\
                [column.access]\nadmin = \"plaintext\"\nsupport = \"partial(1,0)\"\n\
                [[column]]\ntable = \"public.p2\"\nname = \"code\"\ntype = \"text\"\n\
                [column.access]\nadmin = \"plaintext\"\nsupport = \"redact\"\n";
    let cols = crate::rules::parse::parse_str("rules/p2.toml", toml).expect("rules parse");
    let mut ex = Ex::new();
    ex.rules = RuleSet::new(cols, "p2".into());
    let info = crate::schema::TableInfo {
        oid: 400,
        relkind: 'r',
        columns: [("id", 20), ("nick", 25), ("born", 1082), ("code", 1042)]
            .iter()
            .enumerate()
            .map(|(i, (n, o))| crate::schema::ColumnInfo {
                name: n.to_string(),
                attnum: i as i16 + 1,
                type_oid: *o,
                type_name: String::new(),
            })
            .collect(),
    };
    let mut t = std::collections::HashMap::new();
    t.insert(tn("public", "p2"), info);
    ex.schema = crate::schema::SchemaSnapshot::new(vec!["public".into()], t);
    let (out, plans) = rewritten(ex.run("support", "SELECT id, nick, born FROM p2 WHERE id = 1"));
    assert!(plans[0].output_masked, "{out}");
    assert!(out.contains("date_trunc"), "{out}");
    assert!(out.contains("pgveil_t.\"nick\" AS \"nick\""), "{out}");
    assert!(!out.contains("\"code\""), "{out}");
    // `code` is bpchar under a text rule: its wire form is not the rule's type, so SQL.
    let (out, plans) = rewritten(ex.run("support", "SELECT code FROM p2"));
    assert!(
        plans[0].output_masked && out.contains("[REDACTED]"),
        "{out}"
    );
    // Text only: no derived table.
    let (out, _) = rewritten(ex.run("support", "SELECT id, nick FROM p2"));
    assert_eq!(out, "SELECT id, nick FROM p2");
    // The SQL-masked date in a predicate is its masked value: still fast.
    let (out, plans) =
        rewritten(ex.run("support", "SELECT nick FROM p2 WHERE born > '2000-01-01'"));
    assert!(
        plans[0].output_masked && out.contains("date_trunc"),
        "{out}"
    );
    assert!(out.contains("pgveil_t.\"nick\" AS \"nick\""), "{out}");
    // The text column in a predicate: the slow path, both masked in SQL.
    let (out, plans) = rewritten(ex.run("support", "SELECT born FROM p2 WHERE nick LIKE 'A%'"));
    assert!(
        !plans[0].output_masked && out.contains("date_trunc") && out.contains("regexp_replace"),
        "{out}"
    );
}

#[test]
fn refusals_stay_refusals_on_the_fast_path() {
    let ex = Ex::new();
    // deny columns, by name or by `*`; views; offline masking.
    refused(ex.run("analyst", "SELECT zip FROM people"), "42501");
    refused(ex.run("analyst", "SELECT * FROM people"), "42501");
    refused(
        ex.run("analyst", "SELECT ssn, full_name FROM customers"),
        "42501",
    );
    refused(
        ex.run("support", "SELECT full_name FROM customer_names"),
        "42501",
    );
    let r = ex.with("support", false, true, |c| {
        analyse("SELECT full_name FROM customers", c)
    });
    refused(r, "0A000");
    // hash without a pseudonym key: refused, not served unmasked.
    let r = ex.with("analyst", true, false, |c| {
        analyse("SELECT name FROM people", c)
    });
    refused(r, "42501");
}

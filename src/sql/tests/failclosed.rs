//! Issue 10, analysis-level classes: each test covers one class and its
//! spellings, for the restricted roles of the example rules (see `masking`).

use super::super::*;
use super::masking::{masked, Ex};
use super::{refused, rewritten};

/// Refused, with any SQLSTATE pgveil uses for refusals.
#[track_caller]
fn refused_any(a: Analysis, sql: &str) -> Refusal {
    match a {
        Analysis::Refused(r) => {
            assert!(
                ["42501", "0A000", "42601"].contains(&r.sqlstate),
                "{sql}: {r:?}"
            );
            r
        }
        other => panic!("{sql}: expected a refusal, got {other:?}"),
    }
}

/// Class 1: relations that hide from the visitors (`TABLE name` in every
/// position) are either read through the masked table or refused.
#[test]
fn table_commands_are_masked_or_refused() {
    let ex = Ex::new();
    for role in ["support", "analyst"] {
        for sql in [
            "TABLE customers",
            "TABLE public.customers",
            "table \"customers\"",
            "SELECT * FROM (TABLE customers) t",
            "SELECT * FROM (TABLE public.customers) t",
            "WITH x AS (TABLE customers) SELECT full_name FROM x",
            "DECLARE c CURSOR FOR TABLE customers",
            "PREPARE q AS TABLE customers",
            "INSERT INTO scratch TABLE customers",
        ] {
            let out = ex.run(role, sql);
            if let Analysis::Rewritten { .. } = out {
                masked(&ex, role, sql);
            } else {
                refused_any(out, sql);
            }
        }
        for sql in [
            "MERGE INTO sink s USING (TABLE public.customers) c ON false \
             WHEN NOT MATCHED THEN INSERT VALUES (c.full_name)",
            "MERGE INTO sink s USING (TABLE customers) c ON false \
             WHEN NOT MATCHED THEN INSERT VALUES (c.full_name)",
            "COPY (TABLE customers) TO STDOUT",
            "COPY (TABLE public.customers) TO STDOUT",
            "CREATE TEMP TABLE t AS TABLE customers",
            "CREATE TEMP TABLE t AS TABLE public.customers",
            "TABLE customer_names",
            "SELECT * FROM (TABLE public.customer_names) v",
            "SELECT 1 UNION TABLE public.customers_2023",
            "SELECT 1 UNION ALL TABLE customers_2023",
            "SELECT * FROM other WHERE EXISTS (TABLE public.customer_names)",
            "TABLE pg_stats",
            "SELECT * FROM (TABLE pg_catalog.pg_statistic) s",
            "SELECT email FROM (TABLE customers) t ORDER BY email",
        ] {
            refused_any(ex.run(role, sql), sql);
        }
    }
    // Untagged tables and plaintext roles: TABLE works.
    let (out, _) = rewritten(ex.run("support", "TABLE orders"));
    assert_eq!(out, "SELECT * FROM orders");
    let (out, plans) = rewritten(ex.run("admin", "TABLE customers"));
    assert_eq!(out, "SELECT * FROM customers");
    assert!(plans[0].columns.iter().any(|c| c.column.ends_with(".ssn")));
}

/// Class 2: statistics and statement-text views, in any schema and spelling.
#[test]
fn statistics_views_are_refused_in_every_spelling() {
    let ex = Ex::new();
    for sql in [
        "SELECT most_common_vals FROM pg_stats",
        "SELECT most_common_vals FROM \"pg_catalog\".\"pg_stats\"",
        "SELECT * FROM PG_CATALOG.PG_STATS",
        "SELECT * FROM pg_stats_ext",
        "SELECT * FROM pg_catalog.pg_stats_ext_exprs",
        "SELECT * FROM pg_catalog.pg_statistic_ext_data",
        "SELECT * FROM pg_statistic",
        "SELECT query FROM pg_stat_statements",
        "SELECT query FROM public.pg_stat_statements",
        "SELECT query FROM extensions.pg_stat_statements",
        "SELECT * FROM pg_stat_statements_info",
        "SELECT (SELECT histogram_bounds::text FROM pg_stats LIMIT 1)",
        "WITH s AS (SELECT * FROM pg_stats) SELECT * FROM s",
        "SELECT * FROM other WHERE EXISTS (SELECT 1 FROM pg_stats)",
        "SELECT m.values FROM pg_statistic_ext_data d, pg_mcv_list_items(d.stxdmcv) m",
        "SELECT pg_stat_get_activity(NULL)",
    ] {
        for role in ["support", "analyst"] {
            refused_any(ex.run(role, sql), sql);
        }
    }
    let q = crate::schema::dependent_views_query([&super::tn("public", "customers")]);
    for needle in [
        "'pg_statistic', 'pg_statistic_ext_data'",
        "'query_to_xml'",
        "'ts_stat'",
        "SELECT i.inhparent, i.inhrelid",
        "SELECT i.inhrelid, i.inhparent",
    ] {
        assert!(q.contains(needle), "{needle} not in {q}");
    }
    for f in crate::schema::SQL_TEXT_FUNCTIONS {
        assert!(
            !crate::sql::builtins::builtin_allowed(f),
            "{f} is allowlisted"
        );
    }
}

/// Class 7 (renames): while the catalog does not match the rules, restricted
/// sessions cannot read the data under its new name.
#[test]
fn renamed_tables_and_columns_refuse_restricted_reads() {
    let mut ex = Ex::new();
    let info = ex
        .schema
        .tables
        .remove(&super::tn("public", "customers"))
        .expect("fixture");
    // ALTER TABLE customers RENAME TO customers_renamed (or SET SCHEMA moved).
    for sql in [
        "SELECT full_name FROM customers_renamed",
        "SELECT * FROM moved.customers",
        "TABLE customers_renamed",
        "WITH x AS (SELECT 1) SELECT * FROM x, other",
        "COPY (SELECT * FROM customers_renamed) TO STDOUT",
    ] {
        let r = refused(ex.run("support", sql), "55000");
        assert!(
            r.message.contains("public.customers") && r.message.contains("rules/customers.toml:"),
            "{}",
            r.message
        );
    }
    for sql in [
        "SELECT 1",
        "SELECT relname FROM pg_catalog.pg_class",
        "BEGIN",
    ] {
        assert!(
            !matches!(ex.run("support", sql), Analysis::Refused(_)),
            "{sql}"
        );
    }
    // Admin is not restricted: served as before.
    assert!(!matches!(
        ex.run("admin", "SELECT * FROM customers_renamed"),
        Analysis::Refused(_)
    ));
    // ALTER TABLE customers RENAME COLUMN full_name TO fname.
    let mut renamed = info.clone();
    for c in renamed.columns.iter_mut() {
        if c.name == "full_name" {
            c.name = "fname".into();
        }
    }
    ex.schema
        .tables
        .insert(super::tn("public", "customers"), renamed);
    for sql in [
        "SELECT fname FROM customers",
        "SELECT * FROM public.customers",
        "TABLE customers",
    ] {
        refused(ex.run("support", sql), "55000");
    }
    assert!(!matches!(
        ex.run("support", "SELECT * FROM people"),
        Analysis::Refused(_)
    ));
}

/// Class 5: names compared as PostgreSQL stores them: a name longer than 63
/// bytes IS its 63-byte prefix, whatever the quoting and case.
#[test]
fn long_names_are_truncated_like_postgres() {
    use crate::rules::model::RuleSet;
    use crate::schema::{ColumnInfo, SchemaSnapshot, TableInfo};
    let long = format!("t{}", "x".repeat(62));
    assert_eq!(long.len(), 63);
    let toml = format!(
        "[[column]]\ntable = \"public.{long}\"\nname = \"secret\"\ntype = \"text\"\n\
         encrypt = \"deterministic\"\n[column.access]\nadmin = \"plaintext\"\nsupport = \"redact\"\n\
         [[column]]\ntable = \"public.{long}\"\nname = \"note\"\ntype = \"text\"\n\
         [column.access]\nadmin = \"plaintext\"\nsupport = \"redact\"\n"
    );
    let cols = crate::rules::parse::parse_str("rules/long.toml", &toml).expect("rules parse");
    let mut ex = Ex::new();
    ex.rules = RuleSet::new(cols, "long".into());
    let info = TableInfo {
        oid: 300,
        relkind: 'r',
        columns: ["id", "note", "secret"]
            .iter()
            .enumerate()
            .map(|(i, n)| ColumnInfo {
                name: n.to_string(),
                attnum: i as i16 + 1,
                type_oid: if *n == "secret" { 17 } else { 25 },
                type_name: "text".into(),
            })
            .collect(),
    };
    let mut t = std::collections::HashMap::new();
    t.insert(super::tn("public", &long), info);
    ex.schema = SchemaSnapshot::new(vec!["public".into()], t);
    let names = TaggedNames::new(&ex.rules);
    for spelling in [
        format!("{long}_v2"),
        format!("{}_V2", long.to_uppercase()),
        format!("\"{long}_v2\""),
        format!("public.{long}{}", "y".repeat(200)),
        format!("\"public\".\"{long}zzz\""),
    ] {
        let sql = format!("SELECT note FROM {spelling}");
        assert!(mentions_tagged(&names, &sql), "{sql}");
        // Forwarded as written, note masked by origin (output-only masking).
        let (out, plans) = rewritten(ex.run("support", &sql));
        assert!(
            plans[0].output_masked
                && plans[0]
                    .columns
                    .iter()
                    .any(|c| c.column.ends_with(".note") && c.action == ColumnAction::Masked),
            "{sql} not masked: {out}"
        );
        let (out, _) = rewritten(ex.run("support", &format!("{sql} WHERE note = 'x'")));
        assert!(out.contains("AS pgveil_t"), "{sql} not masked: {out}");
        assert!(!out.contains("pgveil_t.\"note\" AS \"note\""), "{out}");
        let ins = format!("INSERT INTO {spelling} (secret) VALUES ('s3cret')");
        let (out, _) = rewritten(ex.run("admin", &ins));
        assert!(!out.contains("s3cret"), "{ins} wrote plaintext: {out}");
    }
    // A 64-byte name in a rule file is a `check` error, never silently cut.
    let bad = toml.replace(&long, &format!("{long}z"));
    let d = crate::rules::parse::parse_str("rules/long.toml", &bad).expect_err("too long");
    assert!(
        d.iter().any(|d| d.message.contains("longer than 63 bytes")),
        "{d:?}"
    );
    let bad = toml.replace(&long, &format!("{}é", "t".repeat(62)));
    assert!(crate::rules::parse::parse_str("rules/long.toml", &bad).is_err());
}

/// Usability: ordinary settings, locks and catalog helpers that ORMs and
/// drivers run, allowed without weakening the guarded forms.
#[test]
fn harmless_settings_locks_and_catalog_helpers_are_allowed() {
    let ex = Ex::new();
    for sql in [
        "SET search_path TO public",
        "SET search_path = public",
        "SET LOCAL search_path TO 'public'",
        "SET search_path TO DEFAULT",
        "SET client_encoding TO 'UTF8'",
        "SET client_encoding = 'utf-8'",
        "SET NAMES 'UTF8'",
        "RESET ALL",
        "RESET search_path",
        "RESET client_encoding",
        "SELECT pg_advisory_lock(42)",
        "SELECT pg_try_advisory_xact_lock(1, 2)",
        "SELECT pg_advisory_unlock_all()",
        "SELECT pg_get_serial_sequence('customers', 'id')",
        "SELECT format_type(25, NULL)",
        "SELECT to_regclass('public.customers')",
        "TABLE orders",
    ] {
        for role in ["support", "analyst"] {
            assert!(
                !matches!(ex.run(role, sql), Analysis::Refused(_)),
                "{sql}: {:?}",
                ex.run(role, sql)
            );
        }
    }
    for sql in [
        "SET search_path TO evil, public",
        "SET search_path TO public, evil",
        "SET search_path TO 'public, evil'",
        "SET search_path TO \"$user\", public",
        "SET search_path TO pg_temp, public",
        "SET client_encoding TO 'SJIS'",
        "SET NAMES 'LATIN1'",
        "SET client_encoding TO DEFAULT",
        "SET role TO admin",
        "RESET ROLE",
        "RESET session_authorization",
        "RESET ALL; SET ROLE admin",
    ] {
        refused_any(ex.run("support", sql), sql);
    }
}

/// Usability: RETURNING of a write target serves plaintext-at-rest columns
/// masked (never raw), upserts may copy EXCLUDED values.
#[test]
fn returning_is_masked_and_upserts_use_excluded() {
    let ex = Ex::new();
    for (role, mask_marker) in [
        ("support", "pg_catalog.SUBSTR"),
        ("analyst", "CAST(NULL AS pg_catalog.text)"),
    ] {
        for sql in [
            "INSERT INTO customers (full_name, email) VALUES ('a', 'b') RETURNING full_name, id",
            "INSERT INTO customers (full_name) VALUES ('a') RETURNING *",
            "INSERT INTO customers AS c (full_name) VALUES ('a') RETURNING c.*",
            "UPDATE customers SET email = 'x@y' WHERE id = 1 RETURNING full_name AS n",
            "DELETE FROM customers WHERE id = 1 RETURNING *",
        ] {
            // analyst may not read ssn or card_number at all: `*` is refused.
            if role == "analyst" && sql.contains('*') {
                refused_any(ex.run(role, sql), sql);
                continue;
            }
            let (out, plans) = rewritten(ex.run(role, sql));
            let ret = &out[out.find("RETURNING").expect("returning")..];
            assert!(ret.contains(mask_marker), "{role} {sql}: {ret}");
            assert!(
                !ret.contains("AS \"full_name\"") || ret.contains(mask_marker),
                "{ret}"
            );
            // No bare reference to full_name survives in RETURNING.
            for bare in [
                "RETURNING full_name",
                ", full_name",
                "RETURNING \"customers\".\"full_name\",",
            ] {
                assert!(!ret.contains(bare), "{role} {sql}: raw in {ret}");
            }
            assert!(
                plans[0]
                    .columns
                    .iter()
                    .any(|c| c.column == "public.customers.full_name"
                        && matches!(c.action, ColumnAction::Masked | ColumnAction::Null)),
                "{sql}: {:?}",
                plans[0].columns
            );
        }
    }
    // deny stays refused; the WHERE on a raw target value stays refused.
    refused_any(
        ex.run(
            "analyst",
            "INSERT INTO customers (full_name) VALUES ('a') RETURNING ssn",
        ),
        "RETURNING ssn",
    );
    refused_any(
        ex.run(
            "support",
            "UPDATE customers SET email = 'x' WHERE full_name LIKE 'A%' RETURNING id",
        ),
        "WHERE",
    );
    for sql in [
        "INSERT INTO customers (id, full_name, phone) VALUES (1, 'x', $1) \
         ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone",
        "INSERT INTO customers (id, full_name, phone) VALUES (1, 'x', '1') \
         ON CONFLICT (id) DO UPDATE SET full_name = EXCLUDED.full_name, phone = excluded.phone",
    ] {
        for role in ["support", "analyst"] {
            rewritten(ex.run(role, sql));
        }
    }
    // Ciphertext still moves only within its own column.
    refused_any(
        ex.run(
            "support",
            "INSERT INTO customers (id, full_name, phone) VALUES (1, 'x', '1') \
             ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.phone",
        ),
        "email = EXCLUDED.phone",
    );
    // Reading the existing raw value in DO UPDATE WHERE is still an oracle.
    refused_any(
        ex.run(
            "support",
            "INSERT INTO customers (id, full_name) VALUES (1, 'x') ON CONFLICT (id) \
             DO UPDATE SET full_name = 'y' WHERE customers.full_name LIKE 'A%'",
        ),
        "DO UPDATE WHERE",
    );
}

/// Usability: `(rel).col` is the column `rel.col`, served through the
/// masked table like any reference; a composite column's field stays refused.
#[test]
fn field_selection_from_a_relation_is_a_column_reference() {
    let ex = Ex::new();
    let (out, _) = masked(
        &ex,
        "support",
        "SELECT (c).full_name, (c).id FROM customers c",
    );
    assert!(out.starts_with("SELECT c.full_name, c.id FROM"), "{out}");
    let (out, _) = masked(
        &ex,
        "support",
        "SELECT (c).full_name FROM customers c WHERE (c).full_name LIKE 'A%'",
    );
    assert!(out.starts_with("SELECT c.full_name FROM (SELECT"), "{out}");
    let (out, plans) =
        rewritten(ex.run("support", "SELECT (c).email FROM customers c WHERE id = 1"));
    assert!(out.starts_with("SELECT c.email FROM"), "{out}");
    assert!(plans[0]
        .columns
        .iter()
        .any(|u| u.column.ends_with(".email") && u.action == ColumnAction::Masked));
    refused_any(
        ex.run("analyst", "SELECT (c).ssn FROM customers c"),
        "(c).ssn",
    );
    refused_any(
        ex.run("support", "SELECT (c).email || 'x' FROM customers c"),
        "(c).email ||",
    );
    // Still refused: whole rows and functional notation.
    refused_any(ex.run("support", "SELECT (c).* FROM customers c"), "(c).*");
    refused_any(
        ex.run("support", "SELECT row_to_json(c) FROM customers c"),
        "row_to_json",
    );
}

/// Usability: system columns read through the masked table (ORMs use
/// `xmin` as a concurrency token).
#[test]
fn system_columns_are_carried_by_the_masked_table() {
    let ex = Ex::new();
    let (out, _) = masked(
        &ex,
        "support",
        "SELECT ctid, xmin, tableoid::regclass, full_name FROM customers WHERE full_name > 'A'",
    );
    for c in ["ctid", "xmin", "tableoid"] {
        assert!(out.contains(&format!("pgveil_t.{c} AS {c}")), "{c}: {out}");
    }
    assert!(!out.contains("pgveil_t.xmax"), "{out}");
    let (out, _) = masked(
        &ex,
        "analyst",
        "SELECT c.id, c.xmin FROM customers c WHERE c.full_name IS NULL",
    );
    assert!(out.contains("pgveil_t.xmin AS xmin"), "{out}");
    // Without system columns the derived table is unchanged.
    let (out, _) = masked(&ex, "support", "SELECT id FROM customers");
    assert!(!out.contains("xmin"), "{out}");
    // With a * they would change what * returns.
    refused_any(
        ex.run(
            "support",
            "SELECT *, xmin FROM customers WHERE full_name LIKE 'A%'",
        ),
        "*, xmin",
    );
    // Forwarded as written (output-only masking), * is what it says.
    let (out, plans) = masked(&ex, "support", "SELECT *, xmin FROM customers");
    assert!(plans[0].output_masked && !out.contains("pgveil_t"), "{out}");
}

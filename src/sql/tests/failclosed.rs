//! Issue 10, analysis-level classes: each test covers one class and its
//! spellings, for the restricted roles of the example rules (see `masking`).

use super::super::*;
use super::masking::{masked, Ex};
use super::rewritten;

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

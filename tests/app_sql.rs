//! Issue 10, "Refusals of ordinary application SQL": statements support-desk
//! apps, ORMs and drivers run as a restricted role. Each must work through
//! pgveil, and where it returns a tagged column, return it masked.

mod common;

use common::customers::*;
use common::*;

/// Runs `sql` as one simple-protocol statement; the first column of every row.
async fn run(c: &tokio_postgres::Client, sql: &str) -> Result<Vec<Option<String>>, String> {
    let msgs = c.simple_query(sql).await.map_err(|e| {
        format!(
            "{}: {}",
            sqlstate(&e).unwrap_or_default(),
            e.as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string())
        )
    })?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
            _ => None,
        })
        .collect())
}

#[tokio::test]
async fn ordinary_application_sql_runs_as_support() {
    let env = setup("app_sql");
    cluster().sql(
        &env.db,
        "CREATE TABLE public.orders (id int PRIMARY KEY, customer_id bigint, total numeric); \
         INSERT INTO orders VALUES (1, 1, 9.5); \
         GRANT ALL ON public.orders TO support;",
    );
    let admin = as_role(&env, ADMIN).await;
    insert_alice(&admin).await;
    let support = as_role(&env, SUPPORT).await;
    let masked_phone = "+1-***-***-0143";
    let masked_email = "a****@example.com";
    // (statement, first column of the first row when it matters)
    let cases: &[(&str, Option<&str>)] = &[
        ("SELECT pg_advisory_lock(42)", None),
        ("SELECT pg_advisory_unlock(42)::text", Some("true")),
        ("SELECT pg_try_advisory_xact_lock(7)::text", Some("true")),
        ("SELECT pg_get_serial_sequence('public.customers', 'id')", Some("public.customers_id_seq")),
        ("SELECT format_type(25, NULL)", Some("text")),
        ("SELECT to_regclass('public.customers')::text", Some("customers")),
        ("TABLE orders", Some("1")),
        ("SELECT (c).phone FROM customers c", Some(masked_phone)),
        ("SELECT (customers).email FROM customers", Some(masked_email)),
        ("SELECT (xmin::text IS NOT NULL)::text, email FROM customers", Some("true")),
        ("SELECT (ctid::text IS NOT NULL)::text, tableoid::regclass::text, email FROM customers", Some("true")),
        ("SET search_path TO public", None),
        ("SET client_encoding TO 'UTF8'", None),
        ("RESET ALL", None),
        ("SELECT email FROM customers", Some(masked_email)),
        (
            "INSERT INTO customers (full_name, phone) VALUES ('Bob', '+1-202-555-0199') RETURNING phone",
            Some("+1-***-***-0199"),
        ),
        ("UPDATE customers SET phone = '+1-202-555-0199' WHERE id = (SELECT max(id) FROM customers) RETURNING phone", Some("+1-***-***-0199")),
        (
            "INSERT INTO customers (id, full_name, phone) VALUES (1, 'Alice Smith', '+1-202-555-0100') \
             ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone RETURNING phone",
            Some("+1-***-***-0100"),
        ),
    ];
    let mut failures = Vec::new();
    for (sql, want) in cases {
        match run(&support, sql).await {
            Err(e) => failures.push(format!("{sql}\n    -> {e}")),
            Ok(rows) => {
                if let Some(w) = want {
                    let got = rows.first().cloned().flatten();
                    if got.as_deref() != Some(w) {
                        failures.push(format!("{sql}\n    -> {got:?}, expected {w:?}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

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

/// The session serves a statement shape analysed once (see
/// `session::shapes`): each later statement of that shape must still get
/// its own literals — encrypted where they meet an encrypted column — and a
/// literal the column's type rejects must still be refused.
#[tokio::test]
async fn repeated_shapes_get_their_own_literals() {
    let env = setup("app_sql_shapes");
    let admin = as_role(&env, ADMIN).await;
    let support = as_role(&env, SUPPORT).await;
    for (name, email, phone) in [
        ("Ann One", "ann@example.com", "+1-202-555-0101"),
        ("Ben Two", "ben@example.com", "+1-202-555-0102"),
        ("Cat Three", "cat@example.com", "+1-202-555-0103"),
    ] {
        let sql = format!(
            "INSERT INTO customers (full_name, email, phone) VALUES ('{name}', '{email}', '{phone}')"
        );
        run(&support, &sql).await.expect("insert as support");
    }
    // Stored encrypted, every time.
    let at_rest = cluster().sql(
        &env.db,
        "SELECT count(*) FROM customers WHERE position(convert_to('@example.com', 'UTF8') in email) > 0 \
         OR position(convert_to('202-555', 'UTF8') in phone) > 0",
    );
    assert_eq!(at_rest.trim(), "0");
    for (email, phone) in [
        ("ben@example.com", "+1-***-***-0102"),
        ("ann@example.com", "+1-***-***-0101"),
        ("cat@example.com", "+1-***-***-0103"),
        ("nobody@example.com", ""),
    ] {
        let sql = format!("SELECT phone FROM customers WHERE email = '{email}'");
        let got = run(&support, &sql).await.expect("lookup as support");
        let want: Vec<Option<String>> = if phone.is_empty() {
            vec![]
        } else {
            vec![Some(phone.to_string())]
        };
        assert_eq!(got, want, "{sql}");
        let plain = run(&admin, &sql.replace("phone", "phone, email"))
            .await
            .expect("admin");
        assert_eq!(plain.len(), want.len(), "admin lookup {email}");
    }
    // Literals of a cached shape cannot change what it means: quote tricks
    // stay one value, a masked column is compared as masked, a number and a
    // string of the same shape are each what they say.
    for (sql, want) in [
        (
            "SELECT phone FROM customers WHERE email = 'x'' OR ''1''=''1'",
            0,
        ),
        (
            "SELECT phone FROM customers WHERE email = 'ann@example.com'' --'",
            0,
        ),
        ("SELECT id FROM customers WHERE full_name = 'Ann One'", 0),
        ("SELECT id FROM customers WHERE full_name = 'A** ***'", 1),
        ("SELECT id FROM customers WHERE id = 1", 1),
        ("SELECT id FROM customers WHERE id = '2'", 1),
    ] {
        let got = run(&support, sql).await.expect(sql);
        assert_eq!(got.len(), want, "{sql}");
    }
    // Same shape, a literal the encrypted date column rejects: refused each time.
    for _ in 0..2 {
        let e = run(
            &support,
            "INSERT INTO customers (full_name, birth_date) VALUES ('Dan', 'not a date')",
        )
        .await
        .expect_err("a bad date is refused");
        assert!(e.starts_with("22"), "{e}");
    }
    run(
        &support,
        "INSERT INTO customers (full_name, birth_date) VALUES ('Dan', '1990-01-02')",
    )
    .await
    .expect("a good date of the same shape");
    // Output positions are not values: ORDER BY 2 sorts by the masked name.
    let ids = run(
        &support,
        "SELECT id, full_name FROM customers WHERE id > 0 ORDER BY 2, 1",
    )
    .await
    .expect("order by position");
    let again = run(
        &support,
        "SELECT id, full_name FROM customers WHERE id > 1 ORDER BY 2, 1",
    )
    .await
    .expect("same shape, another literal");
    assert_eq!(ids.len(), 4);
    assert_eq!(again.len(), 3);
}

/// A DO block's body is code pgveil cannot rewrite: one that names a tagged
/// table could write plaintext into an encrypted column, so it is refused
/// for every role (a plaintext one included); others pass.
#[tokio::test]
async fn do_blocks_naming_tagged_tables_are_refused_for_every_role() {
    let env = setup("app_sql_do");
    let admin = as_role(&env, ADMIN).await;
    for body in [
        "DO $$ BEGIN INSERT INTO customers (full_name, email) VALUES ('Do One', convert_to('do1@example.com', 'UTF8')); END $$",
        "DO $x$ BEGIN EXECUTE 'INSERT INTO public.customers (full_name, email) VALUES (''Do Two'', convert_to(''do2@example.com'', ''UTF8''))'; END $x$",
        "DO LANGUAGE plpgsql $$ BEGIN UPDATE \"customers\" SET email = convert_to('do3@example.com', 'UTF8'); END $$",
    ] {
        let e = run(&admin, body).await.expect_err(body);
        assert!(e.starts_with("0A000"), "{body}: {e}");
    }
    let stored = cluster().sql(
        &env.db,
        "SELECT count(*) FROM customers WHERE full_name LIKE 'Do %' OR position(convert_to('@example.com', 'UTF8') in email) > 0",
    );
    assert_eq!(stored.trim(), "0", "nothing was written");
    run(&admin, "DO $$ BEGIN PERFORM 1; END $$")
        .await
        .expect("a DO block naming nothing tagged passes");
}

//! Issue 10, "Audit records that miss what was revealed": suspended portals
//! count the rows they delivered, a failed row transform is not `ok`,
//! `EXECUTE name` names what its statement reads, a refused FunctionCall and
//! a statement too complex to analyse leave records.

use futures_util::TryStreamExt;

use super::support::*;

#[tokio::test]
async fn records_say_what_was_revealed_under_every_spelling() {
    let env = setup("audit_complete", None, None, &[]);
    let mut admin = connect_app(&env, ADMIN, "ac-admin").await;
    for i in 0..5 {
        admin
            .execute(
                "INSERT INTO customers (full_name, email) VALUES ($1, $2)",
                &[&format!("P{i}"), &format!("p{i}@example.com")],
            )
            .await
            .expect("insert");
    }
    // A portal run with a row limit: two batches of two rows, then one.
    let tx = admin.transaction().await.unwrap();
    let stmt = tx
        .prepare("SELECT email FROM customers ORDER BY id")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let first = tx.query_portal(&portal, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest: Vec<_> = tx
        .query_portal_raw(&portal, 0)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rest.len(), 3);
    tx.commit().await.unwrap();
    // SQL EXECUTE of a statement reading the encrypted column.
    admin
        .simple_query("PREPARE pe AS SELECT email FROM customers WHERE full_name = 'P1'")
        .await
        .unwrap();
    admin.simple_query("EXECUTE pe").await.unwrap();
    // A statement over the nesting bound.
    let big = format!(
        "SELECT email FROM customers WHERE id = 1{}",
        " + 0".repeat(20_000)
    );
    let e = admin.simple_query(&big).await.expect_err("too complex");
    assert_eq!(sqlstate(&e).as_deref(), Some("54001"));
    let recs = wait_statements(&env, "ac-admin", 12);
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        recs.iter().filter(|r| pred(r)).cloned().collect::<Vec<_>>()
    };
    let portal_recs = find(&|r| s(r, "fingerprint").contains("order by id"));
    let rows: Vec<u64> = portal_recs
        .iter()
        .map(|r| r["rows"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        rows.iter().sum::<u64>(),
        5,
        "portal records {portal_recs:?}"
    );
    let exec = find(&|r| s(r, "fingerprint").starts_with("execute pe"));
    assert_eq!(exec.len(), 1, "{recs:?}");
    assert_eq!(
        exec[0]["tables"],
        serde_json::json!(["public.customers"]),
        "{}",
        exec[0]
    );
    assert!(
        exec[0]["columns"]
            .to_string()
            .contains("public.customers.email"),
        "{}",
        exec[0]
    );
    let complex = find(&|r| s(r, "outcome") == "54001");
    assert_eq!(complex.len(), 1, "54001 refusal recorded: {recs:?}");
    assert_eq!(
        complex[0]["tables"],
        serde_json::json!(["public.customers"])
    );
}

#[tokio::test]
async fn a_row_that_does_not_decrypt_is_recorded_as_its_failure() {
    let env = setup("audit_xx001", None, None, &[]);
    let admin = connect_app(&env, ADMIN, "xx-admin").await;
    admin
        .execute(
            "INSERT INTO customers (full_name, email) VALUES ('good', 'g@example.com')",
            &[],
        )
        .await
        .unwrap();
    // Written around pgveil: not ciphertext under the column's key.
    cluster().sql(
        &env.db,
        "INSERT INTO customers (full_name, email) VALUES ('bad', '\\x0102')",
    );
    let e = admin
        .query("SELECT email FROM customers ORDER BY id", &[])
        .await
        .expect_err("XX001");
    assert_eq!(sqlstate(&e).as_deref(), Some("XX001"));
    let recs = wait_statements(&env, "xx-admin", 2);
    let sel = recs
        .iter()
        .find(|r| s(r, "fingerprint").contains("order by id"))
        .expect("select record");
    assert_eq!(s(sel, "outcome"), "XX001", "{sel}");
    assert_eq!(
        sel["rows"].as_u64(),
        Some(1),
        "one row reached the client: {sel}"
    );
}

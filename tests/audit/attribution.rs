//! Issue 13, completeness: rows that reach the client through a name or in
//! pieces are recorded with what they reveal. A `FETCH` names the tables,
//! tagged columns and actions of its cursor's query and counts the rows it
//! fetched (the `DECLARE` fetched none); each Execute of a portal run with
//! a row limit counts its own batch; a `COPY … TO STDOUT` counts the rows
//! copied and names only the tagged columns copied.

use futures_util::{StreamExt, TryStreamExt};

use super::support::*;

/// `fingerprint | tables | columns | rows=N | outcome` of the records whose
/// fingerprint starts with one of `prefixes`, in order.
fn lines(recs: &[Value], prefixes: &[&str]) -> Vec<String> {
    recs.iter()
        .filter(|r| prefixes.iter().any(|p| s(r, "fingerprint").starts_with(p)))
        .map(|r| {
            format!(
                "{} | {} | [{}] | rows={} | {}",
                s(r, "fingerprint"),
                r["tables"],
                cols(r).join(","),
                r["rows"],
                s(r, "outcome")
            )
        })
        .collect()
}

async fn seed(env: &Env, n: usize) {
    let admin = connect_app(env, ADMIN, "at-seed").await;
    for i in 0..n {
        admin
            .execute(
                "INSERT INTO customers (full_name, email, ssn) VALUES ($1, $2, $3)",
                &[
                    &format!("Person {i}"),
                    &format!("p{i}@audit-test.example"),
                    &format!("900-00-000{i}"),
                ],
            )
            .await
            .expect("seed insert");
    }
}

#[tokio::test]
async fn fetch_from_a_cursor_is_recorded_with_its_query_columns_and_rows() {
    let env = setup("audit_cursor", None, None, &[]);
    seed(&env, 5).await;
    let mut m = Mismatches::default();

    // Simple protocol, admin (plaintext).
    let admin = connect_app(&env, ADMIN, "at-cursor").await;
    admin.simple_query("BEGIN").await.unwrap();
    admin
        .simple_query("DECLARE c CURSOR FOR SELECT email, ssn FROM customers ORDER BY id")
        .await
        .unwrap();
    let two = admin.simple_query("FETCH 2 FROM c").await.unwrap();
    assert_eq!(rows_of(&two), 2);
    let rest = admin.simple_query("FETCH 10 FROM c").await.unwrap();
    assert_eq!(rows_of(&rest), 3);
    // The same cursor read through the extended protocol.
    // MOVE positions the cursor and reveals nothing, whatever its count.
    admin.simple_query("MOVE FORWARD 2 IN c").await.unwrap();
    admin.simple_query("MOVE ABSOLUTE 0 IN c").await.unwrap();
    let ext = admin.query("FETCH 4 FROM c", &[]).await.unwrap();
    assert_eq!(ext.len(), 4);
    admin.simple_query("CLOSE c; COMMIT").await.unwrap();

    // A masked role, a cursor declared WITH HOLD in a multi-statement Query.
    let support = connect_app(&env, SUPPORT, "st-cursor").await;
    let got = support
        .simple_query(
            "DECLARE h CURSOR WITH HOLD FOR SELECT full_name, email FROM customers ORDER BY id; \
             FETCH ALL FROM h",
        )
        .await
        .unwrap();
    assert_eq!(rows_of(&got), 5);
    support.simple_query("CLOSE h").await.unwrap();

    let recs = wait_statements(&env, "at-cursor", 9);
    let pcs = r#"["public.customers"]"#;
    m.check(
        lines(&recs, &["declare", "fetch", "move"]),
        vec![
            format!("declare c cursor for select email, ssn from customers order by id | {pcs} | [email:plaintext,ssn:plaintext] | rows=0 | ok"),
            format!("fetch ? from c | {pcs} | [email:plaintext,ssn:plaintext] | rows=2 | ok"),
            format!("fetch ? from c | {pcs} | [email:plaintext,ssn:plaintext] | rows=3 | ok"),
            format!("move forward ? in c | {pcs} | [email:plaintext,ssn:plaintext] | rows=0 | ok"),
            format!("move absolute ? in c | {pcs} | [email:plaintext,ssn:plaintext] | rows=0 | ok"),
            format!("fetch ? from c | {pcs} | [email:plaintext,ssn:plaintext] | rows=4 | ok"),
        ],
    );
    let recs = wait_statements(&env, "st-cursor", 3);
    m.check(
        lines(&recs, &["declare", "fetch"]),
        vec![
            format!("declare h cursor with hold for select full_name, email from customers order by id | {pcs} | [email:masked(email),full_name:masked(partial(1,0))] | rows=0 | ok"),
            format!("fetch all from h | {pcs} | [email:masked(email),full_name:masked(partial(1,0))] | rows=5 | ok"),
        ],
    );
    m.finish();
}

#[tokio::test]
async fn limited_portals_and_copy_out_carry_their_rows_and_columns() {
    let env = setup("audit_portal_copy", None, None, &[]);
    seed(&env, 5).await;
    let mut m = Mismatches::default();
    let mut admin = connect_app(&env, ADMIN, "at-portal").await;
    // A portal run with a row limit: one record per Execute, each with its rows.
    let tx = admin.transaction().await.unwrap();
    let stmt = tx
        .prepare("SELECT email FROM customers WHERE id > 0 ORDER BY id")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    for want in [2, 2, 1] {
        let got = tx.query_portal(&portal, 2).await.unwrap();
        assert_eq!(got.len(), want);
    }
    tx.commit().await.unwrap();
    let recs = wait_statements(&env, "at-portal", 3);
    let pcs = r#"["public.customers"]"#;
    let fp = "select email from customers where id > ? order by id";
    m.check(
        lines(&recs, &[fp]),
        vec![
            format!("{fp} | {pcs} | [email:plaintext] | rows=2 | ok"),
            format!("{fp} | {pcs} | [email:plaintext] | rows=2 | ok"),
            format!("{fp} | {pcs} | [email:plaintext] | rows=1 | ok"),
        ],
    );

    // COPY … TO STDOUT: the rows copied, and only the tagged columns copied.
    let copy = connect_app(&env, ADMIN, "at-copy").await;
    let out = copy
        .copy_out("COPY (SELECT id, email FROM customers ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let data: Vec<_> = out.try_collect().await.unwrap();
    let text: String = data
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.contains("p4@audit-test.example"), "decrypted: {text}");
    let out = copy
        .copy_out("COPY customers (full_name, ssn) TO STDOUT WITH (FORMAT csv)")
        .await
        .unwrap();
    assert_eq!(out.count().await, 5);
    // A masked role may not COPY out (masks apply to rows pgveil reads, not
    // to a bulk copy); its attempt is recorded with what it asked for.
    let support = connect_app(&env, SUPPORT, "st-copy").await;
    let e = support
        .copy_out("COPY (SELECT full_name, email FROM customers) TO STDOUT")
        .await
        .err()
        .expect("refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    let recs = wait_statements(&env, "st-copy", 1);
    m.check(
        lines(&recs, &["copy"]),
        vec![format!("copy (select full_name, email from customers) to stdout | {pcs} | [email:denied,full_name:denied] | rows=0 | 42501")],
    );
    let recs = wait_statements(&env, "at-copy", 2);
    m.check(
        lines(&recs, &["copy"]),
        vec![
            format!("copy (select id, email from customers order by id) to stdout | {pcs} | [email:plaintext] | rows=5 | ok"),
            format!("copy customers (full_name, ssn) to stdout with (format csv) | {pcs} | [full_name:plaintext,ssn:plaintext] | rows=5 | ok"),
        ],
    );
    m.finish();
}

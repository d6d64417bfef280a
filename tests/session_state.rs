//! Issue 10, classes 8 and 9: plaintext must never reach an encrypted column
//! through pgveil's idea of the session's named objects.
//! - 8: PostgreSQL has one namespace for SQL and protocol prepared
//!   statements, so SQL `EXECUTE` reaches a statement prepared by Parse.
//! - 9: proxy state the server did not commit (DISCARD ALL refused inside a
//!   transaction) must not change what pgveil believes.
//!
//! Each test writes through the real proxy and then reads the table directly
//! from PostgreSQL: the value must be there only as ciphertext.

mod common;

use common::customers::*;
use common::*;

/// Whether `needle` is stored in clear anywhere in the row's bytea columns.
fn stored_in_clear(env: &Env, full_name: &str, needle: &str) -> bool {
    let out = cluster().sql(
        &env.db,
        &format!(
            "SELECT count(*) FROM customers WHERE full_name = '{full_name}' AND \
             (position(convert_to('{needle}', 'UTF8') in coalesce(email, '')) > 0 \
              OR position(convert_to('{needle}', 'UTF8') in coalesce(ssn, '')) > 0)"
        ),
    );
    out.trim() != "0"
}

fn row_count(env: &Env, full_name: &str) -> i64 {
    cluster()
        .sql(
            &env.db,
            &format!("SELECT count(*) FROM customers WHERE full_name = '{full_name}'"),
        )
        .trim()
        .parse()
        .unwrap_or(-1)
}

#[tokio::test]
async fn sql_execute_of_a_protocol_prepared_statement_encrypts() {
    let env = setup("sess_exec");
    let c = as_role(&env, ADMIN).await;
    // tokio-postgres prepares named statements with Parse.
    let _stmt = c
        .prepare("INSERT INTO customers (full_name, email) VALUES ('wp', $1)")
        .await
        .expect("prepare");
    let rows = c
        .simple_query("SELECT name FROM pg_prepared_statements WHERE NOT from_sql")
        .await
        .expect("names");
    let name = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a protocol-prepared statement");
    let r = c
        .simple_query(&format!("EXECUTE {name}('mallory@evil.example')"))
        .await;
    assert!(
        !stored_in_clear(&env, "wp", "mallory@evil"),
        "EXECUTE {name} stored plaintext ({r:?})"
    );
    r.expect("EXECUTE of a protocol-prepared statement works, encrypted");
    let back = c
        .query("SELECT email FROM customers WHERE full_name = 'wp'", &[])
        .await
        .expect("read back");
    assert_eq!(back[0].get::<_, String>(0), "mallory@evil.example");
}

#[tokio::test]
async fn sql_execute_of_a_protocol_prepared_statement_restricted_role() {
    use common::wire::*;
    let env = setup("sess_exec_r");
    cluster().sql(
        &env.db,
        &format!("GRANT ALL ON customers, customers_id_seq TO {TRUST_USER}"),
    );
    let mut s = login_trust(env.proxy.port, TRUST_USER, &env.db).await;
    let mut body = b"wq\0INSERT INTO customers (full_name, email) VALUES ('wq', $1)\0".to_vec();
    body.extend(0i16.to_be_bytes());
    let frames = [msg(b'P', &body), msg(b'S', b"")].concat();
    tokio::io::AsyncWriteExt::write_all(&mut s, &frames)
        .await
        .unwrap();
    loop {
        match read_msg(&mut s).await.unwrap() {
            Some((b'Z', _)) | None => break,
            _ => {}
        }
    }
    let _ = simple_query(&mut s, "EXECUTE wq('mallory@evil.example')").await;
    assert!(
        !stored_in_clear(&env, "wq", "mallory@evil"),
        "plaintext stored"
    );
}

#[tokio::test]
async fn state_the_server_rolled_back_changes_nothing() {
    let env = setup("sess_discard");
    let c = as_role(&env, ADMIN).await;
    c.simple_query("PREPARE w AS INSERT INTO customers (full_name, email) VALUES ('dw', $1)")
        .await
        .expect("prepare");
    c.simple_query("BEGIN").await.expect("begin");
    let discard = c.simple_query("DISCARD ALL").await;
    assert!(
        discard.is_err(),
        "DISCARD ALL is refused inside a transaction"
    );
    c.simple_query("ROLLBACK").await.expect("rollback");
    let r = c.simple_query("EXECUTE w('mallory@evil.example')").await;
    assert!(r.is_ok(), "w still exists on the server: {r:?}");
    assert_eq!(row_count(&env, "dw"), 1);
    assert!(
        !stored_in_clear(&env, "dw", "mallory@evil"),
        "EXECUTE w stored plaintext"
    );
    // DEALLOCATE inside a rolled-back transaction does take effect (it is
    // not transactional), and EXECUTE then fails on the server too.
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("DEALLOCATE w").await.expect("deallocate");
    c.simple_query("ROLLBACK").await.unwrap();
    assert!(c.simple_query("EXECUTE w('x@y.z')").await.is_err());
    assert_eq!(row_count(&env, "dw"), 1);
}

#[tokio::test]
async fn a_failed_parse_keeps_the_statement_the_server_kept() {
    let env = setup("sess_parse");
    let c = as_role(&env, ADMIN).await;
    c.simple_query("PREPARE ins AS INSERT INTO customers (full_name, email) VALUES ('fp', $1)")
        .await
        .expect("prepare");
    // A second PREPARE of the same name fails on the server; pgveil must
    // keep the first statement's plan for it.
    let again = c.simple_query("PREPARE ins AS SELECT $1::text").await;
    assert!(again.is_err(), "duplicate name");
    c.simple_query("EXECUTE ins('mallory@evil.example')")
        .await
        .expect("execute the first statement");
    assert!(!stored_in_clear(&env, "fp", "mallory@evil"));
}

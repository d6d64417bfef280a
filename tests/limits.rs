//! Issue 10, crash class: no statement, however large or deep, may take the
//! proxy down, and a fault in one session never affects another. Each case
//! runs through the real proxy while a bystander session stays connected;
//! the proxy must answer every case (with a result or a clear refusal) and
//! the bystander must still be served afterwards.

mod common;

use common::customers::*;
use common::*;

/// `SELECT 1 + 0 + … + 0` with `terms` additions, the shape that overflowed
/// a worker's stack (a left-deep expression tree).
fn flat_sum(prefix: &str, terms: usize, suffix: &str) -> String {
    let mut s = String::with_capacity(terms * 4 + prefix.len() + suffix.len());
    s.push_str(prefix);
    s.push('1');
    for _ in 0..terms {
        s.push_str(" + 0");
    }
    s.push_str(suffix);
    s
}

fn nested_parens(depth: usize) -> String {
    format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth))
}

/// Whether `r` is a result or one of the refusals this class allows: the
/// statement is too complex (54001) or, for nesting the parser will not
/// take, refused as unparsable (42601) — never a dropped connection.
fn answered(r: &Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>) -> bool {
    match r {
        Ok(_) => true,
        Err(e) => matches!(sqlstate(e).as_deref(), Some("54001") | Some("42601")),
    }
}

#[tokio::test]
async fn huge_and_deep_statements_never_take_the_proxy_down() {
    let env = setup("limits");
    // The shapes, each with and without a tagged table in the statement.
    let cases = vec![
        ("flat 9000", flat_sum("SELECT ", 9_000, "")),
        (
            "flat 9000 tagged",
            flat_sum("SELECT email FROM customers WHERE id = ", 9_000, ""),
        ),
        ("flat 200000", flat_sum("SELECT ", 200_000, "")),
        (
            "flat 200000 tagged",
            flat_sum("SELECT id FROM customers WHERE id = ", 200_000, ""),
        ),
        (
            "and chain",
            format!(
                "SELECT id FROM customers WHERE {}",
                vec!["id = 1"; 20_000].join(" AND ")
            ),
        ),
        ("parens 5000", nested_parens(5_000)),
        (
            "unary minus 20000",
            format!("SELECT {}1", "-".repeat(20_000)),
        ),
        (
            "not chain",
            format!(
                "SELECT id FROM customers WHERE {} true",
                "NOT ".repeat(20_000)
            ),
        ),
        (
            "nested subqueries",
            format!("SELECT {}1{}", "(SELECT ".repeat(3_000), ")".repeat(3_000)),
        ),
        (
            "concat chain",
            format!(
                "SELECT full_name{} FROM customers",
                " || 'x'".repeat(20_000)
            ),
        ),
    ];
    let bystander = as_role(&env, ADMIN).await;
    for role in [ADMIN, SUPPORT, ANALYST] {
        for (name, sql) in &cases {
            let c = as_role(&env, role).await;
            let r = c.simple_query(sql).await;
            assert!(
                answered(&r),
                "{name} as {role}: {:?}\n{}",
                r.err().map(|e| e.to_string()),
                env.proxy.log()
            );
            let ok = c.simple_query("SELECT 1").await;
            assert!(ok.is_ok(), "{name} as {role}: session unusable afterwards");
        }
    }
    let b = bystander.simple_query("SELECT 42").await;
    assert!(b.is_ok(), "bystander lost: {}", env.proxy.log());
}

#[tokio::test]
async fn a_panic_in_one_session_leaves_the_others_running() {
    let c = cluster();
    let db = c.fresh_db("panic");
    let proxy = Proxy::start_with_env(&c.url(), &[], &[("PGVEIL_FAULT_INJECTION", "1")]);
    let bystander = connect(proxy.port, &db, APP_USER, APP_PASSWORD)
        .await
        .expect("bystander");
    bystander
        .simple_query("BEGIN; SELECT 1")
        .await
        .expect("bystander in a transaction");
    let victim = connect(proxy.port, &db, APP_USER, APP_PASSWORD)
        .await
        .expect("victim");
    let r = victim.simple_query("SELECT 'pgveil:panic'").await;
    assert!(r.is_err(), "the injected fault did not fire");
    assert!(
        victim.simple_query("SELECT 1").await.is_err(),
        "victim session survived a panic?"
    );
    // The bystander's open transaction is intact, and new sessions are served.
    bystander
        .simple_query("SELECT 2; COMMIT")
        .await
        .expect("bystander after the panic");
    let fresh = connect(proxy.port, &db, APP_USER, APP_PASSWORD)
        .await
        .expect("new session");
    fresh
        .simple_query("SELECT 3")
        .await
        .expect("new session served");
    assert!(
        wait_until(std::time::Duration::from_secs(5), || {
            metric(proxy.metrics_port, "pgveil_session_panics_total") == 1.0
                && metric(proxy.metrics_port, "pgveil_client_connections_active") == 2.0
        }),
        "panic not counted or connection slot leaked:\n{}",
        proxy.log()
    );
}

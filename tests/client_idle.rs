//! `--client-idle-timeout`: an idle session (no transaction, nothing in
//! flight) is closed with FATAL 57P05; a session inside a transaction is not.

mod common;

use std::time::Duration;

use common::wire::{has_fatal, login_trust, read_until_close, simple_query};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_closed_and_one_in_a_transaction_survives() {
    let c = shared();
    let db = c.fresh_db("client_idle");
    let proxy = Proxy::start(&c.url(), &["--client-idle-timeout", "1"]);
    let mut idle = login_trust(proxy.port, TRUST_USER, &db).await;
    let mut busy = login_trust(proxy.port, TRUST_USER, &db).await;
    let begun = simple_query(&mut busy, "BEGIN").await;
    assert!(
        begun
            .iter()
            .any(|(t, b)| *t == b'Z' && b.first() == Some(&b'T')),
        "{begun:?}"
    );

    let (msgs, closed) = read_until_close(&mut idle, Duration::from_secs(30)).await;
    assert!(closed, "the idle session was not closed");
    assert!(has_fatal(&msgs, "57P05"), "{msgs:?}");

    // The session in a transaction is still served.
    let r = simple_query(&mut busy, "SELECT 41 + 1").await;
    assert!(r.iter().any(|(t, _)| *t == b'D'), "{r:?}");
    let r = simple_query(&mut busy, "COMMIT").await;
    assert!(
        r.iter()
            .any(|(t, b)| *t == b'Z' && b.first() == Some(&b'I')),
        "{r:?}"
    );
    assert!(metric(proxy.metrics_port, "pgveil_client_idle_timeouts_total") >= 1.0);
}

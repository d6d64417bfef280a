//! Dead and idle peers: `--client-idle-timeout` closes an idle session (no
//! transaction, nothing in flight) with FATAL 57P05 but not one inside a
//! transaction; `--tcp-keepalive` sets keepalive on the client and upstream
//! sockets (seen with `ss`).

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

/// Established TCP sockets matching an `ss` filter, one line each.
fn sockets(filter: &str) -> Vec<String> {
    let out = std::process::Command::new("ss")
        .args(["-tnopH", "state", "established", filter])
        .output()
        .expect("ss (iproute2) is needed for this test");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_keepalive_is_on_for_both_sockets_unless_turned_off() {
    let c = shared();
    let db = c.fresh_db("keepalive");
    let on = Proxy::start(&c.url(), &["--tcp-keepalive", "30"]);
    let off = Proxy::start(&c.url(), &["--tcp-keepalive", "0"]);
    let _a = login_trust(on.port, TRUST_USER, &db).await;
    let _b = login_trust(off.port, TRUST_USER, &db).await;

    let client_on = sockets(&format!("( sport = :{} )", on.port));
    assert_eq!(client_on.len(), 1, "{client_on:?}");
    assert!(client_on[0].contains("timer:(keepalive"), "{client_on:?}");
    let client_off = sockets(&format!("( sport = :{} )", off.port));
    assert_eq!(client_off.len(), 1, "{client_off:?}");
    assert!(!client_off[0].contains("keepalive"), "{client_off:?}");

    // The upstream side: each proxy's own connection to PostgreSQL.
    let upstream = sockets(&format!("( dport = :{} )", c.pg.port()));
    let of = |p: &Proxy| -> Vec<&String> {
        let pid = format!("pid={},", p.pid());
        upstream.iter().filter(|l| l.contains(&pid)).collect()
    };
    let (up_on, up_off) = (of(&on), of(&off));
    assert_eq!((up_on.len(), up_off.len()), (1, 1), "{upstream:?}");
    assert!(up_on[0].contains("timer:(keepalive"), "{up_on:?}");
    assert!(!up_off[0].contains("keepalive"), "{up_off:?}");
}

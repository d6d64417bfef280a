//! Malformed frames, connection limit, upstream outage, SIGTERM drain, metrics/health.

mod common;

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use common::wire;
use common::*;

const CAP: usize = 1024 * 1024;

/// Sends `bytes` on a fresh connection (optionally after a trust login), half-closes if asked,
/// and returns what the proxy answered before closing.
async fn send_raw(
    port: u16,
    login_db: Option<&str>,
    bytes: &[u8],
    half_close: bool,
) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut s = match login_db {
        Some(db) => wire::login_trust(port, TRUST_USER, db).await,
        None => TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
    };
    s.write_all(bytes).await.unwrap();
    if half_close {
        s.shutdown().await.unwrap();
    }
    wire::read_until_close(&mut s, Duration::from_secs(10)).await
}

async fn assert_still_serving(port: u16, db: &str, client: &tokio_postgres::Client) {
    let n: i32 = client
        .query_one("SELECT 41 + 1", &[])
        .await
        .expect("existing session broken by another session's garbage")
        .get(0);
    assert_eq!(n, 42);
    let fresh = connect(port, db, APP_USER, APP_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("new session refused: {e:?}"));
    let n: i32 = fresh.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(n, 7);
}

#[tokio::test]
async fn malformed_frames_before_startup() {
    let c = shared();
    let db = c.fresh_db("garbage_pre");
    let cap = CAP.to_string();
    let mut p = Proxy::start(&c.url(), &["--max-message-bytes", &cap]);
    let client = connect(p.port, &db, APP_USER, APP_PASSWORD).await.unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zero length", 0_i32.to_be_bytes().to_vec()),
        ("negative length", (-1_i32).to_be_bytes().to_vec()),
        ("length below minimum", 7_i32.to_be_bytes().to_vec()),
        ("huge length", i32::MAX.to_be_bytes().to_vec()),
        ("over the cap", ((CAP as i32) * 2).to_be_bytes().to_vec()),
        ("unknown request code", wire::request(1234 << 16 | 4321)),
    ];
    for (what, bytes) in cases {
        let (msgs, closed) = send_raw(p.port, None, &bytes, false).await;
        assert!(closed, "{what}: the proxy did not close the connection");
        let codes = wire::error_codes(&msgs);
        assert!(
            wire::has_fatal(&msgs, "08P01")
                || (what == "unknown request code" && codes.iter().any(|c| c == "0A000")),
            "{what}: expected a FATAL 08P01 ErrorResponse, got {codes:?} / {msgs:?}"
        );
        assert!(p.is_alive(), "{what}: proxy died");
        assert_still_serving(p.port, &db, &client).await;
    }
    // Truncated startup packet, then EOF: a clean close (an error reply is optional).
    let mut partial = 100_i32.to_be_bytes().to_vec();
    partial.extend(196_608_i32.to_be_bytes());
    partial.extend(b"user\0");
    let (msgs, closed) = send_raw(p.port, None, &partial, true).await;
    assert!(closed, "truncated startup: not closed");
    let codes = wire::error_codes(&msgs);
    assert!(codes.iter().all(|c| c == "08P01"), "{codes:?}");
    // Plaintext pipelined right after SSLRequest is refused (CVE-2021-23214 class).
    let mut piped = wire::request(wire::SSL_REQUEST);
    piped.extend(wire::startup(TRUST_USER, &db));
    let (msgs, closed) = send_raw(p.port, None, &piped, false).await;
    assert!(closed, "pipelined startup after SSLRequest was not refused");
    assert!(
        !msgs.iter().any(|(t, _)| *t == b'R' || *t == b'Z'),
        "session started from bytes pipelined after SSLRequest: {msgs:?}"
    );
    assert!(p.is_alive());
    assert_still_serving(p.port, &db, &client).await;
}

#[tokio::test]
async fn gssenc_request_is_declined_then_startup_proceeds() {
    let c = shared();
    let db = c.fresh_db("gss");
    let p = Proxy::start(&c.url(), &[]);
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    s.write_all(&wire::request(wire::GSSENC_REQUEST))
        .await
        .unwrap();
    let mut b = [0u8; 1];
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut b),
    )
    .await
    .expect("no answer to GSSENCRequest")
    .unwrap();
    assert_eq!(b[0], b'N');
    s.write_all(&wire::startup(TRUST_USER, &db)).await.unwrap();
    let mut ready = false;
    while let Ok(Some((tag, _))) = wire::read_msg(&mut s).await {
        if tag == b'Z' {
            ready = true;
            break;
        }
    }
    assert!(
        ready,
        "startup after a declined GSSENCRequest did not reach ReadyForQuery"
    );
}

#[tokio::test]
async fn malformed_frames_after_authentication() {
    let c = shared();
    let db = c.fresh_db("garbage_post");
    let cap = CAP.to_string();
    let mut p = Proxy::start(&c.url(), &["--max-message-bytes", &cap]);
    let client = connect(p.port, &db, APP_USER, APP_PASSWORD).await.unwrap();

    // Sanity: the hand-written session works at all.
    let mut s = wire::login_trust(p.port, TRUST_USER, &db).await;
    let msgs = wire::simple_query(&mut s, "SELECT 1").await;
    assert!(msgs.iter().any(|(t, _)| *t == b'D'), "{msgs:?}");
    drop(s);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zero length", wire::header(b'Q', 0)),
        ("negative length", wire::header(b'Q', -1)),
        ("length below 4", wire::header(b'Q', 3)),
        ("huge length", wire::header(b'Q', i32::MAX)),
        ("over the cap", wire::header(b'Q', (CAP as i32) + 1024)),
        ("unknown tag", wire::msg(b'y', b"xyz")),
        ("unknown tag 0", wire::msg(0, b"")),
    ];
    for (what, bytes) in cases {
        let (msgs, closed) = send_raw(p.port, Some(&db), &bytes, false).await;
        assert!(closed, "{what}: the proxy did not close the connection");
        assert!(
            wire::has_fatal(&msgs, "08P01"),
            "{what}: expected a FATAL 08P01 ErrorResponse, got {:?}",
            wire::error_codes(&msgs)
        );
        assert!(p.is_alive(), "{what}: proxy died");
        assert_still_serving(p.port, &db, &client).await;
    }
    // A message just under the cap is fine.
    let mut s = wire::login_trust(p.port, TRUST_USER, &db).await;
    let big = format!("SELECT length('{}')", "z".repeat(CAP - 100));
    let msgs = wire::simple_query(&mut s, &big).await;
    assert!(wire::error_codes(&msgs).is_empty(), "{msgs:?}");
    drop(s);
    // Truncated message, then EOF: a clean close, nothing else breaks.
    let mut trunc = wire::header(b'Q', 100);
    trunc.extend(b"SELECT");
    let (msgs, closed) = send_raw(p.port, Some(&db), &trunc, true).await;
    assert!(closed, "truncated message: not closed");
    let codes = wire::error_codes(&msgs);
    assert!(codes.iter().all(|c| c == "08P01"), "{codes:?}");
    assert!(p.is_alive());
    assert_still_serving(p.port, &db, &client).await;
    // No leaked server backends from the killed sessions.
    let leaked = wait_until(Duration::from_secs(10), || {
        c.sql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' \
                 AND usename = '{TRUST_USER}'"
            ),
        )
        .trim()
            == "0"
    });
    assert!(leaked, "backends of garbage sessions were not closed");
}

#[tokio::test]
async fn connection_limit_answers_53300() {
    let c = shared();
    let db = c.fresh_db("limit");
    let mut p = Proxy::start(&c.url(), &["--max-connections", "2"]);
    let a = connect(p.port, &db, APP_USER, APP_PASSWORD).await.unwrap();
    let b = connect(p.port, &db, APP_USER, APP_PASSWORD).await.unwrap();
    let e = connect(p.port, &db, APP_USER, APP_PASSWORD)
        .await
        .expect_err("third connection must be refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("53300"), "{e:?}");
    // The two admitted sessions are unaffected; closing one frees a slot.
    for cl in [&a, &b] {
        let n: i32 = cl.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(n, 1);
    }
    drop(a);
    let mut third = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while third.is_none() && Instant::now() < deadline {
        match connect(p.port, &db, APP_USER, APP_PASSWORD).await {
            Ok(cl) => third = Some(cl),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(third.is_some(), "slot not freed after a client left");
    assert!(p.is_alive());
}

#[tokio::test]
async fn upstream_down_gives_08001_and_recovers() {
    // A private cluster: this test stops it.
    let own = Cluster::start();
    own.pg.create_database("down", APP_USER).unwrap();
    let mut p = Proxy::start(&own.url(), &[]);
    let first = connect(p.port, "down", APP_USER, APP_PASSWORD)
        .await
        .unwrap();
    let n: i32 = first.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    own.pg.stop().unwrap();
    // The open session sees its server go away.
    assert!(first.query_one("SELECT 1", &[]).await.is_err());
    for _ in 0..3 {
        let e = connect(p.port, "down", APP_USER, APP_PASSWORD)
            .await
            .expect_err("server is down");
        let code = sqlstate(&e);
        assert!(
            matches!(code.as_deref(), Some("08001") | Some("08006")),
            "expected 08001/08006, got {e:?}"
        );
        assert!(p.is_alive());
    }
    let (status, body) = http_get(p.metrics_port, "/metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains("pgveil_upstream_connect_errors_total"),
        "{body}"
    );
    own.pg.restart().unwrap();
    let again = connect(p.port, "down", APP_USER, APP_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("not serving after the server came back: {e:?}"));
    let n: i32 = again.query_one("SELECT 2", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn closed_upstream_port_gives_08001() {
    let port = free_port();
    let mut p = Proxy::start(&format!("postgres://127.0.0.1:{port}"), &[]);
    let e = connect(p.port, "postgres", APP_USER, APP_PASSWORD)
        .await
        .expect_err("nothing listens upstream");
    let code = sqlstate(&e);
    assert!(
        matches!(code.as_deref(), Some("08001") | Some("08006")),
        "{e:?}"
    );
    assert!(p.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_open_transactions_then_exits_0() {
    let c = shared();
    let db = c.fresh_db("drain");
    c.sql(&db, "CREATE TABLE d(x int); GRANT ALL ON d TO PUBLIC;");
    let mut p = Proxy::start(&c.url(), &["--shutdown-timeout", "20"]);
    let client = connect(p.port, &db, APP_USER, APP_PASSWORD).await.unwrap();
    client
        .batch_execute("BEGIN; INSERT INTO d VALUES (1)")
        .await
        .unwrap();
    p.signal(libc::SIGTERM);
    // New connections are refused (closed listener or an error reply) while draining.
    let port = p.port;
    let refused = {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut refused = false;
        while Instant::now() < deadline {
            let attempt = tokio::time::timeout(
                Duration::from_secs(3),
                connect(port, &db, APP_USER, APP_PASSWORD),
            )
            .await;
            if !matches!(attempt, Ok(Ok(_))) {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        refused
    };
    assert!(refused, "new connections still accepted after SIGTERM");
    assert!(p.is_alive(), "exited before the open transaction finished");
    // The running session finishes its transaction.
    client
        .batch_execute("INSERT INTO d VALUES (2); COMMIT")
        .await
        .unwrap();
    drop(client);
    let status = tokio::task::block_in_place(|| p.wait_exit(Duration::from_secs(15)));
    let status = status.expect("proxy did not exit after its last session ended");
    assert!(status.success(), "exit status {status}");
    assert_eq!(c.sql(&db, "SELECT count(*) FROM d").trim(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_up_on_stuck_sessions_after_the_timeout() {
    let c = shared();
    let db = c.fresh_db("drain_timeout");
    let mut p = Proxy::start(&c.url(), &["--shutdown-timeout", "2"]);
    let client = connect(p.port, &db, APP_USER, APP_PASSWORD).await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    let t0 = Instant::now();
    p.signal(libc::SIGTERM);
    let status = tokio::task::block_in_place(|| p.wait_exit(Duration::from_secs(10)));
    assert!(status.is_some(), "proxy ignored its shutdown timeout");
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "did not wait for the session"
    );
    drop(client);
}

#[tokio::test]
async fn metrics_and_healthz() {
    let c = shared();
    let db = c.fresh_db("metrics");
    let p = Proxy::start(&c.url(), &[]);
    let client = connect(p.port, &db, APP_USER, APP_PASSWORD).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    client.query("SELECT $1::int4", &[&1_i32]).await.unwrap();
    let _ = client.simple_query("SELECT 1/0").await;
    let (status, _) = http_get(p.metrics_port, "/healthz");
    assert_eq!(status, 200);
    let (status, body) = http_get(p.metrics_port, "/metrics");
    assert_eq!(status, 200, "{body}");
    for name in [
        "pgveil_client_connections_active",
        "pgveil_client_connections_total",
        "pgveil_statements_total",
        "pgveil_client_bytes_received_total",
        "pgveil_client_bytes_sent_total",
        "pgveil_proxy_added_latency_seconds",
        "pgveil_statement_duration_seconds",
    ] {
        assert!(body.contains(name), "missing {name} in:\n{body}");
    }
    // Every metric we export is ours.
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(' '))
    {
        if line.starts_with("HTTP/") || line.contains(':') {
            continue; // status line and headers
        }
        let name = line.split(['{', ' ']).next().unwrap_or("");
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            assert!(name.starts_with("pgveil_"), "unprefixed metric {name}");
        }
    }
    let active: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("pgveil_client_connections_active"))
        .collect();
    assert!(
        active.iter().any(|l| l.trim_end().ends_with(" 1")),
        "one client is connected: {active:?}"
    );
    let (status, _) = http_get(p.metrics_port, "/nope");
    assert_eq!(status, 404);
}

#[tokio::test]
async fn json_logs_never_contain_values() {
    let c = shared();
    let db = c.fresh_db("logs");
    let p = Proxy::start_with_env(
        &c.url(),
        &["--log-format", "json"],
        &[("PGVEIL_LOG", "debug")],
    );
    let client = connect(p.port, &db, APP_USER, APP_PASSWORD).await.unwrap();
    client
        .simple_query("SELECT 'secret-literal-' || 'xyz'")
        .await
        .unwrap();
    client
        .query("SELECT $1::text", &[&"secret-param-abc"])
        .await
        .unwrap();
    let _ = client.simple_query("SELECT 'secret-in-error' +").await;
    let _ = client.simple_query("SELECT 'secret-cast-value'::int").await;
    let _ = connect(p.port, &db, APP_USER, "secret-wrong-password").await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = p.log();
    assert!(log.contains("listening on"), "{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
    for secret in [
        "secret-literal",
        "secret-param-abc",
        "secret-in-error",
        "secret-cast-value",
        "secret-wrong-password",
        APP_PASSWORD,
    ] {
        assert!(!log.contains(secret), "log leaks {secret:?}:\n{log}");
    }
}

//! Authentication relayed through the proxy, and TLS on both legs.

mod common;

use common::*;

async fn current_user(client: &tokio_postgres::Client) -> String {
    client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn scram_right_password_works_and_wrong_one_fails_like_direct() {
    let c = shared();
    let db = c.fresh_db("scram");
    let p = Proxy::start(&c.url(), &[]);
    let client = connect(p.port, &db, APP_USER, APP_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(current_user(&client).await, APP_USER);

    let via_proxy = connect(p.port, &db, APP_USER, "wrong-password")
        .await
        .expect_err("wrong password must fail");
    let direct = connect(c.pg.port(), &db, APP_USER, "wrong-password")
        .await
        .expect_err("wrong password must fail");
    assert_eq!(
        sqlstate(&via_proxy).as_deref(),
        Some("28P01"),
        "{via_proxy:?}"
    );
    // Exactly as it would fail directly: same severity, code and message.
    let (a, b) = (
        via_proxy.as_db_error().unwrap(),
        direct.as_db_error().unwrap(),
    );
    assert_eq!(
        (a.severity(), a.code(), a.message()),
        (b.severity(), b.code(), b.message())
    );

    // psql (libpq's SCRAM) too, right and wrong.
    let out = psql(
        p.port,
        &db,
        APP_USER,
        APP_PASSWORD,
        &["-A", "-t", "-c", "SELECT 7"],
        None,
    );
    assert!(out.status.success() && out.stdout.trim() == "7", "{out:?}");
    let out = psql(p.port, &db, APP_USER, "nope", &["-c", "SELECT 1"], None);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr
            .contains("password authentication failed for user \"app\""),
        "{out:?}"
    );
    // The session that authenticated is unaffected by the failures.
    assert_eq!(current_user(&client).await, APP_USER);
}

#[tokio::test]
async fn md5_cleartext_and_trust_methods_are_relayed() {
    let c = shared();
    let db = c.fresh_db("methods");
    let p = Proxy::start(&c.url(), &[]);
    for (user, pw) in [
        (MD5_USER, MD5_PASSWORD),
        (CLEAR_USER, CLEAR_PASSWORD),
        (TRUST_USER, "anything"),
    ] {
        let client = connect(p.port, &db, user, pw)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e:?}"));
        assert_eq!(current_user(&client).await, user);
        // libpq as well.
        let out = psql(
            p.port,
            &db,
            user,
            pw,
            &["-A", "-t", "-c", "SELECT current_user"],
            None,
        );
        assert!(out.status.success(), "{user}: {out:?}");
        assert_eq!(out.stdout.trim(), user);
    }
    for user in [MD5_USER, CLEAR_USER] {
        let e = connect(p.port, &db, user, "wrong")
            .await
            .expect_err("wrong password must fail");
        assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{user}: {e:?}");
    }
}

#[tokio::test]
async fn client_tls_verify_full_against_test_ca() {
    let c = shared();
    let db = c.fresh_db("clienttls");
    let cert = c.certs.server_cert.to_str().unwrap();
    let key = c.certs.server_key.to_str().unwrap();
    // Plaintext upstream, so this tests the client leg alone (see `upstream_tls_verify_full`
    // for both legs, and the channel-binding note there).
    let upstream = format!("{}?sslmode=disable", c.url());
    let p = Proxy::start(&upstream, &["--tls-cert", cert, "--tls-key", key]);

    // rustls, trusting only the test CA and checking the host name.
    let client = connect_tls(&c.certs, "localhost", p.port, &db, APP_USER, APP_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(current_user(&client).await, APP_USER);

    // libpq with sslmode=verify-full.
    let mut cmd = client_cmd("psql", p.port, &db, APP_USER, APP_PASSWORD);
    cmd.env("PGHOST", "localhost")
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &c.certs.ca)
        .args(["-X", "-A", "-t", "-c", "SELECT 'tls-ok'"]);
    let out = run_tool(cmd, None, std::time::Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "tls-ok");

    // A client that does not trust the proxy's CA is refused by its own verification.
    let other = TestCerts::generate();
    let e = connect_tls(&other, "localhost", p.port, &db, APP_USER, APP_PASSWORD)
        .await
        .expect_err("unknown CA must fail verification");
    assert!(e.as_db_error().is_none(), "{e:?}");

    // Plaintext clients still work when TLS is optional (sslmode=prefer and disable).
    let plain = connect(p.port, &db, APP_USER, APP_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(current_user(&plain).await, APP_USER);
}

#[tokio::test]
async fn proxy_without_tls_answers_n_to_sslrequest() {
    let c = shared();
    let db = c.fresh_db("notls");
    let p = Proxy::start(&c.url(), &[]);
    let mut cmd = client_cmd("psql", p.port, &db, APP_USER, APP_PASSWORD);
    cmd.env("PGSSLMODE", "require")
        .args(["-X", "-c", "SELECT 1"]);
    let out = run_tool(cmd, None, std::time::Duration::from_secs(60));
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("does not support SSL"), "{out:?}");
    let mut cmd = client_cmd("psql", p.port, &db, APP_USER, APP_PASSWORD);
    cmd.env("PGSSLMODE", "prefer")
        .args(["-X", "-c", "SELECT 1"]);
    let out = run_tool(cmd, None, std::time::Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn upstream_tls_verify_full() {
    let c = shared();
    let db = c.fresh_db("upstreamtls");
    let p = Proxy::start(&c.tls_url(), &[]);
    // `tlsonly` is rejected by pg_hba.conf unless the server-side connection is TLS.
    let client = connect(p.port, &db, TLS_ONLY_USER, TLS_ONLY_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    // TLS on both legs, libpq with verify-full to the proxy. SCRAM channel binding cannot
    // cross a TLS-terminating proxy: the proxy hides SCRAM-SHA-256-PLUS, so libpq (default
    // channel_binding=prefer) would send the gs2 flag "y" ("I support binding, you don't"),
    // which a TLS-terminated server rejects as a downgrade, and rewriting the flag would
    // break the SCRAM proof. So clients on TLS to a TLS upstream use channel_binding=disable.
    let cert = c.certs.server_cert.to_str().unwrap();
    let key = c.certs.server_key.to_str().unwrap();
    let p2 = Proxy::start(&c.tls_url(), &["--tls-cert", cert, "--tls-key", key]);
    let mut cmd = client_cmd("psql", p2.port, &db, APP_USER, APP_PASSWORD);
    cmd.env("PGHOST", "localhost")
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &c.certs.ca)
        .env("PGCHANNELBINDING", "disable")
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ]);
    let out = run_tool(cmd, None, std::time::Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "t");
}

#[tokio::test]
async fn upstream_tls_with_wrong_ca_is_refused() {
    let c = shared();
    let db = c.fresh_db("wrongca");
    let other = TestCerts::generate();
    let url = format!(
        "postgres://localhost:{}?sslmode=verify-full&sslrootcert={}",
        c.pg.port(),
        other.ca.display()
    );
    let mut p = Proxy::start(&url, &[]);
    let e = connect(p.port, &db, APP_USER, APP_PASSWORD)
        .await
        .expect_err("an upstream certificate from an unknown CA must be refused");
    let code = sqlstate(&e);
    assert!(
        matches!(code.as_deref(), Some("08001") | Some("08006")),
        "{e:?}"
    );
    assert!(p.is_alive());
}

#[tokio::test]
async fn require_client_tls_rejects_plaintext() {
    let c = shared();
    let db = c.fresh_db("requiretls");
    let cert = c.certs.server_cert.to_str().unwrap();
    let key = c.certs.server_key.to_str().unwrap();
    let mut p = Proxy::start(
        &c.url(),
        &["--tls-cert", cert, "--tls-key", key, "--require-client-tls"],
    );
    let e = connect(p.port, &db, APP_USER, APP_PASSWORD)
        .await
        .expect_err("plaintext client must be refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e:?}");
    let mut cmd = client_cmd("psql", p.port, &db, APP_USER, APP_PASSWORD);
    cmd.env("PGSSLMODE", "disable")
        .args(["-X", "-c", "SELECT 1"]);
    let out = run_tool(cmd, None, std::time::Duration::from_secs(60));
    assert!(!out.status.success(), "{out:?}");
    // TLS clients are served.
    let client = connect_tls(&c.certs, "localhost", p.port, &db, APP_USER, APP_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(current_user(&client).await, APP_USER);
    assert!(p.is_alive());
}

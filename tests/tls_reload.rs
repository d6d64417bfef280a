//! SIGHUP reloads the client-facing TLS certificate and key: a renewed
//! certificate is served to new clients without a restart, and a broken
//! one is rejected while the certificate in use stays.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_renewed_certificate_and_keeps_the_old_one_when_broken() {
    let c = shared();
    let db = c.fresh_db("tls_reload");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(&c.certs.server_cert, &cert).expect("copy cert");
    std::fs::copy(&c.certs.server_key, &key).expect("copy key");
    let upstream = format!("{}?sslmode=disable", c.url());
    let p = Proxy::start(
        &upstream,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let tls = |certs: &'static TestCerts| {
        let db = db.clone();
        async move {
            connect_tls(certs, "localhost", p.port, &db, APP_USER, APP_PASSWORD)
                .await
                .is_ok()
        }
    };
    let renewed: &'static TestCerts = Box::leak(Box::new(TestCerts::generate()));
    assert!(tls(&c.certs).await, "the first certificate is served");
    assert!(!tls(renewed).await, "the renewed CA is not trusted yet");

    // Renew (as cert-manager or certbot would), then SIGHUP.
    std::fs::copy(&renewed.server_cert, &cert).expect("renew cert");
    std::fs::copy(&renewed.server_key, &key).expect("renew key");
    p.signal(libc::SIGHUP);
    let mut served = false;
    for _ in 0..100 {
        if tls(renewed).await {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "the renewed certificate is not served:\n{}",
        p.log()
    );
    assert!(!tls(&c.certs).await, "the old certificate is still served");

    // A broken file: the reload is rejected and the renewed certificate stays.
    std::fs::write(&cert, "not a certificate").expect("break cert");
    p.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || p
            .log()
            .contains("TLS reload rejected")),
        "{}",
        p.log()
    );
    assert!(
        tls(renewed).await,
        "a rejected reload must keep the certificate in use"
    );
}

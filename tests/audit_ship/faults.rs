//! The sink goes away under load, and publishes are interrupted.

use super::*;

/// nats-server stopped for several seconds under load: statements keep being served, the
/// lag shows, and after the restart the stream converges with nothing lost or doubled.
#[tokio::test]
async fn sink_down_under_load_then_counts_converge() {
    let mut nats = Nats::start();
    let url = nats.url();
    let node = Node::start("ship_down", "db-down", &nats);
    let load = Load::start(&node, 4).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.stop(libc::SIGTERM);
    let served_before = load.served();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let served_during = load.served() - served_before;
    assert!(
        served_during > 100,
        "only {served_during} statements while the sink was down"
    );
    assert!(node.metric("pgveil_audit_ship_lag_records") > 100.0);
    assert!(node.metric("pgveil_audit_ship_lag_seconds") >= 3.0);
    assert!(node.metric("pgveil_audit_ship_connected") == 0.0);
    let errors = metric_sum(&node, "pgveil_audit_ship_errors_total");
    assert!(errors >= 1.0, "sink errors not counted");
    nats.spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failed) = load.stop().await;
    assert_eq!(failed, 0, "statements failed while the sink was down");
    let (shipped, local) = converge(&url, &node, Duration::from_secs(60)).await;
    assert_exactly_once(&shipped, &local, "after the outage");
    assert!(local.len() as u64 >= ok);
    assert!(wait_until(Duration::from_secs(10), || {
        node.metric("pgveil_audit_ship_lag_records") == 0.0
            && node.metric("pgveil_audit_ship_lag_seconds") == 0.0
    }));
    eprintln!(
        "sink-down figures: {ok} statements served ({served_during} during a 6 s outage), \
         {} records shipped after the restart, sink errors {errors}",
        local.len()
    );
}

fn metric_sum(node: &Node, name: &str) -> f64 {
    let (_, text) = http_get(node.proxy.metrics_port, "/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The proxy is killed mid-shipping and restarted; then nats-server is killed mid-publish
/// and restarted. Both times the redelivered records are in the stream exactly once.
#[tokio::test]
async fn interrupted_publishes_leave_no_duplicates() {
    let mut nats = Nats::start();
    let url = nats.url();
    let mut node = Node::start("ship_interrupt", "db-int", &nats);
    for round in 0..3 {
        let load = Load::start(&node, 4).await;
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        node.proxy.signal(libc::SIGKILL);
        let _ = node.proxy.wait_exit(Duration::from_secs(10));
        let _ = load.stop().await;
        node.restart(&url);
    }
    let load = Load::start(&node, 4).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        nats.stop(libc::SIGKILL);
        tokio::time::sleep(Duration::from_millis(500)).await;
        nats.spawn();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, failed) = load.stop().await;
    assert_eq!(failed, 0);
    let (shipped, local) = converge(&url, &node, Duration::from_secs(60)).await;
    assert_exactly_once(&shipped, &local, "after kills");
    let (code, out, err) = verify_cli(&node.audit);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(&[
        "audit",
        "verify",
        "--nats",
        &url,
        "--stream",
        STREAM,
        "--instance",
        "db-int",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("duplicate"), "{out}");
    eprintln!(
        "interrupt figures: {} records, {} recovery records, duplicates acknowledged by the \
         sink after the last restart: {}",
        local.len(),
        local
            .iter()
            .filter(|l| l.contains("\"kind\":\"recovery\""))
            .count(),
        node.metric("pgveil_audit_ship_duplicates_total")
    );
}

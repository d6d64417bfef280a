//! The sink goes away under load, and publishes are interrupted.

use super::*;

const CURSOR: &str = "ship-cursor.json";

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
    let mut skipped = Vec::new();
    let stale = node.audit.with_file_name("stale-cursor.json");
    for round in 0..3 {
        let load = Load::start(&node, 4).await;
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        skipped.push(skipped_in_log(&node.proxy.log()));
        node.proxy.signal(libc::SIGKILL);
        let _ = node.proxy.wait_exit(Duration::from_secs(10));
        let _ = load.stop().await;
        if round == 0 {
            std::fs::copy(node.audit.join(CURSOR), &stale).expect("cursor written");
        }
        node.restart(&url);
    }
    // Worst case of a lost cursor write: the cursor from the first round, thousands of
    // acknowledged records ago. The stream says where it stands; nothing is sent twice.
    node.proxy.signal(libc::SIGKILL);
    let _ = node.proxy.wait_exit(Duration::from_secs(10));
    std::fs::copy(&stale, node.audit.join(CURSOR)).unwrap();
    node.restart(&url);
    let (shipped, local) = converge(&url, &node, Duration::from_secs(60)).await;
    assert_exactly_once(&shipped, &local, "after restoring a stale cursor");
    // The stream may already match the local audit before the restarted
    // shipper has aligned (and logged what it skipped): wait for that line.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rewound = skipped_in_log(&node.proxy.log());
    while rewound == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rewound = skipped_in_log(&node.proxy.log());
    }
    assert!(
        rewound > 0,
        "the stale cursor was not detected:\n{}",
        node.proxy.log()
    );
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
        "interrupt figures: {} records, {} recovery records, records the stream already held \
         at each restart (not re-sent): {skipped:?}, {rewound} after a stale cursor, then {} \
         after the nats kills; duplicates \
         acknowledged by the sink since the last restart: {}",
        local.len(),
        local
            .iter()
            .filter(|l| l.contains("\"kind\":\"recovery\""))
            .count(),
        skipped_in_log(&node.proxy.log()) - rewound,
        node.metric("pgveil_audit_ship_duplicates_total")
    );
}

/// Records the shipper skipped because the stream already held them, per its log.
fn skipped_in_log(log: &str) -> u64 {
    // Drop ANSI colour sequences (ESC [ ... m) around field names.
    let mut plain = String::with_capacity(log.len());
    let mut in_esc = false;
    for c in log.chars() {
        match (in_esc, c) {
            (false, '\u{1b}') => in_esc = true,
            (true, 'm') => in_esc = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    plain
        .lines()
        .filter(|l| l.contains("already held records past the cursor"))
        .filter_map(|l| {
            let rest = &l[l.find("skipped=")? + 8..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

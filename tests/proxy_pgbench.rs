//! pgbench through the proxy: `-i` (COPY) and a 10-second run in each query mode, with zero
//! failed transactions.

mod common;

use std::time::Duration;

use common::*;

/// Parses pgbench's summary: (transactions processed, failed transactions).
fn summary(stdout: &str) -> (u64, Option<u64>) {
    let num_after = |prefix: &str| {
        stdout.lines().find_map(|l| {
            l.trim()
                .strip_prefix(prefix)
                .and_then(|rest| rest.trim().split(['/', ' ']).next())
                .and_then(|n| n.parse::<u64>().ok())
        })
    };
    (
        num_after("number of transactions actually processed:").unwrap_or(0),
        num_after("number of failed transactions:"),
    )
}

fn run_mode(mode: &str) {
    let c = shared();
    let db = c.fresh_db(&format!("bench_{mode}"));
    let p = Proxy::start(&c.url(), &[]);
    let mut init = client_cmd("pgbench", p.port, &db, APP_USER, APP_PASSWORD);
    init.args(["-i", "-s", "1", "-q"]);
    let out = run_tool(init, None, Duration::from_secs(180));
    assert!(out.status.success(), "pgbench -i: {out:?}");
    assert_eq!(
        c.sql(&db, "SELECT count(*) FROM pgbench_accounts").trim(),
        "100000"
    );

    let mut bench = client_cmd("pgbench", p.port, &db, APP_USER, APP_PASSWORD);
    bench.args(["-T", "10", "-c", "4", "-j", "2", "-M", mode]);
    let out = run_tool(bench, None, Duration::from_secs(120));
    assert!(out.status.success(), "pgbench -M {mode}: {out:?}");
    assert!(!out.stderr.contains("aborted"), "{out:?}");
    let (processed, failed) = summary(&out.stdout);
    assert!(processed > 0, "no transactions: {out:?}");
    assert_eq!(failed.unwrap_or(0), 0, "{out:?}");
    // Cross-check with the server: every processed transaction wrote one history row.
    let history: u64 = c
        .sql(&db, "SELECT count(*) FROM pgbench_history")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(history, processed, "{out:?}");
}

#[test]
fn pgbench_simple() {
    run_mode("simple");
}

#[test]
fn pgbench_extended() {
    run_mode("extended");
}

#[test]
fn pgbench_prepared() {
    run_mode("prepared");
}

#[test]
fn summary_parser() {
    let out = "transaction type: <builtin: TPC-B (sort of)>\n\
               number of transactions actually processed: 1234\n\
               number of failed transactions: 0 (0.000%)\n";
    assert_eq!(summary(out), (1234, Some(0)));
    let out = "number of transactions actually processed: 10/20\n\
               number of failed transactions: 3 (0.2%)\n";
    assert_eq!(summary(out), (10, Some(3)));
}

//! Issue 13 proof, durability under crashes: the proxy is `kill -9`ed at random moments
//! while eight clients run tagged reads and writes through it (strict audit), five times
//! over the same audit directory. Afterwards:
//!
//! - every statement whose result a client received has its record in the chain (the
//!   record is written, as the statement's intent, before the statement is forwarded, and
//!   results wait for it);
//! - `pgveil audit verify` passes: each restart repaired the torn tail the kill left, if
//!   any, with a recovery record;
//! - statements that completed before the kill carry their outcome, and the records of
//!   statements cut off by the kill stay `pending` (the proxy never learned their outcome).

mod common;

#[path = "audit/support.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use support::*;

const CLIENTS: usize = 8;
const ROUNDS: usize = 5;

/// One client's statement `i`: a tagged read (decrypts email) or a tagged insert, each
/// with its own alias `q{i}` so its record can be found. True when the client received the
/// statement's result.
async fn statement(c: &tokio_postgres::Client, i: u64) -> Result<bool, tokio_postgres::Error> {
    let rows = if i.is_multiple_of(3) {
        c.query(
            &format!(
                "INSERT INTO customers (full_name, email) VALUES ($1, $2) RETURNING id AS q{i}"
            ),
            &[
                &format!("Crash {i}"),
                &format!("crash{i}@audit-fault.example"),
            ],
        )
        .await?
    } else {
        c.query(
            &format!("SELECT email AS q{i}, ssn FROM customers WHERE email = $1"),
            &[&ZELDA_EMAIL],
        )
        .await?
    };
    Ok(rows.len() == 1)
}

/// Runs statements on a fresh connection until the connection fails (the kill); returns
/// the ids of the statements whose results arrived.
async fn client(env_port: u16, db: String, ids: Arc<Mutex<u64>>) -> Vec<u64> {
    let mut cfg = pg_config(env_port, &db, ADMIN, PW);
    cfg.application_name("crash-load");
    let Ok(c) = connect_with(cfg).await else {
        return Vec::new();
    };
    let mut served = Vec::new();
    loop {
        let i = {
            let mut n = ids.lock().unwrap();
            *n += 1;
            *n
        };
        match statement(&c, i).await {
            Ok(true) => served.push(i),
            Ok(false) => panic!("statement {i}: result without its row"),
            Err(_) => return served,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_never_loses_a_released_result_and_the_chain_verifies() {
    let c = cluster();
    let db = c.fresh_db("audit_crash");
    c.sql(&db, TABLE);
    let dir = tempfile::tempdir().unwrap();
    let keyring = keygen(dir.path());
    let audit = dir.path().join("audit");
    let audit_arg = audit.display().to_string();
    let flags = [
        "--audit-dir",
        audit_arg.as_str(),
        "--audit-durability",
        "strict",
    ];
    let seed: u64 = std::env::var("PGVEIL_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("fault test seed {seed} (PGVEIL_FAULT_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let ids = Arc::new(Mutex::new(0u64));
    let mut served: Vec<u64> = Vec::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut proxy = proxy_with_rules(c, &keyring, &flags);
        if round == 0 {
            let seed_client = connect(proxy.port, &db, ADMIN, PW).await.unwrap();
            seed_client
                .execute(
                    "INSERT INTO customers (full_name, email, ssn) VALUES ('Zelda', $1, $2)",
                    &[&ZELDA_EMAIL, &ZELDA_SSN],
                )
                .await
                .unwrap();
        }
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| tokio::spawn(client(proxy.port, db.clone(), ids.clone())))
            .collect();
        let delay = rng.gen_range(300..1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        proxy.signal(libc::SIGKILL);
        assert!(proxy.wait_exit(Duration::from_secs(10)).is_some());
        let before = served.len();
        for t in tasks {
            served.extend(t.await.unwrap());
        }
        eprintln!(
            "round {round}: killed after {delay} ms, {} results received",
            served.len() - before
        );
        assert!(
            served.len() > before,
            "round {round}: no statement was served before the kill\n{}",
            proxy.log()
        );
    }
    // A last start repairs the final kill's tail; stop it cleanly.
    let mut proxy = proxy_with_rules(c, &keyring, &flags);
    proxy.signal(libc::SIGTERM);
    assert!(proxy.wait_exit(Duration::from_secs(20)).is_some());

    let (code, stdout, stderr) = verify_cli(&audit);
    assert_eq!(code, 0, "chain after {ROUNDS} kills: {stdout}{stderr}");
    let raw = read_records(&audit);
    let records = merged(raw.clone());
    let alias_of = |r: &Value| -> Option<u64> {
        let fp = s(r, "fingerprint");
        let at = fp.find(" as q")? + 5;
        let digits: String = fp[at..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let recorded: HashSet<u64> = records
        .iter()
        .filter(|r| r["kind"] == "statement" && r["application_name"] == "crash-load")
        .filter_map(alias_of)
        .collect();
    let missing: Vec<u64> = served
        .iter()
        .copied()
        .filter(|i| !recorded.contains(i))
        .collect();
    assert!(
        missing.is_empty(),
        "{} results released without a record: {missing:?}",
        missing.len()
    );
    // Completed statements carry their outcome; only those cut off by a kill are pending.
    let load: Vec<&Value> = records
        .iter()
        .filter(|r| r["application_name"] == "crash-load" && r["kind"] == "statement")
        .collect();
    let pending = load.iter().filter(|r| r["outcome"] == "pending").count();
    let ok = load.iter().filter(|r| r["outcome"] == "ok").count();
    // At a kill, each client has at most a statement or two between its record and its
    // outcome being written.
    let slack = 2 * CLIENTS * ROUNDS;
    assert!(
        ok + slack >= served.len(),
        "{ok} records with outcome ok for {} results received",
        served.len()
    );
    assert!(
        pending <= slack,
        "{pending} pending records after {ROUNDS} kills of {CLIENTS} clients"
    );
    let recoveries = raw.iter().filter(|r| r["kind"] == "recovery").count();
    eprintln!(
        "{ROUNDS} kills in {:.1} s: {} results received, {} statement records ({ok} ok, \
         {pending} pending), {} records in the chain, {recoveries} torn tails repaired",
        started.elapsed().as_secs_f64(),
        served.len(),
        load.len(),
        raw.len()
    );
}

//! Issue 13, shipping: the audit reaches a real NATS JetStream (`nats-server -js`, started
//! per test on a free loopback port) from real proxies, and an auditor verifies the fleet
//! from the stream.
//!
//! - two instances ship into one stream; per subject the stream holds exactly the local
//!   lines, byte for byte; `audit verify --nats` passes, `audit search --nats` finds them,
//!   and a deleted or forged message in the stream is named;
//! - nats-server stopped for a while under load: statements are still served, the lag shows
//!   in the metrics, and after the restart the stream converges to the local audit;
//! - a publish interrupted (proxy `kill -9` mid-shipping, nats-server `kill -9` mid-publish):
//!   after redelivery every record is in the stream exactly once.

mod common;

#[path = "audit_ship/nats.rs"]
mod nats;
#[path = "audit/support.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use nats::Nats;
use pgveil::audit::ship::sink::read_stream;
use support::*;

const STREAM: &str = "PGVEIL_AUDIT";

/// One pgveil instance: its database, keyring, audit directory and proxy.
struct Node {
    proxy: Proxy,
    db: String,
    keyring: PathBuf,
    audit: PathBuf,
    instance: String,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(tag: &str, instance: &str, nats: &Nats) -> Node {
        let c = cluster();
        let db = c.fresh_db(tag);
        c.sql(&db, TABLE);
        let dir = tempfile::tempdir().expect("tempdir");
        let keyring = keygen(dir.path());
        let audit = dir.path().join("audit");
        let proxy = Self::proxy(&keyring, &audit, instance, &nats.url());
        Node {
            proxy,
            db,
            keyring,
            audit,
            instance: instance.to_string(),
            _dir: dir,
        }
    }

    fn proxy(keyring: &Path, audit: &Path, instance: &str, url: &str) -> Proxy {
        proxy_with_rules(
            cluster(),
            keyring,
            &[
                "--audit-dir",
                audit.to_str().unwrap(),
                "--audit-ship",
                url,
                "--audit-instance",
                instance,
            ],
        )
    }

    fn restart(&mut self, url: &str) {
        self.proxy = Self::proxy(&self.keyring, &self.audit, &self.instance, url);
    }

    fn subject(&self) -> String {
        format!("pgveil.audit.{}", self.instance)
    }

    fn metric(&self, name: &str) -> f64 {
        metric(self.proxy.metrics_port, name)
    }
}

/// Complete lines of every segment, in chain order (a torn tail is not a record).
fn local_lines(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for p in segments(dir) {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        out.extend(
            text.split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .map(|l| l.trim_end_matches('\n').to_string()),
        );
    }
    out
}

async fn stream_lines(url: &str, subject: &str) -> Vec<String> {
    match read_stream(url, STREAM, subject).await {
        Ok(msgs) => msgs
            .into_iter()
            .map(|m| String::from_utf8(m.payload.to_vec()).expect("utf8 payload"))
            .collect(),
        Err(e) => panic!("reading stream: {e}"),
    }
}

/// Waits until the stream holds what the local audit holds (for up to `limit`); returns
/// (stream lines, local lines) as last seen.
async fn converge(url: &str, node: &Node, limit: Duration) -> (Vec<String>, Vec<String>) {
    let deadline = Instant::now() + limit;
    loop {
        let local = local_lines(&node.audit);
        let shipped = stream_lines(url, &node.subject()).await;
        if (shipped == local && !local.is_empty()) || Instant::now() > deadline {
            return (shipped, local);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn seqs(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Each seq exactly once, 1..=n, and equal to the local lines byte for byte.
fn assert_exactly_once(shipped: &[String], local: &[String], what: &str) {
    let s = seqs(shipped);
    let want: Vec<u64> = (1..=local.len() as u64).collect();
    assert_eq!(s, want, "{what}: stream seqs (duplicates or gaps)");
    assert!(
        shipped == local,
        "{what}: shipped records differ from local ones"
    );
}

/// Clients running tagged point reads until `stop`; counts served and failed statements.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(node: &Node, clients: usize) -> Load {
        let setup = connect(node.proxy.port, &node.db, ADMIN, PW).await.unwrap();
        setup
            .execute(
                "INSERT INTO customers (full_name, email, ssn) VALUES ($1, $2, $3)",
                &[&"Ship Test", &ZELDA_EMAIL, &ZELDA_SSN],
            )
            .await
            .expect("insert");
        let (stop, ok, failed) = Default::default();
        let mut load = Load {
            stop,
            ok,
            failed,
            tasks: Vec::new(),
        };
        for _ in 0..clients {
            let c = connect(node.proxy.port, &node.db, ADMIN, PW).await.unwrap();
            let (stop, ok, failed) = (load.stop.clone(), load.ok.clone(), load.failed.clone());
            load.tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match c
                        .query(
                            "SELECT email FROM customers WHERE email = $1",
                            &[&ZELDA_EMAIL],
                        )
                        .await
                    {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) if e.is_closed() => break,
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
        load
    }

    fn served(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = pgveil(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[path = "audit_ship/faults.rs"]
mod faults;
#[path = "audit_ship/fleet.rs"]
mod fleet;

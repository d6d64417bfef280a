//! Asynchronous shipping of the audit to NATS JetStream (issue 13).
//!
//! The local segments stay the source of truth; the stream is the fleet's
//! central copy and an off-host anchor against truncation. A dedicated
//! thread ("pgveil-audit-ship", its own current-thread runtime) tails the
//! segment files ([`tail`]) and publishes each fsynced record to
//! `<subject>` with `Nats-Msg-Id` = its chain hash ([`sink`]). Sessions never
//! hand it anything, so a slow or dead sink cannot slow a statement: records
//! simply wait on disk, and the shipper catches up when the sink is back.
//!
//! **No loss, no duplicate.** The cursor ([`cursor`]) moves only over records
//! the stream acknowledged. After any error (or a restart) the shipper asks
//! the stream for the newest record on its subject and continues after it,
//! checking that the stream's hash is the local hash at that seq: records
//! stored whose ack was lost are not sent again. Anything republished inside
//! a batch is dropped by JetStream's de-duplication.

pub mod cursor;
pub mod sink;
pub mod tail;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge};
use zeroize::Zeroizing;

use super::record::ChainHasher;
use super::writer::DurableSeq;
use cursor::Cursor;
use tail::{Line, LocalTail, TailError};

pub const DEFAULT_STREAM: &str = "PGVEIL_AUDIT";
pub const SUBJECT_PREFIX: &str = "pgveil.audit.";

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("invalid audit shipping configuration: {0}")]
    Config(String),
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    #[error("JetStream stream: {0}")]
    Stream(String),
    #[error("publish: {0}")]
    Publish(String),
    #[error("ship cursor: {0}")]
    Cursor(String),
    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("local audit: {0}")]
    Local(#[from] TailError),
    /// The stream holds a different record at a seq we hold: another
    /// instance ships under the same subject, or the stream was tampered.
    #[error("stream and local chain disagree at seq {seq}: {why}")]
    Diverged { seq: u64, why: String },
}

impl ShipError {
    /// The `op` label of `pgveil_audit_ship_errors_total`.
    fn op(&self) -> &'static str {
        match self {
            ShipError::Connect(_) => "connect",
            ShipError::Stream(_) | ShipError::Diverged { .. } | ShipError::Config(_) => "stream",
            ShipError::Publish(_) => "publish",
            ShipError::Local(_) => "local",
            ShipError::Cursor(_) | ShipError::Io { .. } => "cursor",
        }
    }
}

/// `[audit] ship*` and `--audit-ship*` / `--audit-instance`.
#[derive(Debug, Clone)]
pub struct ShipConfig {
    /// `nats://HOST:PORT` (or `tls://…`).
    pub url: String,
    pub stream: String,
    pub subject: String,
    pub instance: String,
    /// How often the shipper looks for new durable records when idle.
    pub poll_interval: Duration,
    /// Records published before their acks are awaited.
    pub batch: usize,
    /// Least time between two cursor writes while records flow (each write
    /// is two fsyncs on the audit disk; a stale cursor only costs a re-read,
    /// since the stream says where it stands).
    pub cursor_interval: Duration,
}

/// A NATS subject token: no dots, wildcards, spaces or control characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The machine's host name as an instance name (characters a subject token
/// cannot hold become `_`), `pgveil` if it has none.
pub fn default_instance() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "pgveil".into()
    } else {
        name
    }
}

impl ShipConfig {
    /// Validated configuration; `subject` defaults to `pgveil.audit.<instance>`.
    pub fn new(
        url: &str,
        stream: Option<&str>,
        subject: Option<&str>,
        instance: Option<&str>,
    ) -> Result<Self, ShipError> {
        let bad = |m: String| Err(ShipError::Config(m));
        let scheme_ok = ["nats://", "tls://"].iter().any(|p| url.starts_with(p));
        if !scheme_ok || url.contains(char::is_whitespace) {
            return bad(format!(
                "ship `{url}` must be nats://HOST:PORT or tls://HOST:PORT"
            ));
        }
        let instance = instance.map_or_else(default_instance, str::to_string);
        if !is_token(&instance) {
            return bad(format!(
                "instance `{instance}` must be 1-128 of A-Z a-z 0-9 - _"
            ));
        }
        let stream = stream.unwrap_or(DEFAULT_STREAM).to_string();
        if !is_token(&stream) {
            return bad(format!(
                "ship_stream `{stream}` must be 1-128 of A-Z a-z 0-9 - _"
            ));
        }
        let subject = subject.map_or_else(|| format!("{SUBJECT_PREFIX}{instance}"), str::to_string);
        if subject.split('.').any(|t| !is_token(t)) {
            return bad(format!(
                "ship_subject `{subject}` must be dot-separated tokens of A-Z a-z 0-9 - _ (no wildcards)"
            ));
        }
        Ok(ShipConfig {
            url: url.to_string(),
            stream,
            subject,
            instance,
            poll_interval: Duration::from_millis(50),
            batch: 256,
            cursor_interval: Duration::from_secs(1),
        })
    }
}

/// The shipper's metrics (defined in `crate::metrics`).
#[derive(Clone)]
pub struct ShipMetrics {
    pub records: IntCounter,
    pub duplicates: IntCounter,
    pub errors: IntCounterVec,
    pub lag_records: IntGauge,
    pub lag_seconds: Gauge,
    pub head_seq: IntGauge,
    pub connected: IntGauge,
}

impl ShipMetrics {
    pub fn global() -> Self {
        let m = crate::metrics::metrics();
        ShipMetrics {
            records: m.audit_ship_records.clone(),
            duplicates: m.audit_ship_duplicates.clone(),
            errors: m.audit_ship_errors.clone(),
            lag_records: m.audit_ship_lag_records.clone(),
            lag_seconds: m.audit_ship_lag_seconds.clone(),
            head_seq: m.audit_ship_head_seq.clone(),
            connected: m.audit_ship_connected.clone(),
        }
    }
}

/// Starts the shipper thread for the audit in `dir`. `durable` (from
/// [`Audit::durable_seq`](crate::audit::Audit::durable_seq)) limits shipping
/// to fsynced records; `None` ships every complete line (offline use).
pub fn start(
    config: ShipConfig,
    dir: &Path,
    chain_key: Option<&Zeroizing<Vec<u8>>>,
    durable: Option<DurableSeq>,
) -> Result<(), ShipError> {
    let cursor = cursor::load(dir, &config.stream, &config.subject)?;
    let hasher = ChainHasher::new(chain_key.map(|k| k.as_slice()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ShipError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    let shipper = Shipper {
        dir: dir.to_path_buf(),
        hasher,
        durable,
        metrics: ShipMetrics::global(),
        tail: None,
        pending: Vec::new(),
        cursor,
        cursor_dirty: false,
        cursor_saved: Instant::now(),
        config,
    };
    shipper.metrics.head_seq.set(clamp(shipper.cursor.seq));
    std::thread::Builder::new()
        .name("pgveil-audit-ship".into())
        .spawn(move || rt.block_on(shipper.run()))
        .map_err(|source| ShipError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    Ok(())
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

struct Shipper {
    config: ShipConfig,
    dir: PathBuf,
    hasher: ChainHasher,
    durable: Option<DurableSeq>,
    metrics: ShipMetrics,
    /// Reader positioned after `pending` (`None`: reopen at the cursor).
    tail: Option<LocalTail>,
    /// Read, not yet acknowledged, in chain order after the cursor.
    pending: Vec<Line>,
    cursor: Cursor,
    cursor_dirty: bool,
    cursor_saved: Instant,
}

mod run;

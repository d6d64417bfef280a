//! Writer configuration and metrics.
//!
//! Kept apart from the writer thread so the configuration surface (what the
//! lead's TOML config maps onto) reads on its own.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};
use zeroize::Zeroizing;

use super::AuditError;

/// Minimum accepted chain key length, in bytes.
pub const MIN_CHAIN_KEY_LEN: usize = 16;

/// When a record counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `record()` resolves only after the record is fsynced (group commit).
    Strict,
    /// Written at once, fsynced at most `interval` later. `record()` resolves
    /// after the write; a crash can lose up to `interval` of records.
    Buffered { interval: Duration },
}

/// What a submission does when the channel is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backpressure {
    /// `record()` waits for room: sessions slow down to the disk's pace and
    /// nothing is ever dropped. The default.
    Wait,
    /// `record()` fails at once with [`AuditError::Overloaded`]; the caller
    /// refuses the statement as for an unavailable audit.
    FailFast,
}

/// Writer configuration. `Debug` never shows the chain key.
#[derive(Clone)]
pub struct AuditConfig {
    pub dir: PathBuf,
    pub durability: Durability,
    /// Rotate once a segment reaches this size (checked between batches, so
    /// a segment may exceed it by one batch).
    pub segment_max_bytes: u64,
    /// Rotate a non-empty segment this long after this process opened it.
    pub segment_max_age: Duration,
    /// HMAC-SHA256 key for the chain; `None` means plain SHA-256.
    pub chain_key: Option<Zeroizing<Vec<u8>>>,
    /// Also print every durable record to stdout as one JSON line.
    pub stdout: bool,
    pub channel_capacity: usize,
    pub backpressure: Backpressure,
    /// Minimum delay between attempts to recover from a fault.
    pub retry_interval: Duration,
}

impl AuditConfig {
    /// Defaults: strict, 64 MiB / 24 h segments, no key, no stdout, 4096
    /// queued records, wait on a full queue, retry every 250 ms.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        AuditConfig {
            dir: dir.into(),
            durability: Durability::Strict,
            segment_max_bytes: 64 * 1024 * 1024,
            segment_max_age: Duration::from_secs(24 * 3600),
            chain_key: None,
            stdout: false,
            channel_capacity: 4096,
            backpressure: Backpressure::Wait,
            retry_interval: Duration::from_millis(250),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), AuditError> {
        let mut problems = Vec::new();
        if self.channel_capacity == 0 {
            problems.push("channel_capacity must be at least 1");
        }
        if self.segment_max_bytes == 0 {
            problems.push("segment_max_bytes must be positive");
        }
        if self.segment_max_age.is_zero() {
            problems.push("segment_max_age must be positive");
        }
        if self.retry_interval.is_zero() {
            problems.push("retry_interval must be positive");
        }
        if matches!(self.durability, Durability::Buffered { interval } if interval.is_zero()) {
            problems.push("buffered fsync interval must be positive");
        }
        if self
            .chain_key
            .as_ref()
            .is_some_and(|k| k.len() < MIN_CHAIN_KEY_LEN)
        {
            problems.push("chain_key must be at least 16 bytes");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AuditError::Config(problems.join("; ")))
        }
    }
}

impl fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditConfig")
            .field("dir", &self.dir)
            .field("durability", &self.durability)
            .field("segment_max_bytes", &self.segment_max_bytes)
            .field("segment_max_age", &self.segment_max_age)
            .field("chain_key", &self.chain_key.as_ref().map(|_| "<redacted>"))
            .field("stdout", &self.stdout)
            .field("channel_capacity", &self.channel_capacity)
            .field("backpressure", &self.backpressure)
            .field("retry_interval", &self.retry_interval)
            .finish()
    }
}

/// The writer's Prometheus metrics (all `pgveil_audit_*`).
#[derive(Clone)]
pub struct AuditMetrics {
    pub records_written: IntCounter,
    pub bytes_written: IntCounter,
    pub fsync_seconds: Histogram,
    pub write_errors: IntCounter,
    pub chain_head_seq: IntGauge,
    pub healthy: IntGauge,
    pub overloaded: IntCounter,
    pub records_lost: IntCounter,
    /// Incremented by the session layer via [`Audit::note_refused`](super::Audit::note_refused).
    pub refused: IntCounter,
}

impl AuditMetrics {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let c = |name: &str, help: &str| IntCounter::with_opts(Opts::new(name, help));
        let g = |name: &str, help: &str| IntGauge::with_opts(Opts::new(name, help));
        Ok(AuditMetrics {
            records_written: c(
                "pgveil_audit_records_written_total",
                "Audit records written to the segment files",
            )?,
            bytes_written: c(
                "pgveil_audit_bytes_written_total",
                "Bytes appended to audit segment files",
            )?,
            fsync_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "pgveil_audit_fsync_seconds",
                    "Latency of audit segment fsync calls",
                )
                .buckets(vec![
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )?,
            write_errors: c(
                "pgveil_audit_write_errors_total",
                "Audit write, fsync or reopen failures",
            )?,
            chain_head_seq: g(
                "pgveil_audit_chain_head_seq",
                "Sequence number of the newest audit record written (external anchor for truncation)",
            )?,
            healthy: g(
                "pgveil_audit_healthy",
                "1 while the audit writer can write, 0 after a fault until recovery",
            )?,
            overloaded: c(
                "pgveil_audit_overloaded_total",
                "Submissions rejected because the audit queue was full",
            )?,
            records_lost: c(
                "pgveil_audit_records_lost_total",
                "Fire-and-forget audit records that failed after being queued",
            )?,
            refused: c(
                "pgveil_audit_refused_total",
                "Statements refused because the audit could not be written",
            )?,
        })
    }

    pub(crate) fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.records_written.clone()))?;
        registry.register(Box::new(self.bytes_written.clone()))?;
        registry.register(Box::new(self.fsync_seconds.clone()))?;
        registry.register(Box::new(self.write_errors.clone()))?;
        registry.register(Box::new(self.chain_head_seq.clone()))?;
        registry.register(Box::new(self.healthy.clone()))?;
        registry.register(Box::new(self.overloaded.clone()))?;
        registry.register(Box::new(self.records_lost.clone()))?;
        registry.register(Box::new(self.refused.clone()))?;
        Ok(())
    }
}

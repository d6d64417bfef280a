//! Append-only, tamper-evident audit stream (issue 5, design guide §7).
//!
//! - [`config`]: writer configuration and metrics.
//! - [`record`]: the record, its canonical JSON encoding and the chain hash.
//! - [`segment`]: segment file names, listing, finding the chain head.
//! - [`handle`]: the sessions' handle ([`Audit`]), intents, the two queues.
//! - [`writer`]: the writer thread: group commit, faults, recovery.
//! - [`time`]: RFC 3339 timestamps.
//! - [`mod@verify`]: checks the whole chain ([`fn@verify`]).
//! - [`mod@search`]: filters and prints records ([`fn@search`]).
//! - [`merge`]: folds outcomes into their pending statement records.
//! - [`ship`]: ships fsynced records to NATS JetStream (own thread, durable cursor).
//! - [`verify_stream`]: verifies each instance's chain from the stream.
//!
//! The file format, the durability and backpressure policies, fault handling
//! and what the chain proves are documented in `docs/audit.md`.

pub mod config;
pub mod handle;
pub mod merge;
pub mod record;
pub mod search;
pub mod segment;
pub mod ship;
pub mod time;
pub mod verify;
pub mod verify_stream;
pub mod writer;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;

pub use config::{AuditConfig, AuditMetrics, Backpressure, Durability};
pub use handle::{Audit, DurableSeq, Intent, IntentCheck};
pub use record::{
    AuditRecord, AuditRecordInput, ColumnAction, RecordKind, Recovery, RecoveryReason,
    StatementKind, StatementOutcome, SubjectTokens, TaggedColumn, Timestamp, TornTail,
    GENESIS_HASH, OUTCOME_CLIENT_DISCONNECTED, OUTCOME_NOT_EXECUTED, OUTCOME_OK, OUTCOME_PENDING,
    SCHEMA_VERSION, SUBJECT_TOKEN_LIMIT,
};
pub use search::{format_json_line, format_table, search, Filter, OutputFormat, SearchError};
pub use verify::{verify, Problem, VerifyFailure, VerifySummary};

/// Errors of the audit writer. Messages name paths and causes, never record
/// contents or keys.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The record is not in the chain (write fault, recovery pending, or the
    /// writer stopped). Statements touching tagged columns must be refused.
    #[error("audit log unavailable")]
    Unavailable,
    /// The queue was full and the policy is to fail fast.
    #[error("audit queue full")]
    Overloaded,
    #[error("invalid audit configuration: {0}")]
    Config(String),
    #[error("audit I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The newest record on disk is not a valid record: the writer will not
    /// continue a chain it cannot trust.
    #[error("audit chain cannot be continued: {0}")]
    Corrupt(String),
    #[error("audit metrics registration failed: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("invalid audit record: {0}")]
    InvalidRecord(&'static str),
}

//! The audit record, its canonical encoding and the chain hash.
//!
//! A record is serialised exactly once, by `serde_json`, with a fixed field
//! order (struct declaration order) and no whitespace. That byte string *is*
//! the canonical form: the hash covers the record without its `hash` field
//! (but with `prev`), and the line on disk is that body with
//! `,"hash":"…"}` spliced in place of the closing brace. `verify` re-derives
//! both from the parsed record and compares bytes, so any edit anywhere in a
//! line — even one that would parse to the same values — is detected.
//!
//! Every string goes through `serde_json`'s escaping, so client-controlled
//! fields (application_name, role names) cannot contain a raw newline or an
//! unescaped quote: they can neither end the line nor inject a field.

use std::fmt;
use std::time::SystemTime;
#[cfg(test)]
use std::time::{Duration, UNIX_EPOCH};

pub use super::time::{TimeParseError, Timestamp};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Version of the record schema, written as `v` in every new record.
/// Version 2 added `subjects`; version 3 added `outcomes` (and the
/// `outcomes` kind, and `pending` statements). Older records still verify,
/// so a chain may hold every version (see the changelog in docs/audit.md).
pub const SCHEMA_VERSION: u32 = 3;

/// Oldest record schema `verify` and `search` still read.
pub const MIN_SCHEMA_VERSION: u32 = 1;

/// Most subject tokens one record lists; beyond it the record says `bulk`
/// and only counts. Bounds the record size of a full-table read.
pub const SUBJECT_TOKEN_LIMIT: usize = 64;

/// Prefix of a version-1 subject token; the rest is 32 lower-case hex digits.
pub const SUBJECT_TOKEN_PREFIX: &str = "ds1:";

/// `prev` of the very first record of a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The `outcome` of a successful statement; failures carry their SQLSTATE.
pub const OUTCOME_OK: &str = "ok";

/// The `outcome` of a statement record written before the statement ran
/// (strict durability: its *intent*). The real outcome follows in an
/// `outcomes` record naming this record's seq.
pub const OUTCOME_PENDING: &str = "pending";

/// The client went away before the statement's reply was relayed (the
/// statement itself was sent and may have run).
pub const OUTCOME_CLIENT_DISCONNECTED: &str = "client_disconnected";

/// A pipelined statement the server skipped (an earlier one failed).
pub const OUTCOME_NOT_EXECUTED: &str = "not_executed";

/// What a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// One executed or refused statement.
    Statement,
    AuthOk,
    AuthFailed,
    RulesReload,
    KeyRotation,
    SessionStart,
    SessionEnd,
    /// Written by the writer itself after a crash or a write fault; carries
    /// [`Recovery`]. Callers cannot submit it.
    Recovery,
    /// Written by the writer itself: the outcomes of earlier `pending`
    /// statement records, one group commit's worth (version 3 on).
    Outcomes,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Statement => "statement",
            RecordKind::AuthOk => "auth_ok",
            RecordKind::AuthFailed => "auth_failed",
            RecordKind::RulesReload => "rules_reload",
            RecordKind::KeyRotation => "key_rotation",
            RecordKind::SessionStart => "session_start",
            RecordKind::SessionEnd => "session_end",
            RecordKind::Recovery => "recovery",
            RecordKind::Outcomes => "outcomes",
        }
    }
}

/// Statement class as seen by the analyser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Copy,
    Ddl,
    Other,
}

impl StatementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Select => "select",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Copy => "copy",
            StatementKind::Ddl => "ddl",
            StatementKind::Other => "other",
        }
    }
}

/// What the proxy did with a tagged column for this statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnAction {
    Plaintext,
    Masked,
    Null,
    Denied,
    EncryptedWrite,
    /// Compared by equality on ciphertext (WHERE/JOIN); nothing revealed.
    Matched,
}

impl ColumnAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnAction::Plaintext => "plaintext",
            ColumnAction::Masked => "masked",
            ColumnAction::Null => "null",
            ColumnAction::Denied => "denied",
            ColumnAction::EncryptedWrite => "encrypted_write",
            ColumnAction::Matched => "matched",
        }
    }
}

/// One tagged column touched by a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaggedColumn {
    /// `schema.table.column`.
    pub column: String,
    /// Classification from the rules (e.g. `contact`).
    pub class: String,
    pub action: ColumnAction,
    /// Mask name when `action` is `masked` (e.g. `email`, `partial(1,2)`).
    pub mask: Option<String>,
}

/// Why the writer wrote a recovery record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryReason {
    /// Found a torn final line when starting (the previous process crashed).
    Startup,
    /// A write or fsync failed at run time; the writer resumed in a new segment.
    WriteError,
}

/// Bytes after the last newline of a segment: a line whose write was cut
/// short. Identified precisely so `verify` accepts exactly this tail and no
/// other truncation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TornTail {
    /// Segment file name.
    pub segment: String,
    /// Byte offset where the partial line starts (= length of the valid part).
    pub offset: u64,
    /// Number of bytes in the partial line.
    pub len: u64,
    /// Hex SHA-256 of those bytes (not their content: they may hold anything).
    pub sha256: String,
}

/// Payload of a `recovery` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    pub reason: RecoveryReason,
    /// Torn tails left behind since the previous valid record, in chain order.
    pub torn: Vec<TornTail>,
}

/// The outcome of one `pending` statement record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementOutcome {
    /// Seq of the `pending` statement record this completes.
    pub of: u64,
    pub rows: u64,
    pub duration_us: u64,
    /// `"ok"`, a SQLSTATE, `client_disconnected` or `not_executed`.
    pub outcome: String,
}

/// The data subjects whose rows a statement returned (or an erasure
/// touched), as opaque tokens: a keyed HMAC of the subject id, never the id
/// itself, so the audit stays free of personal data (issue 15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectTokens {
    /// Distinct tokens, sorted, at most [`SUBJECT_TOKEN_LIMIT`].
    pub tokens: Vec<String>,
    /// Distinct subjects seen; more than `tokens.len()` only when `bulk`.
    pub count: u64,
    /// True when the statement returned more subjects than one record lists.
    pub bulk: bool,
}

impl SubjectTokens {
    /// Builds the field from the tokens seen (any order, duplicates allowed),
    /// keeping the first [`SUBJECT_TOKEN_LIMIT`] in sort order.
    pub fn from_tokens(mut tokens: Vec<String>) -> Self {
        tokens.sort_unstable();
        tokens.dedup();
        let count = tokens.len() as u64;
        let bulk = tokens.len() > SUBJECT_TOKEN_LIMIT;
        tokens.truncate(SUBJECT_TOKEN_LIMIT);
        SubjectTokens {
            tokens,
            count,
            bulk,
        }
    }

    /// Rejects anything that is not a well-formed token list. This is the
    /// guard that keeps a raw subject id (a customer number, an email) out of
    /// the audit even if a caller passes one by mistake.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.tokens.len() > SUBJECT_TOKEN_LIMIT {
            return Err("too many subject tokens");
        }
        if !self.tokens.iter().all(|t| is_subject_token(t)) {
            return Err("subject token is not ds1: followed by 32 lower-case hex digits");
        }
        if !self.tokens.windows(2).all(|w| w[0] < w[1]) {
            return Err("subject tokens must be sorted and distinct");
        }
        let listed = self.tokens.len() as u64;
        if self.count < listed || self.bulk != (self.count > listed) {
            return Err("subject count and bulk flag disagree with the tokens");
        }
        Ok(())
    }
}

/// `ds1:` + 32 lower-case hex digits (a truncated HMAC-SHA256).
pub fn is_subject_token(t: &str) -> bool {
    t.strip_prefix(SUBJECT_TOKEN_PREFIX).is_some_and(|h| {
        h.len() == 32
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Deserialises a present field (even `null`) as `Some`, so an absent field
/// (a version-1 record) and an explicit `null` stay distinguishable.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// What a caller submits; the writer adds `seq`, `prev` and `hash`.
///
/// `time` is taken by the caller when the event ends (statement end), so the
/// queueing delay does not distort it. No field may contain a literal or
/// parameter value: `fingerprint` must already be normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecordInput {
    pub kind: RecordKind,
    pub time: SystemTime,
    pub session_id: Option<String>,
    pub client_addr: Option<String>,
    pub login_role: Option<String>,
    pub effective_roles: Vec<String>,
    pub database: Option<String>,
    pub application_name: Option<String>,
    pub statement_kind: Option<StatementKind>,
    pub fingerprint: Option<String>,
    pub tables: Vec<String>,
    pub columns: Vec<TaggedColumn>,
    /// Data subjects whose rows were returned; `None` when the statement
    /// read no subject table (or the record is not about a statement).
    pub subjects: Option<SubjectTokens>,
    pub rows: u64,
    pub duration_us: u64,
    /// `"ok"` or a SQLSTATE.
    pub outcome: String,
    pub rules_version: Option<String>,
    /// Free text for non-statement records (e.g. a key id on key rotation,
    /// an auth failure reason). Never a value or a secret.
    pub detail: Option<String>,
}

impl AuditRecordInput {
    /// A record of `kind` at `time` with every optional field empty and
    /// outcome `ok`.
    pub fn new(kind: RecordKind, time: SystemTime) -> Self {
        AuditRecordInput {
            kind,
            time,
            session_id: None,
            client_addr: None,
            login_role: None,
            effective_roles: Vec::new(),
            database: None,
            application_name: None,
            statement_kind: None,
            fingerprint: None,
            tables: Vec::new(),
            columns: Vec::new(),
            subjects: None,
            rows: 0,
            duration_us: 0,
            outcome: OUTCOME_OK.to_string(),
            rules_version: None,
            detail: None,
        }
    }
}

/// One line of the audit stream. Field order here is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    pub v: u32,
    pub seq: u64,
    /// RFC 3339, UTC, microseconds: `2024-05-01T12:00:00.000001Z`.
    pub time: String,
    pub kind: RecordKind,
    pub session_id: Option<String>,
    pub client_addr: Option<String>,
    pub login_role: Option<String>,
    pub effective_roles: Vec<String>,
    pub database: Option<String>,
    pub application_name: Option<String>,
    pub statement_kind: Option<StatementKind>,
    pub fingerprint: Option<String>,
    pub tables: Vec<String>,
    pub columns: Vec<TaggedColumn>,
    /// Version 2 on: always present (`null` or the tokens). `None` only in a
    /// version-1 record, where the field did not exist and is not written.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub subjects: Option<Option<SubjectTokens>>,
    pub rows: u64,
    pub duration_us: u64,
    pub outcome: String,
    pub rules_version: Option<String>,
    pub detail: Option<String>,
    pub recovery: Option<Recovery>,
    /// Version 3 on: always present (`null`, or the list in an `outcomes`
    /// record). `None` only in older records, which do not have the field.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub outcomes: Option<Option<Vec<StatementOutcome>>>,
    /// Hash of the previous record ([`GENESIS_HASH`] for the first).
    pub prev: String,
    /// Hash of this record's canonical body. Empty while the body is being
    /// serialised: `skip_serializing_if` is what makes "the record without
    /// `hash`" a byte string we can produce from the same struct.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

impl AuditRecord {
    /// Builds the (unhashed) record for `input` at position `seq` after `prev`.
    pub fn from_input(input: AuditRecordInput, seq: u64, prev: String) -> Self {
        AuditRecord {
            v: SCHEMA_VERSION,
            seq,
            time: Timestamp::from_system_time(input.time).to_string(),
            kind: input.kind,
            session_id: input.session_id,
            client_addr: input.client_addr,
            login_role: input.login_role,
            effective_roles: input.effective_roles,
            database: input.database,
            application_name: input.application_name,
            statement_kind: input.statement_kind,
            fingerprint: input.fingerprint,
            tables: input.tables,
            columns: input.columns,
            subjects: Some(input.subjects),
            rows: input.rows,
            duration_us: input.duration_us,
            outcome: input.outcome,
            rules_version: input.rules_version,
            detail: input.detail,
            recovery: None,
            outcomes: Some(None),
            prev,
            hash: String::new(),
        }
    }

    /// Canonical body: the record serialised without `hash`. The `hash`
    /// field is temporarily taken out and put back.
    pub fn canonical_body(&mut self) -> Result<Vec<u8>, serde_json::Error> {
        let hash = std::mem::take(&mut self.hash);
        let body = serde_json::to_vec(&*self);
        self.hash = hash;
        body
    }

    /// Computes `hash`, stores it, and returns the full line (no newline).
    pub fn seal(&mut self, hasher: &ChainHasher) -> Result<Vec<u8>, serde_json::Error> {
        let body = self.canonical_body()?;
        let hash = hasher.hash(&body);
        let line = encode_line(&body, &hash);
        self.hash = hash;
        Ok(line)
    }
}

/// Splices `"hash"` into a canonical body. Equal, byte for byte, to what
/// `serde_json` produces for the record with `hash` set (a test pins this).
pub fn encode_line(body: &[u8], hash: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(body.len() + hash.len() + 12);
    let without_brace = body.strip_suffix(b"}").unwrap_or(body);
    line.extend_from_slice(without_brace);
    line.extend_from_slice(b",\"hash\":\"");
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}");
    line
}

/// Plain SHA-256 or, with a key, HMAC-SHA256 over canonical bodies.
#[derive(Clone)]
pub struct ChainHasher {
    key: Option<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for ChainHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainHasher")
            .field("keyed", &self.key.is_some())
            .finish()
    }
}

impl ChainHasher {
    pub fn new(key: Option<&[u8]>) -> Self {
        ChainHasher {
            key: key.map(|k| Zeroizing::new(k.to_vec())),
        }
    }

    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// Lower-case hex digest of `body`.
    pub fn hash(&self, body: &[u8]) -> String {
        match &self.key {
            None => hex::encode(Sha256::digest(body)),
            Some(key) => {
                // HMAC accepts keys of any length; the error arm is unreachable
                // in practice but must not panic.
                match <Hmac<Sha256> as Mac>::new_from_slice(key) {
                    Ok(mut mac) => {
                        mac.update(body);
                        hex::encode(mac.finalize().into_bytes())
                    }
                    Err(_) => String::new(),
                }
            }
        }
    }
}

/// Hex SHA-256 of arbitrary bytes (used for torn tails).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditRecordInput {
        let mut i = AuditRecordInput::new(
            RecordKind::Statement,
            UNIX_EPOCH + Duration::from_micros(1_714_564_800_000_001),
        );
        i.login_role = Some("alice".into());
        i.statement_kind = Some(StatementKind::Select);
        i.fingerprint = Some("SELECT email FROM public.customers WHERE id = $1".into());
        i.tables = vec!["public.customers".into()];
        i.columns = vec![TaggedColumn {
            column: "public.customers.email".into(),
            class: "contact".into(),
            action: ColumnAction::Masked,
            mask: Some("email".into()),
        }];
        i.rows = 3;
        i
    }

    #[test]
    fn spliced_line_equals_serde_serialisation() {
        let mut r = AuditRecord::from_input(sample(), 7, GENESIS_HASH.into());
        let line = r.seal(&ChainHasher::new(None)).unwrap();
        assert_eq!(line, serde_json::to_vec(&r).unwrap());
        assert_eq!(r.hash.len(), 64);
        let parsed: AuditRecord = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed, r);
    }

    #[test]
    fn hash_covers_prev_and_depends_on_key() {
        let plain = ChainHasher::new(None);
        let keyed = ChainHasher::new(Some(b"0123456789abcdef0123456789abcdef"));
        let mut a = AuditRecord::from_input(sample(), 1, GENESIS_HASH.into());
        let mut b = AuditRecord::from_input(sample(), 1, "ab".repeat(32));
        a.seal(&plain).unwrap();
        b.seal(&plain).unwrap();
        assert_ne!(a.hash, b.hash);
        let plain_hash = a.hash.clone();
        a.seal(&keyed).unwrap();
        assert_ne!(a.hash, plain_hash);
        assert_eq!(a.hash.len(), 64);
    }

    #[test]
    fn hostile_strings_stay_inside_one_line() {
        let mut i = sample();
        let evil =
            "x\"}\n{\"v\":1,\"seq\":99,\"hash\":\"00\"}\r\n\u{2028}\\\"hash\":\"ff\"\u{0}\u{1b}[2J";
        i.application_name = Some(evil.into());
        i.login_role = Some("r\"ole\n".into());
        i.fingerprint = Some("SELECT '\"hash\":\"x\"'".into());
        let mut r = AuditRecord::from_input(i, 1, GENESIS_HASH.into());
        let line = r.seal(&ChainHasher::new(None)).unwrap();
        assert!(!line.contains(&b'\n') && !line.contains(&b'\r') && !line.contains(&0));
        let parsed: AuditRecord = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed.application_name.as_deref(), Some(evil));
        assert_eq!(parsed.hash, r.hash);
        // Exactly one top-level "hash" key: the forged ones are escaped text.
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["seq"], 1);
        assert_eq!(v["hash"].as_str(), Some(r.hash.as_str()));
    }

    #[test]
    fn unknown_or_duplicate_fields_are_rejected() {
        let mut r = AuditRecord::from_input(sample(), 1, GENESIS_HASH.into());
        let line = String::from_utf8(r.seal(&ChainHasher::new(None)).unwrap()).unwrap();
        let extra = line.replacen("{\"v\":3,", "{\"v\":3,\"evil\":1,", 1);
        assert_ne!(extra, line);
        assert!(serde_json::from_str::<AuditRecord>(&extra).is_err());
        let dup = line.replacen("{\"v\":3,", "{\"v\":3,\"seq\":5,", 1);
        assert_ne!(dup, line);
        assert!(serde_json::from_str::<AuditRecord>(&dup).is_err());
    }
}

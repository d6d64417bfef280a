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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Version of the record schema, written as `v` in every new record.
/// Version 2 added `subjects`; version 1 records (without it) still verify,
/// so a chain may hold both (see the changelog in docs/audit.md).
pub const SCHEMA_VERSION: u32 = 2;

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

/// Microseconds since the Unix epoch, UTC. Formats and parses RFC 3339
/// without a date library (days/civil conversion after H. Hinnant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

impl Timestamp {
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Saturates outside ±292,000 years instead of panicking.
    pub fn from_system_time(t: SystemTime) -> Self {
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(micros(d)),
            Err(e) => Timestamp(micros(e.duration()).saturating_neg()),
        }
    }

    /// Parses `YYYY-MM-DD[(T| )HH:MM:SS[.fraction](Z|±HH:MM)]`. A date alone
    /// means midnight UTC. Fractions beyond microseconds are truncated.
    pub fn parse(s: &str) -> Result<Self, TimeParseError> {
        let b = s.as_bytes();
        let err = || TimeParseError(s.chars().take(64).collect());
        let num = |from: usize, len: usize| -> Result<i64, TimeParseError> {
            let part = b.get(from..from + len).ok_or_else(err)?;
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(err());
            }
            Ok(part
                .iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
        };
        let expect = |at: usize, c: u8| -> Result<(), TimeParseError> {
            if b.get(at) == Some(&c) {
                Ok(())
            } else {
                Err(err())
            }
        };
        let year = num(0, 4)?;
        expect(4, b'-')?;
        let month = num(5, 2)?;
        expect(7, b'-')?;
        let day = num(8, 2)?;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(err());
        }
        let days = days_from_civil(year, month, day);
        if b.len() == 10 {
            return Ok(Timestamp(days * SECS_PER_DAY * MICROS_PER_SEC));
        }
        if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
            return Err(err());
        }
        let hour = num(11, 2)?;
        expect(13, b':')?;
        let minute = num(14, 2)?;
        expect(16, b':')?;
        let second = num(17, 2)?;
        if hour > 23 || minute > 59 || second > 60 {
            return Err(err());
        }
        // 60 is a leap second; fold it into :59 rather than reject it.
        let second = second.min(59);
        let mut pos = 19;
        let mut micros = 0i64;
        if b.get(pos) == Some(&b'.') {
            pos += 1;
            let start = pos;
            while b.get(pos).is_some_and(u8::is_ascii_digit) {
                if pos - start < 6 {
                    micros = micros * 10 + i64::from(b[pos] - b'0');
                }
                pos += 1;
            }
            if pos == start {
                return Err(err());
            }
            for _ in (pos - start)..6 {
                micros *= 10;
            }
        }
        let offset_secs = match b.get(pos) {
            Some(b'Z' | b'z') if b.len() == pos + 1 => 0,
            Some(sign @ (b'+' | b'-')) if b.len() == pos + 6 => {
                let oh = num(pos + 1, 2)?;
                expect(pos + 3, b':')?;
                let om = num(pos + 4, 2)?;
                if oh > 23 || om > 59 {
                    return Err(err());
                }
                let off = oh * 3600 + om * 60;
                if *sign == b'+' {
                    off
                } else {
                    -off
                }
            }
            _ => return Err(err()),
        };
        let secs = days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset_secs;
        Ok(Timestamp(secs * MICROS_PER_SEC + micros))
    }
}

impl fmt::Display for Timestamp {
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(MICROS_PER_SEC);
        let micros = self.0.rem_euclid(MICROS_PER_SEC);
        let days = secs.div_euclid(SECS_PER_DAY);
        let sod = secs.rem_euclid(SECS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }
}

/// An unparsable timestamp (the input, cut to 64 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp: {0:?}")]
pub struct TimeParseError(pub String);

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
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
    fn formats_known_instants() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            Timestamp(1_714_564_800_000_001).to_string(),
            "2024-05-01T12:00:00.000001Z"
        );
        // Leap day and a pre-epoch instant.
        assert_eq!(
            Timestamp(951_782_400 * MICROS_PER_SEC).to_string(),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999999Z");
        let before = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(
            Timestamp::from_system_time(before).to_string(),
            "1969-12-31T00:00:00.000000Z"
        );
    }

    #[test]
    fn parse_round_trips_every_day_over_decades() {
        // Walk days across leap years and century boundaries (1900, 2000, 2100).
        let mut t = Timestamp::parse("1899-12-25T23:59:59.123456Z").unwrap().0;
        for _ in 0..(365 * 210) {
            let s = Timestamp(t).to_string();
            assert_eq!(Timestamp::parse(&s).unwrap().0, t, "{s}");
            t += SECS_PER_DAY * MICROS_PER_SEC + 7;
        }
    }

    #[test]
    fn parse_accepts_offsets_and_dates_and_rejects_garbage() {
        let z = Timestamp::parse("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(Timestamp::parse("2024-05-01T14:00:00+02:00").unwrap(), z);
        assert_eq!(Timestamp::parse("2024-05-01 07:30:00-04:30").unwrap(), z);
        assert_eq!(
            Timestamp::parse("2024-05-01T12:00:00.5Z").unwrap().0,
            z.0 + 500_000
        );
        assert_eq!(
            Timestamp::parse("2024-05-01T12:00:00.123456789Z")
                .unwrap()
                .0,
            z.0 + 123_456
        );
        assert_eq!(
            Timestamp::parse("2024-05-01").unwrap().to_string(),
            "2024-05-01T00:00:00.000000Z"
        );
        for bad in [
            "",
            "2024-13-01",
            "2023-02-29",
            "2024-02-30T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00Zjunk",
            "2024-05-01T12:00:00+0200",
            "２０２４-05-01",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        assert!(Timestamp::parse("2024-02-29").is_ok());
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
        let extra = line.replacen("{\"v\":2,", "{\"v\":2,\"evil\":1,", 1);
        assert_ne!(extra, line);
        assert!(serde_json::from_str::<AuditRecord>(&extra).is_err());
        let dup = line.replacen("{\"v\":2,", "{\"v\":2,\"seq\":5,", 1);
        assert_ne!(dup, line);
        assert!(serde_json::from_str::<AuditRecord>(&dup).is_err());
    }
}

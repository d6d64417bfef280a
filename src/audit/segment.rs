//! Segment files: names, listing, line checking and finding the chain head.
//!
//! A segment is `audit-<index:10>-<start_seq:20>.jsonl`. The index is
//! zero-padded so lexical order is chain order for humans and `ls`; the code
//! still sorts by the parsed index. `start_seq` is the seq the first record
//! of the segment has (or would have, if the segment is empty), which lets
//! `verify` name a dropped segment and check continuity without reading it.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::record::encode_line;
use super::record::{
    sha256_hex, AuditRecord, ChainHasher, TornTail, GENESIS_HASH, MIN_SCHEMA_VERSION,
    SCHEMA_VERSION,
};
use super::AuditError;

const PREFIX: &str = "audit-";
const SUFFIX: &str = ".jsonl";
const INDEX_DIGITS: usize = 10;
const SEQ_DIGITS: usize = 20;

/// File name of segment `index` whose first record is `start_seq`.
pub fn segment_file_name(index: u64, start_seq: u64) -> String {
    format!("{PREFIX}{index:010}-{start_seq:020}{SUFFIX}")
}

/// `(index, start_seq)` of a well-formed segment name; `None` for anything
/// else, which is then ignored (not part of the stream).
pub fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let mid = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (index, start) = mid.split_once('-')?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index, INDEX_DIGITS) || !digits(start, SEQ_DIGITS) {
        return None;
    }
    Some((index.parse().ok()?, start.parse().ok()?))
}

/// One segment file found in the audit directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentEntry {
    pub index: u64,
    pub start_seq: u64,
    pub name: String,
    pub path: PathBuf,
}

/// All segment files of `dir`, ordered by index (then start seq, so
/// duplicates sit side by side for `verify` to report).
pub fn list_segments(dir: &Path) -> io::Result<Vec<SegmentEntry>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some((index, start_seq)) = parse_segment_name(&name) {
            out.push(SegmentEntry {
                index,
                start_seq,
                path: entry.path(),
                name,
            });
        }
    }
    out.sort_by_key(|s| (s.index, s.start_seq));
    Ok(out)
}

/// Why a complete line is not a valid record (position-independent checks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("not a valid audit record ({0})")]
    Malformed(String),
    #[error("unsupported record schema version {0}")]
    Version(u32),
    #[error("line is not in canonical form (edited)")]
    NonCanonical,
    #[error(
        "hash does not match the record's contents (record edited, or wrong/missing chain key)"
    )]
    HashMismatch,
}

/// Parses one line (without its newline) and checks it is exactly what the
/// writer would have produced: canonical bytes and a correct hash.
pub fn check_line(line: &[u8], hasher: &ChainHasher) -> Result<AuditRecord, LineProblem> {
    let mut rec: AuditRecord = serde_json::from_slice(line).map_err(|e| {
        // serde_json errors name a position and a category, never the input.
        LineProblem::Malformed(e.to_string())
    })?;
    if !(MIN_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&rec.v) {
        return Err(LineProblem::Version(rec.v));
    }
    // `subjects` exists from version 2 on: absent before, present after.
    if rec.subjects.is_some() != (rec.v >= 2) {
        return Err(LineProblem::Malformed(format!(
            "`subjects` field does not match record version {}",
            rec.v
        )));
    }
    if let Some(Some(s)) = &rec.subjects {
        s.check()
            .map_err(|why| LineProblem::Malformed(why.to_string()))?;
    }
    // `outcomes` exists from version 3 on, and holds a list exactly in an
    // `outcomes` record (a kind that version 3 introduced).
    if rec.outcomes.is_some() != (rec.v >= 3) {
        return Err(LineProblem::Malformed(format!(
            "`outcomes` field does not match record version {}",
            rec.v
        )));
    }
    let is_outcomes = rec.kind == super::record::RecordKind::Outcomes;
    if matches!(&rec.outcomes, Some(Some(_))) != is_outcomes {
        return Err(LineProblem::Malformed(
            "outcomes list on a record that is not an `outcomes` record, or missing".into(),
        ));
    }
    if rec.recovery.is_some() != (rec.kind == super::record::RecordKind::Recovery) {
        return Err(LineProblem::Malformed(
            "recovery payload on a non-recovery record, or missing".into(),
        ));
    }
    let body = rec
        .canonical_body()
        .map_err(|e| LineProblem::Malformed(e.to_string()))?;
    if encode_line(&body, &rec.hash) != line {
        return Err(LineProblem::NonCanonical);
    }
    if hasher.hash(&body) != rec.hash {
        return Err(LineProblem::HashMismatch);
    }
    Ok(rec)
}

/// Where the chain stands on disk, as the writer needs it to continue.
#[derive(Debug, Clone)]
pub struct Tail {
    pub head_seq: u64,
    pub head_hash: String,
    /// Index for a new segment.
    pub next_index: u64,
    /// Partial lines after the head record, in chain order; non-empty means
    /// the writer must start a new segment with a recovery record.
    pub torn: Vec<TornTail>,
    /// The last segment and its length, if any.
    pub last: Option<(SegmentEntry, u64)>,
}

/// Finds the last complete record (the head) and every torn tail after it.
///
/// Reads backwards over segments that hold no complete line (empty files, or
/// files whose only content is a torn line, e.g. a crash while writing a
/// recovery record), so every unacknowledged tail is found. The head record
/// is fully checked, hash included: continuing a chain from an edited or
/// foreign record (or with the wrong key) would silently break it.
pub fn scan_tail(dir: &Path, hasher: &ChainHasher) -> Result<Tail, AuditError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AuditError::Io { path, source }
    };
    let segs = list_segments(dir).map_err(io_err(dir))?;
    let mut torn = Vec::new();
    let mut head = None;
    for seg in segs.iter().rev() {
        let data = fs::read(&seg.path).map_err(io_err(&seg.path))?;
        let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if complete < data.len() {
            let tail = &data[complete..];
            torn.push(TornTail {
                segment: seg.name.clone(),
                offset: complete as u64,
                len: tail.len() as u64,
                sha256: sha256_hex(tail),
            });
        }
        if complete > 0 {
            let body = &data[..complete - 1];
            let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            let rec = check_line(&body[start..], hasher).map_err(|p| {
                AuditError::Corrupt(format!(
                    "last record of {} is invalid: {p}; run `pgveil audit verify`",
                    seg.name
                ))
            })?;
            head = Some((rec.seq, rec.hash));
            break;
        }
    }
    torn.reverse();
    let (head_seq, head_hash) = head.unwrap_or((0, GENESIS_HASH.to_string()));
    let last = match segs.last() {
        Some(seg) => {
            let len = fs::metadata(&seg.path).map_err(io_err(&seg.path))?.len();
            Some((seg.clone(), len))
        }
        None => None,
    };
    Ok(Tail {
        head_seq,
        head_hash,
        next_index: segs.last().map_or(1, |s| s.index.saturating_add(1)),
        torn,
        last,
    })
}

/// Makes a newly created file's directory entry durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{AuditRecordInput, RecordKind, SubjectTokens, SUBJECT_TOKEN_LIMIT};

    fn sealed(input: AuditRecordInput) -> (AuditRecord, Vec<u8>) {
        let mut r = AuditRecord::from_input(input, 1, GENESIS_HASH.into());
        let line = r.seal(&ChainHasher::new(None)).unwrap();
        (r, line)
    }

    fn token(i: usize) -> String {
        format!("ds1:{i:032x}")
    }

    #[test]
    fn version_1_records_still_verify_and_version_2_carries_subjects() {
        let plain = ChainHasher::new(None);
        // A v1 record exactly as the v1 writer produced it: no `subjects` member.
        let mut v1 = AuditRecord::from_input(
            AuditRecordInput::new(RecordKind::SessionStart, std::time::UNIX_EPOCH),
            1,
            GENESIS_HASH.into(),
        );
        v1.v = 1;
        v1.subjects = None;
        v1.outcomes = None;
        let line = v1.seal(&plain).unwrap();
        assert!(!String::from_utf8_lossy(&line).contains("subjects"));
        assert_eq!(check_line(&line, &plain).unwrap().v, 1);

        let mut input = AuditRecordInput::new(RecordKind::Statement, std::time::UNIX_EPOCH);
        let (_, none) = sealed(input.clone());
        assert!(String::from_utf8_lossy(&none).contains(",\"subjects\":null,"));
        assert_eq!(check_line(&none, &plain).unwrap().subjects, Some(None));
        input.subjects = Some(SubjectTokens::from_tokens(vec![
            token(2),
            token(1),
            token(2),
        ]));
        let (_, with) = sealed(input);
        let rec = check_line(&with, &plain).unwrap();
        let s = rec.subjects.flatten().unwrap();
        assert_eq!(
            (s.tokens, s.count, s.bulk),
            (vec![token(1), token(2)], 2, false)
        );

        // A v2 record without the field, or a v1 record with it, is not canonical.
        let text = String::from_utf8(none).unwrap();
        let dropped = text.replace(",\"subjects\":null", "");
        let mut r: AuditRecord = serde_json::from_str(&dropped).unwrap();
        let resealed = r.seal(&plain).unwrap();
        assert!(matches!(
            check_line(&resealed, &plain),
            Err(LineProblem::Malformed(_))
        ));
    }

    #[test]
    fn version_2_records_verify_and_version_3_carries_outcomes_only_in_their_kind() {
        use crate::audit::record::StatementOutcome;
        let plain = ChainHasher::new(None);
        // A v2 record exactly as the v2 writer produced it: no `outcomes` member.
        let mut v2 = AuditRecord::from_input(
            AuditRecordInput::new(RecordKind::Statement, std::time::UNIX_EPOCH),
            1,
            GENESIS_HASH.into(),
        );
        v2.v = 2;
        v2.outcomes = None;
        let line = v2.seal(&plain).unwrap();
        assert!(!String::from_utf8_lossy(&line).contains("outcomes"));
        assert_eq!(check_line(&line, &plain).unwrap().v, 2);
        // v3: `"outcomes":null` on every record but the `outcomes` kind.
        let (_, v3) = sealed(AuditRecordInput::new(
            RecordKind::Statement,
            std::time::UNIX_EPOCH,
        ));
        assert!(String::from_utf8_lossy(&v3).contains(",\"outcomes\":null,"));
        assert_eq!(check_line(&v3, &plain).unwrap().outcomes, Some(None));
        let list = vec![StatementOutcome {
            of: 7,
            rows: 1,
            duration_us: 250,
            outcome: "ok".into(),
        }];
        let mut o = AuditRecord::from_input(
            AuditRecordInput::new(RecordKind::Outcomes, std::time::UNIX_EPOCH),
            8,
            GENESIS_HASH.into(),
        );
        o.outcomes = Some(Some(list.clone()));
        let line = o.seal(&plain).unwrap();
        assert_eq!(
            check_line(&line, &plain).unwrap().outcomes,
            Some(Some(list.clone()))
        );
        // A list on another kind, an `outcomes` record without one, and a v2
        // record with the field are all rejected.
        for (kind, outcomes, v) in [
            (RecordKind::Statement, Some(Some(list.clone())), 3),
            (RecordKind::Outcomes, Some(None), 3),
            (RecordKind::Statement, Some(None), 2),
        ] {
            let mut r = AuditRecord::from_input(
                AuditRecordInput::new(kind, std::time::UNIX_EPOCH),
                1,
                GENESIS_HASH.into(),
            );
            r.v = v;
            r.outcomes = outcomes;
            let line = r.seal(&plain).unwrap();
            assert!(
                matches!(check_line(&line, &plain), Err(LineProblem::Malformed(_))),
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
    }

    #[test]
    fn subject_tokens_are_bounded_and_never_raw_ids() {
        let many: Vec<String> = (0..SUBJECT_TOKEN_LIMIT + 10).rev().map(token).collect();
        let s = SubjectTokens::from_tokens(many);
        assert_eq!(s.tokens.len(), SUBJECT_TOKEN_LIMIT);
        assert_eq!((s.count, s.bulk), (SUBJECT_TOKEN_LIMIT as u64 + 10, true));
        assert_eq!(s.tokens[0], token(0));
        assert!(s.check().is_ok());
        for bad in [
            "42",
            "alice@example.com",
            "ds1:ABCDEF0123456789abcdef0123456789",
            "ds1:00",
        ] {
            let s = SubjectTokens::from_tokens(vec![bad.to_string()]);
            assert!(s.check().is_err(), "{bad}");
        }
        let lying = SubjectTokens {
            tokens: vec![token(1)],
            count: 5,
            bulk: false,
        };
        assert!(lying.check().is_err());
        let unsorted = SubjectTokens {
            tokens: vec![token(2), token(1)],
            count: 2,
            bulk: false,
        };
        assert!(unsorted.check().is_err());
        // The line check applies the same rule to what is on disk.
        let mut input = AuditRecordInput::new(RecordKind::Statement, std::time::UNIX_EPOCH);
        input.subjects = Some(SubjectTokens::from_tokens(vec!["42".into()]));
        let (_, line) = sealed(input);
        assert!(matches!(
            check_line(&line, &ChainHasher::new(None)),
            Err(LineProblem::Malformed(_))
        ));
    }

    #[test]
    fn names_round_trip_and_sort_lexically() {
        let a = segment_file_name(9, 123);
        let b = segment_file_name(10, 5);
        assert_eq!(a, "audit-0000000009-00000000000000000123.jsonl");
        assert!(a < b, "lexical order must be index order");
        assert_eq!(parse_segment_name(&a), Some((9, 123)));
        assert_eq!(
            parse_segment_name(&segment_file_name(1, u64::MAX)),
            Some((1, u64::MAX))
        );
        for bad in [
            "audit-9-123.jsonl",
            "audit-000000000a-00000000000000000123.jsonl",
            "audit-0000000009-00000000000000000123.jsonl.bak",
            "x-0000000009-00000000000000000123.jsonl",
            "audit-0000000009_00000000000000000123.jsonl",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }
}

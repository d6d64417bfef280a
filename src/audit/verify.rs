//! `pgveil audit verify`: walk every segment and check the whole chain.
//!
//! Checks, in chain order: segment indexes are contiguous from 1 and each
//! segment's start seq (from its name) is the next expected seq; every line
//! is a canonical record with a correct hash; seqs go 1, 2, 3… with no gap;
//! each `prev` is the hash of the record before (across segments too). A
//! partial last line of a segment (crash) is accepted only when the next
//! record is a `recovery` record naming exactly those bytes (segment, offset,
//! length, SHA-256); any other partial line, and any recovery record that
//! claims a tail which is not there, is a failure.
//!
//! What this cannot see: removal of the newest whole records (the chain is
//! still consistent, just shorter) and, without a key, a directory rewritten
//! with a recomputed chain. Compare the reported head with an external anchor
//! (the `pgveil_audit_chain_head_seq` metric, an exported head) for the
//! former; use a chain key for the latter. See docs/audit.md.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::record::{AuditRecord, ChainHasher, RecordKind, TornTail, GENESIS_HASH};
use super::segment::{check_line, list_segments, LineProblem};

/// A fully verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    pub records: u64,
    pub segments: usize,
    /// Seq of the newest record (0 when there are none).
    pub head_seq: u64,
    /// Hash of the newest record ([`GENESIS_HASH`] when there are none).
    pub head_hash: String,
    /// Recovery records seen (each marks a crash or write fault).
    pub recoveries: u64,
    pub keyed: bool,
}

/// The first problem found, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct VerifyFailure {
    /// Segment file name, when the problem is inside one.
    pub segment: Option<String>,
    /// 1-based line number within the segment.
    pub line: Option<u64>,
    /// The seq the chain expected at this point.
    pub seq: Option<u64>,
    pub problem: Problem,
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.segment {
            write!(f, "{s}")?;
            if let Some(l) = self.line {
                write!(f, " line {l}")?;
            }
            write!(f, ": ")?;
        }
        if let Some(seq) = self.seq {
            write!(f, "at seq {seq}: ")?;
        }
        write!(f, "{}", self.problem)
    }
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("no audit segments in the directory (all deleted?)")]
    NoSegments,
    #[error("cannot read: {0}")]
    Io(String),
    #[error("segment {expected_index} is missing (dropped segment)")]
    MissingSegment { expected_index: u64 },
    #[error("duplicate segment index {index}")]
    DuplicateSegment { index: u64 },
    #[error("segment name says it starts at seq {found}, chain continues at {expected}")]
    SegmentStart { expected: u64, found: u64 },
    #[error(transparent)]
    Line(#[from] LineProblem),
    #[error("found seq {found}: {}", seq_hint(*expected, *found))]
    Seq { expected: u64, found: u64 },
    #[error("prev does not match the hash of the previous record (record inserted, deleted or replaced)")]
    PrevMismatch,
    #[error("segment ends with a partial line ({len} bytes at offset {offset}) that no recovery record acknowledges (truncated)")]
    UnacknowledgedTornTail { offset: u64, len: u64 },
    #[error("recovery record does not match the torn tails actually present (expected {expected} tail(s), it names {found})")]
    RecoveryMismatch { expected: usize, found: usize },
}

fn seq_hint(expected: u64, found: u64) -> &'static str {
    if found > expected {
        "records missing before it (deleted, truncated or reordered)"
    } else {
        "out of order or duplicated (reordered or inserted)"
    }
}

fn fail(
    segment: Option<&str>,
    line: Option<u64>,
    seq: Option<u64>,
    problem: Problem,
) -> VerifyFailure {
    VerifyFailure {
        segment: segment.map(str::to_string),
        line,
        seq,
        problem,
    }
}

/// The chain rules every record source shares (segment files here, a
/// JetStream stream in `verify_stream`): each line is canonical with a
/// correct hash, seqs run 1, 2, 3… and each `prev` is the hash before.
pub struct ChainCheck {
    hasher: ChainHasher,
    /// The seq the next record must have.
    pub expected_seq: u64,
    /// Hash of the newest accepted record ([`GENESIS_HASH`] before any).
    pub prev: String,
    pub records: u64,
    pub recoveries: u64,
}

impl ChainCheck {
    pub fn new(chain_key: Option<&[u8]>) -> Self {
        ChainCheck {
            hasher: ChainHasher::new(chain_key),
            expected_seq: 1,
            prev: GENESIS_HASH.to_string(),
            records: 0,
            recoveries: 0,
        }
    }

    pub fn is_keyed(&self) -> bool {
        self.hasher.is_keyed()
    }

    /// Position-independent checks of one line (without its newline).
    pub fn parse(&self, line: &[u8]) -> Result<AuditRecord, Problem> {
        Ok(check_line(line, &self.hasher)?)
    }

    /// Does `rec` continue the chain here?
    pub fn check_link(&self, rec: &AuditRecord) -> Result<(), Problem> {
        if rec.seq != self.expected_seq {
            return Err(Problem::Seq {
                expected: self.expected_seq,
                found: rec.seq,
            });
        }
        if rec.prev != self.prev {
            return Err(Problem::PrevMismatch);
        }
        Ok(())
    }

    /// Appends a record that passed [`check_link`](Self::check_link).
    pub fn accept(&mut self, rec: AuditRecord) {
        if rec.kind == RecordKind::Recovery {
            self.recoveries += 1;
        }
        self.prev = rec.hash;
        self.records += 1;
        self.expected_seq += 1;
    }
}

/// Verifies the whole chain in `dir`. `chain_key` must be the key the writer
/// used (HMAC mode), or `None` for a plain SHA-256 chain.
pub fn verify(dir: &Path, chain_key: Option<&[u8]>) -> Result<VerifySummary, VerifyFailure> {
    let mut chain = ChainCheck::new(chain_key);
    let segs =
        list_segments(dir).map_err(|e| fail(None, None, None, Problem::Io(e.to_string())))?;
    if segs.is_empty() {
        return Err(fail(None, None, None, Problem::NoSegments));
    }
    // Torn tails seen since the last complete record, in chain order.
    let mut pending: Vec<TornTail> = Vec::new();

    for (expected_index, seg) in (1u64..).zip(&segs) {
        let name = Some(seg.name.as_str());
        let expected_seq = chain.expected_seq;
        // A torn tail followed by anything but its recovery record is the
        // first anomaly: report it rather than what follows from it.
        if seg.index != expected_index || seg.start_seq != expected_seq {
            if let Some(e) = torn_first(&pending, expected_seq) {
                return Err(e);
            }
        }
        if seg.index < expected_index {
            return Err(fail(
                name,
                None,
                None,
                Problem::DuplicateSegment { index: seg.index },
            ));
        }
        if seg.index > expected_index {
            return Err(fail(
                name,
                None,
                Some(expected_seq),
                Problem::MissingSegment { expected_index },
            ));
        }
        if seg.start_seq != expected_seq {
            return Err(fail(
                name,
                None,
                Some(expected_seq),
                Problem::SegmentStart {
                    expected: expected_seq,
                    found: seg.start_seq,
                },
            ));
        }
        let io_fail = |e: io::Error| fail(name, None, None, Problem::Io(e.to_string()));
        let mut reader = BufReader::new(File::open(&seg.path).map_err(io_fail)?);
        let mut buf = Vec::new();
        let mut offset = 0u64;
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(io_fail)?;
            if n == 0 {
                break;
            }
            if buf.last() != Some(&b'\n') {
                pending.push(TornTail {
                    segment: seg.name.clone(),
                    offset,
                    len: n as u64,
                    sha256: hex::encode(Sha256::digest(&buf)),
                });
                break;
            }
            line_no += 1;
            let expected_seq = chain.expected_seq;
            let at = |p: Problem| fail(name, Some(line_no), Some(expected_seq), p);
            let rec = chain.parse(&buf[..n - 1]).map_err(at)?;
            if rec.kind != RecordKind::Recovery {
                if let Some(e) = torn_first(&pending, expected_seq) {
                    return Err(e);
                }
            }
            chain.check_link(&rec).map_err(at)?;
            if rec.kind == RecordKind::Recovery {
                let named = rec.recovery.as_ref().map_or(0, |r| r.torn.len());
                if rec.recovery.as_ref().map(|r| &r.torn) != Some(&pending) {
                    return Err(at(Problem::RecoveryMismatch {
                        expected: pending.len(),
                        found: named,
                    }));
                }
            }
            pending.clear();
            chain.accept(rec);
            offset += n as u64;
        }
    }
    if let Some(t) = pending.first() {
        return Err(torn_failure(t, chain.expected_seq));
    }
    Ok(VerifySummary {
        records: chain.records,
        segments: segs.len(),
        head_seq: chain.expected_seq - 1,
        keyed: chain.is_keyed(),
        head_hash: chain.prev,
        recoveries: chain.recoveries,
    })
}

fn torn_first(pending: &[TornTail], expected_seq: u64) -> Option<VerifyFailure> {
    pending.first().map(|t| torn_failure(t, expected_seq))
}

fn torn_failure(t: &TornTail, expected_seq: u64) -> VerifyFailure {
    fail(
        Some(&t.segment),
        None,
        Some(expected_seq),
        Problem::UnacknowledgedTornTail {
            offset: t.offset,
            len: t.len,
        },
    )
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::audit::record::{AuditRecord, AuditRecordInput, Recovery, RecoveryReason};
    use crate::audit::segment::segment_file_name;

    const KEY: &[u8] = b"an-audit-chain-key-of-32-bytes!!";

    /// Writes a chain with `sizes[i]` records in segment i+1, the way the
    /// writer would; returns the segment paths.
    fn write_chain(dir: &Path, sizes: &[u64], key: Option<&[u8]>) -> Vec<PathBuf> {
        let hasher = ChainHasher::new(key);
        let mut prev = GENESIS_HASH.to_string();
        let mut seq = 0;
        let mut paths = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let path = dir.join(segment_file_name(i as u64 + 1, seq + 1));
            let mut data = Vec::new();
            for _ in 0..n {
                seq += 1;
                let mut input = AuditRecordInput::new(
                    RecordKind::Statement,
                    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seq),
                );
                input.login_role = Some(format!("role{seq}"));
                input.fingerprint = Some("SELECT a FROM t WHERE b = $1".into());
                let mut rec = AuditRecord::from_input(input, seq, prev.clone());
                data.extend(rec.seal(&hasher).unwrap());
                data.push(b'\n');
                prev = rec.hash;
            }
            fs::write(&path, data).unwrap();
            paths.push(path);
        }
        paths
    }

    fn lines(p: &Path) -> Vec<String> {
        fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn put_lines(p: &Path, lines: &[String]) {
        fs::write(
            p,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
    }

    fn name(p: &Path) -> String {
        p.file_name().unwrap().to_str().unwrap().to_string()
    }

    #[test]
    fn intact_chain_verifies_with_head() {
        let d = tempfile::tempdir().unwrap();
        write_chain(d.path(), &[3, 0, 4, 2], None);
        let s = verify(d.path(), None).unwrap();
        assert_eq!((s.records, s.segments, s.head_seq), (9, 4, 9));
        assert_eq!(s.head_hash.len(), 64);
        assert!(!s.keyed);
    }

    #[test]
    fn empty_dir_fails() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("notes.txt"), "x").unwrap();
        assert_eq!(
            verify(d.path(), None).unwrap_err().problem,
            Problem::NoSegments
        );
    }

    #[test]
    fn edited_byte_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = write_chain(d.path(), &[3, 3], None);
        let mut l = lines(&p[1]);
        l[1] = l[1].replace("role5", "role6");
        put_lines(&p[1], &l);
        let e = verify(d.path(), None).unwrap_err();
        assert_eq!(
            (e.segment.as_deref(), e.seq, e.line),
            (Some(name(&p[1]).as_str()), Some(5), Some(2))
        );
        assert_eq!(e.problem, Problem::Line(LineProblem::HashMismatch));
        // An edit that keeps the value but changes the encoding is still caught.
        let mut l = lines(&p[0]);
        l[0] = l[0].replace("\"v\":3,", "\"v\": 3,");
        put_lines(&p[0], &l);
        let e = verify(d.path(), None).unwrap_err();
        assert_eq!(
            (e.seq, e.problem),
            (Some(1), Problem::Line(LineProblem::NonCanonical))
        );
    }

    #[test]
    fn deleted_line_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = write_chain(d.path(), &[3, 3], None);
        let mut l = lines(&p[0]);
        l.remove(1);
        put_lines(&p[0], &l);
        let e = verify(d.path(), None).unwrap_err();
        assert_eq!((e.segment, e.seq), (Some(name(&p[0])), Some(2)));
        assert_eq!(
            e.problem,
            Problem::Seq {
                expected: 2,
                found: 3
            }
        );
    }

    #[test]
    fn swapped_lines_are_named() {
        let d = tempfile::tempdir().unwrap();
        let p = write_chain(d.path(), &[2, 4], None);
        let mut l = lines(&p[1]);
        l.swap(1, 2);
        put_lines(&p[1], &l);
        let e = verify(d.path(), None).unwrap_err();
        assert_eq!((e.segment, e.seq), (Some(name(&p[1])), Some(4)));
        assert_eq!(
            e.problem,
            Problem::Seq {
                expected: 4,
                found: 5
            }
        );
    }

    #[test]
    fn truncation_mid_line_is_named_last_and_middle() {
        let d = tempfile::tempdir().unwrap();
        let p = write_chain(d.path(), &[3, 3], None);
        let data = fs::read(&p[1]).unwrap();
        fs::write(&p[1], &data[..data.len() - 10]).unwrap();
        let e = verify(d.path(), None).unwrap_err();
        assert_eq!((e.segment, e.seq), (Some(name(&p[1])), Some(6)));
        assert!(matches!(e.problem, Problem::UnacknowledgedTornTail { .. }));

        let d = tempfile::tempdir().unwrap();
        let p = write_chain(d.path(), &[3, 3], None);
        let data = fs::read(&p[0]).unwrap();
        fs::write(&p[0], &data[..data.len() - 10]).unwrap();
        let e = verify(d.path(), None).unwrap_err();
        assert_eq!(e.segment, Some(name(&p[0])));
        assert!(
            matches!(e.problem, Problem::UnacknowledgedTornTail { .. }),
            "{e}"
        );
    }

    #[test]
    fn dropped_middle_segment_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = write_chain(d.path(), &[2, 2, 2], None);
        fs::remove_file(&p[1]).unwrap();
        let e = verify(d.path(), None).unwrap_err();
        assert_eq!((e.segment, e.seq), (Some(name(&p[2])), Some(3)));
        assert_eq!(e.problem, Problem::MissingSegment { expected_index: 2 });
        // Renaming the next one to close the index gap does not help.
        let renamed = d.path().join(segment_file_name(2, 5));
        fs::rename(&p[2], &renamed).unwrap();
        let e = verify(d.path(), None).unwrap_err();
        assert_eq!(
            e.problem,
            Problem::SegmentStart {
                expected: 3,
                found: 5
            }
        );
        let renamed2 = d.path().join(segment_file_name(2, 3));
        fs::rename(&renamed, &renamed2).unwrap();
        let e = verify(d.path(), None).unwrap_err();
        assert_eq!(
            e.problem,
            Problem::Seq {
                expected: 3,
                found: 5
            }
        );
    }

    #[test]
    fn forged_line_is_caught_and_keyed_chain_resists_recomputation() {
        // A forged line with a made-up hash.
        let d = tempfile::tempdir().unwrap();
        let p = write_chain(d.path(), &[3], None);
        let mut l = lines(&p[0]);
        let forged = l[1].replace("role2", "mallory");
        l.insert(2, forged);
        put_lines(&p[0], &l);
        let e = verify(d.path(), None).unwrap_err();
        assert_eq!((e.seq, e.line), (Some(3), Some(3)));

        // An attacker who recomputes a plain chain passes plain verify...
        let d = tempfile::tempdir().unwrap();
        let p = write_chain(d.path(), &[3], Some(KEY));
        let l = lines(&p[0]);
        let hasher = ChainHasher::new(None);
        let mut prev = GENESIS_HASH.to_string();
        let mut out = Vec::new();
        for line in &l {
            let mut rec: AuditRecord = serde_json::from_str(line).unwrap();
            rec.login_role = Some("mallory".into());
            rec.prev = prev.clone();
            out.push(String::from_utf8(rec.seal(&hasher).unwrap()).unwrap());
            prev = rec.hash;
        }
        put_lines(&p[0], &out);
        assert!(verify(d.path(), None).is_ok());
        // ...but not keyed verify.
        let e = verify(d.path(), Some(KEY)).unwrap_err();
        assert_eq!(
            (e.seq, e.problem),
            (Some(1), Problem::Line(LineProblem::HashMismatch))
        );
        // Wrong key fails on an untouched keyed chain; right key passes.
        let d = tempfile::tempdir().unwrap();
        write_chain(d.path(), &[2], Some(KEY));
        assert!(verify(d.path(), Some(b"another-key-0123456789")).is_err());
        assert!(verify(d.path(), Some(KEY)).unwrap().keyed);
    }

    /// Torn tail in segment 1, then a new segment whose first record is a
    /// recovery record; returns (dir, segment 1 path, the recovery record).
    fn torn_and_recovered(tamper: impl Fn(&mut Recovery)) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = write_chain(d.path(), &[2], None);
        let mut data = fs::read(&p[0]).unwrap();
        let valid = data.len() as u64;
        data.extend_from_slice(b"{\"v\":1,\"seq\":3,\"ti");
        fs::write(&p[0], &data).unwrap();
        let l = lines(&p[0]);
        let last: AuditRecord = serde_json::from_str(&l[1]).unwrap();
        let mut rec = AuditRecord::from_input(
            AuditRecordInput::new(RecordKind::Recovery, UNIX_EPOCH),
            3,
            last.hash,
        );
        let mut r = Recovery {
            reason: RecoveryReason::Startup,
            torn: vec![TornTail {
                segment: name(&p[0]),
                offset: valid,
                len: 18,
                sha256: hex::encode(Sha256::digest(b"{\"v\":1,\"seq\":3,\"ti")),
            }],
        };
        tamper(&mut r);
        rec.recovery = Some(r);
        let mut line = rec.seal(&ChainHasher::new(None)).unwrap();
        line.push(b'\n');
        fs::write(d.path().join(segment_file_name(2, 3)), line).unwrap();
        (d, p[0].clone())
    }

    #[test]
    fn acknowledged_torn_tail_is_accepted_and_nothing_else() {
        let (d, _) = torn_and_recovered(|_| {});
        let s = verify(d.path(), None).unwrap();
        assert_eq!((s.records, s.recoveries, s.head_seq), (3, 1, 3));

        // The acknowledgement must match the tail exactly.
        let (d, _) = torn_and_recovered(|r| r.torn[0].len = 17);
        let e = verify(d.path(), None).unwrap_err();
        assert_eq!(
            e.problem,
            Problem::RecoveryMismatch {
                expected: 1,
                found: 1
            }
        );

        // Cutting the acknowledged tail further (a whole record too) is caught.
        let (d, seg1) = torn_and_recovered(|_| {});
        let data = fs::read(&seg1).unwrap();
        fs::write(&seg1, &data[..data.len() - 40]).unwrap();
        assert!(verify(d.path(), None).is_err());

        // A recovery record claiming a tail that is not there is rejected.
        let (d, seg1) = torn_and_recovered(|_| {});
        let data = fs::read(&seg1).unwrap();
        fs::write(&seg1, &data[..data.len() - 18]).unwrap();
        let e = verify(d.path(), None).unwrap_err();
        assert_eq!(
            e.problem,
            Problem::RecoveryMismatch {
                expected: 0,
                found: 1
            }
        );
    }
}

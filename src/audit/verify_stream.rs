//! `pgveil audit verify --nats`: each instance's chain, from the stream.
//!
//! The shipper publishes every record of an instance on that instance's
//! subject, in chain order. So per subject the stream must hold seq 1, 2,
//! 3… with every line canonical, correctly hashed and linked by `prev`:
//! exactly the rules of the directory verify ([`ChainCheck`]). What differs:
//!
//! - Torn tails are local bytes that are never shipped; a recovery record is
//!   checked as a link of the chain but the tails it names are not (verify
//!   the directory for that).
//! - A record delivered twice (same seq, same hash) is a transport artefact,
//!   not a change to the history: it is counted and reported, and does not
//!   fail the chain. A *different* record at a seq already seen does.
//! - Removal of an instance's newest records is, as locally, invisible to the
//!   chain; compare the head with the local head or the
//!   `pgveil_audit_ship_head_seq` metric scraped earlier.

use std::collections::{BTreeMap, HashMap};

use super::record::AuditRecord;
use super::ship::sink::{read_stream, StreamRecord};
use super::ship::{ShipError, SUBJECT_PREFIX};
use super::verify::{ChainCheck, Problem};

/// How many recent seq→hash pairs per instance are kept to recognise a
/// redelivered record.
const RECENT: usize = 65_536;

/// One instance's verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSummary {
    pub subject: String,
    pub records: u64,
    pub head_seq: u64,
    pub head_hash: String,
    pub recoveries: u64,
    /// Records delivered more than once (identical copies).
    pub duplicates: u64,
}

/// The first problem in one instance's chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subject}: stream seq {stream_seq}: at seq {seq}: {problem}")]
pub struct StreamFailure {
    pub subject: String,
    pub stream_seq: u64,
    /// The seq the chain expected there.
    pub seq: u64,
    pub problem: Problem,
}

struct Instance {
    chain: ChainCheck,
    recent: BTreeMap<u64, String>,
    duplicates: u64,
    failed: Option<StreamFailure>,
}

impl Instance {
    fn push(&mut self, subject: &str, m: &StreamRecord) {
        if self.failed.is_some() {
            return;
        }
        let fail = |problem| StreamFailure {
            subject: subject.to_string(),
            stream_seq: m.stream_seq,
            seq: self.chain.expected_seq,
            problem,
        };
        let rec: AuditRecord = match self.chain.parse(&m.payload) {
            Ok(r) => r,
            Err(p) => {
                self.failed = Some(fail(p));
                return;
            }
        };
        if rec.seq < self.chain.expected_seq
            && self.recent.get(&rec.seq).is_some_and(|h| *h == rec.hash)
        {
            self.duplicates += 1;
            return;
        }
        if let Err(p) = self.chain.check_link(&rec) {
            self.failed = Some(fail(p));
            return;
        }
        self.recent.insert(rec.seq, rec.hash.clone());
        if self.recent.len() > RECENT {
            self.recent.pop_first();
        }
        self.chain.accept(rec);
    }
}

/// The subject filter for `--instance NAME` (default subjects), or every
/// subject of the stream.
pub fn instance_filter(instance: Option<&str>) -> String {
    match instance {
        Some(i) => format!("{SUBJECT_PREFIX}{i}"),
        None => ">".to_string(),
    }
}

/// Reads `stream` from the NATS server at `url` and verifies each
/// instance's chain.
pub async fn verify_stream(
    url: &str,
    stream: &str,
    instance: Option<&str>,
    chain_key: Option<&[u8]>,
) -> Result<Vec<Result<InstanceSummary, StreamFailure>>, ShipError> {
    let messages = read_stream(url, stream, &instance_filter(instance)).await?;
    Ok(verify_stream_records(&messages, chain_key))
}

/// Verifies every subject's chain in `messages` (stream order). One result
/// per subject, sorted by subject.
pub fn verify_stream_records(
    messages: &[StreamRecord],
    chain_key: Option<&[u8]>,
) -> Vec<Result<InstanceSummary, StreamFailure>> {
    let mut by_subject: HashMap<&str, Instance> = HashMap::new();
    for m in messages {
        let inst = by_subject
            .entry(m.subject.as_str())
            .or_insert_with(|| Instance {
                chain: ChainCheck::new(chain_key),
                recent: BTreeMap::new(),
                duplicates: 0,
                failed: None,
            });
        inst.push(&m.subject, m);
    }
    let mut out: Vec<_> = by_subject
        .into_iter()
        .map(|(subject, i)| match i.failed {
            Some(f) => Err(f),
            None => Ok(InstanceSummary {
                subject: subject.to_string(),
                records: i.chain.records,
                head_seq: i.chain.expected_seq - 1,
                head_hash: i.chain.prev,
                recoveries: i.chain.recoveries,
                duplicates: i.duplicates,
            }),
        })
        .collect();
    out.sort_by(|a, b| {
        let s = |r: &Result<InstanceSummary, StreamFailure>| match r {
            Ok(s) => s.subject.clone(),
            Err(f) => f.subject.clone(),
        };
        s(a).cmp(&s(b))
    });
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::audit::record::{AuditRecordInput, ChainHasher, RecordKind, GENESIS_HASH};
    use crate::audit::segment::LineProblem;

    fn chain(subject: &str, n: u64) -> Vec<StreamRecord> {
        let h = ChainHasher::new(None);
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let mut i = AuditRecordInput::new(
                    RecordKind::Statement,
                    UNIX_EPOCH + Duration::from_secs(seq),
                );
                i.login_role = Some(format!("{subject}-{seq}"));
                let mut r = crate::audit::record::AuditRecord::from_input(i, seq, prev.clone());
                let line = r.seal(&h).unwrap();
                prev = r.hash;
                StreamRecord {
                    subject: subject.into(),
                    stream_seq: 0,
                    payload: line.into(),
                }
            })
            .collect()
    }

    /// Two instances interleaved, as in a real stream.
    fn fleet() -> Vec<StreamRecord> {
        let (a, b) = (chain("pgveil.audit.a", 5), chain("pgveil.audit.b", 3));
        let mut out = Vec::new();
        let (mut ia, mut ib) = (a.into_iter(), b.into_iter());
        loop {
            match (ia.next(), ib.next()) {
                (None, None) => break,
                (x, y) => out.extend(x.into_iter().chain(y)),
            }
        }
        for (i, m) in out.iter_mut().enumerate() {
            m.stream_seq = i as u64 + 1;
        }
        out
    }

    #[test]
    fn fleet_verifies_per_instance_and_tolerates_redelivery() {
        let mut msgs = fleet();
        let again = msgs[2].clone();
        msgs.push(again);
        let r = verify_stream_records(&msgs, None);
        let ok: Vec<_> = r.into_iter().map(Result::unwrap).collect();
        assert_eq!(ok.len(), 2);
        assert_eq!((ok[0].records, ok[0].head_seq, ok[0].duplicates), (5, 5, 1));
        assert_eq!((ok[1].records, ok[1].head_seq, ok[1].duplicates), (3, 3, 0));
    }

    #[test]
    fn missing_edited_and_foreign_records_are_named() {
        let mut msgs = fleet();
        let gone = msgs.iter().position(|m| m.subject.ends_with(".a")).unwrap() + 2;
        msgs.remove(gone); // a's seq 2
        let r = verify_stream_records(&msgs, None);
        let e = r[0].clone().unwrap_err();
        assert_eq!((e.subject.as_str(), e.seq), ("pgveil.audit.a", 2));
        assert_eq!(
            e.problem,
            Problem::Seq {
                expected: 2,
                found: 3
            }
        );
        assert!(r[1].is_ok(), "instance b is unaffected");

        let mut msgs = fleet();
        let text = String::from_utf8(msgs[1].payload.to_vec()).unwrap();
        msgs[1].payload = text.replace("pgveil.audit.b-1", "pgveil.audit.b-X").into();
        let e = verify_stream_records(&msgs, None)[1].clone().unwrap_err();
        assert_eq!(
            (e.seq, e.problem),
            (1, Problem::Line(LineProblem::HashMismatch))
        );

        // A different record at a seq already seen is a fork, not a duplicate.
        let mut msgs = fleet();
        let other = chain("pgveil.audit.zz", 1).remove(0);
        msgs.push(StreamRecord {
            subject: "pgveil.audit.a".into(),
            ..other
        });
        let e = verify_stream_records(&msgs, None)[0].clone().unwrap_err();
        assert_eq!(
            e.problem,
            Problem::Seq {
                expected: 6,
                found: 1
            }
        );
    }
}

//! The local half of shipping, against the real writer: the tail follows
//! rotation, stops at the fsynced seq, skips torn tails, and refuses a
//! broken chain; the writer's fsynced seq moves only on fsync.

use std::fs;
use std::time::{Duration, SystemTime};

use prometheus::Registry;

use super::tail::{LocalTail, TailError};
use crate::audit::record::ChainHasher;
use crate::audit::segment::list_segments;
use crate::audit::{Audit, AuditConfig, AuditRecordInput, Durability, RecordKind};

fn input(i: u64) -> AuditRecordInput {
    let mut r = AuditRecordInput::new(RecordKind::Statement, SystemTime::now());
    r.login_role = Some(format!("role{i}"));
    r.fingerprint = Some("SELECT a FROM t WHERE b = $1".into());
    r
}

/// Small segments (rotation every few records) unless buffered: rotation
/// fsyncs, which would hide what the buffered test looks at.
fn start(dir: &std::path::Path, durability: Durability) -> Audit {
    let mut c = AuditConfig::new(dir);
    if durability == Durability::Strict {
        c.segment_max_bytes = 1500;
    }
    c.durability = durability;
    Audit::start(c, &Registry::new()).unwrap()
}

fn drain(t: &mut LocalTail, batch: usize, limit: u64) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        let got = t.read(batch, limit).unwrap();
        if got.is_empty() {
            return out;
        }
        out.extend(got.iter().map(|l| l.seq));
    }
}

#[tokio::test]
async fn tail_follows_rotation_and_stops_at_the_limit() {
    let d = tempfile::tempdir().unwrap();
    let a = start(d.path(), Durability::Strict);
    for i in 0..40 {
        a.record(input(i)).await.unwrap();
    }
    assert!(
        list_segments(d.path()).unwrap().len() > 3,
        "rotation expected"
    );
    assert_eq!(a.durable_seq().get(), 40);
    let mut t = LocalTail::from_start(d.path(), ChainHasher::new(None));
    assert_eq!(drain(&mut t, 7, 25), (1..=25).collect::<Vec<_>>());
    assert_eq!(drain(&mut t, 7, u64::MAX), (26..=40).collect::<Vec<_>>());
    // Reopened at a position, it continues exactly there.
    let (seg, off) = t.position().unwrap();
    a.record(input(99)).await.unwrap();
    let prev = t.prev().unwrap().to_string();
    let mut t2 = LocalTail::at(d.path(), ChainHasher::new(None), &seg, off, 40, &prev)
        .unwrap()
        .unwrap();
    assert_eq!(drain(&mut t2, 10, u64::MAX), vec![41]);
    // A wrong hash at the position is a broken chain, not a silent skip.
    let mut t3 = LocalTail::at(
        d.path(),
        ChainHasher::new(None),
        &seg,
        off,
        40,
        &"0".repeat(64),
    )
    .unwrap()
    .unwrap();
    assert!(matches!(
        t3.read(10, u64::MAX),
        Err(TailError::Chain { .. })
    ));
    a.shutdown().await.unwrap();
}

#[tokio::test]
async fn buffered_records_are_not_durable_until_fsynced() {
    let d = tempfile::tempdir().unwrap();
    let a = start(
        d.path(),
        Durability::Buffered {
            interval: Duration::from_secs(3600),
        },
    );
    for i in 0..5 {
        a.record(input(i)).await.unwrap();
    }
    assert_eq!(a.durable_seq().get(), 0, "written, not fsynced");
    let mut t = LocalTail::from_start(d.path(), ChainHasher::new(None));
    assert!(drain(&mut t, 10, a.durable_seq().get()).is_empty());
    a.flush().await.unwrap();
    assert_eq!(a.durable_seq().get(), 5);
    assert_eq!(
        drain(&mut t, 10, a.durable_seq().get()),
        vec![1, 2, 3, 4, 5]
    );
    a.shutdown().await.unwrap();
}

#[tokio::test]
async fn torn_tail_is_skipped_and_edits_stop_the_tail() {
    let d = tempfile::tempdir().unwrap();
    let a = start(d.path(), Durability::Strict);
    for i in 0..3 {
        a.record(input(i)).await.unwrap();
    }
    a.shutdown().await.unwrap();
    drop(a);
    let last = list_segments(d.path()).unwrap().pop().unwrap();
    let mut data = fs::read(&last.path).unwrap();
    data.extend_from_slice(b"{\"v\":2,\"seq\":4,\"ti");
    fs::write(&last.path, &data).unwrap();
    // The next writer resumes in a new segment with a recovery record (seq 4).
    let a = start(d.path(), Durability::Strict);
    a.record(input(5)).await.unwrap();
    let mut t = LocalTail::from_start(d.path(), ChainHasher::new(None));
    assert_eq!(drain(&mut t, 2, u64::MAX), vec![1, 2, 3, 4, 5]);
    a.shutdown().await.unwrap();

    let first = &list_segments(d.path()).unwrap()[0];
    let text = fs::read_to_string(&first.path).unwrap();
    fs::write(&first.path, text.replacen("role1", "role9", 1)).unwrap();
    let mut t = LocalTail::from_start(d.path(), ChainHasher::new(None));
    let got = t.read(10, u64::MAX);
    assert!(matches!(got, Err(TailError::Chain { .. })), "{got:?}");
}

//! Writer tests: the thread, the chain on disk, durability and faults.
//! (Record, verify and search have their own unit tests in their files.)

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus::Registry;

use super::segment::list_segments;
use super::writer::Hooks;
use super::*;

fn input(app: &str) -> AuditRecordInput {
    let mut i = AuditRecordInput::new(RecordKind::Statement, SystemTime::now());
    i.session_id = Some("s1".into());
    i.login_role = Some("alice".into());
    i.application_name = Some(app.into());
    i.statement_kind = Some(StatementKind::Select);
    i.fingerprint = Some("SELECT email FROM public.customers WHERE id = $1".into());
    i.tables = vec!["public.customers".into()];
    i.columns = vec![TaggedColumn {
        column: "public.customers.email".into(),
        class: "contact".into(),
        action: ColumnAction::Masked,
        mask: Some("email".into()),
    }];
    i.rows = 1;
    i
}

fn config(dir: &Path) -> AuditConfig {
    let mut c = AuditConfig::new(dir);
    c.retry_interval = Duration::from_millis(20);
    c
}

fn start(c: AuditConfig, hooks: Hooks) -> Audit {
    Audit::start_with_hooks(c, &Registry::new(), hooks).unwrap()
}

fn all_records(dir: &Path) -> Vec<AuditRecord> {
    search(dir, &Filter::default())
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// Waits (without blocking the runtime) for the writer to become healthy.
async fn wait_healthy(a: &Audit, want: bool) {
    for _ in 0..200 {
        if a.is_healthy() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("writer health never became {want}");
}

#[tokio::test]
async fn chain_continues_across_rotation() {
    let d = tempfile::tempdir().unwrap();
    let mut c = config(d.path());
    c.segment_max_bytes = 1500;
    let a = start(c, Hooks::default());
    for n in 0..40u64 {
        assert_eq!(a.record(input(&format!("app{n}"))).await.unwrap(), n + 1);
    }
    a.shutdown().await.unwrap();
    let segs = list_segments(d.path()).unwrap();
    assert!(
        segs.len() >= 5,
        "expected rotation, got {} segments",
        segs.len()
    );
    let s = verify(d.path(), None).unwrap();
    assert_eq!((s.records, s.head_seq, s.segments), (40, 40, segs.len()));
    // Each segment's name carries the seq of its first record.
    for seg in &segs {
        let first = fs::read_to_string(&seg.path).unwrap();
        let rec: AuditRecord = serde_json::from_str(first.lines().next().unwrap()).unwrap();
        assert_eq!(rec.seq, seg.start_seq);
    }
    assert_eq!(a.metrics().chain_head_seq.get(), 40);
    assert_eq!(a.metrics().records_written.get(), 40);
}

#[tokio::test]
async fn restart_continues_the_chain_and_keyed_mode_verifies() {
    let d = tempfile::tempdir().unwrap();
    let key = zeroize::Zeroizing::new(b"0123456789abcdef0123456789abcdef".to_vec());
    let mut c = config(d.path());
    c.chain_key = Some(key.clone());
    let a = start(c.clone(), Hooks::default());
    for _ in 0..3 {
        a.record(input("first")).await.unwrap();
    }
    a.shutdown().await.unwrap();
    assert!(
        a.record(input("late")).await.is_err(),
        "stopped writer accepts nothing"
    );
    assert!(!a.is_healthy());

    let b = start(c.clone(), Hooks::default());
    assert_eq!(b.record(input("second")).await.unwrap(), 4);
    b.shutdown().await.unwrap();
    let s = verify(d.path(), Some(&key)).unwrap();
    assert_eq!(
        (s.records, s.head_seq, s.segments, s.recoveries),
        (4, 4, 1, 0)
    );
    assert!(
        verify(d.path(), None).is_err(),
        "keyed chain does not verify as plain"
    );

    // A different key cannot continue this chain: start refuses.
    let mut wrong = c;
    wrong.chain_key = Some(zeroize::Zeroizing::new(b"another key, 16+ bytes".to_vec()));
    assert!(matches!(
        Audit::start(wrong, &Registry::new()),
        Err(AuditError::Corrupt(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_record_resolves_only_after_fsync_and_groups_commits() {
    let d = tempfile::tempdir().unwrap();
    let (entered_tx, entered_rx) = std_mpsc::channel::<()>();
    let (release_tx, release_rx) = std_mpsc::channel::<()>();
    let syncs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(AtomicBool::new(false));
    let entered_tx = Mutex::new(entered_tx);
    let release_rx = Mutex::new(release_rx);
    let (s2, g2) = (syncs.clone(), gate.clone());
    let hooks = Hooks {
        write: None,
        sync: Some(Arc::new(move || {
            if g2.load(Ordering::SeqCst) {
                let _ = entered_tx.lock().unwrap().send(());
                let _ = release_rx.lock().unwrap().recv();
            }
            s2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })),
    };
    let a = start(config(d.path()), hooks);
    gate.store(true, Ordering::SeqCst);

    let first = tokio::spawn({
        let a = a.clone();
        async move { a.record(input("first")).await }
    });
    let entered_rx = Arc::new(Mutex::new(entered_rx));
    let er = entered_rx.clone();
    tokio::task::spawn_blocking(move || er.lock().unwrap().recv_timeout(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("writer reached fsync");
    // The record is written but fsync has not returned: no completion yet.
    let before = syncs.load(Ordering::SeqCst);
    let mut others = Vec::new();
    for n in 0..20 {
        let a = a.clone();
        others.push(tokio::spawn(async move {
            a.record(input(&format!("o{n}"))).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!first.is_finished(), "strict record resolved before fsync");
    assert!(others.iter().all(|t| !t.is_finished()));
    assert_eq!(syncs.load(Ordering::SeqCst), before);

    gate.store(false, Ordering::SeqCst);
    release_tx.send(()).unwrap();
    assert_eq!(first.await.unwrap().unwrap(), 1);
    let mut seqs = Vec::new();
    for t in others {
        seqs.push(t.await.unwrap().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=21).collect::<Vec<u64>>());
    // 20 queued records shared one (or very few) fsyncs: group commit.
    let used = syncs.load(Ordering::SeqCst) - before;
    assert!((1..=3).contains(&used), "{used} fsyncs for 21 records");
    a.shutdown().await.unwrap();
    assert_eq!(verify(d.path(), None).unwrap().records, 21);
}

/// A write hook that fails every write while `fault` is set, letting
/// `partial` bytes through first (a torn line).
fn faulty_writes(fault: Arc<AtomicBool>, partial: usize) -> Hooks {
    Hooks {
        write: Some(Arc::new(move |_buf: &[u8]| {
            if fault.load(Ordering::SeqCst) {
                Err((partial, io::Error::other("injected: disk full")))
            } else {
                Ok(())
            }
        })),
        sync: None,
    }
}

#[tokio::test]
async fn write_fault_makes_unavailable_then_recovers_with_torn_tail_acknowledged() {
    let d = tempfile::tempdir().unwrap();
    let fault = Arc::new(AtomicBool::new(false));
    let a = start(config(d.path()), faulty_writes(fault.clone(), 25));
    a.record(input("before")).await.unwrap();
    a.record(input("before")).await.unwrap();

    fault.store(true, Ordering::SeqCst);
    assert!(matches!(
        a.record(input("lost")).await,
        Err(AuditError::Unavailable)
    ));
    assert!(!a.is_healthy());
    assert!(matches!(
        a.record_nowait(input("lost")),
        Err(AuditError::Unavailable)
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Still faulty: recovery attempts (timer and submissions) keep failing.
    assert!(matches!(
        a.record(input("lost")).await,
        Err(AuditError::Unavailable)
    ));
    assert!(a.metrics().write_errors.get() >= 2);

    fault.store(false, Ordering::SeqCst);
    wait_healthy(&a, true).await;
    let seq = a.record(input("after")).await.unwrap();
    a.shutdown().await.unwrap();

    let recs = all_records(d.path());
    assert!(recs
        .iter()
        .all(|r| r.application_name.as_deref() != Some("lost")));
    let recovery: Vec<_> = recs
        .iter()
        .filter(|r| r.kind == RecordKind::Recovery)
        .collect();
    assert!(!recovery.is_empty());
    let first = recovery[0].recovery.as_ref().unwrap();
    assert_eq!(first.reason, RecoveryReason::WriteError);
    // Every failed attempt (the statement, then recovery records written
    // while the fault persisted) left 25 torn bytes; all are acknowledged.
    assert!(!first.torn.is_empty());
    assert!(first.torn.iter().all(|t| t.len == 25));
    assert_eq!(
        first.torn[0].segment,
        list_segments(d.path()).unwrap()[0].name
    );
    assert_eq!(seq, recs.last().unwrap().seq);
    let s = verify(d.path(), None).unwrap();
    assert_eq!(s.head_seq, seq);
    assert_eq!(s.records, recs.len() as u64);
}

#[tokio::test]
async fn dir_replaced_by_file_is_survived() {
    let d = tempfile::tempdir().unwrap();
    let dir: PathBuf = d.path().join("audit");
    let moved = d.path().join("audit.moved");
    let fault = Arc::new(AtomicBool::new(false));
    let a = start(config(&dir), faulty_writes(fault.clone(), 0));
    a.record(input("ok")).await.unwrap();

    // The open segment fd would keep working after a rename, so one
    // injected write failure forces the writer back to the directory,
    // which is now a plain file: recovery must fail until it is restored.
    fs::rename(&dir, &moved).unwrap();
    fs::write(&dir, b"not a directory").unwrap();
    fault.store(true, Ordering::SeqCst);
    assert!(matches!(
        a.record(input("x")).await,
        Err(AuditError::Unavailable)
    ));
    fault.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(matches!(
        a.record(input("x")).await,
        Err(AuditError::Unavailable)
    ));
    assert!(!a.is_healthy());

    fs::remove_file(&dir).unwrap();
    fs::rename(&moved, &dir).unwrap();
    wait_healthy(&a, true).await;
    assert!(a.record(input("ok")).await.is_ok());
    a.shutdown().await.unwrap();
    let s = verify(&dir, None).unwrap();
    assert_eq!(s.recoveries, 1);
    assert_eq!(s.records, 3);
}

#[tokio::test]
async fn fsync_failure_is_never_reported_durable() {
    let d = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let f2 = fail.clone();
    let hooks = Hooks {
        write: None,
        sync: Some(Arc::new(move || {
            if f2.load(Ordering::SeqCst) {
                Err(io::Error::other("injected: EIO"))
            } else {
                Ok(())
            }
        })),
    };
    let mut c = config(d.path());
    // Long enough that no recovery attempt runs while fsync still fails.
    c.retry_interval = Duration::from_millis(300);
    let a = start(c, hooks);
    a.record(input("ok")).await.unwrap();
    fail.store(true, Ordering::SeqCst);
    assert!(matches!(
        a.record(input("x")).await,
        Err(AuditError::Unavailable)
    ));
    fail.store(false, Ordering::SeqCst);
    wait_healthy(&a, true).await;
    a.record(input("ok")).await.unwrap();
    a.shutdown().await.unwrap();
    // The un-fsynced record reached the file complete: it stays in the chain
    // (over-recording is safe), followed by a new segment and recovery.
    let s = verify(d.path(), None).unwrap();
    assert_eq!((s.records, s.recoveries, s.segments), (4, 1, 2));
}

#[tokio::test]
async fn crash_torn_tail_is_acknowledged_on_restart() {
    let d = tempfile::tempdir().unwrap();
    let a = start(config(d.path()), Hooks::default());
    a.record(input("a")).await.unwrap();
    a.record(input("b")).await.unwrap();
    a.shutdown().await.unwrap();
    let seg = list_segments(d.path()).unwrap().pop().unwrap();
    let mut data = fs::read(&seg.path).unwrap();
    let good_len = data.len();
    data.extend_from_slice(b"{\"v\":1,\"seq\":3,\"time\":\"2024");
    fs::write(&seg.path, &data).unwrap();
    assert!(matches!(
        verify(d.path(), None).unwrap_err().problem,
        Problem::UnacknowledgedTornTail { .. }
    ));

    let b = start(config(d.path()), Hooks::default());
    assert_eq!(
        b.record(input("c")).await.unwrap(),
        4,
        "seq 3 is the recovery record"
    );
    b.shutdown().await.unwrap();
    // The torn segment was not rewritten.
    assert_eq!(fs::read(&seg.path).unwrap(), data);
    assert!(data.len() > good_len);
    let s = verify(d.path(), None).unwrap();
    assert_eq!((s.records, s.recoveries, s.segments), (4, 1, 2));
    let recs = all_records(d.path());
    assert_eq!(
        recs[2].recovery.as_ref().unwrap().reason,
        RecoveryReason::Startup
    );
}

#[tokio::test]
async fn corrupt_head_refuses_to_start() {
    let d = tempfile::tempdir().unwrap();
    let a = start(config(d.path()), Hooks::default());
    a.record(input("a")).await.unwrap();
    a.shutdown().await.unwrap();
    let seg = list_segments(d.path()).unwrap().pop().unwrap();
    let text = fs::read_to_string(&seg.path)
        .unwrap()
        .replace("alice", "mallo");
    fs::write(&seg.path, text).unwrap();
    assert!(matches!(
        Audit::start(config(d.path()), &Registry::new()),
        Err(AuditError::Corrupt(_))
    ));
}

#[tokio::test]
async fn buffered_mode_writes_now_and_fsyncs_later() {
    let d = tempfile::tempdir().unwrap();
    let syncs = Arc::new(AtomicUsize::new(0));
    let s2 = syncs.clone();
    let hooks = Hooks {
        write: None,
        sync: Some(Arc::new(move || {
            s2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })),
    };
    let mut c = config(d.path());
    c.durability = Durability::Buffered {
        interval: Duration::from_millis(400),
    };
    let a = start(c, hooks);
    for _ in 0..5 {
        a.record_nowait(input("n")).unwrap();
    }
    assert_eq!(a.record(input("w")).await.unwrap(), 6);
    assert_eq!(
        syncs.load(Ordering::SeqCst),
        0,
        "buffered record waited for fsync"
    );
    assert_eq!(all_records(d.path()).len(), 6, "written before fsync");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        syncs.load(Ordering::SeqCst) >= 1,
        "interval fsync never ran"
    );
    a.shutdown().await.unwrap();
    assert_eq!(verify(d.path(), None).unwrap().records, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_backpressure_reports_overloaded() {
    let d = tempfile::tempdir().unwrap();
    let block = Arc::new(AtomicBool::new(false));
    let b2 = block.clone();
    let hooks = Hooks {
        write: None,
        sync: Some(Arc::new(move || {
            while b2.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })),
    };
    let mut c = config(d.path());
    c.channel_capacity = 2;
    c.backpressure = Backpressure::FailFast;
    let a = start(c, hooks);
    block.store(true, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let a = a.clone();
        tasks.push(tokio::spawn(async move { a.record(input("q")).await }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    block.store(false, Ordering::SeqCst);
    let mut overloaded = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => {}
            Err(AuditError::Overloaded) => overloaded += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(overloaded > 0);
    assert_eq!(a.metrics().overloaded.get(), overloaded);
    a.shutdown().await.unwrap();
    let s = verify(d.path(), None).unwrap();
    assert_eq!(s.records, 10 - overloaded);
}

#[tokio::test]
async fn hostile_strings_stay_inside_one_line_on_disk() {
    let d = tempfile::tempdir().unwrap();
    let a = start(config(d.path()), Hooks::default());
    let evil =
        "psql\"}\n{\"v\":1,\"seq\":2,\"kind\":\"auth_ok\",\"hash\":\"00\"}\n\r\"hash\":\"ab\"";
    let mut i = input(evil);
    i.login_role = Some("x\"\n".into());
    a.record(i).await.unwrap();
    a.record(input("normal")).await.unwrap();
    a.shutdown().await.unwrap();
    let seg = list_segments(d.path()).unwrap().pop().unwrap();
    let text = fs::read_to_string(&seg.path).unwrap();
    assert_eq!(text.lines().count(), 2);
    let recs = all_records(d.path());
    assert_eq!(recs[0].application_name.as_deref(), Some(evil));
    assert_eq!(recs[1].seq, 2);
    assert_eq!(verify(d.path(), None).unwrap().records, 2);
}

#[tokio::test]
async fn metrics_registered_and_recovery_kind_rejected() {
    let d = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let a = Audit::start(config(d.path()), &reg).unwrap();
    a.record(input("a")).await.unwrap();
    a.note_refused();
    let names: Vec<String> = reg.gather().iter().map(|m| m.name().to_string()).collect();
    for n in [
        "pgveil_audit_records_written_total",
        "pgveil_audit_bytes_written_total",
        "pgveil_audit_fsync_seconds",
        "pgveil_audit_write_errors_total",
        "pgveil_audit_chain_head_seq",
        "pgveil_audit_refused_total",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    assert!(names.iter().all(|n| n.starts_with("pgveil_audit_")));
    assert_eq!(a.metrics().refused.get(), 1);
    assert!(a.metrics().bytes_written.get() > 100);
    let bad = AuditRecordInput::new(RecordKind::Recovery, SystemTime::now());
    assert!(matches!(
        a.record(bad).await,
        Err(AuditError::InvalidRecord(_))
    ));
    // A second writer on the same registry is refused (names collide).
    let d2 = tempfile::tempdir().unwrap();
    assert!(matches!(
        Audit::start(config(d2.path()), &reg),
        Err(AuditError::Metrics(_))
    ));
    a.shutdown().await.unwrap();
}

#[test]
fn config_is_validated_and_debug_hides_the_key() {
    let mut c = AuditConfig::new("/nonexistent");
    c.chain_key = Some(zeroize::Zeroizing::new(b"short".to_vec()));
    c.channel_capacity = 0;
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("short") && !dbg.contains("115"), "{dbg}");
    match Audit::start(c, &Registry::new()) {
        Err(AuditError::Config(m)) => {
            assert!(
                m.contains("channel_capacity") && m.contains("chain_key"),
                "{m}"
            );
        }
        other => panic!("expected config error, got {other:?}"),
    }
}

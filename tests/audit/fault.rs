//! The audit directory runs out of space while the proxy serves.

use super::support::*;

/// A tmpfs mounted for the test; unmounted (lazily) on drop.
struct TmpfsMount(PathBuf);

impl TmpfsMount {
    /// Mounts a `size`-byte tmpfs at `at`, or says why it cannot.
    fn mount(at: &Path, size: &str) -> Result<TmpfsMount, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(TmpfsMount(at.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros to `path` until the filesystem is full.
fn fill_up(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create filler");
    let block = [0u8; 4096];
    loop {
        if f.write_all(&block).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Served,
    Error(String),
    /// The connection was closed under the statement (after a FATAL, or already closed).
    Closed,
}

/// Runs statement `i` (a tagged read or a tagged write, each with its own alias `q{i}` so
/// its record can be told apart) on `c`.
async fn tagged_stmt(c: &tokio_postgres::Client, i: usize) -> Outcome {
    let res = if i.is_multiple_of(2) {
        c.query(
            &format!("SELECT email AS q{i} FROM customers WHERE email = $1"),
            &[&ZELDA_EMAIL],
        )
        .await
        .map(|r| r.len())
    } else {
        c.query(
            &format!(
                "INSERT INTO customers (full_name, email) VALUES ($1, $2) RETURNING id AS q{i}"
            ),
            &[
                &format!("Fault Row {i}"),
                &format!("fault{i}@audit-test.example"),
            ],
        )
        .await
        .map(|r| r.len())
    };
    match res {
        Ok(1) => Outcome::Served,
        Ok(n) => Outcome::Error(format!("unexpected row count {n}")),
        Err(e) => match sqlstate(&e) {
            Some(code) => Outcome::Error(code),
            None if e.is_closed() => Outcome::Closed,
            None => Outcome::Error(e.to_string()),
        },
    }
}

/// A proxy whose audit directory sits on a 256 KiB tmpfs (to be filled), and a
/// seeded customer. None, after saying so, where no tmpfs can be mounted.
/// Callers bind every field: the mount and temp dir must live as long as the test.
struct FaultEnv {
    env: Env,
    seed: tokio_postgres::Client,
    _mount: TmpfsMount,
    mnt: PathBuf,
    _base: tempfile::TempDir,
}

async fn fault_env(tag: &str, app: &str, test: &str) -> Option<FaultEnv> {
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mount = match TmpfsMount::mount(&mnt, "256k") {
        Ok(m) => m,
        Err(why) => {
            eprintln!(
                "SKIPPED {test}: cannot mount a tmpfs to fill ({why}); needs root or CAP_SYS_ADMIN"
            );
            return None;
        }
    };
    let env = setup(tag, Some(mnt.join("audit")), None, &[]);
    let seed = connect_app(&env, ADMIN, app).await;
    seed.execute(
        "INSERT INTO customers (full_name, email) VALUES ($1, $2)",
        &[&"Zelda", &ZELDA_EMAIL],
    )
    .await
    .unwrap();
    Some(FaultEnv {
        env,
        seed,
        _mount: mount,
        mnt,
        _base: base,
    })
}

/// Issue 5 proof, failure bullet: the audit directory fills up mid-run.
#[tokio::test]
async fn audit_disk_full_refuses_tagged_statements_and_recovers_by_itself() {
    let Some(FaultEnv {
        env,
        mnt,
        seed,
        _mount,
        _base,
    }) = fault_env(
        "audit_fault",
        "f-seed",
        "audit_disk_full_refuses_tagged_statements_and_recovers_by_itself",
    )
    .await
    else {
        return;
    };
    let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
    let mut c = connect_app(&env, ADMIN, "f-client").await;
    let mut i = 0;
    // Healthy.
    for _ in 0..4 {
        let o = tagged_stmt(&c, i).await;
        assert_eq!(
            o,
            Outcome::Served,
            "statement {i} while healthy\n{}",
            env.proxy.log()
        );
        outcomes.push((i, o));
        i += 1;
    }

    // Fault: the filesystem under the audit directory is full.
    let filler = mnt.join("filler");
    fill_up(&filler);
    let mut refused_in_a_row = 0;
    let fault_start = i;
    while refused_in_a_row < 6 {
        assert!(
            i - fault_start < 60,
            "60 statements after the disk filled up, still not refusing: {outcomes:?}\n{}",
            env.proxy.log()
        );
        if c.is_closed() {
            c = connect_app(&env, ADMIN, "f-client").await;
        }
        let o = tagged_stmt(&c, i).await;
        match &o {
            Outcome::Error(code) if code == "58030" => refused_in_a_row += 1,
            Outcome::Closed => {}
            Outcome::Served => refused_in_a_row = 0,
            Outcome::Error(other) => panic!(
                "statement {i}: unexpected error {other}\n{}",
                env.proxy.log()
            ),
        }
        outcomes.push((i, o));
        i += 1;
    }
    // Statements that touch nothing tagged continue (the default policy), in a new session
    // (whether a refused session survives is `refusal_while_audit_is_down_keeps_the_session`).
    c = connect_app(&env, ADMIN, "f-client").await;
    let untagged = c.simple_query("SELECT 1").await;
    assert!(
        untagged.is_ok(),
        "untagged statement refused: {untagged:?}\n{outcomes:?}"
    );
    assert_eq!(metric(env.proxy.metrics_port, "pgveil_audit_healthy"), 0.0);
    let mut m = Mismatches::default();
    let refused_metric = metric(env.proxy.metrics_port, "pgveil_audit_refused_total");
    if refused_metric < 6.0 {
        m.0.push(format!(
            "pgveil_audit_refused_total is {refused_metric} after 6 or more statements refused with 58030"
        ));
    }
    assert!(metric(env.proxy.metrics_port, "pgveil_audit_write_errors_total") >= 1.0);
    assert!(
        env.proxy.log().contains("audit write failed"),
        "{}",
        env.proxy.log()
    );

    // The fault goes away; nobody touches the proxy.
    std::fs::remove_file(&filler).unwrap();
    let recovered = std::time::Instant::now();
    let mut served_after = 0;
    while served_after < 4 {
        assert!(
            recovered.elapsed() < Duration::from_secs(15),
            "service did not resume after the disk was freed: {outcomes:?}\n{}",
            env.proxy.log()
        );
        if c.is_closed() {
            c = connect_app(&env, ADMIN, "f-client").await;
        }
        let o = tagged_stmt(&c, i).await;
        if o == Outcome::Served {
            served_after += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        outcomes.push((i, o));
        i += 1;
    }
    assert_eq!(metric(env.proxy.metrics_port, "pgveil_audit_healthy"), 1.0);
    drop(c);
    drop(seed);

    // None served without a record: every statement the client got results for has its
    // record, with outcome ok.
    // Outcomes follow their statements' records lazily: wait until none is pending.
    wait_until(Duration::from_secs(5), || {
        merged(read_records(&env.audit))
            .iter()
            .all(|r| r["outcome"] != "pending")
    });
    let raw = read_records(&env.audit);
    let records = merged(raw.clone());
    let recorded_ok = |i: usize| {
        let alias = format!(" q{i} ");
        records.iter().any(|r| {
            r["kind"] == "statement"
                && r["outcome"] == "ok"
                && format!("{} ", s(r, "fingerprint")).contains(&alias)
        })
    };
    let unrecorded: Vec<usize> = outcomes
        .iter()
        .filter(|(n, o)| *o == Outcome::Served && !recorded_ok(*n))
        .map(|(n, _)| *n)
        .collect();
    assert!(
        unrecorded.is_empty(),
        "served without a record: {unrecorded:?}\n{outcomes:?}"
    );
    // Writes that reached the database while the audit failed: each should be on record
    // too (reported, since the session can only withhold results, not undo a commit).
    let in_db = cluster().sql(
        &env.db,
        "SELECT string_agg(substr(full_name, 11), ',') FROM customers WHERE full_name LIKE 'Fault Row %'",
    );
    let written: Vec<usize> = in_db
        .trim()
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let unrecorded_writes: Vec<usize> = written
        .iter()
        .copied()
        .filter(|n| {
            !recorded_ok(*n)
                && !records
                    .iter()
                    .any(|r| format!("{} ", s(r, "fingerprint")).contains(&format!(" q{n} ")))
        })
        .collect();
    if !unrecorded_writes.is_empty() {
        eprintln!(
            "NOTE: inserts committed in the database while the audit failed, with no record at all: {unrecorded_writes:?}"
        );
    }
    // The refusals really happened, and the recovery left a valid chain with a recovery
    // record acknowledging whatever partial line the full disk left.
    let refused = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Error("58030".into()))
        .count();
    assert!(refused >= 6, "{outcomes:?}");
    let recoveries: Vec<&Value> = records.iter().filter(|r| r["kind"] == "recovery").collect();
    assert!(!recoveries.is_empty(), "no recovery record");
    assert!(
        recoveries
            .iter()
            .all(|r| r["recovery"]["reason"] == "write_error"),
        "{recoveries:?}"
    );
    let (code, stdout, stderr) = verify_cli(&env.audit);
    assert_eq!(code, 0, "chain after recovery: {stdout}{stderr}");
    assert_eq!(
        raw.last().unwrap()["seq"].as_u64(),
        Some(raw.len() as u64),
        "seqs run 1..=n with no gap across the fault"
    );
    m.finish();
}

/// While the audit is down, a statement on tagged tables is refused with an ERROR, like
/// any other refusal: the session stays usable for statements that touch nothing tagged
/// (the issue: "Statements that touch nothing tagged may continue").
#[tokio::test]
async fn refusal_while_audit_is_down_keeps_the_session() {
    let Some(FaultEnv {
        env,
        mnt,
        seed,
        _mount,
        _base,
    }) = fault_env(
        "audit_fault_session",
        "fs-seed",
        "refusal_while_audit_is_down_keeps_the_session",
    )
    .await
    else {
        return;
    };
    drop(seed);
    fill_up(&mnt.join("filler"));
    // Trip the writer: statements go through until the segment's last page is full.
    let mut i = 0;
    while metric(env.proxy.metrics_port, "pgveil_audit_healthy") != 0.0 {
        assert!(
            i < 60,
            "the audit never noticed the full disk\n{}",
            env.proxy.log()
        );
        let c = connect_app(&env, ADMIN, "fs-trip").await;
        let _ = tagged_stmt(&c, i).await;
        i += 1;
    }
    let c = connect_app(&env, ADMIN, "fs-client").await;
    assert_eq!(tagged_stmt(&c, 1000).await, Outcome::Error("58030".into()));
    let after = c.simple_query("SELECT 1").await;
    assert!(
        after.is_ok(),
        "the session that got the 58030 refusal was closed; untagged statement: {after:?}\n{}",
        env.proxy.log()
    );
    assert_eq!(tagged_stmt(&c, 1001).await, Outcome::Error("58030".into()));
}

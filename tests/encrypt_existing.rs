//! `pgveil encrypt` against a real PostgreSQL, with the real binary
//! (target/debug/pgveil): a conversion killed with SIGKILL and resumed,
//! applications reading and writing through the real proxy during it,
//! rekey after rotation, rename, and the refusals.

#[path = "encrypt/apps.rs"]
mod apps;
mod common;
#[path = "encrypt/support.rs"]
mod support;
#[path = "encrypt/window.rs"]
mod window;

use std::time::Duration;

use apps::*;
use common::*;
use support::*;

#[test]
fn killed_conversion_resumes_and_every_value_round_trips() {
    let t = Fixture::new("kill", 100_000);
    let mut child = t.spawn_encrypt(&["--batch-size", "1000"]);
    // Kill at a random point of the walk, once some batches have committed.
    let target = 5_000 + (std::process::id() as i64 * 7919) % 80_000;
    let reached = wait_until(Duration::from_secs(60), || {
        t.rows_done().is_some_and(|n| n >= target) || child.try_wait().ok().flatten().is_some()
    });
    assert!(reached, "no progress");
    // SAFETY: SIGKILL to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
    let done = t.rows_done().unwrap_or(0);
    assert!(done > 0 && done < 100_000, "killed mid-walk: {done}");
    // Mid-walk: the plaintext column is still there, with its shadow.
    assert_eq!(t.column_type("email"), "text");
    assert_eq!(t.column_type("pgveil_enc_email"), "bytea");
    let check = t.check();
    assert!(
        check.contains("conversion in flight: public.people"),
        "{check}"
    );
    let out = t.encrypt(&["--batch-size", "1000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("swapped in"), "{summary}");
    // It continued after the last committed batch: no row walked twice,
    // none skipped (nothing wrote meanwhile, so the catch-up had nothing).
    assert!(
        summary.contains(&format!(" {} rows walked", 100_000 - done)),
        "{summary} (killed at {done})"
    );
    t.assert_all_encrypted_and_original(&t.keyring, 1);
    let check = t.check();
    assert!(
        check.contains("key versions of public.people.email: key 1: 98000"),
        "{check}"
    );
    assert!(!check.contains("in flight"), "{check}");
    // Re-running is a no-op: nothing is encrypted twice.
    let again = t.encrypt(&[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains(" 0 written"), "{}", stdout(&again));
    t.assert_all_encrypted_and_original(&t.keyring, 1);
}

#[test]
fn dry_run_reports_and_changes_nothing() {
    let t = Fixture::new("dry", 1_000);
    let out = t.encrypt(&["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("1000 rows, walked by (id)"), "{s}");
    assert!(s.contains("email: text -> bytea online"), "{s}");
    assert!(s.contains("980 values would be rewritten"), "{s}");
    assert!(s.contains("nothing was changed"), "{s}");
    assert!(!s.contains("user1@example.com"), "no values in output");
    assert_eq!(t.column_type("email"), "text");
    assert_eq!(t.sql("SELECT to_regnamespace('pgveil') IS NULL"), "t");
}

#[test]
fn refuses_without_keyring_or_walk_key() {
    let t = Fixture::new("refuse", 100);
    let out = t.encrypt_with_keyring(None, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no keyring"), "{}", stderr(&out));
    assert_eq!(t.column_type("email"), "text");
    assert_eq!(t.sql("SELECT to_regnamespace('pgveil') IS NULL"), "t");
    t.sql("ALTER TABLE people DROP CONSTRAINT people_pkey");
    let out = t.encrypt(&[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no primary key"), "{}", stderr(&out));
    assert_eq!(t.column_type("email"), "text");
    // A unique index on NOT NULL columns is a walk key too.
    t.sql("ALTER TABLE people ALTER COLUMN id SET NOT NULL; CREATE UNIQUE INDEX ON people (id)");
    let out = t.encrypt(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    t.assert_all_encrypted_and_original(&t.keyring, 1);
}

#[test]
fn offline_conversion_encrypts_in_place() {
    let t = Fixture::new("offline", 3_000);
    let out = t.encrypt(&["--offline", "--batch-size", "500"]);
    assert!(out.status.success(), "{}", stderr(&out));
    t.assert_all_encrypted_and_original(&t.keyring, 1);
}

#[test]
fn rekey_leaves_nothing_under_the_retired_key_and_lookups_match() {
    let t = Fixture::new("rekey", 4_000);
    assert!(t.encrypt(&[]).status.success());
    let out = pgveil_cmd(&["keygen", "--rotate", t.keyring.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // New writes land under key 2, old rows stay under key 1.
    let dry = t.encrypt(&["--rekey", "--dry-run"]);
    assert!(
        stdout(&dry).contains("3920 values would be rewritten"),
        "{}",
        stdout(&dry)
    );
    let out = t.encrypt(&["--rekey", "--batch-size", "700"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let check = t.check();
    assert!(
        check.contains("key versions of public.people.email: key 2: 3920"),
        "{check}"
    );
    assert!(!check.contains("key 1:"), "{check}");
    // Retire key 1: everything still decrypts, and lookups through the proxy match.
    let retired = t.retire_key(1);
    t.assert_all_encrypted_and_original(&retired, 2);
    let proxy = t.proxy(&retired, false);
    rt().block_on(async {
        let c = connect(proxy.port, &t.db, APP_USER, APP_PASSWORD)
            .await
            .unwrap();
        let rows = c
            .query(
                "SELECT id FROM people WHERE email = $1",
                &[&"user77@example.com"],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, i64>(0), 77);
        let ssn: String = c
            .query_one("SELECT ssn FROM people WHERE id = 77", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(Some(ssn), expected(77).1);
    });
}

#[test]
fn renamed_column_reads_back_after_renamed_from() {
    let t = Fixture::new("rename", 2_000);
    assert!(t.encrypt(&[]).status.success());
    t.sql("ALTER TABLE people RENAME COLUMN email TO mail");
    t.write_rules(Stage::Target, "mail");
    let proxy = t.proxy(&t.keyring, false);
    rt().block_on(async {
        let c = connect(proxy.port, &t.db, APP_USER, APP_PASSWORD)
            .await
            .unwrap();
        let e = c.query("SELECT mail FROM people WHERE id = 5", &[]).await;
        assert!(e.is_err(), "old values are bound to the old name");
    });
    let out = t.encrypt(&["--columns", "mail", "--renamed-from", "email"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1960 written"), "{}", stdout(&out));
    rt().block_on(async {
        let c = connect(proxy.port, &t.db, APP_USER, APP_PASSWORD)
            .await
            .unwrap();
        let m: String = c
            .query_one("SELECT mail FROM people WHERE id = 5", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(Some(m), expected(5).0);
        let rows = c
            .query(
                "SELECT id FROM people WHERE mail = $1",
                &[&"user6@example.com"],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
    });
}

/// Final rules from the start; a reader and a writer through pgveil for the
/// whole conversion, walk and swap included: every answer is the right
/// value, and only inside the swap window (until the sessions read their
/// catalog again, at most `OVERLAY_MAX_AGE` later) a clear refusal.
#[test]
fn applications_through_the_proxy_see_only_correct_values() {
    let t = Fixture::new("online", 20_000);
    // The shadows exist (empty) before the proxy runs under the final rules.
    let out = t.encrypt(&["--install-only"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("installed, empty"),
        "{}",
        stdout(&out)
    );
    let proxy = t.proxy(&t.keyring, false);
    let apps = Apps::start(&proxy, &t.db);
    let out = t.encrypt(&["--batch-size", "500", "--max-rate", "20000", "--no-swap"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("kept in sync"), "{}", stdout(&out));
    let walked = apps.reads();
    assert!(walked > 50, "the reader ran during the walk: {walked}");
    apps.open_window();
    let out = t.encrypt(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("swapped in"), "{}", stdout(&out));
    // Every session reads its catalog at most OVERLAY_MAX_AGE after its last.
    std::thread::sleep(pgveil::snapshot::overlay::OVERLAY_MAX_AGE + Duration::from_millis(1500));
    apps.close_window();
    std::thread::sleep(Duration::from_millis(1500));
    let totals = apps.stop();
    assert!(
        totals.reads_after > 5 && totals.writes_after > 5,
        "the applications work under the final rules after the swap: {totals:?}"
    );
    eprintln!(
        "reads {}, refused in the window {}, after {}; writes after {}",
        totals.reads, totals.refused, totals.reads_after, totals.writes_after
    );
    t.assert_no_plaintext_at_rest(&totals.acked);
    rt().block_on(async {
        let c = connect(proxy.port, &t.db, APP_USER, APP_PASSWORD)
            .await
            .unwrap();
        for (id, email) in &totals.acked {
            let got: Option<String> = c
                .query_one("SELECT email FROM people WHERE id = $1", &[id])
                .await
                .unwrap()
                .get(0);
            assert_eq!(got.as_ref(), Some(email), "id {id}");
        }
    });
}

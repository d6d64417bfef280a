//! Every statement shape gives exactly the expected records, and no value is recorded.

use super::support::*;

/// Issue 5 proof, first bullet: each kind of statement yields exactly the expected records.
/// Also the second bullet: afterwards no file in the audit directory holds any value used.
#[tokio::test]
async fn every_statement_shape_yields_exact_records_and_no_values() {
    let env = setup("audit_records", None, None, &[]);
    let db = env.db.clone();
    let mut mismatches = Mismatches::default();

    // --- simple protocol, one statement per Query -----------------------------------------
    let admin = connect_app(&env, ADMIN, "a-simple").await;
    admin
        .batch_execute(&format!(
            "INSERT INTO customers (full_name, email, ssn, phone) VALUES ('Zelda Quartermain', '{ZELDA_EMAIL}', '{ZELDA_SSN}', '{ZELDA_PHONE}')"
        ))
        .await
        .expect("simple insert");
    let msgs = admin
        .simple_query(&format!(
            "SELECT email, ssn FROM customers WHERE ssn = '{ZELDA_SSN}'"
        ))
        .await
        .expect("simple select");
    assert_eq!(rows_of(&msgs), 1);
    admin
        .simple_query(&format!("SELECT {UNTAGGED_NUMBER}"))
        .await
        .expect("untagged select");
    let got = wait_statements(&env, "a-simple", 3);
    assert_who(&got, ADMIN, &db);
    mismatches.check(
        summaries(&got),
        vec![
            "insert | insert into customers (full_name, email, ssn, phone) values (?, ?, ?, ?) | [public.customers] | [email:encrypted_write,phone:encrypted_write,ssn:encrypted_write] | rows=1 | ok",
            "select | select email, ssn from customers where ssn = ? | [public.customers] | [email:plaintext,ssn:matched,ssn:plaintext] | rows=1 | ok",
            "select | select ? | [] | [] | rows=1 | ok",
        ]
    );

    // --- multi-statement Query: one record per statement ------------------------------------
    let multi = connect_app(&env, ADMIN, "a-multi").await;
    multi
        .simple_query(&format!(
            "SELECT full_name FROM customers WHERE email = '{ZELDA_EMAIL}'; \
             UPDATE customers SET phone = '{ZELDA_PHONE2}' WHERE ssn = '{ZELDA_SSN}'; \
             DELETE FROM customers WHERE email = '{MISSING_EMAIL}'"
        ))
        .await
        .expect("multi-statement query");
    let got = wait_statements(&env, "a-multi", 3);
    assert_who(&got, ADMIN, &db);
    mismatches.check(
        summaries(&got),
        vec![
            "select | select full_name from customers where email = ? | [public.customers] | [email:matched,full_name:plaintext] | rows=1 | ok",
            "update | update customers set phone = ? where ssn = ? | [public.customers] | [phone:encrypted_write,ssn:matched] | rows=1 | ok",
            "delete | delete from customers where email = ? | [public.customers] | [email:matched] | rows=0 | ok",
        ]
    );
    // All three share the session and carry increasing seqs.
    assert!(got
        .windows(2)
        .all(|w| w[0]["session_id"] == w[1]["session_id"]
            && w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));

    // --- extended protocol, pipelined on one connection: one record per Execute -------------
    let ext = connect_app(&env, ADMIN, "a-extended").await;
    let ins = ext
        .prepare("INSERT INTO customers (full_name, email, ssn) VALUES ($1, $2, $3)")
        .await
        .expect("prepare insert");
    let (a, b) = tokio::join!(
        ext.execute(&ins, &[&YORICK.0, &YORICK.1, &YORICK.2]),
        ext.execute(&ins, &[&XAVIA.0, &XAVIA.1, &XAVIA.2]),
    );
    assert_eq!((a.expect("insert Y"), b.expect("insert X")), (1, 1));
    let sel = ext
        .prepare("SELECT email, phone FROM customers WHERE email = $1")
        .await
        .expect("prepare select");
    let (r1, r2, r3) = tokio::join!(
        ext.query(&sel, &[&YORICK.1]),
        ext.query(&sel, &[&MISSING_EMAIL]),
        ext.query(&sel, &[&ZELDA_EMAIL]),
    );
    assert_eq!(r1.expect("q1")[0].get::<_, String>(0), YORICK.1);
    assert_eq!(r2.expect("q2").len(), 0);
    let z = r3.expect("q3");
    assert_eq!(z[0].get::<_, String>(1), ZELDA_PHONE2);
    let got = wait_statements(&env, "a-extended", 5);
    assert_who(&got, ADMIN, &db);
    let ins_rec = "insert | insert into customers (full_name, email, ssn) values (?, ?, ?) | [public.customers] | [email:encrypted_write,ssn:encrypted_write] | rows=1 | ok";
    let sel_rec = |n: u32| {
        format!("select | select email, phone from customers where email = ? | [public.customers] | [email:matched,email:plaintext,phone:plaintext] | rows={n} | ok")
    };
    mismatches.check(
        summaries(&got),
        vec![
            ins_rec.to_string(),
            ins_rec.to_string(),
            sel_rec(1),
            sel_rec(0),
            sel_rec(1),
        ],
    );

    // --- masked and nulled reads -------------------------------------------------------------
    let support = connect_app(&env, SUPPORT, "s-masked").await;
    let row = support
        .query_one(
            "SELECT email, ssn, phone, birth_date FROM customers WHERE email = $1",
            &[&ZELDA_EMAIL],
        )
        .await
        .expect("support lookup");
    // The email mask keeps the first character and the domain.
    assert_eq!(row.get::<_, String>(0), "z******@audit-test.example");
    let got = wait_statements(&env, "s-masked", 1);
    assert_who(&got, SUPPORT, &db);
    mismatches.check(
        summaries(&got),
        vec!["select | select email, ssn, phone, birth_date from customers where email = ? | [public.customers] | [birth_date:masked(year),email:masked(email),email:matched,phone:masked(partial(1,4)),ssn:masked(partial(0,4))] | rows=1 | ok"]
    );

    // --- analyst: hash pseudonym and null ---------------------------------------------------------
    let analyst = connect_app(&env, ANALYST, "n-analyst").await;
    let rows = analyst
        .query("SELECT email, phone, birth_date FROM customers", &[])
        .await
        .expect("analyst read");
    assert_eq!(rows.len(), 3);
    let got = wait_statements(&env, "n-analyst", 1);
    assert_who(&got, ANALYST, &db);
    mismatches.check(
        summaries(&got),
        vec!["select | select email, phone, birth_date from customers | [public.customers] | [birth_date:null,email:masked(hash),phone:null] | rows=3 | ok"]
    );

    // --- refused by pgveil (unsupported on ciphertext), simple and extended -----------------------
    let refused = connect_app(&env, ADMIN, "a-refused").await;
    let e = refused
        .simple_query("SELECT email FROM customers ORDER BY email")
        .await
        .expect_err("ORDER BY on ciphertext");
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{e}");
    let e = refused
        .query("SELECT id FROM customers WHERE ssn > $1", &[&ZELDA_SSN])
        .await
        .expect_err("range on ciphertext");
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{e}");
    // The session goes on.
    assert_eq!(rows_of(&refused.simple_query("SELECT 1").await.unwrap()), 1);
    let got = wait_statements(&env, "a-refused", 3);
    assert_who(&got, ADMIN, &db);
    let got = summaries(&got);
    assert_eq!(
        got.iter()
            .map(|g| g.rsplit(" | ").next().unwrap())
            .collect::<Vec<_>>(),
        vec!["0A000", "0A000", "ok"],
        "{got:#?}"
    );
    assert!(
        got[0].starts_with("select | select email from customers order by email | "),
        "{got:#?}"
    );
    assert!(got[0].contains("| rows=0 |"), "{got:#?}");
    assert!(
        got[1].starts_with("select | select id from customers where ssn > ? | "),
        "{got:#?}"
    );
    assert!(got[1].contains("| rows=0 |"), "{got:#?}");

    // --- refused by access rules (deny) --------------------------------------------------------
    let outsider = connect_app(&env, OUTSIDER, "o-denied").await;
    let e = outsider
        .query("SELECT ssn FROM customers WHERE id = 1", &[])
        .await
        .expect_err("deny");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    let got = wait_statements(&env, "o-denied", 1);
    assert_who(&got, OUTSIDER, &db);
    let got = summaries(&got);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("select | select ssn from customers where id = ? | "),
        "{got:#?}"
    );
    assert!(got[0].ends_with("| rows=0 | 42501"), "{got:#?}");

    // --- failed in the server ----------------------------------------------------------------------
    let failed = connect_app(&env, ADMIN, "a-failed").await;
    let e = failed
        .simple_query(&format!(
            "SELECT id / 0 FROM customers WHERE email = '{ZELDA_EMAIL}'"
        ))
        .await
        .expect_err("division by zero");
    assert_eq!(sqlstate(&e).as_deref(), Some("22012"), "{e}");
    let e = failed
        .query(
            "SELECT id / $1 FROM customers WHERE ssn = $2",
            &[&0i64, &ZELDA_SSN],
        )
        .await
        .expect_err("division by zero, extended");
    assert_eq!(sqlstate(&e).as_deref(), Some("22012"), "{e}");
    let got = wait_statements(&env, "a-failed", 2);
    assert_who(&got, ADMIN, &db);
    mismatches.check(
        summaries(&got),
        vec![
            "select | select id / ? from customers where email = ? | [public.customers] | [email:matched] | rows=0 | 22012",
            "select | select id / ? from customers where ssn = ? | [public.customers] | [ssn:matched] | rows=0 | 22012",
        ]
    );

    // --- authentication ------------------------------------------------------------------------------
    let mut bad = pg_config(env.proxy.port, &env.db, SUPPORT, "Wrong-Pa55word-9137");
    bad.application_name("auth-bad");
    let e = connect_with(bad).await.expect_err("wrong password");
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");
    let mut ok = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        ok = records_of(&env.audit, "auth-bad", "auth_failed");
        !ok.is_empty()
    }));
    assert_eq!(ok.len(), 1, "{ok:#?}");
    assert_eq!(s(&ok[0], "login_role"), SUPPORT);
    assert_eq!(s(&ok[0], "outcome"), "28P01");
    assert_eq!(s(&ok[0], "database"), db);
    assert!(records_of(&env.audit, "auth-bad", "auth_ok").is_empty());
    for (app, role) in [
        ("a-simple", ADMIN),
        ("s-masked", SUPPORT),
        ("n-analyst", ANALYST),
        ("o-denied", OUTSIDER),
    ] {
        let a = records_of(&env.audit, app, "auth_ok");
        assert_eq!(a.len(), 1, "{app}: {a:#?}");
        assert_eq!(s(&a[0], "login_role"), role);
        assert_eq!(s(&a[0], "outcome"), "ok");
        // The auth record comes before the session's statements.
        let first_stmt = records_of(&env.audit, app, "statement")[0]["seq"]
            .as_u64()
            .unwrap();
        assert!(a[0]["seq"].as_u64().unwrap() < first_stmt);
    }

    // --- rules reload --------------------------------------------------------------------------------
    let before = read_records(&env.audit)
        .iter()
        .filter(|r| r["kind"] == "rules_reload")
        .count();
    env.proxy.signal(libc::SIGHUP);
    let mut reloads = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            reloads = read_records(&env.audit)
                .into_iter()
                .filter(|r| r["kind"] == "rules_reload")
                .collect();
            reloads.len() > before
        }),
        "no rules_reload record after SIGHUP\n{}",
        env.proxy.log()
    );
    let r = reloads.last().unwrap();
    assert_eq!(s(r, "outcome"), "ok", "{r}");
    assert!(
        r["rules_version"].as_str().is_some_and(|v| !v.is_empty()),
        "{r}"
    );

    // --- nothing recorded twice, even late (untagged records are not waited for) ---------------
    for (app, n) in [
        ("a-simple", 3),
        ("a-multi", 3),
        ("a-extended", 5),
        ("s-masked", 1),
        ("n-analyst", 1),
        ("a-refused", 3),
        ("o-denied", 1),
        ("a-failed", 2),
    ] {
        let all = records_of(&env.audit, app, "statement");
        assert_eq!(all.len(), n, "{app}: {:#?}", summaries(&all));
    }

    // --- the chain of this run verifies --------------------------------------------------------------
    drop((
        admin, multi, ext, support, analyst, refused, outsider, failed,
    ));
    let out = pgveil(&["audit", "verify", env.audit.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");

    // --- no value used anywhere in the audit directory -----------------------------------------------
    let mut secrets: Vec<&str> = vec![
        "Zelda",
        "Quartermain",
        ZELDA_EMAIL,
        "zelda.q",
        ZELDA_SSN,
        ZELDA_PHONE,
        ZELDA_PHONE2,
        "202-555",
        "audit-test",
        MISSING_EMAIL,
        UNTAGGED_NUMBER,
        "Wrong-Pa55word-9137",
        PW,
    ];
    for (n, e, s) in [YORICK, XAVIA] {
        secrets.extend([n, e, s]);
        secrets.extend(n.split(' '));
    }
    assert_no_values(&env.audit, &secrets);
    mismatches.finish();
}

/// COPY FROM STDIN and COPY TO STDOUT through psql `\\copy`, under strict durability (the
/// default): one record each, with the rows copied and the columns' actions.
#[tokio::test]
async fn copy_in_and_out_yield_one_record_each_strict() {
    copy_in_and_out_yield_one_record_each("strict").await;
}

/// The same under `buffered`: results are not held for the fsync, which tells a COPY
/// problem of the strict hold apart from one of COPY recording itself.
#[tokio::test]
async fn copy_in_and_out_yield_one_record_each_buffered() {
    copy_in_and_out_yield_one_record_each("buffered").await;
}

async fn copy_in_and_out_yield_one_record_each(durability: &str) {
    let env = setup(
        &format!("audit_copy_{durability}"),
        None,
        None,
        &["--audit-durability", durability],
    );
    let db = env.db.clone();
    let mut m = Mismatches::default();
    let admin = connect_app(&env, ADMIN, "c-seed").await;
    admin
        .execute(
            "INSERT INTO customers (full_name, email, ssn) VALUES ($1, $2, $3)",
            &[&"Zelda Quartermain", &ZELDA_EMAIL, &ZELDA_SSN],
        )
        .await
        .unwrap();
    // --- COPY in and out through psql \copy ----------------------------------------------------
    let csv_in = env.dir.path().join("in.csv");
    let csv_out = env.dir.path().join("out.csv");
    std::fs::write(
        &csv_in,
        COPY_ROWS
            .iter()
            .map(|(n, e, s)| format!("{n},{e},{s}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let copy_in = format!(
        "\\copy customers (full_name, email, ssn) FROM '{}' WITH (FORMAT csv)",
        csv_in.display()
    );
    let copy_out = format!(
        "\\copy customers (full_name, email, ssn) TO '{}' WITH (FORMAT csv)",
        csv_out.display()
    );
    for (what, cmd) in [("COPY FROM STDIN", &copy_in), ("COPY TO STDOUT", &copy_out)] {
        match psql_app(
            &env,
            ADMIN,
            "a-copy",
            &["-v", "ON_ERROR_STOP=1", "-c", cmd],
            Duration::from_secs(8),
        ) {
            Ok(out) if out.status.success() => {}
            Ok(out) => m.0.push(format!("{what} ({durability}) failed: {out:?}")),
            Err(e) => m.0.push(format!("{what} ({durability}) hangs: {e}")),
        }
    }
    assert!(m.0.is_empty(), "{}\n{}", m.0.join("\n"), env.proxy.log());
    let dumped = std::fs::read_to_string(&csv_out).unwrap();
    assert!(
        dumped.contains(COPY_ROWS[1].1) && dumped.contains(ZELDA_SSN),
        "{dumped}"
    );
    let got = wait_statements(&env, "a-copy", 2);
    assert_who(&got, ADMIN, &db);
    m.check(
        summaries(&got),
        vec![
            "copy | copy customers (full_name, email, ssn) from stdin with (format csv) | [public.customers] | [email:encrypted_write,ssn:encrypted_write] | rows=2 | ok",
            "copy | copy customers (full_name, email, ssn) to stdout with (format csv) | [public.customers] | [email:plaintext,full_name:plaintext,ssn:plaintext] | rows=3 | ok",
        ]
    );

    let mut secrets: Vec<&str> = vec!["Zelda", "Quartermain", ZELDA_EMAIL, ZELDA_SSN, "audit-test"];
    for (n, e, s) in COPY_ROWS {
        secrets.extend([n, e, s]);
        secrets.extend(n.split(' '));
    }
    assert_no_values(&env.audit, &secrets);
    m.finish();
}

/// A refused statement's record says what was attempted: the table, and for an access
/// refusal the column with action `denied` (the issue lists `denied` among the actions; a
/// statement reading a `deny` column is refused, so its record is the only place it can
/// appear). Without this, `audit search --table customers` misses every denied attempt.
#[tokio::test]
async fn refused_statement_records_name_table_and_denied_column() {
    let env = setup("audit_refused_detail", None, None, &[]);
    let outsider = connect_app(&env, OUTSIDER, "rd-outsider").await;
    let e = outsider
        .simple_query("SELECT ssn FROM customers")
        .await
        .expect_err("deny");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    let admin = connect_app(&env, ADMIN, "rd-admin").await;
    let e = admin
        .simple_query("SELECT email FROM customers ORDER BY email")
        .await
        .expect_err("unsupported");
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{e}");
    let denied = wait_statements(&env, "rd-outsider", 1);
    let unsupported = wait_statements(&env, "rd-admin", 1);
    let mut m = Mismatches::default();
    m.check(
        summaries(&denied),
        vec!["select | select ssn from customers | [public.customers] | [ssn:denied] | rows=0 | 42501"],
    );
    // Which columns an unsupported statement would have revealed is open to design; the
    // table is not.
    let t = &unsupported[0]["tables"];
    if t != &serde_json::json!(["public.customers"]) {
        m.0.push(format!(
            "0A000 refusal record has tables {t}: {}",
            unsupported[0]
        ));
    }
    let out = pgveil(&[
        "audit",
        "search",
        env.audit.to_str().unwrap(),
        "--table",
        "customers",
        "--outcome",
        "error",
    ]);
    let found = String::from_utf8_lossy(&out.stdout).lines().count();
    if found != 2 {
        m.0.push(format!(
            "audit search --table customers --outcome error found {found} records, want 2"
        ));
    }
    m.finish();
}

/// Under `buffered` durability every statement on tagged tables still gets its record: the
/// mode only delays the fsync. Many pipelined statements from several sessions at once
/// keep the writer's queue full; none may be dropped.
#[tokio::test]
async fn buffered_mode_records_every_tagged_statement_under_load() {
    let env = setup(
        "audit_buffered_load",
        None,
        None,
        &["--audit-durability", "buffered"],
    );
    let seed = connect_app(&env, ADMIN, "bl-seed").await;
    seed.execute(
        "INSERT INTO customers (full_name, email, ssn) VALUES ($1, $2, $3)",
        &[&"Zelda Quartermain", &ZELDA_EMAIL, &ZELDA_SSN],
    )
    .await
    .unwrap();
    const CLIENTS: usize = 8;
    const EACH: usize = 2500;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let c = connect_app(&env, ADMIN, "bl-load").await;
        tasks.push(tokio::spawn(async move {
            let st = c
                .prepare("SELECT email FROM customers WHERE email = $1")
                .await
                .unwrap();
            let futs = (0..EACH).map(|_| c.query(&st, &[&ZELDA_EMAIL]));
            let res = futures_util::future::join_all(futs).await;
            res.into_iter()
                .filter(|r| r.as_ref().is_ok_and(|v| v.len() == 1))
                .count()
        }));
    }
    let mut served = 0;
    for t in tasks {
        served += t.await.unwrap();
    }
    assert_eq!(served, CLIENTS * EACH);
    let mut got = 0;
    wait_until(Duration::from_secs(10), || {
        got = records_of(&env.audit, "bl-load", "statement").len();
        got >= served
    });
    let lost = metric(env.proxy.metrics_port, "pgveil_audit_records_lost_total");
    let overloaded = metric(env.proxy.metrics_port, "pgveil_audit_overloaded_total");
    assert_eq!(
        got, served,
        "{served} statements served, {got} recorded (records_lost_total {lost}, overloaded_total {overloaded})"
    );
}

/// `--audit-stdout`: every record is also one JSON line on standard output
/// (for container log collection), identical to the one in the segment.
#[tokio::test]
async fn records_also_go_to_stdout_when_asked() {
    let env = setup("audit_stdout", None, None, &["--audit-stdout"]);
    let c = connect_app(&env, ADMIN, "stdout-app").await;
    c.simple_query("SELECT email FROM customers WHERE email = 'nobody-stdout@example.com'")
        .await
        .unwrap();
    let on_disk = records_of(&env.audit, "stdout-app", "statement");
    assert_eq!(on_disk.len(), 1, "{on_disk:?}");
    let hash = on_disk[0]["hash"].as_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(5), || env.proxy.log().contains(&hash)),
        "record {hash} not on stdout:\n{}",
        env.proxy.log()
    );
    let line = env
        .proxy
        .log()
        .lines()
        .find(|l| l.contains(&hash))
        .map(str::to_string)
        .unwrap();
    let parsed: Value = serde_json::from_str(&line).expect("one JSON record per line");
    let raw = read_records(&env.audit)
        .into_iter()
        .find(|r| r["hash"] == hash.as_str())
        .unwrap();
    assert_eq!(parsed, raw);
    assert!(
        !env.proxy.log().contains("nobody-stdout"),
        "a literal reached stdout"
    );
}

/// A key rotation picked up by a reload is an audit record of its own.
#[tokio::test]
async fn key_rotation_is_recorded() {
    let env = setup("audit_rotation", None, None, &[]);
    let keyring = env.dir.path().join("keyring.toml");
    let out = pgveil(&["keygen", "--rotate", keyring.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.proxy.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || read_records(&env.audit)
            .iter()
            .any(|r| r["kind"] == "key_rotation")),
        "{}",
        env.proxy.log()
    );
    let rot: Vec<Value> = read_records(&env.audit)
        .into_iter()
        .filter(|r| r["kind"] == "key_rotation")
        .collect();
    assert_eq!(rot.len(), 1, "{rot:?}");
    assert_eq!(rot[0]["detail"], "active key id 2");
    assert!(!serde_json::to_string(&rot[0]).unwrap().contains("material"));
}

//! `audit verify` catches tampering of a real directory; `audit search` filters it.

use super::support::*;

/// Runs a mixed workload through the proxy: inserts, masked and nulled reads, refusals,
/// failures, untagged statements, from three roles, `rounds` times.
async fn workload(env: &Env, rounds: usize) {
    let admin = connect_app(env, ADMIN, "w-admin").await;
    let support = connect_app(env, SUPPORT, "w-support").await;
    let analyst = connect_app(env, ANALYST, "w-analyst").await;
    for i in 0..rounds {
        let email = format!("tamper{i}@audit-test.example");
        admin
            .execute(
                "INSERT INTO customers (full_name, email, ssn) VALUES ($1, $2, $3)",
                &[
                    &format!("Tamper Person {i}"),
                    &email,
                    &format!("900-00-{i:04}"),
                ],
            )
            .await
            .expect("insert");
        support
            .query(
                "SELECT email, ssn FROM customers WHERE email = $1",
                &[&email],
            )
            .await
            .expect("support read");
        analyst
            .query("SELECT email, phone FROM customers", &[])
            .await
            .expect("analyst read");
        analyst
            .query("SELECT ssn FROM customers", &[])
            .await
            .expect_err("analyst ssn is denied");
        admin.simple_query("SELECT 1").await.expect("untagged");
    }
}

/// Issue 5 proof, tamper bullet, on a real multi-segment directory written by the proxy.
#[tokio::test]
async fn verify_catches_each_tampering_and_names_where() {
    let mut env = setup(
        "audit_tamper",
        None,
        Some("segment_max_bytes = 1500\ndurability = \"strict\""),
        &[],
    );
    workload(&env, 6).await;
    stop(&mut env);
    let records = read_records(&env.audit);
    let segs = segments(&env.audit);
    assert!(segs.len() >= 5, "expected several segments, got {segs:?}");
    // Rotation by size: every segment but the last ends past the limit only by one batch.
    for p in &segs[..segs.len() - 1] {
        let len = std::fs::metadata(p).unwrap().len();
        assert!(len >= 1500, "{} rotated early ({len} bytes)", p.display());
    }

    // Untouched: exit 0 with the count and the head.
    let n = records.len() as u64;
    let head = records.last().unwrap();
    assert_eq!(head["seq"].as_u64(), Some(n), "seqs must run 1..=n");
    let (code, stdout, stderr) = verify_cli(&env.audit);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        format!(
            "ok: {n} records in {} segment(s) verified; head seq {n} hash {}",
            segs.len(),
            s(head, "hash")
        )
    );

    // A middle segment with at least three records, and its neighbours.
    let mid = (1..segs.len() - 1)
        .find(|&i| lines_of(&segs[i]).len() >= 3)
        .or_else(|| (1..segs.len() - 1).find(|&i| lines_of(&segs[i]).len() >= 2))
        .expect("a middle segment with two records or more");
    let seg = &segs[mid];
    let seg_name = name_of(seg);
    let next_name = name_of(&segs[mid + 1]);
    let lines = lines_of(seg);
    let first_seq: u64 = serde_json::from_str::<Value>(&lines[0]).unwrap()["seq"]
        .as_u64()
        .unwrap();
    let last_seq = first_seq + lines.len() as u64 - 1;
    let work = tempfile::tempdir().unwrap();

    type Tamper<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, Tamper<'_>, String)> = vec![
        (
            "edit one byte",
            Box::new(|d: &Path| {
                let p = d.join(name_of(&segs[mid]));
                let mut l = lines_of(&p);
                // A digit of duration_us: still valid JSON with plausible values.
                let at = l[1].find("\"duration_us\":").unwrap() + "\"duration_us\":".len();
                let mut b = l[1].clone().into_bytes();
                b[at] = if b[at] == b'9' { b'8' } else { b[at] + 1 };
                l[1] = String::from_utf8(b).unwrap();
                put_lines(&p, &l);
            }),
            format!("{seg_name} line 2: at seq {}: ", first_seq + 1),
        ),
        (
            "delete a line",
            Box::new(|d: &Path| {
                let p = d.join(name_of(&segs[mid]));
                let mut l = lines_of(&p);
                l.remove(1);
                put_lines(&p, &l);
            }),
            format!(
                "{seg_name} line 2: at seq {}: found seq {}",
                first_seq + 1,
                first_seq + 2
            ),
        ),
        (
            "swap two lines",
            Box::new(|d: &Path| {
                let p = d.join(name_of(&segs[mid]));
                let mut l = lines_of(&p);
                l.swap(0, 1);
                put_lines(&p, &l);
            }),
            format!(
                "{seg_name} line 1: at seq {first_seq}: found seq {}",
                first_seq + 1
            ),
        ),
        (
            "truncate a segment mid-record",
            Box::new(|d: &Path| {
                let p = d.join(name_of(&segs[mid]));
                let len = std::fs::metadata(&p).unwrap().len();
                let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                f.set_len(len - 100).unwrap();
            }),
            format!("{seg_name}: at seq {last_seq}: segment ends with a partial line"),
        ),
        (
            "truncate a segment at a record boundary",
            Box::new(|d: &Path| {
                let p = d.join(name_of(&segs[mid]));
                let mut l = lines_of(&p);
                l.pop();
                put_lines(&p, &l);
            }),
            format!(
                "{next_name}: at seq {last_seq}: segment name says it starts at seq {}",
                last_seq + 1
            ),
        ),
        (
            "drop a middle segment",
            Box::new(|d: &Path| std::fs::remove_file(d.join(name_of(&segs[mid]))).unwrap()),
            format!(
                "{next_name}: at seq {first_seq}: segment {} is missing",
                mid + 1
            ),
        ),
        (
            "edit a byte in the first record",
            Box::new(|d: &Path| {
                let p = d.join(name_of(&segs[0]));
                let mut l = lines_of(&p);
                l[0] = l[0].replacen("\"kind\":\"auth_ok\"", "\"kind\":\"auth_ok\" ", 1);
                put_lines(&p, &l);
            }),
            format!("{} line 1: at seq 1: ", name_of(&segs[0])),
        ),
    ];
    for (i, (what, tamper, want)) in cases.iter().enumerate() {
        let d = work.path().join(format!("case{i}"));
        copy_dir(&env.audit, &d);
        tamper(&d);
        let (code, stdout, stderr) = verify_cli(&d);
        assert_eq!(code, 1, "{what}: verify must fail\n{stdout}{stderr}");
        assert!(
            stderr.contains(want),
            "{what}: expected the report to contain {want:?}, got {stderr:?}"
        );
    }
    // The original is untouched by all that.
    assert_eq!(verify_cli(&env.audit).0, 0);

    // --- search through the CLI --------------------------------------------------------------
    let search = |args: &[&str]| -> Vec<u64> {
        let mut a = vec!["audit", "search", env.audit.to_str().unwrap()];
        a.extend_from_slice(args);
        let out = pgveil(&a);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    // Search gives one record per statement: outcomes folded into their intents.
    let statements = merged(records.clone());
    let expect = |f: &dyn Fn(&Value) -> bool| -> Vec<u64> {
        statements
            .iter()
            .filter(|r| f(r))
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    };
    let has_role = |r: &Value, role: &str| {
        r["login_role"] == role
            || r["effective_roles"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == role))
    };
    let has_col = |r: &Value, col: &str| {
        r["columns"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["column"] == col))
    };
    let by_role = search(&["--role", SUPPORT]);
    // support: its auth record plus one read per round.
    assert_eq!(by_role.len(), 7, "{by_role:?}");
    assert_eq!(by_role, expect(&|r| has_role(r, SUPPORT)));
    let by_table = search(&["--table", "customers"]);
    assert_eq!(
        by_table,
        expect(&|r| r["tables"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x == "public.customers")))
    );
    assert!(by_table.len() >= 18, "{by_table:?}");
    let by_col = search(&["--column", "public.customers.ssn"]);
    assert_eq!(by_col, expect(&|r| has_col(r, "public.customers.ssn")));
    assert!(
        by_col.len() >= 12,
        "insert and support read each round: {by_col:?}"
    );
    assert_eq!(search(&["--column", "ssn"]), by_col);
    let analyst_email = search(&["--role", ANALYST, "--column", "customers.email"]);
    assert_eq!(analyst_email.len(), 6, "{analyst_email:?}");
    assert_eq!(
        analyst_email,
        expect(&|r| has_role(r, ANALYST) && has_col(r, "public.customers.email"))
    );
    let by_class = search(&["--class", "national_id"]);
    assert_eq!(by_class, by_col);
    let denied = search(&["--outcome", "42501"]);
    assert_eq!(denied.len(), 6, "{denied:?}");
    assert_eq!(denied, expect(&|r| r["outcome"] == "42501"));
    let future = search(&["--since", "2999-01-01T00:00:00Z"]);
    assert!(future.is_empty());
    let all_until_future = search(&["--until", "2999-01-01T00:00:00Z"]);
    assert_eq!(all_until_future.len(), statements.len());
    let out = pgveil(&[
        "audit",
        "search",
        env.audit.to_str().unwrap(),
        "--role",
        SUPPORT,
        "--format",
        "table",
    ]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        table.lines().count(),
        1 + 7,
        "header plus one line per record:\n{table}"
    );
    assert!(
        table.lines().skip(1).all(|l| l.contains(SUPPORT)),
        "{table}"
    );
}

//! psql through the real proxy: multi-statement queries, `\copy` both ways, LISTEN/NOTIFY,
//! errors inside transactions.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;

fn start() -> (&'static Cluster, Proxy) {
    let c = shared();
    let p = Proxy::start(&c.url(), &[]);
    (c, p)
}

#[test]
fn multi_statement_query_runs_every_statement() {
    let (c, p) = start();
    let db = c.fresh_db("multi");
    let out = psql(
        p.port,
        &db,
        APP_USER,
        APP_PASSWORD,
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-A",
            "-t",
            "-c",
            "CREATE TABLE m(x int); INSERT INTO m VALUES (1),(2),(3); \
             DO $$BEGIN RAISE NOTICE 'notice-through-proxy'; END$$; SELECT sum(x) FROM m",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    // psql 15+ shows the result of every statement of the one Query, older ones the last.
    assert_eq!(out.stdout.trim().lines().last(), Some("6"), "{out:?}");
    assert!(out.stderr.contains("notice-through-proxy"), "{out:?}");
    assert_eq!(c.sql(&db, "SELECT count(*) FROM m").trim(), "3");

    // An error in the middle of one Query aborts the rest of it (implicit transaction).
    let out = psql(
        p.port,
        &db,
        APP_USER,
        APP_PASSWORD,
        &[
            "-A",
            "-t",
            "-c",
            "INSERT INTO m VALUES (10); SELECT 1/0; INSERT INTO m VALUES (20)",
        ],
        None,
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("division by zero"), "{out:?}");
    assert_eq!(c.sql(&db, "SELECT count(*) FROM m").trim(), "3");
}

/// One canonical COPY text-format line per row, so the bytes PostgreSQL writes back are
/// exactly the bytes we sent (escapes, NULLs, unicode, bytea, numeric, timestamptz).
fn copy_rows(n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for id in 1..=n {
        let name = format!("name {id} \\t tab \\\\ backslash \\n newline é✓ \"q\" 'a' ,;");
        let amount = format!("{}.{:02}", (id * 7) % 100_000, id % 100);
        let flag = if id % 2 == 0 { "t" } else { "f" };
        let note = if id % 7 == 0 {
            "\\N".to_string()
        } else {
            format!("note-{id}")
        };
        let ts = format!(
            "2024-01-{:02} {:02}:{:02}:{:02}+00",
            1 + id % 28,
            id % 24,
            id % 60,
            (id * 7) % 60
        );
        let bin = format!("\\\\x{:08x}00ff", id);
        writeln!(out, "{id}\t{name}\t{amount}\t{flag}\t{note}\t{ts}\t{bin}").unwrap();
    }
    out
}

#[test]
fn copy_in_and_out_of_10000_rows_gives_the_same_bytes() {
    let (c, p) = start();
    let db = c.fresh_db("copy");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    let output = dir.path().join("out.tsv");
    let data = copy_rows(10_000);
    std::fs::write(&input, &data).unwrap();
    let run = |cmd: &str| {
        let out = psql(
            p.port,
            &db,
            APP_USER,
            APP_PASSWORD,
            &["-v", "ON_ERROR_STOP=1", "-c", cmd],
            None,
        );
        assert!(out.status.success(), "{cmd}: {out:?}");
        out
    };
    run(
        "CREATE TABLE items(id int PRIMARY KEY, name text, amount numeric(12,2), \
         flag bool, note text, ts timestamptz, bin bytea)",
    );
    let out = run(&format!("\\copy items FROM '{}'", input.display()));
    assert!(out.stdout.contains("COPY 10000"), "{out:?}");
    let out = run(&format!(
        "\\copy (SELECT * FROM items ORDER BY id) TO '{}'",
        output.display()
    ));
    assert!(out.stdout.contains("COPY 10000"), "{out:?}");
    let back = std::fs::read(&output).unwrap();
    assert_eq!(back.len(), data.len());
    assert!(
        back == data,
        "COPY TO returned different bytes than COPY FROM took"
    );
    // The server really holds the rows (checked directly, not through the proxy).
    assert_eq!(
        c.sql(
            &db,
            "SELECT count(*), count(note), sum(amount) FROM items"
        )
        .trim(),
        c.sql(
            &db,
            "SELECT 10000, 10000 - 10000/7, sum(((i*7) % 100000) + (i % 100) / 100.0)::numeric(20,2) \
             FROM generate_series(1, 10000) i"
        )
        .trim()
    );
}

#[test]
fn listen_notify_between_two_sessions() {
    let (c, p) = start();
    let db = c.fresh_db("notify");
    let mut cmd = client_cmd("psql", p.port, &db, APP_USER, APP_PASSWORD);
    cmd.args(["-X", "-A", "-t"]).stdin(Stdio::piped());
    let mut listener = cmd.spawn().unwrap();
    let mut stdin = listener.stdin.take().unwrap();
    stdin.write_all(b"LISTEN pgveil_chan;\n").unwrap();
    stdin.flush().unwrap();
    let listening = wait_until(Duration::from_secs(10), || {
        c.sql(
            &db,
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN pgveil_chan;' \
             AND state = 'idle'",
        )
        .trim()
            == "1"
    });
    if !listening {
        let _ = listener.kill();
        panic!("the listening session never ran LISTEN");
    }
    let out = psql(
        p.port,
        &db,
        APP_USER,
        APP_PASSWORD,
        &["-c", "NOTIFY pgveil_chan, 'hello from b'"],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    // psql reports notifications after its next command.
    stdin.write_all(b"SELECT 'after';\n").unwrap();
    drop(stdin);
    let out: ToolOut = listener.wait_with_output().unwrap().into();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout
            .contains("Asynchronous notification \"pgveil_chan\" with payload \"hello from b\""),
        "{out:?}"
    );
}

#[test]
fn error_inside_transaction_then_rollback() {
    let (c, p) = start();
    let db = c.fresh_db("txerr");
    let script = "\\set VERBOSITY verbose\n\
        CREATE TABLE tx(x int);\n\
        BEGIN;\n\
        INSERT INTO tx VALUES (1);\n\
        SELECT 1/0;\n\
        SELECT 2;\n\
        ROLLBACK;\n\
        SELECT 'count=' || count(*) FROM tx;\n\
        BEGIN;\n\
        INSERT INTO tx VALUES (2);\n\
        COMMIT;\n\
        SELECT 'count=' || count(*) FROM tx;\n";
    let out = psql(
        p.port,
        &db,
        APP_USER,
        APP_PASSWORD,
        &["-A", "-t"],
        Some(script),
    );
    assert!(out.stderr.contains("22012"), "{out:?}");
    assert!(out.stderr.contains("25P02"), "{out:?}");
    assert!(out.stdout.contains("ROLLBACK"), "{out:?}");
    let counts: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("count="))
        .collect();
    assert_eq!(counts, ["count=0", "count=1"], "{out:?}");
    assert_eq!(c.sql(&db, "SELECT x FROM tx").trim(), "2");
}

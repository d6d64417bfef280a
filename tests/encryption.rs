//! Issue 3 proof: transparent column encryption through the real proxy, with
//! the example rules in `rules/` and a real PostgreSQL.

mod common;

use std::time::Duration;

use common::customers::*;
use common::*;

#[tokio::test]
async fn prepared_write_then_read_binary_and_text() {
    let env = setup("enc_rw");
    let c = as_role(&env, ADMIN).await;
    insert_alice(&c).await;
    c.batch_execute(
        "INSERT INTO customers (full_name, email, ssn, birth_date) VALUES ('Bob', 'bob@example.com', '987-65-4321', '1990-01-02')",
    )
    .await
    .expect("simple-protocol insert with literals");

    // Binary results through a prepared statement (tokio-postgres asks binary).
    let row = c
        .query_one(
            "SELECT email, ssn, phone, birth_date, card_number FROM customers WHERE email = $1",
            &[&ALICE.0],
        )
        .await
        .expect("equality lookup by encrypted email");
    assert_eq!(row.get::<_, String>(0), ALICE.0);
    assert_eq!(row.get::<_, String>(1), ALICE.1);
    assert_eq!(row.get::<_, String>(2), ALICE.2);
    assert_eq!(row.get::<_, chrono::NaiveDate>(3).to_string(), ALICE.3);
    assert_eq!(row.get::<_, String>(4), ALICE.4);

    // Text results through the simple protocol.
    let msgs = c
        .simple_query("SELECT full_name, birth_date FROM customers WHERE ssn = '987-65-4321'")
        .await
        .unwrap();
    let rows: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get(0).unwrap().to_string(), r.get(1).unwrap().to_string()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(rows, vec![("Bob".to_string(), "1990-01-02".to_string())]);

    // Statement prepared once, executed many times.
    let st = c
        .prepare("SELECT id FROM customers WHERE email = $1")
        .await
        .unwrap();
    for (email, want) in [
        (ALICE.0, 1usize),
        ("bob@example.com", 1),
        ("nobody@example.com", 0),
    ] {
        assert_eq!(
            c.query(&st, &[&email]).await.unwrap().len(),
            want,
            "{email}"
        );
    }

    // The database holds only ciphertext.
    let direct = cluster().sql(
        &env.db,
        "SELECT encode(email,'hex') || encode(ssn,'hex') || coalesce(encode(phone,'hex'),'') || encode(birth_date,'hex') FROM customers",
    );
    for secret in ["alice", "example", "123-45", "6789", "1984", "4111", "bob@"] {
        let hex_secret = hex::encode(secret);
        assert!(
            !direct.contains(&hex_secret),
            "plaintext {secret} stored in the database"
        );
    }
    let types = cluster().sql(
        &env.db,
        "SELECT pg_typeof(email)::text FROM customers LIMIT 1",
    );
    assert!(types.contains("bytea"), "{types}");
}

#[tokio::test]
async fn unsupported_operations_are_refused_not_wrong() {
    let env = setup("enc_refuse");
    let c = as_role(&env, ADMIN).await;
    insert_alice(&c).await;
    for (sql, code) in [
        ("SELECT email FROM customers ORDER BY email", "0A000"),
        ("SELECT * FROM customers WHERE email LIKE 'a%'", "0A000"),
        ("SELECT * FROM customers WHERE ssn > '1'", "0A000"),
        ("SELECT count(DISTINCT email) FROM customers", "0A000"),
        ("UPDATE customers SET email = lower(email)", "0A000"),
        (
            "SELECT * FROM customers WHERE phone = '+1-202-555-0143'",
            "0A000",
        ),
    ] {
        let e = c.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some(code), "{sql}: {e}");
        let msg = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(
            !msg.contains("alice") && !msg.contains("555-0143"),
            "value echoed: {msg}"
        );
    }
    // Nothing was written by the refused UPDATE.
    let row = c
        .query_one("SELECT email FROM customers", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), ALICE.0);
    // The same refusal in the extended protocol, then the session still works.
    let e = c
        .prepare("SELECT email FROM customers ORDER BY email")
        .await
        .expect_err("prepare");
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"));
    assert_eq!(c.query("SELECT 1", &[]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn denied_role_is_refused_and_null_role_gets_null() {
    let env = setup("enc_access");
    let admin = as_role(&env, ADMIN).await;
    insert_alice(&admin).await;
    let analyst = as_role(&env, ANALYST).await;
    // analyst: ssn unlisted (default deny), card_number deny.
    for sql in [
        "SELECT ssn FROM customers",
        "SELECT * FROM customers",
        "SELECT card_number FROM customers",
    ] {
        let e = analyst.query(sql, &[]).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
        let msg = e.to_string();
        assert!(!msg.contains("123-45") && !msg.contains("4111"), "{msg}");
    }
    // analyst: phone and birth_date are `null`.
    let row = analyst
        .query_one("SELECT id, phone, birth_date FROM customers", &[])
        .await
        .expect("null access is served");
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert_eq!(row.get::<_, Option<chrono::NaiveDate>>(2), None);
}

#[tokio::test]
async fn ciphertext_moved_to_another_column_does_not_decrypt() {
    let env = setup("enc_swap");
    let c = as_role(&env, ADMIN).await;
    insert_alice(&c).await;
    // Someone with direct database access copies the email ciphertext into ssn.
    cluster().sql(&env.db, "UPDATE customers SET ssn = email");
    let e = c
        .query("SELECT ssn FROM customers", &[])
        .await
        .expect_err("must not decrypt");
    assert_eq!(sqlstate(&e).as_deref(), Some("XX001"), "{e}");
    assert!(!e.to_string().contains("alice"), "{e}");
    // Session still usable; the untouched column still decrypts.
    let row = c
        .query_one("SELECT email FROM customers", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), ALICE.0);
}

#[tokio::test]
async fn key_rotation_keeps_old_rows_readable_and_findable() {
    let env = setup("enc_rotate");
    {
        let c = as_role(&env, ADMIN).await;
        c.batch_execute(
            "INSERT INTO customers (full_name, email) VALUES ('Old', 'old@example.com')",
        )
        .await
        .unwrap();
    }
    let out = pgveil(&["keygen", "--rotate", env.keyring.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.proxy.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || env
            .proxy
            .log()
            .contains("rules reloaded")),
        "{}",
        env.proxy.log()
    );
    let c = as_role(&env, ADMIN).await;
    c.execute(
        "INSERT INTO customers (full_name, email) VALUES ($1, $2)",
        &[&"New", &"new@example.com"],
    )
    .await
    .unwrap();
    // Two different key ids are now stored.
    let ids = cluster().sql(
        &env.db,
        "SELECT count(DISTINCT substr(email, 2, 4)) FROM customers",
    );
    assert!(
        ids.trim().ends_with('2') || ids.contains(" 2"),
        "key ids: {ids}"
    );
    for (email, name) in [("old@example.com", "Old"), ("new@example.com", "New")] {
        let r = c
            .query_one(
                "SELECT full_name, email FROM customers WHERE email = $1",
                &[&email],
            )
            .await
            .unwrap_or_else(|e| panic!("{email}: {e}"));
        assert_eq!(r.get::<_, String>(0), name);
        assert_eq!(r.get::<_, String>(1), email);
        let lit = c
            .simple_query(&format!(
                "SELECT full_name FROM customers WHERE email = '{email}'"
            ))
            .await
            .unwrap();
        assert!(
            lit.iter()
                .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))),
            "{email}"
        );
    }
    // Column-to-column equality and GROUP BY compare stored ciphertexts: with
    // two live key versions they would silently miss or split rows, so they
    // are refused until the rotation is finished.
    for sql in [
        "SELECT a.id FROM customers a JOIN customers b ON a.email = b.email",
        "SELECT email, count(*) FROM customers GROUP BY email",
    ] {
        let e = c.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{sql}: {e}");
    }
}

#[test]
fn example_rules_pass_check() {
    let out = pgveil(&["check", "--rules", rules_dir().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("bad.toml"),
        "[[column]]\ntable = \"customers\"\nname = \"email\"\ntype = \"txt\"\nencrypt = \"sometimes\"\n",
    )
    .unwrap();
    let out = pgveil(&["check", "--rules", bad.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:2") && err.contains("bad.toml:4") && err.contains("bad.toml:5"),
        "{err}"
    );
}

#[tokio::test]
async fn copy_in_and_out_round_trips_10000_rows() {
    let env = setup("enc_copy");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.csv");
    let mut data = String::new();
    for i in 0..10_000 {
        // Tricky fields: commas and quotes inside CSV, NULL emails now and then.
        let email = if i % 97 == 0 {
            String::new()
        } else {
            format!("user{i}@example.com")
        };
        data.push_str(&format!(
            "\"Name, {i} \"\"q\"\"\",{email},{:03}-{:02}-{:04},1980-01-{:02}\n",
            i % 1000,
            i % 100,
            i,
            i % 28 + 1
        ));
    }
    std::fs::write(&src, &data).unwrap();
    let copy_in = format!(
        "\\copy customers (full_name, email, ssn, birth_date) FROM '{}' WITH (FORMAT csv)",
        src.display()
    );
    let out = psql(
        env.proxy.port,
        &env.db,
        ADMIN,
        PW,
        &["-v", "ON_ERROR_STOP=1", "-c", &copy_in],
        None,
    );
    assert!(out.status.success(), "{}\n{}", out.stderr, env.proxy.log());
    assert!(out.stdout.contains("COPY 10000"), "{}", out.stdout);

    // Stored as ciphertext.
    let leaked = cluster().sql(
        &env.db,
        "SELECT count(*) FROM customers WHERE position('user'::bytea in email) > 0",
    );
    assert!(leaked.trim().ends_with('0'), "plaintext stored: {leaked}");

    let dst = dir.path().join("out.csv");
    let copy_out = format!(
        "\\copy (SELECT full_name, email, ssn, birth_date FROM customers ORDER BY id) TO '{}' WITH (FORMAT csv)",
        dst.display()
    );
    let out = psql(
        env.proxy.port,
        &env.db,
        ADMIN,
        PW,
        &["-v", "ON_ERROR_STOP=1", "-c", &copy_out],
        None,
    );
    if out.status.success() {
        assert_eq!(
            std::fs::read_to_string(&dst).unwrap(),
            data,
            "COPY out differs from COPY in"
        );
    } else {
        // ORDER BY id over an untagged column is fine; anything else must be a clear refusal.
        panic!("copy out failed: {}\n{}", out.stderr, env.proxy.log());
    }
    // Plain COPY TO of the table also decrypts.
    let out = psql(
        env.proxy.port,
        &env.db,
        ADMIN,
        PW,
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "COPY customers (email) TO STDOUT",
        ],
        None,
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("user1@example.com\n"),
        "{}",
        &out.stdout[..200.min(out.stdout.len())]
    );
    // Binary COPY both ways: tests/protocol_state.rs and the psycopg/asyncpg drivers.
}

#[tokio::test]
async fn table_recreated_through_the_proxy_is_picked_up() {
    let env = setup("enc_ddl");
    cluster().sql(&env.db, "ALTER TABLE customers OWNER TO admin");
    let c = as_role(&env, ADMIN).await;
    insert_alice(&c).await;
    // DDL through the proxy in this session: the new table has a new OID, which
    // the session's catalog snapshot must learn before the next statement.
    c.batch_execute(
        "DROP TABLE customers; CREATE TABLE public.customers (id bigserial PRIMARY KEY, full_name text NOT NULL, \
         email bytea, ssn bytea, phone bytea, birth_date bytea, card_number bytea)",
    )
    .await
    .unwrap();
    insert_alice(&c).await;
    let row = c
        .query_one("SELECT email, ssn FROM customers", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), ALICE.0);
    assert_eq!(row.get::<_, String>(1), ALICE.1);
    // Another, already open session sees the change too.
    let other = as_role(&env, ADMIN).await;
    other.batch_execute("SELECT 1").await.unwrap();
    c.batch_execute("ALTER TABLE customers ADD COLUMN note text")
        .await
        .unwrap();
    let row = other
        .query_one("SELECT email FROM customers", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), ALICE.0);
}

#[tokio::test]
async fn pipelined_queries_and_sql_level_prepare() {
    let env = setup("enc_pipe");
    let c = as_role(&env, ADMIN).await;
    insert_alice(&c).await;
    c.batch_execute("INSERT INTO customers (full_name, email, ssn) VALUES ('Bob', 'bob@example.com', '987-65-4321')")
        .await
        .unwrap();
    // A pipeline: many queries in flight on one connection, mixing encrypted
    // lookups, plain statements and an error in the middle.
    let emails = [ALICE.0, "bob@example.com", "nobody@example.com"];
    let lookups = emails.iter().map(|e| {
        let c = &c;
        async move {
            c.query("SELECT ssn FROM customers WHERE email = $1", &[e])
                .await
        }
    });
    let (a, b, bad, d) = tokio::join!(
        futures_util::future::join_all(lookups),
        c.query("SELECT count(*) FROM customers", &[]),
        c.query("SELECT 1/0", &[]),
        c.query("SELECT email FROM customers WHERE id = 1", &[]),
    );
    let ssns: Vec<Vec<String>> = a
        .into_iter()
        .map(|r| {
            r.unwrap()
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect()
        })
        .collect();
    assert_eq!(
        ssns,
        vec![
            vec![ALICE.1.to_string()],
            vec!["987-65-4321".to_string()],
            vec![]
        ]
    );
    assert_eq!(b.unwrap()[0].get::<_, i64>(0), 2);
    assert_eq!(sqlstate(&bad.unwrap_err()).as_deref(), Some("22012"));
    assert_eq!(d.unwrap()[0].get::<_, String>(0), ALICE.0);

    // SQL-level PREPARE / EXECUTE: the EXECUTE argument is encrypted too.
    c.batch_execute("PREPARE by_email(text) AS SELECT ssn FROM customers WHERE email = $1")
        .await
        .unwrap();
    let msgs = c
        .simple_query("EXECUTE by_email('bob@example.com')")
        .await
        .unwrap();
    let got: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec!["987-65-4321".to_string()]);
    c.batch_execute("PREPARE ins(text, text) AS INSERT INTO customers (full_name, email) VALUES ($1, $2); EXECUTE ins('Carol', 'carol@example.com')")
        .await
        .unwrap();
    let stored = cluster().sql(
        &env.db,
        "SELECT count(*) FROM customers WHERE position('carol'::bytea in email) > 0",
    );
    assert!(
        stored.trim().ends_with('0'),
        "plaintext stored through EXECUTE: {stored}"
    );
    let row = c
        .query_one(
            "SELECT full_name FROM customers WHERE email = $1",
            &[&"carol@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Carol");
}

#[test]
fn pgbench_custom_script_on_encrypted_table() {
    let env = setup("enc_pgbench");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("enc.sql");
    // Every transaction writes an encrypted row, then finds it by equality on
    // the encrypted email and reads it back decrypted.
    std::fs::write(
        &script,
        "\\set n random(1, 1000000000)\n\
         BEGIN;\n\
         INSERT INTO customers (full_name, email, ssn) VALUES ('bench', :n, '000-00-0000');\n\
         SELECT email, ssn FROM customers WHERE email = :n;\n\
         END;\n",
    )
    .unwrap();
    for mode in ["prepared", "extended"] {
        let mut cmd = client_cmd("pgbench", env.proxy.port, &env.db, ADMIN, PW);
        cmd.args(["-n", "-M", mode, "-c", "4", "-j", "2", "-T", "3", "-f"])
            .arg(&script);
        let out = run_tool(cmd, None, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{}\n{}\n{}",
            out.stdout,
            out.stderr,
            env.proxy.log()
        );
        assert!(
            out.stdout
                .contains("number of failed transactions: 0 (0.000%)"),
            "{mode}: {}",
            out.stdout
        );
    }
    let leaked = cluster().sql(
        &env.db,
        "SELECT count(*) FROM customers WHERE ssn = '000-00-0000'::bytea",
    );
    assert!(leaked.trim().ends_with('0'), "{leaked}");
}

#[tokio::test]
async fn malformed_extended_messages_in_a_session_under_rules() {
    // Under rules pgveil decodes Parse and Bind itself; a malformed one must
    // end that session with FATAL 08P01, never a panic or an effect elsewhere.
    let mut env = setup("enc_malformed");
    let admin = as_role(&env, ADMIN).await;
    let mut parse_body = b"s1\0SELECT 1\0".to_vec();
    parse_body.extend_from_slice(&5i16.to_be_bytes()); // claims 5 type OIDs, sends none
    let mut bind_body = b"\0s1\0".to_vec();
    bind_body.extend_from_slice(&0i16.to_be_bytes());
    bind_body.extend_from_slice(&1i16.to_be_bytes());
    bind_body.extend_from_slice(&1000i32.to_be_bytes()); // a 1000-byte parameter that is not there
    for (what, frame) in [
        ("short Parse", wire::msg(b'P', &parse_body)),
        ("short Bind", wire::msg(b'B', &bind_body)),
        ("Describe without kind", wire::msg(b'D', b"")),
    ] {
        let mut s = wire::login_trust(env.proxy.port, TRUST_USER, &env.db).await;
        use tokio::io::AsyncWriteExt;
        s.write_all(&frame).await.unwrap();
        s.write_all(&wire::msg(b'S', b"")).await.unwrap();
        let (msgs, closed) = wire::read_until_close(&mut s, Duration::from_secs(5)).await;
        assert!(closed, "{what}: not closed");
        assert!(
            wire::has_fatal(&msgs, "08P01"),
            "{what}: {:?}",
            wire::error_codes(&msgs)
        );
        assert!(env.proxy.is_alive(), "{what}: proxy died");
        assert_eq!(
            admin.query("SELECT 1", &[]).await.unwrap().len(),
            1,
            "{what}"
        );
    }
}

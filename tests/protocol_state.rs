//! Issue 11, defect 1: pgveil's model of the server's protocol state.
//!
//! PostgreSQL ignores Sync (and Flush) during copy-in, so an extended-protocol
//! `COPY … FROM STDIN` (Bind / Execute / Sync, then CopyData / CopyDone /
//! Sync) yields one ReadyForQuery for two Syncs. Before the fix pgveil
//! counted one per Sync and stayed a batch behind for the rest of the
//! session. These tests send the exact wire sequences, then check that every
//! later reply belongs to the statement that asked for it.

mod common;

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use common::wire::{fields, login_trust, msg, query, read_msg};
use common::*;

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = cstr(name);
    b.extend(cstr(sql));
    b.extend(0i16.to_be_bytes());
    msg(b'P', &b)
}

fn bind(portal: &str, stmt: &str) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(cstr(stmt));
    b.extend([0, 0, 0, 0, 0, 0]);
    msg(b'B', &b)
}

fn execute(portal: &str) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(0i32.to_be_bytes());
    msg(b'E', &b)
}

fn describe_portal(portal: &str) -> Vec<u8> {
    let mut b = vec![b'P'];
    b.extend(cstr(portal));
    msg(b'D', &b)
}

const SYNC: &[u8] = b"S\0\0\0\x04";

/// Reads messages until `readies` ReadyForQuery arrived, then waits a little
/// for anything that should not come.
async fn read_replies(s: &mut TcpStream, readies: usize) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < readies {
        match tokio::time::timeout(Duration::from_secs(10), read_msg(s)).await {
            Ok(Ok(Some(m))) => {
                seen += usize::from(m.0 == b'Z');
                out.push(m);
            }
            other => panic!("no reply: {other:?} after {:?}", tags(&out)),
        }
    }
    if let Ok(Ok(Some(m))) = tokio::time::timeout(Duration::from_millis(300), read_msg(s)).await {
        panic!("extra message {} after {:?}", m.0 as char, tags(&out));
    }
    out
}

/// Reads up to and including the first message with `tag`.
async fn read_until(s: &mut TcpStream, tag: u8) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), read_msg(s)).await {
            Ok(Ok(Some(m))) => {
                let done = m.0 == tag;
                out.push(m);
                if done {
                    return out;
                }
            }
            other => panic!(
                "waiting for {}: {other:?} after {:?}",
                tag as char,
                tags(&out)
            ),
        }
    }
}

/// The messages of the ErrorResponses among `m`.
fn errors(m: &[(u8, Vec<u8>)]) -> Vec<String> {
    m.iter()
        .filter(|(t, _)| *t == b'E')
        .map(|(_, b)| fields(b).get(&'M').cloned().unwrap_or_default())
        .collect()
}

fn tags(m: &[(u8, Vec<u8>)]) -> String {
    m.iter().map(|(t, _)| *t as char).collect()
}

fn data_row_text(body: &[u8]) -> Vec<Option<String>> {
    let n = i16::from_be_bytes([body[0], body[1]]) as usize;
    let mut rest = &body[2..];
    let mut out = Vec::new();
    for _ in 0..n {
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        rest = &rest[4..];
        if len < 0 {
            out.push(None);
        } else {
            out.push(Some(
                String::from_utf8_lossy(&rest[..len as usize]).into_owned(),
            ));
            rest = &rest[len as usize..];
        }
    }
    out
}

/// The copy-in sequence, then replies checked statement by statement.
async fn copy_in_then_queries(port: u16, db: &str) {
    let mut s = login_trust(port, TRUST_USER, db).await;
    let setup = [query("CREATE TEMP TABLE t (a int)")].concat();
    s.write_all(&setup).await.unwrap();
    read_replies(&mut s, 1).await;
    // Bind / Execute / Sync, as tokio-postgres' copy_in sends them.
    let start = [
        parse("", "COPY t FROM STDIN"),
        bind("", ""),
        execute(""),
        SYNC.to_vec(),
    ]
    .concat();
    s.write_all(&start).await.unwrap();
    let m = read_until(&mut s, b'G').await;
    assert_eq!(tags(&m), "12G");
    let data = [
        msg(b'd', b"1\n"),
        msg(b'd', b"2\n"),
        msg(b'c', b""),
        SYNC.to_vec(),
    ]
    .concat();
    s.write_all(&data).await.unwrap();
    let m = read_replies(&mut s, 1).await;
    assert_eq!(tags(&m), "CZ", "one ReadyForQuery for the two Syncs");
    // The next statements get their own replies, not the previous batch's.
    s.write_all(&query("SELECT count(*)::text FROM t"))
        .await
        .unwrap();
    let m = read_replies(&mut s, 1).await;
    assert_eq!(tags(&m), "TDCZ");
    assert_eq!(data_row_text(&m[1].1), vec![Some("2".to_string())]);
    let ext = [
        parse("s1", "SELECT a FROM t ORDER BY a"),
        bind("p1", "s1"),
        describe_portal("p1"),
        execute("p1"),
        SYNC.to_vec(),
    ]
    .concat();
    s.write_all(&ext).await.unwrap();
    let m = read_replies(&mut s, 1).await;
    assert_eq!(tags(&m), "12TDDCZ");
    // A failed copy: the server skips to the next Sync.
    s.write_all(
        &[
            parse("", "COPY t FROM STDIN"),
            bind("", ""),
            execute(""),
            SYNC.to_vec(),
        ]
        .concat(),
    )
    .await
    .unwrap();
    read_until(&mut s, b'G').await;
    s.write_all(&[msg(b'd', b"not a number\n"), msg(b'c', b""), SYNC.to_vec()].concat())
        .await
        .unwrap();
    let m = read_replies(&mut s, 1).await;
    assert_eq!(
        tags(&m),
        "EZ",
        "{:?}",
        m.iter()
            .map(|(t, b)| (*t as char, fields(b)))
            .collect::<Vec<_>>()
    );
    s.write_all(&query("SELECT 7")).await.unwrap();
    let m = read_replies(&mut s, 1).await;
    assert_eq!(tags(&m), "TDCZ");
    assert_eq!(data_row_text(&m[1].1), vec![Some("7".to_string())]);
}

#[tokio::test]
async fn extended_copy_in_keeps_replies_in_step_untracked() {
    let c = shared();
    let db = c.fresh_db("pstate_plain");
    let proxy = Proxy::start(&c.url(), &[]);
    copy_in_then_queries(proxy.port, &db).await;
}

#[tokio::test]
async fn extended_copy_in_keeps_replies_in_step_tracked() {
    let c = shared();
    let db = c.fresh_db("pstate_audit");
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit");
    let proxy = Proxy::start(&c.url(), &["--audit-dir", audit.to_str().unwrap()]);
    copy_in_then_queries(proxy.port, &db).await;
}

/// The driver-level reproduction (tokio-postgres `copy_in` is Bind /
/// Execute / Sync, then CopyData / CopyDone / Sync) on an encrypted table:
/// afterwards prepared statements still get their values decrypted and
/// typed, and refusals still read as refusals.
#[tokio::test]
async fn copy_in_through_tokio_postgres_then_prepared_reads_decrypt() {
    use common::customers::*;
    use futures_util::SinkExt;
    let env = setup("pstate_rules");
    let admin = as_role(&env, ADMIN).await;
    for round in 0..3 {
        let sink = admin
            .copy_in("COPY customers (full_name, email, ssn) FROM STDIN")
            .await
            .expect("copy_in");
        futures_util::pin_mut!(sink);
        let row = format!("Round {round}\tr{round}@example.com\t000-00-000{round}\n");
        sink.send(bytes::Bytes::from(row)).await.expect("copy data");
        assert_eq!(sink.finish().await.expect("copy done"), 1);
        let stmt = admin
            .prepare("SELECT email, ssn FROM customers WHERE full_name = $1")
            .await
            .expect("prepare after copy");
        assert_eq!(stmt.params()[0], tokio_postgres::types::Type::TEXT);
        let rows = admin
            .query(&stmt, &[&format!("Round {round}")])
            .await
            .expect("query");
        let email: String = rows[0].get(0);
        assert_eq!(email, format!("r{round}@example.com"));
        let by_email = admin
            .query(
                "SELECT full_name FROM customers WHERE email = $1",
                &[&email],
            )
            .await
            .expect("lookup by encrypted email");
        assert_eq!(by_email.len(), 1);
    }
    let support = as_role(&env, SUPPORT).await;
    let e = support
        .query("SELECT ssn || 'x' FROM customers", &[])
        .await
        .expect_err("computing on ssn is refused");
    assert_ne!(sqlstate(&e).as_deref(), Some("42601"), "{e}");
}

/// Issue 11, defect 2: ParameterDescription repeats a type the client
/// declared in Parse (pgjdbc declares varchar for setString and fails when
/// the server answers another type), as PostgreSQL does.
#[tokio::test]
async fn parameter_description_repeats_declared_types() {
    use common::customers::*;
    use tokio_postgres::types::Type;
    let env = setup("pstate_declared");
    let admin = as_role(&env, ADMIN).await;
    let ins = admin
        .prepare_typed(
            "INSERT INTO customers (full_name, email, ssn) VALUES ($1, $2, $3)",
            &[Type::VARCHAR, Type::VARCHAR, Type::UNKNOWN],
        )
        .await
        .expect("prepare with declared types");
    assert_eq!(ins.params(), &[Type::VARCHAR, Type::VARCHAR, Type::TEXT]);
    admin
        .execute(
            &ins,
            &[&"Declared", &"declared@example.com", &"111-22-3333"],
        )
        .await
        .expect("insert with varchar parameters");
    let sel = admin
        .prepare_typed(
            "SELECT ssn FROM customers WHERE email = $1",
            &[Type::VARCHAR],
        )
        .await
        .expect("prepare lookup");
    assert_eq!(sel.params(), &[Type::VARCHAR]);
    let rows = admin
        .query(&sel, &[&"declared@example.com"])
        .await
        .expect("lookup");
    assert_eq!(rows[0].get::<_, String>(0), "111-22-3333");
    // A declared type that is not the column's value type is not repeated.
    let d = admin
        .prepare_typed(
            "INSERT INTO customers (full_name, birth_date) VALUES ($1, $2)",
            &[Type::VARCHAR, Type::VARCHAR],
        )
        .await
        .expect("prepare date insert");
    assert_eq!(d.params(), &[Type::VARCHAR, Type::DATE]);
}

/// Drivers such as asyncpg send COPY data right behind the statement,
/// without waiting for CopyInResponse: the data can pass pgveil before the
/// server has announced the copy. It must still be encrypted.
mod eager_copy_data {
    use super::*;
    use common::customers::*;

    /// The session as the trust role, which may write the table.
    async fn session(env: &Env) -> TcpStream {
        cluster().sql(
            &env.db,
            &format!("GRANT ALL ON public.customers, public.customers_id_seq TO {TRUST_USER}"),
        );
        login_trust(env.proxy.port, TRUST_USER, &env.db).await
    }

    /// Rows whose stored email or ssn holds the marker in the clear.
    fn plaintext_rows(env: &Env, marker: &str) -> String {
        cluster().sql(
            &env.db,
            &format!(
                "SELECT count(*) FROM customers WHERE position(convert_to('{marker}', 'UTF8') in \
                 coalesce(email, '') || coalesce(ssn, '')) > 0"
            ),
        )
    }

    async fn read_back(env: &Env, name: &str) -> (String, Option<String>) {
        let admin = as_role(env, ADMIN).await;
        let row = admin
            .query_one(
                "SELECT email, ssn FROM customers WHERE full_name = $1",
                &[&name],
            )
            .await
            .expect("read back through pgveil");
        (row.get(0), row.get(1))
    }

    /// A binary COPY payload: header, one tuple of text fields, trailer.
    fn binary_copy(fields: &[&str]) -> Vec<u8> {
        let mut b = b"PGCOPY\n\xff\r\n\0".to_vec();
        b.extend(0i32.to_be_bytes());
        b.extend(0i32.to_be_bytes());
        b.extend((fields.len() as i16).to_be_bytes());
        for f in fields {
            b.extend((f.len() as i32).to_be_bytes());
            b.extend(f.as_bytes());
        }
        b.extend((-1i16).to_be_bytes());
        b
    }

    /// Sends `start` (the statement), the COPY data in `pieces` and CopyDone
    /// in one write, before any reply; then checks that `row` (full_name,
    /// email, ssn) is stored encrypted and reads back through pgveil.
    async fn copy_eagerly(
        tag: &str,
        start: Vec<u8>,
        pieces: &[&[u8]],
        tail: &[u8],
        row: [&str; 3],
    ) {
        let env = setup(tag);
        let mut s = session(&env).await;
        let mut batch = start;
        for p in pieces {
            batch.extend(msg(b'd', p));
        }
        batch.extend(msg(b'c', b""));
        batch.extend_from_slice(tail);
        s.write_all(&batch).await.unwrap();
        let m = read_replies(&mut s, 1).await;
        assert!(
            tags(&m).contains("GC") && tags(&m).ends_with('Z'),
            "{} {:?}",
            tags(&m),
            errors(&m)
        );
        let [name, email, ssn] = row;
        assert_eq!(plaintext_rows(&env, email).trim(), "0");
        assert_eq!(plaintext_rows(&env, ssn).trim(), "0");
        let (got_email, got_ssn) = read_back(&env, name).await;
        assert_eq!(got_email, email);
        assert_eq!(got_ssn.as_deref(), Some(ssn));
    }

    #[tokio::test]
    async fn text_copy_sent_with_its_statement_is_encrypted() {
        copy_eagerly(
            "pstate_eager_text",
            query("COPY customers (full_name, email, ssn) FROM STDIN"),
            &[b"Eager Text\teagertext@example.com\t", b"555-01-0001\n"],
            b"",
            ["Eager Text", "eagertext@example.com", "555-01-0001"],
        )
        .await;
    }

    #[tokio::test]
    async fn binary_copy_sent_with_its_statement_is_encrypted() {
        let data = binary_copy(&["Eager Bin", "eagerbin@example.com", "555-02-0002"]);
        let (a, b) = data.split_at(23);
        copy_eagerly(
            "pstate_eager_bin",
            query("COPY customers (full_name, email, ssn) FROM STDIN (FORMAT binary)"),
            &[a, b],
            b"",
            ["Eager Bin", "eagerbin@example.com", "555-02-0002"],
        )
        .await;
    }

    /// The extended-protocol spelling: Parse / Bind / Execute / Sync, the
    /// data and CopyDone / Sync, all before any reply.
    #[tokio::test]
    async fn extended_copy_sent_with_its_statement_is_encrypted() {
        let start = [
            parse("", "COPY customers (full_name, email, ssn) FROM STDIN"),
            bind("", ""),
            execute(""),
            SYNC.to_vec(),
        ]
        .concat();
        copy_eagerly(
            "pstate_eager_ext",
            start,
            &[b"Eager Ext\teagerext@example.com\t555-03-0003\n"],
            SYNC,
            ["Eager Ext", "eagerext@example.com", "555-03-0003"],
        )
        .await;
    }

    /// Two COPYs in one Query, the second into tagged columns, each run sent
    /// only after its CopyInResponse: the server says which one reads.
    #[tokio::test]
    async fn two_copies_in_one_query_get_their_own_data() {
        let env = setup("pstate_eager_two");
        cluster().sql(
            &env.db,
            &format!("CREATE TABLE notes (body text); GRANT ALL ON notes TO {TRUST_USER}"),
        );
        let mut s = session(&env).await;
        s.write_all(&query(
            "COPY notes FROM STDIN; COPY customers (full_name, email) FROM STDIN",
        ))
        .await
        .unwrap();
        read_until(&mut s, b'G').await;
        s.write_all(&[msg(b'd', b"a note\n"), msg(b'c', b"")].concat())
            .await
            .unwrap();
        read_until(&mut s, b'G').await;
        s.write_all(&[msg(b'd', b"Two Copies\ttwo@example.com\n"), msg(b'c', b"")].concat())
            .await
            .unwrap();
        let m = read_replies(&mut s, 1).await;
        assert_eq!(tags(&m), "CZ", "{:?}", errors(&m));
        assert_eq!(
            cluster().sql(&env.db, "SELECT body FROM notes").trim(),
            "a note"
        );
        assert_eq!(plaintext_rows(&env, "two@").trim(), "0");
        assert_eq!(read_back(&env, "Two Copies").await.0, "two@example.com");
    }

    /// The same two COPYs with all data sent at once: which COPY reads the
    /// first run depends on the server's timing, so pgveil closes the
    /// connection before forwarding anything rather than guess.
    #[tokio::test]
    async fn ambiguous_eager_data_closes_the_session() {
        let env = setup("pstate_eager_amb");
        cluster().sql(
            &env.db,
            &format!("CREATE TABLE notes (body text); GRANT ALL ON notes TO {TRUST_USER}"),
        );
        let mut s = session(&env).await;
        let batch = [
            query("COPY notes FROM STDIN; COPY customers (full_name, email) FROM STDIN"),
            msg(b'd', b"Amb\tamb@example.com\n"),
            msg(b'c', b""),
        ]
        .concat();
        s.write_all(&batch).await.unwrap();
        let (m, closed) = common::wire::read_until_close(&mut s, Duration::from_secs(10)).await;
        assert!(closed, "{m:?}");
        assert!(!m.iter().any(|(t, _)| *t == b'G'), "nothing was forwarded");
        assert_eq!(plaintext_rows(&env, "amb@").trim(), "0");
        assert_eq!(
            cluster().sql(&env.db, "SELECT count(*) FROM notes").trim(),
            "0"
        );
        // Other sessions are untouched.
        let admin = as_role(&env, ADMIN).await;
        admin
            .simple_query("SELECT 1")
            .await
            .expect("another session");
    }
}

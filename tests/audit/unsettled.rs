//! Issue 13, completeness: the records the message flow makes easy to get
//! wrong. A refused DO block's code is a string literal (recorded as `do ?`
//! before); a refused FunctionCall names its function by OID only; an
//! Execute whose client leaves after Flush, before Sync, ran (and the server
//! then rolled its implicit transaction back), so its record says
//! `client_disconnected`, not `ok`.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::support::*;
use crate::common::wire::{self, msg, read_msg};

/// A raw protocol session as the trust-authenticated test role (no rules
/// entry: every tagged column is denied to it), with `application_name`.
async fn raw_login(env: &Env, app: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", env.proxy.port))
        .await
        .expect("connect to proxy");
    let startup = wire::startup_with(&[
        ("user", TRUST_USER),
        ("database", &env.db),
        ("application_name", app),
    ]);
    s.write_all(&startup).await.unwrap();
    read_to(&mut s, b'Z').await;
    s
}

/// Messages up to and including the first one tagged `tag`.
async fn read_to(s: &mut TcpStream, tag: u8) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(m)) = read_msg(s).await {
            let end = m.0 == tag;
            out.push(m);
            if end {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true), "no {:?} in {out:?}", tag as char);
    out
}

fn cstr(s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    b
}

#[tokio::test]
async fn a_refused_do_block_records_its_body_and_the_tables_it_names() {
    let env = setup("audit_do", None, None, &[]);
    let outsider = connect_app(&env, OUTSIDER, "do-outsider").await;
    for body in [
        "DO $$ BEGIN DELETE FROM customers WHERE email = 'who@audit-test.example'; END $$",
        // Dynamic SQL: the names are inside a literal inside the body.
        "DO LANGUAGE plpgsql 'BEGIN EXECUTE ''SELECT ssn FROM public.customers WHERE id = 7''; END'",
    ] {
        let e = outsider.simple_query(body).await.expect_err("DO refused");
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    }
    let recs = wait_statements(&env, "do-outsider", 2);
    let mut m = Mismatches::default();
    m.check(
        summaries(&recs),
        vec![
            "other | do $$ begin delete from customers where email = ?; end $$ | [public.customers] | [email:denied] | rows=0 | 42501",
            "other | do language plpgsql $$ begin execute ?; end $$ | [public.customers] | [ssn:denied] | rows=0 | 42501",
        ],
    );
    // A plaintext role's DO naming a tagged table is refused too (its code
    // could write plaintext into an encrypted column); its record names the
    // tables. One naming nothing tagged is forwarded.
    let admin = connect_app(&env, ADMIN, "do-admin").await;
    let e = admin
        .simple_query(
            "DO $$ BEGIN PERFORM 1 FROM customers WHERE email = 'who@audit-test.example'; END $$",
        )
        .await
        .expect_err("admin DO naming a tagged table");
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{e}");
    admin
        .execute("DO $$ BEGIN PERFORM 1; END $$", &[])
        .await
        .expect("untagged DO, extended protocol");
    let recs = wait_statements(&env, "do-admin", 2);
    m.check(
        summaries(&recs),
        vec![
            "other | do $$ begin perform ? from customers where email = ?; end $$ | [public.customers] | [email:denied] | rows=0 | 0A000",
            "other | do $$ begin perform ?; end $$ | [] | [] | rows=0 | ok",
        ],
    );
    m.finish();
    assert_no_values(&env.audit, &["who@audit-test.example", "audit-test"]);
}

#[tokio::test]
async fn a_refused_function_call_records_the_functions_oid_and_name() {
    let env = setup("audit_fcall", None, None, &[]);
    let c = cluster();
    c.sql(
        &env.db,
        "CREATE FUNCTION public.f_first(integer) RETURNS text LANGUAGE sql \
         AS 'SELECT full_name FROM public.customers WHERE id = $1'",
    );
    let oid: u32 = c
        .sql(
            &env.db,
            "SELECT 'public.f_first(integer)'::regprocedure::oid",
        )
        .trim()
        .parse()
        .expect("oid");
    let mut w = raw_login(&env, "fc-raw").await;
    // FunctionCall: one text argument "1", text result.
    let mut body = oid.to_be_bytes().to_vec();
    body.extend(1_i16.to_be_bytes());
    body.extend(0_i16.to_be_bytes());
    body.extend(1_i16.to_be_bytes());
    body.extend(1_i32.to_be_bytes());
    body.push(b'1');
    body.extend(0_i16.to_be_bytes());
    w.write_all(&msg(b'F', &body)).await.unwrap();
    let got = read_to(&mut w, b'Z').await;
    let tags: Vec<char> = got.iter().map(|m| m.0 as char).collect();
    assert_eq!(tags, vec!['E', 'Z'], "{got:?}");
    assert_eq!(wire::error_codes(&got), vec!["42501".to_string()]);
    // Inside a failed transaction the name cannot be read: the OID stays.
    wire::simple_query(&mut w, "BEGIN").await;
    wire::simple_query(&mut w, "SELECT 1/0").await;
    w.write_all(&msg(b'F', &body)).await.unwrap();
    let got = read_to(&mut w, b'Z').await;
    assert_eq!(wire::error_codes(&got), vec!["42501".to_string()]);
    // The session is in step: its transaction is still the failed one.
    let got = wire::simple_query(&mut w, "ROLLBACK").await;
    assert_eq!(
        got.last().map(|m| m.1.as_slice()),
        Some(&b"I"[..]),
        "{got:?}"
    );
    let recs = wait_statements(&env, "fc-raw", 5);
    let calls: Vec<String> = recs
        .iter()
        .filter(|r| s_of(r).starts_with("functioncall"))
        .map(|r| format!("{} | {}", s_of(r), s(r, "outcome")))
        .collect();
    assert_eq!(
        calls,
        vec![
            format!("functioncall oid={oid} name=f_first(integer) | 42501"),
            format!("functioncall oid={oid} | 42501"),
        ],
        "{recs:#?}"
    );
}

fn s_of(r: &Value) -> String {
    s(r, "fingerprint")
}

#[tokio::test]
async fn an_execute_whose_client_leaves_before_sync_is_recorded_as_disconnected_strict() {
    execute_then_leave("strict").await;
}

/// Buffered: the whole record (no intent ahead of it) waits for the Sync.
#[tokio::test]
async fn an_execute_whose_client_leaves_before_sync_is_recorded_as_disconnected_buffered() {
    execute_then_leave("buffered").await;
}

/// Parse/Bind/Execute/Flush, the result read; then one session drops the
/// socket and another sends its Sync late.
async fn execute_then_leave(durability: &str) {
    let env = setup(
        &format!("audit_disconnect_{durability}"),
        None,
        None,
        &["--audit-durability", durability],
    );
    let c = cluster();
    c.sql(
        &env.db,
        &format!(
            "GRANT SELECT ON public.customers TO {TRUST_USER}; \
             INSERT INTO customers (full_name) VALUES ('a'), ('b'), ('c');"
        ),
    );
    let mut parse = cstr("");
    parse.extend(cstr("SELECT id FROM customers ORDER BY id"));
    parse.extend(0_i16.to_be_bytes());
    let mut bind = cstr("");
    bind.extend(cstr(""));
    bind.extend([0, 0, 0, 0, 0, 0]);
    let mut exec = cstr("");
    exec.extend(0_i32.to_be_bytes());
    let mut batch = msg(b'P', &parse);
    batch.extend(msg(b'B', &bind));
    batch.extend(msg(b'E', &exec));
    batch.extend(msg(b'H', &[]));
    for app in ["dc-left", "dc-late-sync"] {
        let mut s = raw_login(&env, app).await;
        s.write_all(&batch).await.unwrap();
        let got = read_to(&mut s, b'C').await;
        let rows = got.iter().filter(|m| m.0 == b'D').count();
        assert_eq!(rows, 3, "{got:?}");
        if app == "dc-late-sync" {
            s.write_all(&msg(b'S', &[])).await.unwrap();
            read_to(&mut s, b'Z').await;
        }
    }
    let left = wait_statements(&env, "dc-left", 1);
    let synced = wait_statements(&env, "dc-late-sync", 1);
    let mut m = Mismatches::default();
    let fp = "select id from customers order by id";
    m.check(
        summaries(&left),
        vec![format!(
            "select | {fp} | [public.customers] | [] | rows=3 | client_disconnected"
        )],
    );
    m.check(
        summaries(&synced),
        vec![format!(
            "select | {fp} | [public.customers] | [] | rows=3 | ok"
        )],
    );
    m.finish();
    assert!(left[0]["duration_us"].as_u64().is_some(), "{}", left[0]);
}

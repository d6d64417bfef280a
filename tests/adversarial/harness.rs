//! Harness for the adversarial suite: one cluster, one database and one proxy per binary, a raw
//! protocol client that records every backend message, and the leak checks.
//!
//! Restricted roles log in with `trust` (hba) so the raw client needs no SCRAM; what is under
//! test is what the proxy lets through after login, not authentication.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::wire::{fields, msg, read_msg};
use crate::common::*;
use pgveil::pgtemp::PasswordEncryption;

pub const PW: &str = "Role-Pa55word";
/// Roles a case can run as. `*_s` and `*_e` inherit support/analyst and are used by cases that
/// change persistent per-role state (a `$user` schema, ALTER ROLE … SET), so they cannot disturb
/// concurrent cases running as plain support/analyst.
pub const ROLES: [&str; 7] = [
    "admin",
    "support",
    "analyst",
    "support_s",
    "analyst_s",
    "support_e",
    "analyst_e",
];

pub struct Seed {
    pub full_name: &'static str,
    pub email: &'static str,
    pub ssn: &'static str,
    pub phone: &'static str,
    pub birth: &'static str,
    pub card: &'static str,
}

pub const SEEDS: [Seed; 3] = [
    Seed {
        full_name: "Yolanda Brightwater",
        email: "yolanda.bw@example.net",
        ssn: "321-54-8876",
        phone: "+1-415-555-0123",
        birth: "1988-11-02",
        card: "4000 1234 5678 9010",
    },
    Seed {
        full_name: "Zebulon Quixote-Marchbanks",
        email: "zq.marchbanks@example.org",
        ssn: "987-65-4329",
        phone: "+1-617-555-0199",
        birth: "1979-03-14",
        card: "5500 0000 0000 0004",
    },
    Seed {
        full_name: "Zyx Quill-Ombervelt",
        email: "zyx.ombervelt@example.org",
        ssn: "246-80-1357",
        phone: "+1-212-555-0188",
        birth: "1991-06-27",
        card: "3782 8224 6310 0052",
    },
];

pub struct Env {
    pub db: String,
    pub port: u16,
    /// Extra forbidden strings computed by the server (md5 of each value).
    pub md5s: Vec<String>,
    /// OID of `public.f_first()`, for FunctionCall.
    pub f_first_oid: u32,
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Objects a superuser defines directly in Postgres (not through the proxy), over the
/// protected table: views, functions, a procedure, sinks, a constraint that echoes rows.
const SUPERUSER_OBJECTS: &str = r#"
ALTER TABLE public.customers ADD CONSTRAINT id_positive CHECK (id > 0);
CREATE VIEW public.v_customers AS SELECT * FROM public.customers;
CREATE VIEW public.v_names AS SELECT id, full_name, upper(full_name) AS up FROM public.customers;
CREATE MATERIALIZED VIEW public.mv_names AS SELECT id, full_name FROM public.customers;
CREATE FUNCTION public.f_names() RETURNS SETOF text LANGUAGE sql AS 'SELECT full_name FROM public.customers';
CREATE FUNCTION public.f_first() RETURNS text LANGUAGE sql AS 'SELECT full_name FROM public.customers WHERE id = 2';
CREATE FUNCTION public.f_secdef() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER AS 'SELECT full_name FROM public.customers';
CREATE FUNCTION public.f_echo(t text) RETURNS text LANGUAGE sql AS 'SELECT t';
CREATE FUNCTION public.f_raise() RETURNS void LANGUAGE plpgsql AS $f$
DECLARE r record; BEGIN FOR r IN SELECT full_name FROM public.customers LOOP RAISE NOTICE 'n=%', r.full_name; END LOOP; END $f$;
CREATE FUNCTION public.f_fail() RETURNS void LANGUAGE plpgsql AS $f$
BEGIN RAISE EXCEPTION 'failed' USING DETAIL = (SELECT full_name FROM public.customers WHERE id = 2); END $f$;
CREATE FUNCTION public.f_exec(q text) RETURNS SETOF text LANGUAGE plpgsql AS $f$ BEGIN RETURN QUERY EXECUTE q; END $f$;
CREATE FUNCTION public.f_log(t text) RETURNS text LANGUAGE plpgsql AS $f$ BEGIN RAISE NOTICE 'saw %', t; RETURN t; END $f$;
CREATE PROCEDURE public.p_raise() LANGUAGE plpgsql AS $f$ BEGIN PERFORM public.f_raise(); END $f$;
CREATE TABLE public.customers_archive () INHERITS (public.customers);
INSERT INTO public.customers_archive SELECT * FROM ONLY public.customers WHERE id = 2;
GRANT ALL ON public.customers_archive TO PUBLIC;
CREATE TABLE public.sink (v text);
CREATE TABLE public.uniq_sink (v text UNIQUE);
GRANT SELECT ON public.v_customers, public.v_names, public.mv_names TO PUBLIC;
GRANT ALL ON public.sink, public.uniq_sink TO PUBLIC;
ANALYZE public.customers;
ANALYZE public.mv_names;
"#;

/// Cluster, roles, table, proxy, seed and superuser-defined objects, once per binary.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let c = shared();
        for r in ROLES {
            c.pg.create_login_role(r, PW, PasswordEncryption::Scram)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        c.sql(
            "postgres",
            "GRANT support TO support_s, support_e; GRANT analyst TO analyst_s, analyst_e;",
        );
        // Keep the harness's own lines, then let every role in over TCP without a password.
        c.pg.set_hba_prefix(&[
            format!("hostnossl all {TLS_ONLY_USER} all reject"),
            "host all all 127.0.0.1/32 trust".to_string(),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let db = c.fresh_db("adversarial");
        c.sql(
            &db,
            &format!(
                "CREATE TABLE public.customers (id bigserial PRIMARY KEY, full_name text NOT NULL, \
                 email bytea, ssn bytea, phone bytea, birth_date bytea, card_number bytea); \
                 GRANT ALL ON public.customers, public.customers_id_seq TO PUBLIC; \
                 GRANT CREATE ON DATABASE {db} TO PUBLIC; \
                 CREATE SCHEMA support_s AUTHORIZATION support_s; \
                 CREATE SCHEMA analyst_s AUTHORIZATION analyst_s; \
                 CREATE TABLE support_s.customers (id bigint, full_name text, email text, ssn text, \
                   phone text, birth_date date, card_number text); \
                 INSERT INTO support_s.customers VALUES (1, 'Shadow Person', 'shadow@x', '', '', NULL, ''); \
                 ALTER TABLE support_s.customers OWNER TO support_s; \
                 CREATE TABLE analyst_s.customers (LIKE support_s.customers); \
                 INSERT INTO analyst_s.customers SELECT * FROM support_s.customers; \
                 ALTER TABLE analyst_s.customers OWNER TO analyst_s;"
            ),
        );
        let port = crate::common::customers::proxy_for_binary(c);
        // Seed through the proxy as admin, with literals (the simple protocol encrypts them).
        let mut sql = String::from("SET client_min_messages = warning;\n");
        for s in &SEEDS {
            sql.push_str(&format!(
                "INSERT INTO customers (full_name, email, ssn, phone, birth_date, card_number) \
                 VALUES ({}, {}, {}, {}, {}, {});\n",
                lit(s.full_name),
                lit(s.email),
                lit(s.ssn),
                lit(s.phone),
                lit(s.birth),
                lit(s.card)
            ));
        }
        let out = psql(port, &db, "admin", PW, &["-v", "ON_ERROR_STOP=1"], Some(&sql));
        assert!(out.status.success(), "seed failed: {}", out.stderr);
        let stored = c.sql(&db, "SELECT count(*) FROM customers WHERE id = 2 AND ssn IS NOT NULL");
        assert_eq!(stored.trim(), "1", "seed did not land");
        c.sql(&db, SUPERUSER_OBJECTS);
        let mut md5s = Vec::new();
        for s in &SEEDS {
            for v in [s.full_name, s.email, s.ssn, s.phone, s.card] {
                md5s.push(c.sql(&db, &format!("SELECT md5({})", lit(v))).trim().to_string());
            }
        }
        let f_first_oid = c
            .sql(&db, "SELECT 'public.f_first'::regproc::oid")
            .trim()
            .parse()
            .expect("oid");
        Env {
            db,
            port,
            md5s,
            f_first_oid,
        }
    })
}

/// The base role whose masks apply (`support_s` → `support`).
pub fn base_role(role: &str) -> &str {
    if role.starts_with("support") {
        "support"
    } else if role.starts_with("analyst") {
        "analyst"
    } else {
        role
    }
}

/// Strings that must not appear (case-insensitively, or in an encoded form) in anything the
/// given role receives. What the role's masks legitimately keep is left out.
pub fn forbidden(role: &str) -> Vec<String> {
    let analyst = base_role(role) == "analyst";
    let mut v: Vec<String> = Vec::new();
    for s in &SEEDS {
        // full_name: support keeps the first letter only; analyst gets NULL.
        let mut words = s.full_name.split([' ', '-']);
        if let Some(first) = words.next() {
            v.push(if analyst {
                first.to_string()
            } else {
                first[1..].to_string()
            });
        }
        v.extend(words.map(str::to_string));
        // email: support keeps the first letter and the domain.
        let (local, domain) = s.email.split_once('@').unwrap_or((s.email, ""));
        v.push(local[1..].to_string());
        if analyst {
            v.push(local.to_string());
            v.push(format!("{}@{}", &local[local.len() - 3..], &domain[..3]));
        }
        // ssn: support keeps the last four digits.
        v.push(s.ssn[..6].to_string());
        v.push(s.ssn.replace('-', ""));
        v.push(s.ssn[4..].to_string());
        if analyst {
            v.push(s.ssn[6..].to_string());
        }
        // phone +1-AAA-BBB-CCCC: support keeps "1" and the last four.
        v.push(s.phone[2..10].to_string());
        v.push(s.phone[3..].replace('-', ""));
        v.push(s.phone[7..].to_string());
        if analyst {
            v.push(s.phone[10..].to_string());
        }
        // card: support keeps the last four digits.
        v.push(s.card[..9].to_string());
        v.push(s.card.replace(' ', ""));
        v.push(s.card[10..].to_string());
        if analyst {
            v.push(s.card[14..].to_string());
        }
        // birth date: support keeps the year.
        v.push(s.birth.to_string());
        v.push(s.birth.replace('-', ""));
        v.push(s.birth[4..].to_string());
        if analyst {
            v.push(format!("{}-", &s.birth[..4]));
        }
    }
    v.retain(|f| f.len() >= 4);
    v
}

/// A forbidden needle, with how it is searched for.
pub struct Needle {
    pub what: String,
    pub text: String,
    pub case_insensitive: bool,
}

/// All needles for a role: the plaintext fragments, lowercased/uppercased (via case-insensitive
/// matching), reversed, hex, base64 (three alignments), digits only, md5, binary dates.
pub fn needles(role: &str) -> (Vec<Needle>, Vec<(String, Vec<u8>)>) {
    let e = env();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut push = |what: String, text: String, ci: bool| {
        if text.len() >= 4 && seen.insert((text.clone(), ci)) {
            out.push(Needle {
                what,
                text,
                case_insensitive: ci,
            });
        }
    };
    for f in forbidden(role) {
        push(format!("plaintext {f:?}"), f.clone(), true);
        if f.len() >= 5 {
            push(format!("reversed {f:?}"), f.chars().rev().collect(), true);
        }
        push(format!("hex of {f:?}"), hex::encode(&f), true);
        let digits: String = f.chars().filter(char::is_ascii_digit).collect();
        if digits.len() >= 6 {
            push(format!("digits of {f:?}"), digits, false);
        }
        if f.len() >= 6 {
            for k in 0..3 {
                let tail = &f.as_bytes()[k..];
                let n = (tail.len() / 3) * 3;
                if n >= 6 {
                    let b = base64::engine::general_purpose::STANDARD.encode(&tail[..n]);
                    push(format!("base64 of {f:?}+{k}"), b, false);
                }
            }
        }
    }
    for m in &e.md5s {
        push(format!("md5 {m}"), m.clone(), true);
    }
    // Dates in the binary format: int32 days since 2000-01-01, big-endian.
    let mut raw = Vec::new();
    let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).expect("epoch");
    for s in &SEEDS {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s.birth, "%Y-%m-%d") {
            let days = (d - epoch).num_days() as i32;
            raw.push((
                format!("binary date {}", s.birth),
                days.to_be_bytes().to_vec(),
            ));
        }
    }
    (out, raw)
}

pub type Msgs = Vec<(u8, Vec<u8>)>;

/// Every leak found in `msgs` for `role`, as readable lines.
pub fn leaks(role: &str, msgs: &Msgs) -> Vec<String> {
    let (needles, raw) = needles(role);
    let mut found = Vec::new();
    for (tag, body) in msgs {
        let text = String::from_utf8_lossy(body);
        let lower = text.to_lowercase();
        for n in &needles {
            let hit = if n.case_insensitive {
                lower.contains(&n.text.to_lowercase())
            } else {
                text.contains(&n.text)
            };
            if hit {
                found.push(format!(
                    "{} in '{}' message: {}",
                    n.what,
                    *tag as char,
                    snippet(*tag, body)
                ));
            }
        }
        if *tag == b'D' {
            for (what, pat) in &raw {
                if body.windows(pat.len()).any(|w| w == pat.as_slice()) {
                    found.push(format!("{what} in DataRow"));
                }
            }
        }
    }
    found
}

/// A printable rendering of a message for reports.
pub fn snippet(tag: u8, body: &[u8]) -> String {
    let s = if tag == b'E' || tag == b'N' {
        format!("{:?}", fields(body))
    } else {
        String::from_utf8_lossy(body)
            .chars()
            .map(|c| if c.is_control() { '.' } else { c })
            .collect()
    };
    s.chars().take(300).collect()
}

// ---- raw protocol client --------------------------------------------------------------------

fn cstr(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(s.as_bytes());
    b.push(0);
}

pub fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend((types.len() as i16).to_be_bytes());
    for t in types {
        b.extend(t.to_be_bytes());
    }
    msg(b'P', &b)
}

/// Bind with text parameters (None = NULL) and one result format code for all columns.
pub fn bind(
    portal: &str,
    stmt: &str,
    params: &[Option<&[u8]>],
    param_fmt: i16,
    result_fmt: i16,
) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, stmt);
    b.extend(1_i16.to_be_bytes());
    b.extend(param_fmt.to_be_bytes());
    b.extend((params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            None => b.extend((-1_i32).to_be_bytes()),
            Some(v) => {
                b.extend((v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
        }
    }
    b.extend(1_i16.to_be_bytes());
    b.extend(result_fmt.to_be_bytes());
    msg(b'B', &b)
}

pub fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    msg(b'D', &b)
}

pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend(max_rows.to_be_bytes());
    msg(b'E', &b)
}

pub fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    msg(b'C', &b)
}

pub fn sync() -> Vec<u8> {
    msg(b'S', &[])
}

pub fn flush() -> Vec<u8> {
    msg(b'H', &[])
}

/// FunctionCall of `oid` with no arguments, asking for a text result.
pub fn function_call(oid: u32) -> Vec<u8> {
    let mut b = oid.to_be_bytes().to_vec();
    b.extend(0_i16.to_be_bytes());
    b.extend(0_i16.to_be_bytes());
    b.extend(0_i16.to_be_bytes());
    msg(b'F', &b)
}

/// Connects and logs in; returns the stream and the login messages (also checked for leaks), or
/// why the login failed with the messages received so far.
pub async fn login(
    role: &str,
    extra: &[(&str, &str)],
) -> Result<(TcpStream, Msgs), (String, Msgs)> {
    let e = env();
    let mut s = match TcpStream::connect(("127.0.0.1", e.port)).await {
        Ok(s) => s,
        Err(err) => return Err((format!("connect: {err}"), Vec::new())),
    };
    let mut params = vec![("user", role), ("database", e.db.as_str())];
    params.extend_from_slice(extra);
    if let Err(err) = s
        .write_all(&crate::common::wire::startup_with(&params))
        .await
    {
        return Err((format!("send startup: {err}"), Vec::new()));
    }
    let mut msgs = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match read_msg(&mut s).await {
                Ok(Some(m)) => {
                    let tag = m.0;
                    msgs.push(m);
                    if tag == b'Z' {
                        return Ok(());
                    }
                    if tag == b'E' {
                        return Err("login refused".to_string());
                    }
                }
                Ok(None) => return Err("closed during login".to_string()),
                Err(err) => return Err(format!("read during login: {err}")),
            }
        }
    })
    .await;
    match done {
        Ok(Ok(())) => Ok((s, msgs)),
        Ok(Err(why)) => Err((why, msgs)),
        Err(_) => Err(("login timed out".to_string(), msgs)),
    }
}

/// Sends `bytes` and reads until `readies` ReadyForQuery messages arrived (or the peer closed,
/// or 10 s passed: `timed_out`).
pub async fn exchange(s: &mut TcpStream, bytes: &[u8], readies: usize) -> (Msgs, bool) {
    let mut out = Vec::new();
    if s.write_all(bytes).await.is_err() {
        return (out, false);
    }
    let mut seen = 0;
    let res = tokio::time::timeout(Duration::from_secs(10), async {
        while seen < readies {
            match read_msg(s).await {
                Ok(Some(m)) => {
                    if m.0 == b'Z' {
                        seen += 1;
                    }
                    out.push(m);
                }
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    (out, res.is_err())
}

/// Whether `msgs` holds an ErrorResponse.
pub fn refused(msgs: &Msgs) -> bool {
    msgs.iter().any(|(t, _)| *t == b'E')
}

/// What an observer can compare between two runs: message kinds, row/complete contents and
/// SQLSTATEs (not the error text, whose position field follows the literal's length).
pub fn observable(msgs: &Msgs) -> Vec<String> {
    msgs.iter()
        .filter(|(t, _)| !matches!(*t, b'K' | b'S' | b'A' | b'N'))
        .map(|(t, b)| match *t {
            b'E' => format!("E {}", fields(b).get(&'C').cloned().unwrap_or_default()),
            b'D' | b'C' | b'T' => format!("{} {}", *t as char, snippet(*t, b)),
            other => (other as char).to_string(),
        })
        .collect()
}

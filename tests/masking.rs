//! Issue 4 proof: per-role masking through the real proxy with the example rules in `rules/`.
//!
//! One cluster, one database and one proxy for the whole binary: the tests only read after the
//! seed, so they can share them. The same `SELECT * FROM customers` (and explicit column lists)
//! is checked for every role, in the text (simple query) and binary (prepared) result formats,
//! with the masked values spelled out exactly.

mod common;

use std::sync::OnceLock;

use chrono::NaiveDate;
use common::*;
use pgveil::pgtemp::PasswordEncryption;
use tokio_postgres::SimpleQueryMessage;

const PW: &str = "Role-Pa55word";
const ADMIN: &str = "admin";
const SUPPORT: &str = "support";
const ANALYST: &str = "analyst";
/// Member of `support` only: inherits support's masks.
const SUPPORT_LEAD: &str = "support_lead";
/// Member of `support` and of `admin`: the most permissive access (plaintext) wins.
const SUPPORT_ADMIN: &str = "support_admin";
/// Not named by any rule and member of nothing: `default` (deny) applies.
const STRANGER: &str = "stranger";

const TABLE: &str =
    "CREATE TABLE public.customers (id bigserial PRIMARY KEY, full_name text NOT NULL, \
     email bytea, ssn bytea, phone bytea, birth_date bytea, card_number bytea); \
     GRANT ALL ON public.customers, public.customers_id_seq TO PUBLIC;";

/// One seeded customer and what support must see of it.
struct Person {
    full_name: &'static str,
    email: &'static str,
    ssn: &'static str,
    phone: &'static str,
    birth: &'static str,
    card: &'static str,
    // support's view
    m_full_name: &'static str,
    m_email: &'static str,
    m_ssn: &'static str,
    m_phone: &'static str,
    m_birth: &'static str,
    m_card: &'static str,
}

const PEOPLE: [Person; 3] = [
    Person {
        full_name: "Alice Smith",
        email: "alice@example.com",
        ssn: "123-45-6789",
        phone: "+1-202-555-0143",
        birth: "1984-07-19",
        card: "4111 1111 1111 1111",
        m_full_name: "A**** *****",
        m_email: "a****@example.com",
        m_ssn: "***-**-6789",
        m_phone: "+1-***-***-0143",
        m_birth: "1984-01-01",
        m_card: "**** **** **** 1111",
    },
    Person {
        full_name: "Zebulon Quixote-Marchbanks",
        email: "zq.marchbanks@example.org",
        ssn: "987-65-4329",
        phone: "+1-617-555-0199",
        birth: "1979-03-14",
        card: "5500 0000 0000 0004",
        m_full_name: "Z****** *******-**********",
        m_email: "z************@example.org",
        m_ssn: "***-**-4329",
        m_phone: "+1-***-***-0199",
        m_birth: "1979-01-01",
        m_card: "**** **** **** 0004",
    },
    // Same email as Alice: the analyst's pseudonyms must be equal for rows 1 and 3.
    Person {
        full_name: "Alice Jones",
        email: "alice@example.com",
        ssn: "555-12-3498",
        phone: "+1-303-555-0177",
        birth: "1990-12-31",
        card: "3400 1234 5678 9012",
        m_full_name: "A**** *****",
        m_email: "a****@example.com",
        m_ssn: "***-**-3498",
        m_phone: "+1-***-***-0177",
        m_birth: "1990-01-01",
        m_card: "**** **** **** 9012",
    },
];

struct Env {
    db: String,
    port: u16,
}

/// Cluster, roles, table, proxy and seed, once per binary. Seeding goes through the proxy as
/// admin (prepared statements, so the proxy encrypts), from a plain thread with its own runtime
/// because the caller is already inside a tokio runtime.
fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let c = shared();
        for r in [ADMIN, SUPPORT, ANALYST, SUPPORT_LEAD, SUPPORT_ADMIN, STRANGER] {
            c.pg.create_login_role(r, PW, PasswordEncryption::Scram)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        c.sql(
            "postgres",
            "GRANT support TO support_lead; GRANT support, admin TO support_admin;",
        );
        let db = c.fresh_db("masking");
        c.sql(&db, TABLE);
        let port = crate::common::customers::proxy_for_binary(c);
        let db2 = db.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let a = connect(port, &db2, ADMIN, PW).await.expect("admin connects");
                for p in &PEOPLE {
                    let bd = NaiveDate::parse_from_str(p.birth, "%Y-%m-%d").expect("date");
                    a.execute(
                        "INSERT INTO customers (full_name, email, ssn, phone, birth_date, card_number) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[&p.full_name, &p.email, &p.ssn, &p.phone, &bd, &p.card],
                    )
                    .await
                    .expect("seed insert through the proxy as admin");
                }
            });
        })
        .join()
        .expect("seed thread");
        Env { db, port }
    })
}

async fn as_role(role: &str) -> tokio_postgres::Client {
    let e = env();
    connect(e.port, &e.db, role, PW)
        .await
        .unwrap_or_else(|err| panic!("connect as {role}: {err}"))
}

/// SQLSTATE and message of an error (`Display` of a server error says only "db error").
fn describe_err(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

const COLS: &str = "id, full_name, email, ssn, phone, birth_date, card_number";

/// Rows of a simple query as optional strings, in order.
async fn text_rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe_err(&e)));
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// Asserts every seeded row, in the text and the binary format, for a role that should see
/// either plaintext (`masked = false`) or support's masks (`masked = true`).
async fn check_full_view(role: &str, masked: bool) {
    let c = as_role(role).await;
    for sql in [
        "SELECT * FROM customers ORDER BY id".to_string(),
        format!("SELECT {COLS} FROM customers ORDER BY id"),
        format!("SELECT {COLS} FROM public.customers AS c ORDER BY c.id"),
    ] {
        // Text format, simple protocol.
        let rows = text_rows(&c, &sql).await;
        assert_eq!(rows.len(), PEOPLE.len(), "{role}: {sql}");
        for (row, p) in rows.iter().zip(PEOPLE.iter()) {
            let want: Vec<&str> = if masked {
                vec![
                    p.m_full_name,
                    p.m_email,
                    p.m_ssn,
                    p.m_phone,
                    p.m_birth,
                    p.m_card,
                ]
            } else {
                vec![p.full_name, p.email, p.ssn, p.phone, p.birth, p.card]
            };
            let got: Vec<&str> = row[1..]
                .iter()
                .map(|v| v.as_deref().unwrap_or("NULL"))
                .collect();
            assert_eq!(got, want, "{role} (text): {sql}");
        }
        // Binary format, extended protocol (tokio-postgres asks for binary results).
        let rows = c
            .query(sql.as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("{role} (binary) {sql}: {}", describe_err(&e)));
        assert_eq!(rows.len(), PEOPLE.len(), "{role}: {sql}");
        for (row, p) in rows.iter().zip(PEOPLE.iter()) {
            let (n, e, s, ph, b, cd) = if masked {
                (
                    p.m_full_name,
                    p.m_email,
                    p.m_ssn,
                    p.m_phone,
                    p.m_birth,
                    p.m_card,
                )
            } else {
                (p.full_name, p.email, p.ssn, p.phone, p.birth, p.card)
            };
            assert_eq!(
                row.get::<_, String>("full_name"),
                n,
                "{role} (binary): {sql}"
            );
            assert_eq!(row.get::<_, String>("email"), e, "{role} (binary): {sql}");
            assert_eq!(row.get::<_, String>("ssn"), s, "{role} (binary): {sql}");
            assert_eq!(row.get::<_, String>("phone"), ph, "{role} (binary): {sql}");
            assert_eq!(
                row.get::<_, NaiveDate>("birth_date").to_string(),
                b,
                "{role} (binary): {sql}"
            );
            assert_eq!(
                row.get::<_, String>("card_number"),
                cd,
                "{role} (binary): {sql}"
            );
        }
    }
    // Masks also apply through a parameterised lookup on a deterministic column.
    let row = c
        .query_one(
            "SELECT full_name, ssn FROM customers WHERE email = $1 AND id = 2",
            &[&PEOPLE[1].email],
        )
        .await
        .unwrap_or_else(|e| panic!("{role}: lookup by email: {}", describe_err(&e)));
    let (n, s) = if masked {
        (PEOPLE[1].m_full_name, PEOPLE[1].m_ssn)
    } else {
        (PEOPLE[1].full_name, PEOPLE[1].ssn)
    };
    assert_eq!(row.get::<_, String>(0), n, "{role}");
    assert_eq!(row.get::<_, String>(1), s, "{role}");
}

#[tokio::test]
async fn admin_sees_plaintext() {
    check_full_view(ADMIN, false).await;
}

#[tokio::test]
async fn support_sees_exact_masks() {
    check_full_view(SUPPORT, true).await;
}

#[tokio::test]
async fn support_masks_are_computed_in_sql_too() {
    // full_name is plaintext at rest: expressions over it must see the masked value.
    let c = as_role(SUPPORT).await;
    let rows = text_rows(
        &c,
        "SELECT upper(full_name), length(full_name), full_name || '!' FROM customers WHERE id = 2",
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![
            Some("Z****** *******-**********".to_string()),
            Some("26".to_string()),
            Some("Z****** *******-**********!".to_string())
        ]]
    );
    let rows = text_rows(
        &c,
        "SELECT count(*) FROM customers WHERE full_name = 'Zebulon Quixote-Marchbanks'",
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![Some("0".to_string())]],
        "predicate saw plaintext"
    );
}

#[tokio::test]
async fn role_inheritance_gives_support_masks() {
    check_full_view(SUPPORT_LEAD, true).await;
}

#[tokio::test]
async fn most_permissive_role_wins() {
    check_full_view(SUPPORT_ADMIN, false).await;
}

#[tokio::test]
async fn unknown_role_is_denied_by_default() {
    let c = as_role(STRANGER).await;
    for sql in [
        "SELECT * FROM customers",
        "SELECT full_name FROM customers",
        "SELECT email FROM customers",
        "SELECT id FROM customers WHERE full_name LIKE 'Z%'",
    ] {
        for binary in [false, true] {
            let e = if binary {
                c.query(sql, &[]).await.map(|_| ()).expect_err(sql)
            } else {
                c.simple_query(sql).await.map(|_| ()).expect_err(sql)
            };
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
            assert!(!e.to_string().contains("Zebulon"), "{e}");
        }
    }
    // Untagged columns stay readable: default deny is about tagged columns, not the table.
    let rows = text_rows(&c, "SELECT id FROM customers ORDER BY id").await;
    assert_eq!(rows.len(), PEOPLE.len());
}

#[tokio::test]
async fn analyst_gets_pseudonyms_nulls_and_refusals() {
    let c = as_role(ANALYST).await;
    // ssn (default deny) and card_number (deny) make SELECT * a refusal, in both formats.
    for sql in [
        "SELECT * FROM customers",
        "SELECT ssn FROM customers",
        "SELECT card_number FROM customers",
        "SELECT id FROM customers WHERE ssn = '987-65-4329'",
    ] {
        let e = c.simple_query(sql).await.map(|_| ()).expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "text {sql}: {e}");
        let e = c.query(sql, &[]).await.map(|_| ()).expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "binary {sql}: {e}");
        assert!(!e.to_string().contains("987-65"), "{e}");
    }
    let sql = "SELECT id, full_name, email, phone, birth_date FROM customers ORDER BY id";
    let text = text_rows(&c, sql).await;
    assert_eq!(text.len(), PEOPLE.len());
    for row in &text {
        assert_eq!(row[1], None, "full_name must be NULL for analyst");
        assert_eq!(row[3], None, "phone must be NULL for analyst");
        assert_eq!(row[4], None, "birth_date must be NULL for analyst");
    }
    let bin = c
        .query(sql, &[])
        .await
        .expect("analyst explicit columns (binary)");
    let mut hashes_bin = Vec::new();
    for row in &bin {
        assert_eq!(row.get::<_, Option<String>>(1), None);
        assert_eq!(row.get::<_, Option<String>>(3), None);
        assert_eq!(row.get::<_, Option<NaiveDate>>(4), None);
        hashes_bin.push(
            row.get::<_, Option<String>>(2)
                .expect("email pseudonym present"),
        );
    }
    let hashes: Vec<String> = text
        .iter()
        .map(|r| r[2].clone().expect("email pseudonym present"))
        .collect();
    assert_eq!(hashes, hashes_bin, "text and binary pseudonyms differ");
    // Equal emails (rows 1 and 3) give equal pseudonyms; different ones differ.
    assert_eq!(hashes[0], hashes[2], "equal emails, different pseudonyms");
    assert_ne!(hashes[0], hashes[1], "different emails, equal pseudonyms");
    for (h, p) in hashes.iter().zip(PEOPLE.iter()) {
        let local = p.email.split('@').next().unwrap_or(p.email);
        assert!(
            !h.contains(local) && !h.contains("example"),
            "pseudonym {h} reveals the email"
        );
        assert!(h.len() >= 16, "pseudonym {h} too short to be a keyed hash");
    }
    // Stable across sessions.
    let c2 = as_role(ANALYST).await;
    let again: Vec<String> = text_rows(&c2, "SELECT email FROM customers ORDER BY id")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    assert_eq!(again, hashes, "pseudonyms not stable across sessions");
    // GROUP BY works on the pseudonym: Alice's email appears twice.
    let groups = text_rows(
        &c2,
        "SELECT email, count(*) FROM customers GROUP BY email ORDER BY count(*) DESC",
    )
    .await;
    assert_eq!(
        groups,
        vec![
            vec![Some(hashes[0].clone()), Some("2".to_string())],
            vec![Some(hashes[1].clone()), Some("1".to_string())]
        ],
        "GROUP BY over the pseudonym"
    );
}

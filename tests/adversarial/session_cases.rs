//! Issue 10, the classes the session layer closes: notifications (3), the
//! catalog failing open (4), policy changes that must reach prepared
//! statements, portals and cursors (6). Roles made for these cases are
//! created by [`setup`] so no other case's role changes underneath them.

use crate::cases::{case, Case, Step};
use crate::common::wire::{msg, query};
use crate::harness::*;

/// A support member that is also admin at login; the case revokes admin.
pub const REVOKED: &str = "support_rv";
/// Same, for the protocol-level variant.
pub const REVOKED_P: &str = "support_rvp";

pub fn setup() {
    let db = &env().db;
    for r in [REVOKED, REVOKED_P] {
        let _ = crate::common::shared().pg.psql(
            "postgres",
            &format!("DO $$BEGIN CREATE ROLE {r} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$; GRANT support, admin TO {r};"),
        );
    }
    let _ = crate::common::shared().pg.psql(
        db,
        "CREATE OR REPLACE FUNCTION public.f_notify() RETURNS trigger LANGUAGE plpgsql AS \
         $f$BEGIN PERFORM pg_notify('rows', row_to_json(NEW)::text); RETURN NEW; END$f$; \
         DROP TRIGGER IF EXISTS t_notify ON public.customers; \
         CREATE TRIGGER t_notify AFTER UPDATE ON public.customers FOR EACH ROW EXECUTE FUNCTION public.f_notify();",
    );
}

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

fn sync() -> Vec<u8> {
    msg(b'S', b"")
}

pub fn session_state() -> Vec<Case> {
    vec![
        case("LISTEN", &["LISTEN rows", "UPDATE customers SET full_name = full_name WHERE id = 2", "SELECT 1"]),
        case("listen behind a comment", &["/* x */ LISTEN rows", "UPDATE customers SET full_name = full_name", "SELECT 1"]),
        case("listen, protocol level", &[])
            .then(Step::Raw([parse("", "LISTEN rows"), bind("", ""), execute(""), sync()].concat(), 1))
            .q("UPDATE customers SET full_name = full_name WHERE id = 2")
            .q("SELECT 1"),
        case("catalog read under statement_timeout=1", &["SELECT * FROM v_customers", "SELECT * FROM v_names"])
            .startup(&[("statement_timeout", "1")]),
        case(
            "catalog frozen by pg_temp.text",
            &[
                "CREATE TYPE pg_temp.text AS (x int)",
                "CREATE FUNCTION pg_temp.array_to_string(a anyarray, s text) RETURNS pg_catalog.text LANGUAGE sql AS 'SELECT NULL::pg_catalog.text'",
            ],
        )
        .then(Step::Su("CREATE OR REPLACE VIEW public.v_late AS SELECT id, full_name, email FROM public.customers; GRANT SELECT ON public.v_late TO PUBLIC".into()))
        .q("SELECT pg_sleep(1.3)")
        .q("SELECT * FROM v_late"),
        revoked_sql(),
        revoked_protocol(),
        revoked_protocol_param(),
    ]
}

/// PREPARE and a WITH HOLD cursor while a member of admin, then REVOKE.
fn revoked_sql() -> Case {
    case(
        "REVOKE admin: SQL PREPARE and cursors",
        &[
            "PREPARE p AS SELECT id, full_name, email FROM customers",
            "BEGIN",
            "DECLARE c CURSOR WITH HOLD FOR SELECT id, full_name, email FROM customers",
            "COMMIT",
        ],
    )
    .roles(&[REVOKED])
    .then(Step::Su(format!("REVOKE admin FROM {REVOKED}")))
    .q("SELECT pg_sleep(1.3)")
    .q("EXECUTE p")
    .q("/* */ EXECUTE p")
    .q("FETCH ALL FROM c")
    .q("MOVE BACKWARD ALL IN c")
    .q("FETCH ALL FROM c")
    .then(Step::Raw([execute("c"), sync()].concat(), 1))
    .then(Step::Su(format!("GRANT admin TO {REVOKED}")))
}

/// A named statement and a suspended portal while a member of admin.
fn revoked_protocol() -> Case {
    case("REVOKE admin: protocol statements and portals", &[])
        .roles(&[REVOKED_P])
        .then(Step::Raw(
            [
                parse("ps", "SELECT id, full_name, email FROM customers"),
                sync(),
            ]
            .concat(),
            1,
        ))
        .then(Step::Raw(
            [query("BEGIN"), bind("pp", "ps"), sync()].concat(),
            2,
        ))
        .then(Step::Su(format!("REVOKE admin FROM {REVOKED_P}")))
        .q("SELECT pg_sleep(1.3)")
        .then(Step::Raw([bind("", "ps"), execute(""), sync()].concat(), 1))
        .then(Step::Raw([execute("pp"), sync()].concat(), 1))
        .then(Step::Raw([query("EXECUTE ps")].concat(), 1))
        .q("ROLLBACK")
        .then(Step::Su(format!("GRANT admin TO {REVOKED_P}")))
}

/// A statement whose only tagged result column is plaintext at rest (admin
/// reads it as stored) but which is rewritten for its encrypted parameter:
/// re-judged after REVOKE, its SQL is unchanged, so the result columns must
/// be judged again too, with and without a Describe from the client.
fn revoked_protocol_param() -> Case {
    let email: &[u8] = b"zq.marchbanks@example.org";
    let by_email = |portal: &str| crate::harness::bind(portal, "pe", &[Some(email)], 0, 0);
    case(
        "REVOKE admin: encrypted parameter, plaintext-at-rest result",
        &[],
    )
    .roles(&[REVOKED_P])
    .then(Step::Raw(
        [
            parse("pe", "SELECT id, full_name FROM customers WHERE email = $1"),
            parse("pf", "SELECT full_name, email FROM customers"),
            sync(),
        ]
        .concat(),
        1,
    ))
    .then(Step::Raw([by_email(""), execute(""), sync()].concat(), 1))
    .then(Step::Mark)
    .then(Step::Su(format!("REVOKE admin FROM {REVOKED_P}")))
    .q("SELECT pg_sleep(1.3)")
    .then(Step::Raw([by_email(""), execute(""), sync()].concat(), 1))
    .then(Step::Raw(
        [
            by_email(""),
            execute(""),
            by_email("x"),
            execute("x"),
            sync(),
        ]
        .concat(),
        1,
    ))
    .then(Step::Raw(
        [
            crate::harness::describe(b'S', "pf"),
            bind("", "pf"),
            execute(""),
            sync(),
        ]
        .concat(),
        1,
    ))
    .then(Step::Raw(
        [
            crate::harness::describe(b'S', "pe"),
            by_email(""),
            execute(""),
            sync(),
        ]
        .concat(),
        1,
    ))
    .then(Step::Su(format!("GRANT admin TO {REVOKED_P}")))
}

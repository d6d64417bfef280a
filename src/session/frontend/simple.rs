//! Simple-protocol messages: Query and FunctionCall, and the accounting of
//! untracked sessions.

use std::sync::Arc;

use bytes::BytesMut;

use super::{Action, Env};
use crate::protocol::messages::{put_query, query_text};
use crate::protocol::ProtocolError;
use crate::session::audit;
use crate::session::refusal;
use crate::session::state::{Effect, Expect, State};
use crate::sql::{self, Analysis};

/// A session neither under rules nor audited: only the reply accounting.
pub(super) fn untracked(
    frame: &[u8],
    st: &mut State,
    env: &Env<'_>,
) -> Result<Action, ProtocolError> {
    match frame[0] {
        b'Q' => st
            .expect
            .push_back(Expect::query(env.start, None, None, Vec::new())),
        b'F' => st
            .expect
            .push_back(Expect::FunctionCall { start: env.start }),
        _ => {}
    }
    Ok(Action::Forward)
}

/// Query: decoded and split into statements once; the split serves the DDL
/// check, the analysis and the audit templates.
pub(super) fn on_query(
    frame: &[u8],
    st: &mut State,
    env: &Env<'_>,
) -> Result<Action, ProtocolError> {
    let text = query_text(frame)?;
    let chunks = sql::split_statements(text);
    if chunks
        .iter()
        .any(|s| sql::statement_kind(s) == sql::StatementKind::Ddl)
    {
        st.ddl_pending = true;
    }
    let analysis = match super::precheck(&chunks, st, env) {
        Some(r) => Analysis::Refused(r),
        None => env.gate(env.analyse_simple(st, &chunks)),
    };
    match analysis {
        Analysis::Passthrough => {
            let mut audit = if env.audit_on() {
                audit::passthrough(&chunks, env.policy)
            } else {
                Vec::new()
            };
            let named: Vec<&str> = chunks
                .iter()
                .copied()
                .filter(|c| !c.trim().is_empty())
                .collect();
            executes_reveal(&named, &mut audit, st);
            let mut e = Expect::query(env.start, None, None, audit);
            set_effects(
                &mut e,
                chunks
                    .iter()
                    .filter(|c| !c.trim().is_empty())
                    .map(|c| Effect::of(c, None)),
            );
            st.expect.push_back(e);
            Ok(Action::Forward)
        }
        Analysis::Rewritten { sql, statements } => {
            let audit = if env.audit_on() {
                let roles = &st.catalog.current.roles;
                statements
                    .iter()
                    .map(|p| audit::from_plan(p, env.policy, roles))
                    .collect()
            } else {
                Vec::new()
            };
            let effects: Vec<Effect> = chunks
                .iter()
                .zip(&statements)
                .map(|(c, p)| match Effect::of(c, Some(p)) {
                    Effect::Prepare(n, params, _) => {
                        let a = audit::from_plan(p, env.policy, &st.catalog.current.roles);
                        Effect::Prepare(n, params, Some(Box::new(a)))
                    }
                    other => other,
                })
                .collect();
            let mut audit = audit;
            executes_reveal(&chunks, &mut audit, st);
            let mut e = Expect::query(env.start, Some(Arc::new(statements)), None, audit);
            set_effects(&mut e, effects.into_iter());
            st.expect.push_back(e);
            let mut out = BytesMut::with_capacity(sql.len() + 6);
            put_query(&mut out, &sql);
            Ok(Action::Replace(out))
        }
        Analysis::Refused(r) => {
            let out = refusal::query_stand_in(&r);
            let audit = if env.audit_on() {
                vec![audit::refused(text, r.sqlstate, env.policy)]
            } else {
                Vec::new()
            };
            st.expect
                .push_back(Expect::query(env.start, None, Some(r), audit));
            Ok(Action::Replace(out))
        }
    }
}

/// Statements that read through a name: an `EXECUTE name` reveals what its
/// prepared statement does, a `FETCH … FROM name` what its cursor's query
/// does. Their records name those tables and columns (their own text names
/// none). A DECLARE leaves its template for the FETCHes to come.
pub(super) fn executes_reveal(chunks: &[&str], audit: &mut [audit::StmtAudit], st: &mut State) {
    for (chunk, a) in chunks.iter().zip(audit.iter_mut()) {
        let through = match sql::object_op(chunk) {
            Some(sql::ObjectOp::Execute(name)) => st.tracker.prepared_audit.get(&name),
            Some(sql::ObjectOp::Fetch(name)) => st.tracker.cursor_audit.get(&name),
            Some(sql::ObjectOp::Declare { name, .. }) => {
                remember_cursor(&mut st.tracker, name, a.clone());
                None
            }
            _ => None,
        };
        if let Some(p) = through {
            a.kind = p.kind;
            a.tagged |= p.tagged;
            for t in &p.tables {
                if !a.tables.contains(t) {
                    a.tables.push(t.clone());
                }
            }
            for c in &p.columns {
                if !a.columns.contains(c) {
                    a.columns.push(c.clone());
                }
            }
        }
    }
}

/// Most cursor templates kept before those of closed cursors are dropped.
const MAX_CURSOR_TEMPLATES: usize = 1024;

/// Keeps a cursor's record template for its FETCHes. Templates outlive
/// their cursors (a DECLARE's template is set when it is sent, before the
/// server confirms it), so a session declaring ever new names prunes the
/// ones of cursors no longer open once there are many.
fn remember_cursor(tr: &mut crate::session::state::Tracker, name: String, a: audit::StmtAudit) {
    if tr.cursor_audit.len() >= MAX_CURSOR_TEMPLATES {
        let open = &tr.cursors;
        tr.cursor_audit.retain(|n, _| open.contains_key(n));
    }
    tr.cursor_audit.insert(name, a);
}

/// Records the statements' effects on the Query's queue entry, allocating
/// only when some statement has one.
fn set_effects(e: &mut Expect, effects: impl Iterator<Item = Effect>) {
    let Expect::Query { effects: slot, .. } = e else {
        return;
    };
    let all: Vec<Effect> = effects.collect();
    if all.iter().any(|x| !matches!(x, Effect::None)) {
        *slot = all;
    }
}

/// FunctionCall bypasses SQL entirely: nothing to analyse, so a restricted
/// session may not use it.
pub(super) fn on_function_call(
    frame: &[u8],
    st: &mut State,
    env: &Env<'_>,
) -> Result<Action, ProtocolError> {
    let catalog = &st.catalog.current;
    if !env.policy.is_empty() && (!st.catalog.loaded || catalog.restricted(env.policy)) {
        let r = sql::refuse::function_call_restricted();
        let mut out = BytesMut::new();
        let audit = if env.audit_on() {
            // Its record names the function: the server resolves the OID
            // just before it fails the stand-in (refusal time only).
            let oid = crate::protocol::messages::function_call_oid(frame)?;
            put_query(&mut out, &audit::function_name_sql(oid));
            st.expect.push_back(Expect::FunctionName {
                oid,
                reply: audit::NameLookup::default(),
            });
            vec![audit::function_call(oid, r.sqlstate)]
        } else {
            Vec::new()
        };
        out.extend_from_slice(&refusal::query_stand_in(&r));
        st.expect
            .push_back(Expect::query(env.start, None, Some(r), audit));
        return Ok(Action::Replace(out));
    }
    st.expect
        .push_back(Expect::FunctionCall { start: env.start });
    Ok(Action::Forward)
}

/// Test builds only: with `PGVEIL_FAULT_INJECTION=1`, the Query
/// `SELECT 'pgveil:panic'` panics inside the session, so the tests can prove
/// that a fault in one session never affects another. Release builds have
/// no such statement.
#[cfg(debug_assertions)]
pub(super) fn fault_injection(frame: &[u8]) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ON.get_or_init(|| std::env::var("PGVEIL_FAULT_INJECTION").is_ok_and(|v| v == "1"));
    if on && query_text(frame).is_ok_and(|t| t == "SELECT 'pgveil:panic'") {
        panic!("injected fault (PGVEIL_FAULT_INJECTION)");
    }
}

#[cfg(not(debug_assertions))]
pub(super) fn fault_injection(_frame: &[u8]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_templates_of_closed_cursors_are_pruned_past_the_bound() {
        let mut tr = crate::session::state::Tracker::default();
        let a = audit::StmtAudit {
            kind: crate::audit::StatementKind::Select,
            fingerprint: "declare".into(),
            tables: Vec::new(),
            columns: Vec::new(),
            tagged: false,
            refused: None,
        };
        tr.cursors.insert("open".into(), (0, true));
        remember_cursor(&mut tr, "open".into(), a.clone());
        for i in 0..MAX_CURSOR_TEMPLATES * 3 {
            remember_cursor(&mut tr, format!("c{i}"), a.clone());
        }
        assert!(tr.cursor_audit.len() <= MAX_CURSOR_TEMPLATES + 1);
        assert!(
            tr.cursor_audit.contains_key("open"),
            "an open cursor keeps its template"
        );
        let last = format!("c{}", MAX_CURSOR_TEMPLATES * 3 - 1);
        assert!(tr.cursor_audit.contains_key(&last));
    }
}

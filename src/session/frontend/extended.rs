//! Extended-protocol messages: Parse, Bind, Describe, Execute, Close.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use pgwire::messages::extendedquery::Parse;

use super::{Action, Env};
use crate::protocol::messages::{
    bind_names, bind_result_formats, decode_parse, describe_or_close, encode_parse, execute_portal,
};
use crate::protocol::rows::put_describe;
use crate::protocol::ProtocolError;
use crate::session::audit;
use crate::session::refusal;
use crate::session::rows;
use crate::session::state::{Effect, Expect, Portal, State, Stmt};
use crate::sql::{self, Analysis, ParamPlan, ParamUse, Refusal, StatementPlan};

/// Parameter type OIDs the server must see for encrypted parameters.
const BYTEA_OID: u32 = 17;
const BYTEA_ARRAY_OID: u32 = 1001;

pub(super) fn on_parse(
    frame: &[u8],
    st: &mut State,
    env: &Env<'_>,
) -> Result<Action, ProtocolError> {
    let parse = decode_parse(frame)?;
    let chunks = sql::split_statements(&parse.query);
    if chunks
        .iter()
        .any(|s| sql::statement_kind(s) == sql::StatementKind::Ddl)
    {
        st.ddl_pending = true;
    }
    if let Some(r) = super::precheck(&chunks, st, env) {
        return refuse_parse(&parse, r, st, env);
    }
    match env.gate(env.analyse(st, &chunks)) {
        Analysis::Passthrough => Ok(passthrough_parse(&parse, st, env)),
        Analysis::Rewritten {
            sql,
            mut statements,
        } if statements.len() == 1 => rewritten_parse(&parse, sql, statements.remove(0), st, env),
        Analysis::Rewritten { .. } => {
            refuse_parse(&parse, sql::refuse::one_statement_per_parse(), st, env)
        }
        Analysis::Refused(r) => refuse_parse(&parse, r, st, env),
    }
}

fn passthrough_parse(parse: &Parse, st: &mut State, env: &Env<'_>) -> Action {
    let mut audit = env
        .audit_on()
        .then(|| {
            audit::passthrough(&sql::split_statements(&parse.query), env.policy)
                .into_iter()
                .next()
        })
        .flatten();
    if let Some(a) = audit.as_mut() {
        super::simple::executes_reveal(&[&parse.query], std::slice::from_mut(a), st);
    }
    let stmt = Arc::new(Stmt {
        audit,
        query: parse.query.clone(),
        version: env.policy.rules.version.clone(),
        generation: st.catalog.generation,
        effect: Effect::of(&parse.query, None),
        ..Stmt::default()
    });
    stage(parse, stmt, st);
    Action::Forward
}

/// The statement a Parse prepares: usable by the messages pipelined behind
/// it, installed only once the server confirms it.
fn stage(parse: &Parse, stmt: Arc<Stmt>, st: &mut State) {
    let name = parse.name.clone().unwrap_or_default();
    st.tracker.pending.insert(name.clone(), stmt.clone());
    st.expect.push_back(Expect::Parse {
        refusal: None,
        audit: None,
        install: Some((name, stmt)),
    });
}

/// Forwards the rewritten statement with encrypted parameters retyped, and
/// a Describe of it, so an Execute without a Describe still gets its values
/// decrypted.
fn rewritten_parse(
    parse: &Parse,
    sql: String,
    plan: StatementPlan,
    st: &mut State,
    env: &Env<'_>,
) -> Result<Action, ProtocolError> {
    let name = parse.name.clone().unwrap_or_default();
    let plan = Arc::new(plan);
    let mut audit = env
        .audit_on()
        .then(|| audit::from_plan(&plan, env.policy, &st.catalog.current.roles));
    if let Some(a) = audit.as_mut() {
        super::simple::executes_reveal(&[&parse.query], std::slice::from_mut(a), st);
    }
    let stmt = Arc::new(Stmt {
        audit,
        plan: Some(plan.clone()),
        row: Mutex::new(None),
        query: parse.query.clone(),
        version: env.policy.rules.version.clone(),
        forwarded_shape: sql::fingerprint(&sql),
        declared: parse.type_oids.clone(),
        generation: st.catalog.generation,
        effect: Effect::of(&parse.query, Some(&plan)),
    });
    let mut types = parse.type_oids.clone();
    for (i, p) in plan.params.iter().enumerate() {
        if let ParamPlan::Encrypt { usage, .. } = p {
            if types.len() <= i {
                types.resize(i + 1, 0);
            }
            types[i] = match usage {
                ParamUse::Write => BYTEA_OID,
                ParamUse::Match => BYTEA_ARRAY_OID,
            };
        }
    }
    let mut out = BytesMut::new();
    encode_parse(&Parse::new(parse.name.clone(), sql, types), &mut out)?;
    put_describe(&mut out, b'S', &name);
    stage(parse, stmt.clone(), st);
    st.expect.push_back(Expect::DescribeStmt {
        stmt,
        internal: true,
        seen_params: false,
    });
    Ok(Action::Replace(out))
}

fn refuse_parse(
    parse: &Parse,
    r: Refusal,
    st: &mut State,
    env: &Env<'_>,
) -> Result<Action, ProtocolError> {
    // The stand-in fails on the server, so whatever statement the name had
    // there stays, and so does pgveil's record of it.
    let out = refusal::parse_stand_in(&r, parse.name.clone())?;
    let audit = env
        .audit_on()
        .then(|| audit::refused(&parse.query, r.sqlstate, env.policy));
    st.expect.push_back(Expect::Parse {
        refusal: Some(r),
        audit,
        install: None,
    });
    Ok(Action::Replace(out))
}

pub(super) fn on_bind(
    frame: &[u8],
    st: &mut State,
    env: &Env<'_>,
) -> Result<Action, ProtocolError> {
    let (portal, stmt_name) = bind_names(frame)?;
    let mut stmt = st.tracker.stmt(stmt_name).cloned().unwrap_or_default();
    if !st.catalog.loaded && !env.policy.is_empty() {
        return Ok(refuse_bind(&stmt, sql::refuse::no_catalog(), st));
    }
    let gen = st.catalog.generation;
    let judged_before = stmt.version != env.policy.rules.version || stmt.generation != gen;
    let rechecked = !stmt.query.is_empty() && judged_before;
    if rechecked {
        match recheck(&stmt, st, env) {
            Ok(fresh) => {
                st.tracker
                    .stmts
                    .insert(stmt_name.to_string(), fresh.clone());
                stmt = fresh;
            }
            Err(r) => return Ok(refuse_bind(&stmt, r, st)),
        }
    }
    if env.audit_down && stmt.plan.is_some() {
        return Ok(refuse_bind(&stmt, env.audit_refusal(), st));
    }
    let mut action = Action::Forward;
    if let Some(plan) = &stmt.plan {
        match rows::encrypt_bind(frame, &plan.params, &stmt.declared, env.policy) {
            Ok(Some(out)) => action = Action::Replace(out),
            Ok(None) => {}
            Err(e) => {
                let r = Refusal {
                    sqlstate: crate::error::ClientError::sqlstate(&e),
                    message: e.to_string(),
                    hint: None,
                };
                return Ok(refuse_bind(&stmt, r, st));
            }
        }
    }
    let formats = bind_result_formats(frame)?;
    let p = Arc::new(Portal {
        stmt: stmt.clone(),
        formats,
        generation: gen,
    });
    st.tracker.portals.insert(portal.to_string(), p);
    st.expect.push_back(Expect::Bind);
    if rechecked {
        action = redescribe(frame, action, stmt_name, &stmt, st);
    }
    Ok(action)
}

/// A re-checked statement learns its result columns again, under the
/// current roles and rules, from a Describe sent right behind its Bind
/// (answered before any Execute behind it). The columns judged before
/// cannot be reused: a column the old roles read in plaintext has no
/// entry there to re-judge, and would reach the client unmasked.
fn redescribe(
    frame: &[u8],
    action: Action,
    name: &str,
    stmt: &Arc<Stmt>,
    st: &mut State,
) -> Action {
    let mut out = match action {
        Action::Replace(out) => out,
        Action::Forward => BytesMut::from(frame),
    };
    put_describe(&mut out, b'S', name);
    st.expect.push_back(Expect::DescribeStmt {
        stmt: stmt.clone(),
        internal: true,
        seen_params: false,
    });
    Action::Replace(out)
}

/// A statement prepared under older rules, judged again under the current
/// ones. It keeps running when its shape (fingerprint, parameters, columns
/// and their actions) is unchanged, so the statement the server holds is
/// still the right one; otherwise it must be prepared again.
fn recheck(stmt: &Stmt, st: &State, env: &Env<'_>) -> Result<Arc<Stmt>, Refusal> {
    let changed = sql::refuse::rules_changed_since_prepare;
    let chunks = sql::split_statements(&stmt.query);
    let fresh_plan = match (env.analyse(st, &chunks), &stmt.plan) {
        (Analysis::Passthrough, None) => None,
        (
            Analysis::Rewritten {
                mut statements,
                sql: text,
            },
            Some(old),
        ) if statements.len() == 1 => {
            let new = statements.remove(0);
            if sql::fingerprint(&text) != stmt.forwarded_shape || new.params != old.params {
                return Err(changed());
            }
            Some(Arc::new(new))
        }
        (Analysis::Refused(r), _) => return Err(r),
        _ => return Err(changed()),
    };
    Ok(Arc::new(Stmt {
        audit: match &fresh_plan {
            Some(p) if env.audit_on() => {
                Some(audit::from_plan(p, env.policy, &st.catalog.current.roles))
            }
            _ => stmt.audit.clone(),
        },
        plan: fresh_plan,
        // Learned again by the Describe `on_bind` sends (see `redescribe`).
        row: Mutex::new(None),
        query: stmt.query.clone(),
        version: env.policy.rules.version.clone(),
        forwarded_shape: stmt.forwarded_shape.clone(),
        declared: stmt.declared.clone(),
        generation: st.catalog.generation,
        effect: stmt.effect.clone(),
    }))
}

/// Refuses a Bind by making the server fail it (so the server skips to Sync
/// exactly as for a real error); the backend swaps in the refusal.
fn refuse_bind(stmt: &Stmt, r: Refusal, st: &mut State) -> Action {
    let out = refusal::bind_stand_in(&r);
    let audit = stmt.audit.clone().map(|mut a| {
        a.refused = Some(r.sqlstate);
        a
    });
    st.expect.push_back(Expect::Parse {
        refusal: Some(r),
        audit,
        install: None,
    });
    Action::Replace(out)
}

pub(super) fn on_describe(frame: &[u8], st: &mut State) -> Result<Action, ProtocolError> {
    let (kind, name) = describe_or_close(frame)?;
    if kind == b'S' {
        let stmt = st.tracker.stmt(name).cloned().unwrap_or_default();
        st.expect.push_back(Expect::DescribeStmt {
            stmt,
            internal: false,
            seen_params: false,
        });
    } else {
        st.expect.push_back(Expect::DescribePortal);
    }
    Ok(Action::Forward)
}

pub(super) fn on_execute(
    frame: &[u8],
    st: &mut State,
    env: &Env<'_>,
) -> Result<Action, ProtocolError> {
    let name = execute_portal(frame)?;
    let portal = st.tracker.portals.get(name).cloned();
    let gen = st.catalog.generation;
    // A portal bound (or a cursor declared) before the rules or roles
    // changed would keep serving rows under the old decisions.
    let stale = match &portal {
        Some(p) => p.generation != gen,
        None => st
            .tracker
            .stale_object(&sql::ObjectOp::Fetch(name.to_string()), gen),
    };
    if stale && !env.policy.is_empty() {
        let r = sql::refuse::rules_changed_since_prepare();
        let out = refusal::execute_stand_in(&r);
        st.expect.push_back(Expect::Parse {
            refusal: Some(r),
            audit: None,
            install: None,
        });
        return Ok(Action::Replace(out));
    }
    st.expect.push_back(Expect::Execute {
        portal,
        start: env.start,
        intent: None,
        seq: st.seq,
    });
    Ok(Action::Forward)
}

pub(super) fn on_close(frame: &[u8], st: &mut State) -> Result<Action, ProtocolError> {
    let (kind, name) = describe_or_close(frame)?;
    // Statements and portals share their namespaces with SQL prepared
    // statements and cursors.
    if kind == b'S' {
        st.tracker
            .apply(&Effect::Deallocate(Some(name.to_string())), 0);
        st.tracker.pending.remove(name);
    } else {
        st.tracker.portals.remove(name);
        st.tracker.apply(&Effect::Close(Some(name.to_string())), 0);
    }
    st.expect.push_back(Expect::Close);
    Ok(Action::Forward)
}

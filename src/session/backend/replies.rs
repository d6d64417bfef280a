//! Server replies in tracked sessions: one handler per message kind. They
//! retype, decrypt, mask and substitute refusals, and complete each
//! statement's audit record.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::Records;
use crate::error::{error_response, ClientError};
use crate::metrics::metrics;
use crate::protocol::messages::command_rows;
use crate::session::catalog::Catalog;
use crate::session::context::SessionError;
use crate::session::copy::{CopyDir, CopyStream};
use crate::session::refusal;
use crate::session::rows::{self, RowPlan};
use crate::session::state::{Expect, State, Tracker, Unsynced};
use crate::snapshot::Snapshot;

/// What the backend does with one server message.
pub(super) enum BAction {
    Forward,
    Replace(BytesMut),
    Drop,
}

/// Everything a reply handler reads besides the message and the state.
pub(super) struct Reply<'a, 'r> {
    pub policy: &'a Snapshot,
    pub catalog: &'a Catalog,
    /// The session catalog's generation (see `SessionCatalog::generation`).
    pub generation: u64,
    pub recs: &'a mut Records<'r>,
}

/// The table of message kinds.
pub(super) fn dispatch(
    frame: &[u8],
    st: &mut State,
    cx: &mut Reply<'_, '_>,
) -> Result<BAction, SessionError> {
    if !expected(frame[0], st.expect.front()) {
        return Err(SessionError::Desync(unexpected(frame[0])));
    }
    Ok(match frame[0] {
        b'1' | b'2' | b'3' => on_complete_step(st, cx.generation),
        b't' => on_parameter_description(frame, st),
        b'T' => match st.catalog.reply_conflict(frame) {
            Some(why) => return Err(SessionError::Desync(why)),
            None => on_row_description(frame, st, cx),
        },
        b'n' => on_no_data(st),
        b'D' => on_data_row(frame, st, cx),
        b'G' => return on_copy_in_response(frame, st),
        b'H' => on_copy_out_response(frame, st, cx),
        b'd' => on_copy_data(frame, st, cx.policy),
        b'c' => on_copy_done(frame, st, cx.policy),
        b'C' | b'I' | b's' => on_command_end(frame, st, cx),
        b'E' => on_error(frame, st, cx),
        b'N' if cx.recs.restricted => BAction::Replace(crate::protocol::scrub_error(frame)),
        // A restricted session never LISTENs through pgveil; a notification
        // reaching it anyway (a LISTEN issued before its roles changed) is
        // dropped, payload and channel name alike.
        b'A' if cx.recs.restricted => BAction::Drop,
        _ => BAction::Forward,
    })
}

/// Whether the server may send `tag` now, given the reply at the head of
/// the queue. Asynchronous messages (notices, parameter status,
/// notifications) and errors may come at any time; ReadyForQuery is checked
/// where it is handled.
fn expected(tag: u8, head: Option<&Expect>) -> bool {
    use Expect as X;
    match tag {
        b'1' => matches!(head, Some(X::Parse { .. })),
        b'2' => matches!(head, Some(X::Bind)),
        b'3' => matches!(head, Some(X::Close)),
        b't' => matches!(head, Some(X::DescribeStmt { .. })),
        b'T' => matches!(
            head,
            Some(X::DescribeStmt { .. } | X::DescribePortal | X::Query { .. })
        ),
        b'n' => matches!(head, Some(X::DescribeStmt { .. } | X::DescribePortal)),
        b'D' | b'C' | b'I' | b'G' | b'H' | b'W' | b'd' | b'c' => {
            matches!(head, Some(X::Query { .. } | X::Execute { .. }))
        }
        b's' => matches!(head, Some(X::Execute { .. })),
        b'V' => matches!(head, Some(X::FunctionCall { .. })),
        _ => true,
    }
}

fn unexpected(tag: u8) -> &'static str {
    match tag {
        b'1' => "ParseComplete with no Parse outstanding",
        b'2' => "BindComplete with no Bind outstanding",
        b'3' => "CloseComplete with no Close outstanding",
        b't' => "ParameterDescription with no Describe outstanding",
        b'T' | b'n' => "a row description with no Describe or Query outstanding",
        b's' => "PortalSuspended with no Execute outstanding",
        b'V' => "FunctionCallResponse with no FunctionCall outstanding",
        _ => "results with no statement outstanding",
    }
}

fn failure(e: &dyn ClientError) -> BAction {
    BAction::Replace(error_response(e))
}

/// ParseComplete, BindComplete, CloseComplete. A confirmed Parse installs
/// its statement.
fn on_complete_step(st: &mut State, _generation: u64) -> BAction {
    match st.expect.pop_front() {
        Some(Expect::Parse {
            install: Some((name, stmt)),
            ..
        }) => st.tracker.install(&name, &stmt),
        Some(Expect::Parse { .. } | Expect::Bind | Expect::Close) => {}
        Some(other) => st.expect.push_front(other),
        None => {}
    }
    BAction::Forward
}

fn on_parameter_description(frame: &[u8], st: &mut State) -> BAction {
    let Some(Expect::DescribeStmt {
        stmt,
        internal,
        seen_params,
    }) = st.expect.front_mut()
    else {
        return BAction::Forward;
    };
    *seen_params = true;
    if *internal {
        return BAction::Drop;
    }
    let Some(plan) = &stmt.plan else {
        return BAction::Forward;
    };
    match rows::rewrite_parameter_description(frame, &plan.params, &stmt.declared) {
        Ok(Some(out)) => BAction::Replace(out),
        Ok(None) => BAction::Forward,
        Err(e) => failure(&e),
    }
}

fn on_row_description(frame: &[u8], st: &mut State, cx: &mut Reply<'_, '_>) -> BAction {
    // Forwarded as written with masked columns masked here (issue 12).
    let strict = match st.expect.front() {
        Some(Expect::DescribeStmt { stmt, .. }) => {
            stmt.plan.as_ref().is_some_and(|p| p.output_masked)
        }
        Some(Expect::Query {
            plans: Some(p),
            idx,
            ..
        }) => p.get(*idx).is_some_and(|p| p.output_masked),
        _ => false,
    };
    let simple = matches!(st.expect.front(), Some(Expect::Query { .. }));
    let (plan, rewritten, formats) = match planned_rows(frame, strict, simple, st, cx) {
        Ok(Some((p, out, f))) => (Some(p), out, f),
        Ok(None) => (None, None, Vec::new()),
        Err(e) => return failure(&e),
    };
    let fwd = |r: Option<BytesMut>| r.map_or(BAction::Forward, BAction::Replace);
    match st.expect.front() {
        Some(Expect::DescribeStmt { stmt, internal, .. }) => {
            if let Ok(mut slot) = stmt.row.lock() {
                *slot = plan;
            }
            let internal = *internal;
            st.expect.pop_front();
            if internal {
                BAction::Drop
            } else {
                fwd(rewritten)
            }
        }
        Some(Expect::DescribePortal) => {
            st.expect.pop_front();
            fwd(rewritten)
        }
        Some(Expect::Query { .. }) => {
            st.tracker.row = plan.map(|p| (p, formats));
            fwd(rewritten)
        }
        _ => fwd(rewritten),
    }
}

fn on_no_data(st: &mut State) -> BAction {
    match st.expect.front() {
        Some(Expect::DescribeStmt { internal, .. }) => {
            let internal = *internal;
            st.expect.pop_front();
            if internal {
                BAction::Drop
            } else {
                BAction::Forward
            }
        }
        Some(Expect::DescribePortal) => {
            st.expect.pop_front();
            BAction::Forward
        }
        _ => BAction::Forward,
    }
}

/// The current result's row plan: from the running Query's RowDescription
/// or from the executing portal's statement.
fn current_row(
    tr: &Tracker,
    head: Option<&Expect>,
    policy: &Snapshot,
    generation: u64,
) -> Option<(Arc<RowPlan>, Vec<i16>)> {
    if let Some(r) = &tr.row {
        return Some(r.clone());
    }
    let Some(Expect::Execute {
        portal: Some(p), ..
    }) = head
    else {
        return None;
    };
    let mut slot = p.stmt.row.lock().ok()?;
    let row = slot.clone()?;
    if row.version != policy.rules.version || row.generation != generation {
        let fresh = Arc::new(row.stale(policy, generation));
        *slot = Some(fresh.clone());
        return Some((fresh, p.formats.clone()));
    }
    Some((row, p.formats.clone()))
}

fn on_data_row(frame: &[u8], st: &mut State, cx: &mut Reply<'_, '_>) -> BAction {
    if st.tracker.suppress_until_complete {
        return BAction::Drop;
    }
    st.tracker.rows_sent += 1;
    let Some((plan, formats)) =
        current_row(&st.tracker, st.expect.front(), cx.policy, cx.generation)
    else {
        return BAction::Forward;
    };
    match rows::transform_data_row(frame, &plan, &formats, cx.policy) {
        Ok(out) => BAction::Replace(out),
        Err(e) => {
            // Stop this result here: the client gets an error instead of the
            // rest of the rows, and never a value in the clear.
            metrics().refused.with_label_values(&[e.sqlstate()]).inc();
            st.tracker.suppress_until_complete = true;
            st.tracker.failed_code = Some(e.sqlstate());
            st.tracker.rows_sent -= 1;
            failure(&e)
        }
    }
}

/// The plan of a RowDescription. A simple-protocol result plans it afresh
/// for every statement, so those plans are kept per session (see
/// [`crate::session::shapes::RowPlanCache`]); a prepared statement keeps
/// its own.
fn planned_rows(
    frame: &[u8],
    strict: bool,
    simple: bool,
    st: &mut State,
    cx: &Reply<'_, '_>,
) -> Result<Option<crate::session::shapes::SharedRows>, rows::RowError> {
    let catalog = st.catalog.current.clone();
    let key = (frame.to_vec(), strict);
    if simple {
        if let Some(hit) = st.row_plans.get(&key, cx.policy, &catalog, cx.generation) {
            return Ok(hit);
        }
    }
    let planned = rows::plan_row_description(
        frame,
        &cx.catalog.schema,
        cx.policy,
        &cx.catalog.roles,
        cx.generation,
        strict,
    )?
    .map(|(p, out, f)| (Arc::new(p), out, f));
    if simple {
        st.row_plans.insert(key, planned.clone());
    }
    Ok(planned)
}

/// The plan of the statement whose results are arriving.
fn current_plan(head: Option<&Expect>) -> Option<Arc<crate::sql::StatementPlan>> {
    match head {
        Some(Expect::Query {
            plans: Some(p),
            idx,
            ..
        }) => p.get(*idx).cloned().map(Arc::new),
        Some(Expect::Execute {
            portal: Some(p), ..
        }) => p.stmt.plan.clone(),
        _ => None,
    }
}

/// CopyInResponse: the frontend transforms the data (see
/// [`crate::session::copy::CopyIn`]); here the server says which statement
/// reads it, and must agree with the plan on the format the data was
/// transformed for, or the connection closes before the copy can complete.
fn on_copy_in_response(frame: &[u8], st: &mut State) -> Result<BAction, SessionError> {
    st.copy_in.server = st.expect.front().and_then(Expect::origin);
    let plan = current_plan(st.expect.front());
    if let Some(cp) = plan.as_ref().and_then(|p| p.copy_in.as_ref()) {
        let expected = u8::from(cp.format == crate::sql::CopyFormat::Binary);
        if crate::protocol::rows::copy_response_format(frame) != Some(expected) {
            return Err(SessionError::Desync(
                "the server announced another COPY format than the statement's",
            ));
        }
    }
    Ok(BAction::Forward)
}

/// CopyOutResponse: open the transform the plan asks for.
fn on_copy_out_response(frame: &[u8], st: &mut State, cx: &mut Reply<'_, '_>) -> BAction {
    let plan = current_plan(st.expect.front());
    st.copy = plan.as_ref().and_then(|p| p.copy_out.as_ref()).map(|cp| {
        let mut cs = CopyStream::open(CopyDir::Out, cp, Arc::new(cx.catalog.roles.clone()))
            .unwrap_or_else(|r| CopyStream::failed(CopyDir::Out, r));
        cs.check_format(crate::protocol::rows::copy_response_format(frame));
        cs
    });
    BAction::Forward
}

fn on_copy_data(frame: &[u8], st: &mut State, policy: &Snapshot) -> BAction {
    match st.copy.as_mut() {
        Some(cs) if cs.dir == CopyDir::Out => match cs.data(&frame[5..], policy) {
            Some(out) => BAction::Replace(out),
            None => BAction::Drop,
        },
        _ => BAction::Forward,
    }
}

fn on_copy_done(frame: &[u8], st: &mut State, policy: &Snapshot) -> BAction {
    let Some(cs) = st.copy.as_mut().filter(|c| c.dir == CopyDir::Out) else {
        return BAction::Forward;
    };
    let mut out = cs.finish(policy).unwrap_or_default();
    if let Some(r) = cs.failed.clone() {
        // Replace the end of the copy with the error; the client never sees
        // the rows that could not be processed.
        metrics().refused.with_label_values(&[r.sqlstate]).inc();
        st.tracker.suppress_until_complete = true;
        return BAction::Replace(refusal::response(&r));
    }
    out.extend_from_slice(frame);
    BAction::Replace(out)
}

/// CommandComplete, EmptyQueryResponse, PortalSuspended.
fn on_command_end(frame: &[u8], st: &mut State, cx: &mut Reply<'_, '_>) -> BAction {
    st.copy = None;
    let suppressed = std::mem::take(&mut st.tracker.suppress_until_complete);
    st.tracker.row = None;
    let sent = std::mem::take(&mut st.tracker.rows_sent);
    // The record counts what reached the client: a suspended portal's rows
    // so far, and only the rows before a failed transform.
    let failed = st.tracker.failed_code.take();
    let rows = match frame[0] {
        b'C' if failed.is_none() => command_rows(frame).max(sent),
        _ => sent,
    };
    if frame[0] == b'C' {
        apply_effect(st, cx.generation);
    }
    let outcome = failed.unwrap_or(crate::audit::OUTCOME_OK);
    if !defer_unsynced(st, cx.recs, outcome, rows) {
        complete_statement(st, cx.recs, outcome, rows);
    }
    if matches!(st.expect.front(), Some(Expect::Execute { .. })) {
        st.expect.pop_front();
    }
    if suppressed {
        BAction::Drop
    } else {
        BAction::Forward
    }
}

/// Most Executes whose records wait for a Sync (see [`defer_unsynced`]).
const MAX_UNSYNCED: usize = 1024;

/// An audited Execute that completed with no sync point queued behind it
/// (the client sent Execute + Flush and no Sync yet) leaves its record for
/// the next ReadyForQuery or the end of the session: see [`Unsynced`].
/// False when the record can be written now. A client that never syncs
/// cannot grow the list without bound: past [`MAX_UNSYNCED`] records are
/// written at once, with the outcome the server reported.
fn defer_unsynced(st: &mut State, recs: &Records<'_>, outcome: &'static str, rows: u64) -> bool {
    if recs.rec.is_none()
        || st.unsynced.len() >= MAX_UNSYNCED
        || st.expect.iter().skip(1).any(Expect::is_sync_point)
    {
        return false;
    }
    let Some(Expect::Execute {
        portal,
        start,
        intent,
        ..
    }) = st.expect.front_mut()
    else {
        return false;
    };
    if portal.as_ref().is_none_or(|p| p.stmt.audit.is_none()) {
        return false;
    }
    st.unsynced.push(Unsynced {
        portal: portal.clone(),
        intent: intent.take(),
        outcome,
        rows,
        duration_us: start.elapsed().as_micros() as u64,
    });
    true
}

/// A confirmed statement's effect on named objects.
fn apply_effect(st: &mut State, generation: u64) {
    let effect = match st.expect.front() {
        Some(Expect::Query { effects, idx, .. }) => effects.get(*idx).cloned(),
        Some(Expect::Execute {
            portal: Some(p), ..
        }) => Some(p.stmt.effect.clone()),
        _ => None,
    };
    if let Some(e) = effect {
        st.tracker.apply(&e, generation);
    }
}

fn on_error(frame: &[u8], st: &mut State, cx: &mut Reply<'_, '_>) -> BAction {
    st.tracker.rows_sent = 0;
    st.tracker.failed_code = None;
    if let Some(Expect::Parse {
        install: Some((name, stmt)),
        ..
    }) = st.expect.front()
    {
        let (name, stmt) = (name.clone(), stmt.clone());
        st.tracker.forget_pending(&name, &stmt);
    }
    st.tracker.row = None;
    st.tracker.suppress_until_complete = false;
    let head = st.expect.front().and_then(Expect::origin);
    let copy_refusal = st
        .copy
        .take()
        .and_then(|c| c.failed)
        .or_else(|| st.copy_in.take_failure(head));
    let refusal = match st.expect.front() {
        _ if copy_refusal.is_some() => copy_refusal,
        Some(Expect::Query { refusal, .. }) => refusal.clone(),
        Some(Expect::Parse { refusal, .. }) => refusal.clone(),
        _ => None,
    };
    super::settle_unsynced(st, cx.recs, None);
    let code = refusal
        .as_ref()
        .map(|r| r.sqlstate.to_string())
        .or_else(|| crate::protocol::error_code(frame))
        .unwrap_or_else(|| crate::error::sqlstate::INTERNAL_ERROR.into());
    complete_statement(st, cx.recs, &code, 0);
    // Extended protocol: the server now skips to Sync; so do we. The
    // Executes skipped never ran.
    while let Some(e) = st.expect.front() {
        if e.is_sync_point() {
            break;
        }
        if let Some(e) = st.expect.pop_front() {
            super::unfinished(&e, cx.recs, crate::audit::OUTCOME_NOT_EXECUTED, true);
        }
    }
    match refusal {
        Some(r) => BAction::Replace(refusal::response(&r)),
        None if cx.recs.restricted => BAction::Replace(crate::protocol::scrub_error(frame)),
        None => BAction::Forward,
    }
}

/// Completes the audit record of the statement at the head of the queue.
fn complete_statement(st: &mut State, recs: &mut Records<'_>, outcome: &str, rows: u64) {
    match st.expect.front_mut() {
        Some(Expect::Query {
            idx,
            audit,
            stmt_start,
            intents,
            ..
        }) => {
            let intent = intents.get_mut(*idx).and_then(Option::take);
            recs.emit(audit.get(*idx), intent.as_ref(), outcome, rows, *stmt_start);
            *idx += 1;
            *stmt_start = Instant::now();
        }
        Some(Expect::Execute {
            portal,
            start,
            intent,
            ..
        }) => {
            recs.emit(
                portal.as_ref().and_then(|p| p.stmt.audit.as_ref()),
                intent.take().as_ref(),
                outcome,
                rows,
                *start,
            );
        }
        Some(Expect::Parse { audit, .. }) => {
            recs.emit(audit.as_ref(), None, outcome, rows, Instant::now());
        }
        _ => {}
    }
}

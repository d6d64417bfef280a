//! Server → client: statement accounting for every session, and for
//! sessions under rules the reply handling that retypes, decrypts, masks and
//! substitutes refusals.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};

use super::audit::{RecordCtx, StmtAudit};
use super::copy::{CopyDir, CopyStream};
use super::relay::{fill, lock, Assembler, State};
use super::rows::{self, RowPlan};
use super::tagged::{query_expect, refusal_error, Catalog, Expect, Tracker};
use super::{SessionCtx, SessionError, Shared};
use crate::audit::AuditRecordInput;
use crate::metrics::metrics;
use crate::net::Stream;
use crate::protocol::messages::{command_rows, put_query, ready_status};
use crate::protocol::{next_frame, put_error, Direction, ProtocolError, Severity};
use crate::snapshot::Snapshot;
use crate::sql::Refusal;

/// Refuses statements that name tagged tables in a session that has no
/// catalog snapshot (rules were added after it connected).
pub(super) fn refuse_without_catalog(
    frame: &[u8],
    start: Instant,
    policy: &Snapshot,
    expect: &mut std::collections::VecDeque<Expect>,
) -> Result<Option<BytesMut>, ProtocolError> {
    if frame[0] != b'Q' {
        if frame[0] == b'F' {
            expect.push_back(Expect::FunctionCall { start });
        }
        return Ok(None);
    }
    let text = crate::protocol::messages::query_text(frame)?;
    if !crate::sql::mentions_tagged(&policy.names, text) {
        expect.push_back(query_expect(start, None, None, Vec::new()));
        return Ok(None);
    }
    let r = Refusal {
        sqlstate: "55000",
        message:
            "pgveil rules changed after this session connected; reconnect to use tagged tables"
                .into(),
        hint: None,
    };
    let mut out = BytesMut::new();
    put_query(&mut out, super::tagged::REFUSED_SQL);
    expect.push_back(query_expect(start, None, Some(r), Vec::new()));
    Ok(Some(out))
}

enum BAction {
    Forward,
    Replace(BytesMut),
    Drop,
}

fn error_frame(code: &str, msg: &str) -> BytesMut {
    let mut out = BytesMut::new();
    put_error(&mut out, Severity::Error, code, msg, None);
    out
}

/// The current result's row plan: from the running Query's RowDescription
/// or from the executing portal's statement.
fn current_row(
    tr: &Tracker,
    head: Option<&Expect>,
    policy: &Snapshot,
    roles: &[String],
) -> Option<(Arc<RowPlan>, Vec<i16>)> {
    if let Some(r) = &tr.row {
        return Some(r.clone());
    }
    if let Some(Expect::Execute {
        portal: Some(p), ..
    }) = head
    {
        let mut slot = p.stmt.row.lock().ok()?;
        let row = slot.clone()?;
        if row.version != policy.rules.version {
            let fresh = Arc::new(row.under(policy, roles));
            *slot = Some(fresh.clone());
            return Some((fresh, p.formats.clone()));
        }
        return Some((row, p.formats.clone()));
    }
    None
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

/// Audit records produced while handling one batch.
pub(super) struct Records<'a> {
    /// The session is restricted: scrub server errors and notices.
    pub restricted: bool,
    pub rec: Option<&'a RecordCtx>,
    pub rules_version: &'a str,
    pub strict: bool,
    pub out: Vec<(AuditRecordInput, bool)>,
}

impl Records<'_> {
    fn emit(&mut self, a: Option<&StmtAudit>, outcome: &str, rows: u64, started: Instant) {
        if let (Some(rec), Some(a)) = (self.rec, a) {
            let outcome = a.refused.unwrap_or(outcome);
            let r = rec.record(a, outcome, rows, started, self.rules_version);
            // A refused statement returned nothing to hold back.
            self.out
                .push((r, self.strict && a.tagged && a.refused.is_none()));
        }
    }
}

/// Completes the audit record of the statement at the head of the queue.
fn complete_statement(st: &mut State, recs: &mut Records<'_>, outcome: &str, rows: u64) {
    match st.expect.front_mut() {
        Some(Expect::Query {
            idx,
            audit,
            stmt_start,
            ..
        }) => {
            recs.emit(audit.get(*idx), outcome, rows, *stmt_start);
            *idx += 1;
            *stmt_start = Instant::now();
        }
        Some(Expect::Execute { portal, start }) => {
            recs.emit(
                portal.as_ref().and_then(|p| p.stmt.audit.as_ref()),
                outcome,
                rows,
                *start,
            );
        }
        Some(Expect::Parse { audit, .. }) => {
            recs.emit(audit.as_ref(), outcome, rows, Instant::now());
        }
        _ => {}
    }
}

/// Whether results now arriving belong to a statement whose record must be
/// durable before they are released (strict audit of a tagged statement).
fn must_hold(st: &State) -> bool {
    match st.expect.front() {
        Some(Expect::Query { idx, audit, .. }) => audit.get(*idx).is_some_and(|a| a.tagged),
        Some(Expect::Execute { portal, .. }) => portal
            .as_ref()
            .and_then(|p| p.stmt.audit.as_ref())
            .is_some_and(|a| a.tagged),
        _ => false,
    }
}

/// Reply handling for tracked sessions (under rules, or audited).
fn tagged_frame(
    frame: &[u8],
    st: &mut State,
    policy: &Snapshot,
    catalog: &Catalog,
    recs: &mut Records<'_>,
) -> BAction {
    let tag = frame[0];
    match tag {
        b'1' | b'2' | b'3' => {
            if matches!(
                st.expect.front(),
                Some(Expect::Parse { .. } | Expect::Bind | Expect::Close)
            ) {
                st.expect.pop_front();
            }
            BAction::Forward
        }
        b't' => {
            if let Some(Expect::DescribeStmt {
                stmt,
                internal,
                seen_params,
            }) = st.expect.front_mut()
            {
                *seen_params = true;
                if *internal {
                    return BAction::Drop;
                }
                if let Some(plan) = &stmt.plan {
                    match rows::rewrite_parameter_description(frame, &plan.params) {
                        Ok(Some(out)) => return BAction::Replace(out),
                        Ok(None) => {}
                        Err(e) => {
                            return BAction::Replace(error_frame(e.sqlstate(), &e.to_string()))
                        }
                    }
                }
            }
            BAction::Forward
        }
        b'T' => {
            let planned =
                rows::plan_row_description(frame, &catalog.schema, policy, &catalog.roles);
            let (plan, rewritten, formats) = match planned {
                Ok(Some((p, out, f))) => (Some(Arc::new(p)), Some(out), f),
                Ok(None) => (None, None, Vec::new()),
                Err(e) => return BAction::Replace(error_frame(e.sqlstate(), &e.to_string())),
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
        b'n' => match st.expect.front() {
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
        },
        b'D' => {
            if st.tracker.suppress_until_complete {
                return BAction::Drop;
            }
            let Some((plan, formats)) =
                current_row(&st.tracker, st.expect.front(), policy, &catalog.roles)
            else {
                return BAction::Forward;
            };
            match rows::transform_data_row(frame, &plan, &formats, policy) {
                Ok(out) => BAction::Replace(out),
                Err(e) => {
                    // Stop this result here: the client gets an error instead
                    // of the rest of the rows, and never a value in the clear.
                    metrics().refused.with_label_values(&[e.sqlstate()]).inc();
                    st.tracker.suppress_until_complete = true;
                    BAction::Replace(error_frame(e.sqlstate(), &e.to_string()))
                }
            }
        }
        b'G' | b'H' => {
            let dir = if tag == b'G' {
                CopyDir::In
            } else {
                CopyDir::Out
            };
            let plan = current_plan(st.expect.front());
            let copy_plan = plan.as_ref().and_then(|p| match dir {
                CopyDir::In => p.copy_in.as_ref(),
                CopyDir::Out => p.copy_out.as_ref(),
            });
            st.copy = copy_plan.map(|cp| {
                CopyStream::open(dir, cp, Arc::new(catalog.roles.clone()))
                    .unwrap_or_else(|r| CopyStream::failed(dir, r))
            });
            BAction::Forward
        }
        b'd' => match st.copy.as_mut() {
            Some(cs) if cs.dir == CopyDir::Out => match cs.data(&frame[5..], policy) {
                Some(out) => BAction::Replace(out),
                None => BAction::Drop,
            },
            _ => BAction::Forward,
        },
        b'c' => match st.copy.as_mut() {
            Some(cs) if cs.dir == CopyDir::Out => {
                let mut out = cs.finish(policy).unwrap_or_default();
                if let Some(r) = &cs.failed {
                    // Replace the end of the copy with the error; the client
                    // never sees the rows that could not be processed.
                    let r = r.clone();
                    metrics().refused.with_label_values(&[r.sqlstate]).inc();
                    st.tracker.suppress_until_complete = true;
                    return BAction::Replace(refusal_error(&r));
                }
                out.extend_from_slice(frame);
                BAction::Replace(out)
            }
            _ => BAction::Forward,
        },
        b'C' | b'I' | b's' => {
            st.copy = None;
            let suppressed = std::mem::take(&mut st.tracker.suppress_until_complete);
            st.tracker.row = None;
            let rows = if tag == b'C' { command_rows(frame) } else { 0 };
            complete_statement(st, recs, crate::audit::OUTCOME_OK, rows);
            if matches!(st.expect.front(), Some(Expect::Execute { .. })) {
                st.expect.pop_front();
            }
            if suppressed {
                BAction::Drop
            } else {
                BAction::Forward
            }
        }
        b'E' => {
            st.tracker.row = None;
            st.tracker.suppress_until_complete = false;
            let copy_refusal = st.copy.take().and_then(|c| c.failed);
            let refusal = match st.expect.front() {
                _ if copy_refusal.is_some() => copy_refusal,
                Some(Expect::Query { refusal, .. }) => refusal.clone(),
                Some(Expect::Parse { refusal, .. }) => refusal.clone(),
                _ => None,
            };
            let code = refusal
                .as_ref()
                .map(|r| r.sqlstate.to_string())
                .or_else(|| crate::protocol::error_code(frame))
                .unwrap_or_else(|| "XX000".into());
            complete_statement(st, recs, &code, 0);
            // Extended protocol: the server now skips to Sync; so do we.
            while let Some(e) = st.expect.front() {
                if e.is_sync_point() {
                    break;
                }
                st.expect.pop_front();
            }
            match refusal {
                Some(r) => BAction::Replace(refusal_error(&r)),
                None if recs.restricted => BAction::Replace(crate::protocol::scrub_error(frame)),
                None => BAction::Forward,
            }
        }
        b'N' if recs.restricted => BAction::Replace(crate::protocol::scrub_error(frame)),
        _ => BAction::Forward,
    }
}

/// Most bytes of results held back while their audit record is not yet
/// durable; past this the session is closed rather than grow without bound.
const MAX_HELD: usize = 256 << 20;

/// Server → client.
pub(super) async fn backend(
    sr: &mut ReadHalf<Stream>,
    cw: &mut WriteHalf<Stream>,
    mut buf: BytesMut,
    state: &Mutex<State>,
    ctx: &SessionCtx,
    shared: &Shared,
) -> Result<(), SessionError> {
    let m = metrics();
    // The server is trusted for content but not for sizes: a corrupt length
    // must not make the proxy allocate without bound.
    let cap = i32::MAX as usize;
    let audit = shared.audit.as_ref();
    let strict = audit.is_some_and(|a| matches!(a.durability(), crate::audit::Durability::Strict));
    let mut held = BytesMut::new();
    let mut waits: Vec<tokio::sync::oneshot::Receiver<Result<u64, crate::audit::AuditError>>> =
        Vec::new();
    loop {
        let t0 = Instant::now();
        let mut pos = 0;
        let mut asm = Assembler::new();
        let policy = shared.policy.load();
        let tracked = ctx.tracked(&policy);
        let restricted = tracked && {
            let st = lock(state);
            st.catalog.restricted(&policy)
        };
        let mut recs = Records {
            restricted,
            rec: ctx.rec.as_ref(),
            rules_version: &policy.rules.version,
            strict,
            out: Vec::new(),
        };
        let hold;
        let mut saw_copy_in = false;
        {
            let mut st = lock(state);
            let st = &mut *st;
            while let Some(n) = next_frame(&buf[pos..], Direction::Backend, cap)
                .map_err(|_| SessionError::UpstreamLost)?
            {
                let tag = buf[pos];
                saw_copy_in |= matches!(tag, b'G' | b'W');
                if let Some(Expect::Internal {
                    tx,
                    results,
                    failed,
                }) = st.expect.front_mut()
                {
                    // pgveil's own catalog query: consume, never forward.
                    match tag {
                        b'D' => {
                            if let Some(last) = results.last_mut() {
                                last.push(rows::text_row(&buf[pos..pos + n]));
                            }
                        }
                        b'C' => results.push(Vec::new()),
                        b'E' => *failed = true,
                        b'Z' => {
                            let cat = super::startup::catalog_from_results(results, *failed);
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(cat);
                            }
                            st.expect.pop_front();
                            st.txn_status = ready_status(&buf[pos..pos + n]);
                            st.idle = st.expect.is_empty() && st.txn_status == b'I';
                        }
                        _ => {}
                    }
                    asm.replace(&buf, pos, pos + n, &[]);
                    pos += n;
                    continue;
                }
                if tag == b'E' {
                    st.head_failed = true;
                }
                if tracked {
                    let catalog = st.catalog.clone();
                    match tagged_frame(&buf[pos..pos + n], st, &policy, &catalog, &mut recs) {
                        BAction::Forward => {}
                        BAction::Replace(new) => asm.replace(&buf, pos, pos + n, &new),
                        BAction::Drop => asm.replace(&buf, pos, pos + n, &[]),
                    }
                } else if tag == b'E' {
                    if let Some(Expect::Query {
                        refusal: Some(r), ..
                    }) = st.expect.front()
                    {
                        let new = refusal_error(r);
                        asm.replace(&buf, pos, pos + n, &new);
                    }
                }
                if tag == b'Z' {
                    let status = ready_status(&buf[pos..pos + n]);
                    let failed = std::mem::take(&mut st.head_failed);
                    // Pop through the sync point this ReadyForQuery answers.
                    while let Some(e) = st.expect.pop_front() {
                        match e {
                            Expect::Query { start, .. } | Expect::FunctionCall { start } => {
                                if failed {
                                    &m.simple_error
                                } else {
                                    &m.simple_ok
                                }
                                .inc();
                                m.statement_latency.observe(start.elapsed().as_secs_f64());
                                break;
                            }
                            Expect::Sync { start, executes } => {
                                if executes > 0 {
                                    if failed {
                                        &m.extended_error
                                    } else {
                                        &m.extended_ok
                                    }
                                    .inc_by(executes as u64);
                                }
                                m.statement_latency.observe(start.elapsed().as_secs_f64());
                                break;
                            }
                            _ => {}
                        }
                    }
                    st.tracker.row = None;
                    st.txn_status = status;
                    if st.ddl_pending {
                        shared
                            .ddl_epoch
                            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                        st.ddl_pending = status != b'I';
                    }
                    st.idle = st.expect.is_empty() && status == b'I';
                }
                pos += n;
            }
            // While the server waits for COPY data, the client must see the
            // CopyInResponse: the statement's record can only follow its end.
            let copy_in = st.copy.as_ref().is_some_and(|c| c.dir == CopyDir::In) || saw_copy_in;
            hold = strict && must_hold(st) && !copy_in;
        }
        let mut audit_failed = false;
        if let Some(a) = audit {
            for (r, durable) in recs.out {
                if durable {
                    match a.submit(r) {
                        Ok(rx) => waits.push(rx),
                        Err(_) => audit_failed = true,
                    }
                } else if a.record_queued(r).await.is_err() {
                    // Results that need no durable record are not withheld;
                    // the writer counts the failure.
                    tracing::debug!("audit record could not be queued");
                }
            }
        }
        if pos > 0 {
            let assembled = asm.finish(&buf, pos);
            let chunk = assembled.as_deref().unwrap_or(&buf[..pos]);
            if hold || !held.is_empty() || !waits.is_empty() {
                held.extend_from_slice(chunk);
            } else {
                m.bytes_to_clients.inc_by(chunk.len() as u64);
                cw.write_all(chunk).await?;
                cw.flush().await?;
                m.proxy_latency.observe(t0.elapsed().as_secs_f64());
            }
            buf.advance(pos);
        }
        if !hold && (!held.is_empty() || !waits.is_empty()) {
            // Release results only once every record they depend on is durable.
            for rx in waits.drain(..) {
                if !matches!(rx.await, Ok(Ok(_))) {
                    audit_failed = true;
                }
            }
            if audit_failed {
                if let Some(a) = audit {
                    a.note_refused();
                }
                return Err(SessionError::AuditUnavailable);
            }
            m.bytes_to_clients.inc_by(held.len() as u64);
            cw.write_all(&held).await?;
            cw.flush().await?;
            held.clear();
        }
        if audit_failed {
            if let Some(a) = audit {
                a.note_refused();
            }
            return Err(SessionError::AuditUnavailable);
        }
        if held.len() > MAX_HELD {
            return Err(SessionError::AuditUnavailable);
        }
        match fill(sr, &mut buf).await {
            Ok(0) | Err(_) => return Err(SessionError::UpstreamLost),
            Ok(_) => {}
        }
    }
}

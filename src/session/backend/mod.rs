//! Server → client: statement accounting for every session, reply handling
//! ([`replies`]) for tracked ones, and the strict-audit gate that holds
//! results back until their records are durable.

mod replies;

use std::sync::Mutex;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::oneshot;

use self::replies::{BAction, Reply};
use super::audit::{RecordCtx, StmtAudit};
use super::context::{SessionCtx, SessionError, Shared};
use super::io::{fill, lock, Assembler};
use super::refusal;
use super::state::{Expect, State};
use crate::audit::{Audit, AuditError, AuditRecordInput, Intent, IntentCheck};
use crate::metrics::metrics;
use crate::net::Stream;
use crate::protocol::messages::ready_status;
use crate::protocol::{next_frame, Direction};
use crate::snapshot::Snapshot;

/// Audit records produced while handling one batch.
pub(super) struct Records<'a> {
    /// The session is restricted: scrub server errors and notices.
    pub restricted: bool,
    pub rec: Option<&'a RecordCtx>,
    pub audit: Option<&'a Audit>,
    pub rules_version: &'a str,
    pub strict: bool,
    pub out: Vec<(AuditRecordInput, bool)>,
    /// Intents of this batch's statements not yet durable: the batch is
    /// released once they are.
    pub waits: Vec<Durable>,
    /// An intent is not in the chain: nothing more may be released.
    pub intent_failed: bool,
}

impl Records<'_> {
    /// The record of a finished statement: the outcome of its intent, or a
    /// whole record (held for durability when strict and tagged).
    fn emit(
        &mut self,
        a: Option<&StmtAudit>,
        intent: Option<&Intent>,
        outcome: &str,
        rows: u64,
        started: Instant,
    ) {
        let us = started.elapsed().as_micros() as u64;
        self.emit_us(a, intent, outcome, rows, us);
    }

    /// [`Records::emit`] with the statement's duration already measured.
    fn emit_us(
        &mut self,
        a: Option<&StmtAudit>,
        intent: Option<&Intent>,
        outcome: &str,
        rows: u64,
        us: u64,
    ) {
        let (Some(rec), Some(a)) = (self.rec, a) else {
            return;
        };
        let outcome = a.refused.unwrap_or(outcome);
        if let (Some(i), Some(audit)) = (intent, self.audit) {
            audit.outcome(i, rows, us, outcome);
            return;
        }
        let mut r = rec.record(a, outcome, rows, Instant::now(), self.rules_version);
        r.duration_us = us;
        // A refused statement returned nothing to hold back.
        self.out
            .push((r, self.strict && a.tagged && a.refused.is_none()));
    }

    /// Before any reply of `intent`'s statement goes on: durable already,
    /// to be waited for, or failed.
    fn check(&mut self, intent: Option<&mut Intent>) {
        match intent.map(Intent::check) {
            None | Some(IntentCheck::Durable) => {}
            Some(IntentCheck::Wait(rx)) => self.waits.push(rx),
            Some(IntentCheck::Failed) => self.intent_failed = true,
        }
    }
}

/// Whether results now arriving belong to a statement whose record must be
/// durable before they are released and was not written ahead as an intent
/// (strict audit of a tagged statement).
fn must_hold(st: &State) -> bool {
    match st.expect.front() {
        Some(Expect::Query {
            idx,
            audit,
            intents,
            ..
        }) => {
            audit.get(*idx).is_some_and(|a| a.tagged)
                && intents.get(*idx).is_none_or(|i| i.is_none())
        }
        Some(Expect::Execute { portal, intent, .. }) => {
            intent.is_none()
                && portal
                    .as_ref()
                    .and_then(|p| p.stmt.audit.as_ref())
                    .is_some_and(|a| a.tagged)
        }
        _ => false,
    }
}

/// The intent of the statement whose replies are arriving.
fn head_intent(st: &mut State) -> Option<&mut Intent> {
    match st.expect.front_mut() {
        Some(Expect::Query { idx, intents, .. }) => intents.get_mut(*idx)?.as_mut(),
        Some(Expect::Execute { intent, .. }) => intent.as_mut(),
        _ => None,
    }
}

/// The outcome every statement of `e` that never reached its end gets
/// (`not_executed` after an earlier failure, `client_disconnected`, …).
/// With `intents_only`, only statements whose intent is in the chain (and
/// must be closed) get one.
pub(super) fn unfinished(e: &Expect, recs: &mut Records<'_>, outcome: &str, intents_only: bool) {
    match e {
        Expect::Query {
            idx,
            audit,
            intents,
            stmt_start,
            ..
        } => {
            for (i, a) in audit.iter().enumerate().skip(*idx) {
                let intent = intents.get(i).and_then(Option::as_ref);
                if intent.is_some() || !intents_only {
                    recs.emit(Some(a), intent, outcome, 0, *stmt_start);
                }
            }
        }
        Expect::Execute {
            portal,
            start,
            intent,
            ..
        } if intent.is_some() || !intents_only => recs.emit(
            portal.as_ref().and_then(|p| p.stmt.audit.as_ref()),
            intent.as_ref(),
            outcome,
            0,
            *start,
        ),
        _ => {}
    }
}

/// Writes the records of the Executes that completed before a Sync (see
/// [`super::state::Unsynced`]), in order: with their own outcomes once
/// their transaction settled (a ReadyForQuery, an error, a Sync on its
/// way), or with `left` when the session ended before the client sent one.
pub(super) fn settle_unsynced(st: &mut State, recs: &mut Records<'_>, left: Option<&str>) {
    for u in st.unsynced.drain(..) {
        recs.emit_us(
            u.portal.as_ref().and_then(|p| p.stmt.audit.as_ref()),
            u.intent.as_ref(),
            left.unwrap_or(u.outcome),
            u.rows,
            u.duration_us,
        );
    }
}

/// The session ended with statements outstanding (the client left after
/// Execute + Flush, or the server went away): each gets its record, with
/// `outcome`, since it was sent and may have run. Executes that completed
/// without a Sync get `outcome` too (their transaction was rolled back);
/// with `outcome` None (pgveil closed the session) only those are written,
/// with their own outcomes.
pub(super) fn abandoned(
    state: &Mutex<State>,
    ctx: &SessionCtx,
    shared: &Shared,
    outcome: Option<&str>,
) {
    let Some(audit) = shared.audit.as_ref() else {
        return;
    };
    let policy = shared.policy.load();
    let mut recs = Records {
        restricted: false,
        rec: ctx.rec.as_ref(),
        audit: Some(audit),
        rules_version: &policy.rules.version,
        strict: false,
        out: Vec::new(),
        waits: Vec::new(),
        intent_failed: false,
    };
    let mut st = lock(state);
    let synced = st.expect.iter().any(Expect::is_sync_point);
    settle_unsynced(&mut st, &mut recs, outcome.filter(|_| !synced));
    if let Some(outcome) = outcome {
        for e in &st.expect {
            unfinished(e, &mut recs, outcome, false);
        }
    }
    drop(st);
    for (r, _) in recs.out {
        if audit.record_nowait(r).is_err() {
            tracing::debug!("audit record of an abandoned statement could not be queued");
        }
    }
}

/// Most bytes of results held back while their audit record is not yet
/// durable; past this the session is closed rather than grow without bound.
const MAX_HELD: usize = 256 << 20;

type Durable = oneshot::Receiver<Result<u64, AuditError>>;

/// Results held back until the records they depend on are durable.
#[derive(Default)]
struct Held {
    bytes: BytesMut,
    waits: Vec<Durable>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.waits.is_empty()
    }
}

/// Server → client, until either socket fails.
pub(super) async fn backend(
    sr: &mut ReadHalf<Stream>,
    cw: &mut WriteHalf<Stream>,
    mut buf: BytesMut,
    state: &Mutex<State>,
    ctx: &SessionCtx,
    shared: &Shared,
) -> Result<(), SessionError> {
    let m = metrics();
    let audit = shared.audit.as_ref();
    let strict = audit.is_some_and(|a| matches!(a.durability(), crate::audit::Durability::Strict));
    let mut held = Held::default();
    loop {
        let t0 = Instant::now();
        let base = shared.policy.load();
        let tracked = ctx.tracked(&base);
        let (policy, restricted) = {
            let mut st = lock(state);
            let policy = st.catalog.policy(&base);
            let restricted = tracked && st.catalog.current.restricted(&policy);
            (policy, restricted)
        };
        let mut recs = Records {
            restricted,
            rec: ctx.rec.as_ref(),
            audit,
            rules_version: &policy.rules.version,
            strict,
            out: Vec::new(),
            waits: Vec::new(),
            intent_failed: false,
        };
        let (pos, asm, hold) = {
            let mut st = lock(state);
            walk(&buf, &mut st, &policy, tracked, &mut recs, shared)?
        };
        held.waits.append(&mut recs.waits);
        if recs.intent_failed {
            // This batch holds replies of a statement whose record is not
            // in the chain: none of it may reach the client.
            if let Some(a) = audit {
                a.note_refused();
            }
            return Err(SessionError::AuditUnavailable);
        }
        if let Some(a) = audit {
            if submit(a, recs.out, &mut held.waits).await {
                // No result leaves without its record, not even this batch's.
                a.note_refused();
                return Err(SessionError::AuditUnavailable);
            }
        }
        if pos > 0 {
            let assembled = asm.finish(&buf, pos);
            let chunk = assembled.as_deref().unwrap_or(&buf[..pos]);
            if hold || !held.is_empty() {
                held.bytes.extend_from_slice(chunk);
            } else {
                m.bytes_to_clients.inc_by(chunk.len() as u64);
                cw.write_all(chunk).await?;
                cw.flush().await?;
                m.proxy_latency.observe(t0.elapsed().as_secs_f64());
            }
            buf.advance(pos);
        }
        if !hold && !held.is_empty() && !release(cw, &mut held).await? {
            if let Some(a) = audit {
                a.note_refused();
            }
            return Err(SessionError::AuditUnavailable);
        }
        if held.bytes.len() > MAX_HELD {
            return Err(SessionError::AuditUnavailable);
        }
        match fill(sr, &mut buf).await {
            Ok(0) | Err(_) => return Err(SessionError::UpstreamLost),
            Ok(_) => {}
        }
    }
}

/// Handles the complete frames in `buf`: (bytes consumed, the output,
/// whether the results must be held for a durable record).
fn walk(
    buf: &[u8],
    st: &mut State,
    policy: &Snapshot,
    tracked: bool,
    recs: &mut Records<'_>,
    shared: &Shared,
) -> Result<(usize, Assembler, bool), SessionError> {
    // The server is trusted for content but not for sizes: a corrupt length
    // must not make the proxy allocate without bound.
    let cap = i32::MAX as usize;
    let mut asm = Assembler::new();
    let mut pos = 0;
    let mut saw_copy_in = false;
    while let Some(n) =
        next_frame(&buf[pos..], Direction::Backend, cap).map_err(|_| SessionError::UpstreamLost)?
    {
        let frame = &buf[pos..pos + n];
        let tag = frame[0];
        saw_copy_in |= matches!(tag, b'G' | b'W');
        if let Some(Expect::Internal { .. } | Expect::FunctionName { .. }) = st.expect.front() {
            // pgveil's own catalog query or FunctionCall name lookup:
            // consume, never forward.
            on_internal(frame, st);
            asm.replace(buf, pos, pos + n, &[]);
            pos += n;
            continue;
        }
        if tag == b'E' {
            st.head_failed = true;
        }
        if tag != b'Z' {
            recs.check(head_intent(st));
        }
        copy_in_rules(tag, st)?;
        let action = if tracked {
            let catalog = st.catalog.current.clone();
            let mut cx = Reply {
                policy,
                catalog: &catalog,
                generation: st.catalog.generation,
                recs,
            };
            replies::dispatch(frame, st, &mut cx)?
        } else {
            untracked(frame, st)
        };
        match action {
            BAction::Forward => {}
            BAction::Replace(new) => asm.replace(buf, pos, pos + n, &new),
            BAction::Drop => asm.replace(buf, pos, pos + n, &[]),
        }
        if tag == b'Z' {
            on_ready(frame, st, shared, tracked, recs)?;
        }
        pos += n;
    }
    // While the server waits for COPY data, the client must see the
    // CopyInResponse: the statement's record can only follow its end.
    let copy_in = st.copy_in_open || saw_copy_in;
    let hold = recs.strict && must_hold(st) && !copy_in;
    Ok((pos, asm, hold))
}

/// A session neither under rules nor audited: only refusals are swapped in.
fn untracked(frame: &[u8], st: &State) -> BAction {
    match (frame[0], st.expect.front()) {
        (
            b'E',
            Some(Expect::Query {
                refusal: Some(r), ..
            }),
        ) => BAction::Replace(refusal::response(r)),
        _ => BAction::Forward,
    }
}

/// One frame of the reply to pgveil's catalog query (or name lookup).
fn on_internal(frame: &[u8], st: &mut State) {
    if let Some(Expect::FunctionName { .. }) = st.expect.front() {
        return on_function_name(frame, st);
    }
    let Some(Expect::Internal { tx, reply, login }) = st.expect.front_mut() else {
        return;
    };
    if !reply.feed(frame) {
        return;
    }
    let catalog = reply.finish(login);
    if let Some(tx) = tx.take() {
        let _ = tx.send(catalog);
    }
    st.expect.pop_front();
    st.txn_status = ready_status(frame);
    st.idle = st.expect.is_empty() && st.txn_status == b'I';
}

/// One frame of the reply to a refused FunctionCall's name lookup: once
/// complete, the name goes into the record of the stand-in behind it.
fn on_function_name(frame: &[u8], st: &mut State) {
    let Some(Expect::FunctionName { oid, reply }) = st.expect.front_mut() else {
        return;
    };
    if !reply.feed(frame) {
        return;
    }
    let oid = *oid;
    let name = reply.name().map(str::to_string);
    st.expect.pop_front();
    st.txn_status = ready_status(frame);
    if let (Some(name), Some(Expect::Query { audit, .. })) = (name, st.expect.front_mut()) {
        if let Some(a) = audit.first_mut() {
            super::audit::name_function(a, oid, &name);
        }
    }
}

/// ReadyForQuery: pops through the sync point it answers and counts the
/// statements it ends.
fn on_ready(
    frame: &[u8],
    st: &mut State,
    shared: &Shared,
    tracked: bool,
    recs: &mut Records<'_>,
) -> Result<(), SessionError> {
    let m = metrics();
    let status = ready_status(frame);
    let failed = std::mem::take(&mut st.head_failed);
    if tracked && !st.expect.iter().any(Expect::is_sync_point) {
        return Err(SessionError::Desync(
            "ReadyForQuery with no Sync or Query outstanding",
        ));
    }
    if !st.copy_in_open {
        st.copy_marks.clear();
    }
    settle_unsynced(st, recs, None);
    let mut completed = 0u64;
    while let Some(e) = st.expect.pop_front() {
        // Statements of a Query after a failed one never ran.
        unfinished(&e, recs, crate::audit::OUTCOME_NOT_EXECUTED, true);
        match e {
            Expect::Query { start, .. } | Expect::FunctionCall { start } => {
                completed = 1;
                if failed {
                    &m.simple_error
                } else {
                    &m.simple_ok
                }
                .inc();
                m.statement_latency.observe(start.elapsed().as_secs_f64());
                break;
            }
            Expect::Sync {
                start, executes, ..
            } => {
                completed = executes as u64;
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
    if status == b'I' {
        st.tracker.transaction_ended();
    }
    st.txn_status = status;
    if st.ddl_pending {
        shared
            .ddl_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        st.ddl_pending = status != b'I';
    }
    st.idle = st.expect.is_empty() && status == b'I';
    st.report_ready(status, completed, &shared.policy);
    Ok(())
}

/// Most COPY marks kept before the session counts as desynchronised (a
/// client that sends copy messages outside any COPY, without end).
const MAX_COPY_MARKS: usize = 1024;

/// The server ignores Sync during copy-in: the Syncs a client sent between
/// the statement that started a COPY FROM STDIN and the copy's end get no
/// ReadyForQuery, so their queue entries are dropped when the copy ends.
/// Where the server's own timing decides (it failed the copy while Syncs
/// sat among the copy data), pgveil cannot know which Sync it honoured, and
/// closes the connection rather than guess.
fn copy_in_rules(tag: u8, st: &mut State) -> Result<(), SessionError> {
    if st.copy_marks.len() > MAX_COPY_MARKS {
        return Err(SessionError::Desync("COPY messages outside any COPY"));
    }
    match tag {
        b'G' => st.copy_in_open = true,
        b'C' | b'E' if st.copy_in_open => {
            st.copy_in_open = false;
            st.copy_in.server = None;
            let first = st.copy_marks.front().map(|m| m.0);
            let end = st.copy_marks.iter().find(|m| m.1 != b'd').map(|m| m.0);
            let (sure, unsure) = match (tag, first, end) {
                (b'C', _, Some(end)) => (end, end),
                (b'C', _, None) => return Err(SessionError::Desync("COPY ended without CopyDone")),
                // Failed before any copy data (a cancel): the server had read
                // the Syncs sent with the statement, at most one in practice.
                (_, None, _) => {
                    let queued = st
                        .expect
                        .iter()
                        .filter(|e| matches!(e, Expect::Sync { .. }));
                    if queued.count() > 1 {
                        return Err(SessionError::Desync("Syncs pipelined behind a failed COPY"));
                    }
                    (u64::MAX, u64::MAX)
                }
                (_, Some(first), end) => (first, end.unwrap_or(u64::MAX)),
            };
            let ambiguous = st
                .expect
                .iter()
                .any(|e| matches!(e, Expect::Sync { seq, .. } if *seq > sure && *seq < unsure));
            if ambiguous {
                return Err(SessionError::Desync("Sync among the data of a failed COPY"));
            }
            st.expect
                .retain(|e| !matches!(e, Expect::Sync { seq, .. } if *seq < sure));
            let done = end.unwrap_or(u64::MAX);
            st.copy_marks.retain(|m| m.0 > done);
        }
        _ => {}
    }
    Ok(())
}

/// Hands the batch's records to the audit: strict ones are waited for before
/// their results are released. True when a record could not be submitted.
async fn submit(a: &Audit, out: Vec<(AuditRecordInput, bool)>, waits: &mut Vec<Durable>) -> bool {
    let mut failed = false;
    for (r, durable) in out {
        if durable {
            match a.submit(r) {
                Ok(rx) => waits.push(rx),
                Err(_) => failed = true,
            }
        } else if a.record_queued(r).await.is_err() {
            // Results that need no durable record are not withheld; the
            // writer counts the failure.
            tracing::debug!("audit record could not be queued");
        }
    }
    failed
}

/// Releases held results once every record they depend on is durable.
/// False (and nothing written) when a record failed.
async fn release(cw: &mut WriteHalf<Stream>, held: &mut Held) -> Result<bool, SessionError> {
    let mut ok = true;
    for rx in held.waits.drain(..) {
        if !matches!(rx.await, Ok(Ok(_))) {
            ok = false;
        }
    }
    if !ok {
        return Ok(false);
    }
    metrics().bytes_to_clients.inc_by(held.bytes.len() as u64);
    cw.write_all(&held.bytes).await?;
    cw.flush().await?;
    held.bytes.clear();
    Ok(true)
}

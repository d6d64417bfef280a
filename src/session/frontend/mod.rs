//! Client → server: one handler per message kind.
//!
//! The loop reads whatever the socket has, walks the complete frames in the
//! buffer and writes the whole run on with one write (see
//! [`super::io::Assembler`]). Every session keeps the statement accounting
//! (a queue entry per reply the server owes); sessions under rules or audit
//! ("tracked") also have each statement judged and rewritten here.

mod extended;
mod simple;

use std::sync::Mutex;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};

use super::catalog::{catalog_sql, CatalogReply, CATALOG_UNDO};
use super::context::{SessionCtx, SessionError, Shared};
use super::copy::{CopyInAction, DueKind};
use super::io::{fill, lock, Assembler};
use super::shapes::Cached;
use super::state::{Expect, State};
use crate::metrics::metrics;
use crate::net::Stream;
use crate::protocol::messages::put_query;
use crate::protocol::{next_frame, Direction, ProtocolError};
use crate::snapshot::{canonicalize, Snapshot};
use crate::sql::{self, Analysis, Refusal};

/// What the frontend does with one client message.
pub(super) enum Action {
    Forward,
    Replace(BytesMut),
}

/// Everything a handler reads besides the message and the session state.
pub(super) struct Env<'a> {
    pub policy: &'a Snapshot,
    pub ctx: &'a SessionCtx,
    pub shared: &'a Shared,
    /// Statements are judged (rules exist, or the audit records them).
    pub tracked: bool,
    /// The audit cannot write: statements it must record are refused.
    pub audit_down: bool,
    /// When this batch of client bytes arrived.
    pub start: Instant,
}

impl Env<'_> {
    fn audit_on(&self) -> bool {
        self.ctx.rec.is_some()
    }

    /// A refusal because the audit is down; counted by the audit.
    fn audit_refusal(&self) -> Refusal {
        if let Some(a) = &self.shared.audit {
            a.note_refused();
        }
        sql::refuse::audit_unavailable()
    }

    /// Applies the audit-down rule to an analysis: statements the audit must
    /// record (or, when configured, every statement) are refused.
    fn gate(&self, analysis: Analysis) -> Analysis {
        let refuse = self.audit_down
            && (self.shared.audit_required_for_untagged
                || matches!(analysis, Analysis::Rewritten { .. }));
        if refuse {
            Analysis::Refused(self.audit_refusal())
        } else {
            analysis
        }
    }

    /// Judges statement texts already split into statements.
    fn analyse(&self, st: &State, chunks: &[&str]) -> Analysis {
        if !self.needs_analysis(st, chunks) {
            return Analysis::Passthrough;
        }
        self.with_context(st, |ctx| sql::analyse_statements(chunks, ctx))
    }

    /// Whether the statements must be analysed, or pass as written. A
    /// restricted session has every statement analysed: a statement that
    /// names no tagged table can still reach one (functions, views, DO).
    fn needs_analysis(&self, st: &State, chunks: &[&str]) -> bool {
        let policy = self.policy;
        if policy.is_empty() {
            return false;
        }
        let catalog = &st.catalog.current;
        catalog.restricted(policy)
            || catalog.drifted(policy)
            || chunks
                .iter()
                .any(|c| sql::mentions_tagged(&policy.names, c))
    }

    /// The analysis context of this session's statements.
    fn with_context<R>(&self, st: &State, f: impl FnOnce(&sql::Context<'_>) -> R) -> R {
        let policy = self.policy;
        let catalog = &st.catalog.current;
        let crypto = policy.crypto.as_ref();
        let hash_key_hex = |r: &crate::rules::ColumnRule| {
            crypto
                .and_then(|c| c.hash_key(&r.table, &r.name))
                .map(|k| hex::encode(k.material()))
        };
        let ctx = sql::Context {
            rules: &policy.rules,
            schema: Some(&catalog.schema),
            roles: &catalog.roles,
            encryptor: policy,
            canonicalize: &canonicalize,
            sql_prepared: Some(&st.tracker.sql_prepared),
            restricted: catalog.restricted(policy),
            hash_key_hex: &hash_key_hex,
        };
        f(&ctx)
    }

    /// [`Env::analyse`] of one simple-protocol Query through the session's
    /// shape cache (see [`crate::session::shapes`]).
    fn analyse_simple(&self, st: &mut State, chunks: &[&str]) -> Analysis {
        let [chunk] = chunks else {
            return self.analyse(st, chunks);
        };
        if !self.needs_analysis(st, chunks) {
            return Analysis::Passthrough;
        }
        let Some(shaped) = sql::shape::parameterize(chunk) else {
            return self.analyse(st, chunks);
        };
        let catalog = st.catalog.current.clone();
        let gen = st.catalog.generation;
        let entry = match st
            .shapes
            .get(shaped.text.as_str(), self.policy, &catalog, gen)
        {
            Some(e) => e,
            None => {
                let e = cached(self.analyse(st, &[&shaped.text]));
                st.shapes.insert(shaped.text.clone(), e.clone());
                e
            }
        };
        match entry {
            Cached::Passthrough => Analysis::Passthrough,
            Cached::Full => self.analyse(st, chunks),
            Cached::Rewritten {
                sql,
                holes,
                plan,
                params,
            } => {
                let spliced = self.with_context(st, |ctx| {
                    sql::shape::splice(&sql, &holes, &shaped.literals, &params, ctx)
                });
                match spliced {
                    Ok(Some(out)) => Analysis::Rewritten {
                        sql: out,
                        statements: vec![(*plan).clone()],
                    },
                    // A literal the column's type rejects: the full analysis
                    // refuses it as it always has.
                    Ok(None) | Err(_) => self.analyse(st, chunks),
                }
            }
        }
    }
}

/// What a shape's analysis means for the statements of that shape.
fn cached(a: Analysis) -> Cached {
    match a {
        Analysis::Passthrough => Cached::Passthrough,
        Analysis::Rewritten {
            sql,
            mut statements,
        } if statements.len() == 1 => {
            let mut plan = statements.remove(0);
            let params = std::mem::take(&mut plan.params);
            if plan.sql_prepare.is_some() || plan.sql_deallocate.is_some() {
                return Cached::Full;
            }
            let Some(holes) = sql::shape::holes(&sql) else {
                return Cached::Full;
            };
            Cached::Rewritten {
                holes: std::sync::Arc::new(holes),
                sql: sql.into(),
                plan: std::sync::Arc::new(plan),
                params: std::sync::Arc::new(params),
            }
        }
        _ => Cached::Full,
    }
}

/// Refusals decided before any analysis: a session without a catalog has
/// nothing to judge by (only transaction control passes, so a client can
/// end what it started); a prepared statement or cursor made before the
/// rules or roles changed can no longer be proven; and a restricted session
/// may not LISTEN (notification payloads are whatever another session put
/// in them, rows included).
fn precheck(chunks: &[&str], st: &State, env: &Env<'_>) -> Option<Refusal> {
    if env.policy.is_empty() {
        return None;
    }
    if !st.catalog.loaded {
        if chunks.iter().all(|c| sql::is_transaction_control(c)) {
            return None;
        }
        return Some(sql::refuse::no_catalog());
    }
    let gen = st.catalog.generation;
    let stale = chunks
        .iter()
        .filter_map(|c| sql::object_op(c))
        .any(|op| st.tracker.stale_object(&op, gen));
    if stale {
        return Some(sql::refuse::rules_changed_since_prepare());
    }
    let listens = chunks.iter().any(|c| sql::is_listen(c));
    if listens && st.catalog.current.restricted(env.policy) {
        return Some(sql::refuse::listen_restricted());
    }
    if st.catalog.current.restricted(env.policy) {
        // The analysis refuses every DO block of a restricted session.
        return None;
    }
    chunks.iter().find_map(|c| do_naming_tagged(c, env.policy))
}

/// A DO block whose body (or a literal in it) names a tagged table, or
/// whose shape pgveil cannot read: refused for every role, since its code
/// could write plaintext into an encrypted column. Restricted sessions
/// refuse every DO block in the analysis already.
fn do_naming_tagged(chunk: &str, policy: &Snapshot) -> Option<Refusal> {
    if !sql::is_do(chunk) {
        return None;
    }
    let tables: std::collections::HashSet<&str> = policy
        .rules
        .columns()
        .iter()
        .map(|r| r.table.name.as_str())
        .collect();
    match sql::do_block(chunk, &|w| tables.contains(w)) {
        None => Some(sql::refuse::do_block_tagged(None)),
        Some(b) => b
            .names
            .iter()
            .next()
            .map(|t| sql::refuse::do_block_tagged(Some(t))),
    }
}

/// Batch accounting across reads: an extended-protocol batch runs from its
/// first message to its Sync.
#[derive(Default)]
struct Batch {
    start: Option<Instant>,
    executes: u32,
    /// Tag of the previous client message (runs of CopyData).
    last_tag: u8,
}

/// Client → server, until the client terminates or a socket fails.
pub(super) async fn frontend(
    cr: &mut ReadHalf<Stream>,
    sw: &mut WriteHalf<Stream>,
    mut buf: BytesMut,
    state: &Mutex<State>,
    ctx: &SessionCtx,
    shared: &Shared,
) -> Result<(), SessionError> {
    let m = metrics();
    let mut batch = Batch::default();
    loop {
        let base = shared.policy.load();
        let tracked = ctx.tracked(&base);
        if tracked
            && batch.start.is_none()
            && !buf.is_empty()
            && catalog_stale(&lock(state), &base, shared)
        {
            refresh_catalog(sw, state, &base, shared).await?;
        }
        // The rules this session serves under its catalog (conversions in
        // flight change them; see `SessionCatalog::policy`).
        let policy = lock(state).catalog.policy(&base);
        let env = Env {
            policy: &policy,
            ctx,
            shared,
            tracked,
            audit_down: shared.audit.as_ref().is_some_and(|a| !a.is_healthy()),
            start: Instant::now(),
        };
        let (pos, terminate, asm) = walk(&buf, &mut lock(state), &env, &mut batch)?;
        if pos > 0 {
            let assembled = asm.finish(&buf, pos);
            let chunk = assembled.as_deref().unwrap_or(&buf[..pos]);
            m.bytes_from_clients.inc_by(chunk.len() as u64);
            sw.write_all(chunk)
                .await
                .map_err(|_| SessionError::UpstreamLost)?;
            buf.advance(pos);
            sw.flush().await.map_err(|_| SessionError::UpstreamLost)?;
            m.proxy_latency.observe(env.start.elapsed().as_secs_f64());
        }
        if terminate {
            return Ok(());
        }
        if fill(cr, &mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Handles the complete frames in `buf`: (bytes consumed, client sent
/// Terminate, the output).
fn walk(
    buf: &[u8],
    st: &mut State,
    env: &Env<'_>,
    batch: &mut Batch,
) -> Result<(usize, bool, Assembler), ProtocolError> {
    let cap = env.shared.config.max_message_bytes;
    let mut asm = Assembler::new();
    let mut pos = 0;
    while let Some(n) = next_frame(&buf[pos..], Direction::Frontend, cap)? {
        let frame = &buf[pos..pos + n];
        if frame[0] == b'X' {
            return Ok((pos + n, true, asm));
        }
        account(frame[0], st, env, batch);
        let queued = st.expect.len();
        if let Action::Replace(new) = dispatch(frame, st, env)? {
            asm.replace(buf, pos, pos + n, &new);
        }
        queue_copy_dues(frame[0], st);
        if st.expect.len() > queued && matches!(frame[0], b'Q' | b'E') {
            write_intents(st, env);
        }
        pos += n;
    }
    Ok((pos, false, asm))
}

/// Strict audit: the record of each tagged statement just queued is written
/// now, before the statement is forwarded, so its fsync runs while the
/// server executes it (see `crate::audit::handle`). A record that cannot be
/// submitted still lets the statement go; the backend then withholds its
/// results and closes the session, as for any record that failed.
fn write_intents(st: &mut State, env: &Env<'_>) {
    let (Some(audit), Some(rec)) = (env.shared.audit.as_ref(), env.ctx.rec.as_ref()) else {
        return;
    };
    if !audit.uses_intents() {
        return;
    }
    let version = &env.policy.rules.version;
    let submit = |a: &super::audit::StmtAudit| -> Option<crate::audit::Intent> {
        if !a.tagged || a.refused.is_some() {
            return None;
        }
        let input = rec.record(a, crate::audit::OUTCOME_PENDING, 0, env.start, version);
        Some(
            audit
                .intent(input)
                .unwrap_or_else(|_| crate::audit::Intent::failed()),
        )
    };
    match st.expect.back_mut() {
        Some(Expect::Query { audit, intents, .. })
            if intents.is_empty() && audit.iter().any(|a| a.tagged && a.refused.is_none()) =>
        {
            *intents = audit.iter().map(submit).collect();
        }
        Some(Expect::Execute {
            portal: Some(p),
            intent,
            ..
        }) if intent.is_none() => {
            *intent = p.stmt.audit.as_ref().and_then(submit);
        }
        _ => {}
    }
}

/// Statement accounting, for every session.
fn account(tag: u8, st: &mut State, env: &Env<'_>, batch: &mut Batch) {
    st.seq += 1;
    let prev = std::mem::replace(&mut batch.last_tag, tag);
    match tag {
        b'd' if prev != b'd' => st.copy_marks.push_back((st.seq, tag)),
        b'c' | b'f' => st.copy_marks.push_back((st.seq, tag)),
        _ => {}
    }
    match tag {
        b'P' | b'B' | b'D' | b'C' | b'H' => {
            batch.start.get_or_insert(env.start);
        }
        b'E' => {
            batch.start.get_or_insert(env.start);
            batch.executes += 1;
        }
        b'S' => {
            let start = batch.start.take().unwrap_or(env.start);
            st.expect.push_back(Expect::Sync {
                start,
                executes: std::mem::take(&mut batch.executes),
                seq: st.seq,
            });
        }
        _ => {}
    }
    if matches!(
        tag,
        b'Q' | b'P' | b'B' | b'D' | b'C' | b'E' | b'F' | b'S' | b'H'
    ) {
        st.idle = false;
    }
}

/// The table of message kinds.
fn dispatch(frame: &[u8], st: &mut State, env: &Env<'_>) -> Result<Action, ProtocolError> {
    if frame[0] == b'Q' {
        simple::fault_injection(frame);
    }
    if !env.tracked {
        return simple::untracked(frame, st, env);
    }
    match frame[0] {
        b'Q' => simple::on_query(frame, st, env),
        b'F' => simple::on_function_call(frame, st, env),
        b'P' => extended::on_parse(frame, st, env),
        b'B' => extended::on_bind(frame, st, env),
        b'D' => extended::on_describe(frame, st),
        b'E' => extended::on_execute(frame, st, env),
        b'C' => extended::on_close(frame, st),
        b'd' | b'c' | b'f' => on_copy_message(frame, st, env.policy),
        _ => Ok(Action::Forward),
    }
}

/// Client CopyData/CopyDone/CopyFail: COPY FROM STDIN data (see
/// [`super::copy::CopyIn`] for how a run finds its statement).
fn on_copy_message(
    frame: &[u8],
    st: &mut State,
    policy: &Snapshot,
) -> Result<Action, ProtocolError> {
    let roles = st.catalog.current.roles.clone();
    match st.copy_in.message(frame, &roles, policy) {
        Ok(CopyInAction::Forward) => Ok(Action::Forward),
        Ok(CopyInAction::Replace(out)) => Ok(Action::Replace(out)),
        Err(why) => Err(ProtocolError::UnattributedCopy(why)),
    }
}

/// After a client message has been handled: the COPY FROM STDIN data that
/// may follow it belongs to its COPY statements; any other message ends the
/// server's copy-in (only Sync and Flush pass through it).
fn queue_copy_dues(tag: u8, st: &mut State) {
    let seq = st.seq;
    let dues: Vec<(usize, DueKind)> = match (tag, st.expect.back_mut()) {
        (b'd' | b'c' | b'f' | b'S' | b'H', _) => return,
        (
            b'Q',
            Some(Expect::Query {
                seq: s,
                plans,
                refusal,
                ..
            }),
        ) => {
            *s = seq;
            match (refusal, plans) {
                (Some(_), _) => vec![(0, DueKind::Drop)],
                (None, Some(ps)) => ps
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| copy_due(p).map(|k| (i, k)))
                    .collect(),
                (None, None) => Vec::new(),
            }
        }
        (b'E', Some(Expect::Execute { portal, .. })) => portal
            .as_ref()
            .and_then(|p| p.stmt.plan.as_deref())
            .and_then(copy_due)
            .map(|k| vec![(0, k)])
            .unwrap_or_default(),
        (
            b'E',
            Some(Expect::Parse {
                refusal: Some(_), ..
            }),
        ) => vec![(0, DueKind::Drop)],
        _ => {
            st.copy_in.reset();
            return;
        }
    };
    st.copy_in.expect(seq, dues);
}

/// What the COPY FROM STDIN data behind a statement becomes, if it is a COPY.
fn copy_due(p: &sql::StatementPlan) -> Option<DueKind> {
    match &p.copy_in {
        Some(cp) => Some(DueKind::Transform(std::sync::Arc::new(cp.clone()))),
        None if p.kind == sql::StatementKind::Copy => Some(DueKind::Other),
        None => None,
    }
}

/// Whether the session's catalog snapshot must be re-read before the next
/// statement. Only checked between statements, with nothing in flight, so
/// pgveil's own query never interleaves with the client's.
fn catalog_stale(st: &State, policy: &Snapshot, shared: &Shared) -> bool {
    !policy.is_empty()
        && st.expect.is_empty()
        && st.txn_status != b'E'
        && st.catalog.stale(
            &policy.rules.version,
            shared.ddl_epoch.load(std::sync::atomic::Ordering::Acquire),
            shared.config.catalog_max_age,
        )
}

/// Sends pgveil's catalog query on the session's connection and waits for
/// the backend loop to collect its replies. Inside the client's transaction
/// the read runs in a savepoint; if it fails there, the savepoint is
/// rolled back so the client's transaction carries on untouched.
async fn refresh_catalog(
    sw: &mut WriteHalf<Stream>,
    state: &Mutex<State>,
    policy: &Snapshot,
    shared: &Shared,
) -> Result<(), SessionError> {
    let epoch = shared.ddl_epoch.load(std::sync::atomic::Ordering::Acquire);
    let in_txn = lock(state).txn_status == b'T';
    let fresh = internal_query(sw, state, &catalog_sql(policy, in_txn)).await?;
    if fresh.is_none() && in_txn && lock(state).txn_status == b'E' {
        internal_query(sw, state, CATALOG_UNDO).await?;
    }
    let mut st = lock(state);
    if st.catalog.refreshed(fresh, epoch, policy) {
        tracing::debug!("session catalog refreshed");
    } else {
        tracing::warn!(
            "could not refresh the session catalog; its statements are refused until it is read"
        );
    }
    Ok(())
}

/// One query of pgveil's own on the session's connection; its replies never
/// reach the client. Returns the catalog it read, if it was a catalog read.
async fn internal_query(
    sw: &mut WriteHalf<Stream>,
    state: &Mutex<State>,
    sql: &str,
) -> Result<Option<super::catalog::Catalog>, SessionError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let mut st = lock(state);
        let login = st
            .catalog
            .current
            .roles
            .first()
            .cloned()
            .unwrap_or_default();
        st.expect.push_back(Expect::Internal {
            tx: Some(tx),
            reply: CatalogReply::default(),
            login,
        });
        st.idle = false;
    }
    let mut q = BytesMut::new();
    put_query(&mut q, sql);
    sw.write_all(&q)
        .await
        .map_err(|_| SessionError::UpstreamLost)?;
    sw.flush().await.map_err(|_| SessionError::UpstreamLost)?;
    Ok(rx.await.ok().flatten())
}

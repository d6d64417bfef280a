//! The two relay loops after authentication.
//!
//! Each loop reads whatever the socket has, walks the complete frames in the
//! buffer (header check only for messages it does not act on), and writes
//! the whole run of untouched frames on with one write: the original bytes,
//! never decoded and re-encoded. When a frame must change, the output is
//! assembled from the untouched runs and the replacements.
//!
//! Sessions under rules (a non-empty policy) additionally track statements
//! and portals ([`super::tagged`]); without rules only the statement
//! accounting runs, so the passthrough path costs a header check, a queue
//! push/pop per statement and a few atomic counters.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::backend::backend;
use super::tagged::{query_expect, Action, Analyzer, Catalog, Expect, Tracker};
use super::{SessionCtx, SessionError, Shared};
use crate::metrics::metrics;
use crate::net::Stream;
use crate::protocol::{next_frame, put_error, Direction, Severity};

#[derive(Debug, Default)]
pub(super) struct State {
    pub expect: VecDeque<Expect>,
    /// An ErrorResponse arrived for the statement at the head.
    pub head_failed: bool,
    /// Nothing in flight and the last ReadyForQuery said idle.
    pub idle: bool,
    pub tracker: Tracker,
    /// A COPY in flight whose rows pgveil transforms.
    pub copy: Option<super::copy::CopyStream>,
    /// Roles and schema snapshot; replaced when it goes stale.
    pub catalog: Arc<Catalog>,
    pub catalog_loaded: bool,
    /// The DDL epoch and rules version the catalog was read at.
    pub catalog_epoch: u64,
    pub catalog_version: String,
    /// When the catalog was read.
    pub catalog_at: Option<Instant>,
    /// Transaction status of the last ReadyForQuery.
    pub txn_status: u8,
    /// DDL went through this session; bump the epoch when it settles.
    pub ddl_pending: bool,
}

/// Reads from a socket into the buffer, growing it as needed.
pub(super) async fn fill<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    r.read_buf(buf).await
}

pub(super) fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A poisoned lock means a panic elsewhere in this task; the state is
    // plain data, so keep going rather than take the session down twice.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Collects a batch's output: untouched runs are copied only when some frame
/// in the batch was replaced.
pub(super) struct Assembler {
    out: BytesMut,
    copied_to: usize,
    touched: bool,
}

impl Assembler {
    pub fn new() -> Self {
        Assembler {
            out: BytesMut::new(),
            copied_to: 0,
            touched: false,
        }
    }

    /// Replace `buf[start..end]` with `with` (empty = drop the frame).
    pub fn replace(&mut self, buf: &[u8], start: usize, end: usize, with: &[u8]) {
        self.touched = true;
        self.out.extend_from_slice(&buf[self.copied_to..start]);
        self.out.extend_from_slice(with);
        self.copied_to = end;
    }

    /// The bytes to write for `buf[..end]`: None when nothing changed (write
    /// `&buf[..end]` itself, then `advance`, so the passthrough path neither
    /// copies nor splits the buffer).
    pub fn finish(mut self, buf: &[u8], end: usize) -> Option<BytesMut> {
        if !self.touched {
            return None;
        }
        self.out.extend_from_slice(&buf[self.copied_to..end]);
        Some(self.out)
    }
}

pub(super) async fn run(
    client: Stream,
    server: Stream,
    leftover: (BytesMut, BytesMut),
    ctx: &SessionCtx,
    initial: InitialCatalog,
    shared: &Shared,
) -> Result<(), SessionError> {
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let policy = shared.policy.load();
    let state = Mutex::new(State {
        idle: true,
        catalog: Arc::new(initial.catalog.unwrap_or_default()),
        catalog_loaded: initial.loaded,
        catalog_epoch: initial.epoch,
        catalog_at: Some(Instant::now()),
        catalog_version: policy.rules.version.clone(),
        txn_status: b'I',
        ..State::default()
    });
    let (cbuf, sbuf) = leftover;
    let mut draining = shared.draining.clone();
    let outcome = {
        let fe = frontend(&mut cr, &mut sw, cbuf, &state, ctx, shared);
        let be = backend(&mut sr, &mut cw, sbuf, &state, ctx, shared);
        let drain = async {
            // Wait for SIGTERM, then for the session to be idle.
            while !*draining.borrow() {
                if draining.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            loop {
                if lock(&state).idle {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            r = fe => r,
            r = be => r,
            () = drain => Err(SessionError::Shutdown),
        }
    };
    let mut out = BytesMut::new();
    match &outcome {
        Ok(()) => {}
        Err(SessionError::Shutdown) => {
            put_error(
                &mut out,
                Severity::Fatal,
                "57P01",
                "terminating connection because pgveil is shutting down",
                None,
            );
            let _ = sw.write_all(b"X\0\0\0\x04").await;
        }
        Err(SessionError::Protocol(e)) => {
            metrics().protocol_errors.inc();
            put_error(
                &mut out,
                Severity::Fatal,
                "08P01",
                &format!("invalid frontend message: {e}"),
                None,
            );
            let _ = sw.write_all(b"X\0\0\0\x04").await;
        }
        Err(SessionError::AuditUnavailable) => {
            put_error(
                &mut out,
                Severity::Fatal,
                "58030",
                "pgveil could not write the audit record of a statement on tagged tables; its results were withheld",
                Some("the operator should check the audit directory; new connections are served once it recovers"),
            );
            let _ = sw.write_all(b"X\0\0\0\x04").await;
        }
        Err(SessionError::UpstreamLost) => {
            put_error(
                &mut out,
                Severity::Fatal,
                "08006",
                "pgveil lost the connection to the upstream database server",
                None,
            );
        }
        Err(_) => {}
    }
    if !out.is_empty() {
        let _ = cw.write_all(&out).await;
        let _ = cw.flush().await;
    }
    let _ = cw.shutdown().await;
    let _ = sw.shutdown().await;
    match outcome {
        Err(SessionError::Shutdown) => Ok(()),
        other => other,
    }
}

/// The catalog read during authentication.
pub(super) struct InitialCatalog {
    pub catalog: Option<Catalog>,
    pub loaded: bool,
    pub epoch: u64,
}

/// Whether the session's catalog snapshot must be re-read before the next
/// statement: DDL ran somewhere through pgveil, the rules changed, or rules
/// appeared after the session started. Only checked between statements,
/// with nothing in flight, so pgveil's own query never interleaves with the
/// client's.
fn catalog_stale(st: &State, policy: &crate::snapshot::Snapshot, shared: &Shared) -> bool {
    !policy.is_empty()
        && st.expect.is_empty()
        && st.txn_status != b'E'
        && (!st.catalog_loaded
            || st
                .catalog_at
                .is_none_or(|t| t.elapsed() > shared.config.catalog_max_age)
            || st.catalog_version != policy.rules.version
            || st.catalog_epoch != shared.ddl_epoch.load(std::sync::atomic::Ordering::Acquire))
}

async fn refresh_catalog(
    sw: &mut WriteHalf<Stream>,
    state: &Mutex<State>,
    policy: &crate::snapshot::Snapshot,
    shared: &Shared,
) -> Result<(), SessionError> {
    let epoch = shared.ddl_epoch.load(std::sync::atomic::Ordering::Acquire);
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let mut st = lock(state);
        st.expect.push_back(Expect::Internal {
            tx: Some(tx),
            results: vec![Vec::new()],
            failed: false,
        });
        st.idle = false;
    }
    let mut q = BytesMut::new();
    crate::protocol::messages::put_query(&mut q, &super::startup::catalog_sql(policy));
    sw.write_all(&q)
        .await
        .map_err(|_| SessionError::UpstreamLost)?;
    sw.flush().await.map_err(|_| SessionError::UpstreamLost)?;
    let fresh = rx.await.ok().flatten();
    let mut st = lock(state);
    match fresh {
        Some(c) => {
            st.catalog = Arc::new(c);
            st.catalog_loaded = true;
            st.catalog_epoch = epoch;
            st.catalog_at = Some(Instant::now());
            st.catalog_version = policy.rules.version.clone();
            tracing::debug!("session catalog refreshed");
        }
        None => {
            // Retry after the usual interval rather than on every statement.
            st.catalog_at = Some(Instant::now());
            tracing::warn!("could not refresh the session catalog; keeping the previous one")
        }
    }
    Ok(())
}

/// Client → server.
async fn frontend(
    cr: &mut ReadHalf<Stream>,
    sw: &mut WriteHalf<Stream>,
    mut buf: BytesMut,
    state: &Mutex<State>,
    ctx: &SessionCtx,
    shared: &Shared,
) -> Result<(), SessionError> {
    let cap = shared.config.max_message_bytes;
    let m = metrics();
    let mut batch_start: Option<Instant> = None;
    let mut executes = 0u32;
    loop {
        let t0 = Instant::now();
        let mut pos = 0;
        let mut terminate = false;
        let policy = shared.policy.load();
        let tagged = ctx.tracked(&policy);
        let audit_down = shared.audit.as_ref().is_some_and(|a| !a.is_healthy());
        let stale = tagged
            && batch_start.is_none()
            && !buf.is_empty()
            && catalog_stale(&lock(state), &policy, shared);
        if stale {
            refresh_catalog(sw, state, &policy, shared).await?;
        }
        let mut asm = Assembler::new();
        {
            let mut st = lock(state);
            let st = &mut *st;
            while let Some(n) = next_frame(&buf[pos..], Direction::Frontend, cap)? {
                let tag = buf[pos];
                let frame = &buf[pos..pos + n];
                match tag {
                    b'P' | b'B' | b'D' | b'C' | b'H' => {
                        batch_start.get_or_insert(t0);
                    }
                    b'E' => {
                        batch_start.get_or_insert(t0);
                        executes += 1;
                    }
                    b'S' => {
                        let start = batch_start.take().unwrap_or(t0);
                        st.expect.push_back(Expect::Sync { start, executes });
                        executes = 0;
                    }
                    b'X' => {
                        terminate = true;
                        pos += n;
                        break;
                    }
                    _ => {}
                }
                if matches!(
                    tag,
                    b'Q' | b'P' | b'B' | b'D' | b'C' | b'E' | b'F' | b'S' | b'H'
                ) {
                    st.idle = false;
                }
                if tagged && matches!(tag, b'd' | b'c' | b'f') {
                    if let Some(new) = copy_frontend(st, frame, &policy) {
                        asm.replace(&buf, pos, pos + n, &new);
                    }
                } else if tagged {
                    if matches!(tag, b'Q' | b'P') && is_ddl(frame) {
                        st.ddl_pending = true;
                    }
                    if st.catalog_loaded || policy.is_empty() {
                        let catalog = st.catalog.clone();
                        let an = Analyzer {
                            policy: &policy,
                            catalog: &catalog,
                            audit_on: ctx.rec.is_some(),
                            audit_down,
                            audit_down_refuses_all: shared.audit_required_for_untagged,
                            audit: shared.audit.as_ref(),
                        };
                        if let Action::Replace(new) =
                            an.frontend(frame, t0, &mut st.tracker, &mut st.expect)?
                        {
                            asm.replace(&buf, pos, pos + n, &new);
                        }
                    } else if let Some(new) =
                        // Rules appeared after this session started: it has no
                        // catalog snapshot to judge statements by.
                        super::backend::refuse_without_catalog(
                            frame,
                            t0,
                            &policy,
                            &mut st.expect,
                        )?
                    {
                        asm.replace(&buf, pos, pos + n, &new);
                    }
                } else if tag == b'Q' {
                    st.expect
                        .push_back(query_expect(t0, None, None, Vec::new()));
                } else if tag == b'F' {
                    st.expect.push_back(Expect::FunctionCall { start: t0 });
                }
                pos += n;
            }
        }
        if pos > 0 {
            let assembled = asm.finish(&buf, pos);
            let chunk = assembled.as_deref().unwrap_or(&buf[..pos]);
            m.bytes_from_clients.inc_by(chunk.len() as u64);
            sw.write_all(chunk)
                .await
                .map_err(|_| SessionError::UpstreamLost)?;
            buf.advance(pos);
            sw.flush().await.map_err(|_| SessionError::UpstreamLost)?;
            m.proxy_latency.observe(t0.elapsed().as_secs_f64());
        }
        if terminate {
            return Ok(());
        }
        if fill(cr, &mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Client CopyData/CopyDone/CopyFail during a transformed COPY FROM STDIN.
fn copy_frontend(
    st: &mut State,
    frame: &[u8],
    policy: &crate::snapshot::Snapshot,
) -> Option<BytesMut> {
    use super::copy::{copy_fail, CopyDir};
    let cs = st.copy.as_mut().filter(|c| c.dir == CopyDir::In)?;
    if cs.fail_sent {
        // The server is discarding the rest of this COPY; so do we.
        return Some(BytesMut::new());
    }
    let mut out = match frame[0] {
        b'd' => cs.data(&frame[5..], policy).unwrap_or_default(),
        b'c' => {
            let mut out = cs.finish(policy).unwrap_or_default();
            if cs.failed.is_none() {
                out.extend_from_slice(frame);
            }
            out
        }
        _ => {
            st.copy = None;
            return None;
        }
    };
    if let Some(r) = &cs.failed {
        cs.fail_sent = true;
        out = copy_fail(&r.message);
    }
    Some(out)
}

/// Statements that can change the catalog pgveil relies on.
fn is_ddl(frame: &[u8]) -> bool {
    let text = if frame[0] == b'Q' {
        crate::protocol::messages::query_text(frame).ok()
    } else {
        frame
            .get(5..)
            .and_then(crate::protocol::take_cstr)
            .and_then(|(_, r)| crate::protocol::take_cstr(r))
            .map(|(q, _)| q)
    };
    let Some(text) = text else { return false };
    crate::sql::split_statements(text).iter().any(|s| {
        matches!(
            super::audit::kind_from_text(s),
            crate::audit::StatementKind::Ddl
        )
    })
}

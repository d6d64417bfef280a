//! The two relay loops after authentication, run as two futures of the
//! session's one task (so they progress independently without ever handing
//! a message to another thread), plus the drain on SIGTERM.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::backend::{abandoned, backend};
use super::catalog::SessionCatalog;
use super::context::{SessionCtx, SessionError, Shared};
use super::frontend::frontend;
use super::io::lock;
use super::state::State;
use crate::admin::ClientSlot;
use crate::audit::OUTCOME_CLIENT_DISCONNECTED;
use crate::error::sqlstate;
use crate::metrics::metrics;
use crate::net::Stream;
use crate::protocol::rows::TERMINATE;

/// Relays until the client leaves, a socket fails, or a drain closes the
/// idle session. Ends with the client told why, when it can be.
pub(super) async fn run(
    client: Stream,
    server: Stream,
    leftover: (BytesMut, BytesMut),
    ctx: &SessionCtx,
    catalog: SessionCatalog,
    slot: &Arc<ClientSlot>,
    shared: &Shared,
) -> Result<(), SessionError> {
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let mut st = State::new(catalog);
    st.slot = Some(slot.clone());
    let state = Mutex::new(st);
    let (cbuf, sbuf) = leftover;
    let outcome = {
        let fe = frontend(&mut cr, &mut sw, cbuf, &state, ctx, shared);
        let be = backend(&mut sr, &mut cw, sbuf, &state, ctx, shared);
        tokio::select! {
            r = fe => r,
            r = be => r,
            () = drained(&state, shared) => Err(SessionError::Shutdown),
            () = idle_timeout(&state, shared) => Err(SessionError::IdleTimeout),
        }
    };
    // Statements sent but never answered to the client still get records.
    let left = match &outcome {
        Ok(()) | Err(SessionError::Io(_)) => Some(OUTCOME_CLIENT_DISCONNECTED),
        Err(SessionError::UpstreamLost) => Some(sqlstate::CONNECTION_FAILURE),
        _ => None,
    };
    abandoned(&state, ctx, shared, left);
    if let Some(e) = outcome.as_ref().err().filter(|e| tells_client(e)) {
        if matches!(e, SessionError::Protocol(_)) {
            metrics().protocol_errors.inc();
        }
        // The server is told the session is over unless it went away itself.
        if !matches!(e, SessionError::UpstreamLost) {
            let _ = sw.write_all(TERMINATE).await;
        }
        if let Some(out) = e.response() {
            let _ = cw.write_all(&out).await;
            let _ = cw.flush().await;
        }
    }
    let _ = cw.shutdown().await;
    let _ = sw.shutdown().await;
    match outcome {
        Err(SessionError::Shutdown) => Ok(()),
        Err(SessionError::IdleTimeout) => {
            metrics().idle_timeouts.inc();
            Ok(())
        }
        other => other,
    }
}

/// Failures of the relay the client hears about (the others are a client
/// that went away, or the server's own error already relayed).
fn tells_client(e: &SessionError) -> bool {
    matches!(
        e,
        SessionError::Shutdown
            | SessionError::IdleTimeout
            | SessionError::Protocol(_)
            | SessionError::AuditUnavailable
            | SessionError::Desync(_)
            | SessionError::UpstreamLost
    )
}

/// Resolves once SIGTERM arrived and the session is idle.
async fn drained(state: &Mutex<State>, shared: &Shared) {
    let mut draining = shared.draining.clone();
    while !*draining.borrow() {
        if draining.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    loop {
        if lock(state).idle {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resolves once the session has been idle (nothing in flight, no
/// transaction open, no client message) for `client_idle_timeout`; never
/// without one. Checked a few times per timeout instead of re-arming a
/// timer per message, so the statement path pays nothing: a session is
/// closed after between 1 and 1.5 timeouts of idleness.
async fn idle_timeout(state: &Mutex<State>, shared: &Shared) {
    let Some(limit) = shared.config.client_idle_timeout else {
        return std::future::pending().await;
    };
    let tick = (limit / 4).clamp(Duration::from_millis(100), Duration::from_secs(15));
    let mut last_seq = lock(state).seq;
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(tick).await;
        let (idle, seq) = {
            let st = lock(state);
            (st.idle && st.txn_status == b'I', st.seq)
        };
        if !idle || seq != last_seq {
            last_seq = seq;
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() >= limit {
            return;
        }
    }
}

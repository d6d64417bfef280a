//! One client connection: startup negotiation, upstream connection, relayed
//! authentication, then the two relay loops.
//!
//! A session is a single task that owns both sockets. The frontend loop
//! (client → server) and backend loop (server → client) run as two futures
//! inside that task, so they progress independently (no deadlock when both
//! peers write at once) without ever handing a message to another thread.
//!
//! Layout (each file imports only files listed before it, never back):
//! - `context`: server-wide [`Shared`] state, [`SessionError`] and its
//!   one mapping to what the client reads.
//! - `io`: buffered reads and the batch [`io::Assembler`].
//! - `catalog`: the session's roles and schema snapshot, one reader for the
//!   first load and every refresh.
//! - `audit`, `rows`, `copy`: record templates, value transforms on result
//!   rows and Bind parameters, and COPY data in flight.
//! - `state`: the replies owed, statements and portals known.
//! - `refusal`: stand-ins that keep a refused message in step with the server.
//! - `frontend`, `backend`: one handler per message kind, per direction.
//! - `startup`: TLS negotiation, upstream connection, relayed authentication.
//! - `relay`: the two loops of one session and the drain.
//! - `admin`: a console session (database `pgveil`), answered locally.

mod admin;
mod audit;
mod backend;
mod catalog;
mod context;
mod copy;
mod frontend;
mod io;
mod refusal;
mod relay;
mod rows;
mod shapes;
mod startup;
mod state;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub use audit::SessionInfo;
pub use context::{SessionCtx, SessionError, Shared};

/// Runs one client connection to completion. Never panics on client input;
/// every failure ends in a clean close (with an ErrorResponse when the
/// protocol allows one).
pub async fn handle(client: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    crate::net::set_keepalive(&client, shared.config.tcp_keepalive);
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    // With PGVEIL_LOG=debug every log line of the session carries its id and
    // peer. At the default level the span is disabled, so the per-poll cost on
    // the hot path is nil; who did what is in the audit stream.
    let span = tracing::debug_span!("session", id, peer = %peer);
    let result = tracing::Instrument::instrument(run(client, peer, id, &shared), span).await;
    if let Err(e) = result {
        match &e {
            SessionError::Io(_) => tracing::debug!(session = id, error = %e, "session closed"),
            _ => tracing::info!(session = id, error = %e, "session ended with error"),
        }
    }
}

async fn run(
    client: TcpStream,
    peer: SocketAddr,
    id: u64,
    shared: &Shared,
) -> Result<(), SessionError> {
    let startup_timeout = Duration::from_secs(60);
    let negotiated =
        match tokio::time::timeout(startup_timeout, startup::negotiate(client, shared)).await {
            Ok(r) => r?,
            Err(_) => return Err(SessionError::ClientTimeout),
        };
    let Some((mut client, packet, leftover)) = negotiated else {
        return Ok(()); // cancel request or refused negotiation, already answered
    };
    let info = SessionInfo {
        id,
        peer: Some(peer),
        user: packet.param("user").unwrap_or_default().to_string(),
        database: packet
            .param("database")
            .or(packet.param("user"))
            .unwrap_or_default()
            .to_string(),
        application_name: packet
            .param("application_name")
            .unwrap_or_default()
            .to_string(),
    };
    if info.database == crate::admin::CONSOLE_DATABASE {
        return admin::serve(client, &packet, &info, shared).await;
    }
    let (mut server, _upstream) = match startup::connect_upstream(shared).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(session = id, error = %e, "upstream connect failed");
            fatal_and_close(&mut client, &e).await;
            return Err(e);
        }
    };
    let key = match startup::relay_auth(&mut client, &mut server, &packet, leftover, shared).await {
        Ok(a) => a,
        Err(e) => {
            if let SessionError::AuthFailed(code) = &e {
                auth_record(
                    shared,
                    &info,
                    &[],
                    crate::audit::RecordKind::AuthFailed,
                    code,
                );
            }
            fatal_and_close(&mut client, &e).await;
            return Err(e);
        }
    };
    let roles = key
        .catalog
        .as_ref()
        .map(|c| c.roles.clone())
        .unwrap_or_default();
    auth_record(
        shared,
        &info,
        &roles,
        crate::audit::RecordKind::AuthOk,
        "ok",
    );
    tracing::debug!(session = id, user = %info.user, database = %info.database, "authenticated");
    let rec = shared.audit.as_ref().map(|_| audit::RecordCtx {
        info: info.clone(),
        roles: Arc::new(roles),
    });
    let ctx = SessionCtx { rec };
    let catalog = catalog::SessionCatalog::new(key.catalog, key.epoch, &shared.policy.load());
    let slot = crate::admin::ClientSlot::new(
        crate::admin::ClientIdentity {
            id,
            peer: Some(peer),
            user: info.user.clone(),
            database: info.database.clone(),
            application: info.application_name.clone(),
        },
        &shared.policy.load().rules.version,
    );
    let reg = shared.registry.register(slot);
    let client = crate::net::Stream::Watched(Box::new(client), reg.slot.clone());
    let result = relay::run(
        client,
        server,
        key.leftover,
        &ctx,
        catalog,
        &reg.slot,
        shared,
    )
    .await;
    if let Some(k) = key.backend_key {
        shared.cancel_keys.remove(&k);
    }
    result
}

/// Authentication outcomes are audit records (never with a password).
fn auth_record(
    shared: &Shared,
    info: &SessionInfo,
    roles: &[String],
    kind: crate::audit::RecordKind,
    outcome: &str,
) {
    if let Some(a) = &shared.audit {
        let rec = audit::RecordCtx {
            info: info.clone(),
            roles: Arc::new(roles.to_vec()),
        };
        let mut r = crate::audit::AuditRecordInput::new(kind, std::time::SystemTime::now());
        rec.fill(&mut r);
        r.outcome = outcome.to_string();
        r.rules_version = Some(shared.policy.load().rules.version.clone());
        let _ = a.record_nowait(r);
    }
}

async fn fatal_and_close(client: &mut crate::net::Stream, e: &SessionError) {
    if let Some(out) = e.response() {
        let _ = client.write_all(&out).await;
    }
    let _ = client.shutdown().await;
}

//! One client connection: startup negotiation, upstream connection, relayed
//! authentication, then the two relay loops.
//!
//! A session is a single task that owns both sockets. The frontend loop
//! (client → server) and backend loop (server → client) run as two futures
//! inside that task, so they progress independently (no deadlock when both
//! peers write at once) without ever handing a message to another thread.

mod audit;
mod backend;
mod copy;
mod relay;
mod rows;
mod startup;
mod tagged;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dashmap::DashMap;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::Config;
use crate::metrics::metrics;
use crate::protocol::{put_error, ProtocolError, Severity};
use crate::snapshot::SnapshotStore;

/// Server-wide state every session reads.
pub struct Shared {
    pub config: Config,
    pub tls: Option<TlsAcceptor>,
    pub upstream_tls: Option<TlsConnector>,
    /// BackendKeyData of live sessions: a CancelRequest is only forwarded
    /// for a key the proxy has seen, so the proxy cannot be used to spray
    /// cancels at arbitrary backends.
    pub cancel_keys: DashMap<(i32, Vec<u8>), ()>,
    /// Flips to true on SIGTERM: sessions close once idle.
    pub draining: watch::Receiver<bool>,
    /// Rules and keys, swapped atomically on reload.
    pub policy: Arc<SnapshotStore>,
    /// The audit stream, when configured.
    pub audit: Option<crate::audit::Audit>,
    /// Refuse statements on untagged tables too while the audit is down.
    pub audit_required_for_untagged: bool,
    /// Bumped after DDL through any session: catalog snapshots read before
    /// it are stale.
    pub ddl_epoch: AtomicU64,
    next_session: AtomicU64,
}

impl Shared {
    pub fn new(
        config: Config,
        tls: Option<TlsAcceptor>,
        upstream_tls: Option<TlsConnector>,
        draining: watch::Receiver<bool>,
        policy: Arc<SnapshotStore>,
        audit: Option<crate::audit::Audit>,
    ) -> Self {
        Shared {
            tls,
            upstream_tls,
            cancel_keys: DashMap::new(),
            draining,
            policy,
            audit_required_for_untagged: config.audit_required_for_untagged,
            ddl_epoch: AtomicU64::new(0),
            audit,
            config,
            next_session: AtomicU64::new(1),
        }
    }
}

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("cannot connect to the upstream database: {0}")]
    UpstreamConnect(String),
    #[error("lost the connection to the upstream database")]
    UpstreamLost,
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("{0}")]
    Refused(&'static str),
    #[error("timed out waiting for the client")]
    ClientTimeout,
    #[error("the audit record of a statement could not be written; its results were withheld")]
    AuditUnavailable,
    #[error("authentication failed upstream ({0})")]
    AuthFailed(String),
    #[error("{0}")]
    StartupRefused(String),
    /// pgveil is draining (SIGTERM) and this session became idle.
    #[error("pgveil is shutting down")]
    Shutdown,
}

impl SessionError {
    /// The SQLSTATE sent to the client for this failure, if any.
    pub fn sqlstate(&self) -> Option<&'static str> {
        match self {
            SessionError::Protocol(_) => Some("08P01"),
            SessionError::UpstreamConnect(_) => Some("08001"),
            SessionError::UpstreamLost => Some("08006"),
            SessionError::Refused(_) => Some("28000"),
            SessionError::AuditUnavailable => Some("58030"),
            SessionError::AuthFailed(_) => None,
            SessionError::StartupRefused(_) => Some("42501"),
            SessionError::Shutdown => Some("57P01"),
            SessionError::Io(_) | SessionError::Tls(_) | SessionError::ClientTimeout => None,
        }
    }
}

/// What a session knows after authentication, fixed for its lifetime.
pub struct SessionCtx {
    pub rec: Option<audit::RecordCtx>,
}

impl SessionCtx {
    /// Sessions are tracked (statements and portals followed) when rules
    /// exist or the audit needs per-statement records.
    pub fn tracked(&self, policy: &crate::snapshot::Snapshot) -> bool {
        !policy.is_empty() || self.rec.is_some()
    }
}

/// Facts about the session that policy and audit need later.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub id: u64,
    pub peer: Option<SocketAddr>,
    pub user: String,
    pub database: String,
    pub application_name: String,
}

/// Runs one client connection to completion. Never panics on client input;
/// every failure ends in a clean close (with an ErrorResponse when the
/// protocol allows one).
pub async fn handle(client: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
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
    let mut server = match startup::connect_upstream(shared).await {
        Ok(s) => s,
        Err(e) => {
            metrics().upstream_connect_errors.inc();
            tracing::warn!(session = id, error = %e, "upstream connect failed");
            let mut out = BytesMut::new();
            put_error(
                &mut out,
                Severity::Fatal,
                "08001",
                "pgveil could not connect to the upstream database server",
                Some("the database may be down or unreachable from the proxy; retry later"),
            );
            let _ = client.write_all(&out).await;
            let _ = client.shutdown().await;
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
    auth_record(
        shared,
        &info,
        key.catalog
            .as_ref()
            .map(|c| c.roles.as_slice())
            .unwrap_or(&[]),
        crate::audit::RecordKind::AuthOk,
        "ok",
    );
    tracing::debug!(session = id, user = %info.user, database = %info.database, "authenticated");
    let rec = shared.audit.as_ref().map(|_| audit::RecordCtx {
        info: info.clone(),
        roles: Arc::new(
            key.catalog
                .as_ref()
                .map(|c| c.roles.clone())
                .unwrap_or_default(),
        ),
    });
    let ctx = SessionCtx { rec };
    let initial = relay::InitialCatalog {
        loaded: key.catalog.is_some(),
        catalog: key.catalog,
        epoch: key.epoch,
    };
    let result = relay::run(client, server, key.leftover, &ctx, initial, shared).await;
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
    if let Some(code) = e.sqlstate() {
        let mut out = BytesMut::new();
        let msg = match e {
            SessionError::UpstreamConnect(_) | SessionError::UpstreamLost => {
                "pgveil lost the connection to the upstream database server".to_string()
            }
            other => other.to_string(),
        };
        put_error(&mut out, Severity::Fatal, code, &msg, None);
        let _ = client.write_all(&out).await;
    }
    let _ = client.shutdown().await;
}

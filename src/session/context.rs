//! What every part of a session reads: the server-wide [`Shared`] state, the
//! per-session [`SessionCtx`], and the [`SessionError`]
//! a session ends with (mapped once to what the client reads).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::BytesMut;
use dashmap::DashMap;
use thiserror::Error;
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::Config;
use crate::error::{error_response, sqlstate, ClientError, Severity};
use crate::protocol::ProtocolError;
use crate::snapshot::{Snapshot, SnapshotStore};

/// Server-wide state every session reads.
pub struct Shared {
    pub config: Config,
    /// The client-facing TLS acceptor; replaced when the certificate and
    /// key are reloaded (SIGHUP), so a renewed certificate needs no restart.
    pub tls: arc_swap::ArcSwapOption<TlsAcceptor>,
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
    /// Live sessions, as the admin console lists them.
    pub registry: Arc<crate::admin::Registry>,
    pub(super) next_session: AtomicU64,
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
            tls: arc_swap::ArcSwapOption::from(tls.map(Arc::new)),
            upstream_tls,
            cancel_keys: DashMap::new(),
            draining,
            policy,
            audit_required_for_untagged: config.audit_required_for_untagged,
            ddl_epoch: AtomicU64::new(0),
            registry: Arc::new(crate::admin::Registry::default()),
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
    /// The client broke the startup sequence (not a framing error).
    #[error("{0}")]
    BadStartup(&'static str),
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
    /// A server reply that pgveil's model of the protocol did not expect:
    /// rather than risk treating one statement's replies as another's (and
    /// revealing or mislabelling values), the connection is closed.
    #[error("pgveil lost track of the protocol state ({0}); the connection was closed")]
    Desync(&'static str),
    /// pgveil is draining (SIGTERM) and this session became idle.
    #[error("pgveil is shutting down")]
    Shutdown,
    /// The session stayed idle longer than `client_idle_timeout`.
    #[error("terminating connection due to idle-session timeout (pgveil client_idle_timeout)")]
    IdleTimeout,
}

impl SessionError {
    /// Whether the client is told (the others end the session silently: the
    /// socket is gone, or the server's own error was already relayed).
    pub fn is_reported(&self) -> bool {
        !matches!(
            self,
            SessionError::Io(_)
                | SessionError::Tls(_)
                | SessionError::ClientTimeout
                | SessionError::AuthFailed(_)
        )
    }

    /// The FATAL ErrorResponse for this failure, when the client is told.
    pub fn response(&self) -> Option<BytesMut> {
        self.is_reported().then(|| error_response(self))
    }
}

impl ClientError for SessionError {
    fn sqlstate(&self) -> &'static str {
        match self {
            SessionError::Protocol(ProtocolError::UnsupportedVersion { .. }) => {
                sqlstate::FEATURE_NOT_SUPPORTED
            }
            SessionError::Protocol(_) | SessionError::BadStartup(_) | SessionError::Desync(_) => {
                sqlstate::PROTOCOL_VIOLATION
            }
            SessionError::UpstreamConnect(_) => sqlstate::CLIENT_UNABLE_TO_ESTABLISH,
            SessionError::UpstreamLost => sqlstate::CONNECTION_FAILURE,
            SessionError::Refused(_) => sqlstate::INVALID_AUTHORIZATION,
            SessionError::AuditUnavailable => sqlstate::SYSTEM_ERROR,
            SessionError::StartupRefused(_) => sqlstate::INSUFFICIENT_PRIVILEGE,
            SessionError::Shutdown => sqlstate::ADMIN_SHUTDOWN,
            SessionError::IdleTimeout => sqlstate::IDLE_SESSION_TIMEOUT,
            SessionError::AuthFailed(_) => sqlstate::INVALID_PASSWORD,
            SessionError::Io(_) | SessionError::Tls(_) | SessionError::ClientTimeout => {
                sqlstate::CONNECTION_EXCEPTION
            }
        }
    }

    fn severity(&self) -> Severity {
        Severity::Fatal
    }

    fn client_message(&self) -> String {
        match self {
            SessionError::Protocol(e) => format!("invalid frontend message: {e}"),
            SessionError::UpstreamConnect(_) => {
                "pgveil could not connect to the upstream database server".into()
            }
            SessionError::UpstreamLost => {
                "pgveil lost the connection to the upstream database server".into()
            }
            SessionError::AuditUnavailable => "pgveil could not write the audit record of a statement on tagged tables; its results were withheld".into(),
            SessionError::Shutdown => {
                "terminating connection because pgveil is shutting down".into()
            }
            other => other.to_string(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            SessionError::UpstreamConnect(_) => Some(
                "the database may be down or unreachable from the proxy; retry later".into(),
            ),
            SessionError::AuditUnavailable => Some("the operator should check the audit directory; new connections are served once it recovers".into()),
            _ => None,
        }
    }
}

/// What a session knows after authentication, fixed for its lifetime.
pub struct SessionCtx {
    pub rec: Option<super::audit::RecordCtx>,
}

impl SessionCtx {
    /// Sessions are tracked (statements and portals followed) when rules
    /// exist or the audit needs per-statement records.
    pub fn tracked(&self, policy: &Snapshot) -> bool {
        !policy.is_empty() || self.rec.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reported_failure_has_one_code_and_a_fatal_response() {
        let cases = [
            (
                SessionError::Protocol(ProtocolError::Malformed("Bind")),
                "08P01",
            ),
            (
                SessionError::Protocol(ProtocolError::UnsupportedVersion { major: 2, minor: 0 }),
                "0A000",
            ),
            (
                SessionError::BadStartup("SSLRequest received twice"),
                "08P01",
            ),
            (SessionError::UpstreamConnect("refused".into()), "08001"),
            (SessionError::UpstreamLost, "08006"),
            (SessionError::Refused("x"), "28000"),
            (SessionError::AuditUnavailable, "58030"),
            (SessionError::StartupRefused("x".into()), "42501"),
            (SessionError::Shutdown, "57P01"),
            (SessionError::IdleTimeout, "57P05"),
        ];
        for (e, code) in cases {
            let r = e.response().expect("reported");
            assert_eq!(
                crate::protocol::error_code(&r).as_deref(),
                Some(code),
                "{e}"
            );
            assert!(String::from_utf8_lossy(&r).contains("SFATAL\0"), "{e}");
        }
        for e in [
            SessionError::ClientTimeout,
            SessionError::AuthFailed("28P01".into()),
            SessionError::Tls("x".into()),
        ] {
            assert!(e.response().is_none(), "{e}");
        }
    }

    #[test]
    fn upstream_connect_detail_never_reaches_the_client() {
        let r = SessionError::UpstreamConnect("10.0.0.7:5432 refused".into())
            .response()
            .unwrap();
        assert!(!String::from_utf8_lossy(&r).contains("10.0.0.7"));
    }
}

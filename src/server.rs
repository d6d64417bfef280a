//! The listener: worker threads, connection limit, graceful shutdown.
//!
//! Each worker thread runs its own single-threaded tokio runtime and accepts
//! from the shared listening socket, and every session stays on the worker
//! that accepted it. No message is ever handed between threads: on a small
//! machine a cross-CPU wake-up costs more than the proxy's own work on a
//! statement. (A multi-threaded work-stealing runtime was the alternative;
//! it moves tasks between CPUs exactly when the machine is busiest.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::metrics::{metrics, serve_http};
use crate::net;
use crate::protocol::{put_error, Severity};
use crate::session::{self, Shared};
use crate::snapshot::SnapshotStore;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] net::TlsError),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// A handle to stop a running server from inside the process (tests, demo).
#[derive(Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

/// Reloads the client-facing TLS certificate and key (SIGHUP), so that a
/// renewed certificate (cert-manager, certbot) is served without a restart.
#[derive(Clone)]
pub struct TlsReloader(Arc<Shared>);

impl TlsReloader {
    /// Loads and validates the files, then swaps them in for new
    /// handshakes. On error the certificate in use stays. Ok(false) when no
    /// TLS is configured.
    pub fn reload(&self) -> Result<bool, net::TlsError> {
        let (Some(cert), Some(key)) = (&self.0.config.tls_cert, &self.0.config.tls_key) else {
            return Ok(false);
        };
        let m = &metrics().tls_reloads;
        match net::acceptor(cert, key) {
            Ok(a) => {
                self.0.tls.store(Some(Arc::new(a)));
                m.with_label_values(&["ok"]).inc();
                tracing::info!("TLS certificate and key reloaded");
                Ok(true)
            }
            Err(e) => {
                m.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, "TLS reload rejected; keeping the certificate in use");
                Err(e)
            }
        }
    }
}

/// Everything bound and configured, not yet serving.
pub struct Server {
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    metrics_listener: Option<std::net::TcpListener>,
    drain_tx: Arc<watch::Sender<bool>>,
    active: Arc<AtomicUsize>,
    policy: Arc<SnapshotStore>,
}

impl Server {
    pub fn bind(
        config: Config,
        policy: Arc<SnapshotStore>,
        audit: Option<crate::audit::Audit>,
    ) -> Result<Self, ServerError> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(c), Some(k)) => Some(net::acceptor(c, k)?),
            _ => None,
        };
        let upstream_tls = net::connector(
            config.upstream.sslmode,
            config.upstream.sslrootcert.as_deref(),
        )?;
        let listener =
            std::net::TcpListener::bind(config.listen).map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(ServerError::Runtime)?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr)
                    .map_err(|source| ServerError::Bind { addr, source })?;
                l.set_nonblocking(true).map_err(ServerError::Runtime)?;
                Some(l)
            }
            None => None,
        };
        let (drain_tx, drain_rx) = watch::channel(false);
        Ok(Server {
            shared: Arc::new(Shared::new(
                config,
                tls,
                upstream_tls,
                drain_rx,
                policy.clone(),
                audit,
            )),
            policy,
            listener,
            metrics_listener,
            drain_tx: Arc::new(drain_tx),
            active: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.drain_tx.clone())
    }

    /// A handle that re-reads the client TLS certificate and key.
    pub fn tls_reloader(&self) -> TlsReloader {
        TlsReloader(self.shared.clone())
    }

    /// Serves until shutdown is requested, then drains: stops accepting,
    /// lets sessions finish what they are doing (each closes once idle) and
    /// returns when all are gone or the shutdown timeout passes.
    pub fn run(self) -> Result<(), ServerError> {
        let workers = self.shared.config.workers.max(1);
        let addr = self.local_addr().map_err(ServerError::Runtime)?;
        let mut threads = Vec::new();
        if let Some(ml) = self.metrics_listener {
            let policy = self.policy.clone();
            let audit = self.shared.audit.clone();
            std::thread::Builder::new()
                .name("pgveil-metrics".into())
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "metrics runtime failed");
                            return;
                        }
                    };
                    rt.block_on(async move {
                        match TcpListener::from_std(ml) {
                            Ok(l) => {
                                let extra = move || policy_metrics(&policy, audit.as_ref());
                                serve_http(l, Arc::new(extra)).await
                            }
                            Err(e) => tracing::error!(error = %e, "metrics listener failed"),
                        }
                    });
                })
                .map_err(ServerError::Runtime)?;
        }
        tracing::info!(workers, "listening on {addr}");
        metrics().ready.store(true, Ordering::Relaxed);
        let listener = self.listener;
        for i in 0..workers {
            let listener = listener.try_clone().map_err(ServerError::Runtime)?;
            let shared = self.shared.clone();
            let active = self.active.clone();
            let t = std::thread::Builder::new()
                .name(format!("pgveil-worker-{i}"))
                .spawn(move || worker(listener, shared, active))
                .map_err(ServerError::Runtime)?;
            threads.push(t);
        }
        // The workers hold the only other handles: once each drops its own at
        // SIGTERM the socket is closed and new clients get "connection
        // refused" at once, instead of waiting in the backlog of a socket
        // nobody accepts from until the drain ends.
        drop(listener);
        for t in threads {
            let _ = t.join();
        }
        metrics().ready.store(false, Ordering::Relaxed);
        Ok(())
    }
}

/// Series read from the policy in force at scrape time, so they can never
/// disagree with it: the rules version and the active key id, as a fleet
/// would compare them across instances. Emitted here rather than at reload
/// so no reload path can forget to update them.
fn policy_metrics(policy: &SnapshotStore, audit: Option<&crate::audit::Audit>) -> String {
    use std::fmt::Write as _;
    let p = policy.load();
    let version: String = p
        .rules
        .version
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "# HELP pgveil_rules_info Always 1; the label is the version of the rules in force\n\
         # TYPE pgveil_rules_info gauge\npgveil_rules_info{{version=\"{version}\"}} 1\n\
         # HELP pgveil_rules_tagged_columns Tagged columns in the rules in force\n\
         # TYPE pgveil_rules_tagged_columns gauge\npgveil_rules_tagged_columns {}\n",
        p.rules.columns().len()
    );
    if let Some(c) = p.crypto.as_ref() {
        let _ = write!(
            out,
            "# HELP pgveil_keyring_active_key_id Id of the key new values are encrypted with\n\
             # TYPE pgveil_keyring_active_key_id gauge\npgveil_keyring_active_key_id {}\n",
            c.active_key_id()
        );
    }
    if let Some(a) = audit {
        let _ = write!(
            out,
            "# HELP pgveil_audit_queue_depth Audit records and outcomes submitted but not yet taken by the writer\n\
             # TYPE pgveil_audit_queue_depth gauge\npgveil_audit_queue_depth {}\n",
            a.queue_depth()
        );
    }
    let _ = write!(
        out,
        "# HELP pgveil_ready 1 while pgveil accepts clients (what /readyz says), 0 before and while draining\n\
         # TYPE pgveil_ready gauge\npgveil_ready {}\n",
        u8::from(metrics().ready.load(Ordering::Relaxed))
    );
    out
}

fn worker(listener: std::net::TcpListener, shared: Arc<Shared>, active: Arc<AtomicUsize>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "worker runtime failed");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "listener registration failed");
                return;
            }
        };
        let mut draining = shared.draining.clone();
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let Ok((sock, peer)) = r else { continue };
                    accept_one(sock, peer, &shared, &active);
                }
                _ = draining.changed() => {
                    if *draining.borrow() {
                        // Load balancers stop sending clients while we drain.
                        metrics().ready.store(false, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        drop(listener);
        // Drain: sessions close themselves once idle.
        let deadline = Instant::now() + shared.config.shutdown_timeout;
        while active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

fn accept_one(
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    active: &Arc<AtomicUsize>,
) {
    let m = metrics();
    m.connections_total.inc();
    let n = active.fetch_add(1, Ordering::AcqRel) + 1;
    if n > shared.config.max_connections {
        active.fetch_sub(1, Ordering::AcqRel);
        m.connections_rejected.with_label_values(&["limit"]).inc();
        tokio::task::spawn_local(async move {
            let mut sock = sock;
            let mut out = BytesMut::new();
            put_error(
                &mut out,
                Severity::Fatal,
                crate::error::sqlstate::TOO_MANY_CONNECTIONS,
                "sorry, too many clients already (pgveil connection limit)",
                None,
            );
            // A client that has not sent its startup yet still reads this
            // once it does; write and close.
            let _ = sock.write_all(&out).await;
            let _ = sock.shutdown().await;
        });
        return;
    }
    m.connections_active.inc();
    let shared = shared.clone();
    let active = active.clone();
    tokio::task::spawn_local(async move {
        // Counted down even if the session panics: the runtime keeps serving
        // other sessions, and the connection limit must not leak a slot.
        let _slot = SessionSlot(active);
        session::handle(sock, peer, shared).await;
    });
}

/// One connection's place under the connection limit, given back on drop.
struct SessionSlot(Arc<AtomicUsize>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        metrics().connections_active.dec();
        if std::thread::panicking() {
            metrics().session_panics.inc();
            tracing::error!("a session panicked; its connection was closed, others are unaffected");
        }
    }
}

//! Every Prometheus metric pgveil exports, in one place, and the tiny HTTP
//! endpoint that serves them (`/metrics`, `/healthz`, `/readyz`).
//!
//! Labels stay bounded (protocol, outcome, reason, classification); SQL text
//! and values never become labels. Hot-path children are resolved once here
//! so a statement costs a few atomic adds, not hash lookups.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub struct Metrics {
    pub registry: Registry,
    pub connections_active: IntGauge,
    pub connections_total: IntCounter,
    pub connections_rejected: IntCounterVec,
    pub statements: IntCounterVec,
    pub simple_ok: IntCounter,
    pub simple_error: IntCounter,
    pub extended_ok: IntCounter,
    pub extended_error: IntCounter,
    pub bytes_from_clients: IntCounter,
    pub bytes_to_clients: IntCounter,
    pub proxy_latency: Histogram,
    pub statement_latency: Histogram,
    /// Failed upstream connections, by reason ([`UPSTREAM_ERROR_REASONS`]).
    pub upstream_connect_errors: IntCounterVec,
    /// Time to a usable upstream connection (TCP, and TLS when negotiated).
    pub upstream_connect_seconds: Histogram,
    /// Upstream connections open now (sessions' and the console's auth).
    pub upstream_connections_active: IntGauge,
    pub protocol_errors: IntCounter,
    /// Sessions ended by a panic (a bug); the process keeps serving.
    pub session_panics: IntCounter,
    pub auth_failures: IntCounter,
    pub cancel_requests: IntCounter,
    /// Sessions closed by `client_idle_timeout`.
    pub idle_timeouts: IntCounter,
    /// Client TLS certificate reloads, by outcome (`ok`, `error`).
    pub tls_reloads: IntCounterVec,
    pub rules_reloads: ReloadOutcome,
    pub rules_reload_failures: ReloadOutcome,
    pub refused: IntCounterVec,
    pub crypto_ops: IntCounterVec,
    pub masked_values: IntCounterVec,
    /// Audit shipping (src/audit/ship): records the sink acknowledged.
    pub audit_ship_records: IntCounter,
    /// Acknowledged as duplicates (a redelivery the sink de-duplicated).
    pub audit_ship_duplicates: IntCounter,
    /// Sink and local-read errors, by operation (children pre-set to 0).
    pub audit_ship_errors: IntCounterVec,
    /// Durable local records not yet acknowledged by the sink.
    pub audit_ship_lag_records: IntGauge,
    /// Age of the oldest durable record not yet acknowledged (0 when caught up).
    pub audit_ship_lag_seconds: Gauge,
    /// Seq of the newest record the sink acknowledged (an off-host anchor).
    pub audit_ship_head_seq: IntGauge,
    /// 1 while the shipper is connected to the sink and its stream is ready.
    pub audit_ship_connected: IntGauge,
    pub ready: AtomicBool,
}

/// A reload counter that also records whether the newest reload succeeded.
///
/// Why: a failed reload leaves the old rules in force until a later reload
/// succeeds, so an alert on `increase(failures)` would resolve by itself
/// while the problem persists. `pgveil_rules_last_reload_successful` stays 0
/// until the next good reload. The reload code only calls `inc()`, so it
/// needs no change to feed the gauge.
pub struct ReloadOutcome {
    counter: IntCounter,
    last_ok: IntGauge,
    last_at: Gauge,
    success: bool,
}

impl ReloadOutcome {
    pub fn inc(&self) {
        self.counter.inc();
        self.last_ok.set(i64::from(self.success));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_at.set(now);
    }

    pub fn get(&self) -> u64 {
        self.counter.get()
    }
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric definition");
    r.register(Box::new(g.clone())).expect("unique metric name");
    g
}

/// Registers `pgveil_build_info` and, on Linux, the process collector
/// (CPU, memory, open file descriptors) under the `pgveil_` prefix so every
/// series pgveil exports carries its name.
fn register_process_and_build(r: &Registry) {
    let info = IntGaugeVec::new(
        Opts::new(
            "pgveil_build_info",
            "Always 1; the labels say which build is running",
        ),
        &["version", "commit"],
    )
    .expect("static metric definition");
    info.with_label_values(&[
        env!("CARGO_PKG_VERSION"),
        option_env!("PGVEIL_GIT_COMMIT").unwrap_or("unknown"),
    ])
    .set(1);
    r.register(Box::new(info)).expect("unique metric name");
    #[cfg(target_os = "linux")]
    {
        let pc = prometheus::process_collector::ProcessCollector::new(
            std::process::id() as i32,
            "pgveil",
        );
        r.register(Box::new(pc)).expect("unique metric name");
    }
}

/// The `reason` label values of `pgveil_upstream_connect_errors_total`.
pub const UPSTREAM_ERROR_REASONS: [&str; 4] = ["timeout", "refused", "tls", "other"];

/// The `op` label values of `pgveil_audit_ship_errors_total`.
pub const AUDIT_SHIP_ERROR_OPS: [&str; 5] = ["connect", "stream", "publish", "local", "cursor"];

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("static metric definition");
    r.register(Box::new(c.clone())).expect("unique metric name");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(c.clone())).expect("unique metric name");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("static metric definition");
    r.register(Box::new(h.clone())).expect("unique metric name");
    h
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let connections_active = IntGauge::new(
            "pgveil_client_connections_active",
            "Client connections open now",
        )
        .expect("static metric definition");
        r.register(Box::new(connections_active.clone()))
            .expect("unique metric name");
        let statements = counter_vec(
            &r,
            "pgveil_statements_total",
            "Statements (simple Query messages and extended Execute messages) by protocol and outcome",
            &["protocol", "outcome"],
        );
        let micro = vec![
            0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005,
            0.025, 0.1,
        ];
        let e2e = vec![
            0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0, 30.0,
        ];
        register_process_and_build(&r);
        let last_ok = gauge(
            &r,
            "pgveil_rules_last_reload_successful",
            "1 if the newest rules reload succeeded (or none was tried since start), 0 while the previous rules are kept after a rejected reload",
        );
        last_ok.set(1);
        let last_at = Gauge::new(
            "pgveil_rules_last_reload_timestamp_seconds",
            "Unix time of the newest rules reload attempt (0: none since start)",
        )
        .expect("static metric definition");
        r.register(Box::new(last_at.clone()))
            .expect("unique metric name");
        let connections_rejected = counter_vec(
            &r,
            "pgveil_client_connections_rejected_total",
            "Client connections refused, by reason",
            &["reason"],
        );
        // Present from the start at 0, so the first refusal is an increase
        // an alert can see (a series born at 1 has no increase).
        for reason in ["limit", "tls_required"] {
            connections_rejected.with_label_values(&[reason]);
        }
        Metrics {
            connections_total: counter(&r, "pgveil_client_connections_total", "Client connections accepted"),
            connections_rejected,
            simple_ok: statements.with_label_values(&["simple", "ok"]),
            simple_error: statements.with_label_values(&["simple", "error"]),
            extended_ok: statements.with_label_values(&["extended", "ok"]),
            extended_error: statements.with_label_values(&["extended", "error"]),
            statements,
            bytes_from_clients: counter(
                &r,
                "pgveil_client_bytes_received_total",
                "Bytes received from clients (frontend to backend direction)",
            ),
            bytes_to_clients: counter(
                &r,
                "pgveil_client_bytes_sent_total",
                "Bytes sent to clients (backend to frontend direction)",
            ),
            proxy_latency: histogram(
                &r,
                "pgveil_proxy_added_latency_seconds",
                "Time the proxy itself spent on a batch of messages, between reading it and writing it on",
                micro,
            ),
            statement_latency: histogram(
                &r,
                "pgveil_statement_duration_seconds",
                "End-to-end time from a client's Query/Sync to the ReadyForQuery sent back",
                e2e,
            ),
            upstream_connect_errors: {
                let c = counter_vec(
                    &r,
                    "pgveil_upstream_connect_errors_total",
                    "Failed connections to the upstream database, by reason (timeout, refused, tls, other)",
                    &["reason"],
                );
                for reason in UPSTREAM_ERROR_REASONS {
                    c.with_label_values(&[reason]);
                }
                c
            },
            upstream_connect_seconds: histogram(
                &r,
                "pgveil_upstream_connect_seconds",
                "Time to open a connection to the upstream database, TLS handshake included",
                vec![0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0],
            ),
            upstream_connections_active: gauge(
                &r,
                "pgveil_upstream_connections_active",
                "Connections to the upstream database open now",
            ),
            protocol_errors: counter(
                &r,
                "pgveil_protocol_errors_total",
                "Connections closed because a client sent a malformed message",
            ),
            session_panics: counter(
                &r,
                "pgveil_session_panics_total",
                "Sessions closed by an internal fault (a bug); other sessions are unaffected",
            ),
            auth_failures: counter(&r, "pgveil_auth_failures_total", "Authentication failures relayed from upstream"),
            cancel_requests: counter(&r, "pgveil_cancel_requests_total", "CancelRequests received"),
            tls_reloads: {
                let c = counter_vec(
                    &r,
                    "pgveil_tls_reloads_total",
                    "Reloads of the client TLS certificate and key (SIGHUP), by outcome",
                    &["outcome"],
                );
                for o in ["ok", "error"] {
                    c.with_label_values(&[o]);
                }
                c
            },
            idle_timeouts: counter(
                &r,
                "pgveil_client_idle_timeouts_total",
                "Client sessions closed because they stayed idle longer than client_idle_timeout",
            ),
            rules_reloads: ReloadOutcome {
                counter: counter(&r, "pgveil_rules_reloads_total", "Successful rule reloads"),
                last_ok: last_ok.clone(),
                last_at: last_at.clone(),
                success: true,
            },
            rules_reload_failures: ReloadOutcome {
                counter: counter(
                    &r,
                    "pgveil_rules_reload_failures_total",
                    "Rule reloads rejected because the new rules were invalid",
                ),
                last_ok,
                last_at,
                success: false,
            },
            refused: counter_vec(
                &r,
                "pgveil_statements_refused_total",
                "Statements refused by pgveil, by SQLSTATE",
                &["sqlstate"],
            ),
            crypto_ops: counter_vec(
                &r,
                "pgveil_crypto_operations_total",
                "Values encrypted or decrypted, by operation and classification",
                &["op", "class"],
            ),
            masked_values: counter_vec(
                &r,
                "pgveil_masked_values_total",
                "Values masked, nulled or denied on the way out, by action and classification",
                &["action", "class"],
            ),
            audit_ship_records: counter(
                &r,
                "pgveil_audit_ship_records_total",
                "Audit records shipped and acknowledged by the sink (NATS JetStream)",
            ),
            audit_ship_duplicates: counter(
                &r,
                "pgveil_audit_ship_duplicates_total",
                "Shipped audit records the sink acknowledged as duplicates (harmless redeliveries)",
            ),
            audit_ship_errors: {
                let c = counter_vec(
                    &r,
                    "pgveil_audit_ship_errors_total",
                    "Audit shipping errors, by operation (connect, stream, publish, local, cursor)",
                    &["op"],
                );
                for op in AUDIT_SHIP_ERROR_OPS {
                    c.with_label_values(&[op]);
                }
                c
            },
            audit_ship_lag_records: gauge(
                &r,
                "pgveil_audit_ship_lag_records",
                "Durable audit records not yet acknowledged by the sink",
            ),
            audit_ship_lag_seconds: {
                let g = Gauge::new(
                    "pgveil_audit_ship_lag_seconds",
                    "Age of the oldest durable audit record not yet acknowledged by the sink (0 when caught up)",
                )
                .expect("static metric definition");
                r.register(Box::new(g.clone())).expect("unique metric name");
                g
            },
            audit_ship_head_seq: gauge(
                &r,
                "pgveil_audit_ship_head_seq",
                "Sequence number of the newest audit record acknowledged by the sink",
            ),
            audit_ship_connected: gauge(
                &r,
                "pgveil_audit_ship_connected",
                "1 while the audit shipper is connected and its stream is ready, else 0",
            ),
            connections_active,
            registry: r,
            ready: AtomicBool::new(false),
        }
    }

    /// Creates the refusal series for these SQLSTATEs at 0, so the first
    /// refusal of a kind shows as an increase. Called with the refusal
    /// catalogue's codes by whoever owns it (the metrics module cannot
    /// import the SQL layer: it imports this module).
    pub fn preset_refused(&self, sqlstates: &[&str]) {
        for code in sqlstates {
            self.refused.with_label_values(&[code]);
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// Serves `/metrics`, `/healthz` (process alive) and `/readyz` (accepting
/// clients). Deliberately minimal HTTP/1.1: one request per connection.
pub async fn serve_http(listener: TcpListener, extra: Arc<dyn Fn() -> String + Send + Sync>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let extra = extra.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut n = 0;
            while n < buf.len() {
                match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    sock.read(&mut buf[n..]),
                )
                .await
                {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => {
                        n += k;
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n")
                            || buf[..n].ends_with(b"\n\n")
                        {
                            break;
                        }
                    }
                }
            }
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("");
            let (status, ctype, body) = match path {
                "/metrics" => {
                    let mut b = metrics().render();
                    b.push_str(&extra());
                    ("200 OK", "text/plain; version=0.0.4", b)
                }
                "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
                "/readyz" if metrics().ready.load(Ordering::Relaxed) => {
                    ("200 OK", "text/plain", "ready\n".into())
                }
                "/readyz" => (
                    "503 Service Unavailable",
                    "text/plain",
                    "not ready\n".into(),
                ),
                _ => ("404 Not Found", "text/plain", "not found\n".into()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

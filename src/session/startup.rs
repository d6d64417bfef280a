//! Connection start: TLS/GSS negotiation with the client, the upstream
//! connection (plain or TLS per sslmode), and relayed authentication.
//!
//! The client authenticates to Postgres itself: pgveil only relays the
//! authentication messages, so it never learns or stores passwords, and a
//! wrong password fails exactly as it would directly (28P01 from Postgres).

use std::os::fd::AsRawFd;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::catalog::{catalog_sql, Catalog, CatalogReply};
use super::context::{SessionError, Shared};
use super::io::read_frame;
use crate::metrics::metrics;
use crate::net::{server_name, Stream};
use crate::protocol::messages::{auth_code, backend_key, put_query, strip_sasl_plus};
use crate::protocol::{
    parse_startup, startup_len, Direction, StartupPacket, CANCEL_REQUEST_CODE, SSL_REQUEST_CODE,
};

/// True when the client has already sent bytes we have not read. After an
/// SSLRequest that is a protocol violation: those bytes were sent in
/// plaintext before the handshake and must never be treated as if they came
/// through TLS (CVE-2021-23214).
fn has_pending_bytes(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: recv on a valid, owned socket fd into a 1-byte stack buffer.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0
}

async fn read_startup<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, SessionError> {
    let mut hdr = [0u8; 4];
    r.read_exact(&mut hdr).await?;
    let len = startup_len(hdr)?;
    let mut raw = vec![0u8; len];
    raw[..4].copy_from_slice(&hdr);
    r.read_exact(&mut raw[4..]).await?;
    Ok(raw)
}

/// Tells the client why its connection is refused, then closes it.
async fn refuse(client: &mut Stream, e: &SessionError) -> Result<(), SessionError> {
    if let Some(out) = e.response() {
        client.write_all(&out).await?;
    }
    client.shutdown().await?;
    Ok(())
}

/// What one pre-startup packet led to.
enum Step {
    /// Keep reading packets on this (possibly now TLS) stream.
    Again(Stream),
    /// Fully handled here (cancel, refused).
    Done,
    Startup(Stream, StartupPacket),
}

/// Handles SSLRequest / GSSENCRequest / CancelRequest until a real
/// StartupMessage arrives. Returns None when the connection was fully
/// handled here (cancel, refused).
pub(super) async fn negotiate(
    tcp: TcpStream,
    shared: &Shared,
) -> Result<Option<(Stream, StartupPacket, BytesMut)>, SessionError> {
    let mut client = Stream::Plain(tcp);
    loop {
        let packet = match read_startup(&mut client)
            .await
            .and_then(|raw| Ok(parse_startup(&raw)?))
        {
            Ok(p) => p,
            Err(e @ SessionError::Protocol(_)) => {
                metrics().protocol_errors.inc();
                refuse(&mut client, &e).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let step = match packet {
            StartupPacket::Ssl => ssl_request(client, shared).await?,
            StartupPacket::GssEnc => {
                client.write_all(b"N").await?;
                Step::Again(client)
            }
            StartupPacket::Cancel { pid, secret } => {
                metrics().cancel_requests.inc();
                forward_cancel(shared, pid, secret).await;
                Step::Done
            }
            p @ StartupPacket::Startup { .. } => startup_message(client, p, shared).await?,
        };
        match step {
            Step::Again(c) => client = c,
            Step::Done => return Ok(None),
            Step::Startup(c, p) => return Ok(Some((c, p, BytesMut::new()))),
        }
    }
}

/// SSLRequest: answer S and hand the socket to TLS, or N.
async fn ssl_request(client: Stream, shared: &Shared) -> Result<Step, SessionError> {
    let Stream::Plain(mut tcp) = client else {
        metrics().protocol_errors.inc();
        let mut client = client;
        refuse(
            &mut client,
            &SessionError::BadStartup("SSLRequest received twice"),
        )
        .await?;
        return Ok(Step::Done);
    };
    if has_pending_bytes(&tcp) {
        metrics().protocol_errors.inc();
        let mut c = Stream::Plain(tcp);
        let e = SessionError::BadStartup("received unencrypted data after SSL request");
        refuse(&mut c, &e).await?;
        return Ok(Step::Done);
    }
    // The acceptor in force now: a SIGHUP may have swapped in a renewed
    // certificate; a handshake already under way keeps the one it began with.
    let acceptor = shared.tls.load_full();
    let Some(acceptor) = acceptor.as_deref() else {
        tcp.write_all(b"N").await?;
        return Ok(Step::Again(Stream::Plain(tcp)));
    };
    tcp.write_all(b"S").await?;
    let tls = acceptor
        .accept(tcp)
        .await
        .map_err(|e| SessionError::Tls(e.to_string()))?;
    Ok(Step::Again(Stream::ServerTls(Box::new(tls))))
}

/// A StartupMessage: the connection proceeds unless it breaks a rule that
/// needs no database to judge.
async fn startup_message(
    mut client: Stream,
    p: StartupPacket,
    shared: &Shared,
) -> Result<Step, SessionError> {
    if shared.config.require_client_tls && !client.is_tls() {
        metrics()
            .connections_rejected
            .with_label_values(&["tls_required"])
            .inc();
        let e = SessionError::Refused(
            "pgveil requires TLS from clients; connect with sslmode=require or stronger",
        );
        refuse(&mut client, &e).await?;
        return Ok(Step::Done);
    }
    if p.param("user").is_none_or(|u| u.is_empty()) {
        let e = SessionError::Refused("no PostgreSQL user name specified in startup packet");
        refuse(&mut client, &e).await?;
        return Ok(Step::Done);
    }
    Ok(Step::Startup(client, p))
}

/// Forwards a CancelRequest for a backend this proxy opened.
async fn forward_cancel(shared: &Shared, pid: i32, secret: Vec<u8>) {
    if !shared.cancel_keys.contains_key(&(pid, secret.clone())) {
        tracing::info!("cancel request for an unknown backend key ignored");
        return;
    }
    match connect_upstream(shared).await {
        Ok((mut s, _count)) => {
            let mut pkt = Vec::with_capacity(16);
            pkt.extend_from_slice(&((12 + secret.len()) as i32).to_be_bytes());
            pkt.extend_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
            pkt.extend_from_slice(&pid.to_be_bytes());
            pkt.extend_from_slice(&secret);
            let _ = s.write_all(&pkt).await;
            let _ = s.flush().await;
            // Postgres closes the connection after acting on it.
            let mut b = [0u8; 1];
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut b)).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot forward cancel request");
        }
    }
}

/// Opens a connection to the upstream database, negotiating TLS per sslmode,
/// and counts it: latency when it succeeds, the reason when it fails.
pub(super) async fn connect_upstream(
    shared: &Shared,
) -> Result<(Stream, UpstreamCount), SessionError> {
    let started = std::time::Instant::now();
    match open_upstream(shared).await {
        Ok(s) => {
            metrics()
                .upstream_connect_seconds
                .observe(started.elapsed().as_secs_f64());
            Ok((s, UpstreamCount::new()))
        }
        Err((reason, e)) => {
            metrics()
                .upstream_connect_errors
                .with_label_values(&[reason])
                .inc();
            Err(e)
        }
    }
}

/// One upstream connection in `pgveil_upstream_connections_active`, for as
/// long as the caller keeps it next to the stream.
pub(super) struct UpstreamCount(());

impl UpstreamCount {
    fn new() -> Self {
        metrics().upstream_connections_active.inc();
        UpstreamCount(())
    }
}

impl Drop for UpstreamCount {
    fn drop(&mut self) {
        metrics().upstream_connections_active.dec();
    }
}

fn io_reason(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "refused",
        std::io::ErrorKind::TimedOut => "timeout",
        _ => "other",
    }
}

/// Reads exactly one byte of the SSLRequest answer, so nothing the server
/// sends afterwards can be mistaken for part of the TLS stream.
async fn open_upstream(shared: &Shared) -> Result<Stream, (&'static str, SessionError)> {
    let up = &shared.config.upstream;
    let fail = |reason, msg: String| (reason, SessionError::UpstreamConnect(msg));
    if up.is_unix_socket() {
        let path = format!("{}/.s.PGSQL.{}", up.host.trim_end_matches('/'), up.port);
        let s = tokio::time::timeout(
            shared.config.connect_timeout,
            tokio::net::UnixStream::connect(path),
        )
        .await
        .map_err(|_| fail("timeout", "timed out".into()))?
        .map_err(|e| fail(io_reason(&e), e.to_string()))?;
        return Ok(Stream::Unix(s));
    }
    let addr = (up.host.as_str(), up.port);
    let tcp = tokio::time::timeout(shared.config.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| fail("timeout", "timed out".into()))?
        .map_err(|e| fail(io_reason(&e), e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    crate::net::set_keepalive(&tcp, shared.config.tcp_keepalive);
    let Some(connector) = &shared.upstream_tls else {
        return Ok(Stream::Plain(tcp));
    };
    let mut tcp = tcp;
    let mut req = Vec::with_capacity(8);
    req.extend_from_slice(&8i32.to_be_bytes());
    req.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    tcp.write_all(&req)
        .await
        .map_err(|e| fail(io_reason(&e), e.to_string()))?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .map_err(|e| fail(io_reason(&e), e.to_string()))?;
    match (answer[0], up.sslmode) {
        (b'S', _) => {
            let name = server_name(&up.host).map_err(|e| fail("tls", e.to_string()))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| fail("tls", format!("TLS: {e}")))?;
            Ok(Stream::ClientTls(Box::new(tls)))
        }
        (b'N', mode) if mode.plaintext_fallback() => Ok(Stream::Plain(tcp)),
        (b'N', _) => Err(fail(
            "tls",
            "the server does not support TLS but sslmode requires it".into(),
        )),
        _ => Err(fail("other", "invalid answer to SSLRequest".into())),
    }
}

/// What authentication left behind for the relay.
pub(super) struct Authenticated {
    pub backend_key: Option<(i32, Vec<u8>)>,
    /// Roles and schema snapshot, read when rules exist.
    pub catalog: Option<Catalog>,
    /// The DDL epoch before the catalog was read.
    pub epoch: u64,
    /// Bytes already read from (client, server) beyond the last auth frame.
    pub leftover: (BytesMut, BytesMut),
}

/// The relayed exchange up to the server's first ReadyForQuery, which is
/// held back: the caller decides what happens before the client may speak.
pub(super) struct AuthExchange {
    pub backend_key: Option<(i32, Vec<u8>)>,
    /// The server's first ReadyForQuery, not yet sent to the client.
    pub ready: BytesMut,
    pub cbuf: BytesMut,
    pub sbuf: BytesMut,
}

/// Relays authentication until the server's first ReadyForQuery.
pub(super) async fn relay_auth(
    client: &mut Stream,
    server: &mut Stream,
    packet: &StartupPacket,
    cbuf: BytesMut,
    shared: &Shared,
) -> Result<Authenticated, SessionError> {
    let StartupPacket::Startup { raw, .. } = packet else {
        return Err(SessionError::Refused("not a startup packet"));
    };
    let mut ex = authenticate(client, server, raw, cbuf, shared, true).await?;
    let (catalog, epoch) = session_catalog(server, &mut ex.sbuf, packet, shared).await?;
    client.write_all(&ex.ready).await?;
    client.flush().await?;
    Ok(Authenticated {
        catalog,
        epoch,
        backend_key: ex.backend_key,
        leftover: (ex.cbuf, ex.sbuf),
    })
}

/// Sends the startup packet `raw` and relays the authentication exchange.
/// `register_cancel`: the backend key goes to the client and into the
/// cancel table (a session that keeps its upstream connection); otherwise
/// it is withheld, as the connection is about to close.
pub(super) async fn authenticate(
    client: &mut Stream,
    server: &mut Stream,
    raw: &[u8],
    mut cbuf: BytesMut,
    shared: &Shared,
    register_cancel: bool,
) -> Result<AuthExchange, SessionError> {
    server
        .write_all(raw)
        .await
        .map_err(|_| SessionError::UpstreamLost)?;
    let cap = shared.config.max_message_bytes;
    let mut sbuf = BytesMut::with_capacity(8192);
    let mut backend_key = None;
    loop {
        let frame = read_frame(server, &mut sbuf, Direction::Backend, cap).await?;
        match frame[0] {
            b'R' => auth_request(&frame, client, server, &mut cbuf, cap).await?,
            b'E' => {
                metrics().auth_failures.inc();
                client.write_all(&frame).await?;
                let _ = client.shutdown().await;
                let code = crate::protocol::error_code(&frame)
                    .unwrap_or_else(|| crate::error::sqlstate::INVALID_AUTHORIZATION.into());
                return Err(SessionError::AuthFailed(code));
            }
            b'K' => {
                let key = backend_key_of(&frame)?;
                if register_cancel {
                    shared.cancel_keys.insert(key.clone(), ());
                    client.write_all(&frame).await?;
                }
                backend_key = Some(key);
            }
            b'Z' => {
                return Ok(AuthExchange {
                    backend_key,
                    ready: frame,
                    cbuf,
                    sbuf,
                });
            }
            b'S' | b'N' | b'v' => client.write_all(&frame).await?,
            _ => {
                return Err(
                    crate::protocol::ProtocolError::Malformed("authentication exchange").into(),
                )
            }
        }
        if !sbuf.has_remaining() {
            client.flush().await?;
        }
    }
}

/// One AuthenticationRequest: relayed to the client, and the client's answer
/// relayed back when the method expects one.
async fn auth_request(
    frame: &[u8],
    client: &mut Stream,
    server: &mut Stream,
    cbuf: &mut BytesMut,
    cap: usize,
) -> Result<(), SessionError> {
    let code = auth_code(frame)?;
    match code {
        0 | 3 | 5 | 11 | 12 => client.write_all(frame).await?,
        10 => match strip_sasl_plus(frame)? {
            Some(f) => client.write_all(&f).await?,
            None => {
                return Err(SessionError::Refused(
                    "the server offers only SCRAM channel binding, which cannot cross a TLS-terminating proxy",
                ))
            }
        },
        _ => {
            return Err(SessionError::Refused(
                "unsupported authentication method requested by the server",
            ))
        }
    }
    if matches!(code, 3 | 5 | 10 | 11) {
        let resp = read_frame(client, cbuf, Direction::Frontend, cap).await?;
        if resp[0] != b'p' {
            return Err(crate::protocol::ProtocolError::Malformed("password message").into());
        }
        server
            .write_all(&resp)
            .await
            .map_err(|_| SessionError::UpstreamLost)?;
    }
    Ok(())
}

/// After authentication, under rules: the session's catalog (None when it
/// could not be read) and the DDL epoch it was read at. Startup parameters
/// a restricted session may not set are refused here; without a catalog
/// the session counts as restricted.
async fn session_catalog(
    server: &mut Stream,
    sbuf: &mut BytesMut,
    packet: &StartupPacket,
    shared: &Shared,
) -> Result<(Option<Catalog>, u64), SessionError> {
    let policy = shared.policy.load();
    let epoch = shared.ddl_epoch.load(std::sync::atomic::Ordering::Acquire);
    if policy.is_empty() {
        return Ok((None, epoch));
    }
    let cap = shared.config.max_message_bytes;
    let login = packet.param("user").unwrap_or_default();
    let catalog = load_catalog(server, sbuf, &policy, login, cap).await?;
    let restricted = catalog.as_ref().is_none_or(|c| c.restricted(&policy));
    if let Some(param) = restricted.then(|| unsafe_startup_param(packet)).flatten() {
        return Err(SessionError::StartupRefused(format!(
            "pgveil: the startup parameter `{param}` is not allowed for roles with restricted access to tagged columns"
        )));
    }
    Ok((catalog, epoch))
}

/// A startup parameter a restricted session may not set: each changes how
/// the server parses or resolves SQL behind pgveil's analysis (or, for
/// `replication`, bypasses SQL altogether).
fn unsafe_startup_param(packet: &StartupPacket) -> Option<&str> {
    let StartupPacket::Startup { params, .. } = packet else {
        return None;
    };
    params.iter().find_map(|(k, v)| {
        let k_l = k.to_ascii_lowercase();
        let bad = match k_l.as_str() {
            "user"
            | "database"
            | "application_name"
            | "datestyle"
            | "timezone"
            | "extra_float_digits"
            | "intervalstyle"
            | "geqo"
            | "statement_timeout"
            | "lock_timeout"
            | "idle_in_transaction_session_timeout" => false,
            // PostgreSQL compares encoding names without punctuation
            // (clean_encoding_name), so asyncpg's `'utf-8'` is UTF8.
            "client_encoding" => {
                let name: String = v
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .map(|c| c.to_ascii_lowercase())
                    .collect();
                !matches!(name.as_str(), "utf8" | "unicode")
            }
            _ => true,
        };
        bad.then_some(k.as_str())
    })
}

/// Reads the session's catalog (see [`super::catalog`]) before the client
/// sees its first ReadyForQuery. None when the read failed.
async fn load_catalog(
    server: &mut Stream,
    sbuf: &mut BytesMut,
    policy: &crate::snapshot::Snapshot,
    login: &str,
    cap: usize,
) -> Result<Option<Catalog>, SessionError> {
    let mut q = BytesMut::new();
    put_query(&mut q, &catalog_sql(policy, false));
    server
        .write_all(&q)
        .await
        .map_err(|_| SessionError::UpstreamLost)?;
    server
        .flush()
        .await
        .map_err(|_| SessionError::UpstreamLost)?;
    let mut reply = CatalogReply::default();
    loop {
        let f = read_frame(server, sbuf, Direction::Backend, cap.max(1 << 20)).await?;
        if reply.feed(&f) {
            break;
        }
    }
    let catalog = reply.finish(login);
    if catalog.is_none() {
        tracing::warn!("could not read the catalog for this session");
    }
    Ok(catalog)
}

fn backend_key_of(frame: &[u8]) -> Result<(i32, Vec<u8>), SessionError> {
    Ok(backend_key(frame)?)
}

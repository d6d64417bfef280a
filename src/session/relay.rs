//! The two relay loops after authentication.
//!
//! Each loop reads whatever the socket has, walks the complete frames in the
//! buffer (header check only for messages it does not act on), and writes
//! the whole run of untouched frames on with one write: the original bytes,
//! never decoded and re-encoded. State both loops need (what the server is
//! answering, for statement accounting) sits behind a mutex that is only
//! ever held between awaits, so it is never contended across threads.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::{SessionError, SessionInfo, Shared};
use crate::metrics::metrics;
use crate::net::Stream;
use crate::protocol::messages::ready_status;
use crate::protocol::{next_frame, put_error, Direction, Severity};

/// What the server owes the client, oldest first. One entry per message that
/// ends in ReadyForQuery (Query, Sync).
#[derive(Debug)]
enum Pending {
    Query { start: Instant },
    Sync { start: Instant, executes: u32 },
}

#[derive(Debug, Default)]
struct State {
    pending: VecDeque<Pending>,
    /// An ErrorResponse arrived for the head entry.
    head_failed: bool,
    /// Nothing in flight and the last ReadyForQuery said idle.
    idle: bool,
}

/// Reads from a socket into the buffer, growing it as needed.
async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    r.read_buf(buf).await
}

pub(super) async fn run(
    client: Stream,
    server: Stream,
    leftover: (BytesMut, BytesMut),
    info: &SessionInfo,
    shared: &Shared,
) -> Result<(), SessionError> {
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let state = Mutex::new(State {
        idle: true,
        ..State::default()
    });
    let (cbuf, sbuf) = leftover;
    let mut draining = shared.draining.clone();
    let outcome = {
        let fe = frontend(&mut cr, &mut sw, cbuf, &state, shared);
        let be = backend(&mut sr, &mut cw, sbuf, &state);
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
            () = drain => Err(SessionError::Refused("shutdown")),
        }
    };
    let _ = info;
    let mut out = BytesMut::new();
    match &outcome {
        Ok(()) => {}
        Err(SessionError::Refused("shutdown")) => {
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
            put_error(&mut out, Severity::Fatal, "08P01", &format!("invalid frontend message: {e}"), None);
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
        Err(SessionError::Refused("shutdown")) => Ok(()),
        other => other,
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A poisoned lock means a panic elsewhere in this task; the state is
    // plain data, so keep going rather than take the session down twice.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Client → server.
async fn frontend(
    cr: &mut ReadHalf<Stream>,
    sw: &mut WriteHalf<Stream>,
    mut buf: BytesMut,
    state: &Mutex<State>,
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
        while let Some(n) = next_frame(&buf[pos..], Direction::Frontend, cap)? {
            let tag = buf[pos];
            match tag {
                b'Q' => {
                    let mut st = lock(state);
                    st.idle = false;
                    st.pending.push_back(Pending::Query { start: t0 });
                }
                b'P' | b'B' | b'D' | b'C' | b'H' => {
                    batch_start.get_or_insert(t0);
                    lock(state).idle = false;
                }
                b'E' => {
                    batch_start.get_or_insert(t0);
                    executes += 1;
                    lock(state).idle = false;
                }
                b'S' => {
                    let start = batch_start.take().unwrap_or(t0);
                    let mut st = lock(state);
                    st.idle = false;
                    st.pending.push_back(Pending::Sync { start, executes });
                    executes = 0;
                }
                b'X' => {
                    terminate = true;
                    pos += n;
                    break;
                }
                _ => {}
            }
            pos += n;
        }
        if pos > 0 {
            let chunk = buf.split_to(pos);
            m.bytes_from_clients.inc_by(chunk.len() as u64);
            sw.write_all(&chunk).await.map_err(|_| SessionError::UpstreamLost)?;
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

/// Server → client.
async fn backend(
    sr: &mut ReadHalf<Stream>,
    cw: &mut WriteHalf<Stream>,
    mut buf: BytesMut,
    state: &Mutex<State>,
) -> Result<(), SessionError> {
    let m = metrics();
    // The server is trusted for content but not for sizes: a corrupt length
    // must not make the proxy allocate gigabytes.
    let cap = i32::MAX as usize;
    loop {
        let t0 = Instant::now();
        let mut pos = 0;
        while let Some(n) = next_frame(&buf[pos..], Direction::Backend, cap).map_err(|_| SessionError::UpstreamLost)? {
            match buf[pos] {
                b'E' => lock(state).head_failed = true,
                b'Z' => {
                    let status = ready_status(&buf[pos..pos + n]);
                    let mut st = lock(state);
                    let failed = std::mem::take(&mut st.head_failed);
                    match st.pending.pop_front() {
                        Some(Pending::Query { start }) => {
                            if failed { &m.simple_error } else { &m.simple_ok }.inc();
                            m.statement_latency.observe(start.elapsed().as_secs_f64());
                        }
                        Some(Pending::Sync { start, executes }) => {
                            if executes > 0 {
                                if failed { &m.extended_error } else { &m.extended_ok }.inc_by(executes as u64);
                            }
                            m.statement_latency.observe(start.elapsed().as_secs_f64());
                        }
                        None => {}
                    }
                    st.idle = st.pending.is_empty() && status == b'I';
                }
                _ => {}
            }
            pos += n;
        }
        if pos > 0 {
            let chunk = buf.split_to(pos);
            m.bytes_to_clients.inc_by(chunk.len() as u64);
            cw.write_all(&chunk).await?;
            cw.flush().await?;
            m.proxy_latency.observe(t0.elapsed().as_secs_f64());
        }
        match fill(sr, &mut buf).await {
            Ok(0) | Err(_) => return Err(SessionError::UpstreamLost),
            Ok(_) => {}
        }
    }
}

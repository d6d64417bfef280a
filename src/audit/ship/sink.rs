//! The NATS JetStream side: connect, make sure the stream exists, publish
//! with acknowledgements, and read a stream back (for `verify`/`search`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, Context};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::audit::record::AuditRecord;

use super::tail::Line;
use super::ShipError;

/// How long one request (stream info, a publish ack) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Sink {
    pub js: Context,
    pub stream: stream::Stream,
    pub subject: String,
}

/// The stream's subjects for a shipper subject: `pgveil.audit.a` gives
/// `pgveil.audit.>`, so every instance of a fleet lands in one stream.
pub fn stream_subjects(subject: &str) -> String {
    match subject.rsplit_once('.') {
        Some((prefix, _)) => format!("{prefix}.>"),
        None => subject.to_string(),
    }
}

/// NATS subject matching: `*` one token, `>` the rest.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// How long the client waits before reconnecting on its own once it has
/// been connected: in effect never, since the session drops the client
/// first (a publish or ack fails within [`REQUEST_TIMEOUT`]).
const NO_SILENT_RECONNECT: Duration = Duration::from_secs(3600);

/// Connects without the client's silent reconnect. A nats-server killed
/// with -9 can lose messages it acknowledged; a client that reconnects
/// under us would go on publishing after that hole, and the stream would
/// hold later records past a gap that no alignment sees (the newest record
/// looks right). Every break must instead end the shipper's session, so the
/// next one aligns with what the stream really holds before sending more.
/// An abandoned client's task sleeps out the delay and exits: one idle
/// task per outage, bounded.
pub async fn connect(url: &str) -> Result<Context, ShipError> {
    let established = Arc::new(AtomicBool::new(false));
    let seen = established.clone();
    let client = async_nats::ConnectOptions::new()
        .name("pgveil")
        .connection_timeout(REQUEST_TIMEOUT)
        .max_reconnects(1)
        .reconnect_delay_callback(move |_| {
            if seen.load(Ordering::Relaxed) {
                NO_SILENT_RECONNECT
            } else {
                Duration::ZERO
            }
        })
        .connect(url)
        .await
        .map_err(|e| ShipError::Connect(e.to_string()))?;
    established.store(true, Ordering::Relaxed);
    Ok(jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(client))
}

impl Sink {
    /// Gets or creates `stream` (file storage, default duplicate window) and
    /// checks that it captures `subject`: a stream bound to other subjects
    /// would make every publish fail with "no responders".
    pub async fn open(js: Context, stream: &str, subject: &str) -> Result<Sink, ShipError> {
        let config = stream::Config {
            name: stream.to_string(),
            subjects: vec![stream_subjects(subject)],
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let mut s = js
            .get_or_create_stream(config)
            .await
            .map_err(|e| ShipError::Stream(e.to_string()))?;
        let info = s
            .info()
            .await
            .map_err(|e| ShipError::Stream(e.to_string()))?;
        if !info
            .config
            .subjects
            .iter()
            .any(|p| subject_matches(p, subject))
        {
            return Err(ShipError::Stream(format!(
                "stream {stream} exists but does not capture subject {subject} (its subjects: {})",
                info.config.subjects.join(", ")
            )));
        }
        Ok(Sink {
            js,
            stream: s,
            subject: subject.to_string(),
        })
    }

    /// `(record seq, record hash, stream seq)` of the newest record on our
    /// subject, `None` when the subject is empty.
    pub async fn last(&self) -> Result<Option<(u64, String, u64)>, ShipError> {
        use stream::LastRawMessageErrorKind as K;
        match self
            .stream
            .get_last_raw_message_by_subject(&self.subject)
            .await
        {
            Ok(m) => {
                let r: AuditRecord = serde_json::from_slice(&m.payload).map_err(|e| {
                    ShipError::Stream(format!(
                        "newest message on {} (stream seq {}) is not an audit record: {e}",
                        self.subject, m.sequence
                    ))
                })?;
                Ok(Some((r.seq, r.hash, m.sequence)))
            }
            Err(e) if e.kind() == K::NoMessageFound => Ok(None),
            Err(e) => Err(ShipError::Stream(e.to_string())),
        }
    }

    /// Publishes `lines` pipelined, then awaits the acks in order. Returns
    /// the acknowledged prefix as `(stream seq, duplicate)` per line, and
    /// the error that stopped it, if any. Only that prefix may advance the
    /// cursor; the rest is published again (de-duplicated by msg id).
    pub async fn publish(&self, lines: &[Line]) -> (Vec<(u64, bool)>, Option<ShipError>) {
        let mut futures = Vec::with_capacity(lines.len());
        let mut err = None;
        for l in lines {
            let msg = jetstream::message::PublishMessage::build()
                .payload(l.bytes.clone())
                .message_id(&l.hash);
            match self.js.send_publish(self.subject.clone(), msg).await {
                Ok(f) => futures.push(f),
                Err(e) => {
                    err = Some(ShipError::Publish(e.to_string()));
                    break;
                }
            }
        }
        let mut acked = Vec::with_capacity(futures.len());
        for f in futures {
            match f.await {
                Ok(ack) => acked.push((ack.sequence, ack.duplicate)),
                Err(e) => {
                    err.get_or_insert(ShipError::Publish(e.to_string()));
                    break;
                }
            }
        }
        (acked, err)
    }
}

/// One message read back from a stream.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    pub subject: String,
    pub stream_seq: u64,
    pub payload: Bytes,
}

/// Every message of `stream` whose subject matches `filter`, in stream
/// order, through an ordered consumer (nothing is acknowledged or changed).
pub async fn read_stream(
    url: &str,
    stream: &str,
    filter: &str,
) -> Result<Vec<StreamRecord>, ShipError> {
    let js = connect(url).await?;
    let s = js
        .get_stream(stream)
        .await
        .map_err(|e| ShipError::Stream(e.to_string()))?;
    let mut c = s
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|e| ShipError::Stream(e.to_string()))?;
    let pending = c
        .info()
        .await
        .map_err(|e| ShipError::Stream(e.to_string()))?
        .num_pending;
    let mut out = Vec::new();
    if pending == 0 {
        return Ok(out);
    }
    let mut msgs = c
        .messages()
        .await
        .map_err(|e| ShipError::Stream(e.to_string()))?;
    loop {
        let next = tokio::time::timeout(REQUEST_TIMEOUT * 2, msgs.next()).await;
        let m = match next {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(ShipError::Stream(e.to_string())),
            Ok(None) => break,
            Err(_) => {
                return Err(ShipError::Stream(format!(
                    "timed out reading stream {stream} after {} messages",
                    out.len()
                )))
            }
        };
        let info = m.info().map_err(|e| ShipError::Stream(e.to_string()))?;
        let (stream_seq, left) = (info.stream_sequence, info.pending);
        out.push(StreamRecord {
            subject: m.subject.to_string(),
            stream_seq,
            payload: m.payload.clone(),
        });
        if left == 0 {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert_eq!(stream_subjects("pgveil.audit.db-1"), "pgveil.audit.>");
        assert_eq!(stream_subjects("audit"), "audit");
        assert!(subject_matches("pgveil.audit.>", "pgveil.audit.a"));
        assert!(subject_matches("pgveil.*.a", "pgveil.audit.a"));
        assert!(!subject_matches("pgveil.audit.>", "pgveil.audit"));
        assert!(!subject_matches("pgveil.audit.a", "pgveil.audit.b"));
        assert!(subject_matches("x", "x"));
    }
}

//! The shipper's loop: connect, align with the stream, ship, back off.

use std::time::{Duration, Instant, SystemTime};

use super::cursor;
use super::sink::{self, Sink};
use super::tail::{Line, LocalTail};
use super::{clamp, ShipError, Shipper};
use crate::audit::record::Timestamp;

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often an idle shipper asks the stream for its newest record on our subject.
const STREAM_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl Shipper {
    pub(super) async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut last_err: Option<String> = None;
        loop {
            let res = self.session().await;
            // A session that got as far as shipping starts the backoff over.
            if self.metrics.connected.get() == 1 {
                backoff = BACKOFF_MIN;
            }
            self.metrics.connected.set(0);
            let Err(e) = res else { continue };
            self.metrics.errors.with_label_values(&[e.op()]).inc();
            // Log a failure once, not every retry, while it persists.
            let text = e.to_string();
            if last_err.as_deref() != Some(text.as_str()) {
                tracing::warn!(error = %text, "audit shipping paused; records wait on disk and are retried");
                last_err = Some(text);
            }
            if matches!(e, ShipError::Local(_) | ShipError::Diverged { .. }) {
                // Reopen at the cursor: the local chain may have been read
                // during a rewrite; nothing after the fault is shipped.
                self.tail = None;
                self.pending.clear();
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until {
                let _ = self.refresh_lag();
                tokio::time::sleep(Duration::from_millis(250).min(backoff)).await;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection's life: connect, align, then ship until an error.
    async fn session(&mut self) -> Result<(), ShipError> {
        let js = sink::connect(&self.config.url).await?;
        let sink = Sink::open(js, &self.config.stream, &self.config.subject).await?;
        self.align(&sink).await?;
        self.metrics.connected.set(1);
        tracing::info!(stream = %self.config.stream, subject = %self.config.subject, shipped_seq = self.cursor.seq, "audit shipping connected");
        let mut checked = Instant::now();
        loop {
            if self.pending.is_empty() {
                self.fill()?;
            }
            self.refresh_lag()?;
            if self.pending.is_empty() {
                // Idle: a good moment to make the cursor current, and to
                // check that the stream still holds what it acknowledged.
                // A single nats-server killed with -9 can lose acknowledged
                // messages, and the client reconnects under us without an
                // error: without this check those records would be a gap.
                self.save_cursor(true)?;
                if checked.elapsed() >= STREAM_CHECK_INTERVAL {
                    checked = Instant::now();
                    let head = sink.last().await?.map_or(0, |(seq, ..)| seq);
                    if head != self.cursor.seq {
                        self.align(&sink).await?;
                    }
                }
                tokio::time::sleep(self.config.poll_interval).await;
                continue;
            }
            let n = self.pending.len().min(self.config.batch);
            let (acked, err) = sink.publish(&self.pending[..n]).await;
            // Stream sequences only grow: an ack at or below the last one
            // acknowledged (not a duplicate) means the server lost messages.
            if acked
                .first()
                .is_some_and(|&(sseq, dup)| !dup && sseq <= self.cursor.stream_seq)
            {
                return Err(ShipError::Stream(
                    "the stream's sequence went backwards (server lost acknowledged messages?); re-aligning".into(),
                ));
            }
            self.advance(&acked);
            if let Some(e) = err {
                self.save_cursor(true)?;
                return Err(e);
            }
            self.save_cursor(false)?;
        }
    }

    fn limit(&self) -> u64 {
        self.durable.as_ref().map_or(u64::MAX, |d| d.get())
    }

    fn tail(&mut self) -> Result<&mut LocalTail, ShipError> {
        if self.tail.is_none() {
            let c = &self.cursor;
            let at = match &c.segment {
                Some(seg) => LocalTail::at(
                    &self.dir,
                    self.hasher.clone(),
                    seg,
                    c.offset,
                    c.seq,
                    &c.hash,
                )?,
                None => None,
            };
            let tail = match at {
                Some(t) => t,
                None => self.rewound(c.seq)?,
            };
            self.tail = Some(tail);
        }
        self.tail
            .as_mut()
            .ok_or_else(|| ShipError::Cursor("no local reader".into()))
    }

    /// A reader from the oldest segment, advanced past record `seq`.
    fn rewound(&self, seq: u64) -> Result<LocalTail, ShipError> {
        let mut t = LocalTail::from_start(&self.dir, self.hasher.clone());
        if seq > 0 {
            while !t.read(4096, seq)?.is_empty() {}
        }
        Ok(t)
    }

    /// Reads the next durable records into `pending`.
    fn fill(&mut self) -> Result<(), ShipError> {
        let (batch, limit) = (self.config.batch, self.limit());
        let lines = self.tail()?.read(batch, limit)?;
        self.pending.extend(lines);
        Ok(())
    }

    /// Moves the cursor over the acknowledged prefix of `pending`.
    fn advance(&mut self, acked: &[(u64, bool)]) {
        if acked.is_empty() {
            return;
        }
        let dups = acked.iter().filter(|(_, d)| *d).count() as u64;
        let done: Vec<Line> = self.pending.drain(..acked.len()).collect();
        if let (Some(last), Some((stream_seq, _))) = (done.last(), acked.last()) {
            self.set_cursor(last, *stream_seq);
        }
        self.metrics.records.inc_by(done.len() as u64 - dups);
        self.metrics.duplicates.inc_by(dups);
    }

    fn set_cursor(&mut self, line: &Line, stream_seq: u64) {
        self.cursor.seq = line.seq;
        self.cursor.hash = line.hash.clone();
        self.cursor.segment = Some(line.segment.clone());
        self.cursor.offset = line.end_offset;
        self.cursor.stream_seq = stream_seq;
        self.cursor_dirty = true;
        self.metrics.head_seq.set(clamp(line.seq));
    }

    fn save_cursor(&mut self, now: bool) -> Result<(), ShipError> {
        let due = now || self.cursor_saved.elapsed() >= self.config.cursor_interval;
        if self.cursor_dirty && due {
            cursor::store(&self.dir, &self.cursor)?;
            self.cursor_dirty = false;
            self.cursor_saved = Instant::now();
        }
        Ok(())
    }

    /// Lag in records (durable head minus acknowledged) and in seconds (age
    /// of the oldest unacknowledged record). Reads ahead while the sink is
    /// down so the age is known.
    fn refresh_lag(&mut self) -> Result<(), ShipError> {
        if self.pending.is_empty() {
            self.fill()?;
        }
        let head = match &self.durable {
            Some(d) => d.get(),
            None => self.pending.last().map_or(self.cursor.seq, |l| l.seq),
        };
        self.metrics
            .lag_records
            .set(clamp(head.saturating_sub(self.cursor.seq)));
        let age = match self.pending.first().and_then(|l| l.time) {
            Some(t) => {
                let now = Timestamp::from_system_time(SystemTime::now());
                (now.0 - t.0).max(0) as f64 / 1e6
            }
            None => 0.0,
        };
        self.metrics.lag_seconds.set(age);
        Ok(())
    }

    /// Makes the cursor agree with the stream's newest record for our
    /// subject: skips what the stream already holds (acks lost in a crash),
    /// and re-ships what it lacks (a purged or recreated stream).
    async fn align(&mut self, sink: &Sink) -> Result<(), ShipError> {
        let last = sink.last().await?;
        let (seq, hash, stream_seq) = last.unwrap_or((0, String::new(), 0));
        if seq == self.cursor.seq {
            if seq > 0 && hash != self.cursor.hash {
                return Err(ShipError::Diverged {
                    seq,
                    why: "the stream's record has another hash (two instances on one subject?)"
                        .into(),
                });
            }
            return Ok(());
        }
        let local = if seq < self.cursor.seq {
            tracing::warn!(
                stream_seq = seq,
                cursor_seq = self.cursor.seq,
                "the stream lacks audit records this instance shipped (purged or recreated?); shipping them again"
            );
            self.pending.clear();
            let t = self.rewound(seq)?;
            let prev = t.prev().map(str::to_string);
            self.tail = Some(t);
            prev
        } else {
            // The stream holds records past the cursor: published, but the
            // ack (or the cursor write) was lost. Skip exactly those.
            let found = self
                .pending
                .iter()
                .find(|l| l.seq == seq)
                .map(|l| l.hash.clone());
            self.pending.retain(|l| l.seq > seq);
            match found {
                Some(h) => Some(h),
                None => {
                    let t = self.tail()?;
                    while !t.read(4096, seq)?.is_empty() {}
                    t.prev().map(str::to_string)
                }
            }
        };
        if seq > 0 && local.as_deref() != Some(hash.as_str()) {
            return Err(ShipError::Diverged {
                seq,
                why: "the stream's newest record for this subject is not the local record at that seq"
                    .into(),
            });
        }
        if seq > self.cursor.seq {
            tracing::info!(
                skipped = seq - self.cursor.seq,
                shipped_seq = seq,
                "audit shipping: the stream already held records past the cursor (ack or cursor write lost); not sent again"
            );
        }
        self.cursor.seq = seq;
        self.cursor.hash = if seq == 0 {
            crate::audit::record::GENESIS_HASH.to_string()
        } else {
            hash
        };
        self.cursor.stream_seq = stream_seq;
        // Where the reader stands, when no line is pending before it
        // (otherwise the next ack sets it); unknown means a rescan on restart.
        let pos = match (&self.tail, self.pending.is_empty()) {
            (Some(t), true) => t.position(),
            _ => None,
        };
        match pos {
            Some((seg, off)) => {
                self.cursor.segment = Some(seg);
                self.cursor.offset = off;
            }
            None => self.cursor.segment = None,
        }
        self.cursor_dirty = true;
        self.metrics.head_seq.set(clamp(seq));
        self.save_cursor(true)
    }
}

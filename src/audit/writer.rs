//! The audit writer: one dedicated OS thread that owns the segment file.
//!
//! Sessions run on per-core current-thread runtimes and must never block on
//! file I/O, so they only enqueue (see [`super::handle`] for the two
//! queues). The writer thread runs its own tiny current-thread runtime (for
//! the channel and timers) and does plain blocking file I/O.
//!
//! **Group commit.** Each loop iteration takes everything queued (the lazy
//! queue, then the channel up to [`MAX_BATCH`]), assigns seq/prev/hash,
//! writes the batch with one `write_all`, appends one `outcomes` record for
//! the outcomes whose intents now have a seq, fsyncs once if anyone in the
//! group waits for durability (strict), then completes every waiter. While
//! one fsync runs, new submissions pile up and share the next one. Records
//! nobody waits for are fsynced by the next such group, or within
//! `STRICT_LAZY_SYNC` / the buffered interval.
//!
//! **Faults.** Any write/fsync error drops the open segment, marks the writer
//! unhealthy and fails the affected submissions with
//! [`AuditError::Unavailable`]. Recovery (on the next submission, and on a
//! timer, at most once per `retry_interval`) re-reads the chain head from
//! disk, opens a *new* segment — the old one may end in a partial line and is
//! never written again — and writes a `recovery` record naming any torn tail.
//! Records of a failed batch that did reach the file complete (e.g. fsync
//! failed after the write) stay in the chain: over-recording is safe, a
//! record reported durable but missing would not be.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prometheus::{IntGauge, Registry};
use tokio::sync::{mpsc, oneshot};

use super::config::{AuditConfig, AuditMetrics, Durability};
pub use super::handle::{Audit, DurableSeq, Intent, IntentCheck};
use super::handle::{Lazy, LazyQ, Msg, OutcomeMsg, Reply, Shared, SEQ_FAILED, SEQ_UNASSIGNED};
use super::record::{
    AuditRecord, AuditRecordInput, ChainHasher, RecordKind, Recovery, RecoveryReason,
    StatementOutcome,
};
use super::segment::{scan_tail, segment_file_name, sync_dir, Tail};
use super::AuditError;

/// Most records written (and fsynced) as one group.
pub const MAX_BATCH: usize = 1024;

/// How long the writer, woken by the lazy queue, waits to gather more
/// before writing: one wake-up per grace period instead of one per record.
const GRACE: Duration = Duration::from_millis(1);

/// In strict mode, how long records nobody waits for (outcomes, untagged
/// statements) may sit written but not fsynced. They are fsynced sooner by
/// the next group that someone waits on.
const STRICT_LAZY_SYNC: Duration = Duration::from_millis(50);

/// Most outcomes kept waiting for their intent's seq.
const MAX_DEFERRED: usize = 1 << 20;

type WriteHook = dyn Fn(&[u8]) -> Result<(), (usize, io::Error)> + Send + Sync;
type SyncHook = dyn Fn() -> io::Result<()> + Send + Sync;

/// Fault injection and observation points, for tests. `write` may fail a
/// write after letting its first `n` bytes through (a torn line); `sync`
/// runs before every real fsync and may fail it or block.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub write: Option<Arc<WriteHook>>,
    pub sync: Option<Arc<SyncHook>>,
}

impl Audit {
    /// Opens (or creates) the audit directory, continues the chain found
    /// there, registers the metrics and starts the writer thread. Fails if
    /// the directory cannot be written now: better to refuse to start than
    /// to start unable to audit.
    pub fn start(config: AuditConfig, registry: &Registry) -> Result<Audit, AuditError> {
        Self::start_with_hooks(config, registry, Hooks::default())
    }

    pub(crate) fn start_with_hooks(
        config: AuditConfig,
        registry: &Registry,
        hooks: Hooks,
    ) -> Result<Audit, AuditError> {
        config.validate()?;
        let metrics = AuditMetrics::new()?;
        let healthy = Arc::new(AtomicBool::new(false));
        let durable = DurableSeq::default();
        let lazy = Arc::new(Lazy::new(config.channel_capacity));
        let mut writer = Writer::new(&config, metrics.clone(), healthy.clone(), hooks);
        writer.durable = durable.clone();
        writer.lazy = lazy.clone();
        writer.open_at_start()?;
        metrics.register(registry)?;
        healthy.store(true, Ordering::Release);
        metrics.healthy.set(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|source| AuditError::Io {
                path: config.dir.clone(),
                source,
            })?;
        let (tx, rx) = mpsc::channel(config.channel_capacity);
        std::thread::Builder::new()
            .name("pgveil-audit".into())
            .spawn(move || rt.block_on(writer.run(rx)))
            .map_err(|source| AuditError::Io {
                path: config.dir.clone(),
                source,
            })?;
        Ok(Audit {
            tx,
            shared: Arc::new(Shared {
                healthy,
                durable,
                metrics,
                backpressure: config.backpressure,
                durability: config.durability,
                lazy,
            }),
        })
    }
}

struct MarkDown(Arc<AtomicBool>, IntGauge);

impl Drop for MarkDown {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
        self.1.set(0);
    }
}

struct OpenSegment {
    file: File,
    index: u64,
    name: String,
    bytes: u64,
    opened: Instant,
}

struct Pending {
    input: Box<AuditRecordInput>,
    reply: Option<Reply>,
    /// An intent's seq cell.
    seq: Option<Arc<AtomicU64>>,
}

/// A record of the group being written: its seq, who waits, its seq cell.
struct Done {
    seq: u64,
    reply: Option<Reply>,
    cell: Option<Arc<AtomicU64>>,
}

struct Writer {
    dir: PathBuf,
    hasher: ChainHasher,
    durability: Durability,
    max_bytes: u64,
    max_age: Duration,
    retry_interval: Duration,
    stdout: bool,
    seg: Option<OpenSegment>,
    head_seq: u64,
    head_hash: String,
    /// Seq of the newest record written to the file (fsynced or not).
    written_seq: u64,
    durable: DurableSeq,
    /// Written since the last fsync.
    dirty: bool,
    last_sync: Instant,
    next_retry: Instant,
    healthy: Arc<AtomicBool>,
    metrics: AuditMetrics,
    hooks: Hooks,
    stdout_failed: bool,
    lazy: Arc<Lazy>,
    /// Outcomes whose intent has no seq yet (it is still in the channel).
    outcomes: Vec<OutcomeMsg>,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Writer {
    fn new(c: &AuditConfig, metrics: AuditMetrics, healthy: Arc<AtomicBool>, hooks: Hooks) -> Self {
        let now = Instant::now();
        Writer {
            dir: c.dir.clone(),
            hasher: ChainHasher::new(c.chain_key.as_ref().map(|k| k.as_slice())),
            durability: c.durability,
            max_bytes: c.segment_max_bytes,
            max_age: c.segment_max_age,
            retry_interval: c.retry_interval,
            stdout: c.stdout,
            seg: None,
            head_seq: 0,
            head_hash: String::new(),
            written_seq: 0,
            durable: DurableSeq::default(),
            dirty: false,
            last_sync: now,
            next_retry: now,
            healthy,
            metrics,
            hooks,
            stdout_failed: false,
            lazy: Arc::new(Lazy::new(1)),
            outcomes: Vec::new(),
        }
    }

    fn create_dir(&self) -> Result<(), AuditError> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&self.dir).map_err(io_at(&self.dir))
    }

    /// Startup: append to a cleanly ended last segment, or start a new one
    /// (with a recovery record if the previous process left a torn line).
    fn open_at_start(&mut self) -> Result<(), AuditError> {
        self.create_dir()?;
        let tail = scan_tail(&self.dir, &self.hasher)?;
        if !tail.torn.is_empty() {
            return self.start_recovered_segment(tail, RecoveryReason::Startup);
        }
        self.set_head(tail.head_seq, tail.head_hash.clone());
        // What a previous process left is taken as durable: it is what the
        // chain continues from.
        self.written_seq = tail.head_seq;
        self.durable.set(tail.head_seq);
        match tail.last {
            Some((last, len)) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(&last.path)
                    .map_err(io_at(&last.path))?;
                self.seg = Some(OpenSegment {
                    file,
                    index: last.index,
                    name: last.name,
                    bytes: len,
                    opened: Instant::now(),
                });
            }
            None => self.seg = Some(self.create_segment(1, 1)?),
        }
        Ok(())
    }

    fn set_head(&mut self, seq: u64, hash: String) {
        self.head_seq = seq;
        self.head_hash = hash;
        self.metrics
            .chain_head_seq
            .set(i64::try_from(seq).unwrap_or(i64::MAX));
    }

    /// `create_new`: a segment is never reopened for anything but append.
    fn create_segment(&self, index: u64, start_seq: u64) -> Result<OpenSegment, AuditError> {
        let name = segment_file_name(index, start_seq);
        let path = self.dir.join(&name);
        // The audit names who read which customers' data: owner-only, like
        // the directory.
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_at(&path))?;
        sync_dir(&self.dir).map_err(io_at(&self.dir))?;
        Ok(OpenSegment {
            file,
            index,
            name,
            bytes: 0,
            opened: Instant::now(),
        })
    }

    /// New segment continuing from the on-disk head, first record a durable
    /// `recovery` record naming the torn tails.
    fn start_recovered_segment(
        &mut self,
        tail: Tail,
        reason: RecoveryReason,
    ) -> Result<(), AuditError> {
        self.seg = Some(self.create_segment(tail.next_index, tail.head_seq + 1)?);
        self.set_head(tail.head_seq, tail.head_hash);
        let mut rec = AuditRecord::from_input(
            AuditRecordInput::new(RecordKind::Recovery, SystemTime::now()),
            self.head_seq + 1,
            self.head_hash.clone(),
        );
        rec.recovery = Some(Recovery {
            reason,
            torn: tail.torn,
        });
        let mut line = rec
            .seal(&self.hasher)
            .map_err(|e| AuditError::Corrupt(format!("cannot encode recovery record: {e}")))?;
        line.push(b'\n');
        let res = self.write(&line).and_then(|()| {
            self.written_seq = rec.seq;
            self.sync()
        });
        if let Err(e) = res {
            self.seg = None;
            return Err(io_at(&self.dir)(e));
        }
        tracing::warn!(seq = rec.seq, reason = ?reason, "audit chain resumed in a new segment with a recovery record");
        self.set_head(rec.seq, rec.hash);
        self.metrics.records_written.inc();
        self.emit_stdout(&line);
        Ok(())
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        let hook = self.hooks.write.clone();
        let seg = self
            .seg
            .as_mut()
            .ok_or_else(|| io::Error::other("no open segment"))?;
        if let Some(Err((n, e))) = hook.map(|h| h(buf)) {
            let n = n.min(buf.len());
            seg.file.write_all(&buf[..n])?;
            return Err(e);
        }
        seg.file.write_all(buf)?;
        seg.bytes += buf.len() as u64;
        self.metrics.bytes_written.inc_by(buf.len() as u64);
        self.dirty = true;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Some(h) = &self.hooks.sync {
            h()?;
        }
        let seg = self
            .seg
            .as_mut()
            .ok_or_else(|| io::Error::other("no open segment"))?;
        let started = Instant::now();
        seg.file.sync_data()?;
        self.metrics
            .fsync_seconds
            .observe(started.elapsed().as_secs_f64());
        self.durable.set(self.written_seq);
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn fault(&mut self, what: &str, err: &dyn fmt::Display) {
        tracing::error!(error = %err, op = what, "audit write failed; audit unavailable until recovery");
        self.seg = None;
        self.dirty = false;
        self.healthy.store(false, Ordering::Release);
        self.metrics.healthy.set(0);
        self.metrics.write_errors.inc();
        self.next_retry = Instant::now() + self.retry_interval;
    }

    /// True when a segment is open, recovering first if due.
    fn ensure_open(&mut self) -> bool {
        if self.seg.is_some() {
            return true;
        }
        if Instant::now() < self.next_retry {
            return false;
        }
        let res = self.create_dir().and_then(|()| {
            let tail = scan_tail(&self.dir, &self.hasher)?;
            self.start_recovered_segment(tail, RecoveryReason::WriteError)
        });
        match res {
            Ok(()) => {
                self.healthy.store(true, Ordering::Release);
                self.metrics.healthy.set(1);
                tracing::info!("audit writer recovered");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit recovery attempt failed");
                self.metrics.write_errors.inc();
                self.next_retry = Instant::now() + self.retry_interval;
                false
            }
        }
    }

    fn rotation_due(&self) -> bool {
        self.seg.as_ref().is_some_and(|s| {
            s.bytes > 0 && (s.bytes >= self.max_bytes || s.opened.elapsed() >= self.max_age)
        })
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        if self.dirty {
            self.sync().map_err(io_at(&self.dir))?;
        }
        let index = self.seg.as_ref().map_or(1, |s| s.index + 1);
        let new = self.create_segment(index, self.head_seq + 1)?;
        if let Some(old) = self.seg.replace(new) {
            tracing::debug!(segment = %old.name, "audit segment rotated");
        }
        Ok(())
    }

    fn fail_all(&self, batch: Vec<Pending>) {
        let done = batch
            .into_iter()
            .map(|p| Done {
                seq: 0,
                reply: p.reply,
                cell: p.seq,
            })
            .collect();
        self.fail_done(done);
    }

    /// Takes the queued outcomes whose intents now have a seq (dropping those
    /// whose intent failed) and makes them one `outcomes` record. The taken
    /// messages go into `taken`: if the write fails they are queued again,
    /// since their intents may well be in the chain from an earlier group.
    fn outcomes_input(
        &mut self,
        taken: &mut Vec<OutcomeMsg>,
    ) -> Option<(AuditRecordInput, Vec<StatementOutcome>)> {
        let mut list = Vec::new();
        for o in std::mem::take(&mut self.outcomes) {
            match o.of.load(Ordering::Acquire) {
                SEQ_UNASSIGNED => self.outcomes.push(o),
                SEQ_FAILED => {}
                of => {
                    list.push(StatementOutcome {
                        of,
                        rows: o.rows,
                        duration_us: o.duration_us,
                        outcome: o.outcome.clone(),
                    });
                    taken.push(o);
                }
            }
        }
        if self.outcomes.len() > MAX_DEFERRED {
            // Intents that never arrive (cannot happen while sessions only
            // queue outcomes of submitted intents); bound the memory anyway.
            let n = self.outcomes.len() - MAX_DEFERRED;
            self.outcomes.drain(..n);
            self.metrics.records_lost.inc_by(n as u64);
        }
        if list.is_empty() {
            return None;
        }
        list.sort_by_key(|o| o.of);
        Some((
            AuditRecordInput::new(RecordKind::Outcomes, SystemTime::now()),
            list,
        ))
    }

    fn has_ready_outcomes(&self) -> bool {
        self.outcomes
            .iter()
            .any(|o| o.of.load(Ordering::Acquire) != SEQ_UNASSIGNED)
    }

    /// Writes a group of records and the outcomes that are ready, fsyncs
    /// when someone waits for durability (strict) or when forced, and
    /// completes the submitters.
    fn append(&mut self, batch: Vec<Pending>, force_sync: bool) {
        if batch.is_empty() && !self.has_ready_outcomes() {
            if force_sync && self.dirty {
                if let Err(e) = self.sync() {
                    self.fault("fsync", &e);
                }
            }
            return;
        }
        if !self.ensure_open() {
            return self.fail_all(batch);
        }
        if self.rotation_due() {
            if let Err(e) = self.rotate() {
                self.fault("rotate", &e);
                return self.fail_all(batch);
            }
        }
        let mut buf = Vec::with_capacity(batch.len() * 512);
        let mut seq = self.head_seq;
        let mut prev = self.head_hash.clone();
        let mut done = Vec::with_capacity(batch.len() + 1);
        let strict = self.durability == Durability::Strict;
        let mut must_sync = force_sync;
        for p in batch {
            let rec = AuditRecord::from_input(*p.input, seq + 1, prev.clone());
            let Some(hash) = self.seal_into(rec, &mut buf) else {
                let d = Done {
                    seq: 0,
                    reply: p.reply,
                    cell: p.seq,
                };
                self.fail_done(vec![d]);
                continue;
            };
            seq += 1;
            prev = hash;
            if let Some(cell) = &p.seq {
                cell.store(seq, Ordering::Release);
            }
            must_sync |= strict && p.reply.is_some();
            done.push(Done {
                seq,
                reply: p.reply,
                cell: p.seq,
            });
        }
        let mut taken = Vec::new();
        if let Some((input, list)) = self.outcomes_input(&mut taken) {
            let mut rec = AuditRecord::from_input(input, seq + 1, prev.clone());
            rec.outcomes = Some(Some(list));
            if let Some(hash) = self.seal_into(rec, &mut buf) {
                seq += 1;
                prev = hash;
                done.push(Done {
                    seq,
                    reply: None,
                    cell: None,
                });
            }
        }
        if let Err(e) = self.write(&buf) {
            self.fault("write", &e);
            // This group's intents are now marked failed and their outcomes
            // will be dropped; the others are retried after recovery.
            self.fail_done(done);
            return self.outcomes.append(&mut taken);
        }
        self.written_seq = seq;
        if must_sync || (self.dirty && force_sync) {
            if let Err(e) = self.sync() {
                self.fault("fsync", &e);
                self.fail_done(done);
                return self.outcomes.append(&mut taken);
            }
        }
        let n = done.len() as u64;
        self.set_head(seq, prev);
        self.metrics.records_written.inc_by(n);
        self.emit_stdout(&buf);
        for d in done {
            if let Some(r) = d.reply {
                let _ = r.send(Ok(d.seq));
            }
        }
    }

    /// Seals `rec` onto `buf` as one line; its hash, or None (logged) if it
    /// cannot be encoded, which cannot happen for this struct.
    fn seal_into(&self, mut rec: AuditRecord, buf: &mut Vec<u8>) -> Option<String> {
        match rec.seal(&self.hasher) {
            Ok(line) => {
                buf.extend_from_slice(&line);
                buf.push(b'\n');
                Some(rec.hash)
            }
            Err(e) => {
                tracing::error!(error = %e, "audit record could not be encoded");
                None
            }
        }
    }

    fn fail_done(&self, done: Vec<Done>) {
        for d in done {
            if let Some(cell) = &d.cell {
                cell.store(SEQ_FAILED, Ordering::Release);
            }
            match d.reply {
                Some(r) => {
                    let _ = r.send(Err(AuditError::Unavailable));
                }
                None => self.metrics.records_lost.inc(),
            }
        }
    }

    fn emit_stdout(&mut self, buf: &[u8]) {
        if !self.stdout {
            return;
        }
        let mut out = io::stdout().lock();
        if let Err(e) = out.write_all(buf).and_then(|()| out.flush()) {
            // stdout is a copy for log shipping; the files are the record.
            if !self.stdout_failed {
                tracing::warn!(error = %e, "cannot write audit records to stdout");
                self.stdout_failed = true;
            }
        }
    }

    fn flush_now(&mut self) -> Result<(), AuditError> {
        if !self.ensure_open() {
            return Err(AuditError::Unavailable);
        }
        if self.dirty {
            if let Err(e) = self.sync() {
                self.fault("fsync", &e);
                return Err(AuditError::Unavailable);
            }
        }
        Ok(())
    }

    /// How long written-but-unsynced records may wait for an fsync.
    fn sync_interval(&self) -> Duration {
        match self.durability {
            Durability::Buffered { interval } => interval,
            Durability::Strict => STRICT_LAZY_SYNC,
        }
    }

    /// Periodic duties: lazy fsync, age rotation, fault recovery.
    fn on_timer(&mut self) {
        let now = Instant::now();
        if self.seg.is_none() {
            if now >= self.next_retry {
                self.ensure_open();
            }
            return;
        }
        if self.dirty && now >= self.last_sync + self.sync_interval() {
            if let Err(e) = self.sync() {
                return self.fault("fsync", &e);
            }
        }
        if self
            .seg
            .as_ref()
            .is_some_and(|s| s.bytes > 0 && s.opened.elapsed() >= self.max_age)
        {
            if let Err(e) = self.rotate() {
                self.fault("rotate", &e);
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut d = now + Duration::from_secs(1);
        match &self.seg {
            None => d = d.min(self.next_retry),
            Some(s) => {
                if self.dirty {
                    d = d.min(self.last_sync + self.sync_interval());
                }
                if s.bytes > 0 {
                    d = d.min(s.opened + self.max_age);
                }
            }
        }
        d.max(now)
    }

    /// One group: everything in the lazy queue, then the channel (up to
    /// [`MAX_BATCH`]). Returns (records, flush waiters, whether the channel
    /// may hold more).
    fn collect(
        &mut self,
        rx: &mut mpsc::Receiver<Msg>,
        first: Option<Msg>,
        st: &mut RunState,
    ) -> (Vec<Pending>, Vec<FlushReply>, bool) {
        let mut q = LazyQ::default();
        self.lazy.take(&mut q);
        self.outcomes.append(&mut q.outcomes);
        let mut batch: Vec<Pending> = q
            .records
            .into_iter()
            .map(|input| Pending {
                input,
                reply: None,
                seq: None,
            })
            .collect();
        let mut flushes = Vec::new();
        let mut next = first;
        let mut more = false;
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None if batch.len() >= MAX_BATCH => {
                    more = true;
                    break;
                }
                None => match rx.try_recv() {
                    Ok(m) => m,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        st.open = false;
                        break;
                    }
                },
            };
            match msg {
                Msg::Record { input, reply, seq } => batch.push(Pending { input, reply, seq }),
                Msg::Flush(tx) => flushes.push(tx),
                Msg::Shutdown(tx) => {
                    // Stop accepting; what is already queued still gets
                    // written before the loop ends.
                    rx.close();
                    st.stop_waiters.push(tx);
                }
            }
        }
        (batch, flushes, more)
    }

    /// Waits for the next thing to do: a channel message (returned), the
    /// lazy queue (after a grace period that gathers more), or a timer.
    async fn park(&mut self, rx: &mut mpsc::Receiver<Msg>, st: &mut RunState) -> Option<Msg> {
        let lazy = self.lazy.clone();
        lazy.parked.store(true, Ordering::SeqCst);
        let waiting = !lazy.is_empty();
        if waiting {
            lazy.parked.store(false, Ordering::SeqCst);
        }
        let deadline = tokio::time::Instant::from_std(self.next_deadline());
        let got = tokio::select! {
            m = rx.recv() => Some(m),
            () = lazy.notify.notified(), if !waiting => grace(rx).await,
            () = tokio::time::sleep(GRACE), if waiting => None,
            () = tokio::time::sleep_until(deadline) => None,
        };
        lazy.parked.store(false, Ordering::SeqCst);
        match got {
            Some(Some(m)) => Some(m),
            Some(None) => {
                st.open = false;
                None
            }
            None => None,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        // However the thread ends (shutdown, last handle dropped, or a bug
        // that panics), handles must stop reporting a healthy audit.
        let _down = MarkDown(self.healthy.clone(), self.metrics.healthy.clone());
        let mut st = RunState {
            open: true,
            stop_waiters: Vec::new(),
        };
        let mut carry = None;
        loop {
            let (batch, flushes, more) = self.collect(&mut rx, carry.take(), &mut st);
            let force = !flushes.is_empty() || !st.stop_waiters.is_empty();
            self.append(batch, force);
            for f in flushes {
                let _ = f.send(self.flush_now());
            }
            self.on_timer();
            if !st.open {
                break;
            }
            if !more {
                carry = self.park(&mut rx, &mut st).await;
            }
        }
        // Late lazy records (queued while shutting down) still go in.
        let (batch, _, _) = self.collect(&mut rx, None, &mut st);
        self.append(batch, true);
        let res = if self.seg.is_some() || !st.stop_waiters.is_empty() {
            self.flush_now()
        } else {
            Ok(())
        };
        // Stopped: say so before anyone is told shutdown completed.
        self.healthy.store(false, Ordering::Release);
        self.metrics.healthy.set(0);
        for w in st.stop_waiters {
            let _ = w.send(match &res {
                Ok(()) => Ok(()),
                Err(_) => Err(AuditError::Unavailable),
            });
        }
        tracing::debug!(head_seq = self.head_seq, "audit writer stopped");
    }
}

type FlushReply = oneshot::Sender<Result<(), AuditError>>;

struct RunState {
    /// False once every handle is gone or a shutdown was asked for.
    open: bool,
    stop_waiters: Vec<FlushReply>,
}

/// After the lazy queue woke the writer: wait a little for more (or for a
/// record someone waits on, which ends the grace at once).
async fn grace(rx: &mut mpsc::Receiver<Msg>) -> Option<Option<Msg>> {
    tokio::select! {
        m = rx.recv() => Some(m),
        () = tokio::time::sleep(GRACE) => None,
    }
}

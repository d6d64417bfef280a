//! The audit writer: one dedicated OS thread that owns the segment file.
//!
//! Sessions run on per-core current-thread runtimes and must never block on
//! file I/O, so they only enqueue into a bounded channel. The writer thread
//! runs its own tiny current-thread runtime (for the channel and timers) and
//! does plain blocking file I/O.
//!
//! **Group commit.** Each loop iteration drains everything queued (up to
//! [`MAX_BATCH`]), assigns seq/prev/hash, writes the batch with one
//! `write_all`, fsyncs once (strict), then completes every waiter. While one
//! fsync runs, new submissions pile up and share the next one.
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

use super::config::{AuditConfig, AuditMetrics, Backpressure, Durability};
use super::record::{
    AuditRecord, AuditRecordInput, ChainHasher, RecordKind, Recovery, RecoveryReason,
};
use super::segment::{scan_tail, segment_file_name, sync_dir, Tail};
use super::AuditError;

/// Most records written (and fsynced) as one group.
pub const MAX_BATCH: usize = 1024;

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

type Reply = oneshot::Sender<Result<u64, AuditError>>;

enum Msg {
    Record {
        input: Box<AuditRecordInput>,
        /// `None` for `record_nowait`.
        reply: Option<Reply>,
    },
    Flush(oneshot::Sender<Result<(), AuditError>>),
    Shutdown(oneshot::Sender<Result<(), AuditError>>),
}

struct Shared {
    healthy: Arc<AtomicBool>,
    durable: DurableSeq,
    metrics: AuditMetrics,
    backpressure: Backpressure,
    durability: Durability,
}

/// The seq of the newest record known to be on disk *and fsynced*: one
/// atomic the writer stores once per fsync (not per record). The shipper
/// polls it so it never publishes a record a power loss could still take
/// back; reading it costs the statement path nothing.
#[derive(Clone, Debug, Default)]
pub struct DurableSeq(Arc<AtomicU64>);

impl DurableSeq {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, seq: u64) {
        self.0.store(seq, Ordering::Release);
    }
}

/// Cheap, cloneable handle to the audit writer.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("healthy", &self.is_healthy())
            .field("durability", &self.shared.durability)
            .finish()
    }
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
        let mut writer = Writer::new(&config, metrics.clone(), healthy.clone(), hooks);
        writer.durable = durable.clone();
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
            }),
        })
    }

    /// Submits a record and waits until it is durable (strict: fsynced;
    /// buffered: written). Returns its seq. `Unavailable` means the record is
    /// not in the chain and the statement must be refused if it touches
    /// tagged columns. Cancel-safe: dropping the future does not unqueue the
    /// record.
    pub async fn record(&self, input: AuditRecordInput) -> Result<u64, AuditError> {
        validate_input(&input)?;
        let (reply, done) = oneshot::channel();
        let msg = Msg::Record {
            input: Box::new(input),
            reply: Some(reply),
        };
        match self.shared.backpressure {
            Backpressure::Wait => self
                .tx
                .send(msg)
                .await
                .map_err(|_| AuditError::Unavailable)?,
            Backpressure::FailFast => self.try_enqueue(msg)?,
        }
        done.await.map_err(|_| AuditError::Unavailable)?
    }

    /// Enqueues a record and returns the receiver of its durability result,
    /// without waiting: callers submit several records, then await them all,
    /// so one group commit (one fsync) covers them.
    pub fn submit(
        &self,
        input: AuditRecordInput,
    ) -> Result<oneshot::Receiver<Result<u64, AuditError>>, AuditError> {
        validate_input(&input)?;
        if !self.is_healthy() {
            return Err(AuditError::Unavailable);
        }
        let (reply, done) = oneshot::channel();
        self.try_enqueue(Msg::Record {
            input: Box::new(input),
            reply: Some(reply),
        })?;
        Ok(done)
    }

    /// Enqueues a record, waiting for room in the queue but not for the
    /// write: buffered durability's path. A full queue slows the session
    /// down (backpressure) instead of losing the record.
    pub async fn record_queued(&self, input: AuditRecordInput) -> Result<(), AuditError> {
        validate_input(&input)?;
        if !self.is_healthy() {
            return Err(AuditError::Unavailable);
        }
        self.tx
            .send(Msg::Record {
                input: Box::new(input),
                reply: None,
            })
            .await
            .map_err(|_| AuditError::Unavailable)
    }

    /// Enqueues a record without waiting (never blocks). Fails fast with
    /// `Unavailable` while the writer is unhealthy and `Overloaded` when the
    /// queue is full, whatever the backpressure policy. A record that fails
    /// after being queued is counted in `pgveil_audit_records_lost_total`.
    pub fn record_nowait(&self, input: AuditRecordInput) -> Result<(), AuditError> {
        validate_input(&input)?;
        if !self.is_healthy() {
            return Err(AuditError::Unavailable);
        }
        self.try_enqueue(Msg::Record {
            input: Box::new(input),
            reply: None,
        })
    }

    fn try_enqueue(&self, msg: Msg) -> Result<(), AuditError> {
        self.tx.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                self.shared.metrics.overloaded.inc();
                AuditError::Overloaded
            }
            mpsc::error::TrySendError::Closed(_) => AuditError::Unavailable,
        })
    }

    /// False between a write fault and the successful recovery.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    pub fn durability(&self) -> Durability {
        self.shared.durability
    }

    /// Handle on the newest fsynced seq (for the shipper).
    pub fn durable_seq(&self) -> DurableSeq {
        self.shared.durable.clone()
    }

    /// Counts a statement refused because the audit was unavailable.
    pub fn note_refused(&self) {
        self.shared.metrics.refused.inc();
    }

    pub fn metrics(&self) -> &AuditMetrics {
        &self.shared.metrics
    }

    /// Writes everything queued before this call and fsyncs it.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Flush(tx))
            .await
            .map_err(|_| AuditError::Unavailable)?;
        rx.await.map_err(|_| AuditError::Unavailable)?
    }

    /// Writes and fsyncs everything queued, then stops the writer; later
    /// submissions from any clone fail with `Unavailable`.
    pub async fn shutdown(&self) -> Result<(), AuditError> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(tx)).await.is_err() {
            return Ok(()); // already stopped
        }
        rx.await.map_err(|_| AuditError::Unavailable)?
    }
}

fn validate_input(input: &AuditRecordInput) -> Result<(), AuditError> {
    if input.kind == RecordKind::Recovery {
        return Err(AuditError::InvalidRecord(
            "recovery records are written by the writer only",
        ));
    }
    if let Some(s) = &input.subjects {
        s.check().map_err(AuditError::InvalidRecord)?;
    }
    Ok(())
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
        for p in batch {
            match p.reply {
                Some(r) => {
                    let _ = r.send(Err(AuditError::Unavailable));
                }
                None => self.metrics.records_lost.inc(),
            }
        }
    }

    /// Writes a group of records (fsyncing in strict mode or when forced) and
    /// completes their submitters.
    fn append(&mut self, batch: Vec<Pending>, force_sync: bool) {
        if batch.is_empty() {
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
        let mut done = Vec::with_capacity(batch.len());
        for p in batch {
            let mut rec = AuditRecord::from_input(*p.input, seq + 1, prev.clone());
            match rec.seal(&self.hasher) {
                Ok(line) => {
                    seq += 1;
                    prev = rec.hash;
                    buf.extend_from_slice(&line);
                    buf.push(b'\n');
                    done.push((seq, p.reply));
                }
                Err(e) => {
                    // Cannot happen for this struct; fail only this record.
                    tracing::error!(error = %e, "audit record could not be encoded");
                    if let Some(r) = p.reply {
                        let _ = r.send(Err(AuditError::InvalidRecord("unencodable")));
                    }
                }
            }
        }
        if let Err(e) = self.write(&buf) {
            self.fault("write", &e);
            return self.fail_done(done);
        }
        self.written_seq = seq;
        if force_sync || self.durability == Durability::Strict {
            if let Err(e) = self.sync() {
                self.fault("fsync", &e);
                return self.fail_done(done);
            }
        }
        let n = done.len() as u64;
        self.set_head(seq, prev);
        self.metrics.records_written.inc_by(n);
        self.emit_stdout(&buf);
        for (seq, reply) in done {
            if let Some(r) = reply {
                let _ = r.send(Ok(seq));
            }
        }
    }

    fn fail_done(&self, done: Vec<(u64, Option<Reply>)>) {
        for (_, reply) in done {
            match reply {
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

    /// Periodic duties: buffered fsync, age rotation, fault recovery.
    fn on_timer(&mut self) {
        let now = Instant::now();
        if self.seg.is_none() {
            if now >= self.next_retry {
                self.ensure_open();
            }
            return;
        }
        if let Durability::Buffered { interval } = self.durability {
            if self.dirty && now >= self.last_sync + interval {
                if let Err(e) = self.sync() {
                    return self.fault("fsync", &e);
                }
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
                if let Durability::Buffered { interval } = self.durability {
                    if self.dirty {
                        d = d.min(self.last_sync + interval);
                    }
                }
                if s.bytes > 0 {
                    d = d.min(s.opened + self.max_age);
                }
            }
        }
        d.max(now)
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        // However the thread ends (shutdown, last handle dropped, or a bug
        // that panics), handles must stop reporting a healthy audit.
        let _down = MarkDown(self.healthy.clone(), self.metrics.healthy.clone());
        let mut stop_waiters = Vec::new();
        loop {
            let deadline = tokio::time::Instant::from_std(self.next_deadline());
            let first = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => {
                    self.on_timer();
                    continue;
                }
                Ok(None) => break,
                Ok(Some(m)) => m,
            };
            let mut batch = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Record { input, reply } => batch.push(Pending { input, reply }),
                    Msg::Flush(tx) => {
                        self.append(std::mem::take(&mut batch), true);
                        let _ = tx.send(self.flush_now());
                    }
                    Msg::Shutdown(tx) => {
                        // Stop accepting; what is already queued still gets
                        // written before the loop ends.
                        rx.close();
                        stop_waiters.push(tx);
                    }
                }
                if batch.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.append(batch, false);
            self.on_timer();
        }
        let res = if self.seg.is_some() || !stop_waiters.is_empty() {
            self.flush_now()
        } else {
            Ok(())
        };
        // Stopped: say so before anyone is told shutdown completed.
        self.healthy.store(false, Ordering::Release);
        self.metrics.healthy.set(0);
        for w in stop_waiters {
            let _ = w.send(match &res {
                Ok(()) => Ok(()),
                Err(_) => Err(AuditError::Unavailable),
            });
        }
        tracing::debug!(head_seq = self.head_seq, "audit writer stopped");
    }
}

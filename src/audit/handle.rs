//! The sessions' side of the audit writer: the cheap, cloneable [`Audit`]
//! handle, the [`Intent`] ticket of a strict statement, and the two queues
//! records travel by.
//!
//! **Two queues.** A record someone waits for (an intent, `record()`) goes
//! through the bounded channel, which wakes the writer at once. Every other
//! record (buffered durability, untagged statements, outcomes, auth) goes to
//! the *lazy* queue: a mutex-protected vector the writer drains with each
//! group commit, and which wakes an idle writer at most once per grace
//! period. A cross-CPU wake-up costs tens of microseconds on a small
//! machine; paying one per statement was most of the buffered mode's cost.
//!
//! **Intents.** In strict mode a statement's record is written *before* the
//! statement is forwarded, with outcome `pending`, and fsynced while the
//! database executes it. Its results are released once both are done; the
//! backend checks the [`Intent`] without waiting (`try_recv`), so when the
//! fsync finished first nothing is handed between threads on the way back.
//! The outcome (rows, duration, SQLSTATE) rides in the lazy queue and lands
//! in an `outcomes` record naming the intent's seq.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot, Notify};

use super::config::{AuditMetrics, Backpressure, Durability};
use super::record::{AuditRecordInput, RecordKind, OUTCOME_PENDING};
use super::AuditError;

pub(super) type Reply = oneshot::Sender<Result<u64, AuditError>>;

/// What the channel carries.
pub(super) enum Msg {
    Record {
        input: Box<AuditRecordInput>,
        /// `None` when nobody waits.
        reply: Option<Reply>,
        /// Where the writer publishes the seq it gives the record (intents).
        seq: Option<Arc<AtomicU64>>,
    },
    Flush(oneshot::Sender<Result<(), AuditError>>),
    Shutdown(oneshot::Sender<Result<(), AuditError>>),
}

/// Intent seq cell: not yet written.
pub(super) const SEQ_UNASSIGNED: u64 = 0;
/// Intent seq cell: the intent is not in the chain (its write failed).
pub(super) const SEQ_FAILED: u64 = u64::MAX;

/// The outcome of an intent, waiting for the next group commit.
pub(super) struct OutcomeMsg {
    pub of: Arc<AtomicU64>,
    pub rows: u64,
    pub duration_us: u64,
    pub outcome: String,
}

/// Most outcomes queued at once; beyond it they are counted lost. Each
/// belongs to a statement whose intent passed the bounded channel, so this
/// is only reached when the writer has stopped draining.
const MAX_OUTCOMES: usize = 1 << 20;

#[derive(Default)]
pub(super) struct LazyQ {
    // Records arrive boxed (the intent channel carries them boxed) and move
    // on boxed to the writer: unboxing here would copy each one twice.
    #[allow(clippy::vec_box)]
    pub records: Vec<Box<AuditRecordInput>>,
    pub outcomes: Vec<OutcomeMsg>,
}

/// The lazy queue and the writer's parking flag.
pub(super) struct Lazy {
    q: Mutex<LazyQ>,
    /// The writer is idle with no deadline soon: the next lazy record must
    /// wake it (once; it then waits a grace period to gather more).
    pub parked: AtomicBool,
    pub notify: Notify,
    cap: usize,
}

impl Lazy {
    pub fn new(cap: usize) -> Self {
        Lazy {
            q: Mutex::new(LazyQ::default()),
            parked: AtomicBool::new(false),
            notify: Notify::new(),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LazyQ> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push_record(&self, r: Box<AuditRecordInput>) -> Result<(), Box<AuditRecordInput>> {
        {
            let mut q = self.lock();
            if q.records.len() >= self.cap {
                return Err(r);
            }
            q.records.push(r);
        }
        self.wake();
        Ok(())
    }

    fn push_outcome(&self, o: OutcomeMsg) -> bool {
        {
            let mut q = self.lock();
            if q.outcomes.len() >= MAX_OUTCOMES {
                return false;
            }
            q.outcomes.push(o);
        }
        self.wake();
        true
    }

    fn wake(&self) {
        if self.parked.swap(false, Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }

    /// Moves everything queued into `into`.
    pub fn take(&self, into: &mut LazyQ) {
        let mut q = self.lock();
        into.records.append(&mut q.records);
        into.outcomes.append(&mut q.outcomes);
    }

    pub fn is_empty(&self) -> bool {
        let q = self.lock();
        q.records.is_empty() && q.outcomes.is_empty()
    }

    fn len(&self) -> usize {
        let q = self.lock();
        q.records.len() + q.outcomes.len()
    }
}

pub(super) struct Shared {
    pub healthy: Arc<AtomicBool>,
    pub durable: DurableSeq,
    pub metrics: AuditMetrics,
    pub backpressure: Backpressure,
    pub durability: Durability,
    pub lazy: Arc<Lazy>,
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

    pub(super) fn set(&self, seq: u64) {
        self.0.store(seq, Ordering::Release);
    }
}

/// A strict statement's record, submitted before the statement was
/// forwarded. Its results may be released once [`Intent::check`] says
/// `Durable` (or the receiver it hands out resolves `Ok`).
pub struct Intent {
    rx: Option<oneshot::Receiver<Result<u64, AuditError>>>,
    seq: Arc<AtomicU64>,
    failed: bool,
}

impl fmt::Debug for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Intent")
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .field("waiting", &self.rx.is_some())
            .field("failed", &self.failed)
            .finish()
    }
}

/// Where an intent stands when its statement's results arrive.
pub enum IntentCheck {
    /// Fsynced (or already handed out to be waited for).
    Durable,
    /// Not yet: await this before releasing anything after it.
    Wait(oneshot::Receiver<Result<u64, AuditError>>),
    /// Not in the chain: no result of the statement may be released.
    Failed,
}

impl Intent {
    /// An intent that could not be submitted: its statement's results must
    /// be withheld.
    pub fn failed() -> Intent {
        Intent {
            rx: None,
            seq: Arc::new(AtomicU64::new(SEQ_FAILED)),
            failed: true,
        }
    }

    /// Non-blocking: nothing crosses threads when the fsync finished first.
    pub fn check(&mut self) -> IntentCheck {
        if self.failed {
            return IntentCheck::Failed;
        }
        let Some(mut rx) = self.rx.take() else {
            return IntentCheck::Durable;
        };
        match rx.try_recv() {
            Ok(Ok(_)) => IntentCheck::Durable,
            Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => {
                self.failed = true;
                IntentCheck::Failed
            }
            Err(oneshot::error::TryRecvError::Empty) => IntentCheck::Wait(rx),
        }
    }
}

/// Cheap, cloneable handle to the audit writer.
#[derive(Clone)]
pub struct Audit {
    pub(super) tx: mpsc::Sender<Msg>,
    pub(super) shared: Arc<Shared>,
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
            seq: None,
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
            seq: None,
        })?;
        Ok(done)
    }

    /// Submits a statement's record before the statement runs (its outcome
    /// is set to `pending`; [`Audit::outcome`] completes it). Never waits.
    pub fn intent(&self, mut input: AuditRecordInput) -> Result<Intent, AuditError> {
        validate_input(&input)?;
        if !self.is_healthy() {
            return Err(AuditError::Unavailable);
        }
        input.outcome = OUTCOME_PENDING.to_string();
        input.rows = 0;
        input.duration_us = 0;
        let (reply, rx) = oneshot::channel();
        let seq = Arc::new(AtomicU64::new(SEQ_UNASSIGNED));
        self.try_enqueue(Msg::Record {
            input: Box::new(input),
            reply: Some(reply),
            seq: Some(seq.clone()),
        })?;
        Ok(Intent {
            rx: Some(rx),
            seq,
            failed: false,
        })
    }

    /// Queues the outcome of an intent for the next group commit. Never
    /// waits and never wakes a busy writer.
    pub fn outcome(&self, intent: &Intent, rows: u64, duration_us: u64, outcome: &str) {
        if intent.failed {
            return;
        }
        let queued = self.shared.lazy.push_outcome(OutcomeMsg {
            of: intent.seq.clone(),
            rows,
            duration_us,
            outcome: outcome.to_string(),
        });
        if !queued {
            self.shared.metrics.records_lost.inc();
        }
    }

    /// Queues a record nobody waits for, waiting only when the queue is
    /// full (backpressure) instead of losing the record.
    pub async fn record_queued(&self, input: AuditRecordInput) -> Result<(), AuditError> {
        validate_input(&input)?;
        if !self.is_healthy() {
            return Err(AuditError::Unavailable);
        }
        let Err(input) = self.shared.lazy.push_record(Box::new(input)) else {
            return Ok(());
        };
        self.tx
            .send(Msg::Record {
                input,
                reply: None,
                seq: None,
            })
            .await
            .map_err(|_| AuditError::Unavailable)
    }

    /// Queues a record without waiting (never blocks). Fails fast with
    /// `Unavailable` while the writer is unhealthy and `Overloaded` when the
    /// queues are full, whatever the backpressure policy. A record that fails
    /// after being queued is counted in `pgveil_audit_records_lost_total`.
    pub fn record_nowait(&self, input: AuditRecordInput) -> Result<(), AuditError> {
        validate_input(&input)?;
        if !self.is_healthy() {
            return Err(AuditError::Unavailable);
        }
        let Err(input) = self.shared.lazy.push_record(Box::new(input)) else {
            return Ok(());
        };
        self.try_enqueue(Msg::Record {
            input,
            reply: None,
            seq: None,
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

    /// Whether statements on tagged tables write their record before they
    /// run (strict durability).
    pub fn uses_intents(&self) -> bool {
        matches!(self.shared.durability, Durability::Strict)
    }

    /// Records and outcomes submitted but not yet taken by the writer: the
    /// bounded channel's occupancy plus the lazy queue. Read at scrape time
    /// and by the admin console, never on a statement's path.
    pub fn queue_depth(&self) -> usize {
        let channel = self.tx.max_capacity() - self.tx.capacity();
        channel + self.shared.lazy.len()
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
    if matches!(input.kind, RecordKind::Recovery | RecordKind::Outcomes) {
        return Err(AuditError::InvalidRecord(
            "recovery and outcomes records are written by the writer only",
        ));
    }
    if let Some(s) = &input.subjects {
        s.check().map_err(AuditError::InvalidRecord)?;
    }
    Ok(())
}

//! What a session remembers between messages: the replies the server owes
//! ([`Expect`], in order), the prepared statements and portals it knows
//! ([`Tracker`]), the COPY in flight and the catalog.
//!
//! The frontend pushes one [`Expect`] per client message that the server
//! answers, in order; the backend pops them as the answers arrive. After an
//! error the server skips extended-protocol messages until Sync, and so does
//! the queue. State changes for statements and portals are made when the
//! client's message passes (optimistically) but readers hold `Arc`s, so a
//! later Parse reusing a name cannot change what an earlier, still-running
//! Execute sees.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::audit::StmtAudit;
use super::catalog::{Catalog, CatalogReply, SessionCatalog};
use super::copy::{CopyIn, CopyStream, Origin};
use super::rows::RowPlan;
use super::shapes::{RowPlanCache, ShapeCache};
use crate::audit::Intent;
use crate::sql::{ParamPlan, Refusal, StatementPlan};

/// Everything both directions of one session share, behind one lock.
#[derive(Debug)]
pub struct State {
    pub expect: VecDeque<Expect>,
    /// An ErrorResponse arrived for the statement at the head.
    pub head_failed: bool,
    /// Nothing in flight and the last ReadyForQuery said idle.
    pub idle: bool,
    pub tracker: Tracker,
    /// A COPY TO in flight whose rows pgveil transforms (backend side).
    pub copy: Option<CopyStream>,
    /// The client's COPY FROM STDIN data (frontend side; see [`CopyIn`]).
    pub copy_in: CopyIn,
    /// Analysed simple-protocol statement shapes (see [`ShapeCache`]).
    pub shapes: ShapeCache,
    /// Planned RowDescriptions of simple-protocol results.
    pub row_plans: RowPlanCache,
    /// Roles and schema snapshot; replaced when it goes stale.
    pub catalog: SessionCatalog,
    /// Transaction status of the last ReadyForQuery.
    pub txn_status: u8,
    /// DDL went through this session; bump the epoch when it settles.
    pub ddl_pending: bool,
    /// Client messages seen so far: each one's position in the stream.
    pub seq: u64,
    /// The server is in copy-in (it sent CopyInResponse), where it ignores
    /// Sync and Flush.
    pub copy_in_open: bool,
    /// Positions of the client's COPY messages that matter for that rule:
    /// the first CopyData of a run, and every CopyDone / CopyFail.
    pub copy_marks: VecDeque<(u64, u8)>,
    /// This session's entry in the admin registry.
    pub slot: Option<Arc<crate::admin::ClientSlot>>,
    /// Executes that completed before their client sent a Sync, in order:
    /// their records wait for the next ReadyForQuery (see [`Unsynced`]).
    pub unsynced: Vec<Unsynced>,
}

/// An Execute that completed while no Sync was on its way (Execute +
/// Flush). Its outcome is not settled: if the client leaves now, the server
/// rolls its implicit transaction back, so the record, written at the next
/// ReadyForQuery or when the session ends, says which happened.
#[derive(Debug)]
pub struct Unsynced {
    pub portal: Option<Arc<Portal>>,
    pub intent: Option<Intent>,
    pub outcome: &'static str,
    pub rows: u64,
    pub duration_us: u64,
}

impl State {
    pub fn new(catalog: SessionCatalog) -> Self {
        State {
            expect: VecDeque::new(),
            head_failed: false,
            idle: true,
            tracker: Tracker::default(),
            copy: None,
            copy_in: CopyIn::default(),
            shapes: ShapeCache::default(),
            row_plans: RowPlanCache::default(),
            catalog,
            txn_status: b'I',
            ddl_pending: false,
            seq: 0,
            copy_in_open: false,
            copy_marks: VecDeque::new(),
            slot: None,
            unsynced: Vec::new(),
        }
    }

    /// A ReadyForQuery ended `completed` statements: the admin registry
    /// learns it from this session's own slot (atomics; no lock shared
    /// with any other session).
    pub fn report_ready(
        &self,
        status: u8,
        completed: u64,
        policy: &crate::snapshot::SnapshotStore,
    ) {
        if let Some(s) = &self.slot {
            let p = policy.load();
            s.ready(status, completed, !self.expect.is_empty(), &p.rules.version);
        }
    }
}

/// A prepared statement as this session knows it.
#[derive(Debug, Default)]
pub struct Stmt {
    /// None for statements that touch nothing tagged.
    pub plan: Option<Arc<StatementPlan>>,
    /// Learned from the (possibly injected) Describe.
    pub row: Mutex<Option<Arc<RowPlan>>>,
    /// Record template for each execution (when audit is on).
    pub audit: Option<StmtAudit>,
    /// The client's text and the rules version it was analysed under: a
    /// reload re-checks the statement at its next Bind.
    pub query: String,
    pub version: String,
    /// Literal-free shape of the SQL the server prepared.
    pub forwarded_shape: String,
    /// Parameter types the client declared in its Parse (0 = unspecified);
    /// ParameterDescription repeats them, as PostgreSQL does.
    pub declared: Vec<u32>,
    /// The catalog generation it was judged under.
    pub generation: u64,
    /// What each successful execution does to named objects.
    pub effect: Effect,
}

/// What a statement does to the session's named objects, applied only when
/// the server confirms it (CommandComplete): a statement the server refused
/// or rolled back changes nothing pgveil believes.
#[derive(Debug, Clone, Default)]
pub enum Effect {
    #[default]
    None,
    /// SQL `PREPARE name`, with the parameter plans `EXECUTE` needs and the
    /// record template its executions are audited with.
    Prepare(String, Vec<ParamPlan>, Option<Box<StmtAudit>>),
    /// `DEALLOCATE name`, or `DEALLOCATE ALL` / `DISCARD ALL` (None).
    Deallocate(Option<String>),
    Declare {
        name: String,
        hold: bool,
    },
    /// `CLOSE name`, or `CLOSE ALL` (None).
    Close(Option<String>),
}

impl Effect {
    /// The effect of one analysed (or forwarded) statement.
    pub fn of(text: &str, plan: Option<&StatementPlan>) -> Effect {
        if let Some(p) = plan {
            if let Some(sp) = &p.sql_prepare {
                return Effect::Prepare(sp.name.clone(), sp.params.clone(), None);
            }
            if let Some(d) = &p.sql_deallocate {
                return Effect::Deallocate(d.clone());
            }
        }
        match crate::sql::object_op(text) {
            Some(crate::sql::ObjectOp::Declare { name, hold }) => Effect::Declare { name, hold },
            Some(crate::sql::ObjectOp::Close(n)) => Effect::Close(n),
            _ => Effect::None,
        }
    }
}

#[derive(Debug)]
pub struct Portal {
    pub stmt: Arc<Stmt>,
    pub formats: Vec<i16>,
    /// The catalog generation it was bound under.
    pub generation: u64,
}

/// One reply the server owes.
#[derive(Debug)]
pub enum Expect {
    Query {
        start: Instant,
        plans: Option<Arc<Vec<StatementPlan>>>,
        idx: usize,
        refusal: Option<Refusal>,
        /// One record template per statement (empty when audit is off).
        audit: Vec<StmtAudit>,
        /// When the statement at `idx` started.
        stmt_start: Instant,
        /// Per statement, what it does to named objects (empty: nothing).
        effects: Vec<Effect>,
        /// Per statement, its record written before it ran (strict audit of
        /// a tagged statement); empty when there are none.
        intents: Vec<Option<Intent>>,
        /// Position of the Query in the client's stream (see [`Origin`]).
        seq: u64,
    },
    FunctionCall {
        start: Instant,
    },
    Parse {
        refusal: Option<Refusal>,
        audit: Option<StmtAudit>,
        /// The statement this Parse prepares, installed on ParseComplete.
        install: Option<(String, Arc<Stmt>)>,
    },
    Bind,
    DescribeStmt {
        stmt: Arc<Stmt>,
        internal: bool,
        seen_params: bool,
    },
    DescribePortal,
    Execute {
        portal: Option<Arc<Portal>>,
        start: Instant,
        /// Its record written before it ran (strict audit, tagged).
        intent: Option<Intent>,
        /// Position of the Execute in the client's stream (see [`Origin`]).
        seq: u64,
    },
    Close,
    Sync {
        start: Instant,
        executes: u32,
        /// Position of the Sync in the client's stream (see [`State::seq`]).
        seq: u64,
    },
    /// pgveil's lookup of a refused FunctionCall's function name, sent
    /// just before the call's stand-in; its replies never reach the client.
    FunctionName {
        oid: u32,
        reply: super::audit::NameLookup,
    },
    /// pgveil's own catalog query; its replies never reach the client.
    Internal {
        tx: Option<tokio::sync::oneshot::Sender<Option<Catalog>>>,
        reply: CatalogReply,
        login: String,
    },
}

impl Expect {
    /// Ends at ReadyForQuery.
    pub fn is_sync_point(&self) -> bool {
        matches!(
            self,
            Expect::Query { .. }
                | Expect::Sync { .. }
                | Expect::FunctionCall { .. }
                | Expect::FunctionName { .. }
                | Expect::Internal { .. }
        )
    }

    /// The reply to a simple Query (or to its refusal's stand-in).
    pub fn query(
        start: Instant,
        plans: Option<Arc<Vec<StatementPlan>>>,
        refusal: Option<Refusal>,
        audit: Vec<StmtAudit>,
    ) -> Expect {
        Expect::Query {
            start,
            plans,
            idx: 0,
            refusal,
            audit,
            stmt_start: start,
            effects: Vec::new(),
            intents: Vec::new(),
            seq: 0,
        }
    }

    /// The statement whose replies are arriving, for COPY attribution.
    pub fn origin(&self) -> Option<Origin> {
        match self {
            Expect::Query { seq, idx, .. } => Some((*seq, *idx)),
            Expect::Execute { seq, .. } => Some((*seq, 0)),
            _ => None,
        }
    }
}

/// The prepared statements, portals and cursors of a session, by name.
#[derive(Debug, Default)]
pub struct Tracker {
    pub stmts: HashMap<String, Arc<Stmt>>,
    /// Parsed but not yet confirmed by the server (ParseComplete): Bind and
    /// Describe pipelined behind the Parse use these.
    pub pending: HashMap<String, Arc<Stmt>>,
    pub portals: HashMap<String, Arc<Portal>>,
    /// Current result shape of the running Query statement / Execute.
    pub row: Option<(Arc<RowPlan>, Vec<i16>)>,
    /// Parameter plans of every prepared statement by name, SQL `PREPARE`
    /// and protocol Parse alike: PostgreSQL has one namespace for both, and
    /// SQL `EXECUTE` reaches either.
    pub sql_prepared: HashMap<String, Vec<ParamPlan>>,
    /// The catalog generation each prepared statement was judged under.
    pub prepared_gen: HashMap<String, u64>,
    /// What executing each prepared statement reveals, for the records of
    /// SQL `EXECUTE name` (whose own text names no table).
    pub prepared_audit: HashMap<String, StmtAudit>,
    /// What each cursor's query reveals, by cursor name, for the records of
    /// `FETCH … FROM name` (whose own text names no table). Set when the
    /// DECLARE is sent: a later DECLARE of the name replaces it.
    pub cursor_audit: HashMap<String, StmtAudit>,
    /// Open cursors: (generation declared under, WITH HOLD).
    pub cursors: HashMap<String, (u64, bool)>,
    /// A row transform failed mid-result: drop the rest of that result.
    pub suppress_until_complete: bool,
    /// That failure's SQLSTATE, for the statement's audit record.
    pub failed_code: Option<&'static str>,
    /// DataRows of the current result that reached the client.
    pub rows_sent: u64,
}

impl Tracker {
    /// The statement a Bind or Describe names.
    pub fn stmt(&self, name: &str) -> Option<&Arc<Stmt>> {
        self.pending.get(name).or_else(|| self.stmts.get(name))
    }

    /// Applies a confirmed statement's effect, under catalog generation `gen`.
    pub fn apply(&mut self, effect: &Effect, gen: u64) {
        match effect {
            Effect::None => {}
            Effect::Prepare(name, params, audit) => {
                self.sql_prepared.insert(name.clone(), params.clone());
                self.prepared_gen.insert(name.clone(), gen);
                match audit {
                    Some(a) => self.prepared_audit.insert(name.clone(), (**a).clone()),
                    None => self.prepared_audit.remove(name),
                };
            }
            Effect::Deallocate(Some(name)) => {
                self.prepared_audit.remove(name);
                self.sql_prepared.remove(name);
                self.prepared_gen.remove(name);
                self.stmts.remove(name);
            }
            Effect::Deallocate(None) => {
                self.prepared_audit.clear();
                self.sql_prepared.clear();
                self.prepared_gen.clear();
                self.stmts.retain(|n, _| n.is_empty());
            }
            Effect::Declare { name, hold } => {
                self.cursors.insert(name.clone(), (gen, *hold));
            }
            Effect::Close(Some(name)) => {
                self.cursors.remove(name);
            }
            Effect::Close(None) => self.cursors.clear(),
        }
    }

    /// A ParseComplete: the statement is prepared, by its name, for
    /// protocol Bind and SQL EXECUTE alike.
    pub fn install(&mut self, name: &str, stmt: &Arc<Stmt>) {
        if self.pending.get(name).is_some_and(|p| Arc::ptr_eq(p, stmt)) {
            self.pending.remove(name);
        }
        self.stmts.insert(name.to_string(), stmt.clone());
        if !name.is_empty() {
            let params = stmt
                .plan
                .as_ref()
                .map(|p| p.params.clone())
                .unwrap_or_default();
            self.sql_prepared.insert(name.to_string(), params);
            self.prepared_gen.insert(name.to_string(), stmt.generation);
            match &stmt.audit {
                Some(a) => self.prepared_audit.insert(name.to_string(), a.clone()),
                None => self.prepared_audit.remove(name),
            };
        }
    }

    /// A failed Parse: its statement never existed.
    pub fn forget_pending(&mut self, name: &str, stmt: &Arc<Stmt>) {
        if self.pending.get(name).is_some_and(|p| Arc::ptr_eq(p, stmt)) {
            self.pending.remove(name);
        }
    }

    /// The transaction ended: cursors without HOLD are gone.
    pub fn transaction_ended(&mut self) {
        self.cursors.retain(|_, (_, hold)| *hold);
    }

    /// Whether SQL that reaches the named object `op` must be refused: the
    /// rules or the session's roles changed since it was made (or, after
    /// such a change, pgveil does not know when it was made).
    pub fn stale_object(&self, op: &crate::sql::ObjectOp, gen: u64) -> bool {
        if gen == 0 {
            return false;
        }
        match op {
            crate::sql::ObjectOp::Execute(n) => self.prepared_gen.get(n) != Some(&gen),
            crate::sql::ObjectOp::Fetch(n) => self.cursors.get(n).map(|c| c.0) != Some(gen),
            _ => false,
        }
    }
}

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
use super::copy::CopyStream;
use super::rows::RowPlan;
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
    /// A COPY in flight whose rows pgveil transforms.
    pub copy: Option<CopyStream>,
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
}

impl State {
    pub fn new(catalog: SessionCatalog) -> Self {
        State {
            expect: VecDeque::new(),
            head_failed: false,
            idle: true,
            tracker: Tracker::default(),
            copy: None,
            catalog,
            txn_status: b'I',
            ddl_pending: false,
            seq: 0,
            copy_in_open: false,
            copy_marks: VecDeque::new(),
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
}

#[derive(Debug)]
pub struct Portal {
    pub stmt: Arc<Stmt>,
    pub formats: Vec<i16>,
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
    },
    FunctionCall {
        start: Instant,
    },
    Parse {
        refusal: Option<Refusal>,
        audit: Option<StmtAudit>,
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
    },
    Close,
    Sync {
        start: Instant,
        executes: u32,
        /// Position of the Sync in the client's stream (see [`State::seq`]).
        seq: u64,
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
        }
    }
}

/// The prepared statements and portals of a session, by name.
#[derive(Debug, Default)]
pub struct Tracker {
    pub stmts: HashMap<String, Arc<Stmt>>,
    pub portals: HashMap<String, Arc<Portal>>,
    /// Current result shape of the running Query statement / Execute.
    pub row: Option<(Arc<RowPlan>, Vec<i16>)>,
    pub sql_prepared: HashMap<String, Vec<ParamPlan>>,
    /// A row transform failed mid-result: drop the rest of that result.
    pub suppress_until_complete: bool,
}

impl Tracker {
    /// Follows SQL-level PREPARE / DEALLOCATE of a statement that passed.
    pub fn remember_sql_prepare(&mut self, p: &StatementPlan) {
        if let Some(sp) = &p.sql_prepare {
            self.sql_prepared.insert(sp.name.clone(), sp.params.clone());
        }
        match &p.sql_deallocate {
            Some(Some(n)) => {
                self.sql_prepared.remove(n);
            }
            Some(None) => self.sql_prepared.clear(),
            None => {}
        }
    }
}

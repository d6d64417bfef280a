//! The session's side of the audit stream: what each statement's record
//! says, built from the analysis (never from values), and the durability
//! each record needs before the statement's results may reach the client.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::audit::{
    AuditRecordInput, ColumnAction as AuditAction, RecordKind, StatementKind as AuditKind,
    TaggedColumn,
};
use crate::rules::{Access, TableName};
use crate::snapshot::Snapshot;
use crate::sql::{self, ColumnAction, StatementKind, StatementPlan};

/// Facts about the session that policy and audit need later.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub id: u64,
    pub peer: Option<SocketAddr>,
    pub user: String,
    pub database: String,
    pub application_name: String,
}

/// What one statement's audit record will say, minus its outcome.
#[derive(Debug, Clone)]
pub struct StmtAudit {
    pub kind: AuditKind,
    pub fingerprint: String,
    pub tables: Vec<String>,
    pub columns: Vec<TaggedColumn>,
    /// Touches tagged tables: needs strict durability and a healthy audit.
    pub tagged: bool,
    /// Refused by pgveil with this SQLSTATE.
    pub refused: Option<&'static str>,
}

fn kind_of(k: StatementKind) -> AuditKind {
    match k {
        StatementKind::Select => AuditKind::Select,
        StatementKind::Insert => AuditKind::Insert,
        StatementKind::Update => AuditKind::Update,
        StatementKind::Delete => AuditKind::Delete,
        StatementKind::Copy => AuditKind::Copy,
        StatementKind::Ddl => AuditKind::Ddl,
        StatementKind::Other => AuditKind::Other,
    }
}

fn split_column(q: &str) -> Option<(TableName, &str)> {
    let mut it = q.rsplitn(3, '.');
    let col = it.next()?;
    let table = it.next()?;
    let schema = it.next()?;
    Some((
        TableName {
            schema: schema.to_string(),
            name: table.to_string(),
        },
        col,
    ))
}

/// Whether `word` occurs in the (lower-case, literal-free) fingerprint as
/// an identifier.
fn names(fingerprint: &str, word: &str) -> bool {
    fingerprint
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .any(|w| w == word)
}

/// The record template of an analysed statement.
pub fn from_plan(plan: &StatementPlan, policy: &Snapshot, roles: &[String]) -> StmtAudit {
    let fp = plan.fingerprint.to_lowercase();
    let star = fp.contains('*');
    let columns = plan
        .columns
        .iter()
        // A masked derived table serves every protected column of its table;
        // the record names the ones the statement refers to (or all, for `*`).
        .filter(|c| {
            !matches!(c.action, ColumnAction::Masked | ColumnAction::Null)
                || star
                || c.column
                    .rsplit('.')
                    .next()
                    .is_some_and(|col| names(&fp, col))
        })
        .map(|c| {
            let (action, mask) = match c.action {
                ColumnAction::Plaintext => (AuditAction::Plaintext, None),
                ColumnAction::Null => (AuditAction::Null, None),
                ColumnAction::Denied => (AuditAction::Denied, None),
                ColumnAction::EncryptedWrite => (AuditAction::EncryptedWrite, None),
                ColumnAction::Match => (AuditAction::Matched, None),
                ColumnAction::Masked => {
                    let mask = split_column(&c.column)
                        .and_then(|(t, col)| policy.rules.column(&t, col))
                        .map(|r| crate::policy::access(r, roles))
                        .and_then(|a| match a {
                            Access::Mask(m) => Some(m.to_string()),
                            _ => None,
                        });
                    (AuditAction::Masked, mask)
                }
            };
            TaggedColumn {
                column: c.column.clone(),
                class: c.class.clone(),
                action,
                mask,
            }
        })
        .collect();
    StmtAudit {
        kind: kind_of(plan.kind),
        fingerprint: plan.fingerprint.clone(),
        tables: plan.tables.iter().map(|t| t.to_string()).collect(),
        tagged: !plan.tables.is_empty() || !plan.columns.is_empty(),
        columns,
        refused: None,
    }
}

/// Record templates for a Query pgveil forwards without analysis, from
/// its statements as split once by the frontend. A forwarded DO block runs
/// code pgveil does not analyse: its record names the tagged tables its
/// body names (see [`sql::do_block`]), and it is then a tagged statement,
/// durable before it runs under strict audit like any other.
pub fn passthrough(chunks: &[&str], policy: &Snapshot) -> Vec<StmtAudit> {
    chunks
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (fingerprint, tables) = match do_names(s, policy) {
                Some((fp, names)) => {
                    let (tables, _) = named_by(policy, &fp, &names);
                    (fp, tables)
                }
                None => (sql::fingerprint(s), Vec::new()),
            };
            StmtAudit {
                kind: kind_of(sql::statement_kind(s)),
                fingerprint,
                tagged: !tables.is_empty(),
                tables,
                columns: Vec::new(),
                refused: None,
            }
        })
        .collect()
}

/// A DO block's fingerprint and the tagged table and column names its body
/// holds; None for any other statement.
fn do_names(sql_text: &str, policy: &Snapshot) -> Option<(String, BTreeSet<String>)> {
    // Cheap (one token) before anything is built: most statements are not DO.
    if !sql::is_do(sql_text) {
        return None;
    }
    let tagged_names: HashSet<&str> = policy
        .rules
        .columns()
        .iter()
        .flat_map(|r| [r.table.name.as_str(), r.name.as_str()])
        .collect();
    sql::do_block(sql_text, &|w| tagged_names.contains(w)).map(|b| (b.fingerprint, b.names))
}

/// The tagged tables, and their columns (as denied), that a fingerprint or
/// a DO body's `extra` names.
fn named_by(
    policy: &Snapshot,
    fingerprint: &str,
    extra: &BTreeSet<String>,
) -> (Vec<String>, Vec<TaggedColumn>) {
    let fp = fingerprint.to_lowercase();
    let named = |w: &str| names(&fp, w) || extra.contains(w);
    let mut tables: Vec<String> = Vec::new();
    let mut columns = Vec::new();
    for r in policy.rules.columns() {
        if !named(&r.table.name) {
            continue;
        }
        let t = r.table.to_string();
        if !tables.contains(&t) {
            tables.push(t);
        }
        if named(&r.name) || fp.contains('*') {
            columns.push(TaggedColumn {
                column: r.qualified(),
                class: r.class.clone(),
                action: AuditAction::Denied,
                mask: None,
            });
        }
    }
    (tables, columns)
}

/// The record of a refused statement. The analysis stopped at the refusal,
/// so the tables and tagged columns are those the text names: each such
/// column is recorded as denied. A DO block's body is text too (a literal):
/// its fingerprint and the names it holds, dynamic SQL included, are read
/// by [`sql::do_block`].
pub fn refused(sql_text: &str, sqlstate: &'static str, policy: &Snapshot) -> StmtAudit {
    let (fingerprint, extra) =
        do_names(sql_text, policy).unwrap_or_else(|| (sql::fingerprint(sql_text), BTreeSet::new()));
    let (tables, columns) = named_by(policy, &fingerprint, &extra);
    StmtAudit {
        kind: kind_of(sql::statement_kind(sql_text)),
        fingerprint,
        tables,
        columns,
        tagged: true,
        refused: Some(sqlstate),
    }
}

/// The record of a refused FunctionCall message: the function's OID (the
/// message carries nothing else that names it). Its name follows from
/// [`NameLookup`] when the server can tell it (see [`name_function`]).
pub fn function_call(oid: u32, sqlstate: &'static str) -> StmtAudit {
    StmtAudit {
        kind: AuditKind::Other,
        fingerprint: format!("functioncall oid={oid}"),
        tables: Vec::new(),
        columns: Vec::new(),
        tagged: true,
        refused: Some(sqlstate),
    }
}

/// Longest function name kept in a record (a signature can be long; the
/// record only needs to identify it).
const MAX_FUNCTION_NAME: usize = 256;

/// pgveil's own query for the signature of function `oid`, sent only when a
/// FunctionCall is refused (never in the hot path). Every name is
/// schema-qualified, so no object of the session's can stand in for them.
pub fn function_name_sql(oid: u32) -> String {
    format!("SELECT {oid}::pg_catalog.oid::pg_catalog.regprocedure::pg_catalog.text")
}

/// Adds the resolved name to a refused FunctionCall's record.
pub fn name_function(a: &mut StmtAudit, oid: u32, name: &str) {
    let mut name: String = name.chars().filter(|c| !c.is_control()).collect();
    if name.len() > MAX_FUNCTION_NAME {
        let mut cut = MAX_FUNCTION_NAME;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name.push('…');
    }
    a.fingerprint = format!("functioncall oid={oid} name={name}");
}

/// The replies to [`function_name_sql`], one backend frame at a time: the
/// one value, unless the query failed (an aborted transaction: the record
/// keeps the OID only).
#[derive(Debug, Default)]
pub struct NameLookup {
    value: Option<String>,
    failed: bool,
}

impl NameLookup {
    /// Takes one frame; true once the ReadyForQuery arrived.
    pub fn feed(&mut self, frame: &[u8]) -> bool {
        match frame.first() {
            Some(b'D') => {
                self.value = crate::protocol::rows::text_row(frame)
                    .ok()
                    .and_then(|r| r.into_iter().next().flatten());
            }
            Some(b'E') => self.failed = true,
            Some(b'Z') => return true,
            _ => {}
        }
        false
    }

    pub fn name(&self) -> Option<&str> {
        self.value.as_deref().filter(|_| !self.failed)
    }
}

/// Per-session facts every record carries.
#[derive(Debug, Clone)]
pub struct RecordCtx {
    pub info: SessionInfo,
    pub roles: Arc<Vec<String>>,
}

impl RecordCtx {
    pub fn record(
        &self,
        a: &StmtAudit,
        outcome: &str,
        rows: u64,
        started: Instant,
        rules_version: &str,
    ) -> AuditRecordInput {
        let mut r = AuditRecordInput::new(RecordKind::Statement, SystemTime::now());
        self.fill(&mut r);
        r.statement_kind = Some(a.kind);
        r.fingerprint = Some(a.fingerprint.clone());
        r.tables = a.tables.clone();
        r.columns = a.columns.clone();
        r.rows = rows;
        r.duration_us = started.elapsed().as_micros() as u64;
        r.outcome = outcome.to_string();
        r.rules_version = Some(rules_version.to_string());
        r
    }

    pub fn fill(&self, r: &mut AuditRecordInput) {
        r.session_id = Some(self.info.id.to_string());
        r.client_addr = self.info.peer.map(|p| p.to_string());
        r.login_role = Some(self.info.user.clone());
        r.effective_roles = self.roles.as_ref().clone();
        r.database = Some(self.info.database.clone());
        r.application_name = Some(self.info.application_name.clone());
    }
}

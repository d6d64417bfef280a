//! Statement tracking for sessions under rules: which statement and portal
//! each server reply belongs to, so RowDescriptions, DataRows, Bind
//! parameters and errors get the treatment their statement's plan calls for.
//!
//! The frontend loop pushes one [`Expect`] per client message that the
//! server answers, in order; the backend loop pops them as the answers
//! arrive. After an error the server skips extended-protocol messages until
//! Sync, and so does the queue. State changes for statements and portals are
//! made when the client's message passes (optimistically) but readers hold
//! `Arc`s, so a later Parse reusing a name cannot change what an earlier,
//! still-running Execute sees.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use pgwire::messages::extendedquery::Parse;

use super::audit::StmtAudit;
use super::rows::{self, RowPlan};
use crate::metrics::metrics;
use crate::protocol::messages::{
    decode_parse, describe_or_close, encode_parse, execute_portal, put_query, query_text,
};
use crate::protocol::{patch_len, put_cstr, put_error, ProtocolError, Severity};
use crate::schema::SchemaSnapshot;
use crate::snapshot::{canonicalize, Snapshot};
use crate::sql::{self, Analysis, ParamPlan, ParamUse, Refusal, StatementPlan};

/// SQL that fails at parse time, whatever the schema or transaction state:
/// it stands in for a refused statement so the server's own state (aborted
/// transaction, skip-until-Sync) is exactly as if the statement had failed,
/// and the backend loop swaps the server's error for pgveil's.
pub const REFUSED_SQL: &str = "pgveil refused this statement";

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
    },
    /// pgveil's own catalog query; its replies never reach the client.
    Internal {
        tx: Option<tokio::sync::oneshot::Sender<Option<Catalog>>>,
        results: Vec<Vec<Vec<Option<String>>>>,
        failed: bool,
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
}

/// Per-session catalog facts: effective roles and the schema snapshot.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub roles: Vec<String>,
    pub schema: Arc<SchemaSnapshot>,
    /// Whether these roles are restricted, memoised per rules version: it is
    /// asked for every statement and every batch of replies.
    restricted: std::sync::OnceLock<(String, bool)>,
}

impl Catalog {
    pub fn new(roles: Vec<String>, schema: SchemaSnapshot) -> Self {
        Catalog {
            roles,
            schema: Arc::new(schema),
            restricted: std::sync::OnceLock::new(),
        }
    }

    /// See [`sql::is_restricted`].
    pub fn restricted(&self, policy: &Snapshot) -> bool {
        match self.restricted.get() {
            Some((v, r)) if *v == policy.rules.version => *r,
            Some(_) => sql::is_restricted(&policy.rules, &self.roles),
            None => {
                let r = sql::is_restricted(&policy.rules, &self.roles);
                let _ = self.restricted.set((policy.rules.version.clone(), r));
                r
            }
        }
    }
}

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

/// What the frontend does with one client message.
pub enum Action {
    Forward,
    Replace(BytesMut),
}

fn refused_query(r: &Refusal) -> BytesMut {
    metrics().refused.with_label_values(&[r.sqlstate]).inc();
    tracing::info!(sqlstate = r.sqlstate, reason = %r.message, "statement refused");
    let mut out = BytesMut::new();
    put_query(&mut out, REFUSED_SQL);
    out
}

pub struct Analyzer<'a> {
    pub policy: &'a Snapshot,
    pub catalog: &'a Catalog,
    pub audit_on: bool,
    /// Statements on tagged tables are refused (the audit cannot record them).
    pub audit_down: bool,
    /// While the audit is down, refuse untagged statements too.
    pub audit_down_refuses_all: bool,
    pub audit: Option<&'a crate::audit::Audit>,
}

impl Analyzer<'_> {
    fn audit_refusal(&self) -> Refusal {
        if let Some(a) = self.audit {
            a.note_refused();
        }
        audit_refusal()
    }
}

fn audit_refusal() -> Refusal {
    Refusal {
        sqlstate: "58030",
        message: "pgveil cannot write its audit stream, so statements on tagged tables are refused until it recovers".into(),
        hint: Some("the operator should check the audit directory (disk space, permissions); service resumes by itself".into()),
    }
}

pub fn query_expect(
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

impl Analyzer<'_> {
    fn analyse(&self, sql_text: &str, tracker: &Tracker) -> Analysis {
        if self.policy.is_empty() {
            return Analysis::Passthrough;
        }
        // A restricted session has every statement analysed: a statement that
        // names no tagged table can still reach one (functions, views, DO).
        let restricted = self.catalog.restricted(self.policy);
        if !restricted && !sql::mentions_tagged(&self.policy.names, sql_text) {
            return Analysis::Passthrough;
        }
        let crypto = self.policy.crypto.as_ref();
        let hash_key_hex = |r: &crate::rules::ColumnRule| {
            crypto
                .and_then(|c| c.hash_key(&r.table, &r.name))
                .map(|k| hex::encode(k.material()))
        };
        let ctx = sql::Context {
            rules: &self.policy.rules,
            schema: Some(&self.catalog.schema),
            roles: &self.catalog.roles,
            encryptor: self.policy,
            canonicalize: &canonicalize,
            sql_prepared: Some(&tracker.sql_prepared),
            restricted,
            hash_key_hex: &hash_key_hex,
        };
        sql::analyse(sql_text, &ctx)
    }

    /// Handles one client message in a session under rules.
    pub fn frontend(
        &self,
        frame: &[u8],
        start: Instant,
        tracker: &mut Tracker,
        expect: &mut VecDeque<Expect>,
    ) -> Result<Action, ProtocolError> {
        match frame[0] {
            b'Q' => {
                let text = query_text(frame)?;
                let mut analysis = self.analyse(text, tracker);
                if self.audit_down
                    && (self.audit_down_refuses_all
                        || matches!(analysis, Analysis::Rewritten { .. }))
                {
                    analysis = Analysis::Refused(self.audit_refusal());
                }
                match analysis {
                    Analysis::Passthrough => {
                        let audit = if self.audit_on {
                            super::audit::passthrough(text)
                        } else {
                            Vec::new()
                        };
                        expect.push_back(query_expect(start, None, None, audit));
                        Ok(Action::Forward)
                    }
                    Analysis::Rewritten { sql, statements } => {
                        for p in &statements {
                            remember_sql_prepare(tracker, p);
                        }
                        let audit = if self.audit_on {
                            statements
                                .iter()
                                .map(|p| {
                                    super::audit::from_plan(p, self.policy, &self.catalog.roles)
                                })
                                .collect()
                        } else {
                            Vec::new()
                        };
                        expect.push_back(query_expect(
                            start,
                            Some(Arc::new(statements)),
                            None,
                            audit,
                        ));
                        let mut out = BytesMut::with_capacity(sql.len() + 6);
                        put_query(&mut out, &sql);
                        Ok(Action::Replace(out))
                    }
                    Analysis::Refused(r) => {
                        let out = refused_query(&r);
                        let audit = if self.audit_on {
                            vec![super::audit::refused(text, r.sqlstate, self.policy)]
                        } else {
                            Vec::new()
                        };
                        expect.push_back(query_expect(start, None, Some(r), audit));
                        Ok(Action::Replace(out))
                    }
                }
            }
            b'P' => {
                let parse = decode_parse(frame)?;
                let name = parse.name.clone().unwrap_or_default();
                let mut analysis = self.analyse(&parse.query, tracker);
                if self.audit_down
                    && (self.audit_down_refuses_all
                        || matches!(analysis, Analysis::Rewritten { .. }))
                {
                    analysis = Analysis::Refused(self.audit_refusal());
                }
                match analysis {
                    Analysis::Passthrough => {
                        let audit = self
                            .audit_on
                            .then(|| super::audit::passthrough(&parse.query).into_iter().next())
                            .flatten();
                        tracker.stmts.insert(
                            name,
                            Arc::new(Stmt {
                                audit,
                                query: parse.query.clone(),
                                version: self.policy.rules.version.clone(),
                                ..Stmt::default()
                            }),
                        );
                        expect.push_back(Expect::Parse {
                            refusal: None,
                            audit: None,
                        });
                        Ok(Action::Forward)
                    }
                    Analysis::Rewritten {
                        sql,
                        mut statements,
                    } if statements.len() == 1 => {
                        let plan = Arc::new(statements.remove(0));
                        let stmt = Arc::new(Stmt {
                            audit: self.audit_on.then(|| {
                                super::audit::from_plan(&plan, self.policy, &self.catalog.roles)
                            }),
                            plan: Some(plan.clone()),
                            row: Mutex::new(None),
                            query: parse.query.clone(),
                            version: self.policy.rules.version.clone(),
                            forwarded_shape: sql::fingerprint(&sql),
                        });
                        let mut types = parse.type_oids.clone();
                        for (i, p) in plan.params.iter().enumerate() {
                            if let ParamPlan::Encrypt { usage, .. } = p {
                                if types.len() <= i {
                                    types.resize(i + 1, 0);
                                }
                                types[i] = match usage {
                                    ParamUse::Write => 17,
                                    ParamUse::Match => 1001,
                                };
                            }
                        }
                        let new = Parse::new(parse.name.clone(), sql, types);
                        let mut out = BytesMut::new();
                        crate::protocol::messages::encode_parse(&new, &mut out)?;
                        // Learn the result shape now, so an Execute without a
                        // Describe still gets its values decrypted.
                        put_describe(&mut out, b'S', &name);
                        tracker.stmts.insert(name, stmt.clone());
                        expect.push_back(Expect::Parse {
                            refusal: None,
                            audit: None,
                        });
                        expect.push_back(Expect::DescribeStmt {
                            stmt,
                            internal: true,
                            seen_params: false,
                        });
                        Ok(Action::Replace(out))
                    }
                    Analysis::Rewritten { .. } => self.refuse_parse(
                        &parse,
                        Refusal {
                            sqlstate: "42601",
                            message: "a prepared statement must hold exactly one SQL statement"
                                .into(),
                            hint: None,
                        },
                        tracker,
                        expect,
                    ),
                    Analysis::Refused(r) => self.refuse_parse(&parse, r, tracker, expect),
                }
            }
            b'B' => {
                let (portal, stmt_name) = bind_names(frame)?;
                let mut stmt = tracker.stmts.get(stmt_name).cloned().unwrap_or_default();
                if !stmt.query.is_empty() && stmt.version != self.policy.rules.version {
                    match self.recheck(&stmt, tracker) {
                        Ok(fresh) => {
                            tracker.stmts.insert(stmt_name.to_string(), fresh.clone());
                            stmt = fresh;
                        }
                        Err(r) => return Ok(refuse_bind(&stmt, r, expect)),
                    }
                }
                let mut action = Action::Forward;
                if self.audit_down && stmt.plan.is_some() {
                    return Ok(refuse_bind(&stmt, self.audit_refusal(), expect));
                }
                if let Some(plan) = &stmt.plan {
                    match rows::encrypt_bind(frame, &plan.params, self.policy) {
                        Ok(Some(out)) => action = Action::Replace(out),
                        Ok(None) => {}
                        Err(e) => {
                            let r = Refusal {
                                sqlstate: e.sqlstate(),
                                message: e.to_string(),
                                hint: None,
                            };
                            return Ok(refuse_bind(&stmt, r, expect));
                        }
                    }
                }
                let formats = bind_result_formats(frame)?;
                let p = Arc::new(Portal { stmt, formats });
                tracker.portals.insert(portal.to_string(), p);
                expect.push_back(Expect::Bind);
                Ok(action)
            }
            b'D' => {
                let (kind, name) = describe_or_close(frame)?;
                if kind == b'S' {
                    let stmt = tracker.stmts.get(name).cloned().unwrap_or_default();
                    expect.push_back(Expect::DescribeStmt {
                        stmt,
                        internal: false,
                        seen_params: false,
                    });
                } else {
                    expect.push_back(Expect::DescribePortal);
                }
                Ok(Action::Forward)
            }
            b'E' => {
                let name = execute_portal(frame)?;
                expect.push_back(Expect::Execute {
                    portal: tracker.portals.get(name).cloned(),
                    start,
                });
                Ok(Action::Forward)
            }
            b'C' => {
                let (kind, name) = describe_or_close(frame)?;
                if kind == b'S' {
                    tracker.stmts.remove(name);
                } else {
                    tracker.portals.remove(name);
                }
                expect.push_back(Expect::Close);
                Ok(Action::Forward)
            }
            b'F' => {
                if !self.policy.is_empty() && self.catalog.restricted(self.policy) {
                    // FunctionCall bypasses SQL entirely: nothing to analyse.
                    let r = Refusal {
                        sqlstate: "42501",
                        message: "pgveil: the FunctionCall protocol message is not allowed for roles with restricted access to tagged columns".into(),
                        hint: Some("call the function from a SQL statement instead".into()),
                    };
                    let out = refused_query(&r);
                    expect.push_back(query_expect(start, None, Some(r), Vec::new()));
                    return Ok(Action::Replace(out));
                }
                expect.push_back(Expect::FunctionCall { start });
                Ok(Action::Forward)
            }
            _ => Ok(Action::Forward),
        }
    }

    /// A statement prepared under older rules, judged again under the current
    /// ones. It keeps running when its shape (fingerprint, parameters,
    /// columns and their actions) is unchanged, so the statement the server
    /// holds is still the right one; otherwise it must be prepared again.
    fn recheck(&self, stmt: &Stmt, tracker: &Tracker) -> Result<Arc<Stmt>, Refusal> {
        let changed = || Refusal {
            sqlstate: "0A000",
            message: "pgveil rules changed since this statement was prepared; prepare it again"
                .into(),
            hint: Some("drivers re-prepare after DEALLOCATE or a new connection".into()),
        };
        let fresh_plan = match (self.analyse(&stmt.query, tracker), &stmt.plan) {
            (Analysis::Passthrough, None) => None,
            (
                Analysis::Rewritten {
                    mut statements,
                    sql: text,
                },
                Some(old),
            ) if statements.len() == 1 => {
                let new = statements.remove(0);
                if sql::fingerprint(&text) != stmt.forwarded_shape || new.params != old.params {
                    return Err(changed());
                }
                Some(Arc::new(new))
            }
            (Analysis::Refused(r), _) => return Err(r),
            _ => return Err(changed()),
        };
        let row = stmt.row.lock().ok().and_then(|r| r.clone());
        Ok(Arc::new(Stmt {
            audit: match &fresh_plan {
                Some(p) if self.audit_on => {
                    Some(super::audit::from_plan(p, self.policy, &self.catalog.roles))
                }
                _ => stmt.audit.clone(),
            },
            plan: fresh_plan,
            row: Mutex::new(row),
            query: stmt.query.clone(),
            version: self.policy.rules.version.clone(),
            forwarded_shape: stmt.forwarded_shape.clone(),
        }))
    }

    fn refuse_parse(
        &self,
        parse: &Parse,
        r: Refusal,
        tracker: &mut Tracker,
        expect: &mut VecDeque<Expect>,
    ) -> Result<Action, ProtocolError> {
        metrics().refused.with_label_values(&[r.sqlstate]).inc();
        tracing::info!(sqlstate = r.sqlstate, reason = %r.message, "statement refused");
        let new = Parse::new(parse.name.clone(), REFUSED_SQL.into(), vec![]);
        let mut out = BytesMut::new();
        encode_parse(&new, &mut out)?;
        tracker.stmts.remove(parse.name.as_deref().unwrap_or(""));
        let audit = self
            .audit_on
            .then(|| super::audit::refused(&parse.query, r.sqlstate, self.policy));
        expect.push_back(Expect::Parse {
            refusal: Some(r),
            audit,
        });
        Ok(Action::Replace(out))
    }
}

fn remember_sql_prepare(tracker: &mut Tracker, p: &StatementPlan) {
    if let Some(sp) = &p.sql_prepare {
        tracker
            .sql_prepared
            .insert(sp.name.clone(), sp.params.clone());
    }
    match &p.sql_deallocate {
        Some(Some(n)) => {
            tracker.sql_prepared.remove(n);
        }
        Some(None) => tracker.sql_prepared.clear(),
        None => {}
    }
}

fn put_describe(out: &mut BytesMut, kind: u8, name: &str) {
    let start = out.len();
    out.put_u8(b'D');
    out.put_i32(0);
    out.put_u8(kind);
    put_cstr(out, name);
    patch_len(out, start);
}

/// Refuses a Bind by making the server fail it (so the server skips to Sync
/// exactly as for a real error); the backend swaps in the refusal.
fn refuse_bind(stmt: &Stmt, r: Refusal, expect: &mut VecDeque<Expect>) -> Action {
    metrics().refused.with_label_values(&[r.sqlstate]).inc();
    let mut out = BytesMut::new();
    put_bind_to_missing(&mut out);
    let audit = stmt.audit.clone().map(|mut a| {
        a.refused = Some(r.sqlstate);
        a
    });
    expect.push_back(Expect::Parse {
        refusal: Some(r),
        audit,
    });
    Action::Replace(out)
}

/// A Bind the server must reject (its statement name cannot have been
/// prepared: it holds a character no client-supplied name can contain here).
fn put_bind_to_missing(out: &mut BytesMut) {
    let start = out.len();
    out.put_u8(b'B');
    out.put_i32(0);
    put_cstr(out, "");
    put_cstr(out, "pgveil refused bind \u{1}");
    out.put_i16(0);
    out.put_i16(0);
    out.put_i16(0);
    patch_len(out, start);
}

fn bind_names(frame: &[u8]) -> Result<(&str, &str), ProtocolError> {
    let body = frame.get(5..).ok_or(ProtocolError::Malformed("Bind"))?;
    let (portal, rest) =
        crate::protocol::take_cstr(body).ok_or(ProtocolError::Malformed("Bind"))?;
    let (stmt, _) = crate::protocol::take_cstr(rest).ok_or(ProtocolError::Malformed("Bind"))?;
    Ok((portal, stmt))
}

fn bind_result_formats(frame: &[u8]) -> Result<Vec<i16>, ProtocolError> {
    crate::protocol::messages::bind_result_formats(frame)
}

/// Replaces a server error about our stand-in statement with the refusal.
pub fn refusal_error(r: &Refusal) -> BytesMut {
    let mut out = BytesMut::new();
    put_error(
        &mut out,
        Severity::Error,
        r.sqlstate,
        &r.message,
        r.hint.as_deref(),
    );
    out
}

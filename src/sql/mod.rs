//! SQL analysis and rewriting: what a statement does to tagged columns, and
//! the text to forward instead when ciphertext has to be substituted.
//!
//! The session calls [`mentions_tagged`] on every Query/Parse text (a lexer
//! scan, no parse); only when it says `true` does it call [`analyse`], which
//! parses with sqlparser's Postgres dialect, resolves every table and column
//! reference the way Postgres would (folding, search_path, aliases, CTEs,
//! subqueries), and then either forwards the text untouched, forwards the
//! re-serialised statement with literals encrypted and parameters retyped, or
//! refuses it. Result columns are decrypted by the session from the
//! RowDescription origin, so the analysis only has to make sure that every
//! ciphertext that can reach the client does so as a plain column reference,
//! and that nothing computes on ciphertext as if it were plaintext.
//!
//! Layout: `lex` (pre-filter lexer), `fingerprint`, `resolve` (names →
//! tables/columns, reusable by the masking rewrite), `encrypt` (literal and
//! parameter substitution), `query` (SELECT and expressions), `write`
//! (INSERT/UPDATE/DELETE/COPY/PREPARE/EXECUTE), `refuse` (messages and the
//! per-role access decisions).

mod builtins;
mod copystmt;
mod do_block;
mod encrypt;
pub mod explain;
mod expr;
mod fingerprint;
mod from;
mod kind;
mod lex;
pub mod limits;
mod masked;
mod output_mask;
mod query;
pub mod refuse;
mod relations;
pub mod resolve;
pub mod restrict;
mod returning;
pub mod shape;
mod values_flow;
mod write;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::rules::model::{ColumnRule, LogicalType, RuleSet, TableName};
use crate::schema::SchemaSnapshot;

pub use crate::policy::{is_restricted, restricting_rule};
pub use do_block::{do_block, is_do, DoBlock};
pub use explain::explain;
pub use fingerprint::fingerprint;
pub use kind::{is_listen, is_transaction_control, object_op, statement_kind, ObjectOp};
pub use lex::{mentions_tagged, split_statements, TaggedNames};
pub use output_mask::wire_type_matches;

/// Supplies ciphertext for literals found in statements. Implemented by the
/// crypto layer; a fake in tests.
pub trait Encryptor {
    /// Ciphertext for storing `canonical` (canonical text form of the logical
    /// type) in `rule`'s column, under the active key.
    fn encrypt_for_write(&self, rule: &ColumnRule, canonical: &[u8]) -> Result<Vec<u8>, String>;
    /// Deterministic columns only: one ciphertext per live key version (active
    /// first), so equality matches rows written before a rotation.
    fn encrypt_for_match(
        &self,
        rule: &ColumnRule,
        canonical: &[u8],
    ) -> Result<Vec<Vec<u8>>, String>;
    /// How many key versions may hold this column's values. Grouping by a
    /// deterministic ciphertext equals grouping by the plaintext only while
    /// this is 1 (no rotation in progress).
    fn live_versions(&self, _rule: &ColumnRule) -> usize {
        1
    }
}

/// Value normaliser: canonical bytes of a literal for a logical type, or a
/// message (which must not contain the value).
pub type Canonicalize<'a> = dyn Fn(LogicalType, &[u8]) -> Result<Vec<u8>, String> + 'a;

/// The hex of a plaintext-at-rest column's pseudonym key (the `hash` mask in
/// SQL), or `None` when there is none (no keyring): such a statement is
/// refused. Never a keyring secret; see `mask::sql` for why it may appear in
/// SQL text at all.
pub type HashKeyHex<'a> = dyn Fn(&ColumnRule) -> Option<String> + 'a;

/// Everything the analysis reads. All borrowed, so one analysis is a pure
/// function of its inputs.
pub struct Context<'a> {
    pub rules: &'a RuleSet,
    /// `None` when offline (`pgveil explain` without `--upstream`): tables are
    /// resolved through the rules with search_path `["public"]`, and only the
    /// tagged columns of a table are known.
    pub schema: Option<&'a SchemaSnapshot>,
    /// Effective roles of the session (login role and every role it is a member of).
    pub roles: &'a [String],
    pub encryptor: &'a dyn Encryptor,
    pub canonicalize: &'a Canonicalize<'a>,
    /// Parameter plans of the SQL-level prepared statements of this session
    /// (from earlier [`StatementPlan::sql_prepare`]), for `EXECUTE name(args)`.
    pub sql_prepared: Option<&'a HashMap<String, Vec<ParamPlan>>>,
    /// The session's roles have a non-plaintext access on some tagged column
    /// ([`is_restricted`]). The analysis also computes it and uses either:
    /// every statement of such a session must reach [`analyse`] (skip the
    /// [`mentions_tagged`] pre-filter), and is checked by `restrict`.
    pub restricted: bool,
    /// Pseudonym keys for `hash` on plaintext-at-rest columns.
    pub hash_key_hex: &'a HashKeyHex<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Analysis {
    /// Forward the original text unchanged (touches nothing tagged).
    Passthrough,
    /// Forward `sql` instead (re-serialised, literals encrypted as
    /// `E'\\x…'::bytea`); one plan per statement, in order.
    Rewritten {
        sql: String,
        statements: Vec<StatementPlan>,
    },
    Refused(Refusal),
}

/// A refusal, sent to the client as an ErrorResponse. The message names rule
/// files and columns, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub sqlstate: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.sqlstate)
    }
}

impl std::error::Error for Refusal {}

impl crate::error::ClientError for Refusal {
    fn sqlstate(&self) -> &'static str {
        self.sqlstate
    }

    fn client_message(&self) -> String {
        self.message.clone()
    }

    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Copy,
    Ddl,
    Other,
}

/// What happened to one tagged column, for audit and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnAction {
    /// Returned to the client decrypted / as stored.
    Plaintext,
    /// Returned masked: decrypted then masked by the session (encrypted
    /// columns), or read through the masked derived table (plaintext at rest).
    Masked,
    /// Returned as NULL.
    Null,
    /// The statement was refused because of this column.
    Denied,
    /// A value was encrypted into it.
    EncryptedWrite,
    /// Used in an equality predicate (rewritten to ciphertext comparison).
    Match,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnUse {
    /// `schema.table.column`.
    pub column: String,
    pub class: String,
    pub action: ColumnAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamUse {
    /// Send `encrypt_for_write(value)` as a `bytea` parameter.
    Write,
    /// Send every `encrypt_for_match(value)` as a `bytea[]` parameter (text:
    /// `{"\\x…","\\x…"}`).
    Match,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ParamPlan {
    /// Forward as the client sent it.
    Plain,
    /// The client's plaintext (in the rule's logical type) must be encrypted;
    /// the server sees the parameter typed `bytea` (Write) or `bytea[]` (Match),
    /// so Parse parameter type OIDs must be replaced by 17 / 1001.
    Encrypt {
        rule: Box<ColumnRule>,
        usage: ParamUse,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    /// `FORMAT binary`: fields are length-prefixed; tagged ones are decoded
    /// with the logical type's binary input and sent as raw ciphertext.
    Binary,
}

/// How to find and (de|en)crypt the tagged fields of COPY data rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyPlan {
    /// One entry per field of a data row; `Some` for encrypted columns.
    pub fields: Vec<Option<ColumnRule>>,
    /// For COPY TO: per field, what to send (`Null` fields are sent as the
    /// null string). Same length as `fields`.
    pub actions: Vec<Option<ColumnAction>>,
    pub format: CopyFormat,
    pub delimiter: char,
    pub null: String,
    pub header: bool,
    pub quote: char,
    pub escape: char,
}

/// A SQL-level `PREPARE name AS …`: the session remembers `params` under
/// `name` and passes them back in [`Context::sql_prepared`].
#[derive(Debug, Clone, PartialEq)]
pub struct SqlPrepare {
    pub name: String,
    pub params: Vec<ParamPlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatementPlan {
    pub kind: StatementKind,
    pub tables: Vec<TableName>,
    pub columns: Vec<ColumnUse>,
    /// Index = `$n - 1`.
    pub params: Vec<ParamPlan>,
    /// For `COPY t (cols) FROM STDIN`.
    pub copy_in: Option<CopyPlan>,
    /// For `COPY t (cols) TO STDOUT` and `COPY (SELECT …) TO STDOUT`, which carry
    /// no RowDescription origin.
    pub copy_out: Option<CopyPlan>,
    pub sql_prepare: Option<SqlPrepare>,
    /// `DEALLOCATE name` (`Some(None)` for `DEALLOCATE ALL`): forget it.
    pub sql_deallocate: Option<Option<String>>,
    pub fingerprint: String,
    /// Forwarded as written, with plaintext-at-rest masked columns masked by
    /// the session from RowDescription origins (see `output_mask`): every
    /// result column with a table OID must then have an origin the session
    /// knows, or the result is refused.
    pub output_masked: bool,
}

impl StatementPlan {
    fn new(kind: StatementKind, fingerprint: String) -> Self {
        StatementPlan {
            kind,
            tables: Vec::new(),
            columns: Vec::new(),
            params: Vec::new(),
            copy_in: None,
            copy_out: None,
            sql_prepare: None,
            sql_deallocate: None,
            fingerprint,
            output_masked: false,
        }
    }
}

/// Parses one statement (as split by [`lex::split_statements`]); `None` when
/// sqlparser cannot, or sees more or less than one statement.
fn parse_one(chunk: &str) -> Option<sqlparser::ast::Statement> {
    let rewritten = relations::table_commands_as_select(chunk);
    let chunk = rewritten.as_deref().unwrap_or(chunk);
    let copy_in = lex::is_copy_from_stdin(chunk);
    let parsed = if copy_in {
        // sqlparser wants inline data after `FROM STDIN;`: give it none.
        Parser::parse_sql(&PostgreSqlDialect {}, &format!("{chunk};\n\\.\n"))
    } else {
        Parser::parse_sql(&PostgreSqlDialect {}, chunk)
    };
    let mut st = match parsed {
        Ok(mut v) if v.len() == 1 => v.pop()?,
        _ => return None,
    };
    if copy_in {
        let sqlparser::ast::Statement::Copy { values, .. } = &mut st else {
            return None;
        };
        if values
            .iter()
            .any(|v| v.as_deref().is_some_and(|s| !s.trim().is_empty()))
        {
            return None;
        }
        values.clear();
    }
    Some(st)
}

/// Analyses one Query (possibly several statements) or Parse text.
///
/// For a restricted session every statement is checked by `restrict`,
/// unparsable text is refused, and the re-serialised statement is always
/// forwarded (never the original text), so the server executes exactly what
/// was analysed even where sqlparser and the server could read the original
/// differently.
pub fn analyse(sql: &str, ctx: &Context) -> Analysis {
    analyse_statements(&lex::split_statements(sql), ctx)
}

/// [`analyse`] of a text already split by [`split_statements`] (the session
/// splits each Query once, for this and for its DDL check and audit).
pub fn analyse_statements(chunks: &[&str], ctx: &Context) -> Analysis {
    let restricted = ctx.restricted || is_restricted(ctx.rules, ctx.roles);
    let mut local_prepared: HashMap<String, Vec<ParamPlan>> = HashMap::new();
    let mut plans = Vec::new();
    let mut texts = Vec::new();
    let mut touched_any = false;
    for &chunk in chunks {
        let weight = limits::nesting_weight(chunk);
        if weight > limits::MAX_NESTING {
            return Analysis::Refused(limits::too_complex());
        }
        let one = limits::with_stack_for(weight, || {
            analyse_one(chunk, ctx, restricted, &local_prepared)
        });
        let (text, plan, touched) = match one {
            Ok(x) => x,
            Err(r) => return Analysis::Refused(r),
        };
        if let Some(p) = &plan.sql_prepare {
            local_prepared.insert(p.name.clone(), p.params.clone());
        }
        match &plan.sql_deallocate {
            Some(Some(n)) => {
                local_prepared.remove(n);
            }
            Some(None) => local_prepared.clear(),
            None => {}
        }
        touched_any |= touched;
        texts.push(text);
        plans.push(plan);
    }
    if !touched_any {
        return Analysis::Passthrough;
    }
    Analysis::Rewritten {
        sql: texts.join(";\n"),
        statements: plans,
    }
}

/// One statement: the text to forward, its plan, and whether it differs
/// from a passthrough (touches something tagged, or the session is
/// restricted). The parsed tree lives and dies inside this call, so its
/// recursive drop runs on the stack [`limits::with_stack_for`] sized.
fn analyse_one(
    chunk: &str,
    ctx: &Context,
    restricted: bool,
    local_prepared: &HashMap<String, Vec<ParamPlan>>,
) -> Result<(String, StatementPlan, bool), Refusal> {
    if restricted {
        match restrict::check_text(chunk, ctx) {
            restrict::TextVerdict::Refuse(r) => return Err(r),
            restrict::TextVerdict::Forward => {
                let plan = StatementPlan::new(StatementKind::Other, fingerprint(chunk));
                return Ok((chunk.trim().to_string(), plan, true));
            }
            restrict::TextVerdict::Parse => {}
        }
    }
    let Some(mut st) = parse_one(chunk) else {
        if restricted {
            return Err(refuse::unparsable_restricted());
        }
        if let Some(d) = ctx.schema.and_then(|s| crate::policy::drift(ctx.rules, s)) {
            // Could be a write into the renamed relation: not provable.
            return Err(refuse::rules_out_of_sync(d));
        }
        if let Some(t) = refuse::first_tagged_name(ctx.rules, chunk) {
            return Err(refuse::unparsable(&t));
        }
        // Names nothing tagged: forwarded as written, like a passthrough.
        let plan = StatementPlan::new(StatementKind::Other, fingerprint(chunk));
        return Ok((chunk.to_string(), plan, false));
    };
    let fp = fingerprint(chunk);
    let mut usage = None;
    if restricted {
        restrict::check_statement(&st, ctx)?;
        let u = output_mask::Usage::of(chunk, &st);
        if let Some(done) = output_mask_trial(chunk, &mut st, ctx, local_prepared, &u, &fp)? {
            return Ok(done);
        }
        usage = Some(u);
    } else {
        restrict::check_drift_writes(&st, ctx)?;
    }
    let mut an = query::Analyzer::new(ctx, local_prepared, fp);
    an.usage = usage;
    an.statement(&mut st)?;
    let (plan, touched) = an.finish();
    Ok((st.to_string(), plan, touched || restricted))
}

/// The output-only masking trial (see `output_mask`): the text and plan to
/// forward when it succeeds. When it refuses, a masked value could flow into
/// SQL: `st` is parsed afresh for the analysis with masked derived tables.
fn output_mask_trial(
    chunk: &str,
    st: &mut sqlparser::ast::Statement,
    ctx: &Context,
    local_prepared: &HashMap<String, Vec<ParamPlan>>,
    usage: &output_mask::Usage,
    fp: &str,
) -> Result<Option<(String, StatementPlan, bool)>, Refusal> {
    let res = resolve::Resolver {
        rules: ctx.rules,
        schema: ctx.schema,
    };
    if !output_mask::eligible(st, &res) {
        return Ok(None);
    }
    let mut an = query::Analyzer::new(ctx, local_prepared, fp.to_string());
    an.output_masking = true;
    an.usage = Some(usage.clone());
    if an.statement(st).is_ok() {
        let (mut plan, _) = an.finish();
        plan.output_masked = true;
        return Ok(Some((st.to_string(), plan, true)));
    }
    *st = parse_one(chunk).ok_or_else(refuse::unparsable_restricted)?;
    Ok(None)
}

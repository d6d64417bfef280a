//! Restricted sessions: what a session whose roles may not read every tagged
//! column in plaintext is not allowed to run at all.
//!
//! The masked derived table (see `masked`) protects every place where a
//! statement *names* a protected table. These checks close the ways to read
//! a table without naming it where pgveil can see: SQL hidden in strings (DO,
//! `query_to_xml`, `ts_stat`), code that runs later or elsewhere (functions,
//! procedures, views, rules, triggers, CTAS), out-of-band channels
//! (`set_config`, large objects, server files, dblink, statistics views),
//! changes to how the server reads the text (search_path,
//! standard_conforming_strings, client_encoding) and changes of identity
//! (SET ROLE, SESSION AUTHORIZATION, ALTER ROLE, GRANT).
//!
//! Identity changes are refused rather than tracked: tracking would have to
//! follow SET LOCAL, RESET, transaction rollback and `set_config(…, true)`
//! exactly as the server does, and a single mistake serves one role's rules
//! to another. A session that needs other rules reconnects as another role.
//!
//! Function calls go through an allowlist of built-in `pg_catalog` functions
//! that compute on their arguments only. A user-defined function (or one in
//! an extension) can read any table with its owner's rights and return or
//! RAISE the values, and pgveil cannot see into its body, so it is refused
//! for restricted sessions, whatever schema it lives in. Residual risk,
//! documented: functions the server calls implicitly (user-defined operators
//! over built-in spellings, casts, type input functions, `table.function`
//! attribute notation) created outside pgveil by a role with CREATE on a
//! schema in the search_path; revoke CREATE on such schemas from restricted
//! roles.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, CopySource, Expr, ObjectName, Statement, TableFactor, Visit, Visitor,
};

use super::builtins::{builtin_allowed, BUILTIN_OPERATORS};
use super::lex::{fold_into, Lexer, Tok};
use super::refuse::{self, access};
use super::relations::{table_command_name, table_commands};
use super::resolve::{fold_name, Resolver};
use super::{Context, Refusal};

pub use crate::policy::{
    drift, is_restricted, protected_table, restricted_table, restricting_rule, Drift,
};

/// The refusal for a restricted session, naming the rule that restricts it.
pub fn refusal(ctx: &Context, what: &str) -> Refusal {
    let why = match restricting_rule(ctx.rules, ctx.roles) {
        Some(r) => format!(
            "its roles have `{}` access to column {} (rule {}:{})",
            access(r, ctx.roles),
            r.qualified(),
            r.source.file,
            r.source.line
        ),
        None => "its roles are restricted by the rules".to_string(),
    };
    Refusal {
        sqlstate: refuse::INSUFFICIENT_PRIVILEGE,
        message: format!(
            "pgveil: {what} is not allowed in this session because {why}; the statement was not sent"
        ),
        hint: Some(
            "Restricted sessions may run queries and writes over tables (served masked), \
             transaction control, cursors and prepared statements; run other statements as a \
             role with plaintext access."
                .into(),
        ),
    }
}

/// `UTF8` in the spellings PostgreSQL accepts for it.
fn is_utf8(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().replace(['-', '_'], "").as_str(),
        "utf8" | "unicode"
    )
}

fn is_utf8_value(e: &Expr) -> bool {
    match e {
        Expr::Identifier(id) => is_utf8(&id.value),
        Expr::Value(v) => {
            matches!(&v.value, sqlparser::ast::Value::SingleQuotedString(s) if is_utf8(s))
        }
        _ => false,
    }
}

/// What the text-level check decided.
pub enum TextVerdict {
    Refuse(Refusal),
    /// `RESET name` of a harmless setting: sqlparser cannot parse RESET, and
    /// the text is two plain words, so it is forwarded as written.
    Forward,
    /// Go on and parse.
    Parse,
}

/// Settings a restricted session may not change: identity, name
/// resolution and how the server reads statement text.
const GUARDED_SETTINGS: &[&str] = &[
    "role",
    "session_authorization",
    "authorization",
    "search_path",
    "schema",
    "standard_conforming_strings",
    "client_encoding",
    "names",
    "all",
    "backslash_quote",
];

/// Objects whose CREATE runs code later or elsewhere, or changes identity.
#[rustfmt::skip]
const REFUSED_CREATE: &[&str] = &[
    "function", "procedure", "view", "materialized", "rule", "trigger", "aggregate", "operator",
    "cast", "foreign", "server", "extension", "language", "event", "transform", "conversion",
    "publication", "subscription", "role", "user", "group",
];

/// Words between CREATE and the object kind.
#[rustfmt::skip]
const CREATE_MODIFIERS: &[&str] = &[
    "or", "replace", "temp", "temporary", "unlogged", "global", "local", "trusted", "procedural",
    "constraint", "recursive", "default",
];

/// Objects whose ALTER changes identity, code, or how names resolve.
#[rustfmt::skip]
const REFUSED_ALTER: &[&str] = &[
    "system", "role", "user", "group", "function", "procedure", "routine", "view", "materialized",
    "rule", "trigger", "aggregate", "operator", "extension", "server", "foreign", "language",
    "schema", "database", "event", "publication", "subscription",
];

/// The refused object kind of `CREATE <words>`, if it is one.
fn refused_create(words: &[String]) -> Option<&str> {
    let kind = words
        .iter()
        .map(String::as_str)
        .find(|x| !CREATE_MODIFIERS.contains(x))?;
    REFUSED_CREATE.contains(&kind).then_some(kind)
}

/// Guarded settings whose harmless values are allowed: the value is checked
/// on the parsed statement.
const CHECKED_SETTINGS: &[&str] = &["search_path", "client_encoding", "names"];

/// Guarded settings a restricted session may RESET.
const RESETTABLE: &[&str] = &["all", "search_path", "client_encoding"];

/// Checks on the leading words, before (and whether or not) sqlparser
/// parses the statement; the same lexer as the pre-filter, so comments and
/// quoting are read the way the server reads them.
pub fn check_text(chunk: &str, ctx: &Context) -> TextVerdict {
    let mut lx = Lexer::new(chunk);
    let mut words: Vec<String> = Vec::new();
    let mut others = 0usize;
    let mut buf = String::new();
    for tok in lx.by_ref() {
        if others == 0 && words.len() < 6 && fold_into(&tok, &mut buf) {
            words.push(buf.clone());
        } else if !matches!(tok, Tok::Op(";")) {
            others += 1;
        }
    }
    if lx.suspicious {
        return TextVerdict::Refuse(refusal(
            ctx,
            "text the server could read differently (a Unicode-escaped U&\"…\" identifier, or a \
             backslash in a '…' string; use E'…' strings)",
        ));
    }
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let refuse = |what: &str| TextVerdict::Refuse(refusal(ctx, what));
    match w(0) {
        "do" => return refuse("a DO block"),
        "explain" => return refuse("EXPLAIN"),
        "load" => return refuse("LOAD"),
        "call" => return refuse("CALL of a procedure"),
        "grant" | "revoke" => return refuse("GRANT / REVOKE"),
        "import" => return refuse("IMPORT FOREIGN SCHEMA"),
        "security" => return refuse("SECURITY LABEL"),
        "create" => {
            if let Some(kind) = refused_create(&words[1..]) {
                return refuse(&format!("CREATE {}", kind.to_ascii_uppercase()));
            }
        }
        "alter" if REFUSED_ALTER.contains(&w(1)) => {
            return refuse(&format!("ALTER {}", w(1).to_ascii_uppercase()));
        }
        "set" | "reset" => {
            let var = match (w(1), w(2)) {
                ("session", "authorization") => "authorization",
                ("session" | "local", v) => v,
                (v, _) => v,
            };
            // Decided on the parsed statement (see `Gate::setting`).
            if w(0) == "set" && CHECKED_SETTINGS.contains(&var) {
                return TextVerdict::Parse;
            }
            // Back to the session's defaults, which are what its catalog
            // snapshot was read under: nothing a restricted session could
            // SET changes them (identity and name resolution are guarded).
            if w(0) == "reset" && RESETTABLE.contains(&var) && words.len() == 2 && others == 0 {
                return TextVerdict::Forward;
            }
            if GUARDED_SETTINGS.contains(&var) {
                return refuse(&format!(
                    "{} {}",
                    w(0).to_ascii_uppercase(),
                    var.to_ascii_uppercase()
                ));
            }
            if w(0) == "reset" && words.len() == 2 && others == 0 {
                return TextVerdict::Forward;
            }
        }
        _ => {}
    }
    TextVerdict::Parse
}

/// Statistics and activity views that expose column values (most common
/// values, histogram bounds) or other sessions' statement text (with their
/// literals). Refused to restricted sessions outright, rather than scrubbed
/// per tagged table: a scrub would have to follow every way of naming a
/// table in their text columns. Views a DBA builds over them are in the
/// catalog's protected relations (see `schema::dependent_views_query`).
const VALUE_VIEWS: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext",
    "pg_statistic_ext_data",
    "pg_stat_activity",
    "pg_stat_statements",
    "pg_stat_statements_info",
    "pg_stat_monitor",
    "pg_stat_kcache",
    "pg_qualstats",
    "pg_store_plans",
    "pg_largeobject",
];

/// The AST-level checks for a parsed statement of a restricted session.
pub fn check_statement(st: &Statement, ctx: &Context) -> Result<(), Refusal> {
    let res = Resolver {
        rules: ctx.rules,
        schema: ctx.schema,
    };
    if let Some(d) = ctx.schema.and_then(|s| drift(ctx.rules, s)) {
        check_drift(st, d, &res)?;
    }
    let mut gate = Gate { ctx, res };
    match st.visit(&mut gate) {
        ControlFlow::Break(r) => Err(r),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// While the catalog does not match the rules (see [`drift`]), refuses what
/// could read the protected data under its new name.
fn check_drift(st: &Statement, d: Drift, res: &Resolver) -> Result<(), Refusal> {
    drift_hits(super::relations::relations(st), d, res)
}

/// The drift check for sessions pgveil does not restrict: they may read
/// (at worst they see ciphertext under a name no rule decrypts), but a
/// write into the renamed table or column would store plaintext where the
/// rules want ciphertext, so writes into what may be the drifted relation
/// are refused until the rules and the catalog agree again.
pub fn check_drift_writes(st: &Statement, ctx: &Context) -> Result<(), Refusal> {
    let Some(d) = ctx.schema.and_then(|s| drift(ctx.rules, s)) else {
        return Ok(());
    };
    let res = Resolver {
        rules: ctx.rules,
        schema: ctx.schema,
    };
    drift_hits(super::relations::write_targets(st), d, &res)
}

fn drift_hits(rels: Vec<super::relations::Rel>, d: Drift, res: &Resolver) -> Result<(), Refusal> {
    for rel in rels {
        let Some(n) = rel else {
            return Err(refuse::rules_out_of_sync(d));
        };
        let parts = fold_name(&n).unwrap_or_default();
        let catalog = parts.len() >= 2
            && matches!(
                parts[parts.len() - 2].as_str(),
                "pg_catalog" | "information_schema"
            );
        let hit = match d {
            Drift::TableMissing(_) => !catalog,
            Drift::ColumnMissing(r) => res.table(&n).is_some_and(|t| t == r.table),
        };
        if hit {
            return Err(refuse::rules_out_of_sync(d));
        }
    }
    Ok(())
}

struct Gate<'c, 'a> {
    ctx: &'c Context<'a>,
    res: Resolver<'a>,
}

impl Gate<'_, '_> {
    fn refuse(&self, what: &str) -> ControlFlow<Refusal> {
        ControlFlow::Break(refusal(self.ctx, what))
    }

    /// A view, matview or inheritance child that reads a protected table
    /// (from the live schema), matched by schema-qualified name, or by name
    /// alone when unqualified (a wrong match only costs a refusal).
    fn protected_view(&self, name: &ObjectName) -> Option<String> {
        let parts = fold_name(name)?;
        let views = &self.ctx.schema?.protected_views;
        let hit = match parts.as_slice() {
            [t] => views.iter().find(|v| &v.name == t),
            [s, t] | [_, s, t] => views.iter().find(|v| &v.schema == s && &v.name == t),
            _ => None,
        };
        hit.map(|v| v.to_string())
    }

    fn ddl_target(&self, name: &ObjectName, what: &str) -> ControlFlow<Refusal> {
        if let Some(t) = self.res.table(name) {
            return self.refuse(&format!("{what} on tagged table {t}"));
        }
        if let Some(v) = self.protected_view(name) {
            return self.refuse(&format!("{what} on {v}, which reads a protected table"));
        }
        ControlFlow::Continue(())
    }

    fn relation(&self, name: &ObjectName) -> ControlFlow<Refusal> {
        let Some(parts) = fold_name(name) else {
            return self.refuse("a relation named by an expression");
        };
        let last = parts.last().map(String::as_str).unwrap_or("");
        // Whatever the schema: pg_stat_statements lives in the extension's
        // schema, and a same-named relation elsewhere costs only a refusal.
        if VALUE_VIEWS.contains(&last) {
            return self.refuse(&format!("reading {last}, which exposes column values"));
        }
        if let Some(v) = self.protected_view(name) {
            return self.refuse(&format!(
                "reading {v}, a view or child table over a protected table"
            ));
        }
        // sqlparser reads `FROM ONLY t` as table `only` aliased `t`; the server
        // reads table `t`. Never forward that differential.
        if name.0.len() == 1 && last == "only" && name.to_string().eq_ignore_ascii_case("only") {
            return self.refuse("FROM ONLY");
        }
        ControlFlow::Continue(())
    }

    fn function(&self, name: &ObjectName) -> ControlFlow<Refusal> {
        let Some(parts) = fold_name(name) else {
            return self.refuse("a function named by an expression");
        };
        let (schema, f) = match parts.as_slice() {
            [f] => (None, f.as_str()),
            [s, f] | [_, s, f] => (Some(s.as_str()), f.as_str()),
            _ => return self.refuse("a function call"),
        };
        match schema {
            Some("information_schema") => ControlFlow::Continue(()),
            Some("pg_catalog") if builtin_allowed(f) => ControlFlow::Continue(()),
            None if builtin_allowed(f) && !self.catalog_shadowed() => ControlFlow::Continue(()),
            _ => self.refuse(&format!(
                "calling function {name} (only built-in functions that compute on their \
                 arguments are allowed)"
            )),
        }
    }

    /// SET of a guarded setting that the text check let through: only
    /// values that change nothing pgveil relies on. `search_path` must stay
    /// exactly the effective path of the catalog snapshot (tracking a new
    /// path needs the session; see `docs/rules.md`); `client_encoding` /
    /// `NAMES` may only say UTF-8, the encoding pgveil reads text in. ROLE
    /// forms are refused whatever their spelling.
    fn setting(&self, set: &sqlparser::ast::Set) -> ControlFlow<Refusal> {
        use sqlparser::ast::Set;
        match set {
            Set::SetRole { .. } => self.refuse("SET ROLE"),
            Set::SetNames { charset_name, .. } if is_utf8(&charset_name.value) => {
                ControlFlow::Continue(())
            }
            Set::SetNames { .. } | Set::SetNamesDefault {} => {
                self.refuse("SET NAMES other than UTF8")
            }
            Set::SingleAssignment {
                variable, values, ..
            } => {
                let var = fold_name(variable)
                    .and_then(|mut p| p.pop())
                    .unwrap_or_default();
                match var.as_str() {
                    "search_path" if self.search_path_unchanged(values) => {
                        ControlFlow::Continue(())
                    }
                    "search_path" => self
                        .refuse("SET search_path to a value other than the session's current path"),
                    "client_encoding" if values.len() == 1 && is_utf8_value(&values[0]) => {
                        ControlFlow::Continue(())
                    }
                    "client_encoding" => self.refuse("SET client_encoding other than UTF8"),
                    _ if GUARDED_SETTINGS.contains(&var.as_str()) => {
                        self.refuse(&format!("SET {}", var.to_ascii_uppercase()))
                    }
                    _ => ControlFlow::Continue(()),
                }
            }
            _ => ControlFlow::Continue(()),
        }
    }

    /// Whether `SET search_path TO values` names exactly the snapshot's
    /// effective path (`DEFAULT` is the path the snapshot was read under).
    fn search_path_unchanged(&self, values: &[Expr]) -> bool {
        let Some(schema) = self.ctx.schema else {
            return false;
        };
        let mut names = Vec::new();
        for v in values {
            match v {
                Expr::Identifier(id)
                    if id.quote_style.is_none()
                        && id.value.eq_ignore_ascii_case("default")
                        && values.len() == 1 =>
                {
                    return true
                }
                Expr::Identifier(id) => names.push(super::resolve::fold(id)),
                Expr::Value(sqlparser::ast::ValueWithSpan {
                    value: sqlparser::ast::Value::SingleQuotedString(s),
                    ..
                }) if !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
                {
                    names.push(s.clone())
                }
                _ => return false,
            }
        }
        !names.is_empty() && names == schema.search_path
    }

    /// True when the search_path lists pg_catalog after another schema, so an
    /// unqualified name could resolve to a function in that schema first.
    fn catalog_shadowed(&self) -> bool {
        self.ctx
            .schema
            .and_then(|s| s.search_path.iter().position(|p| p == "pg_catalog"))
            .is_some_and(|i| i > 0)
    }
}

impl Visitor for Gate<'_, '_> {
    type Break = Refusal;

    fn pre_visit_statement(&mut self, st: &Statement) -> ControlFlow<Refusal> {
        match st {
            Statement::Explain { .. } | Statement::ExplainTable { .. } => self.refuse("EXPLAIN"),
            Statement::CreateFunction(_)
            | Statement::CreateProcedure { .. }
            | Statement::CreateMacro { .. }
            | Statement::CreateTrigger(_)
            | Statement::CreateView { .. }
            | Statement::AlterView { .. }
            | Statement::CreateExtension { .. }
            | Statement::CreateServer(_)
            | Statement::CreateRole { .. }
            | Statement::CreateUser(_)
            | Statement::AlterRole { .. }
            | Statement::AlterSchema(_)
            | Statement::Grant { .. }
            | Statement::Revoke { .. }
            | Statement::Call(_)
            | Statement::Load { .. }
            | Statement::Install { .. }
            | Statement::RenameTable(_)
            | Statement::CreateVirtualTable { .. } => {
                let kind = st.to_string();
                let kind: String = kind
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                self.refuse(&kind.to_ascii_uppercase())
            }
            Statement::Set(set) => self.setting(set),
            Statement::CreateTable(ct) if ct.query.is_some() => {
                self.refuse("CREATE TABLE AS (copying query results into a table)")
            }
            // Renaming a tagged table or a view/child over one (or moving it to
            // another schema) would take it out of its rules; constraints,
            // unique indexes and row-level policies on raw values are oracles
            // (an insert that fails, a count that shrinks).
            Statement::AlterTable { name, .. } => self.ddl_target(name, "ALTER TABLE"),
            Statement::CreateIndex(ci) => self.ddl_target(&ci.table_name, "CREATE INDEX"),
            Statement::CreatePolicy { table_name, .. }
            | Statement::AlterPolicy { table_name, .. } => {
                self.ddl_target(table_name, "CREATE/ALTER POLICY")
            }
            Statement::Copy {
                source, to: true, ..
            } => {
                let mut tables = Vec::new();
                match source {
                    CopySource::Table { table_name, .. } => tables.push(table_name.clone()),
                    CopySource::Query(q) => {
                        for rel in super::relations::relations(&**q) {
                            match rel {
                                Some(n) => tables.push(n),
                                None => {
                                    return self.refuse("COPY of a relation pgveil cannot name")
                                }
                            }
                        }
                    }
                }
                for n in &tables {
                    if let Some(t) = self.res.table(n) {
                        if restricted_table(self.ctx.rules, &t, self.ctx.roles) {
                            return self.refuse(&format!("COPY … TO of data from table {t}"));
                        }
                    }
                }
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_query(&mut self, q: &sqlparser::ast::Query) -> ControlFlow<Refusal> {
        if let sqlparser::ast::SetExpr::Select(s) = q.body.as_ref() {
            if s.into.is_some() {
                return self.refuse("SELECT INTO (copying query results into a table)");
            }
        }
        // TABLE commands name a relation no table-factor hook sees.
        for t in table_commands(&q.body) {
            match table_command_name(t) {
                Some(n) => self.relation(&n)?,
                None => return self.refuse("a TABLE command pgveil cannot name"),
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<Refusal> {
        match tf {
            TableFactor::Table {
                name, args: None, ..
            } => self.relation(name),
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.function(name),
            TableFactor::TableFunction { .. }
            | TableFactor::JsonTable { .. }
            | TableFactor::OpenJsonTable { .. }
            | TableFactor::Pivot { .. }
            | TableFactor::Unpivot { .. }
            | TableFactor::MatchRecognize { .. }
            | TableFactor::XmlTable { .. }
            | TableFactor::SemanticView { .. } => self.refuse("this kind of FROM item"),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<Refusal> {
        match e {
            Expr::Function(f) => self.function(&f.name),
            Expr::BinaryOp { op, .. } => match op {
                BinaryOperator::Custom(o) if !BUILTIN_OPERATORS.contains(&o.as_str()) => {
                    self.refuse(&format!("operator {o} (not a built-in operator)"))
                }
                BinaryOperator::PGCustomBinaryOperator(parts)
                    if parts.len() != 2 || parts[0] != "pg_catalog" =>
                {
                    self.refuse("an operator outside pg_catalog")
                }
                _ => ControlFlow::Continue(()),
            },
            _ => ControlFlow::Continue(()),
        }
    }
}

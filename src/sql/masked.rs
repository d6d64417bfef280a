//! The masked derived table: for a restricted session, every FROM reference
//! to a protected table (one with a plaintext-at-rest column the session may
//! not read in plaintext) is replaced by
//!
//! ```sql
//! (SELECT pgveil_t."id" AS "id", <mask>(pgveil_t."full_name") AS "full_name", …
//!  FROM "public"."customers" AS pgveil_t) AS "customers"
//! ```
//!
//! with every column of the table in attnum order, so `*`, positional
//! column aliases, NATURAL/USING joins and whole-row references keep their
//! meaning, and every expression, join, aggregate, window, set operation,
//! subquery, CTE and predicate of the statement sees only masked values.
//!
//! Per plaintext-at-rest column: `plaintext` stays the column; a mask
//! becomes [`crate::mask::sql_expr`] (pg_catalog-qualified functions only);
//! `null` and `deny` become a typed NULL (that still names the column for a
//! conversion's shadow, see `policy::is_conversion_shadow`). A `deny` column keeps its rule as
//! origin in the analysis, so any reference to it (named, `*`, whole row)
//! is refused; the NULL is only a second line of defence. Encrypted columns
//! pass through as plain references: they hold ciphertext, the existing
//! analysis limits what may be done with them, and Postgres reports their
//! origin through the subquery so the session decrypts and masks them.
//!
//! Targets of UPDATE/DELETE are not replaced (they must stay tables). Their
//! protected columns keep their origin, so any predicate, SET value or
//! RETURNING item that reads them is refused: a WHERE on a raw value would
//! be an oracle (`DELETE … WHERE full_name LIKE 'A%'` reports a row count).
//! Writing new values into them is allowed.

use sqlparser::ast::{Ident, Query, Statement, TableAlias, TableFactor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::mask;
use crate::rules::model::{Access, ColumnRule, Mask, TableName};

/// One column of a masked derived table.
struct Served {
    name: String,
    /// Served by a SQL expression (mask or typed NULL), not passed through.
    in_sql: bool,
}

use super::query::{Analyzer, R};
use super::refuse::{self, access};
use super::resolve::{fold, fold_name, Relation, Scope};
use super::restrict::protected_table;
use super::ColumnAction;

/// System columns every table has. ORMs read `xmin` as a concurrency
/// token and `ctid` / `tableoid` to address rows.
const SYSTEM_COLUMNS: &[&str] = &["tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"];

/// The system columns `st` names (by any qualification) and whether it
/// expands a `*` anywhere. The masked derived table exposes exactly those
/// system columns, as plain columns of the same name, so `SELECT xmin,
/// ctid, tableoid::regclass FROM customers` keeps working; with a `*` in
/// the statement they would change what `*` returns, so that is refused.
pub fn system_columns_of(st: &Statement) -> (Vec<&'static str>, bool) {
    use sqlparser::ast::{Expr, SelectItem, SetExpr, Visit, Visitor};
    use std::ops::ControlFlow;
    struct V(Vec<&'static str>, bool);
    impl Visitor for V {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            let last = match e {
                Expr::Identifier(id) => Some(id),
                Expr::CompoundIdentifier(ids) => ids.last(),
                _ => None,
            };
            if let Some(c) = last.and_then(|id| {
                let n = super::resolve::fold(id);
                SYSTEM_COLUMNS.iter().find(|s| **s == n)
            }) {
                if !self.0.contains(c) {
                    self.0.push(c);
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, q: &sqlparser::ast::Query) -> ControlFlow<()> {
            if let SetExpr::Select(s) = q.body.as_ref() {
                self.1 |= s.projection.iter().any(|i| {
                    matches!(
                        i,
                        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                    )
                });
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = V(Vec::new(), false);
    let _ = st.visit(&mut v);
    (v.0, v.1)
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl<'a> Analyzer<'a, '_> {
    /// The protected table a FROM item names, when it must be replaced: a
    /// plain table reference (no CTE of that name in scope), not the target
    /// of a write.
    pub fn protected_ref(
        &self,
        tf: &TableFactor,
        scope: &Scope<'a, '_>,
        target: bool,
    ) -> Option<TableName> {
        let TableFactor::Table {
            name, args: None, ..
        } = tf
        else {
            return None;
        };
        if target {
            return None;
        }
        let parts = fold_name(name)?;
        if let [single] = parts.as_slice() {
            if scope.cte(single).is_some() {
                return None;
            }
        }
        let t = self.res.table(name)?;
        protected_table(self.ctx.rules, &t, self.roles()).then_some(t)
    }

    /// Serves a FROM reference to protected table `t` and returns the
    /// relation the rest of the statement sees: by its masked derived table
    /// when some column the statement can name must be masked in SQL, else
    /// as the table itself (nothing it names is masked, or, on the fast path,
    /// every masked column it names is masked on the wire; see
    /// `output_mask`).
    pub fn mask_table(&mut self, tf: &mut TableFactor, t: &TableName) -> R<Relation<'a>> {
        let TableFactor::Table {
            alias,
            with_hints,
            version,
            partitions,
            json_path,
            sample,
            index_hints,
            with_ordinality,
            ..
        } = tf
        else {
            return Err(refuse::unsupported_statement(
                "this FROM item",
                &t.to_string(),
            ));
        };
        if !with_hints.is_empty()
            || version.is_some()
            || !partitions.is_empty()
            || json_path.is_some()
            || sample.is_some()
            || !index_hints.is_empty()
            || *with_ordinality
        {
            return Err(refuse::unsupported_statement(
                "TABLESAMPLE or another table option on a masked table",
                &t.to_string(),
            ));
        }
        let alias_name = alias
            .as_ref()
            .map_or_else(|| t.name.clone(), |a| fold(&a.name));
        let all = alias.as_ref().is_some_and(|a| !a.columns.is_empty())
            || self
                .usage
                .as_ref()
                .is_none_or(|u| u.whole_row(&alias_name, &t.name));
        let cols = self.served_columns(t, all)?;
        let mut rel = self.res.relation(t);
        if !cols.iter().any(|c| c.in_sql) {
            // Nothing the statement can name is masked in SQL: the table
            // itself, its masked columns still sensitive (origin kept).
            if let Some(a) = alias.as_ref() {
                if !rel.apply_alias(a) {
                    return Err(self.needs_schema_for(&rel, "a column alias list"));
                }
            }
            return Ok(rel);
        }
        let subquery = self.derived_query(t, &cols, all)?;
        let alias = alias.take().unwrap_or_else(|| TableAlias {
            name: Ident::with_quote('"', t.name.clone()),
            columns: Vec::new(),
        });
        let roles = self.roles();
        rel.cols.retain(|c| {
            c.name
                .as_deref()
                .is_some_and(|n| cols.iter().any(|s| s.name == n))
        });
        for c in rel.cols.iter_mut() {
            let Some(r) = c.origin else { continue };
            let in_sql = cols.iter().any(|s| s.in_sql && s.name == r.name);
            if r.encrypt.is_some() || !in_sql {
                continue;
            }
            match access(r, roles) {
                Access::Plaintext | Access::Deny => {}
                Access::Mask(_) => {
                    self.use_col(r, ColumnAction::Masked);
                    c.origin = None;
                }
                Access::Null => {
                    self.use_col(r, ColumnAction::Null);
                    c.origin = None;
                }
            }
        }
        if !rel.apply_alias(&alias) {
            return Err(self.needs_schema_for(&rel, "a column alias list"));
        }
        *tf = TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(alias),
        };
        self.touched = true;
        Ok(rel)
    }

    /// The columns of `t` a derived table must project (all of them when
    /// `all`, else those the statement names), each with whether it is
    /// served by a SQL expression (a mask or a typed NULL) or passed through.
    fn served_columns(&self, t: &TableName, all: bool) -> R<Vec<Served>> {
        let info = self
            .ctx
            .schema
            .and_then(|s| s.tables.get(t))
            .filter(|i| !i.columns.is_empty())
            .ok_or_else(|| refuse::needs_schema(&t.to_string(), "masking"))?;
        let roles = self.roles();
        let mut out = Vec::with_capacity(info.columns.len());
        for c in &info.columns {
            if !all && !self.usage.as_ref().is_none_or(|u| u.names(&c.name)) {
                continue;
            }
            let in_sql = match self.ctx.rules.column(t, &c.name) {
                Some(r) if r.encrypt.is_none() => match access(r, roles) {
                    Access::Plaintext => false,
                    Access::Deny => true,
                    a @ (Access::Mask(_) | Access::Null) => {
                        let key = matches!(a, Access::Mask(Mask::Hash))
                            && (self.ctx.hash_key_hex)(r).is_some();
                        !(self.output_masking
                            && super::output_mask::wire_maskable(r, a, self.ctx.schema, key))
                    }
                },
                _ => false,
            };
            out.push(Served {
                name: c.name.clone(),
                in_sql,
            });
        }
        Ok(out)
    }

    /// The derived table's query, built once per table, projection and statement.
    fn derived_query(&mut self, t: &TableName, cols: &[Served], all: bool) -> R<Box<Query>> {
        if let Some(q) = self.derived.get(&(t.clone(), all)) {
            return Ok(q.clone());
        }
        let sql = self.derived_sql(t, cols)?;
        let parsed = Parser::parse_sql(&PostgreSqlDialect {}, &sql);
        let q = match parsed {
            Ok(mut v) if v.len() == 1 => match v.pop() {
                Some(Statement::Query(q)) => q,
                _ => return Err(refuse::mask_failed(t, "unexpected statement")),
            },
            _ => return Err(refuse::mask_failed(t, "the masking query does not parse")),
        };
        self.derived.insert((t.clone(), all), q.clone());
        Ok(q)
    }

    /// The SQL serving plaintext-at-rest column `r` (referenced by `col`)
    /// to this session: the column, its mask, or a typed NULL.
    pub(super) fn served_sql(&self, r: &ColumnRule, col: String) -> R<String> {
        Ok(match access(r, self.roles()) {
            Access::Plaintext => col,
            Access::Mask(m) => {
                let key = match m {
                    Mask::Hash => Some(
                        (self.ctx.hash_key_hex)(r).ok_or_else(|| refuse::no_pseudonym_key(r))?,
                    ),
                    _ => None,
                };
                mask::sql_expr(m, r.ty, &col, key.as_deref())
                    .map_err(|e| refuse::mask_failed(&r.table, &e.to_string()))?
            }
            Access::Null | Access::Deny if crate::policy::is_conversion_shadow(r) => {
                let t = r.ty.sql_name();
                format!("(CASE WHEN ({col}) IS NULL THEN CAST(NULL AS pg_catalog.{t}) ELSE CAST(NULL AS pg_catalog.{t}) END)")
            }
            Access::Null | Access::Deny => {
                format!("CAST(NULL AS pg_catalog.{})", r.ty.sql_name())
            }
        })
    }

    fn derived_sql(&self, t: &TableName, cols: &[Served]) -> R<String> {
        let mut items = Vec::with_capacity(cols.len());
        for c in cols {
            let q = quote_ident(&c.name);
            let col = format!("pgveil_t.{q}");
            let expr = match self.ctx.rules.column(t, &c.name) {
                Some(r) if c.in_sql => self.served_sql(r, col)?,
                _ => col,
            };
            items.push(format!("{expr} AS {q}"));
        }
        if !self.system_columns.is_empty() {
            if self.has_wildcard {
                return Err(refuse::unsupported_statement(
                    "a system column together with * over a masked table (list the columns)",
                    &t.to_string(),
                ));
            }
            for c in &self.system_columns {
                items.push(format!("pgveil_t.{c} AS {c}"));
            }
        }
        Ok(format!(
            "SELECT {} FROM {}.{} AS pgveil_t",
            items.join(", "),
            quote_ident(&t.schema),
            quote_ident(&t.name)
        ))
    }
}

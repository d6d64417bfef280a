//! Statements: dispatch, the write path (INSERT, UPDATE, DELETE, COPY) and
//! SQL-level PREPARE / EXECUTE.
//!
//! Writes into an encrypted column accept only what the proxy can encrypt
//! (a literal or a parameter), NULL, DEFAULT, or a copy of the same column of
//! the same rule (same key binding, so the ciphertext stays valid).

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, AssignmentTarget, DataType, Expr, FromTable, Insert, OnConflictAction,
    OnInsert, Query, SetExpr, Statement, TableObject, Value,
};

use crate::rules::model::ColumnRule;

use super::encrypt::{self, Operand};
use super::query::{same_rule, Analyzer, Mode, R};
use super::refuse::{self, sensitive};
use super::resolve::{fold, fold_name, OutCol, Relation, Scope};
use super::{ColumnAction, ParamPlan, ParamUse, SqlPrepare, StatementKind};

impl<'a> Analyzer<'a, '_> {
    /// Analyses (and rewrites in place) one top-level statement.
    pub fn statement(&mut self, st: &mut Statement) -> R<()> {
        (self.system_columns, self.has_wildcard) = super::masked::system_columns_of(st);
        let is_prepare = matches!(st, Statement::Prepare { .. });
        self.dispatch(st)?;
        if !is_prepare {
            self.check_params(st)?;
        }
        Ok(())
    }

    /// Every `$n` planned as ciphertext must be used only where we put the
    /// cast; any other use would receive ciphertext (or, reversed, send
    /// plaintext where the server expects ciphertext).
    fn check_params(&mut self, st: &Statement) -> R<()> {
        let mut counts: HashMap<usize, usize> = HashMap::new();
        let _ = visit_expressions(st, |e| {
            if let Expr::Value(v) = e {
                if let Value::Placeholder(p) = &v.value {
                    if let Some(n) = p
                        .strip_prefix('$')
                        .and_then(|d| d.parse::<usize>().ok())
                        .filter(|n| *n > 0)
                    {
                        *counts.entry(n).or_insert(0) += 1;
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        });
        let max = counts.keys().copied().max().unwrap_or(0);
        if self.plan.params.len() < max {
            self.plan.params.resize(max, ParamPlan::Plain);
        }
        for (i, p) in self.plan.params.iter().enumerate() {
            let n = i + 1;
            if matches!(p, ParamPlan::Encrypt { .. })
                && counts.get(&n).copied().unwrap_or(0)
                    != self.enc_occurrences.get(&n).copied().unwrap_or(0)
            {
                return Err(refuse::param_conflict(n));
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, st: &mut Statement) -> R<()> {
        let root = Scope::default();
        match st {
            Statement::Query(q) => {
                self.plan.kind = StatementKind::Select;
                self.query(q, &root, Mode::Client)?;
            }
            Statement::Insert(_) | Statement::Update { .. } | Statement::Delete(_) => {
                self.dml(st, &root, Mode::Client)?;
            }
            Statement::Copy { .. } => self.copy(st)?,
            Statement::Prepare {
                name,
                data_types,
                statement,
            } => {
                self.statement(statement)?;
                let params = std::mem::take(&mut self.plan.params);
                for (i, p) in params.iter().enumerate() {
                    if let (ParamPlan::Encrypt { usage, .. }, Some(dt)) = (p, data_types.get_mut(i))
                    {
                        *dt = match usage {
                            ParamUse::Write => DataType::Bytea,
                            ParamUse::Match => encrypt::bytea_array(),
                        };
                    }
                }
                self.plan.sql_prepare = Some(SqlPrepare {
                    name: fold(name),
                    params,
                });
                self.touched = true;
            }
            Statement::Execute {
                name: Some(name),
                parameters,
                using,
                has_parentheses,
                ..
            } => {
                // PostgreSQL only reads `EXECUTE name (args)`; the parser's
                // bare-argument form does not survive re-serialisation, so
                // it is refused rather than rewritten into something else.
                if !*has_parentheses && !parameters.is_empty() {
                    return Err(refuse::execute_without_parentheses(&name.to_string()));
                }
                self.execute(name, parameters, using.is_empty())?
            }
            Statement::Deallocate { name, .. } => {
                let n = fold(name);
                self.plan.sql_deallocate = Some(if name.quote_style.is_none() && n == "all" {
                    None
                } else {
                    Some(n)
                });
                self.touched = true;
            }
            Statement::Discard { object_type } => {
                // DISCARD ALL deallocates every prepared statement, SQL-level too.
                if matches!(object_type, sqlparser::ast::DiscardObject::ALL) {
                    self.plan.sql_deallocate = Some(None);
                    self.touched = true;
                }
            }
            Statement::Declare { stmts } => {
                self.plan.kind = StatementKind::Select;
                for d in stmts.iter_mut() {
                    if let Some(q) = d.for_query.as_mut() {
                        self.query(q, &root, Mode::Client)?;
                    }
                }
            }
            Statement::Explain { statement, .. } => {
                self.dispatch(statement)?;
                self.plan.kind = StatementKind::Other;
            }
            Statement::CreateTable(ct) if ct.query.is_some() => {
                self.plan.kind = StatementKind::Ddl;
                if let Some(q) = ct.query.as_mut() {
                    self.query(q, &root, Mode::Sink("a new table (CREATE TABLE AS)"))?;
                }
            }
            Statement::CreateView { query, .. } => {
                self.plan.kind = StatementKind::Ddl;
                self.query(query, &root, Mode::Sink("a view"))?;
            }
            other => self.other(other)?,
        }
        Ok(())
    }

    /// Statements without values of tagged columns: DDL and maintenance are
    /// forwarded (and recorded); anything else over a tagged table is refused.
    fn other(&mut self, st: &mut Statement) -> R<()> {
        let mut tagged = Vec::new();
        for rel in super::relations::relations(&*st) {
            match rel {
                Some(n) => tagged.extend(self.res.table(&n)),
                None => return Err(refuse::unreadable_relation()),
            }
        }
        let Some(first) = tagged.first().cloned() else {
            return Ok(());
        };
        let ddl = matches!(
            st,
            Statement::AlterTable { .. }
                | Statement::Drop { .. }
                | Statement::Truncate { .. }
                | Statement::CreateIndex(_)
                | Statement::AlterIndex { .. }
                | Statement::Grant { .. }
                | Statement::Revoke { .. }
                | Statement::Comment { .. }
                | Statement::Analyze { .. }
                | Statement::Vacuum(_)
                | Statement::CreatePolicy { .. }
                | Statement::AlterPolicy { .. }
                | Statement::DropPolicy { .. }
                | Statement::CreateTrigger(_)
                | Statement::DropTrigger(_)
                | Statement::CreateTable(_)
        );
        if !ddl {
            let kind = st
                .to_string()
                .split_whitespace()
                .next()
                .unwrap_or("this statement")
                .to_ascii_uppercase();
            return Err(refuse::unsupported_statement(&kind, &first.to_string()));
        }
        self.plan.kind = StatementKind::Ddl;
        for t in &tagged {
            self.record_table(t);
        }
        Ok(())
    }

    /// INSERT / UPDATE / DELETE (also inside WITH); returns RETURNING columns.
    pub fn dml(
        &mut self,
        st: &mut Statement,
        parent: &Scope<'a, '_>,
        mode: Mode,
    ) -> R<Vec<OutCol<'a>>> {
        match st {
            Statement::Insert(ins) => self.insert(ins, parent, mode),
            Statement::Update {
                table,
                assignments,
                from,
                selection,
                returning,
                ..
            } => {
                self.plan.kind = StatementKind::Update;
                let mut scope = parent.child();
                self.in_target = true;
                self.table_with_joins(table, &mut scope)?;
                let target = scope.rels.first().cloned();
                if let Some(from) = from.as_mut() {
                    let (sqlparser::ast::UpdateTableFromKind::BeforeSet(v)
                    | sqlparser::ast::UpdateTableFromKind::AfterSet(v)) = from;
                    for twj in v.iter_mut() {
                        self.table_with_joins(twj, &mut scope)?;
                    }
                }
                for a in assignments.iter_mut() {
                    self.assignment(&a.target, &mut a.value, target.as_ref(), &scope)?;
                }
                if let Some(w) = selection.as_mut() {
                    self.walk(w, &scope, "WHERE")?;
                }
                self.returning(returning.as_mut(), target.as_ref(), &scope, mode)
            }
            Statement::Delete(d) => {
                self.plan.kind = StatementKind::Delete;
                let mut scope = parent.child();
                let (FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v)) = &mut d.from;
                for twj in v.iter_mut() {
                    self.in_target = true;
                    self.table_with_joins(twj, &mut scope)?;
                }
                let target = scope.rels.first().cloned();
                for twj in d.using.iter_mut().flatten() {
                    self.table_with_joins(twj, &mut scope)?;
                }
                if let Some(w) = d.selection.as_mut() {
                    self.walk(w, &scope, "WHERE")?;
                }
                self.returning(d.returning.as_mut(), target.as_ref(), &scope, mode)
            }
            other => {
                self.refuse_if_tagged(&*other, parent, "this statement")?;
                Ok(Vec::new())
            }
        }
    }

    /// RETURNING; `target` is the written table's relation (its
    /// plaintext-at-rest columns are returned masked, see `returning`).
    fn returning(
        &mut self,
        items: Option<&mut Vec<sqlparser::ast::SelectItem>>,
        target: Option<&Relation<'a>>,
        scope: &Scope<'a, '_>,
        mode: Mode,
    ) -> R<Vec<OutCol<'a>>> {
        let Some(items) = items else {
            return Ok(Vec::new());
        };
        let cols = self.masked_returning(items, target, scope)?;
        self.apply_mode(&cols, mode)?;
        Ok(cols)
    }

    /// `SET target = value` in UPDATE or ON CONFLICT DO UPDATE.
    fn assignment(
        &mut self,
        target: &AssignmentTarget,
        value: &mut Expr,
        rel: Option<&Relation<'a>>,
        scope: &Scope<'a, '_>,
    ) -> R<()> {
        let rule_of = |n: &sqlparser::ast::ObjectName| -> Option<&'a ColumnRule> {
            let col = fold_name(n)?.pop()?;
            rel?.column(&col).flatten()
        };
        match target {
            AssignmentTarget::ColumnName(n) => match rule_of(n).filter(|r| r.encrypt.is_some()) {
                Some(rule) => self.write_value(value, rule, scope),
                None => self.walk(value, scope, "a SET value"),
            },
            AssignmentTarget::Tuple(names) => {
                if let Some(rule) = names
                    .iter()
                    .filter_map(rule_of)
                    .find(|r| r.encrypt.is_some())
                {
                    return Err(refuse::write_unsupported(rule, "a row value"));
                }
                self.walk(value, scope, "a SET value")
            }
        }
    }

    /// One value written into an encrypted column.
    pub(super) fn write_value(
        &mut self,
        e: &mut Expr,
        rule: &'a ColumnRule,
        scope: &Scope<'a, '_>,
    ) -> R<()> {
        match encrypt::operand(e, rule.ty) {
            Some(Operand::Null) | Some(Operand::Default) => Ok(()),
            Some(Operand::Literal(text)) => {
                *e = encrypt::write_literal(self.ctx, rule, &text)?;
                self.use_col(rule, ColumnAction::EncryptedWrite);
                Ok(())
            }
            Some(Operand::Param(n)) => {
                self.set_param(n, rule, ParamUse::Write)?;
                *e = encrypt::param_cast(n, false);
                Ok(())
            }
            None => match self.colref(e, scope) {
                Some(super::resolve::ColRef::Column(Some(src))) if same_rule(src, rule) => Ok(()),
                _ => Err(refuse::write_unsupported(rule, "an expression")),
            },
        }
    }

    fn insert(
        &mut self,
        ins: &mut Insert,
        parent: &Scope<'a, '_>,
        mode: Mode,
    ) -> R<Vec<OutCol<'a>>> {
        self.plan.kind = StatementKind::Insert;
        let TableObject::TableName(name) = &ins.table else {
            self.refuse_if_tagged(&ins.table, parent, "INSERT into a table function")?;
            return Ok(Vec::new());
        };
        let tagged = self.res.table(name);
        let mut rel = match &tagged {
            Some(t) => {
                self.record_table(t);
                self.res.relation(t)
            }
            None => Relation::opaque(
                fold_name(name)
                    .and_then(|mut p| p.pop())
                    .unwrap_or_default(),
            ),
        };
        if let Some(a) = &ins.table_alias {
            rel.alias = fold(a);
        }
        let has_encrypted = rel
            .cols
            .iter()
            .any(|c| c.origin.is_some_and(|r| r.encrypt.is_some()));
        // Target column i -> its rule (None: untagged), and whether the list is known.
        let (targets, known): (Vec<Option<&'a ColumnRule>>, bool) = if !ins.columns.is_empty() {
            (
                ins.columns
                    .iter()
                    .map(|c| rel.column(&fold(c)).flatten())
                    .collect(),
                true,
            )
        } else if rel.complete {
            (rel.cols.iter().map(|c| c.origin).collect(), true)
        } else if has_encrypted {
            return Err(self.needs_schema_for(&rel, "INSERT without a column list"));
        } else {
            (Vec::new(), tagged.is_some())
        };
        if let Some(src) = ins.source.as_mut() {
            self.insert_source(src, &targets, known, parent)?;
        }
        let mut scope = parent.child();
        scope.rels.push(rel.clone());
        if let Some(OnInsert::OnConflict(oc)) = ins.on.as_mut() {
            if let OnConflictAction::DoUpdate(du) = &mut oc.action {
                let mut excluded = rel.clone();
                excluded.alias = "excluded".into();
                excluded.table = None;
                // EXCLUDED holds the row this statement proposed (literals,
                // parameters, or a source the analysis already masked), not
                // a stored value: its plaintext-at-rest columns are no
                // oracle. Encrypted ones keep their rule, so ciphertext
                // still only moves within its own column.
                for c in excluded.cols.iter_mut() {
                    if c.origin.is_some_and(|r| r.encrypt.is_none()) {
                        c.origin = None;
                    }
                }
                scope.rels.push(excluded);
                for a in du.assignments.iter_mut() {
                    self.assignment(&a.target, &mut a.value, Some(&rel), &scope)?;
                }
                if let Some(w) = du.selection.as_mut() {
                    self.walk(w, &scope, "ON CONFLICT … WHERE")?;
                }
                scope.rels.truncate(1);
            }
        } else if ins.on.is_some() {
            self.refuse_if_sensitive(&rel, "ON DUPLICATE KEY")?;
        }
        self.returning(ins.returning.as_mut(), Some(&rel), &scope, mode)
    }

    /// The rows of an INSERT: VALUES items go through [`Self::write_value`]
    /// for encrypted targets; a query's output columns must match them.
    fn insert_source(
        &mut self,
        src: &mut Query,
        targets: &[Option<&'a ColumnRule>],
        known: bool,
        parent: &Scope<'a, '_>,
    ) -> R<()> {
        let empty = parent.child();
        let plain_values =
            src.with.is_none() && src.order_by.is_none() && src.limit_clause.is_none();
        match src.body.as_mut() {
            SetExpr::Values(values) if plain_values => {
                for row in values.rows.iter_mut() {
                    for (i, e) in row.iter_mut().enumerate() {
                        match targets.get(i).copied().flatten() {
                            Some(rule) if rule.encrypt.is_some() => {
                                self.write_value(e, rule, &empty)?
                            }
                            _ => self.walk(e, &empty, "VALUES")?,
                        }
                    }
                }
            }
            _ => self.insert_query(src, targets, known, &empty)?,
        }
        Ok(())
    }

    /// `INSERT … SELECT`: every output column written into an encrypted
    /// target must be a copy of the same rule's column, or a VALUES column
    /// passed straight through (see `values_flow`).
    fn insert_query(
        &mut self,
        src: &mut Query,
        targets: &[Option<&'a ColumnRule>],
        known: bool,
        empty: &Scope<'a, '_>,
    ) -> R<()> {
        let handled = self.values_flow(src, targets)?;
        let (cols, complete) = self.query(src, empty, Mode::Derived)?;
        if !known {
            self.apply_mode(&cols, Mode::Sink("a table pgveil has no rules for"))?;
        }
        for (i, c) in cols.iter().enumerate() {
            if handled.contains(&i) {
                continue;
            }
            let target = targets.get(i).copied().flatten();
            match (target.filter(|t| t.encrypt.is_some()), c.origin) {
                (Some(t), _) if !complete => {
                    return Err(refuse::write_unsupported(
                        t,
                        "the result of a query whose columns are unknown",
                    ))
                }
                (Some(t), Some(o)) if same_rule(t, o) => {
                    self.use_col(t, ColumnAction::EncryptedWrite)
                }
                (Some(t), _) => return Err(refuse::write_unsupported(
                    t,
                    "the result of a query (only the same column of the same table can be copied)",
                )),
                (None, Some(o)) if sensitive(o, self.roles()) => {
                    let what = match target {
                        Some(t) => format!("column {}", t.qualified()),
                        None => "another column".to_string(),
                    };
                    return Err(if o.encrypt.is_some() {
                        refuse::copy_elsewhere(o, &what)
                    } else {
                        refuse::denied(o, "copy")
                    });
                }
                _ => {}
            }
        }
        // Source narrower than the targets (offline `*`): unknown for encrypted targets.
        if !complete {
            if let Some(t) = targets
                .iter()
                .skip(cols.len())
                .flatten()
                .find(|t| t.encrypt.is_some())
            {
                return Err(refuse::write_unsupported(
                    t,
                    "the result of a query whose columns are unknown",
                ));
            }
        }
        Ok(())
    }

    fn refuse_if_sensitive(&self, rel: &Relation<'a>, why: &str) -> R<()> {
        match rel
            .cols
            .iter()
            .filter_map(|c| c.origin)
            .find(|r| sensitive(r, self.roles()))
        {
            Some(r) => Err(refuse::unsupported(r, why)),
            None => Ok(()),
        }
    }

    /// `EXECUTE name(args)` of a SQL-level prepared statement we planned.
    fn execute(
        &mut self,
        name: &sqlparser::ast::ObjectName,
        args: &mut [Expr],
        no_using: bool,
    ) -> R<()> {
        let Some(key) = fold_name(name).and_then(|mut p| p.pop()) else {
            return Ok(());
        };
        let plans = self
            .local_prepared
            .get(&key)
            .or_else(|| self.ctx.sql_prepared.and_then(|m| m.get(&key)))
            .cloned();
        let Some(plans) = plans else { return Ok(()) };
        if !no_using {
            return Ok(());
        }
        self.touched = true;
        let empty = Scope::default();
        for (i, arg) in args.iter_mut().enumerate() {
            let Some(ParamPlan::Encrypt { rule, usage }) = plans.get(i) else {
                self.walk(arg, &empty, "an EXECUTE argument")?;
                continue;
            };
            match (encrypt::operand(arg, rule.ty), usage) {
                (Some(Operand::Null), _) => {}
                (Some(Operand::Literal(t)), ParamUse::Write) => {
                    *arg = encrypt::write_literal(self.ctx, rule, &t)?;
                    self.use_col(rule, ColumnAction::EncryptedWrite);
                }
                (Some(Operand::Literal(t)), ParamUse::Match) => {
                    *arg =
                        encrypt::bytea_array_literal(&encrypt::match_literals(self.ctx, rule, &t)?);
                    self.use_col(rule, ColumnAction::Match);
                }
                (Some(Operand::Param(n)), u) => {
                    self.set_param(n, rule, *u)?;
                    *arg = encrypt::param_cast(n, *u == ParamUse::Match);
                }
                _ => {
                    return Err(refuse::write_unsupported(
                        rule,
                        "an expression as an EXECUTE argument",
                    ))
                }
            }
        }
        Ok(())
    }
}

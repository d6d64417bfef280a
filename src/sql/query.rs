//! Queries and expressions: scope building, the projection, and the walk
//! that rewrites equality on encrypted columns and refuses everything else
//! that would compute on ciphertext.
//!
//! The rule the walk enforces: a sensitive column (encrypted, or not readable
//! in plaintext by this session) may appear only
//! - as a plain reference in a select list or RETURNING (the session decrypts
//!   or nulls it by RowDescription origin, after the access check here),
//! - as the column side of `=`, `<>`, `IN`, `NOT IN`, `IS [NOT] NULL`, which
//!   are rewritten to ciphertext comparisons, or of a join with the same rule,
//! - as a write target (see `write`).
//!
//! Anything else — functions, casts, operators, ORDER BY, GROUP BY, DISTINCT,
//! windows, set operations, whole-row references — is refused, because the
//! database would compute on ciphertext (wrong answers) or hand ciphertext
//! out with no origin the session could verify.

use std::collections::HashMap;

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, OrderByKind, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Value,
};

use crate::rules::model::{Access, ColumnRule, EncryptMode, TableName};

use super::refuse::{self, sensitive};
use super::resolve::{fold, fold_name, ColRef, CteDef, OutCol, Relation, Resolver, Scope};
use super::{
    ColumnAction, ColumnUse, Context, ParamPlan, ParamUse, Refusal, StatementKind, StatementPlan,
};

pub type R<T> = Result<T, Refusal>;

/// Where a query's output goes, which decides what its sensitive columns may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// To the client: access checks apply; the session decrypts by origin.
    Client,
    /// A FROM subquery or CTE: columns keep their origin for the outer query.
    Derived,
    /// A scalar subquery / IN subquery value: no origin survives.
    Scalar,
    /// EXISTS: the output is never looked at.
    Ignore,
    /// Stored somewhere else (CTAS, SELECT INTO, views).
    Sink(&'static str),
}

pub fn same_rule(a: &ColumnRule, b: &ColumnRule) -> bool {
    a.table == b.table && a.name == b.name
}

pub struct Analyzer<'a, 'c> {
    pub ctx: &'c Context<'a>,
    pub res: Resolver<'a>,
    pub local_prepared: &'c HashMap<String, Vec<ParamPlan>>,
    pub plan: StatementPlan,
    pub touched: bool,
    /// How many `$n` occurrences we turned into ciphertext parameters.
    pub enc_occurrences: HashMap<usize, usize>,
    /// The next FROM item is the target of an UPDATE/DELETE: it must stay a
    /// table, so it is not replaced by the masked derived table (see `masked`).
    pub in_target: bool,
    /// Masked derived-table queries built so far in this statement, by
    /// table and whether they project every column.
    pub derived: HashMap<(TableName, bool), Box<Query>>,
    /// The output-only masking trial (see `output_mask`): masked columns
    /// that can be masked on the wire keep their origin, and may reach the
    /// client only as bare select-list references.
    pub output_masking: bool,
    /// The names the statement can use (restricted sessions), so a derived
    /// table projects only those; `None` projects every column.
    pub usage: Option<super::output_mask::Usage>,
    /// System columns (`xmin`, `ctid`, …) the statement names, and whether
    /// it expands `*` anywhere: the masked derived table carries the former,
    /// which `*` would then return too (see `masked`).
    pub system_columns: Vec<&'static str>,
    pub has_wildcard: bool,
}

impl<'a, 'c> Analyzer<'a, 'c> {
    pub fn new(
        ctx: &'c Context<'a>,
        local_prepared: &'c HashMap<String, Vec<ParamPlan>>,
        fp: String,
    ) -> Self {
        Analyzer {
            ctx,
            res: Resolver {
                rules: ctx.rules,
                schema: ctx.schema,
            },
            local_prepared,
            plan: StatementPlan::new(StatementKind::Other, fp),
            touched: false,
            enc_occurrences: HashMap::new(),
            in_target: false,
            derived: HashMap::new(),
            output_masking: false,
            usage: None,
            system_columns: Vec::new(),
            has_wildcard: false,
        }
    }

    pub fn finish(self) -> (StatementPlan, bool) {
        (self.plan, self.touched)
    }

    /// `GROUP BY col` on a deterministic encrypted column is exact while one
    /// key version is live: equal plaintexts have equal ciphertexts. The
    /// session then decrypts (and masks, e.g. `hash`) the grouped column by
    /// origin. Roles that get NULL or nothing may not group (it would reveal
    /// which rows are equal).
    fn groupable(&mut self, e: &Expr, scope: &Scope<'a, '_>) -> R<bool> {
        let Some(ColRef::Column(Some(r))) = self.colref(e, scope) else {
            return Ok(false);
        };
        let ok = r.encrypt == Some(EncryptMode::Deterministic)
            && matches!(
                refuse::access(r, self.roles()),
                Access::Plaintext | Access::Mask(_)
            );
        if ok && self.ctx.encryptor.live_versions(r) > 1 {
            return Err(refuse::rotation_in_progress(r, "GROUP BY"));
        }
        if ok {
            self.use_col(r, ColumnAction::Match);
        }
        Ok(ok)
    }

    pub fn roles(&self) -> &'a [String] {
        self.ctx.roles
    }

    pub fn record_table(&mut self, t: &TableName) {
        self.touched = true;
        if !self.plan.tables.contains(t) {
            self.plan.tables.push(t.clone());
        }
    }

    pub fn use_col(&mut self, rule: &ColumnRule, action: ColumnAction) {
        let u = ColumnUse {
            column: rule.qualified(),
            class: rule.class.clone(),
            action,
        };
        if !self.plan.columns.contains(&u) {
            self.plan.columns.push(u);
        }
    }

    /// Records that `$n` carries plaintext for `rule`, to be encrypted.
    pub fn set_param(&mut self, n: usize, rule: &ColumnRule, usage: ParamUse) -> R<()> {
        if self.plan.params.len() < n {
            self.plan.params.resize(n, ParamPlan::Plain);
        }
        let slot = &mut self.plan.params[n - 1];
        match slot {
            ParamPlan::Plain if !self.enc_occurrences.contains_key(&n) => {
                *slot = ParamPlan::Encrypt {
                    rule: Box::new(rule.clone()),
                    usage,
                }
            }
            ParamPlan::Encrypt {
                rule: r0,
                usage: u0,
            } if same_rule(r0, rule) && *u0 == usage => {}
            _ => return Err(refuse::param_conflict(n)),
        }
        *self.enc_occurrences.entry(n).or_insert(0) += 1;
        let action = match usage {
            ParamUse::Write => ColumnAction::EncryptedWrite,
            ParamUse::Match => ColumnAction::Match,
        };
        self.use_col(rule, action);
        Ok(())
    }

    /// What a bare reference means (looking through parentheses).
    pub fn colref(&self, e: &Expr, scope: &Scope<'a, '_>) -> Option<ColRef<'a>> {
        match e {
            Expr::Nested(inner) => self.colref(inner, scope),
            Expr::Identifier(id) => scope.column(&[fold(id)]),
            Expr::CompoundIdentifier(ids) => {
                scope.column(&ids.iter().map(fold).collect::<Vec<_>>())
            }
            _ => None,
        }
    }

    /// The rule of a bare reference to a sensitive column.
    pub fn sensitive_ref(&self, e: &Expr, scope: &Scope<'a, '_>) -> Option<&'a ColumnRule> {
        match self.colref(e, scope) {
            Some(ColRef::Column(Some(r))) if sensitive(r, self.roles()) => Some(r),
            _ => None,
        }
    }

    /// Checks a query's output columns against where they go.
    pub fn apply_mode(&mut self, cols: &[OutCol<'a>], mode: Mode) -> R<()> {
        for c in cols {
            let Some(r) = c.origin else { continue };
            let sens = sensitive(r, self.roles());
            match mode {
                Mode::Client if self.output_masking && r.encrypt.is_none() && sens => {
                    let action = self.wire_output(r)?;
                    self.use_col(r, action);
                }
                Mode::Client => {
                    let action = refuse::check_output(r, self.roles())?;
                    self.use_col(r, action);
                }
                Mode::Scalar if sens => {
                    return Err(refuse::unsupported(r, "a subquery returning it as a value"))
                }
                Mode::Sink(what) if r.encrypt.is_some() => {
                    return Err(refuse::copy_elsewhere(r, what))
                }
                Mode::Sink(_) if sens => return Err(refuse::denied(r, "copy")),
                _ => {}
            }
        }
        Ok(())
    }

    /// A plaintext-at-rest column the client receives as a bare reference
    /// on the fast path: the session masks or nulls it by origin.
    fn wire_output(&self, r: &ColumnRule) -> R<ColumnAction> {
        let a = refuse::access(r, self.roles());
        let key = (self.ctx.hash_key_hex)(r).is_some();
        if !super::output_mask::wire_maskable(r, a, self.ctx.schema, key) {
            return Err(refuse::denied(r, "read"));
        }
        Ok(match a {
            Access::Null => ColumnAction::Null,
            _ => ColumnAction::Masked,
        })
    }

    pub fn query(
        &mut self,
        q: &mut Query,
        parent: &Scope<'a, '_>,
        mode: Mode,
    ) -> R<(Vec<OutCol<'a>>, bool)> {
        let mut scope = parent.child();
        if let Some(with) = q.with.as_mut() {
            for cte in with.cte_tables.iter_mut() {
                let name = fold(&cte.alias.name);
                if with.recursive {
                    // The self-reference inside must resolve to the CTE, not a table.
                    scope.ctes.push(CteDef {
                        name: name.clone(),
                        cols: Vec::new(),
                        complete: false,
                    });
                }
                let (cols, complete) = self.query(&mut cte.query, &scope, Mode::Derived)?;
                let mut rel = Relation {
                    alias: name.clone(),
                    table: None,
                    cols,
                    complete,
                };
                if !rel.apply_alias(&cte.alias) {
                    return Err(self.needs_schema_for(&rel, "a column list on a WITH query"));
                }
                scope.ctes.push(CteDef {
                    name,
                    cols: rel.cols,
                    complete: rel.complete,
                });
            }
        }
        let (cols, complete, rels) = self.set_expr(&mut q.body, &scope, mode)?;
        let body_scope = Scope {
            rels,
            ctes: Vec::new(),
            parent: Some(&scope),
        };
        if let Some(ob) = q.order_by.as_mut() {
            if let OrderByKind::Expressions(items) = &mut ob.kind {
                for item in items.iter_mut() {
                    self.output_ref_check(&item.expr, &cols, "ORDER BY")?;
                    self.walk(&mut item.expr, &body_scope, "ORDER BY")?;
                }
            }
        }
        if let Some(l) = &q.limit_clause {
            self.generic(l, &scope, "LIMIT/OFFSET")?;
        }
        if let Some(f) = &q.fetch {
            self.generic(f, &scope, "FETCH")?;
        }
        self.apply_mode(&cols, mode)?;
        Ok((cols, complete))
    }

    /// `ORDER BY name` / `ORDER BY 2` / `GROUP BY name` naming an output column.
    pub(super) fn output_ref_check(&self, e: &Expr, cols: &[OutCol<'a>], why: &str) -> R<()> {
        let hit = match e {
            Expr::Identifier(id) => {
                let n = fold(id);
                cols.iter().find(|c| c.name.as_deref() == Some(n.as_str()))
            }
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| cols.get(i)),
                _ => None,
            },
            _ => None,
        };
        match hit.and_then(|c| c.origin) {
            Some(r) if sensitive(r, self.roles()) => Err(refuse::unsupported(r, why)),
            _ => Ok(()),
        }
    }

    fn set_expr(
        &mut self,
        body: &mut SetExpr,
        scope: &Scope<'a, '_>,
        mode: Mode,
    ) -> R<(Vec<OutCol<'a>>, bool, Vec<Relation<'a>>)> {
        match body {
            SetExpr::Select(sel) => self.select(sel, scope, mode),
            SetExpr::Query(q) => {
                let (c, k) = self.query(q, scope, mode)?;
                Ok((c, k, Vec::new()))
            }
            SetExpr::SetOperation {
                left, right, op, ..
            } => {
                let (lc, lk, _) = self.set_expr(left, scope, Mode::Derived)?;
                let (rc, _, _) = self.set_expr(right, scope, Mode::Derived)?;
                for c in lc.iter().chain(rc.iter()) {
                    if let Some(r) = c.origin.filter(|r| sensitive(r, self.roles())) {
                        return Err(refuse::unsupported(r, &format!("{op} (a set operation)")));
                    }
                }
                let cols = lc
                    .into_iter()
                    .map(|c| OutCol {
                        name: c.name,
                        origin: None,
                    })
                    .collect();
                Ok((cols, lk, Vec::new()))
            }
            SetExpr::Values(values) => {
                let mut width = 0;
                for row in values.rows.iter_mut() {
                    width = width.max(row.len());
                    for e in row.iter_mut() {
                        self.walk(e, scope, "VALUES")?;
                    }
                }
                let cols = (1..=width)
                    .map(|i| OutCol {
                        name: Some(format!("column{i}")),
                        origin: None,
                    })
                    .collect();
                Ok((cols, true, Vec::new()))
            }
            SetExpr::Table(t) => {
                // Left by sqlparser where the text rewrite of TABLE commands
                // did not apply: read it as the SELECT * it means.
                let star = super::relations::table_command_name(t)
                    .and_then(|n| super::relations::select_star_from(&n));
                match star {
                    Some(sel) => {
                        *body = sel;
                        self.set_expr(body, scope, mode)
                    }
                    None => Err(refuse::unreadable_relation()),
                }
            }
            SetExpr::Insert(st) | SetExpr::Update(st) | SetExpr::Delete(st) => {
                let cols = self.dml(st, scope, Mode::Derived)?;
                Ok((cols, true, Vec::new()))
            }
            SetExpr::Merge(st) => {
                self.refuse_if_tagged(&*st, scope, "MERGE")?;
                Ok((Vec::new(), false, Vec::new()))
            }
        }
    }

    pub fn needs_schema_for(&self, rel: &Relation<'a>, what: &str) -> Refusal {
        let name = rel
            .table
            .as_ref()
            .map_or_else(|| rel.alias.clone(), |t| t.to_string());
        refuse::needs_schema(&name, what)
    }

    fn select(
        &mut self,
        sel: &mut Select,
        parent: &Scope<'a, '_>,
        mode: Mode,
    ) -> R<(Vec<OutCol<'a>>, bool, Vec<Relation<'a>>)> {
        let mut scope = parent.child();
        for twj in sel.from.iter_mut() {
            self.table_with_joins(twj, &mut scope)?;
        }
        if let Some(w) = sel.selection.as_mut() {
            self.walk(w, &scope, "WHERE")?;
        }
        let (cols, complete) = self.projection(&mut sel.projection, &scope)?;
        if let Some(d) = sel.distinct.as_mut() {
            if let Some(r) = cols
                .iter()
                .filter_map(|c| c.origin)
                .find(|r| sensitive(r, self.roles()))
            {
                return Err(refuse::unsupported(r, "DISTINCT"));
            }
            if let Distinct::On(exprs) = d {
                for e in exprs.iter_mut() {
                    self.output_ref_check(e, &cols, "DISTINCT ON")?;
                    self.walk(e, &scope, "DISTINCT ON")?;
                }
            }
        }
        if let GroupByExpr::Expressions(exprs, _) = &mut sel.group_by {
            for e in exprs.iter_mut() {
                if self.groupable(e, &scope)? {
                    continue;
                }
                self.output_ref_check(e, &cols, "GROUP BY")?;
                self.walk(e, &scope, "GROUP BY")?;
            }
        } else {
            self.refuse_if_sensitive_in_scope(&scope, "GROUP BY ALL")?;
        }
        if let Some(h) = sel.having.as_mut() {
            self.walk(h, &scope, "HAVING")?;
        }
        for w in sel.named_window.iter() {
            self.generic(w, &scope, "a window definition")?;
        }
        for e in sel
            .cluster_by
            .iter()
            .chain(sel.distribute_by.iter())
            .chain(sel.prewhere.iter())
            .chain(sel.qualify.iter())
        {
            self.generic(e, &scope, "this clause")?;
        }
        for o in sel.sort_by.iter() {
            self.generic(o, &scope, "SORT BY")?;
        }
        if !sel.lateral_views.is_empty() || sel.connect_by.is_some() {
            self.refuse_if_sensitive_in_scope(&scope, "this clause")?;
        }
        if sel.into.is_some() {
            self.apply_mode(&cols, Mode::Sink("a new table (SELECT INTO)"))?;
        }
        let _ = mode;
        Ok((cols, complete, scope.rels))
    }

    pub(super) fn refuse_if_sensitive_in_scope(&self, scope: &Scope<'a, '_>, why: &str) -> R<()> {
        for rel in &scope.rels {
            if let Some(r) = rel
                .cols
                .iter()
                .filter_map(|c| c.origin)
                .find(|r| sensitive(r, self.roles()))
            {
                return Err(refuse::unsupported(r, why));
            }
        }
        Ok(())
    }

    /// Select list or RETURNING: plain references keep their origin; `*` and
    /// `t.*` expand to the relations' known columns.
    pub fn projection(
        &mut self,
        items: &mut [SelectItem],
        scope: &Scope<'a, '_>,
    ) -> R<(Vec<OutCol<'a>>, bool)> {
        let mut cols = Vec::new();
        let mut complete = true;
        for item in items.iter_mut() {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let (name, origin) = self.projection_item(e, scope)?;
                    cols.push(OutCol { name, origin });
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let name = Some(fold(alias));
                    let (_, origin) = self.projection_item(expr, scope)?;
                    cols.push(OutCol { name, origin });
                }
                SelectItem::Wildcard(_) => {
                    for rel in &scope.rels {
                        cols.extend(rel.cols.iter().cloned());
                        complete &= rel.complete;
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(n) => {
                        let rel = fold_name(n).and_then(|p| scope.wildcard_rel(&p).cloned());
                        match rel {
                            Some(rel) => {
                                cols.extend(rel.cols.iter().cloned());
                                complete &= rel.complete;
                            }
                            None => complete = false,
                        }
                    }
                    SelectItemQualifiedWildcardKind::Expr(e) => {
                        if let Some(r) = self.sensitive_ref(e, scope) {
                            return Err(refuse::unsupported(r, "(composite).*"));
                        }
                        self.walk(e, scope, "(expression).*")?;
                        complete = false;
                    }
                },
            }
        }
        Ok((cols, complete))
    }

    fn projection_item(
        &mut self,
        e: &mut Expr,
        scope: &Scope<'a, '_>,
    ) -> R<(Option<String>, Option<&'a ColumnRule>)> {
        self.field_of_relation(e, scope);
        match self.colref(e, scope) {
            Some(ColRef::Column(origin)) => {
                let name = match strip_nested(e) {
                    Expr::Identifier(id) => Some(fold(id)),
                    Expr::CompoundIdentifier(ids) => ids.last().map(fold),
                    _ => None,
                };
                Ok((name, origin))
            }
            _ => {
                self.walk(e, scope, "an expression in the select list")?;
                let name = match strip_nested(e) {
                    Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(fold),
                    _ => None,
                };
                Ok((name, None))
            }
        }
    }
}

fn strip_nested(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => strip_nested(inner),
        other => other,
    }
}

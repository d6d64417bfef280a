//! The expression walk: rewrites equality on encrypted columns into
//! ciphertext comparisons and refuses every other use of a sensitive column
//! (see the `query` module docs for the rule it enforces).

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, AccessExpr, BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, UnaryOperator, Value, Visit, WindowType,
};

use crate::rules::model::{ColumnRule, EncryptMode};

use super::encrypt::{self, Operand};
use super::query::{Analyzer, Mode, R};
use super::refuse::{self, sensitive};
use super::resolve::{fold_name, ColRef, Scope};
use super::{ColumnAction, ParamUse};

impl<'a> Analyzer<'a, '_> {
    /// Refuses `v` if it references a sensitive column or a tagged table
    /// anywhere, for constructs this module does not analyse in detail.
    pub fn generic<V: Visit>(&self, v: &V, scope: &Scope<'a, '_>, why: &str) -> R<()> {
        let roles = self.roles();
        let r = visit_expressions(v, |e| {
            let hit = match e {
                Expr::Identifier(_) | Expr::CompoundIdentifier(_) => match self.colref(e, scope) {
                    Some(ColRef::Column(Some(r)) | ColRef::FieldOf(Some(r)))
                        if sensitive(r, roles) =>
                    {
                        Some(refuse::misuse(r, roles, why))
                    }
                    Some(ColRef::WholeRow(Some(r))) => {
                        Some(refuse::whole_row(&r.table.to_string()))
                    }
                    _ => None,
                },
                Expr::QualifiedWildcard(n, _) => fold_name(n)
                    .and_then(|p| scope.wildcard_rel(&p).and_then(|rel| rel.first_origin()))
                    .map(|r| refuse::whole_row(&r.table.to_string())),
                _ => None,
            };
            match hit {
                Some(h) => ControlFlow::Break(h),
                None => ControlFlow::Continue(()),
            }
        });
        if let ControlFlow::Break(h) = r {
            return Err(h);
        }
        self.refuse_if_tagged(v, scope, why)
    }

    /// Refuses when `v` names a tagged table (or a CTE carrying sensitive columns).
    pub fn refuse_if_tagged<V: Visit>(&self, v: &V, scope: &Scope<'a, '_>, why: &str) -> R<()> {
        let roles = self.roles();
        for rel in super::relations::relations(v) {
            let Some(n) = rel else {
                return Err(refuse::unreadable_relation());
            };
            if let Some(parts) = fold_name(&n) {
                if let [single] = parts.as_slice() {
                    if let Some(c) = scope.cte(single) {
                        if let Some(r) = c
                            .cols
                            .iter()
                            .filter_map(|c| c.origin)
                            .find(|r| sensitive(r, roles))
                        {
                            return Err(refuse::unsupported(r, why));
                        }
                        continue;
                    }
                }
            }
            if let Some(t) = self.res.table(&n) {
                return Err(refuse::unsupported_statement(
                    &format!("a subquery inside {why}"),
                    &t.to_string(),
                ));
            }
        }
        Ok(())
    }

    /// The expression walk (see module docs). `why` names the enclosing
    /// construct for refusal messages.
    pub fn walk(&mut self, e: &mut Expr, scope: &Scope<'a, '_>, why: &str) -> R<()> {
        self.field_of_relation(e, scope);
        match e {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => match self.colref(e, scope) {
                Some(ColRef::Column(Some(r))) if sensitive(r, self.roles()) => {
                    Err(refuse::misuse(r, self.roles(), why))
                }
                Some(ColRef::Column(Some(r))) => {
                    self.use_col(r, ColumnAction::Plaintext);
                    Ok(())
                }
                Some(ColRef::FieldOf(Some(r))) if sensitive(r, self.roles()) => {
                    Err(refuse::misuse(r, self.roles(), "field access"))
                }
                Some(ColRef::WholeRow(Some(r))) => Err(refuse::whole_row(&r.table.to_string())),
                _ => Ok(()),
            },
            Expr::Nested(inner) => self.walk(inner, scope, why),
            Expr::Value(_) | Expr::TypedString(_) => Ok(()),
            Expr::BinaryOp {
                op: BinaryOperator::Eq | BinaryOperator::NotEq,
                ..
            } => {
                if self.comparison(e, scope)? {
                    return Ok(());
                }
                let Expr::BinaryOp { left, op, right } = e else {
                    return Ok(());
                };
                let w = format!("operator {op}");
                self.walk(left, scope, &w)?;
                self.walk(right, scope, &w)
            }
            Expr::BinaryOp { left, op, right } => {
                let w = match op {
                    BinaryOperator::And | BinaryOperator::Or => why.to_string(),
                    BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq => {
                        format!("range comparison ({op})")
                    }
                    _ => format!("operator {op}"),
                };
                self.walk(left, scope, &w)?;
                self.walk(right, scope, &w)
            }
            Expr::UnaryOp { op, expr } => {
                let w = if matches!(op, UnaryOperator::Not) {
                    why.to_string()
                } else {
                    format!("operator {op}")
                };
                self.walk(expr, scope, &w)
            }
            other => self.walk_compound(other, scope, why),
        }
    }

    /// The rest of [`Self::walk`]: predicates, subqueries, functions, casts,
    /// CASE and row constructors.
    fn walk_compound(&mut self, e: &mut Expr, scope: &Scope<'a, '_>, why: &str) -> R<()> {
        match e {
            Expr::InList { expr, list, .. } => {
                if self.sensitive_ref(expr, scope).is_some() {
                    return self.in_list(e, scope);
                }
                self.walk(expr, scope, "IN")?;
                for item in list.iter_mut() {
                    self.walk(item, scope, "an IN list")?;
                }
                Ok(())
            }
            Expr::InSubquery { expr, subquery, .. } => {
                let (cols, _) = self.query(subquery, scope, Mode::Derived)?;
                let sub = cols.first().and_then(|c| c.origin);
                match self.sensitive_ref(expr, scope) {
                    Some(r) => self.join_pair(Some(r), sub),
                    None => {
                        if let Some(r) = sub.filter(|r| sensitive(r, self.roles())) {
                            return Err(refuse::unsupported(r, "IN (subquery)"));
                        }
                        self.walk(expr, scope, "IN (subquery)")
                    }
                }
            }
            Expr::Exists { subquery, .. } => self.query(subquery, scope, Mode::Ignore).map(|_| ()),
            Expr::Subquery(q) => self.query(q, scope, Mode::Scalar).map(|_| ()),
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                match self.sensitive_ref(inner, scope) {
                    Some(r) => {
                        refuse::check_predicate(r, self.roles())?;
                        if r.encrypt.is_none() {
                            return Err(refuse::unsupported(r, "IS NULL"));
                        }
                        self.use_col(r, ColumnAction::Match);
                        Ok(())
                    }
                    None => self.walk(inner, scope, "IS NULL"),
                }
            }
            Expr::Function(f) => self.function(f, scope),
            Expr::Cast {
                expr, data_type, ..
            } => self.walk(expr, scope, &format!("a cast to {data_type}")),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(o) = operand {
                    self.walk(o, scope, "CASE")?;
                }
                for cw in conditions.iter_mut() {
                    self.walk(&mut cw.condition, scope, why)?;
                    self.walk(&mut cw.result, scope, "a CASE result")?;
                }
                if let Some(el) = else_result {
                    self.walk(el, scope, "a CASE result")?;
                }
                Ok(())
            }
            Expr::Like { expr, pattern, .. }
            | Expr::ILike { expr, pattern, .. }
            | Expr::SimilarTo { expr, pattern, .. } => {
                self.walk(expr, scope, "LIKE/ILIKE/SIMILAR TO")?;
                self.walk(pattern, scope, "LIKE/ILIKE/SIMILAR TO")
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.walk(expr, scope, "range comparison (BETWEEN)")?;
                self.walk(low, scope, "range comparison (BETWEEN)")?;
                self.walk(high, scope, "range comparison (BETWEEN)")
            }
            Expr::Tuple(items) => {
                for i in items.iter_mut() {
                    self.walk(i, scope, "a row constructor")?;
                }
                Ok(())
            }
            other => self.generic(&*other, scope, "this expression"),
        }
    }

    /// `(rel).col`, field selection from a relation's whole row, is the
    /// column `rel.col`; rewritten so, it is analysed (masked table,
    /// origin, access) and served (RowDescription origin) like one. Only
    /// when `rel` names a relation and no column: Postgres reads `(x)` as a
    /// column first, and a composite column's field stays refused.
    pub(super) fn field_of_relation(&self, e: &mut Expr, scope: &Scope<'a, '_>) {
        let Expr::CompoundFieldAccess { root, access_chain } = e else {
            return;
        };
        let (Expr::Nested(inner), [AccessExpr::Dot(Expr::Identifier(col))]) =
            (root.as_ref(), access_chain.as_slice())
        else {
            return;
        };
        let Expr::Identifier(rel) = inner.as_ref() else {
            return;
        };
        let name = super::resolve::fold(rel);
        let here = std::slice::from_ref(&name);
        if matches!(
            scope.column(here),
            Some(ColRef::Column(_) | ColRef::FieldOf(_))
        ) || scope.wildcard_rel(here).is_none()
        {
            return;
        }
        *e = Expr::CompoundIdentifier(vec![rel.clone(), col.clone()]);
    }

    fn function(&mut self, f: &mut Function, scope: &Scope<'a, '_>) -> R<()> {
        let w = format!("function {}()", f.name);
        match &mut f.args {
            FunctionArguments::List(list) => {
                for arg in list.args.iter_mut() {
                    let a = match arg {
                        FunctionArg::Unnamed(a)
                        | FunctionArg::Named { arg: a, .. }
                        | FunctionArg::ExprNamed { arg: a, .. } => a,
                    };
                    match a {
                        FunctionArgExpr::Expr(e) => self.walk(e, scope, &w)?,
                        FunctionArgExpr::Wildcard => {}
                        FunctionArgExpr::QualifiedWildcard(n) => {
                            if let Some(r) = fold_name(n)
                                .and_then(|p| scope.wildcard_rel(&p).and_then(|r| r.first_origin()))
                            {
                                return Err(refuse::whole_row(&r.table.to_string()));
                            }
                        }
                    }
                }
                for c in list.clauses.iter() {
                    self.generic(c, scope, &w)?;
                }
            }
            FunctionArguments::Subquery(q) => {
                self.query(q, scope, Mode::Scalar)?;
            }
            FunctionArguments::None => {}
        }
        self.generic(&f.parameters, scope, &w)?;
        if let Some(filter) = f.filter.as_mut() {
            self.walk(filter, scope, "FILTER (WHERE …)")?;
        }
        if let Some(WindowType::WindowSpec(spec)) = &f.over {
            self.generic(spec, scope, "a window PARTITION BY / ORDER BY")?;
        }
        for o in f.within_group.iter() {
            self.generic(o, scope, "WITHIN GROUP ordering")?;
        }
        Ok(())
    }

    /// `col = x` / `col <> x` with `col` sensitive. Returns false when neither
    /// side is a sensitive column.
    fn comparison(&mut self, e: &mut Expr, scope: &Scope<'a, '_>) -> R<bool> {
        let Expr::BinaryOp { left, op, right } = e else {
            return Ok(false);
        };
        let negated = matches!(op, BinaryOperator::NotEq);
        let (rule, col, other) = match (
            self.sensitive_ref(left, scope),
            self.sensitive_ref(right, scope),
        ) {
            (Some(r), _) => (r, left, right),
            (None, Some(r)) => (r, right, left),
            (None, None) => return Ok(false),
        };
        if let Some(r2) = self.sensitive_ref(other, scope) {
            self.join_pair(Some(rule), Some(r2))?;
            return Ok(true);
        }
        self.predicate_rule(rule)?;
        let new = match encrypt::operand(other, rule.ty) {
            Some(Operand::Null) => return Ok(true),
            Some(Operand::Literal(text)) => {
                let cts = encrypt::match_literals(self.ctx, rule, &text)?;
                self.use_col(rule, ColumnAction::Match);
                Expr::InList {
                    expr: col.clone(),
                    list: cts.iter().map(|c| encrypt::bytea_literal(c)).collect(),
                    negated,
                }
            }
            Some(Operand::Param(n)) => {
                self.set_param(n, rule, ParamUse::Match)?;
                any_all(col.as_ref().clone(), n, negated)
            }
            _ => return Err(refuse::join_mismatch(rule, None)),
        };
        *e = Expr::Nested(Box::new(new));
        Ok(true)
    }

    /// Access and mode checks for a sensitive column used in equality.
    fn predicate_rule(&self, rule: &ColumnRule) -> R<()> {
        refuse::check_predicate(rule, self.roles())?;
        match rule.encrypt {
            Some(EncryptMode::Deterministic) => Ok(()),
            Some(EncryptMode::Randomized) => Err(refuse::randomized_equality(rule)),
            None => Err(refuse::unsupported(rule, "a comparison")),
        }
    }

    /// `col [NOT] IN (…)` with `col` sensitive: every item must be a literal,
    /// parameter or NULL; literals expand to every key version.
    fn in_list(&mut self, e: &mut Expr, scope: &Scope<'a, '_>) -> R<()> {
        let Expr::InList {
            expr,
            list,
            negated,
        } = e
        else {
            return Ok(());
        };
        let Some(rule) = self.sensitive_ref(expr, scope) else {
            return Ok(());
        };
        self.predicate_rule(rule)?;
        let mut lits = Vec::new();
        let mut params = Vec::new();
        for item in list.iter() {
            match encrypt::operand(item, rule.ty) {
                Some(Operand::Null) => lits.push(Expr::value(Value::Null)),
                Some(Operand::Literal(t)) => {
                    for c in encrypt::match_literals(self.ctx, rule, &t)? {
                        lits.push(encrypt::bytea_literal(&c));
                    }
                }
                Some(Operand::Param(n)) => params.push(n),
                _ => return Err(refuse::join_mismatch(rule, self.sensitive_ref(item, scope))),
            }
        }
        self.use_col(rule, ColumnAction::Match);
        let negated = *negated;
        let mut parts = Vec::new();
        if !lits.is_empty() {
            parts.push(Expr::InList {
                expr: expr.clone(),
                list: lits,
                negated,
            });
        }
        for n in params {
            self.set_param(n, rule, ParamUse::Match)?;
            parts.push(any_all(expr.as_ref().clone(), n, negated));
        }
        let op = if negated {
            BinaryOperator::And
        } else {
            BinaryOperator::Or
        };
        let Some(combined) = parts.into_iter().reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: op.clone(),
            right: Box::new(b),
        }) else {
            return Ok(());
        };
        *e = Expr::Nested(Box::new(combined));
        Ok(())
    }
}

/// `col = ANY($n::bytea[])` or `col <> ALL($n::bytea[])`.
fn any_all(col: Expr, n: usize, negated: bool) -> Expr {
    let right = Box::new(encrypt::param_cast(n, true));
    if negated {
        Expr::AllOp {
            left: Box::new(col),
            compare_op: BinaryOperator::NotEq,
            right,
        }
    } else {
        Expr::AnyOp {
            left: Box::new(col),
            compare_op: BinaryOperator::Eq,
            right,
            is_some: false,
        }
    }
}

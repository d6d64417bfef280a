//! `INSERT … SELECT v.a, v.b::type … FROM (VALUES (…), …) AS v(a, b, …)`:
//! the multi-row INSERT SQLAlchemy 2 sends by default ("insertmanyvalues"),
//! with every value a bound parameter and an ORDER BY on a sentinel column.
//!
//! The values are not computed in the database: each one travels from a
//! VALUES cell, unchanged, into a target column. When a target is
//! encrypted, the cells of its VALUES column are encrypted where they stand
//! (literals and parameters, through a cast to the column's own type, as in
//! a plain VALUES list) and the select item becomes the bare column, so the
//! ciphertext reaches the target as `bytea`. Anything else (an expression in
//! a cell, a VALUES column used twice, a WHERE, a join, GROUP BY, LIMIT) is
//! left to the ordinary analysis, which refuses writes of query results into
//! encrypted columns.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, CastKind, Expr, GroupByExpr, Ident, Query, Select, SelectItem, SetExpr,
    TableFactor,
};

use crate::rules::model::ColumnRule;

use super::encrypt::type_matches;
use super::query::{Analyzer, R};
use super::resolve::{fold, Scope};

impl<'a> Analyzer<'a, '_> {
    /// Encrypts, in place, the VALUES cells that flow straight into the
    /// encrypted targets of an `INSERT … SELECT … FROM (VALUES …)`. Returns
    /// the indices of the select items (= targets) it took care of.
    pub(super) fn values_flow(
        &mut self,
        src: &mut Query,
        targets: &[Option<&'a ColumnRule>],
    ) -> R<HashSet<usize>> {
        let mut done = HashSet::new();
        if src.with.is_some() || src.limit_clause.is_some() || src.fetch.is_some() {
            return Ok(done);
        }
        let order_refs = match &src.order_by {
            Some(ob) => column_refs(ob),
            None => Vec::new(),
        };
        let SetExpr::Select(sel) = src.body.as_mut() else {
            return Ok(done);
        };
        let Some(value_cols) = plain_values_source(sel) else {
            return Ok(done);
        };
        let mut refs = column_refs(&sel.projection);
        refs.extend(order_refs);
        let empty = Scope::default();
        for (i, item) in sel.projection.iter_mut().enumerate() {
            let Some(rule) = targets.get(i).copied().flatten() else {
                continue;
            };
            if rule.encrypt.is_none() {
                continue;
            }
            let expr = match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                _ => continue,
            };
            let Some(id) = passed_through(expr, rule) else {
                continue;
            };
            let name = fold(&id);
            let Some(k) = value_cols.iter().position(|c| *c == name) else {
                continue;
            };
            // The column must reach this target and nothing else.
            if refs.iter().filter(|r| **r == name).count() != 1 {
                continue;
            }
            let TableFactor::Derived { subquery, .. } = &mut sel.from[0].relation else {
                continue;
            };
            let SetExpr::Values(values) = subquery.body.as_mut() else {
                continue;
            };
            for row in values.rows.iter_mut() {
                if let Some(cell) = row.get_mut(k) {
                    self.write_value(cell, rule, &empty)?;
                }
            }
            *expr = Expr::Identifier(id);
            done.insert(i);
        }
        Ok(done)
    }
}

/// The VALUES column names when `sel` is exactly `SELECT … FROM (VALUES …)
/// AS v(cols)` with nothing that computes over rows (no WHERE, join, GROUP
/// BY, HAVING, DISTINCT, window).
fn plain_values_source(sel: &Select) -> Option<Vec<String>> {
    let plain = sel.selection.is_none()
        && sel.having.is_none()
        && sel.distinct.is_none()
        && sel.named_window.is_empty()
        && sel.qualify.is_none()
        && sel.into.is_none()
        && sel.lateral_views.is_empty()
        && matches!(&sel.group_by, GroupByExpr::Expressions(v, m) if v.is_empty() && m.is_empty())
        && sel.from.len() == 1
        && sel.from[0].joins.is_empty();
    if !plain {
        return None;
    }
    let TableFactor::Derived {
        lateral: false,
        subquery,
        alias,
    } = &sel.from[0].relation
    else {
        return None;
    };
    let q = subquery.as_ref();
    if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() {
        return None;
    }
    let SetExpr::Values(values) = q.body.as_ref() else {
        return None;
    };
    let width = values.rows.first()?.len();
    let named: Vec<String> = alias
        .as_ref()
        .map(|a| a.columns.iter().map(|c| fold(&c.name)).collect())
        .unwrap_or_default();
    Some(
        (0..width)
            .map(|i| named.get(i).cloned().unwrap_or(format!("column{}", i + 1)))
            .collect(),
    )
}

/// The VALUES column a select item passes through unchanged: `col`,
/// `v.col`, or either cast to the target's own logical type.
fn passed_through(e: &Expr, rule: &ColumnRule) -> Option<Ident> {
    match e {
        Expr::Nested(inner) => passed_through(inner, rule),
        Expr::Identifier(id) => Some(id.clone()),
        Expr::CompoundIdentifier(ids) if ids.len() == 2 => ids.last().cloned(),
        Expr::Cast {
            kind: CastKind::DoubleColon | CastKind::Cast,
            expr,
            data_type,
            format: None,
        } if type_matches(data_type, rule.ty) => passed_through(expr, rule),
        _ => None,
    }
}

/// The last part of every column reference in `v`, folded.
fn column_refs<V: sqlparser::ast::Visit>(v: &V) -> Vec<String> {
    let mut out = Vec::new();
    let _ = visit_expressions(v, |e| {
        match e {
            Expr::Identifier(id) => out.push(fold(id)),
            Expr::CompoundIdentifier(ids) => out.extend(ids.last().map(fold)),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    out
}

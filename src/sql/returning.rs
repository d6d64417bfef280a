//! RETURNING of a write target, for restricted sessions: plaintext-at-rest
//! columns the session may read masked are returned masked.
//!
//! The target of INSERT/UPDATE/DELETE stays a table (it cannot be the
//! masked derived table), so its plaintext-at-rest columns keep their rule
//! as origin and a bare `RETURNING full_name` would hand out the raw value.
//! Each such item is replaced by the same masking expression the derived
//! table uses (`mask::sql_expr`, or a typed NULL for `null`), and `*` /
//! `target.*` over the target alone is expanded into its columns first.
//! `deny` columns stay refused. Encrypted columns need nothing: the session
//! decrypts and masks them by RowDescription origin.

use sqlparser::ast::{Expr, Ident, SelectItem, SelectItemQualifiedWildcardKind};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::rules::model::{Access, ColumnRule};

use super::query::{Analyzer, R};
use super::refuse::{self, access};
use super::resolve::{fold_name, ColRef, OutCol, Relation, Scope};
use super::ColumnAction;

impl<'a> Analyzer<'a, '_> {
    /// Rewrites `items` (see module docs) and returns the output columns,
    /// masked ones without origin.
    pub(super) fn masked_returning(
        &mut self,
        items: &mut Vec<SelectItem>,
        target: Option<&Relation<'a>>,
        scope: &Scope<'a, '_>,
    ) -> R<Vec<OutCol<'a>>> {
        if let Some(t) = target {
            expand_target_wildcards(items, t, scope.rels.len());
        }
        // Items served masked, analysed as `NULL AS name` (nothing to check),
        // then replaced by their masking expression.
        let mut analysed = items.clone();
        let mut masked: Vec<(usize, Expr, String, &'a ColumnRule)> = Vec::new();
        for (i, item) in analysed.iter_mut().enumerate() {
            let (e, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e.clone(), None),
                SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
                _ => continue,
            };
            let Some(ColRef::Column(Some(r))) = self.colref(&e, scope) else {
                continue;
            };
            if r.encrypt.is_some()
                || !matches!(access(r, self.roles()), Access::Mask(_) | Access::Null)
            {
                continue;
            }
            let name = alias.map_or_else(|| r.name.clone(), |a| a.value);
            *item = SelectItem::ExprWithAlias {
                expr: Expr::value(sqlparser::ast::Value::Null),
                alias: Ident::with_quote('"', name.clone()),
            };
            masked.push((i, e, name, r));
        }
        let (mut cols, _) = self.projection(&mut analysed, scope)?;
        for (i, e, name, r) in masked {
            let sql = self.served_sql(r, e.to_string())?;
            let expr = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_expr())
                .map_err(|_| {
                    refuse::mask_failed(&r.table, "the masking expression does not parse")
                })?;
            items[i] = SelectItem::ExprWithAlias {
                expr,
                alias: Ident::with_quote('"', name.clone()),
            };
            let action = match access(r, self.roles()) {
                Access::Null => ColumnAction::Null,
                _ => ColumnAction::Masked,
            };
            self.use_col(r, action);
            if let Some(c) = cols.get_mut(i) {
                *c = OutCol {
                    name: Some(name),
                    origin: None,
                };
            }
        }
        Ok(cols)
    }
}

/// `*` when the target is the only relation, and `target.*`, become the
/// target's columns, qualified by its alias, when they are all known.
fn expand_target_wildcards(items: &mut Vec<SelectItem>, t: &Relation<'_>, rels: usize) {
    if !t.complete || t.first_origin().is_none() {
        return;
    }
    let columns = || {
        t.cols
            .iter()
            .filter_map(|c| c.name.as_ref())
            .map(|n| {
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(vec![
                    Ident::with_quote('"', t.alias.clone()),
                    Ident::with_quote('"', n.clone()),
                ]))
            })
            .collect::<Vec<_>>()
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        let is_target = match &item {
            SelectItem::Wildcard(_) => rels == 1,
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), _) => {
                fold_name(n).is_some_and(|p| p.last() == Some(&t.alias))
            }
            _ => false,
        };
        if is_target {
            out.extend(columns());
        } else {
            out.push(item);
        }
    }
    *items = out;
}

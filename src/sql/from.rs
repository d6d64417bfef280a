//! FROM items: tables, CTE references, derived tables, nested joins and
//! join constraints, added to the scope of the query level they belong to.

use sqlparser::ast::{
    Join, JoinConstraint, JoinOperator, ObjectName, TableAlias, TableFactor, TableFunctionArgs,
    TableWithJoins,
};

use crate::rules::model::{ColumnRule, EncryptMode};

use super::query::{same_rule, Analyzer, Mode, R};
use super::refuse::{self, sensitive};
use super::resolve::{fold, fold_name, Relation, Scope};
use super::ColumnAction;

impl<'a> Analyzer<'a, '_> {
    pub fn table_with_joins(
        &mut self,
        twj: &mut TableWithJoins,
        scope: &mut Scope<'a, '_>,
    ) -> R<()> {
        self.add_from_item(&mut twj.relation, scope)?;
        for join in twj.joins.iter_mut() {
            self.join(join, scope)?;
        }
        Ok(())
    }

    fn join(&mut self, join: &mut Join, scope: &mut Scope<'a, '_>) -> R<()> {
        let before = scope.rels.len();
        self.add_from_item(&mut join.relation, scope)?;
        let constraint = match &mut join.join_operator {
            JoinOperator::Join(c)
            | JoinOperator::Inner(c)
            | JoinOperator::Left(c)
            | JoinOperator::LeftOuter(c)
            | JoinOperator::Right(c)
            | JoinOperator::RightOuter(c)
            | JoinOperator::FullOuter(c)
            | JoinOperator::CrossJoin(c)
            | JoinOperator::Semi(c)
            | JoinOperator::LeftSemi(c)
            | JoinOperator::RightSemi(c)
            | JoinOperator::Anti(c)
            | JoinOperator::LeftAnti(c)
            | JoinOperator::RightAnti(c)
            | JoinOperator::StraightJoin(c) => c,
            JoinOperator::AsOf { .. } | JoinOperator::CrossApply | JoinOperator::OuterApply => {
                return self.refuse_if_sensitive_in_scope(scope, "this kind of join");
            }
        };
        match constraint {
            JoinConstraint::On(e) => {
                let s: &Scope<'a, '_> = scope;
                self.walk(e, s, "a join condition")?;
            }
            JoinConstraint::Using(names) => {
                for n in names.iter() {
                    let Some(parts) = fold_name(n) else { continue };
                    let Some(col) = parts.last() else { continue };
                    let left = scope.rels[..before]
                        .iter()
                        .find_map(|r| r.column(col))
                        .flatten();
                    let right = scope.rels[before..]
                        .iter()
                        .find_map(|r| r.column(col))
                        .flatten();
                    self.join_pair(left, right)?;
                }
            }
            JoinConstraint::Natural => {
                self.refuse_if_sensitive_in_scope(scope, "NATURAL JOIN")?;
            }
            JoinConstraint::None => {}
        }
        Ok(())
    }

    /// Equality between two columns: allowed only for the same deterministic rule.
    pub(super) fn join_pair(
        &mut self,
        a: Option<&'a ColumnRule>,
        b: Option<&'a ColumnRule>,
    ) -> R<()> {
        let roles = self.roles();
        let a = a.filter(|r| sensitive(r, roles));
        let b = b.filter(|r| sensitive(r, roles));
        match (a, b) {
            (None, None) => Ok(()),
            (Some(x), Some(y))
                if same_rule(x, y) && x.encrypt == Some(EncryptMode::Deterministic) =>
            {
                refuse::check_predicate(x, roles)?;
                // Column-to-column equality compares stored ciphertexts: exact
                // only while one key version is live (rows written under two
                // keys would silently fail to match).
                if self.ctx.encryptor.live_versions(x) > 1 {
                    return Err(refuse::rotation_in_progress(
                        x,
                        "a join or comparison between two columns",
                    ));
                }
                self.use_col(x, ColumnAction::Match);
                Ok(())
            }
            (Some(x), other) | (other, Some(x)) => {
                refuse::check_predicate(x, roles)?;
                if x.encrypt == Some(EncryptMode::Randomized) {
                    return Err(refuse::randomized_equality(x));
                }
                if x.encrypt.is_none() {
                    return Err(refuse::unsupported(x, "a join condition"));
                }
                Err(refuse::join_mismatch(x, other))
            }
        }
    }

    /// Adds one FROM item to the scope. A protected table becomes its masked
    /// derived table here (see `masked`), unless it is a write target.
    pub fn add_from_item(&mut self, tf: &mut TableFactor, scope: &mut Scope<'a, '_>) -> R<()> {
        let target = std::mem::take(&mut self.in_target);
        if let Some(t) = self.protected_ref(tf, scope, target) {
            self.record_table(&t);
            let rel = self.mask_table(tf, &t)?;
            scope.rels.push(rel);
            return Ok(());
        }
        match tf {
            TableFactor::Table {
                name, alias, args, ..
            } => self.add_table_ref(name, alias.as_ref(), args.as_ref(), scope)?,
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                // LATERAL or not, seeing the earlier items is harmless: it can
                // only resolve more names, never fewer.
                let (cols, complete) = {
                    let s: &Scope<'a, '_> = scope;
                    self.query(subquery, s, Mode::Derived)?
                };
                let mut rel = Relation {
                    alias: String::new(),
                    table: None,
                    cols,
                    complete,
                };
                if let Some(a) = alias {
                    if !rel.apply_alias(a) {
                        return Err(self.needs_schema_for(&rel, "a column alias list"));
                    }
                }
                scope.rels.push(rel);
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let mut inner = Scope::default();
                self.table_with_joins(table_with_joins, &mut inner)?;
                match alias {
                    Some(a) => {
                        let mut rel = Relation {
                            alias: String::new(),
                            table: None,
                            cols: inner
                                .rels
                                .iter()
                                .flat_map(|r| r.cols.iter().cloned())
                                .collect(),
                            complete: inner.rels.iter().all(|r| r.complete),
                        };
                        if !rel.apply_alias(a) {
                            return Err(self.needs_schema_for(&rel, "a column alias list"));
                        }
                        scope.rels.push(rel);
                    }
                    None => scope.rels.extend(inner.rels),
                }
            }
            other => {
                self.generic(&*other, scope, "this FROM item")?;
                let alias = match other {
                    TableFactor::Function { alias, .. }
                    | TableFactor::UNNEST { alias, .. }
                    | TableFactor::TableFunction { alias, .. } => {
                        alias.as_ref().map(|a| fold(&a.name))
                    }
                    _ => None,
                };
                scope.rels.push(Relation::opaque(alias.unwrap_or_default()));
            }
        }
        Ok(())
    }

    /// A named FROM item that is not replaced by a masked derived table: a
    /// CTE, a tagged table, an untagged table, or a table function.
    fn add_table_ref(
        &mut self,
        name: &ObjectName,
        alias: Option<&TableAlias>,
        args: Option<&TableFunctionArgs>,
        scope: &mut Scope<'a, '_>,
    ) -> R<()> {
        let parts = fold_name(name).unwrap_or_default();
        let last = parts.last().cloned().unwrap_or_default();
        if let Some(args) = args {
            for a in args.args.iter() {
                self.generic(a, scope, "a table function argument")?;
            }
            let mut rel = Relation::opaque(last);
            if let Some(a) = alias {
                let _ = rel.apply_alias(a);
            }
            scope.rels.push(rel);
            return Ok(());
        }
        let mut rel = match (parts.len(), scope.cte(&last)) {
            (1, Some(cte)) => Relation {
                alias: last.clone(),
                table: None,
                cols: cte.cols.clone(),
                complete: cte.complete,
            },
            _ => match self.res.table(name) {
                Some(t) => {
                    self.record_table(&t);
                    self.res.relation(&t)
                }
                None => Relation::opaque(last),
            },
        };
        if let Some(a) = alias {
            if !rel.apply_alias(a) {
                return Err(self.needs_schema_for(&rel, "a column alias list"));
            }
        }
        scope.rels.push(rel);
        Ok(())
    }
}

//! Name resolution: which table a name in FROM means and which column a
//! reference in an expression means, the way Postgres decides it.
//!
//! Kept apart from the encryption rewrite because the masking rewrite (issue
//! 4) needs exactly the same answers: it replaces every reference to a
//! protected table with a masked derived table, and must agree with Postgres
//! on what "a reference" is. Folding is ASCII-only lower-casing of unquoted
//! identifiers (UTF-8 databases); unqualified tables go through the
//! search_path; CTE names shadow tables.
//!
//! When in doubt the resolver answers "tagged": a wrong "tagged" costs a
//! refusal or a failed comparison, a wrong "untagged" could leak.

use sqlparser::ast::{Ident, ObjectName, TableAlias};

use crate::rules::model::{ColumnRule, RuleSet, TableName};
use crate::schema::SchemaSnapshot;

/// One identifier as Postgres stores it (folding and truncation to 63
/// bytes; see [`crate::ident::normalize`]). Every name from a statement is
/// compared through this.
pub fn fold(ident: &Ident) -> String {
    crate::ident::normalize(&ident.value, ident.quote_style.is_some())
}

/// The folded parts of a dotted name; `None` for function-call parts.
pub fn fold_name(name: &ObjectName) -> Option<Vec<String>> {
    name.0.iter().map(|p| p.as_ident().map(fold)).collect()
}

/// One output column of a relation: its name, and the tagged column it is a
/// plain copy of, if any (the RowDescription origin Postgres will report).
#[derive(Debug, Clone)]
pub struct OutCol<'a> {
    pub name: Option<String>,
    pub origin: Option<&'a ColumnRule>,
}

/// A FROM item as seen by column references.
#[derive(Debug, Clone)]
pub struct Relation<'a> {
    /// The name references use: the alias, or the table's own name.
    pub alias: String,
    /// The tagged table behind it when it is one directly (for `s.t.col`).
    pub table: Option<TableName>,
    /// Known columns, in order when `complete`.
    pub cols: Vec<OutCol<'a>>,
    /// Whether `cols` lists every column (schema known, or a derived table).
    pub complete: bool,
}

impl<'a> Relation<'a> {
    pub fn opaque(alias: String) -> Self {
        Relation {
            alias,
            table: None,
            cols: Vec::new(),
            complete: false,
        }
    }

    /// A column by name: `Some(origin)` when known here.
    pub fn column(&self, name: &str) -> Option<Option<&'a ColumnRule>> {
        self.cols
            .iter()
            .find(|c| c.name.as_deref() == Some(name))
            .map(|c| c.origin)
    }

    /// The protected columns a whole-row reference would carry.
    pub fn first_origin(&self) -> Option<&'a ColumnRule> {
        self.cols.iter().find_map(|c| c.origin)
    }

    /// Applies `AS alias(c1, c2, …)`: renames columns positionally. False when
    /// the columns to rename are not all known and some of them are tagged.
    #[must_use]
    pub fn apply_alias(&mut self, alias: &TableAlias) -> bool {
        self.alias = fold(&alias.name);
        if alias.columns.is_empty() {
            return true;
        }
        if !self.complete && self.first_origin().is_some() {
            return false;
        }
        for (i, c) in alias.columns.iter().enumerate() {
            if let Some(col) = self.cols.get_mut(i) {
                col.name = Some(fold(&c.name));
            }
        }
        true
    }
}

/// A named CTE in scope.
#[derive(Debug, Clone)]
pub struct CteDef<'a> {
    pub name: String,
    pub cols: Vec<OutCol<'a>>,
    pub complete: bool,
}

/// One query level: its FROM items and CTEs, and the enclosing level
/// (correlated subqueries see outer columns).
#[derive(Debug, Clone, Default)]
pub struct Scope<'a, 'p> {
    pub rels: Vec<Relation<'a>>,
    pub ctes: Vec<CteDef<'a>>,
    pub parent: Option<&'p Scope<'a, 'p>>,
}

/// What a column reference means.
#[derive(Debug, Clone, Copy)]
pub enum ColRef<'a> {
    /// A column; `Some` when it is a tagged column.
    Column(Option<&'a ColumnRule>),
    /// A field of a composite column (`col.field`).
    FieldOf(Option<&'a ColumnRule>),
    /// A whole-row reference to a relation; carries a protected column of it.
    WholeRow(Option<&'a ColumnRule>),
}

impl<'a, 'p> Scope<'a, 'p> {
    pub fn child(&'p self) -> Scope<'a, 'p> {
        Scope {
            rels: Vec::new(),
            ctes: Vec::new(),
            parent: Some(self),
        }
    }

    pub fn cte(&self, name: &str) -> Option<&CteDef<'a>> {
        self.ctes
            .iter()
            .rev()
            .find(|c| c.name == name)
            .or_else(|| self.parent.and_then(|p| p.cte(name)))
    }

    fn rel(&self, alias: &str) -> Option<&Relation<'a>> {
        self.rels
            .iter()
            .find(|r| r.alias == alias)
            .or_else(|| self.parent.and_then(|p| p.rel(alias)))
    }

    /// Resolves `col`, `rel.col`, `schema.table.col` (and composite field
    /// access on those). `None`: not a tagged column as far as we know.
    pub fn column(&self, parts: &[String]) -> Option<ColRef<'a>> {
        match parts {
            [] => None,
            [c] => self.unqualified(c),
            [q, c, rest @ ..] => {
                if let Some(rel) = self.rel(q) {
                    let origin = rel.column(c).flatten();
                    return Some(if rest.is_empty() {
                        ColRef::Column(origin)
                    } else {
                        ColRef::FieldOf(origin)
                    });
                }
                if let [s, t, c2, rest2 @ ..] = parts {
                    let hit = self.find(|r| {
                        r.table
                            .as_ref()
                            .is_some_and(|tn| tn.schema == *s && tn.name == *t)
                            && r.alias == *t
                    });
                    if let Some(rel) = hit {
                        let origin = rel.column(c2).flatten();
                        return Some(if rest2.is_empty() {
                            ColRef::Column(origin)
                        } else {
                            ColRef::FieldOf(origin)
                        });
                    }
                }
                // `col.field`: a composite column.
                match self.unqualified(q) {
                    Some(ColRef::Column(o)) => Some(ColRef::FieldOf(o)),
                    other => other,
                }
            }
        }
    }

    fn find(&self, pred: impl Fn(&Relation<'a>) -> bool + Copy) -> Option<&Relation<'a>> {
        self.rels
            .iter()
            .find(|r| pred(r))
            .or_else(|| self.parent.and_then(|p| p.find(pred)))
    }

    fn unqualified(&self, c: &str) -> Option<ColRef<'a>> {
        let mut maybe_here = false;
        let mut found: Option<Option<&'a ColumnRule>> = None;
        for r in &self.rels {
            match r.column(c) {
                Some(Some(rule)) => return Some(ColRef::Column(Some(rule))),
                Some(None) => found = Some(None),
                None if !r.complete => maybe_here = true,
                None => {}
            }
        }
        if let Some(f) = found {
            // A known untagged column here, unless an outer tagged one could be
            // meant instead (never: Postgres takes the innermost level).
            return Some(ColRef::Column(f));
        }
        // Postgres prefers a column over a relation of the same name.
        if !maybe_here {
            if let Some(r) = self.rels.iter().find(|r| r.alias == c) {
                return Some(ColRef::WholeRow(r.first_origin()));
            }
        }
        // Not known here: an outer column (or, when this level has relations of
        // unknown shape, maybe one of theirs; resolving outward is the cautious
        // reading because it can only make the answer more tagged).
        match self.parent.and_then(|p| p.unqualified(c)) {
            Some(hit) => Some(hit),
            None if maybe_here => None,
            None => self
                .rels
                .iter()
                .find(|r| r.alias == c)
                .map(|r| ColRef::WholeRow(r.first_origin())),
        }
    }

    /// The relation `name.*` refers to.
    pub fn wildcard_rel(&self, parts: &[String]) -> Option<&Relation<'a>> {
        match parts {
            [t] => self.rel(t),
            [s, t] => {
                self.find(|r| r.alias == *t && r.table.as_ref().is_some_and(|tn| tn.schema == *s))
            }
            _ => None,
        }
    }
}

/// Resolves table names to tagged tables.
pub struct Resolver<'a> {
    pub rules: &'a RuleSet,
    pub schema: Option<&'a SchemaSnapshot>,
}

impl<'a> Resolver<'a> {
    pub fn search_path(&self) -> Vec<String> {
        match self.schema {
            Some(s) if !s.search_path.is_empty() => s.search_path.clone(),
            _ => vec!["public".to_string()],
        }
    }

    /// The tagged table a FROM/INSERT/UPDATE name means, if any. CTE shadowing
    /// is the caller's business (it owns the scope).
    pub fn table(&self, name: &ObjectName) -> Option<TableName> {
        let parts = fold_name(name)?;
        let (schema, table) = match parts.as_slice() {
            [t] => {
                // pg_catalog comes first unless listed; a tagged table cannot live there.
                return self.search_path().into_iter().find_map(|s| {
                    let tn = TableName {
                        schema: s,
                        name: t.clone(),
                    };
                    let known = self.rules.table_columns(&tn).next().is_some()
                        || self.schema.is_some_and(|sn| sn.tables.contains_key(&tn));
                    known.then_some(tn)
                });
            }
            [s, t] | [_, s, t] => (s.clone(), t.clone()),
            _ => return None,
        };
        let tn = TableName {
            schema,
            name: table,
        };
        self.rules.table_columns(&tn).next().is_some().then_some(tn)
    }

    /// A relation for a tagged table: every column in attnum order when the
    /// schema knows it, otherwise only the tagged columns.
    pub fn relation(&self, t: &TableName) -> Relation<'a> {
        let info = self.schema.and_then(|s| s.tables.get(t));
        let (cols, complete) = match info {
            Some(info) => (
                info.columns
                    .iter()
                    .map(|c| OutCol {
                        name: Some(c.name.clone()),
                        origin: self.rules.column(t, &c.name),
                    })
                    .collect(),
                true,
            ),
            None => (
                self.rules
                    .table_columns(t)
                    .map(|r| OutCol {
                        name: Some(r.name.clone()),
                        origin: Some(r),
                    })
                    .collect(),
                false,
            ),
        };
        Relation {
            alias: t.name.clone(),
            table: Some(t.clone()),
            cols,
            complete,
        }
    }
}

//! Output-only masking (issue 12): when a restricted session's statement
//! only *returns* a plaintext-at-rest masked column, the proxy masks the
//! value in the DataRow (origin verified from RowDescription, exactly as it
//! decrypts encrypted columns) instead of making the server compute the mask
//! for every row of a masked derived table.
//!
//! Why this is safe: the decision reuses the analysis that already polices
//! encrypted columns. In the trial run ([`super::query::Analyzer`] with
//! `output_masking`), the protected table is *not* replaced, so its masked
//! columns keep their rule as origin and count as sensitive; the walk then
//! refuses every use of a sensitive column except a bare select-list
//! reference (predicates on plaintext-at-rest columns are refused by
//! `refuse::check_predicate`, everything else by `refuse::misuse`). Any
//! refusal in the trial means "a masked value could flow into SQL": the
//! statement is analysed again the old way, with masked derived tables. The
//! trial is tried only on the simplest statement shape ([`eligible`]): one
//! SELECT, no subquery or CTE at any depth, no set operation, DISTINCT,
//! GROUP BY, HAVING, window definition or INTO, and only tagged tables in
//! FROM, so every result column with a table OID must be one pgveil knows
//! (see `session::rows`, which refuses unknown origins for such a plan:
//! a table recreated behind the session's back cannot slip raw values out).
//!
//! Masks whose wire form depends on session settings (`date`,
//! `timestamptz`: DateStyle and TimeZone; `bytea`: bytea_output), or whose
//! column's live type is not the rule's type, stay in SQL even on the fast
//! path: the table is then replaced by a derived table that masks only those
//! columns and passes the others through as bare references.
//!
//! [`Usage`] is the other half of the issue: a derived table projects only
//! the columns a statement can name (every identifier token of its text),
//! unless something needs the whole row (`*`, a whole-row reference, an
//! alias column list, NATURAL JOIN).

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, GroupByExpr, Query, SelectFlavor, SetExpr, Statement, TableFactor, Visit, Visitor,
};

use crate::rules::model::{Access, ColumnRule, LogicalType, Mask};
use crate::schema::SchemaSnapshot;

use super::lex::{fold_into, Lexer, Tok};
use super::resolve::{fold, Resolver};

/// The names a statement can use, for the derived table's projection.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Every identifier token of the text, folded as Postgres folds it.
    names: HashSet<String>,
    /// Names that appear as a whole value (`c`, `x.c`, `(c)`), which is how a
    /// whole-row reference to relation `c` looks.
    values: HashSet<String>,
    /// A `*` token anywhere, or NATURAL: every column may be used.
    all: bool,
}

impl Usage {
    /// Reads `chunk` (the statement's text) and its parsed tree.
    pub fn of(chunk: &str, st: &Statement) -> Usage {
        let mut u = Usage::default();
        let mut buf = String::new();
        for tok in Lexer::new(chunk) {
            match tok {
                Tok::Op(op) if op.contains('*') => u.all = true,
                ref t if fold_into(t, &mut buf) => {
                    if buf == "natural" {
                        u.all = true;
                    }
                    u.names.insert(buf.clone());
                }
                _ => {}
            }
        }
        struct V<'u>(&'u mut HashSet<String>);
        impl Visitor for V<'_> {
            type Break = ();
            fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
                match e {
                    Expr::Identifier(id) => {
                        self.0.insert(fold(id));
                    }
                    Expr::CompoundIdentifier(ids) => {
                        self.0.extend(ids.last().map(fold));
                    }
                    Expr::CompoundFieldAccess { root, .. } => {
                        if let Expr::Nested(inner) = root.as_ref() {
                            if let Expr::Identifier(id) = inner.as_ref() {
                                self.0.insert(fold(id));
                            }
                        }
                    }
                    _ => {}
                }
                ControlFlow::Continue(())
            }
        }
        let _ = st.visit(&mut V(&mut u.values));
        u
    }

    /// Every column is needed when relation `alias` (of table `table`) may
    /// be used as a whole row, or when something expands all columns.
    pub fn whole_row(&self, alias: &str, table: &str) -> bool {
        self.all || self.values.contains(alias) || self.values.contains(table)
    }

    /// Whether the text names `column` at all.
    pub fn names(&self, column: &str) -> bool {
        self.names.contains(column)
    }
}

/// The statement shape the fast path is tried on (see the module docs).
pub fn eligible(st: &Statement, res: &Resolver) -> bool {
    let Statement::Query(q) = st else {
        return false;
    };
    let simple_query = q.with.is_none()
        && q.for_clause.is_none()
        && q.settings.is_none()
        && q.format_clause.is_none()
        && q.pipe_operators.is_empty();
    let SetExpr::Select(s) = q.body.as_ref() else {
        return false;
    };
    let no_grouping = match &s.group_by {
        GroupByExpr::Expressions(e, m) => e.is_empty() && m.is_empty(),
        GroupByExpr::All(_) => false,
    };
    let simple_select = s.distinct.is_none()
        && s.top.is_none()
        && s.exclude.is_none()
        && s.into.is_none()
        && s.lateral_views.is_empty()
        && s.prewhere.is_none()
        && no_grouping
        && s.cluster_by.is_empty()
        && s.distribute_by.is_empty()
        && s.sort_by.is_empty()
        && s.having.is_none()
        && s.named_window.is_empty()
        && s.qualify.is_none()
        && s.value_table_mode.is_none()
        && s.connect_by.is_none()
        && matches!(s.flavor, SelectFlavor::Standard);
    if !(simple_query && simple_select) {
        return false;
    }
    let tables_ok = s.from.iter().all(|twj| {
        std::iter::once(&twj.relation)
            .chain(twj.joins.iter().map(|j| &j.relation))
            .all(|tf| plain_tagged_table(tf, res))
    });
    tables_ok && query_count(st) == 1
}

/// A plain reference to a tagged table, with no table options.
fn plain_tagged_table(tf: &TableFactor, res: &Resolver) -> bool {
    let TableFactor::Table {
        name,
        args: None,
        with_hints,
        version: None,
        partitions,
        json_path: None,
        sample: None,
        index_hints,
        with_ordinality: false,
        ..
    } = tf
    else {
        return false;
    };
    with_hints.is_empty()
        && partitions.is_empty()
        && index_hints.is_empty()
        && res.table(name).is_some()
}

/// How many queries the statement holds at any depth (subqueries, CTEs,
/// function-argument subqueries, EXISTS, IN (…)).
fn query_count(st: &Statement) -> usize {
    struct V(usize);
    impl Visitor for V {
        type Break = ();
        fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
            self.0 += 1;
            ControlFlow::Continue(())
        }
    }
    let mut v = V(0);
    let _ = st.visit(&mut v);
    v.0
}

/// Whether pgveil can serve `r` (a plaintext-at-rest column the session may
/// not read in plaintext) by masking its value on the wire: NULL always; a
/// mask when the value's text form does not depend on session settings, the
/// live column has the rule's type, and (for `hash`) a pseudonym key exists.
pub fn wire_maskable(
    r: &ColumnRule,
    access: Access,
    schema: Option<&SchemaSnapshot>,
    has_hash_key: bool,
) -> bool {
    let mask = match access {
        Access::Null => return true,
        Access::Mask(m) => m,
        Access::Plaintext | Access::Deny => return false,
    };
    let settings_free = matches!(
        r.ty,
        LogicalType::Text
            | LogicalType::Varchar
            | LogicalType::Int4
            | LogicalType::Int8
            | LogicalType::Numeric
            | LogicalType::Bool
    );
    let live_type = schema
        .and_then(|s| s.tables.get(&r.table))
        .and_then(|t| t.column(&r.name))
        .map(|c| c.type_oid);
    settings_free
        && live_type.is_some_and(|oid| wire_type_matches(r.ty, oid))
        && (mask != Mask::Hash || has_hash_key)
}

/// A RowDescription type OID that carries `ty`'s text and binary forms.
pub fn wire_type_matches(ty: LogicalType, oid: u32) -> bool {
    match ty {
        LogicalType::Text | LogicalType::Varchar => matches!(oid, 25 | 1043),
        other => oid == other.oid(),
    }
}

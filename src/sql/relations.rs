//! Every relation a statement reads, including the ones sqlparser's
//! `visit_relations` does not report.
//!
//! The `TABLE name` command is parsed into two plain strings
//! (`sqlparser::ast::Table`), not an `ObjectName`, so no relation visitor and
//! no table-factor hook ever sees it: `MERGE … USING (TABLE customers)`,
//! `COPY (TABLE customers) TO STDOUT` or `(TABLE some_view)` named a
//! protected table invisibly. Everything in `sql` that asks "which relations
//! does this read" goes through [`relations`] instead, and a TABLE command
//! whose name cannot be read back as a name is reported as unreadable, so a
//! restricted session refuses it.
//!
//! sqlparser also drops the quoting of a TABLE command's name and
//! re-serialises it unquoted. Since pgveil forwards the re-serialised text,
//! the server reads exactly that unquoted spelling; [`table_command_name`]
//! parses the same spelling back, so the analysis and the server agree.

use std::ops::ControlFlow;

use sqlparser::ast::{ObjectName, Query, SetExpr, Statement, Table, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::lex::{fold_into, Lexer, Tok};

/// One relation a statement reads: its name, or `None` when pgveil cannot
/// tell which relation it is.
pub type Rel = Option<ObjectName>;

struct Collect(Vec<Rel>);

impl Visitor for Collect {
    type Break = ();

    fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
        self.0.push(Some(r.clone()));
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        for t in table_commands(&q.body) {
            self.0.push(table_command_name(t));
        }
        ControlFlow::Continue(())
    }
}

/// Every relation `v` names, `TABLE` commands included (see module docs).
pub fn relations<V: Visit>(v: &V) -> Vec<Rel> {
    let mut c = Collect(Vec::new());
    let _ = v.visit(&mut c);
    c.0
}

/// The `TABLE` commands of one query level: its body and the operands of its
/// set operations (nested queries are levels of their own).
pub fn table_commands(body: &SetExpr) -> Vec<&Table> {
    match body {
        SetExpr::Table(t) => vec![t.as_ref()],
        SetExpr::SetOperation { left, right, .. } => {
            let mut v = table_commands(left);
            v.extend(table_commands(right));
            v
        }
        _ => Vec::new(),
    }
}

/// The name a `TABLE` command reads, as the server will read pgveil's
/// re-serialisation of it; `None` when that spelling is not a name.
pub fn table_command_name(t: &Table) -> Rel {
    let text = match (&t.schema_name, &t.table_name) {
        (Some(s), Some(n)) => format!("{s}.{n}"),
        (None, Some(n)) => n.clone(),
        _ => return None,
    };
    let mut p = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&text)
        .ok()?;
    let name = p.parse_object_name(false).ok()?;
    // The whole spelling must be the name: `TABLE a b` is not one.
    (name.to_string() == text).then_some(name)
}

/// `SELECT * FROM name`: what a `TABLE name` command means, as a query the
/// rest of the analysis (masked derived tables, protected views, access
/// checks) already handles. `None` if the name does not fit the template.
pub fn select_star_from(name: &ObjectName) -> Option<SetExpr> {
    let sql = format!("SELECT * FROM {name}");
    let mut v = Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?;
    match (v.len(), v.pop()?) {
        (1, Statement::Query(q)) if q.with.is_none() && q.order_by.is_none() => match *q.body {
            b @ SetExpr::Select(_) => Some(b),
            _ => None,
        },
        _ => None,
    }
}

/// `chunk` with every `TABLE` command keyword replaced by `SELECT * FROM`,
/// or `None` when it has none. sqlparser cannot parse `TABLE name` as a
/// statement, nor unqualified in parentheses (its TABLE rule reads three
/// tokens ahead), and drops the quoting of the name where it can. The text
/// rewrite keeps the name exactly as written, and `TABLE x` means `SELECT *
/// FROM x` by definition. A keyword is a TABLE command where a query can
/// start: at the start of the statement, after `(`, a set operator
/// (`UNION`/`INTERSECT`/`EXCEPT` [`ALL`|`DISTINCT`]), `AS` (CTAS, views,
/// PREPARE) or `CURSOR … FOR` (DECLARE); elsewhere (`CREATE TABLE`,
/// `LOCK TABLE`, `ON TABLE`, `RETURNS TABLE`) it is part of DDL. A TABLE
/// command in any other position stays as parsed, where [`relations`] and
/// the analysis still see it.
pub fn table_commands_as_select(chunk: &str) -> Option<String> {
    let mut lx = Lexer::new(chunk);
    let mut prev: [String; 2] = Default::default();
    let mut at: Vec<usize> = Vec::new();
    let mut buf = String::new();
    for tok in lx.by_ref() {
        let word = fold_into(&tok, &mut buf) && matches!(tok, Tok::Word(_));
        if let Tok::Word(w) = tok {
            let starts_query = matches!(
                prev[1].as_str(),
                "" | "(" | "union" | "intersect" | "except" | "all" | "distinct" | "as"
            ) || (prev[1] == "for"
                && matches!(prev[0].as_str(), "cursor" | "hold"));
            if word && buf == "table" && starts_query {
                at.push(w.as_ptr() as usize - chunk.as_ptr() as usize);
            }
        }
        let cur = match tok {
            Tok::Word(_) if word => buf.clone(),
            Tok::Op(o) => o.to_string(),
            _ => "\0".to_string(),
        };
        prev = [std::mem::take(&mut prev[1]), cur];
    }
    if at.is_empty() || lx.suspicious {
        return None;
    }
    let mut out = String::with_capacity(chunk.len() + 16 * at.len());
    let mut last = 0;
    for p in at {
        out.push_str(&chunk[last..p]);
        out.push_str("SELECT * FROM");
        last = p + "table".len();
    }
    out.push_str(&chunk[last..]);
    Some(out)
}

/// The relations a statement writes values into (`INSERT`, `UPDATE`,
/// `MERGE`, `COPY … FROM`), nested data-modifying statements of a `WITH`
/// included; `None` for a target pgveil cannot name. Deletes are not
/// writes here: they put no value in.
pub fn write_targets(st: &Statement) -> Vec<Rel> {
    struct Writes(Vec<Rel>);
    impl Visitor for Writes {
        type Break = ();
        fn pre_visit_statement(&mut self, st: &Statement) -> ControlFlow<()> {
            use sqlparser::ast::{CopySource, TableObject};
            match st {
                Statement::Insert(ins) => self.0.push(match &ins.table {
                    TableObject::TableName(n) => Some(n.clone()),
                    _ => None,
                }),
                Statement::Update { table, .. } => self.0.push(factor_name(&table.relation)),
                Statement::Merge { table, .. } => self.0.push(factor_name(table)),
                Statement::Copy {
                    source, to: false, ..
                } => self.0.push(match source {
                    CopySource::Table { table_name, .. } => Some(table_name.clone()),
                    CopySource::Query(_) => None,
                }),
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut w = Writes(Vec::new());
    let _ = st.visit(&mut w);
    w.0
}

fn factor_name(f: &sqlparser::ast::TableFactor) -> Rel {
    match f {
        sqlparser::ast::TableFactor::Table { name, .. } => Some(name.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> sqlparser::ast::Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .pop()
            .expect("one")
    }

    fn names(sql: &str) -> Vec<String> {
        relations(&parse(sql))
            .into_iter()
            .map(|r| r.map_or_else(|| "?".to_string(), |n| n.to_string()))
            .collect()
    }

    #[test]
    fn table_commands_are_relations_everywhere() {
        for (sql, want) in [
            (
                "SELECT * FROM (TABLE public.customers) t",
                "public.customers",
            ),
            ("SELECT 1 UNION TABLE customers", "customers"),
            ("INSERT INTO sink TABLE customers", "customers"),
            (
                "MERGE INTO sink s USING (TABLE public.customers) c ON false \
                 WHEN NOT MATCHED THEN INSERT VALUES (1)",
                "public.customers",
            ),
            ("CREATE TABLE t AS TABLE customers", "customers"),
            (
                "SELECT * FROM x WHERE EXISTS (TABLE public.t2)",
                "public.t2",
            ),
        ] {
            let n = names(sql);
            assert!(n.iter().any(|x| x == want), "{sql}: {n:?}");
        }
    }

    #[test]
    fn table_keywords_that_start_a_query_become_select_star() {
        for (sql, want) in [
            ("TABLE customers", Some("SELECT * FROM customers")),
            (
                "table \"Customers\" ORDER BY 1",
                Some("SELECT * FROM \"Customers\" ORDER BY 1"),
            ),
            (
                "SELECT * FROM (TABLE customers) t",
                Some("SELECT * FROM (SELECT * FROM customers) t"),
            ),
            (
                "SELECT 1 UNION ALL TABLE customers",
                Some("SELECT 1 UNION ALL SELECT * FROM customers"),
            ),
            (
                "CREATE TABLE t AS TABLE customers",
                Some("CREATE TABLE t AS SELECT * FROM customers"),
            ),
            (
                "DECLARE c CURSOR FOR TABLE customers",
                Some("DECLARE c CURSOR FOR SELECT * FROM customers"),
            ),
            ("/* TABLE */ TABLE x", Some("/* TABLE */ SELECT * FROM x")),
            ("CREATE TABLE t (x int)", None),
            ("LOCK TABLE customers", None),
            ("GRANT SELECT ON TABLE customers TO x", None),
            ("SELECT 'TABLE x'", None),
            (
                "CREATE FUNCTION f() RETURNS TABLE (x int) AS 'x' LANGUAGE sql",
                None,
            ),
        ] {
            assert_eq!(table_commands_as_select(sql).as_deref(), want, "{sql}");
        }
    }

    #[test]
    fn select_star_replaces_the_command() {
        let name = table_command_name(&Table {
            table_name: Some("customers".into()),
            schema_name: Some("public".into()),
        })
        .expect("a name");
        assert_eq!(
            select_star_from(&name).map(|b| b.to_string()).as_deref(),
            Some("SELECT * FROM public.customers")
        );
        assert_eq!(
            table_command_name(&Table {
                table_name: Some("a b".into()),
                schema_name: None,
            }),
            None
        );
    }
}

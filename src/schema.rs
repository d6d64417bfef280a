//! A snapshot of the upstream catalog for the tables the rules name: table
//! OIDs, column attnums and types, and the session's search_path.
//!
//! RowDescription carries (table OID, attnum) for result columns that come
//! straight from a table column, even through subqueries and views; mapping
//! that pair to a rule is how the proxy verifies a value's origin before it
//! decrypts or masks it. The snapshot is read from the catalog over the
//! session's own upstream connection (no extra credentials, and exactly what
//! that role can see), together with the role's memberships and search_path.
//! It is kept per session rather than per database (a departure from the
//! design guide): memberships and search_path are per role anyway, and the
//! query is one round trip. It is re-read on rule reload, after DDL through
//! any pgveil session, and once older than `catalog_max_age_ms`.

use std::collections::{HashMap, HashSet};

use crate::ident::TableName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    pub attnum: i16,
    pub type_oid: u32,
    /// `format_type()` spelling, e.g. `bytea`, `character varying(80)`.
    pub type_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub oid: u32,
    /// `r` table, `v` view, `m` materialized view, `p` partitioned table, ...
    pub relkind: char,
    /// Live columns in attnum order (dropped columns excluded).
    pub columns: Vec<ColumnInfo>,
}

impl TableInfo {
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Immutable once built; shared behind `arc-swap`.
#[derive(Debug, Clone, Default)]
pub struct SchemaSnapshot {
    /// Effective search_path, as schema names in order (pg_catalog implied first
    /// by Postgres unless listed; `$user` already expanded).
    pub search_path: Vec<String>,
    pub tables: HashMap<TableName, TableInfo>,
    pub by_oid: HashMap<u32, TableName>,
    /// Views, materialized views and inheritance children / partitions that
    /// read a tagged table, directly or through each other, and views that
    /// call user-defined functions (rows of [`dependent_views_query`]). They hold or expose the table's raw values
    /// under another name, so restricted sessions may not reference them;
    /// the masked derived table only replaces the tagged table itself.
    /// Empty offline and until filled.
    pub protected_views: HashSet<TableName>,
}

impl SchemaSnapshot {
    pub fn new(search_path: Vec<String>, tables: HashMap<TableName, TableInfo>) -> Self {
        let by_oid = tables.iter().map(|(n, t)| (t.oid, n.clone())).collect();
        SchemaSnapshot {
            search_path,
            tables,
            by_oid,
            protected_views: HashSet::new(),
        }
    }

    /// Resolves an unqualified table name through the search_path, the way
    /// Postgres does for tables this snapshot knows about.
    pub fn resolve(&self, name: &str) -> Option<&TableName> {
        self.search_path.iter().find_map(|s| {
            self.tables
                .get_key_value(&TableName {
                    schema: s.clone(),
                    name: name.to_string(),
                })
                .map(|(k, _)| k)
        })
    }

    /// The table and column a RowDescription field comes from, if known.
    pub fn origin(&self, table_oid: u32, attnum: i16) -> Option<(&TableName, &ColumnInfo)> {
        let name = self.by_oid.get(&table_oid)?;
        let t = self.tables.get(name)?;
        t.columns
            .iter()
            .find(|c| c.attnum == attnum)
            .map(|c| (name, c))
    }
}

/// `('schema', 'table')` literals, quotes doubled; the names come from the
/// DBA's rule files, not from clients.
fn name_pairs<'a, I: IntoIterator<Item = &'a TableName>>(tables: I) -> Vec<String> {
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    tables
        .into_iter()
        .map(|t| format!("({}, {})", lit(&t.schema), lit(&t.name)))
        .collect()
}

/// The catalog query for the tables the rules name: one row per live column,
/// `schema, table, table oid, relkind, column, attnum, type oid, type name`.
/// Names are passed as literals escaped by doubling quotes; they come from the
/// DBA's rule files, not from clients.
pub fn catalog_query<'a, I: IntoIterator<Item = &'a TableName>>(tables: I) -> String {
    let pairs = name_pairs(tables);
    if pairs.is_empty() {
        return "SELECT NULL::text, NULL::text, NULL::oid, NULL::\"char\", NULL::text, NULL::int2, NULL::oid, NULL::text WHERE false".into();
    }
    format!(
        "SELECT n.nspname::text, c.relname::text, c.oid, c.relkind, a.attname::text, a.attnum, a.atttypid, \
         pg_catalog.format_type(a.atttypid, a.atttypmod) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
         WHERE a.attnum > 0 AND NOT a.attisdropped AND (n.nspname::text, c.relname::text) IN (VALUES {}) \
         ORDER BY 1, 2, a.attnum",
        pairs.join(", ")
    )
}

/// pg_catalog functions that run SQL text or read a relation named by a
/// string (`query_to_xml('SELECT … FROM customers')`): a view calling one
/// has no catalog dependency on what it reads, so it counts as reading
/// every tagged table.
#[rustfmt::skip]
pub const SQL_TEXT_FUNCTIONS: &[&str] = &[
    "query_to_xml", "query_to_xml_and_xmlschema", "query_to_xmlschema", "cursor_to_xml",
    "cursor_to_xmlschema", "table_to_xml", "table_to_xml_and_xmlschema", "table_to_xmlschema",
    "schema_to_xml", "schema_to_xml_and_xmlschema", "schema_to_xmlschema", "database_to_xml",
    "database_to_xml_and_xmlschema", "database_to_xmlschema", "ts_stat", "ts_rewrite",
    "pg_mcv_list_items", "pg_stat_get_activity",
];

/// The pg_catalog relations holding column values (statistics) or other
/// sessions' statement text.
pub const STATISTICS_RELATIONS: &[&str] = &[
    "pg_statistic",
    "pg_statistic_ext_data",
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_stat_activity",
];

/// The relations that read any of `tables`, recursively, and so must be
/// refused to restricted sessions:
/// - views and materialized views whose rewrite rules depend on one of them
///   (or on such a relation);
/// - the inheritance and partition graph in both directions: children and
///   partitions hold rows of their own, and a query of a parent (or of any
///   ancestor) returns the rows of the tagged child;
/// - views that call a function outside pg_catalog / information_schema
///   (its body may read the tables, which no catalog dependency records);
/// - [`STATISTICS_RELATIONS`] and every user view that calls one of
///   [`SQL_TEXT_FUNCTIONS`] or reads one of [`STATISTICS_RELATIONS`].
///   PostgreSQL records no `pg_depend` row for a dependency on a pinned
///   (built-in) object, so these are found in the views' stored query trees
///   (`:funcid N` / `:relid N` in `pg_rewrite.ev_action`), which hold
///   resolved OIDs whatever the spelling. User objects start at OID 16384
///   (FirstNormalObjectId), which keeps the scan off the system views.
///
/// One row per relation: `schema, name`; the tables themselves are not
/// listed. Fill [`SchemaSnapshot::protected_views`] from it. Names are
/// escaped as in [`catalog_query`].
pub fn dependent_views_query<'a, I: IntoIterator<Item = &'a TableName>>(tables: I) -> String {
    let pairs = name_pairs(tables);
    if pairs.is_empty() {
        return "SELECT NULL::text, NULL::text WHERE false".into();
    }
    let sql_text = quoted_list(SQL_TEXT_FUNCTIONS);
    format!(
        "WITH RECURSIVE edge(parent, child) AS ( \
           SELECT d.refobjid, r.ev_class FROM pg_catalog.pg_depend d \
           JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
           WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
             AND r.ev_class <> d.refobjid \
           UNION ALL SELECT i.inhparent, i.inhrelid FROM pg_catalog.pg_inherits i \
           UNION ALL SELECT i.inhrelid, i.inhparent FROM pg_catalog.pg_inherits i \
         ), dep(oid) AS ( \
           SELECT c.oid FROM pg_catalog.pg_class c \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
           WHERE (n.nspname::text, c.relname::text) IN (VALUES {v}) \
              OR (n.nspname::text = 'pg_catalog' AND c.relname::text IN ({stats})) \
           UNION SELECT r.ev_class FROM pg_catalog.pg_rewrite r \
           WHERE r.ev_class >= 16384 AND r.ev_action::text ~ ( \
             SELECT '(:funcid|:relid) (' || pg_catalog.string_agg(x.o::text, '|') || ')[^0-9]' \
             FROM (SELECT p.oid AS o FROM pg_catalog.pg_proc p \
                   WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace \
                     AND p.proname::text IN ({sql_text}) \
                   UNION ALL SELECT c.oid FROM pg_catalog.pg_class c \
                   WHERE c.relnamespace = 'pg_catalog'::pg_catalog.regnamespace \
                     AND c.relname::text IN ({stats})) x) \
           UNION SELECT r.ev_class FROM pg_catalog.pg_depend d \
           JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
           JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid \
           JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
           WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
             AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass \
             AND (pn.nspname::text NOT IN ('pg_catalog', 'information_schema') \
                  OR p.proname::text IN ({sql_text})) \
           UNION SELECT e.child FROM edge e JOIN dep ON dep.oid = e.parent \
         ) \
         SELECT n.nspname::text, c.relname::text FROM dep \
         JOIN pg_catalog.pg_class c ON c.oid = dep.oid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE (n.nspname::text, c.relname::text) NOT IN (VALUES {v}) \
         ORDER BY 1, 2",
        v = pairs.join(", "),
        stats = quoted_list(STATISTICS_RELATIONS),
    )
}

/// `'a', 'b'` for names that are constants of this module.
fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|f| format!("'{f}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fills [`SchemaSnapshot::protected_views`] from the text rows of
/// [`dependent_views_query`]; malformed rows are skipped.
pub fn protected_views_from_rows(rows: &[Vec<Option<String>>]) -> HashSet<TableName> {
    rows.iter()
        .filter_map(|r| {
            let schema = r.first()?.as_deref()?;
            let name = r.get(1)?.as_deref()?;
            Some(TableName {
                schema: schema.to_string(),
                name: name.to_string(),
            })
        })
        .collect()
}

/// The session's effective search_path as schema names.
pub const SEARCH_PATH_QUERY: &str =
    "SELECT pg_catalog.array_to_string(pg_catalog.current_schemas(false), ',')";

/// Builds a snapshot from the text rows of [`catalog_query`]; malformed rows
/// are skipped (the catalog is trusted, but a proxy must not panic on it).
pub fn from_catalog_rows(search_path: &str, rows: &[Vec<Option<String>>]) -> SchemaSnapshot {
    let mut tables: HashMap<TableName, TableInfo> = HashMap::new();
    for r in rows {
        let get = |i: usize| r.get(i).and_then(|v| v.as_deref());
        let (
            Some(schema),
            Some(name),
            Some(oid),
            Some(kind),
            Some(col),
            Some(attnum),
            Some(typ),
            Some(tname),
        ) = (
            get(0),
            get(1),
            get(2),
            get(3),
            get(4),
            get(5),
            get(6),
            get(7),
        )
        else {
            continue;
        };
        let (Ok(oid), Ok(attnum), Ok(typ)) = (
            oid.parse::<u32>(),
            attnum.parse::<i16>(),
            typ.parse::<u32>(),
        ) else {
            continue;
        };
        let t = tables
            .entry(TableName {
                schema: schema.to_string(),
                name: name.to_string(),
            })
            .or_insert_with(|| TableInfo {
                oid,
                relkind: kind.chars().next().unwrap_or('r'),
                columns: Vec::new(),
            });
        t.columns.push(ColumnInfo {
            name: col.to_string(),
            attnum,
            type_oid: typ,
            type_name: tname.to_string(),
        });
    }
    let path = search_path
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    SchemaSnapshot::new(path, tables)
}

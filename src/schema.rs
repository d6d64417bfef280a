//! A snapshot of the upstream catalog for the tables the rules name: table
//! OIDs, column attnums and types, and the session's search_path.
//!
//! RowDescription carries (table OID, attnum) for result columns that come
//! straight from a table column, even through subqueries and views; mapping
//! that pair to a rule is how the proxy verifies a value's origin before it
//! decrypts or masks it. The snapshot is read from the catalog over the
//! session's own upstream connection (no extra credentials) and cached per
//! database; it is refreshed on rule reload and after DDL through the proxy.

use std::collections::HashMap;

use crate::rules::model::TableName;

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
}

impl SchemaSnapshot {
    pub fn new(search_path: Vec<String>, tables: HashMap<TableName, TableInfo>) -> Self {
        let by_oid = tables.iter().map(|(n, t)| (t.oid, n.clone())).collect();
        SchemaSnapshot {
            search_path,
            tables,
            by_oid,
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

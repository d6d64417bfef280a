//! The validated, immutable rule model that every other layer reads.
//!
//! Parsing (`rules::parse`) turns TOML files into a [`RuleSet`]; nothing
//! downstream ever sees raw TOML. A `RuleSet` is shared behind `arc-swap`, so a
//! reload builds a complete new one and swaps it in atomically.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// The type applications see for a tagged column. For encrypted columns the
/// database stores `bytea`; the proxy presents this type in RowDescription and
/// ParameterDescription and converts values between text and binary formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogicalType {
    Text,
    Varchar,
    Date,
    Timestamptz,
    Int4,
    Int8,
    Numeric,
    Bool,
    Bytea,
}

impl LogicalType {
    pub const ALL: [LogicalType; 9] = [
        LogicalType::Text,
        LogicalType::Varchar,
        LogicalType::Date,
        LogicalType::Timestamptz,
        LogicalType::Int4,
        LogicalType::Int8,
        LogicalType::Numeric,
        LogicalType::Bool,
        LogicalType::Bytea,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "text" => Self::Text,
            "varchar" | "character varying" => Self::Varchar,
            "date" => Self::Date,
            "timestamptz" | "timestamp with time zone" => Self::Timestamptz,
            "int4" | "integer" | "int" => Self::Int4,
            "int8" | "bigint" => Self::Int8,
            "numeric" | "decimal" => Self::Numeric,
            "bool" | "boolean" => Self::Bool,
            "bytea" => Self::Bytea,
            _ => return None,
        })
    }

    /// The Postgres type OID (pg_type.oid) of this logical type.
    pub fn oid(self) -> u32 {
        match self {
            Self::Text => 25,
            Self::Varchar => 1043,
            Self::Date => 1082,
            Self::Timestamptz => 1184,
            Self::Int4 => 23,
            Self::Int8 => 20,
            Self::Numeric => 1700,
            Self::Bool => 16,
            Self::Bytea => 17,
        }
    }

    /// The SQL spelling used when the proxy injects a cast.
    pub fn sql_name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Varchar => "varchar",
            Self::Date => "date",
            Self::Timestamptz => "timestamptz",
            Self::Int4 => "int4",
            Self::Int8 => "int8",
            Self::Numeric => "numeric",
            Self::Bool => "bool",
            Self::Bytea => "bytea",
        }
    }
}

impl fmt::Display for LogicalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// How a tagged column is stored at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncryptMode {
    /// Equal plaintexts give equal ciphertexts (per column and key version),
    /// so equality search works; leaks equality, by design.
    Deterministic,
    /// A fresh random nonce per value; no search at all.
    Randomized,
}

/// A masking function; what a restricted role sees instead of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mask {
    /// A fixed placeholder of the logical type.
    Redact,
    /// Keep the first `first` and last `last` letters/digits, star the other
    /// letters/digits, keep punctuation.
    Partial { first: u32, last: u32 },
    /// `alice@example.com` -> `a****@example.com`.
    Email,
    /// Keyed HMAC pseudonym, stable across sessions.
    Hash,
    /// Dates truncated to January 1st of their year.
    Year,
    /// Dates truncated to the first of their month.
    Month,
    /// Numbers rounded to a multiple of N (N > 0).
    Round(i64),
}

impl Mask {
    /// How much of the value this mask reveals; used to pick the most
    /// permissive access when several roles of a session apply (as GRANTs
    /// combine). Ties keep the first one found.
    pub fn revealing_rank(self) -> u8 {
        match self {
            Mask::Redact => 2,
            Mask::Hash => 3,
            Mask::Year => 4,
            Mask::Round(_) => 4,
            Mask::Month => 5,
            Mask::Email => 6,
            Mask::Partial { .. } => 6,
        }
    }
}

impl Mask {
    /// Whether this mask is defined for a logical type. A mask that cannot
    /// keep the column's type (e.g. `year` on text) is a rule-file error.
    pub fn applies_to(self, ty: LogicalType) -> bool {
        use LogicalType::*;
        match self {
            Mask::Redact | Mask::Hash => true,
            Mask::Partial { .. } | Mask::Email => matches!(ty, Text | Varchar),
            Mask::Year | Mask::Month => matches!(ty, Date | Timestamptz),
            Mask::Round(_) => matches!(ty, Int4 | Int8 | Numeric),
        }
    }
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mask::Redact => f.write_str("redact"),
            Mask::Partial { first, last } => write!(f, "partial({first},{last})"),
            Mask::Email => f.write_str("email"),
            Mask::Hash => f.write_str("hash"),
            Mask::Year => f.write_str("year"),
            Mask::Month => f.write_str("month"),
            Mask::Round(n) => write!(f, "round({n})"),
        }
    }
}

/// What one role may see of one tagged column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Plaintext,
    Mask(Mask),
    Null,
    Deny,
}

impl Access {
    /// Higher reveals more. Plaintext > any mask > null > deny.
    pub fn revealing_rank(self) -> u8 {
        match self {
            Access::Deny => 0,
            Access::Null => 1,
            Access::Mask(m) => m.revealing_rank(),
            Access::Plaintext => 10,
        }
    }

    /// Parses the rule-file spelling: `plaintext`, `null`, `deny`, `redact`,
    /// `partial(F,L)`, `email`, `hash`, `year`, `month`, `round(N)`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        let simple = match t.as_str() {
            "plaintext" => Some(Access::Plaintext),
            "null" => Some(Access::Null),
            "deny" => Some(Access::Deny),
            "redact" => Some(Access::Mask(Mask::Redact)),
            "email" => Some(Access::Mask(Mask::Email)),
            "hash" => Some(Access::Mask(Mask::Hash)),
            "year" => Some(Access::Mask(Mask::Year)),
            "month" => Some(Access::Mask(Mask::Month)),
            _ => None,
        };
        if let Some(a) = simple {
            return Ok(a);
        }
        let args = |prefix: &str| -> Option<Vec<String>> {
            let rest = t.strip_prefix(prefix)?.trim_start();
            let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
            Some(inner.split(',').map(|a| a.trim().to_string()).collect())
        };
        if let Some(a) = args("partial") {
            if a.len() != 2 {
                return Err("partial takes two numbers: partial(F,L)".into());
            }
            let first = a[0]
                .parse::<u32>()
                .map_err(|_| "partial(F,L): F must be a number >= 0")?;
            let last = a[1]
                .parse::<u32>()
                .map_err(|_| "partial(F,L): L must be a number >= 0")?;
            return Ok(Access::Mask(Mask::Partial { first, last }));
        }
        if let Some(a) = args("round") {
            let n = match a.as_slice() {
                [n] => n.parse::<i64>().ok().filter(|n| *n > 0),
                _ => None,
            };
            return n
                .map(|n| Access::Mask(Mask::Round(n)))
                .ok_or_else(|| "round(N) takes one whole number N > 0".to_string());
        }
        Err(format!(
            "unknown access `{s}`; expected one of plaintext, null, deny, redact, partial(F,L), email, hash, year, month, round(N)"
        ))
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Plaintext => f.write_str("plaintext"),
            Access::Null => f.write_str("null"),
            Access::Deny => f.write_str("deny"),
            Access::Mask(m) => m.fmt(f),
        }
    }
}

pub use crate::ident::TableName;

/// Where a rule came from, for DBA-facing messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceLoc {
    pub file: String,
    pub line: usize,
}

/// One tagged column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRule {
    pub table: TableName,
    pub name: String,
    pub ty: LogicalType,
    pub encrypt: Option<EncryptMode>,
    pub class: String,
    /// Per-role access, role names as Postgres stores them.
    pub access: BTreeMap<String, Access>,
    /// Access for roles not listed; `deny` when the file does not say.
    pub default: Access,
    pub source: SourceLoc,
}

impl ColumnRule {
    /// `schema.table.column`, the name used in errors, audit and metrics.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.table, self.name)
    }
}

/// One `[[subject]]` entry: a table whose rows belong to a data subject
/// (issue 15). A root entry (`parent` is `None`) names the table that
/// defines the subjects and the column that identifies one (`key`, usually
/// the primary key); a child entry names a table whose `key` column holds
/// the root's key value (a foreign key such as `orders.customer_id`).
///
/// Children point at a root directly, never at another child: one hop is
/// what erasure and the access report need, and a chain would make a
/// subject's identity depend on rows in a middle table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRule {
    pub table: TableName,
    pub key: String,
    pub parent: Option<TableName>,
    pub source: SourceLoc,
}

impl SubjectRule {
    /// The table that defines this entry's subjects: itself for a root, the
    /// parent for a child. Tokens are computed over this name, so a
    /// customer's orders and the customer share one token.
    pub fn subject(&self) -> &TableName {
        self.parent.as_ref().unwrap_or(&self.table)
    }
}

/// All rules, validated and indexed. Immutable once built.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    columns: Vec<ColumnRule>,
    by_table: HashMap<TableName, Vec<usize>>,
    /// `[[subject]]` entries, in file order; tables are unique.
    subjects: Vec<SubjectRule>,
    /// Short content hash of the files, recorded in audit and logs.
    pub version: String,
}

impl RuleSet {
    pub fn new(columns: Vec<ColumnRule>, version: String) -> Self {
        let mut by_table: HashMap<TableName, Vec<usize>> = HashMap::new();
        for (i, c) in columns.iter().enumerate() {
            by_table.entry(c.table.clone()).or_default().push(i);
        }
        RuleSet {
            columns,
            by_table,
            subjects: Vec::new(),
            version,
        }
    }

    /// The same rules with these (already validated) subject entries.
    pub fn with_subjects(mut self, subjects: Vec<SubjectRule>) -> Self {
        self.subjects = subjects;
        self
    }

    pub fn subjects(&self) -> &[SubjectRule] {
        &self.subjects
    }

    /// The subject entry of a table, if it has one.
    pub fn subject_rule(&self, t: &TableName) -> Option<&SubjectRule> {
        self.subjects.iter().find(|s| &s.table == t)
    }

    /// Every table the live checks must read from the catalog: tagged tables
    /// and subject tables (which need not have tagged columns).
    pub fn catalog_tables(&self) -> Vec<&TableName> {
        let mut out: Vec<&TableName> = self.by_table.keys().collect();
        for s in &self.subjects {
            if !out.contains(&&s.table) {
                out.push(&s.table);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    pub fn columns(&self) -> &[ColumnRule] {
        &self.columns
    }

    pub fn tables(&self) -> impl Iterator<Item = &TableName> {
        self.by_table.keys()
    }

    pub fn table_columns(&self, t: &TableName) -> impl Iterator<Item = &ColumnRule> {
        self.by_table
            .get(t)
            .into_iter()
            .flatten()
            .map(move |i| &self.columns[*i])
    }

    pub fn column(&self, t: &TableName, name: &str) -> Option<&ColumnRule> {
        self.table_columns(t).find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_vocabulary_parses() {
        assert_eq!(
            Access::parse("partial(0,4)"),
            Ok(Access::Mask(Mask::Partial { first: 0, last: 4 }))
        );
        assert_eq!(
            Access::parse(" Round( 10 ) "),
            Ok(Access::Mask(Mask::Round(10)))
        );
        assert!(Access::parse("round(0)").is_err());
        assert!(Access::parse("partial(1)").is_err());
        assert!(Access::parse("shuffle").is_err());
        for s in [
            "plaintext",
            "null",
            "deny",
            "redact",
            "email",
            "hash",
            "year",
            "month",
        ] {
            assert_eq!(Access::parse(s).map(|a| a.to_string()), Ok(s.to_string()));
        }
    }
}

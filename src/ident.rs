//! Identifiers as PostgreSQL reads them. Everything that compares a name
//! from a statement, a rule file or the catalog goes through here, so a name
//! that reaches a table under one spelling cannot slip past a check under
//! another (case folding, quoting, truncation to `NAMEDATALEN - 1` bytes).
//!
//! Below both `rules` and `schema`: each of them names tables.

use std::fmt;

/// A schema-qualified table name, already folded the way Postgres folds
/// unquoted identifiers (lower case) by the rule parser.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

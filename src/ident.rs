//! Identifiers as PostgreSQL reads them. Everything that compares a name
//! from a statement, a rule file or the catalog goes through here, so a name
//! that reaches a table under one spelling cannot slip past a check under
//! another (case folding, quoting, truncation to `NAMEDATALEN - 1` bytes).
//!
//! Below both `rules` and `schema`: each of them names tables.

use std::fmt;

/// PostgreSQL's `NAMEDATALEN`: identifiers keep at most `NAMEDATALEN - 1`
/// bytes.
pub const NAMEDATALEN: usize = 64;

/// The longest identifier PostgreSQL keeps, in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = NAMEDATALEN - 1;

/// `s` cut to what PostgreSQL keeps (`truncate_identifier`): at most 63
/// bytes, never splitting a character (`pg_mbcliplen` in a UTF-8
/// database). So `<63-byte name>_v2` IS the 63-byte name.
pub fn truncate(s: &str) -> &str {
    if s.len() <= MAX_IDENTIFIER_BYTES {
        return s;
    }
    let mut end = MAX_IDENTIFIER_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// [`truncate`] in place.
pub fn truncate_in_place(s: &mut String) {
    let n = truncate(s).len();
    s.truncate(n);
}

/// An identifier as PostgreSQL stores it: unquoted ones folded to lower
/// case (ASCII only, as `downcase_identifier` does in a UTF-8 database;
/// `"İ"` and `É` stay as they are), quoted ones as written (the caller has
/// undone `""`), both truncated to 63 bytes.
pub fn normalize(value: &str, quoted: bool) -> String {
    let mut out = if quoted {
        value.to_string()
    } else {
        value.to_ascii_lowercase()
    };
    truncate_in_place(&mut out);
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_as_postgres_stores_them() {
        let base = "a".repeat(63);
        assert_eq!(normalize(&format!("{base}_v2"), false), base);
        assert_eq!(
            normalize(&format!("{}_V2", base.to_uppercase()), false),
            base
        );
        assert_eq!(normalize(&format!("{base}_v2"), true), base);
        assert_eq!(normalize("Customers", false), "customers");
        assert_eq!(normalize("Customers", true), "Customers");
        // Only ASCII letters fold.
        assert_eq!(normalize("ÉTÉ", false), "ÉtÉ");
        // 62 ASCII bytes + a 2-byte character: the character does not fit.
        let s = format!("{}é", "b".repeat(62));
        assert_eq!(truncate(&s), "b".repeat(62));
        // 61 + é fits exactly; anything after it goes.
        let s = format!("{}éx", "b".repeat(61));
        assert_eq!(truncate(&s), format!("{}é", "b".repeat(61)));
        // A 4-byte character straddling the limit.
        let s = format!("{}😀", "c".repeat(60));
        assert_eq!(truncate(&s), "c".repeat(60));
        assert_eq!(truncate("short"), "short");
    }
}

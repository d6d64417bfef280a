//! Statement kind from the first keyword, for statements pgveil does not
//! parse (passthrough audit records, the DDL check that marks catalogs
//! stale).

use super::StatementKind;

/// The kind of `sql` by its first keyword (leading parentheses skipped).
pub fn statement_kind(sql: &str) -> StatementKind {
    let first = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match first.as_str() {
        "select" | "with" | "values" | "table" | "show" | "fetch" => StatementKind::Select,
        "insert" => StatementKind::Insert,
        "update" => StatementKind::Update,
        "delete" => StatementKind::Delete,
        "copy" => StatementKind::Copy,
        "create" | "alter" | "drop" | "truncate" | "grant" | "revoke" | "comment" => {
            StatementKind::Ddl
        }
        _ => StatementKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_keyword_decides() {
        for (sql, k) in [
            ("  (SELECT 1)", StatementKind::Select),
            ("TABLE t", StatementKind::Select),
            ("insert into t values (1)", StatementKind::Insert),
            ("ALTER TABLE t RENAME TO u", StatementKind::Ddl),
            ("Comment on table t is 'x'", StatementKind::Ddl),
            ("vacuum", StatementKind::Other),
            ("", StatementKind::Other),
        ] {
            assert_eq!(statement_kind(sql), k, "{sql}");
        }
    }
}

//! Statement kind from the first keyword, for statements pgveil does not
//! parse (passthrough audit records, the DDL check that marks catalogs
//! stale).

use super::lex::{fold_into, Lexer, Tok};
use super::StatementKind;

/// What a statement does to the session's named server-side objects
/// (prepared statements and cursors share the namespaces pgveil tracks),
/// read from its first words so it works on statements pgveil forwards
/// without parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOp {
    /// `DECLARE name … CURSOR [WITH HOLD] …`
    Declare { name: String, hold: bool },
    /// `CLOSE name`; `None` for `CLOSE ALL`.
    Close(Option<String>),
    /// `FETCH … name` / `MOVE … name`.
    Fetch(String),
    /// `EXECUTE name …`
    Execute(String),
}

/// The folded identifiers and keywords of `sql`, up to `limit` of them.
fn words(sql: &str, limit: usize) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    for tok in Lexer::new(sql) {
        if out.len() >= limit {
            break;
        }
        match tok {
            Tok::Op(";") => break,
            Tok::Op("(") => break,
            t @ (Tok::Word(_) | Tok::Quoted(_)) => {
                fold_into(&t, &mut buf);
                out.push((buf.clone(), matches!(t, Tok::Quoted(_))));
            }
            _ => {}
        }
    }
    out
}

/// The first keyword of `sql`, lower-cased, found by the lexer: comments
/// and parentheses before it (`/* */ EXECUTE p`, `(SELECT …)`) do not hide
/// it.
fn first_word(sql: &str) -> String {
    for tok in Lexer::new(sql) {
        match tok {
            Tok::Op("(") => continue,
            Tok::Word(w) => return w.to_ascii_lowercase(),
            _ => break,
        }
    }
    String::new()
}

/// BEGIN, COMMIT, ROLLBACK and their spellings: what a session may still
/// run when pgveil cannot judge anything else.
pub fn is_transaction_control(sql: &str) -> bool {
    let w = first_word(sql);
    matches!(
        w.as_str(),
        "begin" | "start" | "commit" | "end" | "rollback" | "abort" | "savepoint" | "release"
    ) && !sql.to_ascii_lowercase().contains("prepared")
}

/// `LISTEN channel`.
pub fn is_listen(sql: &str) -> bool {
    first_word(sql) == "listen"
}

/// See [`ObjectOp`]. None for every other statement.
pub fn object_op(sql: &str) -> Option<ObjectOp> {
    match first_word(sql).as_str() {
        "declare" => {
            let w = words(sql, 12);
            let name = w.get(1)?.0.clone();
            let for_at = w
                .iter()
                .position(|(t, q)| !q && t == "for")
                .unwrap_or(w.len());
            let hold = w[..for_at]
                .windows(2)
                .any(|p| p[0].0 == "with" && p[1].0 == "hold");
            Some(ObjectOp::Declare { name, hold })
        }
        "close" => {
            let w = words(sql, 3);
            let (n, quoted) = w.get(1)?.clone();
            Some(ObjectOp::Close((quoted || n != "all").then_some(n)))
        }
        "fetch" | "move" => words(sql, 8).pop().map(|(n, _)| ObjectOp::Fetch(n)),
        "execute" => words(sql, 2)
            .get(1)
            .map(|(n, _)| ObjectOp::Execute(n.clone())),
        _ => None,
    }
}

/// The kind of `sql` by its first keyword (leading parentheses skipped).
pub fn statement_kind(sql: &str) -> StatementKind {
    let first = first_word(sql);
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
    fn object_ops_name_their_object() {
        let d = |n: &str, hold| {
            Some(ObjectOp::Declare {
                name: n.into(),
                hold,
            })
        };
        assert_eq!(object_op("DECLARE c CURSOR FOR SELECT 1"), d("c", false));
        assert_eq!(
            object_op("declare \"C\" no scroll cursor with hold for select 1"),
            d("C", true)
        );
        assert_eq!(
            object_op("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1"),
            d("c", false)
        );
        assert_eq!(object_op("CLOSE ALL"), Some(ObjectOp::Close(None)));
        assert_eq!(
            object_op("close \"all\""),
            Some(ObjectOp::Close(Some("all".into())))
        );
        assert_eq!(
            object_op("FETCH 10 FROM Cur"),
            Some(ObjectOp::Fetch("cur".into()))
        );
        assert_eq!(
            object_op("fetch next in c;"),
            Some(ObjectOp::Fetch("c".into()))
        );
        assert_eq!(
            object_op("MOVE FORWARD ALL IN c"),
            Some(ObjectOp::Fetch("c".into()))
        );
        assert_eq!(
            object_op("EXECUTE wp('x', 1)"),
            Some(ObjectOp::Execute("wp".into()))
        );
        assert_eq!(object_op("SELECT 1"), None);
        assert_eq!(
            object_op("/**/ EXECUTE wp(1)"),
            Some(ObjectOp::Execute("wp".into()))
        );
        assert!(is_listen("-- c\n listen c"));
        assert!(is_transaction_control("ROLLBACK"));
        assert!(!is_transaction_control("COMMIT PREPARED 'x'"));
        assert!(!is_transaction_control("SELECT 1"));
    }

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
            (
                "/* x */ -- y\n ALTER TABLE t OWNER TO u",
                StatementKind::Ddl,
            ),
        ] {
            assert_eq!(statement_kind(sql), k, "{sql}");
        }
    }
}

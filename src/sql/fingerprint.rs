//! Literal-free normalised statement text for audit records and logs.
//!
//! Lexer-based rather than parser-based so it works on every statement,
//! including ones pgveil cannot parse: a refusal must be audited too, and its
//! text must not carry the values the client tried to send.

use super::lex::{Lexer, Tok};

/// Longest fingerprint kept, in bytes (then cut at a token boundary).
pub const MAX_FINGERPRINT: usize = 8 << 10;

/// Every string, number, dollar-quoted literal and `$n` becomes `?`; comments
/// disappear; unquoted identifiers and keywords are lower-cased; tokens are
/// separated by single spaces. Quoted identifiers are kept (they are schema,
/// not data). A DO block's body is fingerprinted the same way (see
/// [`super::do_block`]) rather than recorded as `do ?`.
pub fn fingerprint(sql: &str) -> String {
    if super::do_block::is_do(sql) {
        if let Some(fp) = super::do_block::fingerprint(sql) {
            return fp;
        }
    }
    plain(sql)
}

/// [`fingerprint`] without the DO-body special case.
pub(super) fn plain(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len().min(MAX_FINGERPRINT));
    let mut prev_glue = true;
    for tok in Lexer::new(sql) {
        if out.len() >= MAX_FINGERPRINT {
            // An audit record names the statement; it need not carry all of a
            // megabyte-long one (whose tail may only repeat its head).
            out.push_str(" …");
            break;
        }
        let (text, glue_before, glue_after): (std::borrow::Cow<'_, str>, bool, bool) = match tok {
            Tok::Word(w) => (w.to_ascii_lowercase().into(), false, false),
            Tok::Quoted(q) => (format!("\"{q}\"").into(), false, false),
            Tok::Literal | Tok::Param => ("?".into(), false, false),
            Tok::Op(o) => {
                let glue = matches!(o, "." | "::");
                let before = glue || matches!(o, "," | ")" | ";" | "]");
                let after = glue || matches!(o, "(" | "[");
                (o.into(), before, after)
            }
        };
        if !out.is_empty() && !prev_glue && !glue_before {
            out.push(' ');
        }
        out.push_str(&text);
        prev_glue = glue_after;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_statements_are_cut() {
        let sql = format!("SELECT 1{}", " + 0".repeat(100_000));
        let f = fingerprint(&sql);
        assert!(f.len() <= MAX_FINGERPRINT + 8, "{}", f.len());
        assert!(f.starts_with("select ? + ?") && f.ends_with(" …"));
        assert_eq!(fingerprint("SELECT 1"), "select ?");
    }

    #[test]
    fn replaces_every_literal() {
        let sql = "SELECT  id, 'alice@example.com' , E'o\\'neil', $x$123-45-6789$x$ FROM \"Customers\" c -- ssn 987\n\
                   WHERE c.ssn = '123-45-6789' AND age > 42 AND x = 1.5e3 AND y = $1 /* secret */ AND z = B'1010' \
                   AND w = 0xFF AND d = DATE '2020-01-02' AND u = U&'d\\0061ta'";
        let fp = fingerprint(sql);
        for secret in [
            "alice", "neil", "123", "6789", "987", "42", "1.5", "secret", "1010", "FF", "ff",
            "2020", "d\\0061",
        ] {
            assert!(!fp.contains(secret), "{secret} leaked into {fp}");
        }
        assert_eq!(
            fp,
            "select id, ?, ?, ? from \"Customers\" c where c.ssn = ? and age > ? and x = ? and y = ? and z = ? \
             and w = ? and d = date ? and u = ?"
        );
    }

    #[test]
    fn same_shape_same_fingerprint() {
        assert_eq!(
            fingerprint("select * from t where a = 'x'  and b in (1,2)"),
            fingerprint("SELECT *\n FROM t WHERE a='yy' AND b IN (3, 4)")
        );
        assert_eq!(
            fingerprint("select a::text from s.t"),
            "select a::text from s.t"
        );
    }

    #[test]
    fn unterminated_literal_does_not_leak() {
        let fp = fingerprint("select 'unterminated secret");
        assert_eq!(fp, "select ?");
    }
}

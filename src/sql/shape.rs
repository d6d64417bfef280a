//! Statement shapes: a simple-protocol statement with its literals turned
//! into parameters, so a session can analyse a shape once and serve every
//! later statement of that shape from the result.
//!
//! Why this is sound: a shape is analysed exactly as a protocol Parse of the
//! same text would be, and that analysis must already hold for any value a
//! later Bind supplies. The literals are then spliced back (verbatim, or
//! encrypted where the plan says the parameter is), so the server executes
//! the client's own values. The one place a literal means something a
//! parameter cannot is a bare integer in `ORDER BY` / `GROUP BY` /
//! `DISTINCT ON` (an output column position), so a literal becomes a
//! parameter only right after an operator or keyword that makes it a value.

use super::encrypt::{bytea_array_literal, match_literals, write_literal};
use super::lex::{fold_into, Lexer, Tok};
use super::{Context, ParamPlan, ParamUse, Refusal};

/// A statement with its value literals replaced by `$1…$n`.
#[derive(Debug, PartialEq, Eq)]
pub struct Shaped<'s> {
    /// The shape: the cache key and the text that is analysed.
    pub text: String,
    /// Literal `$k`'s source text, at index k-1.
    pub literals: Vec<&'s str>,
}

/// Most literals a shape takes (a longer VALUES list is analysed as is).
const MAX_LITERALS: usize = 64;

/// The shape of one statement, or `None` where the statement is not a
/// plain query or write or its text holds anything a shape cannot stand
/// for (parameters of its own, lexically odd text).
pub fn parameterize(chunk: &str) -> Option<Shaped<'_>> {
    let mut lx = Lexer::new(chunk);
    let mut text = String::with_capacity(chunk.len() + 8);
    let mut literals = Vec::new();
    let mut last = 0;
    let mut prev = String::new();
    let mut buf = String::new();
    let mut first = true;
    while let Some((tok, span)) = lx.next_spanned() {
        let (start, end) = (span.start, span.end);
        let raw = &chunk[start..end];
        match tok {
            Tok::Param => return None,
            Tok::Literal if value_position(&prev, raw) => {
                if literals.len() == MAX_LITERALS {
                    return None;
                }
                literals.push(raw);
                text.push_str(&chunk[last..start]);
                text.push('$');
                text.push_str(&literals.len().to_string());
                last = end;
            }
            _ => {}
        }
        prev.clear();
        match tok {
            Tok::Word(_) if fold_into(&tok, &mut buf) => prev.push_str(&buf),
            Tok::Op(o) => prev.push_str(o),
            _ => prev.push('\0'),
        }
        if first {
            if !matches!(
                prev.as_str(),
                "select" | "insert" | "update" | "delete" | "with"
            ) {
                return None;
            }
            first = false;
        }
    }
    if lx.suspicious || literals.is_empty() {
        return None;
    }
    text.push_str(&chunk[last..]);
    Some(Shaped { text, literals })
}

/// Whether a literal after token `prev` is a value a parameter can stand
/// for. Only plain `'…'` strings and decimal numbers qualify: prefixed
/// strings (E'', B'', X'', U&'') and dollar quotes stay in the shape.
fn value_position(prev: &str, raw: &str) -> bool {
    let b = raw.as_bytes();
    let string = b.first() == Some(&b'\'');
    let number = b.first().is_some_and(u8::is_ascii_digit)
        && !raw.contains(['x', 'X', 'o', 'O', 'b', 'B', '_']);
    let comparison = matches!(prev, "=" | "<>" | "!=" | "<" | ">" | "<=" | ">=");
    if number {
        return comparison || matches!(prev, "limit" | "offset" | "between" | "and");
    }
    string
        && (comparison
            || matches!(
                prev,
                "(" | "," | "||" | "like" | "ilike" | "and" | "or" | "then" | "else" | "when"
            ))
}

/// Where a shape's rewritten text takes its parameters: (start, end, k)
/// for each `$k`, found once per shape; `None` if a placeholder is not a
/// parameter the shape made.
pub fn holes(sql: &str) -> Option<Vec<(usize, usize, usize)>> {
    let mut out = Vec::new();
    let mut lx = Lexer::new(sql);
    while let Some((tok, span)) = lx.next_spanned() {
        if tok != Tok::Param {
            continue;
        }
        let k = sql[span.start + 1..span.end]
            .parse::<usize>()
            .ok()
            .filter(|k| *k >= 1)?;
        out.push((span.start, span.end, k));
    }
    Some(out)
}

/// The SQL to forward: `sql` (the shape's rewritten text, its [`holes`])
/// with each `$k` replaced by literal k, verbatim or encrypted as `params`
/// says.
pub fn splice(
    sql: &str,
    holes: &[(usize, usize, usize)],
    literals: &[&str],
    params: &[ParamPlan],
    ctx: &Context,
) -> Result<Option<String>, Refusal> {
    let mut out = String::with_capacity(sql.len() + 16 * literals.len());
    let mut last = 0;
    for &(start, end, k) in holes {
        let Some(lit) = literals.get(k - 1) else {
            return Ok(None);
        };
        out.push_str(&sql[last..start]);
        match params.get(k - 1) {
            Some(ParamPlan::Encrypt { rule, usage }) => {
                let value = literal_value(lit);
                let expr = match usage {
                    ParamUse::Write => write_literal(ctx, rule, &value)?,
                    ParamUse::Match => bytea_array_literal(&match_literals(ctx, rule, &value)?),
                };
                out.push('(');
                out.push_str(&expr.to_string());
                out.push(')');
            }
            _ => out.push_str(lit),
        }
        last = end;
    }
    out.push_str(&sql[last..]);
    Ok(Some(out))
}

/// The value a plain literal stands for: a `'…'` string's contents (with
/// `''` undone), or a number's text.
fn literal_value(lit: &str) -> String {
    match lit.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => lit.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(s: &str) -> Option<(String, Vec<&str>)> {
        parameterize(s).map(|p| (p.text, p.literals))
    }

    #[test]
    fn values_become_parameters() {
        assert_eq!(
            shape("SELECT a FROM t WHERE id = 42 AND name = 'x''y'"),
            Some((
                "SELECT a FROM t WHERE id = $1 AND name = $2".into(),
                vec!["42", "'x''y'"]
            ))
        );
        assert_eq!(
            shape("select * from t where id between 1 and 20 limit 5"),
            Some((
                "select * from t where id between $1 and $2 limit $3".into(),
                vec!["1", "20", "5"]
            ))
        );
        assert_eq!(
            shape("INSERT INTO t (a, b) VALUES ('p', 'q')"),
            Some((
                "INSERT INTO t (a, b) VALUES ($1, $2)".into(),
                vec!["'p'", "'q'"]
            ))
        );
    }

    #[test]
    fn positions_and_odd_literals_stay() {
        // Output column positions are not values.
        assert_eq!(
            shape("SELECT a, b FROM t WHERE c = 'k' ORDER BY 2, 1"),
            Some((
                "SELECT a, b FROM t WHERE c = $1 ORDER BY 2, 1".into(),
                vec!["'k'"]
            ))
        );
        assert_eq!(shape("SELECT a FROM t GROUP BY 1"), None);
        assert_eq!(shape("SELECT DISTINCT ON (1) a FROM t"), None);
        assert_eq!(shape("SELECT a FROM t WHERE b = E'x'"), None);
        assert_eq!(shape("SELECT a FROM t WHERE b = $$x$$"), None);
        assert_eq!(shape("SELECT a FROM t WHERE b = 0x1F"), None);
        assert_eq!(shape("SELECT date '2020-01-01'"), None);
        assert_eq!(shape("SELECT a FROM t WHERE b = x'1F'"), None);
    }

    #[test]
    fn statements_of_their_own_kind_are_not_shaped() {
        assert_eq!(shape("SELECT a FROM t WHERE id = $1 AND b = 2"), None);
        assert_eq!(shape("SET search_path = 'public'"), None);
        assert_eq!(shape("PREPARE p AS SELECT 1 WHERE 1 = 1"), None);
        assert_eq!(
            shape("DECLARE c CURSOR FOR SELECT a FROM t WHERE id = 1"),
            None
        );
        assert_eq!(shape("COPY t FROM STDIN"), None);
        assert_eq!(
            shape("SELECT a FROM t WHERE b = 'x\\'"),
            None,
            "backslash: suspicious"
        );
    }

    #[test]
    fn literal_values_undo_quote_doubling() {
        assert_eq!(literal_value("'it''s'"), "it's");
        assert_eq!(literal_value("12.5"), "12.5");
    }
}

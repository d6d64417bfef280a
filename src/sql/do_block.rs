//! `DO` blocks for the audit. A DO's code is a string literal, so the plain
//! fingerprint records every DO as `do ?`: an auditor could not tell a
//! harmless block from one that deletes a tagged table. Here the body is
//! decoded and fingerprinted like any statement (its own literals become
//! `?`), and the identifiers it names are collected, including those inside
//! string literals nested in it, which is how PL/pgSQL spells dynamic SQL
//! (`EXECUTE 'DELETE FROM customers'`). Nested literals only contribute
//! names the caller asks about (tables and columns of the rules), never
//! their text, so no value reaches the record.
//!
//! Work is bounded like the rest of the analyser: at most [`MAX_DO_SCAN`]
//! bytes are scanned in all and literals nest at most [`MAX_DO_DEPTH`]
//! deep; past either bound the rest is not read for names (the statement is
//! being refused or forwarded unchanged either way; only its record is less
//! precise).

use std::collections::BTreeSet;

use super::fingerprint::plain;
use super::lex::{Lexer, Tok};

/// Most bytes of a DO body and its nested literals scanned for names.
pub const MAX_DO_SCAN: usize = 1 << 20;
/// Deepest string literal (inside a literal inside the body …) scanned.
pub const MAX_DO_DEPTH: usize = 4;

/// What a DO block's record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoBlock {
    /// `do [language x] $$ <body fingerprint> $$`.
    pub fingerprint: String,
    /// The identifiers `keep` accepted, as the body (or a literal in it)
    /// names them: unquoted ones ASCII lower-cased, quoted ones as written.
    pub names: BTreeSet<String>,
}

/// Whether `sql` is a DO statement (cheap: one token).
pub fn is_do(sql: &str) -> bool {
    matches!(Lexer::new(sql).next(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case("do"))
}

/// The DO statement's body fingerprint and the names in it `keep` wants;
/// None when `sql` is not a DO statement of a shape understood here (the
/// plain fingerprint applies then).
pub fn do_block(sql: &str, keep: &dyn Fn(&str) -> bool) -> Option<DoBlock> {
    let (language, body) = parts(sql)?;
    let mut fingerprint = String::from("do ");
    if let Some(l) = language {
        fingerprint.push_str("language ");
        fingerprint.push_str(&l);
        fingerprint.push(' ');
    }
    fingerprint.push_str("$$ ");
    fingerprint.push_str(&plain(&body));
    fingerprint.push_str(" $$");
    let mut names = BTreeSet::new();
    let mut budget = MAX_DO_SCAN;
    collect(&body, 0, &mut budget, keep, &mut names);
    Some(DoBlock { fingerprint, names })
}

/// The fingerprint of a DO statement (see [`do_block`]).
pub fn fingerprint(sql: &str) -> Option<String> {
    do_block(sql, &|_| false).map(|b| b.fingerprint)
}

/// `DO [LANGUAGE l] body` or `DO body LANGUAGE l`: (language, decoded body).
fn parts(sql: &str) -> Option<(Option<String>, String)> {
    let mut lx = Lexer::new(sql);
    match lx.next_spanned()? {
        (Tok::Word(w), _) if w.eq_ignore_ascii_case("do") => {}
        _ => return None,
    }
    let (mut language, mut body) = (None, None);
    while let Some((tok, span)) = lx.next_spanned() {
        match tok {
            Tok::Word(w) if w.eq_ignore_ascii_case("language") && language.is_none() => {
                language = match lx.next_spanned()? {
                    (Tok::Word(l), _) => Some(l.to_ascii_lowercase()),
                    (Tok::Quoted(l), _) => Some(format!("\"{l}\"")),
                    (Tok::Literal, s) => Some(decode(&sql[s])?.to_ascii_lowercase()),
                    _ => return None,
                };
            }
            Tok::Literal if body.is_none() => body = Some(decode(&sql[span])?),
            Tok::Op(";") => break,
            _ => return None,
        }
    }
    Some((language, body?))
}

/// Walks `text`'s tokens for names, descending into its string literals.
fn collect(
    text: &str,
    depth: usize,
    budget: &mut usize,
    keep: &dyn Fn(&str) -> bool,
    out: &mut BTreeSet<String>,
) {
    if text.len() > *budget {
        *budget = 0;
        return;
    }
    *budget -= text.len();
    let mut lx = Lexer::new(text);
    while let Some((tok, span)) = lx.next_spanned() {
        let name = match tok {
            Tok::Word(w) => w.to_ascii_lowercase(),
            Tok::Quoted(q) => q.replace("\"\"", "\""),
            Tok::Literal if depth < MAX_DO_DEPTH && *budget > 0 => {
                if let Some(inner) = decode(&text[span]) {
                    collect(&inner, depth + 1, budget, keep, out);
                }
                continue;
            }
            _ => continue,
        };
        if keep(&name) {
            out.insert(name);
        }
    }
}

/// The text of a string literal as written (`'…'`, `E'…'`, `$tag$…$tag$`);
/// None for numbers, bit strings and Unicode-escape strings, whose text is
/// not code.
fn decode(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    match b.first()? {
        b'\'' => Some(inner(&raw[1..]).replace("''", "'")),
        b'e' | b'E' if b.get(1) == Some(&b'\'') => Some(unescape(inner(&raw[2..]))),
        b'$' => {
            let end = raw[1..].find('$')? + 2;
            let tag = &raw[..end];
            let rest = &raw[end..];
            Some(rest.strip_suffix(tag).unwrap_or(rest).to_string())
        }
        _ => None,
    }
}

/// A quoted string's text after its opening quote, without the closing one
/// (an unterminated string runs to the end).
fn inner(after_quote: &str) -> &str {
    after_quote.strip_suffix('\'').unwrap_or(after_quote)
}

/// Undoes `E''` escapes: `\n` and friends, octal, `\x`, `\u`, `\U`, `''`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\'' if it.peek() == Some(&'\'') => {
                it.next();
                out.push('\'');
            }
            '\\' => match it.next() {
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some(d @ '0'..='7') => out.extend(number(d, &mut it, 8, 2)),
                Some('x') => out.extend(number('0', &mut it, 16, 2)),
                Some('u') => out.extend(number('0', &mut it, 16, 4)),
                Some('U') => out.extend(number('0', &mut it, 16, 8)),
                Some(other) => out.push(other),
                None => {}
            },
            c => out.push(c),
        }
    }
    out
}

/// Up to `more` further digits of `radix` after `first`, as a character.
fn number(
    first: char,
    it: &mut std::iter::Peekable<std::str::Chars<'_>>,
    radix: u32,
    more: usize,
) -> Option<char> {
    let mut v = first.to_digit(radix)?;
    for _ in 0..more {
        match it.peek().and_then(|c| c.to_digit(radix)) {
            Some(d) => {
                v = v.checked_mul(radix)?.checked_add(d)?;
                it.next();
            }
            None => break,
        }
    }
    char::from_u32(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(w: &str) -> bool {
        matches!(w, "customers" | "email" | "Orders")
    }

    #[test]
    fn bodies_are_fingerprinted_with_their_literals_replaced() {
        let b = do_block(
            "DO $$ BEGIN DELETE FROM customers WHERE email = 'a@b.c'; END $$",
            &tagged,
        )
        .unwrap();
        assert_eq!(
            b.fingerprint,
            "do $$ begin delete from customers where email = ?; end $$"
        );
        assert_eq!(b.names, ["customers", "email"].map(String::from).into());
        let b = do_block(
            "do 'begin perform 1 from \"Orders\" where x = ''k''; end' language plpgsql;",
            &tagged,
        )
        .unwrap();
        assert_eq!(
            b.fingerprint,
            "do language plpgsql $$ begin perform ? from \"Orders\" where x = ?; end $$"
        );
        assert_eq!(b.names, ["Orders".to_string()].into());
        let b = do_block("DO LANGUAGE plpgsql $f$ BEGIN NULL; END $f$", &tagged).unwrap();
        assert_eq!(b.fingerprint, "do language plpgsql $$ begin null; end $$");
    }

    #[test]
    fn dynamic_sql_names_count_but_never_reach_the_fingerprint() {
        let sql = "DO $a$ BEGIN EXECUTE $b$ UPDATE CUSTOMERS SET x = 'Alice' $b$; \
                   EXECUTE E'SELECT \\x65mail FROM t'; END $a$";
        let b = do_block(sql, &tagged).unwrap();
        assert_eq!(b.names, ["customers", "email"].map(String::from).into());
        assert!(!b.fingerprint.contains("alice") && !b.fingerprint.contains("update"));
        assert_eq!(b.fingerprint, "do $$ begin execute ?; execute ?; end $$");
    }

    #[test]
    fn nesting_and_size_are_bounded() {
        // The body's literals are read MAX_DO_DEPTH deep, no deeper.
        let wrap = |n: usize| {
            let mut body = "customers".to_string();
            for _ in 0..n {
                body = format!("'{}'", body.replace('\'', "''"));
            }
            do_block(&format!("DO {body}"), &tagged).unwrap().names
        };
        assert_eq!(wrap(MAX_DO_DEPTH + 1).len(), 1);
        assert!(wrap(MAX_DO_DEPTH + 2).is_empty());
        let big = format!("DO $$ {} customers $$", "x ".repeat(MAX_DO_SCAN));
        let b = do_block(&big, &tagged).unwrap();
        assert!(b.names.is_empty());
        assert!(b.fingerprint.len() < super::super::fingerprint::MAX_FINGERPRINT + 64);
    }

    #[test]
    fn other_shapes_fall_back_to_the_plain_fingerprint() {
        assert!(do_block("SELECT 1", &tagged).is_none());
        assert!(do_block("DO 42", &tagged).is_none());
        assert!(do_block("DO $$ x $$ garbage", &tagged).is_none());
        assert!(is_do("  do $$ $$") && !is_do("done"));
    }
}

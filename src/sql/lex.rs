//! A tiny Postgres lexer used where a full parse would be too slow or could
//! fail: the per-statement pre-filter ([`mentions_tagged`]) and the audit
//! fingerprint.
//!
//! It follows Postgres' `scan.l` on the points that decide what is code and
//! what is data: `--` and nested `/* */` comments, `'…'` strings with `''`,
//! `E'…'` strings with backslash escapes, `B''`/`X''`/`N''`/`U&''` prefixes,
//! `$tag$…$tag$` dollar quotes, `"…"` identifiers with `""`, `$n` parameters,
//! and ASCII-only case folding of unquoted identifiers (UTF-8 databases).
//!
//! Where the server could read the text differently from us (a backslash in a
//! standard string, which means something else when
//! `standard_conforming_strings` is off; a `U&"…"` identifier whose escapes we
//! do not decode) the lexer sets [`Lexer::suspicious`], and callers treat the
//! text as possibly naming anything.

use std::collections::HashSet;

use crate::rules::model::RuleSet;

/// One token. Literal contents are never exposed: callers only need to know
/// that a literal was there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok<'s> {
    /// An identifier or keyword as written (unquoted, not yet folded).
    Word(&'s str),
    /// A `"quoted"` identifier, raw text between the quotes (`""` not yet undone).
    Quoted(&'s str),
    /// Any string literal, dollar-quoted string or number.
    Literal,
    /// `$n`.
    Param,
    /// Punctuation or an operator, as written.
    Op(&'s str),
}

pub struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    /// Set when the server might tokenise this text differently (see module docs).
    pub suspicious: bool,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn is_op_char(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'%'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
    )
}

impl<'s> Lexer<'s> {
    pub fn new(src: &'s str) -> Self {
        Lexer {
            src,
            pos: 0,
            suspicious: false,
        }
    }

    fn bytes(&self) -> &'s [u8] {
        self.src.as_bytes()
    }

    fn at(&self, i: usize) -> Option<u8> {
        self.bytes().get(i).copied()
    }

    /// Skips whitespace and comments; unterminated block comments run to the end
    /// (the server rejects them, so nothing after them executes).
    fn skip_trivia(&mut self) {
        let b = self.bytes();
        loop {
            while self.pos < b.len()
                && matches!(b[self.pos], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
            {
                self.pos += 1;
            }
            if b[self.pos..].starts_with(b"--") {
                while self.pos < b.len() && b[self.pos] != b'\n' && b[self.pos] != b'\r' {
                    self.pos += 1;
                }
            } else if b[self.pos..].starts_with(b"/*") {
                let mut depth = 0usize;
                while self.pos < b.len() {
                    if b[self.pos..].starts_with(b"/*") {
                        depth += 1;
                        self.pos += 2;
                    } else if b[self.pos..].starts_with(b"*/") {
                        depth -= 1;
                        self.pos += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        self.pos += 1;
                    }
                }
            } else {
                return;
            }
        }
    }

    /// Consumes a `'…'` string starting at the opening quote. `escapes` means
    /// backslash escapes (E'' strings).
    fn quoted_string(&mut self, escapes: bool) {
        let b = self.bytes();
        self.pos += 1;
        while self.pos < b.len() {
            match b[self.pos] {
                b'\\' if escapes => self.pos += 2,
                b'\\' => {
                    self.suspicious = true;
                    self.pos += 1;
                }
                b'\'' if self.at(self.pos + 1) == Some(b'\'') => self.pos += 2,
                b'\'' => {
                    self.pos += 1;
                    return;
                }
                _ => self.pos += 1,
            }
        }
        self.pos = self.pos.min(b.len());
    }

    /// Consumes a `"…"` identifier, returning the raw inner text.
    fn quoted_ident(&mut self) -> &'s str {
        let b = self.bytes();
        let start = self.pos + 1;
        self.pos = start;
        while self.pos < b.len() {
            if b[self.pos] == b'"' {
                if self.at(self.pos + 1) == Some(b'"') {
                    self.pos += 2;
                    continue;
                }
                let inner = &self.src[start..self.pos];
                self.pos += 1;
                return inner;
            }
            self.pos += 1;
        }
        &self.src[start..]
    }

    /// At a `$`: a dollar-quoted string if a valid `$tag$` opens here.
    fn try_dollar_quote(&mut self) -> bool {
        let b = self.bytes();
        let mut i = self.pos + 1;
        if i < b.len() && b[i] != b'$' {
            if !is_ident_start(b[i]) {
                return false;
            }
            while i < b.len() && is_ident_cont(b[i]) && b[i] != b'$' {
                i += 1;
            }
        }
        if i >= b.len() || b[i] != b'$' {
            return false;
        }
        let tag = &b[self.pos..=i];
        let body = i + 1;
        match b[body..].windows(tag.len()).position(|w| w == tag) {
            Some(p) => self.pos = body + p + tag.len(),
            None => self.pos = b.len(),
        }
        true
    }

    fn number(&mut self) {
        let b = self.bytes();
        if b[self.pos] == b'0'
            && matches!(
                self.at(self.pos + 1),
                Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
            )
        {
            self.pos += 2;
            while self.pos < b.len() && (b[self.pos].is_ascii_hexdigit() || b[self.pos] == b'_') {
                self.pos += 1;
            }
            return;
        }
        while self.pos < b.len() && (b[self.pos].is_ascii_digit() || b[self.pos] == b'_') {
            self.pos += 1;
        }
        if self.at(self.pos) == Some(b'.') && self.at(self.pos + 1) != Some(b'.') {
            self.pos += 1;
            while self.pos < b.len() && (b[self.pos].is_ascii_digit() || b[self.pos] == b'_') {
                self.pos += 1;
            }
        }
        if matches!(self.at(self.pos), Some(b'e' | b'E')) {
            let mut j = self.pos + 1;
            if matches!(self.at(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if self.at(j).is_some_and(|c| c.is_ascii_digit()) {
                self.pos = j;
                while self.pos < b.len() && b[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
            }
        }
    }
}

impl<'s> Lexer<'s> {
    /// The next token with the byte range it spans in the source (for the
    /// few callers that must read a literal's text, see `do_block`).
    pub fn next_spanned(&mut self) -> Option<(Tok<'s>, std::ops::Range<usize>)> {
        self.skip_trivia();
        let start = self.pos;
        let tok = self.next()?;
        Some((tok, start..self.pos))
    }
}

impl<'s> Iterator for Lexer<'s> {
    type Item = Tok<'s>;

    fn next(&mut self) -> Option<Tok<'s>> {
        self.skip_trivia();
        let b = self.bytes();
        let c = *b.get(self.pos)?;
        let start = self.pos;
        if c == b'\'' {
            self.quoted_string(false);
            return Some(Tok::Literal);
        }
        if c == b'"' {
            return Some(Tok::Quoted(self.quoted_ident()));
        }
        if c == b'$' {
            if self.at(self.pos + 1).is_some_and(|d| d.is_ascii_digit()) {
                self.pos += 1;
                while self.pos < b.len() && b[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
                return Some(Tok::Param);
            }
            if self.try_dollar_quote() {
                return Some(Tok::Literal);
            }
            self.pos += 1;
            return Some(Tok::Op(&self.src[start..self.pos]));
        }
        if c.is_ascii_digit()
            || (c == b'.' && self.at(self.pos + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            self.number();
            return Some(Tok::Literal);
        }
        if is_ident_start(c) {
            // String prefixes: E'', B'', X'', N'', U&'' and U&"".
            let next = self.at(self.pos + 1);
            match (c.to_ascii_lowercase(), next) {
                (b'e', Some(b'\'')) => {
                    self.pos += 1;
                    self.quoted_string(true);
                    return Some(Tok::Literal);
                }
                (b'b' | b'x' | b'n', Some(b'\'')) => {
                    self.pos += 1;
                    self.quoted_string(false);
                    return Some(Tok::Literal);
                }
                (b'u', Some(b'&')) if matches!(self.at(self.pos + 2), Some(b'\'' | b'"')) => {
                    self.pos += 2;
                    if b[self.pos] == b'"' {
                        // We do not decode Unicode escapes in identifiers: it could name anything.
                        self.suspicious = true;
                        return Some(Tok::Quoted(self.quoted_ident()));
                    }
                    // Unicode escapes, not subject to standard_conforming_strings.
                    let before = self.suspicious;
                    self.quoted_string(false);
                    self.suspicious = before;
                    return Some(Tok::Literal);
                }
                _ => {}
            }
            while self.pos < b.len() && is_ident_cont(b[self.pos]) {
                self.pos += 1;
            }
            return Some(Tok::Word(&self.src[start..self.pos]));
        }
        if is_op_char(c) {
            while self.pos < b.len() && is_op_char(b[self.pos]) {
                if b[self.pos..].starts_with(b"--") || b[self.pos..].starts_with(b"/*") {
                    break;
                }
                self.pos += 1;
            }
            if self.pos == start {
                self.pos += 1;
            }
            return Some(Tok::Op(&self.src[start..self.pos]));
        }
        if c == b':' && self.at(self.pos + 1) == Some(b':') {
            self.pos += 2;
            return Some(Tok::Op("::"));
        }
        // Any other byte, advancing by a whole UTF-8 character.
        let len = self.src[start..].chars().next().map_or(1, char::len_utf8);
        self.pos += len;
        Some(Tok::Op(&self.src[start..self.pos]))
    }
}

/// Splits a simple-query text into statements at top-level `;` (not inside
/// strings, comments, quoted identifiers or dollar quotes), the way the
/// server does; empty statements are dropped. Statement boundaries are
/// therefore ours, not sqlparser's (whose `COPY … FROM STDIN;` swallows the
/// following text as inline data).
pub fn split_statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut lx = Lexer::new(sql);
    let mut start = 0;
    while let Some(tok) = lx.next() {
        if tok == Tok::Op(";") {
            let piece = &sql[start..lx.pos - 1];
            if Lexer::new(piece).next().is_some() {
                out.push(piece);
            }
            start = lx.pos;
        }
    }
    let piece = &sql[start..];
    if Lexer::new(piece).next().is_some() {
        out.push(piece);
    }
    out
}

/// `COPY … FROM STDIN`: sqlparser only parses it followed by inline data.
pub fn is_copy_from_stdin(stmt: &str) -> bool {
    let mut words = Lexer::new(stmt).filter_map(|t| match t {
        Tok::Word(w) => Some(w),
        _ => None,
    });
    if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("copy")) {
        return false;
    }
    let mut prev_from = false;
    for w in words {
        if prev_from && w.eq_ignore_ascii_case("stdin") {
            return true;
        }
        prev_from = w.eq_ignore_ascii_case("from");
    }
    false
}

/// Writes the Postgres-folded form of an identifier token into `buf`.
pub fn fold_into(tok: &Tok<'_>, buf: &mut String) -> bool {
    buf.clear();
    match tok {
        Tok::Word(w) => {
            buf.extend(w.chars().map(|c| c.to_ascii_lowercase()));
            crate::ident::truncate_in_place(buf);
            true
        }
        Tok::Quoted(q) => {
            if q.contains("\"\"") {
                buf.push_str(&q.replace("\"\"", "\""));
            } else {
                buf.push_str(q);
            }
            crate::ident::truncate_in_place(buf);
            true
        }
        _ => false,
    }
}

/// The precomputed matcher behind [`mentions_tagged`]: the folded names of the
/// tagged tables (the last part of a qualified name is enough, so `s.t`,
/// `"s"."t"` and `t` all hit), plus keywords that must always reach the full
/// analysis (SQL-level `EXECUTE`, whose text names no table, and `PREPARE` /
/// `DEALLOCATE`, which change what an `EXECUTE` means).
///
/// Issue 4 can add view names and the keywords of its refusal list (`do`,
/// `set`, `copy`, `explain`, …) through [`TaggedNames::with_extra_words`].
#[derive(Debug, Clone, Default)]
pub struct TaggedNames {
    names: HashSet<String>,
    max_len: usize,
}

impl TaggedNames {
    pub fn new(rules: &RuleSet) -> Self {
        Self::default()
            .with_extra_words(rules.tables().map(|t| t.name.clone()))
            .with_extra_words(["execute", "prepare", "deallocate", "discard"].map(String::from))
    }

    /// Adds names (already folded as Postgres stores them) that force analysis.
    pub fn with_extra_words<I: IntoIterator<Item = String>>(mut self, words: I) -> Self {
        for w in words {
            self.max_len = self.max_len.max(w.len());
            self.names.insert(w);
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Cheap pre-filter: `false` means the text certainly names no tagged table
/// (and nothing else in [`TaggedNames`]), so it can be forwarded untouched.
/// Errs on the side of `true`: a false positive costs one full parse.
pub fn mentions_tagged(names: &TaggedNames, sql: &str) -> bool {
    if names.is_empty() {
        return false;
    }
    let mut lx = Lexer::new(sql);
    let mut buf = String::with_capacity(32);
    for tok in lx.by_ref() {
        // No length shortcut: the server truncates long names to 63 bytes,
        // so a name of any length can be a tagged one.
        if fold_into(&tok, &mut buf) && names.names.contains(buf.as_str()) {
            return true;
        }
    }
    lx.suspicious
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> TaggedNames {
        TaggedNames::default().with_extra_words(["customers".to_string(), "Mixed".to_string()])
    }

    #[test]
    fn finds_plain_quoted_and_qualified_names() {
        let n = names();
        assert!(mentions_tagged(&n, "select * from customers"));
        assert!(mentions_tagged(&n, "SELECT * FROM CUSTOMERS"));
        assert!(mentions_tagged(&n, "select * from public.customers"));
        assert!(mentions_tagged(&n, r#"select * from "public"."customers""#));
        assert!(mentions_tagged(&n, r#"select * from "Mixed""#));
        // Unquoted Mixed folds to mixed, which is a different table.
        assert!(!mentions_tagged(&n, "select * from Mixed"));
        // Quoted "Customers" is not customers.
        assert!(!mentions_tagged(&n, r#"select * from "Customers""#));
        assert!(mentions_tagged(&n, "select 1;select * from customers"));
    }

    #[test]
    fn skips_comments_strings_and_dollar_quotes() {
        let n = names();
        assert!(!mentions_tagged(&n, "select 1 -- customers\n"));
        assert!(!mentions_tagged(
            &n,
            "select 1 /* outer /* customers */ still comment customers */"
        ));
        assert!(mentions_tagged(&n, "select 1 /* a */ from customers"));
        assert!(!mentions_tagged(
            &n,
            "select 'customers', 'it''s customers'"
        ));
        assert!(!mentions_tagged(
            &n,
            "select $$customers$$, $q$ $$ customers $q$"
        ));
        assert!(!mentions_tagged(&n, r"select E'\' customers'"));
        assert!(!mentions_tagged(&n, "select 1 as customers_x"));
        // A $ inside an identifier does not open a dollar quote.
        assert!(mentions_tagged(&n, "select a$b$ from customers"));
        // Comment-looking text inside a string is data; the table after it is code.
        assert!(mentions_tagged(&n, "select '/*' from customers"));
        assert!(mentions_tagged(
            &n,
            "select 1 from x--y\n join customers on true"
        ));
    }

    #[test]
    fn parser_differentials_are_suspicious() {
        let n = names();
        // With standard_conforming_strings off the quote is escaped and customers is code.
        assert!(mentions_tagged(&n, r"select 'a\', 1 from customers --'"));
        assert!(mentions_tagged(&n, r"select 'a\'"));
        assert!(mentions_tagged(&n, r#"select * from U&"\0063ustomers""#));
        assert!(!mentions_tagged(&n, r"select U&'\0063'"));
    }

    #[test]
    fn lexes_numbers_params_and_ops() {
        let toks: Vec<_> = Lexer::new("a>=$12+1.5e-3::int,0x1F").collect();
        assert_eq!(
            toks,
            vec![
                Tok::Word("a"),
                Tok::Op(">="),
                Tok::Param,
                Tok::Op("+"),
                Tok::Literal,
                Tok::Op("::"),
                Tok::Word("int"),
                Tok::Op(","),
                Tok::Literal
            ]
        );
        assert_eq!(
            split_statements("select ';'; ; select $$;$$ -- ;\n;/* ; */"),
            vec!["select ';'", " select $$;$$ -- ;\n"]
        );
        assert!(is_copy_from_stdin(
            "COPY t (a) FROM stdin WITH (FORMAT csv)"
        ));
        assert!(!is_copy_from_stdin("COPY t TO STDOUT"));
        // Unterminated constructs end the input without panicking.
        for s in ["'abc", "\"abc", "$a$abc", "/* abc", "E'\\", "U&", "$"] {
            let _ = Lexer::new(s).count();
        }
    }
}

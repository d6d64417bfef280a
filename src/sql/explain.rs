//! `pgveil explain`: what pgveil would do with a statement, for DBAs.
//!
//! The report is built from the very same [`analyse`] the proxy runs, so it
//! cannot drift from enforcement. It lists, per statement, each tagged column
//! touched with the decision and the rule (file:line) behind it, the statement
//! as it would be forwarded, or why it is refused. Ciphertext literals and
//! pseudonym-key pad blocks are shown as placeholders: the report is meant to
//! be pasted into tickets.

use std::fmt::Write as _;

use crate::rules::model::{Access, ColumnRule};

use super::refuse::access;
use super::restrict::restricting_rule;
use super::{analyse, Analysis, ColumnAction, ColumnUse, Context, StatementPlan};

/// The DBA-readable report for `sql` under `ctx` (see module docs).
pub fn explain(sql: &str, ctx: &Context) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "roles: {}", ctx.roles.join(", "));
    match restricting_rule(ctx.rules, ctx.roles) {
        Some(r) => {
            let _ = writeln!(
                out,
                "session: restricted (e.g. `{}` on {}, rule {}:{}): every statement is checked, \
                 protected tables are served through masked derived tables",
                access(r, ctx.roles),
                r.qualified(),
                r.source.file,
                r.source.line
            );
        }
        None => {
            let _ = writeln!(
                out,
                "session: unrestricted (plaintext on every tagged column)"
            );
        }
    }
    if ctx.schema.is_none() {
        let _ = writeln!(
            out,
            "schema: offline (rules only; tables resolved with search_path public)"
        );
    }
    match analyse(sql, ctx) {
        Analysis::Passthrough => {
            let _ = writeln!(out, "decision: forwarded unchanged (names no tagged table)");
        }
        Analysis::Refused(r) => {
            let _ = writeln!(out, "decision: REFUSED with SQLSTATE {}", r.sqlstate);
            let _ = writeln!(out, "reason: {}", r.message);
            if let Some(h) = &r.hint {
                let _ = writeln!(out, "hint: {h}");
            }
        }
        Analysis::Rewritten { sql, statements } => {
            let _ = writeln!(out, "decision: forwarded as rewritten below");
            let _ = writeln!(out, "forwarded SQL bytes: {}", sql.len());
            for (i, p) in statements.iter().enumerate() {
                statement_report(&mut out, i + 1, p, ctx);
            }
            let _ = writeln!(out, "forwarded SQL:");
            for line in redact(&sql).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out
}

fn statement_report(out: &mut String, n: usize, p: &StatementPlan, ctx: &Context) {
    let tables: Vec<String> = p.tables.iter().map(|t| t.to_string()).collect();
    let _ = writeln!(
        out,
        "statement {n}: {:?}{}",
        p.kind,
        if tables.is_empty() {
            String::new()
        } else {
            format!(" on {}", tables.join(", "))
        }
    );
    if p.output_masked {
        let _ = writeln!(
            out,
            "  path: output-only masking (masked columns only returned: masked by pgveil in \
             each row, by RowDescription origin)"
        );
    }
    if p.columns.is_empty() {
        let _ = writeln!(out, "  no tagged column is read or written");
    }
    for u in &p.columns {
        let rule = ctx
            .rules
            .columns()
            .iter()
            .find(|r| r.qualified() == u.column);
        let _ = writeln!(out, "  {}", column_line(u, rule, ctx));
    }
}

fn column_line(u: &ColumnUse, rule: Option<&ColumnRule>, ctx: &Context) -> String {
    let at_rest = match rule.and_then(|r| r.encrypt) {
        Some(_) => "encrypted",
        None => "plaintext at rest",
    };
    let decision = match u.action {
        ColumnAction::Plaintext => "plaintext".to_string(),
        ColumnAction::Masked => match rule.map(|r| access(r, ctx.roles)) {
            Some(Access::Mask(m)) => format!("masked with {m}"),
            _ => "masked".to_string(),
        },
        ColumnAction::Null => "served as NULL".to_string(),
        ColumnAction::Denied => "denied".to_string(),
        ColumnAction::EncryptedWrite => "encrypted write".to_string(),
        ColumnAction::Match => "equality match on ciphertext".to_string(),
    };
    let src = rule
        .map(|r| format!("rule {}:{}", r.source.file, r.source.line))
        .unwrap_or_default();
    format!("{} ({}, {at_rest}): {decision}; {src}", u.column, u.class)
}

/// Replaces ciphertext literals (`E'\\x…'`) by `<ciphertext>` and 128-digit
/// hex pad blocks of the hash mask by `<pseudonym key>`.
pub fn redact(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    loop {
        let next_ct = rest.find("E'\\\\x");
        let next_pad = find_pad(rest);
        match (next_ct, next_pad) {
            (Some(c), p) if p.is_none_or(|(ps, _)| c < ps) => {
                out.push_str(&rest[..c]);
                let after = &rest[c + 5..];
                let end = after
                    .find('\'')
                    .map_or(after.len(), |e| (e + 1).min(after.len()));
                out.push_str("<ciphertext>");
                rest = &after[end..];
            }
            (_, Some((ps, pe))) => {
                out.push_str(&rest[..ps]);
                out.push_str("'<pseudonym key>'");
                rest = &rest[pe..];
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// The first `'<128 hex digits>'` literal: (start, end) byte offsets.
fn find_pad(s: &str) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(off) = s[i..].find('\'') {
        let start = i + off;
        let digits = b[start + 1..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        if digits == 128 && b.get(start + 1 + digits) == Some(&b'\'') {
            return Some((start, start + digits + 2));
        }
        i = start + 1;
    }
    None
}

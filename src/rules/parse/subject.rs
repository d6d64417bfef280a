//! `[[subject]]` entries: which tables hold a data subject's rows, and the
//! column that says whose (issue 15).
//!
//! Per-entry problems (types, names, unknown keys) are found while reading
//! one file; problems between entries (duplicate tables, a child naming an
//! unknown subject, a key column that is also tagged) need every file and
//! every column rule, so [`cross_check`] runs after all files are read.

use std::collections::HashMap;

use super::{
    parse_column_name, parse_table_name, string_value, suggest, Ctx, FileResult, Located, Node,
};
use crate::rules::diagnostic::Diagnostic;
use crate::rules::model::{ColumnRule, SourceLoc, SubjectRule, TableName};

const SUBJECT_KEYS: &[&str] = &["table", "key", "subject"];

/// Reads the value of the top-level `subject` key: an array of tables.
pub(super) fn entries(ctx: &mut Ctx<'_>, out: &mut FileResult, line: usize, value: Located<Node>) {
    let Node::Array(items) = value.value else {
        ctx.error(
            line,
            format!(
                "`subject` must be an array of tables, found {}",
                value.value.kind()
            ),
            Some("write each subject table as a [[subject]] table".into()),
        );
        return;
    };
    for item in items {
        let item_line = ctx.line(&item.span, line);
        match item.value {
            Node::Table(fields) => entry(ctx, out, item_line, fields),
            other => ctx.error(
                item_line,
                format!(
                    "each `subject` entry must be a table, found {}",
                    other.kind()
                ),
                Some("write each subject table as a [[subject]] table".into()),
            ),
        }
    }
}

/// Validates one `[[subject]]` table; pushes an entry only when it is clean.
fn entry(
    ctx: &mut Ctx<'_>,
    out: &mut FileResult,
    entry_line: usize,
    fields: Vec<(Located<String>, Located<Node>)>,
) {
    let errors_before = ctx.diags.len();
    let mut seen = Vec::new();
    let (mut table, mut key, mut parent) = (None, None, None);
    for (k, value) in fields {
        let line = ctx.line(&k.span, entry_line);
        let value_line = ctx.line(&value.span, line);
        seen.push(k.value.clone());
        match k.value.as_str() {
            "table" | "subject" => {
                let Some(s) = string_value(ctx, &k.value, value, line) else {
                    continue;
                };
                match parse_table_name(&s) {
                    Ok(t) if k.value == "table" => table = Some(t),
                    Ok(t) => parent = Some(t),
                    Err((msg, hint)) => ctx.error(value_line, msg, Some(hint)),
                }
            }
            "key" => {
                if let Some(s) = string_value(ctx, "key", value, line) {
                    match parse_column_name(&s) {
                        Ok(n) => key = Some(n),
                        Err((msg, hint)) => ctx.error(value_line, msg, Some(hint)),
                    }
                }
            }
            other => {
                let keys = SUBJECT_KEYS.join(", ");
                let hint = match suggest(other, SUBJECT_KEYS) {
                    Some(s) => format!("did you mean `{s}`? keys of [[subject]]: {keys}"),
                    None => format!("keys of [[subject]]: {keys}"),
                };
                ctx.error(
                    line,
                    format!("unknown key `{other}` in [[subject]]"),
                    Some(hint),
                );
            }
        }
    }
    for required in ["table", "key"] {
        if !seen.iter().any(|s| s == required) {
            let hint = match required {
                "table" => "add e.g. table = \"public.customers\"",
                _ => "add the column that identifies the subject, e.g. key = \"id\" (or \"customer_id\" in a child table)",
            };
            ctx.error(
                entry_line,
                format!("[[subject]] is missing the required key `{required}`"),
                Some(hint.into()),
            );
        }
    }
    if let (Some(t), Some(p)) = (&table, &parent) {
        if t == p {
            ctx.error(
                entry_line,
                format!("[[subject]] for {t} names itself as its subject"),
                Some("leave `subject` out for the table that defines the subjects".into()),
            );
        }
    }
    if ctx.diags.len() != errors_before {
        return;
    }
    if let (Some(table), Some(key)) = (table, key) {
        out.subjects.push(SubjectRule {
            table,
            key,
            parent,
            source: SourceLoc {
                file: ctx.label.to_string(),
                line: entry_line,
            },
        });
    }
}

fn at(loc: &SourceLoc, message: String, hint: &str) -> Diagnostic {
    Diagnostic::new(loc.file.clone(), loc.line, message).with_hint(hint)
}

/// Checks subject entries against each other and the column rules: each
/// table at most once; a child names a root entry; the key column is not a
/// tagged column. Why the last: the key is what identifies a subject in
/// erasure and in tokens, so it must be readable by pgveil as stored, and
/// masking or encrypting it would make rows of one subject unrecognisable.
pub(in crate::rules) fn cross_check(
    columns: &[ColumnRule],
    subjects: &[SubjectRule],
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut first: HashMap<&TableName, &SubjectRule> = HashMap::new();
    for s in subjects {
        match first.get(&s.table) {
            Some(orig) => out.push(at(
                &s.source,
                format!(
                    "duplicate [[subject]] for table {}; first defined at {}:{}",
                    s.table, orig.source.file, orig.source.line
                ),
                "declare each subject table once across all rule files",
            )),
            None => {
                first.insert(&s.table, s);
            }
        }
    }
    for s in subjects {
        if let Some(p) = &s.parent {
            match first.get(p) {
                None => out.push(at(
                    &s.source,
                    format!("[[subject]] for {} names subject {p}, which no [[subject]] entry declares", s.table),
                    "add a [[subject]] entry for that table (without `subject`), or fix the name",
                )),
                Some(root) if root.parent.is_some() => out.push(at(
                    &s.source,
                    format!("[[subject]] for {} names {p}, which is itself a child of {}", s.table, root.subject()),
                    "point `subject` at the table that defines the subjects (the entry without `subject`)",
                )),
                Some(_) => {}
            }
        }
        if let Some(c) = columns
            .iter()
            .find(|c| c.table == s.table && c.name == s.key)
        {
            out.push(at(
                &s.source,
                format!(
                    "subject key {}.{} is also a tagged column (rule at {}:{})",
                    s.table, s.key, c.source.file, c.source.line
                ),
                "a subject key must be stored as is; remove its [[column]] rule or choose another key",
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::rules::parse::parse_str_set;
    use crate::rules::{render_report, Diagnostic, RuleSet};

    fn set(text: &str) -> RuleSet {
        match parse_str_set("s.toml", text, "v") {
            Ok(r) => r,
            Err(d) => panic!("unexpected errors:\n{}", render_report(&d)),
        }
    }

    fn errors(text: &str) -> Vec<(usize, String)> {
        match parse_str_set("s.toml", text, "v") {
            Ok(r) => panic!("expected errors, got {} subjects", r.subjects().len()),
            Err(d) => d
                .iter()
                .map(|d: &Diagnostic| (d.line, d.message.clone()))
                .collect(),
        }
    }

    const GOOD: &str = r#"[[subject]]
table = "public.customers"
key = "id"

[[subject]]
table = "public.orders"
key = "Customer_ID"
subject = "public.customers"

[[column]]
table = "public.customers"
name = "email"
type = "text"
"#;

    #[test]
    fn roots_and_children_parse_with_sources() {
        let r = set(GOOD);
        let s = r.subjects();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].table.to_string(), "public.customers");
        assert_eq!((s[0].key.as_str(), s[0].parent.as_ref()), ("id", None));
        assert_eq!(s[0].subject().to_string(), "public.customers");
        assert_eq!(s[1].key, "customer_id", "unquoted names fold");
        assert_eq!(s[1].subject().to_string(), "public.customers");
        assert_eq!((s[1].source.file.as_str(), s[1].source.line), ("s.toml", 5));
        assert_eq!(r.columns().len(), 1);
        let tables: Vec<String> = r.catalog_tables().iter().map(|t| t.to_string()).collect();
        assert_eq!(tables.len(), 2, "{tables:?}");
        assert!(r.subject_rule(&s[1].table).is_some());
    }

    #[test]
    fn per_entry_problems_are_reported_on_their_lines() {
        let e = errors(
            r#"[[subject]]
table = "customers"
key = 3
kee = "id"

[[subject]]
subject = "public.customers"

[[subject]]
table = "public.a"
key = "id"
subject = "public.a"
"#,
        );
        assert_eq!(
            e,
            vec![
                (2, "table name `customers` is not schema-qualified".into()),
                (3, "`key` must be a string, found an integer".into()),
                (4, "unknown key `kee` in [[subject]]".into()),
                (6, "[[subject]] is missing the required key `table`".into()),
                (6, "[[subject]] is missing the required key `key`".into()),
                (
                    9,
                    "[[subject]] for public.a names itself as its subject".into()
                ),
            ]
        );
    }

    #[test]
    fn cross_entry_problems_point_at_the_later_entry() {
        let e = errors(
            r#"[[subject]]
table = "public.customers"
key = "email"

[[subject]]
table = "public.customers"
key = "id"

[[subject]]
table = "public.orders"
key = "customer_id"
subject = "public.clients"

[[subject]]
table = "public.lines"
key = "order_id"
subject = "public.orders"

[[subject]]
table = "public.orders2"
key = "customer_id"
subject = "public.customers"

[[column]]
table = "public.customers"
name = "email"
type = "text"
encrypt = "deterministic"
"#,
        );
        let msgs: Vec<&str> = e.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(msgs.contains(
            &"duplicate [[subject]] for table public.customers; first defined at s.toml:1"
        ));
        assert!(msgs.contains(&"[[subject]] for public.orders names subject public.clients, which no [[subject]] entry declares"));
        assert!(msgs.contains(&"[[subject]] for public.lines names public.orders, which is itself a child of public.clients"));
        assert!(msgs.contains(
            &"subject key public.customers.email is also a tagged column (rule at s.toml:24)"
        ));
    }

    #[test]
    fn subject_must_be_an_array_of_tables() {
        let e = errors("subject = \"public.customers\"\n");
        assert_eq!(
            e,
            vec![(
                1,
                "`subject` must be an array of tables, found a string".into()
            )]
        );
    }
}

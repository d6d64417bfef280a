//! Rule files (`rules/*.toml`) to a validated [`RuleSet`].
//!
//! A DBA fixing a rule file wants every mistake at once, each with its file
//! and line, not one per run. So a file is first read into a spanned TOML
//! tree (which fails only on TOML syntax), then every key is checked by hand,
//! collecting [`Diagnostic`]s instead of returning at the first problem. A
//! rule set is returned only when there are no diagnostics at all: rules are
//! a security boundary, and a half-loaded set would silently deny or reveal.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::diagnostic::Diagnostic;
use super::model::{
    Access, ColumnRule, EncryptMode, LogicalType, Mask, RuleSet, SourceLoc, SubjectRule, TableName,
};
use super::toml_tree::{self, Located, Node};

/// Postgres silently truncates identifiers longer than this (NAMEDATALEN - 1
/// bytes), so a longer name in a rule could never match the catalog.
use crate::ident::MAX_IDENTIFIER_BYTES;

const COLUMN_KEYS: &[&str] = &["table", "name", "type", "encrypt", "class", "access"];
const DEFAULT_CLASS: &str = "unclassified";

/// Loads every `*.toml` file directly in `dir` (sorted by name; dot-files,
/// other files and subdirectories ignored) into one rule set. An empty
/// directory is a valid, empty rule set; a missing one is an error, because
/// a typo in `--rules` must not silently start a proxy that protects nothing.
pub fn load_dir(dir: &Path) -> Result<RuleSet, Vec<Diagnostic>> {
    let files = list_rule_files(dir).map_err(|d| vec![d])?;
    let mut hasher = Sha256::new();
    let mut diags = Vec::new();
    let mut rules = Vec::new();
    let mut subjects = Vec::new();
    let mut idents = Vec::new();
    for (name, path) in files {
        let label = path.display().to_string();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                diags.push(Diagnostic::new(
                    label,
                    0,
                    format!("cannot read rule file: {e}"),
                ));
                continue;
            }
        };
        // Length-prefixed so that moving bytes between a name and a content
        // cannot produce the same version.
        for part in [name.as_bytes(), &bytes] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(e) => {
                let line = line_of(&bytes, e.valid_up_to());
                diags.push(
                    Diagnostic::new(label, line, "rule file is not valid UTF-8")
                        .with_hint("save the file as UTF-8"),
                );
                continue;
            }
        };
        let mut file = parse_file(&label, text);
        diags.append(&mut file.diags);
        rules.append(&mut file.rules);
        subjects.append(&mut file.subjects);
        idents.append(&mut file.idents);
    }
    diags.extend(duplicates(&idents));
    diags.extend(subject::cross_check(&rules, &subjects));
    if !diags.is_empty() {
        return Err(diags);
    }
    let digest = hex::encode(hasher.finalize());
    let version = digest.get(..12).unwrap_or(&digest).to_string();
    Ok(RuleSet::new(rules, version).with_subjects(subjects))
}

/// Parses and validates one file's text. `file_label` is only used in
/// diagnostics and [`SourceLoc`]s. Duplicates within the file are reported;
/// duplicates across files need [`load_dir`].
/// `[[subject]]` entries are validated too; use [`parse_str_set`] to keep them.
pub fn parse_str(file_label: &str, text: &str) -> Result<Vec<ColumnRule>, Vec<Diagnostic>> {
    parse_str_all(file_label, text).map(|(rules, _)| rules)
}

/// One file's text to a whole rule set (columns and subjects), with
/// `version` as given. For tests and tools that hold rules in memory.
pub fn parse_str_set(
    file_label: &str,
    text: &str,
    version: &str,
) -> Result<RuleSet, Vec<Diagnostic>> {
    let (rules, subjects) = parse_str_all(file_label, text)?;
    Ok(RuleSet::new(rules, version.to_string()).with_subjects(subjects))
}

fn parse_str_all(
    file_label: &str,
    text: &str,
) -> Result<(Vec<ColumnRule>, Vec<SubjectRule>), Vec<Diagnostic>> {
    let mut file = parse_file(file_label, text);
    file.diags.extend(duplicates(&file.idents));
    file.diags
        .extend(subject::cross_check(&file.rules, &file.subjects));
    if file.diags.is_empty() {
        Ok((file.rules, file.subjects))
    } else {
        Err(file.diags)
    }
}

fn list_rule_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, Diagnostic> {
    let label = dir.display().to_string();
    let entries = fs::read_dir(dir).map_err(|e| {
        Diagnostic::new(
            label.clone(),
            0,
            format!("cannot read rules directory: {e}"),
        )
        .with_hint("pass an existing directory with --rules (it may be empty)")
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            Diagnostic::new(
                label.clone(),
                0,
                format!("cannot list rules directory: {e}"),
            )
        })?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // Dot-files are editor scratch (`.#customers.toml` locks and the
        // like); reading them would make a half-saved edit a reload.
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        let path = entry.path();
        if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push((name, path));
        }
    }
    files.sort();
    Ok(files)
}

/// What one file contributed: valid rules, problems, and the identity of
/// every column whose table and name parsed (even if other keys did not), so
/// duplicates are found in the same run as other errors.
struct FileResult {
    rules: Vec<ColumnRule>,
    subjects: Vec<SubjectRule>,
    diags: Vec<Diagnostic>,
    idents: Vec<(TableName, String, SourceLoc)>,
}

/// 1-based line of a byte offset; offsets past the end count as the end.
fn line_of(text: &[u8], offset: usize) -> usize {
    let end = offset.min(text.len());
    text[..end].iter().filter(|b| **b == b'\n').count() + 1
}

struct Ctx<'a> {
    label: &'a str,
    text: &'a str,
    diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    /// Line of a span, or `fallback` (the enclosing key's line) when the
    /// parser has no span, as for dotted-key tables.
    fn line(&self, span: &Option<Range<usize>>, fallback: usize) -> usize {
        span.as_ref()
            .map_or(fallback, |r| line_of(self.text.as_bytes(), r.start))
    }

    fn error(&mut self, line: usize, message: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::new(self.label, line, message);
        d.hint = hint;
        self.diags.push(d);
    }
}

fn parse_file(label: &str, text: &str) -> FileResult {
    let mut ctx = Ctx {
        label,
        text,
        diags: Vec::new(),
    };
    let mut out = FileResult {
        rules: Vec::new(),
        subjects: Vec::new(),
        diags: Vec::new(),
        idents: Vec::new(),
    };
    let root = match toml_tree::parse(text) {
        Ok(r) => r,
        Err(e) => {
            let line = ctx.line(&e.span, 1);
            let message = format!("TOML syntax error: {}", e.message.replace('\n', "; "));
            ctx.error(
                line,
                message,
                Some("see docs/rules.md for the file format".into()),
            );
            out.diags = ctx.diags;
            return out;
        }
    };
    let Node::Table(entries) = root.value else {
        ctx.error(1, "a rule file must be a TOML table", None);
        out.diags = ctx.diags;
        return out;
    };
    for (key, value) in entries {
        let line = ctx.line(&key.span, 1);
        if key.value == "subject" {
            subject::entries(&mut ctx, &mut out, line, value);
            continue;
        }
        if key.value != "column" {
            let hint = "a rule file holds only [[column]] and [[subject]] tables".to_string();
            ctx.error(line, format!("unknown key `{}`", key.value), Some(hint));
            continue;
        }
        let Node::Array(items) = value.value else {
            ctx.error(
                line,
                format!(
                    "`column` must be an array of tables, found {}",
                    value.value.kind()
                ),
                Some("write each column as a [[column]] table".into()),
            );
            continue;
        };
        for item in items {
            let item_line = ctx.line(&item.span, line);
            match item.value {
                Node::Table(fields) => column(&mut ctx, &mut out, item_line, fields),
                other => ctx.error(
                    item_line,
                    format!(
                        "each `column` entry must be a table, found {}",
                        other.kind()
                    ),
                    Some("write each column as a [[column]] table".into()),
                ),
            }
        }
    }
    // Errors come out in reading order, whatever the check that found them.
    ctx.diags.sort_by_key(|d| d.line);
    out.diags = ctx.diags;
    out
}

/// Fetches a string value or reports what was found instead.
fn string_value(ctx: &mut Ctx<'_>, key: &str, value: Located<Node>, line: usize) -> Option<String> {
    match value.value {
        Node::String(s) => Some(s),
        other => {
            let line = ctx.line(&value.span, line);
            ctx.error(
                line,
                format!("`{key}` must be a string, found {}", other.kind()),
                None,
            );
            None
        }
    }
}

/// Validates one `[[column]]` table; pushes a rule only when it is clean.
fn column(
    ctx: &mut Ctx<'_>,
    out: &mut FileResult,
    col_line: usize,
    fields: Vec<(Located<String>, Located<Node>)>,
) {
    let errors_before = ctx.diags.len();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut table = None;
    let mut name = None;
    let mut ty = None;
    let mut encrypt = None;
    let mut class = None;
    let mut access_node = None;

    for (key, value) in fields {
        let line = ctx.line(&key.span, col_line);
        let value_line = ctx.line(&value.span, line);
        seen.insert(key.value.clone(), line);
        match key.value.as_str() {
            "table" => {
                if let Some(s) = string_value(ctx, "table", value, line) {
                    match parse_table_name(&s) {
                        Ok(t) => table = Some(t),
                        Err((msg, hint)) => ctx.error(value_line, msg, Some(hint)),
                    }
                }
            }
            "name" => {
                if let Some(s) = string_value(ctx, "name", value, line) {
                    match parse_column_name(&s) {
                        Ok(n) => name = Some(n),
                        Err((msg, hint)) => ctx.error(value_line, msg, Some(hint)),
                    }
                }
            }
            "type" => {
                if let Some(s) = string_value(ctx, "type", value, line) {
                    match LogicalType::parse(s.trim()) {
                        Some(t) => ty = Some(t),
                        None => ctx.error(
                            value_line,
                            format!("unknown type `{s}`"),
                            Some(format!("supported types: {}", type_list())),
                        ),
                    }
                }
            }
            "encrypt" => {
                if let Some(s) = string_value(ctx, "encrypt", value, line) {
                    match s.trim().to_ascii_lowercase().as_str() {
                        "deterministic" => encrypt = Some(EncryptMode::Deterministic),
                        "randomized" => encrypt = Some(EncryptMode::Randomized),
                        _ => ctx.error(
                            value_line,
                            format!("unknown encrypt mode `{s}`"),
                            Some(
                                "use \"deterministic\" (equality search) or \"randomized\"; \
                                 leave `encrypt` out to store the column in plaintext"
                                    .into(),
                            ),
                        ),
                    }
                }
            }
            "class" => {
                if let Some(s) = string_value(ctx, "class", value, line) {
                    if s.trim().is_empty() {
                        ctx.error(
                            value_line,
                            "`class` must not be empty",
                            Some(format!("leave `class` out to use \"{DEFAULT_CLASS}\"")),
                        );
                    } else {
                        class = Some(s.trim().to_string());
                    }
                }
            }
            "access" => access_node = Some((value, line)),
            other => {
                let hint = match suggest(other, COLUMN_KEYS) {
                    Some(s) => format!(
                        "did you mean `{s}`? keys of [[column]]: {}",
                        COLUMN_KEYS.join(", ")
                    ),
                    None => format!("keys of [[column]]: {}", COLUMN_KEYS.join(", ")),
                };
                ctx.error(
                    line,
                    format!("unknown key `{other}` in [[column]]"),
                    Some(hint),
                );
            }
        }
    }

    for required in ["table", "name", "type"] {
        if !seen.contains_key(required) {
            ctx.error(
                col_line,
                format!("[[column]] is missing the required key `{required}`"),
                Some(match required {
                    "table" => "add e.g. table = \"public.customers\"".to_string(),
                    "name" => "add the column name, e.g. name = \"email\"".to_string(),
                    _ => format!("add the type applications see, one of: {}", type_list()),
                }),
            );
        }
    }

    if let (Some(t), Some(mode)) = (ty, encrypt) {
        if let Err(why) = encryption_supported(t, mode) {
            let line = seen.get("encrypt").copied().unwrap_or(col_line);
            ctx.error(line, why, Some("use encrypt = \"randomized\"".into()));
        }
    }

    let (access, default) = match access_node {
        Some((node, line)) => access_map(ctx, node, line, ty),
        None => (BTreeMap::new(), Access::Deny),
    };

    let source = SourceLoc {
        file: ctx.label.to_string(),
        line: col_line,
    };
    if let (Some(t), Some(n)) = (&table, &name) {
        out.idents.push((t.clone(), n.clone(), source.clone()));
    }
    if ctx.diags.len() != errors_before {
        return;
    }
    if let (Some(table), Some(name), Some(ty)) = (table, name, ty) {
        out.rules.push(ColumnRule {
            table,
            name,
            ty,
            encrypt,
            class: class.unwrap_or_else(|| DEFAULT_CLASS.to_string()),
            access,
            default,
            source,
        });
    }
}

/// Validates `[column.access]`: role = "access" pairs plus `default`.
fn access_map(
    ctx: &mut Ctx<'_>,
    node: Located<Node>,
    key_line: usize,
    ty: Option<LogicalType>,
) -> (BTreeMap<String, Access>, Access) {
    let mut access = BTreeMap::new();
    let mut default = Access::Deny;
    let table_line = ctx.line(&node.span, key_line);
    let Node::Table(entries) = node.value else {
        ctx.error(
            table_line,
            format!("`access` must be a table, found {}", node.value.kind()),
            Some("write [column.access] followed by role = \"access\" lines".into()),
        );
        return (access, default);
    };
    for (role, value) in entries {
        let line = ctx.line(&role.span, table_line);
        let role_name = role.value;
        let label = if role_name == "default" {
            "default access".to_string()
        } else {
            format!("access of role `{role_name}`")
        };
        let Some(spelled) = string_value(ctx, &label, value, line) else {
            continue;
        };
        if role_name.trim().is_empty() {
            ctx.error(
                line,
                "empty role name in [column.access]",
                Some("write a Postgres role name, e.g. support = \"email\"".into()),
            );
            continue;
        }
        if role_name.len() > MAX_IDENTIFIER_BYTES {
            ctx.error(
                line,
                format!("role name `{role_name}` is longer than {MAX_IDENTIFIER_BYTES} bytes and can never match a Postgres role"),
                None,
            );
            continue;
        }
        let parsed = match Access::parse(&spelled) {
            Ok(a) => a,
            Err(msg) => {
                let hint = "see docs/rules.md, \"Access values\"".to_string();
                ctx.error(line, format!("{label}: {msg}"), Some(hint));
                continue;
            }
        };
        if let (Access::Mask(m), Some(t)) = (parsed, ty) {
            if !m.applies_to(t) {
                ctx.error(
                    line,
                    format!("{label}: mask `{m}` does not apply to a column of type {t}"),
                    Some(format!("masks for {t}: {}", masks_for(t))),
                );
                continue;
            }
        }
        if role_name == "default" {
            default = parsed;
        } else {
            access.insert(role_name, parsed);
        }
    }
    (access, default)
}

/// Which (type, mode) pairs pgveil refuses to encrypt, and why.
///
/// A deterministic `bool` has only two possible ciphertexts per key, so
/// anyone who knows one row's value learns every row's: the encryption
/// would hide nothing.
fn encryption_supported(ty: LogicalType, mode: EncryptMode) -> Result<(), String> {
    match (ty, mode) {
        (LogicalType::Bool, EncryptMode::Deterministic) => Err(
            "deterministic encryption of a bool column hides nothing (only two ciphertexts)".into(),
        ),
        _ => Ok(()),
    }
}

fn type_list() -> String {
    LogicalType::ALL
        .iter()
        .map(|t| t.sql_name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The masks (and generic actions) valid for a type, for hints.
fn masks_for(ty: LogicalType) -> String {
    let all = [
        Mask::Redact,
        Mask::Partial { first: 0, last: 4 },
        Mask::Email,
        Mask::Hash,
        Mask::Year,
        Mask::Month,
        Mask::Round(10),
    ];
    let mut names: Vec<String> = all
        .iter()
        .filter(|m| m.applies_to(ty))
        .map(|m| match m {
            Mask::Partial { .. } => "partial(F,L)".to_string(),
            Mask::Round(_) => "round(N)".to_string(),
            other => other.to_string(),
        })
        .collect();
    names.extend(["plaintext", "null", "deny"].map(String::from));
    names.join(", ")
}

/// The closest known key within edit distance 2, for typo hints.
fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(&word.to_ascii_lowercase(), k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

type Problem = (String, String);

/// Splits a dotted name into identifiers, folding unquoted ones to lower
/// case and unescaping `""` in quoted ones, as Postgres does.
pub(crate) fn split_identifiers(s: &str) -> Result<Vec<String>, Problem> {
    let quote_hint = || {
        "unquoted names may use letters, digits, _ and $; double-quote any other name, \
         e.g. public.\"Customers\""
            .to_string()
    };
    let mut parts = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut ident = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        ident.push('"');
                    }
                    Some('"') => break,
                    Some(c) => ident.push(c),
                    None => {
                        return Err((
                            format!("unterminated quoted identifier in `{s}`"),
                            quote_hint(),
                        ))
                    }
                }
            }
            if ident.is_empty() {
                return Err((format!("empty quoted identifier in `{s}`"), quote_hint()));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                let ok = if ident.is_empty() {
                    c.is_alphabetic() || c == '_' || !c.is_ascii()
                } else {
                    c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
                };
                if !ok {
                    return Err((
                        format!("invalid character `{c}` in name `{s}`"),
                        quote_hint(),
                    ));
                }
                ident.push(c.to_ascii_lowercase());
                chars.next();
            }
            if ident.is_empty() {
                return Err((
                    format!("empty name part in `{s}`"),
                    "write schema.table, e.g. public.customers".to_string(),
                ));
            }
        }
        if ident.len() > MAX_IDENTIFIER_BYTES {
            return Err((
                format!("name `{ident}` is longer than {MAX_IDENTIFIER_BYTES} bytes; Postgres would truncate it"),
                "use the name as Postgres stores it".to_string(),
            ));
        }
        parts.push(ident);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(c) => {
                return Err((
                    format!("unexpected `{c}` after a quoted name in `{s}`"),
                    quote_hint(),
                ))
            }
        }
    }
}

/// Parses `schema.table`. The schema is required: resolving through a
/// search_path at rule-load time would make a rule's meaning depend on
/// the session.
pub(crate) fn parse_table_name(s: &str) -> Result<TableName, Problem> {
    if s.is_empty() {
        return Err((
            "empty table name".to_string(),
            "write schema.table, e.g. public.customers".to_string(),
        ));
    }
    let parts = split_identifiers(s)?;
    match <[String; 2]>::try_from(parts) {
        Ok([schema, name]) => Ok(TableName { schema, name }),
        Err(parts) if parts.len() == 1 => Err((
            format!("table name `{s}` is not schema-qualified"),
            format!("write schema.table, e.g. public.{s}"),
        )),
        Err(_) => Err((
            format!("table name `{s}` has too many parts"),
            "write schema.table (no database name), e.g. public.customers".to_string(),
        )),
    }
}

/// Parses a column name: one identifier, folded like the table name.
pub(crate) fn parse_column_name(s: &str) -> Result<String, Problem> {
    if s.is_empty() {
        return Err((
            "empty column name".to_string(),
            "write the column name, e.g. name = \"email\"".to_string(),
        ));
    }
    let mut parts = split_identifiers(s)?;
    match parts.pop() {
        Some(p) if parts.is_empty() => Ok(p),
        _ => Err((
            format!("column name `{s}` must be a single identifier"),
            "put the schema and table in `table` and only the column in `name`".to_string(),
        )),
    }
}

/// Reports each repeated (table, column), pointing at both definitions.
fn duplicates(idents: &[(TableName, String, SourceLoc)]) -> Vec<Diagnostic> {
    let mut first: HashMap<(&TableName, &str), &SourceLoc> = HashMap::new();
    let mut out = Vec::new();
    for (table, name, loc) in idents {
        match first.get(&(table, name.as_str())) {
            Some(orig) => out.push(
                Diagnostic::new(
                    loc.file.clone(),
                    loc.line,
                    format!(
                        "duplicate rule for column {table}.{name}; first defined at {}:{}",
                        orig.file, orig.line
                    ),
                )
                .with_hint(
                    "tag each column once across all rule files; merge the two [[column]] entries",
                ),
            ),
            None => {
                first.insert((table, name.as_str()), loc);
            }
        }
    }
    out
}

mod subject;

#[cfg(test)]
mod tests;

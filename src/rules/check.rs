//! The logic behind `pgveil check`: rendering diagnostics, checking rules
//! against a live catalog snapshot, and summarising sampled ciphertexts.
//!
//! Everything here is pure; the caller does the I/O (reading the catalog,
//! sampling and decrypting stored values). Keeping it pure lets the checks
//! be tested without a database, and guarantees by construction that the
//! report can only contain counts, never a sampled value: the sample
//! functions never receive values at all.

use std::collections::HashSet;

use super::diagnostic::Diagnostic;
use super::model::{ColumnRule, LogicalType, RuleSet, SubjectRule, TableName};
use crate::schema::{ColumnInfo, SchemaSnapshot};

/// Postgres OID of `bytea`, the at-rest type of every encrypted column.
const BYTEA_OID: u32 = 17;

/// One line for a successful check, e.g.
/// `ok: 6 tagged columns (5 encrypted) in 1 table, rules version 3f2a…`.
pub fn render_ok(rules: &RuleSet) -> String {
    let cols = rules.columns().len();
    let encrypted = rules
        .columns()
        .iter()
        .filter(|c| c.encrypt.is_some())
        .count();
    let tables = rules.tables().count();
    let subjects = match rules.subjects().len() {
        0 => String::new(),
        n => {
            let roots = rules
                .subjects()
                .iter()
                .filter(|s| s.parent.is_none())
                .count();
            format!(
                ", {n} subject table{} ({roots} defining subjects)",
                if n == 1 { "" } else { "s" }
            )
        }
    };
    format!(
        "ok: {cols} tagged column{} ({encrypted} encrypted) in {tables} table{}{subjects}, rules version {}\n",
        if cols == 1 { "" } else { "s" },
        if tables == 1 { "" } else { "s" },
        rules.version
    )
}

fn at(rule: &ColumnRule, message: String, hint: &str) -> Diagnostic {
    Diagnostic::new(rule.source.file.clone(), rule.source.line, message).with_hint(hint)
}

/// Checks the rules against the live schema: every tagged table and column
/// exists, encrypted columns are `bytea`, and plaintext-at-rest columns have
/// a database type that can hold their logical type. Diagnostics point at
/// the rule (file and line) so the DBA knows which entry to fix.
pub fn check_against_schema(rules: &RuleSet, schema: &SchemaSnapshot) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut missing_tables = HashSet::new();
    for rule in rules.columns() {
        let Some(table) = schema.tables.get(&rule.table) else {
            if missing_tables.insert(&rule.table) {
                out.push(at(
                    rule,
                    format!(
                        "table {} does not exist in the database (or is not visible to this user); \
                         until it does, pgveil refuses restricted sessions every statement that reads a table",
                        rule.table
                    ),
                    "create the table, or fix `table` (after ALTER TABLE … RENAME or SET SCHEMA, write the new name); \
                     unquoted names are folded to lower case, double-quote mixed-case names: public.\"Customers\"",
                ));
            }
            continue;
        };
        let Some(col) = table.column(&rule.name) else {
            out.push(at(
                rule,
                format!(
                    "column {} does not exist in the database; until it does, pgveil refuses \
                     restricted sessions every statement on table {}",
                    rule.qualified(),
                    rule.table
                ),
                "fix `name` (after ALTER TABLE … RENAME COLUMN, write the new name); \
                 unquoted names are folded to lower case",
            ));
            continue;
        };
        if rule.encrypt.is_some() {
            if col.type_oid != BYTEA_OID {
                out.push(at(
                    rule,
                    format!(
                        "{} is encrypted but its database type is {}; encrypted columns must be bytea",
                        rule.qualified(),
                        col.type_name
                    ),
                    "change the column to bytea and write its values through pgveil",
                ));
            }
        } else if !plaintext_type_fits(rule.ty, col) {
            out.push(at(
                rule,
                format!(
                    "{} is stored in plaintext as {}, which does not match its rule type {}",
                    rule.qualified(),
                    col.type_name,
                    rule.ty
                ),
                "set `type` to the column's type (text and varchar are interchangeable)",
            ));
        }
    }
    out.extend(check_subjects(rules, schema));
    out
}

fn at_subject(s: &SubjectRule, message: String, hint: &str) -> Diagnostic {
    Diagnostic::new(s.source.file.clone(), s.source.line, message).with_hint(hint)
}

/// Checks `[[subject]]` entries against the live schema: the table and its
/// key column exist, and a child's key column has exactly the type of its
/// subject's key. Exactly, because erasure and tokens compare key values as
/// text: `int4` 42 and `numeric` 42.0 would be one subject to the database
/// and two to pgveil.
fn check_subjects(rules: &RuleSet, schema: &SchemaSnapshot) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let key_col = |t: &TableName, k: &str| schema.tables.get(t).and_then(|i| i.column(k));
    for s in rules.subjects() {
        if !schema.tables.contains_key(&s.table) {
            out.push(at_subject(
                s,
                format!(
                    "subject table {} does not exist in the database (or is not visible to this user)",
                    s.table
                ),
                "create the table, or fix `table`; unquoted names are folded to lower case",
            ));
            continue;
        }
        let Some(col) = key_col(&s.table, &s.key) else {
            out.push(at_subject(
                s,
                format!(
                    "subject key column {}.{} does not exist in the database",
                    s.table, s.key
                ),
                "fix `key`; unquoted names are folded to lower case",
            ));
            continue;
        };
        let Some(parent) = &s.parent else { continue };
        let Some(root) = rules.subject_rule(parent) else {
            continue;
        };
        if let Some(root_col) = key_col(&root.table, &root.key) {
            if root_col.type_oid != col.type_oid {
                out.push(at_subject(
                    s,
                    format!(
                        "subject key {}.{} is {} but the key of its subject {}.{} is {}",
                        s.table, s.key, col.type_name, root.table, root.key, root_col.type_name
                    ),
                    "give the child's key column the type of the subject's key (as a foreign key would)",
                ));
            }
        }
    }
    out
}

/// Whether a plaintext-at-rest column's database type can carry the logical
/// type the rule declares. Loose on purpose (varchar(80) is fine for `text`,
/// int4 for `int8`): what matters is that masks and casts of the logical type
/// apply to the stored values without error.
fn plaintext_type_fits(ty: LogicalType, col: &ColumnInfo) -> bool {
    const TEXTLIKE: &[u32] = &[25, 1043, 1042]; // text, varchar, bpchar
    let oid = col.type_oid;
    match ty {
        // citext is an extension type without a fixed OID.
        LogicalType::Text | LogicalType::Varchar => {
            TEXTLIKE.contains(&oid) || col.type_name == "citext"
        }
        LogicalType::Date => oid == 1082,
        LogicalType::Timestamptz => oid == 1184 || oid == 1114,
        LogicalType::Int4 => oid == 23 || oid == 21,
        LogicalType::Int8 => matches!(oid, 20 | 21 | 23),
        LogicalType::Numeric => matches!(oid, 1700 | 20 | 21 | 23),
        LogicalType::Bool => oid == 16,
        LogicalType::Bytea => oid == BYTEA_OID,
    }
}

/// What became of one sampled value of an encrypted column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleOutcome {
    /// A pgveil ciphertext that decrypts under this keyring for this column.
    Decrypted,
    /// Looks like pgveil ciphertext but does not decrypt here: unknown key
    /// id, another column's ciphertext, or tampering.
    Undecryptable,
    /// Not pgveil ciphertext at all: most likely plaintext written directly
    /// to the database, bypassing the proxy.
    NotCiphertext,
}

/// Counts for the sample of one encrypted column. Holds no values by design.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleFinding {
    /// `schema.table.column`.
    pub column: String,
    /// Non-NULL values examined.
    pub sampled: usize,
    pub undecryptable: usize,
    pub plaintext_like: usize,
}

impl SampleFinding {
    pub fn new(column: impl Into<String>) -> Self {
        SampleFinding {
            column: column.into(),
            sampled: 0,
            undecryptable: 0,
            plaintext_like: 0,
        }
    }

    pub fn record(&mut self, outcome: SampleOutcome) {
        self.sampled += 1;
        match outcome {
            SampleOutcome::Decrypted => {}
            SampleOutcome::Undecryptable => self.undecryptable += 1,
            SampleOutcome::NotCiphertext => self.plaintext_like += 1,
        }
    }
}

/// Turns sample counts into diagnostics located at the column's rule (or at
/// `<database>` for a column no rule names). Clean samples give nothing.
pub fn summarize_samples(rules: &RuleSet, findings: &[SampleFinding]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for f in findings {
        let (file, line) = rules
            .columns()
            .iter()
            .find(|r| r.qualified() == f.column)
            .map_or(("<database>".to_string(), 0), |r| {
                (r.source.file.clone(), r.source.line)
            });
        if f.plaintext_like > 0 {
            out.push(
                Diagnostic::new(
                    file.clone(),
                    line,
                    format!(
                        "{} of {} sampled values in {} are not pgveil ciphertext (plaintext left behind?)",
                        f.plaintext_like, f.sampled, f.column
                    ),
                )
                .with_hint(
                    "values written directly to the database bypass encryption; \
                     re-write those rows through pgveil (values are never printed)",
                ),
            );
        }
        if f.undecryptable > 0 {
            out.push(
                Diagnostic::new(
                    file,
                    line,
                    format!(
                        "{} of {} sampled values in {} are pgveil ciphertext that does not decrypt for this column",
                        f.undecryptable, f.sampled, f.column
                    ),
                )
                .with_hint(
                    "check that the keyring holds every key id in use; a ciphertext copied from \
                     another column never decrypts here",
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::rules::diagnostic::render_report;
    use crate::rules::model::TableName;
    use crate::rules::parse::parse_str;
    use crate::schema::TableInfo;

    const RULES: &str = r#"
[[column]]
table = "public.customers"
name = "email"
type = "text"
encrypt = "deterministic"

[[column]]
table = "public.customers"
name = "full_name"
type = "text"

[[column]]
table = "public.customers"
name = "birth_date"
type = "date"

[[column]]
table = "public.customers"
name = "ssn"
type = "text"
encrypt = "randomized"

[[column]]
table = "public.orders"
name = "total"
type = "numeric"
"#;

    fn rules() -> RuleSet {
        match parse_str("r.toml", RULES) {
            Ok(cols) => RuleSet::new(cols, "v".into()),
            Err(d) => panic!("{}", render_report(&d)),
        }
    }

    fn col(name: &str, attnum: i16, type_oid: u32, type_name: &str) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            attnum,
            type_oid,
            type_name: type_name.into(),
        }
    }

    fn schema(columns: Vec<ColumnInfo>) -> SchemaSnapshot {
        let mut tables = HashMap::new();
        tables.insert(
            TableName {
                schema: "public".into(),
                name: "customers".into(),
            },
            TableInfo {
                oid: 16384,
                relkind: 'r',
                columns,
            },
        );
        SchemaSnapshot::new(vec!["public".into()], tables)
    }

    #[test]
    fn matching_schema_reports_only_the_missing_table_once() {
        let s = schema(vec![
            col("email", 1, 17, "bytea"),
            col("full_name", 2, 1043, "character varying(80)"),
            col("birth_date", 3, 1082, "date"),
            col("ssn", 4, 17, "bytea"),
        ]);
        let d = check_against_schema(&rules(), &s);
        assert_eq!(d.len(), 1, "{}", render_report(&d));
        assert!(d[0].message.contains("table public.orders does not exist"));
        assert_eq!((d[0].file.as_str(), d[0].line), ("r.toml", 24));
    }

    #[test]
    fn wrong_types_and_missing_column_are_reported_at_their_rules() {
        let s = schema(vec![
            col("email", 1, 25, "text"),
            col("full_name", 2, 23, "integer"),
            col("birth_date", 3, 1184, "timestamp with time zone"),
        ]);
        let d = check_against_schema(&rules(), &s);
        let lines: Vec<usize> = d.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![2, 8, 13, 18, 24], "{}", render_report(&d));
        assert!(d[0]
            .message
            .contains("encrypted but its database type is text; encrypted columns must be bytea"));
        assert!(d[1]
            .message
            .contains("public.customers.full_name is stored in plaintext as integer"));
        assert!(d[2].message.contains("birth_date"));
        assert!(d[3]
            .message
            .contains("column public.customers.ssn does not exist"));
    }

    #[test]
    fn subject_tables_keys_and_child_key_types_are_checked() {
        let text = format!(
            "{RULES}\n[[subject]]\ntable = \"public.customers\"\nkey = \"id\"\n\n\
             [[subject]]\ntable = \"public.customers2\"\nkey = \"id\"\n\n\
             [[subject]]\ntable = \"public.customers3\"\nkey = \"cid\"\nsubject = \"public.customers\"\n"
        );
        let rules = match crate::rules::parse_str_set("r.toml", &text, "v") {
            Ok(r) => r,
            Err(d) => panic!("{}", render_report(&d)),
        };
        let mut s = schema(vec![
            col("id", 1, 23, "integer"),
            col("email", 2, 17, "bytea"),
            col("full_name", 3, 25, "text"),
            col("birth_date", 4, 1082, "date"),
            col("ssn", 5, 17, "bytea"),
        ]);
        let child = |name: &str, oid, ty: &str| TableInfo {
            oid: 16390,
            relkind: 'r',
            columns: vec![col(name, 1, oid, ty)],
        };
        let t = |n: &str| TableName {
            schema: "public".into(),
            name: n.into(),
        };
        s.tables
            .insert(t("customers2"), child("other", 23, "integer"));
        s.tables.insert(t("customers3"), child("cid", 20, "bigint"));
        let d = check_against_schema(&rules, &s);
        let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(d.len(), 3, "{}", render_report(&d));
        assert!(msgs[0].contains("table public.orders does not exist"));
        assert_eq!(
            msgs[1],
            "subject key column public.customers2.id does not exist in the database"
        );
        assert_eq!(msgs[2], "subject key public.customers3.cid is bigint but the key of its subject public.customers.id is integer");
        assert_eq!(d[2].line, 37);
        s.tables
            .insert(t("customers3"), child("cid", 23, "integer"));
        s.tables.remove(&t("customers2"));
        let d = check_against_schema(&rules, &s);
        assert_eq!(d.len(), 2, "{}", render_report(&d));
        assert!(d[1]
            .message
            .starts_with("subject table public.customers2 does not exist"));
    }

    #[test]
    fn loose_plaintext_type_matching() {
        let c = |oid, name| col("x", 1, oid, name);
        assert!(plaintext_type_fits(
            LogicalType::Text,
            &c(1043, "character varying(80)")
        ));
        assert!(plaintext_type_fits(LogicalType::Varchar, &c(25, "text")));
        assert!(plaintext_type_fits(LogicalType::Text, &c(99999, "citext")));
        assert!(plaintext_type_fits(LogicalType::Int8, &c(23, "integer")));
        assert!(!plaintext_type_fits(LogicalType::Int4, &c(20, "bigint")));
        assert!(!plaintext_type_fits(LogicalType::Date, &c(25, "text")));
        assert!(!plaintext_type_fits(LogicalType::Text, &c(17, "bytea")));
    }

    #[test]
    fn samples_report_counts_at_the_rule_and_never_values() {
        let mut email = SampleFinding::new("public.customers.email");
        for o in [
            SampleOutcome::Decrypted,
            SampleOutcome::NotCiphertext,
            SampleOutcome::NotCiphertext,
            SampleOutcome::Undecryptable,
        ] {
            email.record(o);
        }
        let mut clean = SampleFinding::new("public.customers.ssn");
        clean.record(SampleOutcome::Decrypted);
        let unknown = SampleFinding {
            column: "public.other.x".into(),
            sampled: 5,
            undecryptable: 0,
            plaintext_like: 5,
        };
        let d = summarize_samples(&rules(), &[email, clean, unknown]);
        assert_eq!(d.len(), 3, "{}", render_report(&d));
        assert_eq!(
            d[0].message,
            "2 of 4 sampled values in public.customers.email are not pgveil ciphertext (plaintext left behind?)"
        );
        assert_eq!((d[0].file.as_str(), d[0].line), ("r.toml", 2));
        assert!(d[1]
            .message
            .starts_with("1 of 4 sampled values in public.customers.email are pgveil ciphertext"));
        assert_eq!((d[2].file.as_str(), d[2].line), ("<database>", 0));
        assert_eq!(d[2].to_string().lines().next(), Some("<database>: error: 5 of 5 sampled values in public.other.x are not pgveil ciphertext (plaintext left behind?)"));
    }

    #[test]
    fn report_and_ok_line() {
        assert_eq!(render_report(&[]), "");
        let d = vec![
            Diagnostic::new("a.toml", 3, "unknown key `x`").with_hint("did you mean"),
            Diagnostic::new("b.toml", 0, "cannot read"),
        ];
        assert_eq!(
            render_report(&d),
            "a.toml:3: error: unknown key `x`\n  hint: did you mean\nb.toml: error: cannot read\n2 errors\n"
        );
        let ok = render_ok(&rules());
        assert_eq!(
            ok,
            "ok: 5 tagged columns (2 encrypted) in 2 tables, rules version v\n"
        );
    }
}

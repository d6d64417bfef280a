//! Unit tests of rule-file parsing. Line numbers are asserted exactly: a
//! diagnostic on the wrong line sends the DBA to the wrong place.

use super::*;
use crate::rules::model::Mask;

fn errors(text: &str) -> Vec<Diagnostic> {
    match parse_str("t.toml", text) {
        Ok(rules) => panic!("expected errors, got {} rules", rules.len()),
        Err(d) => d,
    }
}

fn ok(text: &str) -> Vec<ColumnRule> {
    match parse_str("t.toml", text) {
        Ok(r) => r,
        Err(d) => panic!("unexpected errors:\n{}", crate::rules::render_report(&d)),
    }
}

/// (line, message) pairs, for compact assertions.
fn lines(d: &[Diagnostic]) -> Vec<(usize, String)> {
    d.iter().map(|d| (d.line, d.message.clone())).collect()
}

fn single(text: &str) -> Diagnostic {
    let d = errors(text);
    assert_eq!(d.len(), 1, "{d:#?}");
    d.into_iter().next().unwrap_or_else(|| unreachable!())
}

const GOOD: &str = r#"# comment
[[column]]
table = "public.customers"
name = "email"
type = "text"
encrypt = "deterministic"
class = "contact"
[column.access]
admin = "plaintext"
support = "email"
default = "null"

[[column]]
table = 'Sales."Order Lines"'
name = "Total"
type = "numeric"
access.analyst = "round(100)"
"#;

#[test]
fn valid_file_builds_rules_with_defaults_and_sources() {
    let r = ok(GOOD);
    assert_eq!(r.len(), 2);
    let email = &r[0];
    assert_eq!(email.qualified(), "public.customers.email");
    assert_eq!(email.ty, LogicalType::Text);
    assert_eq!(email.encrypt, Some(EncryptMode::Deterministic));
    assert_eq!(email.class, "contact");
    assert_eq!(email.access.get("admin"), Some(&Access::Plaintext));
    assert_eq!(
        email.access.get("support"),
        Some(&Access::Mask(Mask::Email))
    );
    assert_eq!(email.default, Access::Null);
    assert!(!email.access.contains_key("default"));
    assert_eq!(
        email.source,
        SourceLoc {
            file: "t.toml".into(),
            line: 2
        }
    );

    let total = &r[1];
    assert_eq!(
        total.table,
        TableName {
            schema: "sales".into(),
            name: "Order Lines".into()
        }
    );
    assert_eq!(total.name, "total");
    assert_eq!(total.encrypt, None);
    assert_eq!(total.class, "unclassified");
    assert_eq!(total.default, Access::Deny, "absent default must deny");
    assert_eq!(
        total.access.get("analyst"),
        Some(&Access::Mask(Mask::Round(100)))
    );
    assert_eq!(total.source.line, 13);
}

#[test]
fn syntax_error_has_its_line() {
    let d =
        single("[[column]]\ntable = \"public.t\"\nname = \"a\"\ntype = \"text\nclass = \"x\"\n");
    assert_eq!(d.line, 4, "{d}");
    assert!(d.message.starts_with("TOML syntax error"), "{d}");
}

#[test]
fn duplicate_toml_key_is_a_syntax_error() {
    let d =
        single("[[column]]\ntable = \"public.t\"\nname = \"a\"\nname = \"b\"\ntype = \"text\"\n");
    assert_eq!(d.line, 4, "{d}");
}

#[test]
fn unknown_keys_at_every_level() {
    let d = errors(
        r#"version = 2
[[column]]
table = "public.t"
name = "a"
type = "text"
encrpyt = "randomized"
[column.access]
admin = "plaintext"
[column.extra]
x = 1
"#,
    );
    assert_eq!(
        lines(&d),
        vec![
            (1, "unknown key `version`".to_string()),
            (6, "unknown key `encrpyt` in [[column]]".to_string()),
            (9, "unknown key `extra` in [[column]]".to_string()),
        ]
    );
    assert!(d[1]
        .hint
        .as_deref()
        .is_some_and(|h| h.starts_with("did you mean `encrypt`?")));
}

#[test]
fn missing_required_keys_point_at_the_column_header() {
    let d = errors("\n\n[[column]]\nclass = \"x\"\n");
    assert_eq!(d.len(), 3);
    for (want, got) in ["table", "name", "type"].iter().zip(&d) {
        assert_eq!(got.line, 3);
        assert_eq!(
            got.message,
            format!("[[column]] is missing the required key `{want}`")
        );
    }
}

#[test]
fn unknown_type_encrypt_and_access() {
    let d = errors(
        r#"[[column]]
table = "public.t"
name = "a"
type = "string"
encrypt = "aes"
[column.access]
admin = "plain"
support = "partial(1)"
"#,
    );
    assert_eq!(
        d.iter().map(|d| d.line).collect::<Vec<_>>(),
        vec![4, 5, 7, 8],
        "{d:#?}"
    );
    assert_eq!(d[0].message, "unknown type `string`");
    assert!(d[0]
        .hint
        .as_deref()
        .is_some_and(|h| h.contains("timestamptz")));
    assert_eq!(d[1].message, "unknown encrypt mode `aes`");
    assert!(d[2]
        .message
        .starts_with("access of role `admin`: unknown access `plain`"));
    assert!(d[3].message.contains("partial takes two numbers"));
}

#[test]
fn wrong_value_kinds() {
    let d =
        errors("[[column]]\ntable = \"public.t\"\nname = 5\ntype = \"text\"\naccess = \"deny\"\n");
    assert_eq!(
        lines(&d),
        vec![
            (3, "`name` must be a string, found an integer".to_string()),
            (5, "`access` must be a table, found a string".to_string()),
        ]
    );
    let d = single("column = 1\n");
    assert_eq!(
        d.message,
        "`column` must be an array of tables, found an integer"
    );
    let d = single(
        "[[column]]\ntable = \"public.t\"\nname = \"a\"\ntype = \"date\"\nclass = 1979-05-27\n",
    );
    assert_eq!(
        (d.line, d.message.as_str()),
        (5, "`class` must be a string, found a date-time")
    );
}

#[test]
fn mask_must_apply_to_the_type() {
    let d = errors(
        r#"[[column]]
table = "public.t"
name = "born"
type = "date"
[column.access]
support = "email"
analyst = "year"
default = "round(10)"
"#,
    );
    assert_eq!(
        lines(&d),
        vec![
            (
                6,
                "access of role `support`: mask `email` does not apply to a column of type date"
                    .to_string()
            ),
            (
                8,
                "default access: mask `round(10)` does not apply to a column of type date"
                    .to_string()
            ),
        ]
    );
    assert!(d[0]
        .hint
        .as_deref()
        .is_some_and(|h| h.contains("year") && !h.contains("email")));
}

#[test]
fn dotted_access_keys_have_their_own_lines() {
    let d = single("[[column]]\ntable = \"public.t\"\nname = \"a\"\ntype = \"text\"\n\naccess.support = \"year\"\n");
    assert_eq!(d.line, 6, "{d}");
}

#[test]
fn mask_on_unknown_type_reports_only_the_type() {
    let d = single(
        "[[column]]\ntable = \"public.t\"\nname = \"a\"\ntype = \"blob\"\naccess.x = \"year\"\n",
    );
    assert_eq!(d.message, "unknown type `blob`");
}

#[test]
fn bad_table_names() {
    let cases: &[(&str, &str)] = &[
        (
            "customers",
            "table name `customers` is not schema-qualified",
        ),
        (
            "db.public.customers",
            "table name `db.public.customers` has too many parts",
        ),
        ("", "empty table name"),
        ("public.", "empty name part in `public.`"),
        (
            "public.my table",
            "invalid character ` ` in name `public.my table`",
        ),
        (
            "public.\"open",
            "unterminated quoted identifier in `public.\"open`",
        ),
        ("public.\"\"", "empty quoted identifier in `public.\"\"`"),
        (
            "public.\"a\"b",
            "unexpected `b` after a quoted name in `public.\"a\"b`",
        ),
        ("public.1abc", "invalid character `1` in name `public.1abc`"),
    ];
    for (name, want) in cases {
        let text = format!("[[column]]\nname = \"a\"\ntype = \"text\"\ntable = '{name}'\n");
        let d = single(&text);
        assert_eq!((d.line, d.message.as_str()), (4, *want), "for {name:?}");
        assert!(d.hint.is_some());
    }
    let long = "a".repeat(64);
    assert!(parse_table_name(&format!("public.{long}")).is_err());
    assert!(parse_table_name(&format!("public.{}", "a".repeat(63))).is_ok());
}

#[test]
fn identifier_folding() {
    let t = |s: &str| parse_table_name(s).map_err(|e| e.0);
    let tn = |schema: &str, name: &str| TableName {
        schema: schema.into(),
        name: name.into(),
    };
    assert_eq!(t("Public.Customers"), Ok(tn("public", "customers")));
    assert_eq!(t("public.\"Customers\""), Ok(tn("public", "Customers")));
    assert_eq!(t("\"My Schema\".\"a.b\""), Ok(tn("My Schema", "a.b")));
    assert_eq!(
        t("public.\"say \"\"hi\"\"\""),
        Ok(tn("public", "say \"hi\""))
    );
    assert_eq!(t("public.t$1_x"), Ok(tn("public", "t$1_x")));
    assert_eq!(
        t("public.Ünïcode"),
        Ok(tn("public", "Ünïcode")),
        "only ASCII is folded"
    );
    assert_eq!(
        parse_column_name("EMail").map_err(|e| e.0),
        Ok("email".to_string())
    );
    assert_eq!(
        parse_column_name("\"EMail\"").map_err(|e| e.0),
        Ok("EMail".to_string())
    );
    assert!(parse_column_name("customers.email").is_err());
}

#[test]
fn empty_names_and_roles() {
    let d = errors(
        r#"[[column]]
table = "public.t"
name = ""
type = "text"
class = " "
[column.access]
"" = "plaintext"
"#,
    );
    assert_eq!(
        lines(&d),
        vec![
            (3, "empty column name".to_string()),
            (5, "`class` must not be empty".to_string()),
            (7, "empty role name in [column.access]".to_string()),
        ]
    );
    let long_role = "r".repeat(64);
    let d = single(&format!(
        "[[column]]\ntable = \"public.t\"\nname = \"a\"\ntype = \"text\"\n[column.access]\n{long_role} = \"null\"\n"
    ));
    assert_eq!(d.line, 6);
}

#[test]
fn role_keys_are_case_sensitive_and_default_is_special() {
    let r = ok("[[column]]\ntable = \"public.t\"\nname = \"a\"\ntype = \"text\"\n[column.access]\nSupport = \"hash\"\nsupport = \"null\"\n");
    assert_eq!(r[0].access.get("Support"), Some(&Access::Mask(Mask::Hash)));
    assert_eq!(r[0].access.get("support"), Some(&Access::Null));
    assert_eq!(r[0].default, Access::Deny);
    let r = ok("[[column]]\ntable = \"public.t\"\nname = \"a\"\ntype = \"text\"\naccess = { admin = \"Plaintext\", default = \"NULL\" }\n");
    assert_eq!(r[0].access.get("admin"), Some(&Access::Plaintext));
    assert_eq!(r[0].default, Access::Null);
}

#[test]
fn unsupported_encryption_is_reported() {
    let d = single("[[column]]\ntable = \"public.t\"\nname = \"flag\"\ntype = \"bool\"\nencrypt = \"deterministic\"\n");
    assert_eq!(d.line, 5);
    assert!(d.message.contains("bool"));
    assert_eq!(
        ok("[[column]]\ntable = \"public.t\"\nname = \"flag\"\ntype = \"bool\"\nencrypt = \"Randomized\"\n")[0].encrypt,
        Some(EncryptMode::Randomized)
    );
}

#[test]
fn many_errors_in_one_run_in_line_order() {
    let d = errors(
        r#"[[column]]
table = "customers"
name = "email"
type = "txt"
[column.access]
support = "shuffle"

[[column]]
table = "public.customers"
nmae = "ssn"
type = "text"
"#,
    );
    assert_eq!(
        d.iter().map(|d| d.line).collect::<Vec<_>>(),
        vec![2, 4, 6, 8, 10],
        "{d:#?}"
    );
    assert!(d[3].message.contains("missing the required key `name`"));
}

#[test]
fn duplicates_within_a_file_point_at_both() {
    let d = single(
        "[[column]]\ntable = \"public.t\"\nname = \"a\"\ntype = \"text\"\n\n[[column]]\ntable = 'PUBLIC.\"t\"'\nname = \"A\"\ntype = \"int4\"\n",
    );
    assert_eq!(d.line, 6);
    assert_eq!(
        d.message,
        "duplicate rule for column public.t.a; first defined at t.toml:1"
    );
}

#[test]
fn duplicate_found_even_when_the_entry_has_other_errors() {
    let d = errors("[[column]]\ntable = \"public.t\"\nname = \"a\"\ntype = \"text\"\n[[column]]\ntable = \"public.t\"\nname = \"a\"\ntype = \"nope\"\n");
    assert_eq!(d.len(), 2, "{d:#?}");
    assert!(d
        .iter()
        .any(|d| d.line == 5 && d.message.starts_with("duplicate rule")));
}

#[test]
fn diagnostic_display() {
    let d =
        Diagnostic::new("rules/a.toml", 7, "unknown type `x`").with_hint("supported types: text");
    assert_eq!(
        d.to_string(),
        "rules/a.toml:7: error: unknown type `x`\n  hint: supported types: text"
    );
    assert_eq!(
        Diagnostic::new("rules", 0, "gone").to_string(),
        "rules: error: gone"
    );
}

#[test]
fn line_of_offsets() {
    assert_eq!(line_of(b"a\nb\nc", 0), 1);
    assert_eq!(line_of(b"a\nb\nc", 2), 2);
    assert_eq!(line_of(b"a\nb\nc", 99), 3);
}

#[test]
fn shipped_example_is_valid() {
    let rules = ok(include_str!("../../../rules/customers.toml"));
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "email",
            "ssn",
            "phone",
            "birth_date",
            "card_number",
            "full_name"
        ]
    );
    let email = &rules[0];
    assert_eq!(listed(email, "admin"), Access::Plaintext);
    assert_eq!(listed(email, "support"), Access::Mask(Mask::Email));
    assert_eq!(listed(email, "analyst"), Access::Mask(Mask::Hash));
    assert_eq!(listed(email, "someone"), Access::Deny);
    assert_eq!(
        listed(&rules[1], "support"),
        Access::Mask(Mask::Partial { first: 0, last: 4 })
    );
    assert_eq!(listed(&rules[1], "analyst"), Access::Deny);
    assert_eq!(rules[3].ty, LogicalType::Date);
    assert_eq!(listed(&rules[3], "support"), Access::Mask(Mask::Year));
    assert_eq!(rules[5].encrypt, None);
    assert!(rules[..5].iter().all(|r| r.encrypt.is_some()));
}

mod dir {
    use super::*;

    const A: &str = "[[column]]\ntable = \"public.t\"\nname = \"a\"\ntype = \"text\"\n";
    const B: &str = "# b\n[[column]]\ntable = \"public.t\"\nname = \"b\"\ntype = \"text\"\n";

    fn write(dir: &Path, name: &str, text: &str) {
        if let Err(e) = fs::write(dir.join(name), text) {
            panic!("write {name}: {e}");
        }
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
    }

    fn load(dir: &Path) -> Result<RuleSet, Vec<Diagnostic>> {
        load_dir(dir)
    }

    #[test]
    fn empty_directory_is_an_empty_rule_set_and_missing_is_an_error() {
        let t = tmp();
        let rs = load(t.path()).unwrap_or_else(|d| panic!("{d:?}"));
        assert!(rs.is_empty());
        assert_eq!(rs.version.len(), 12);
        let d = load(&t.path().join("nope")).err().unwrap_or_default();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].line, 0);
        assert!(d[0].message.starts_with("cannot read rules directory"));
    }

    #[test]
    fn files_sorted_others_ignored_version_tracks_content() {
        let t = tmp();
        write(t.path(), "b.toml", B);
        write(t.path(), "a.toml", A);
        write(t.path(), "notes.txt", "not toml [[");
        write(t.path(), ".#a.toml", "garbage [[");
        write(t.path(), "a.toml.bak", "garbage [[");
        if let Err(e) = fs::create_dir(t.path().join("sub.toml")) {
            panic!("{e}");
        }
        write(&t.path().join("sub.toml"), "c.toml", "garbage [[");
        let rs = load(t.path()).unwrap_or_else(|d| panic!("{d:?}"));
        let names: Vec<&str> = rs.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(rs.columns()[1].source.file.ends_with("b.toml"));
        assert_eq!(rs.columns()[1].source.line, 2);
        let v1 = rs.version.clone();
        assert!(v1.len() == 12 && v1.chars().all(|c| c.is_ascii_hexdigit()));

        // Same content again: same version. Changed content: new version.
        let again = load(t.path()).map(|r| r.version).unwrap_or_default();
        assert_eq!(again, v1);
        write(t.path(), "b.toml", &B.replace("# b", "# b, edited"));
        let v2 = load(t.path()).map(|r| r.version).unwrap_or_default();
        assert_ne!(v2, v1);
        assert_eq!(v2.len(), 12);
    }

    #[test]
    fn duplicates_across_files_and_errors_from_every_file() {
        let t = tmp();
        write(t.path(), "a.toml", A);
        write(
            t.path(),
            "b.toml",
            &format!("{B}\n[[column]]\ntable = \"public.t\"\nname = \"a\"\ntype = \"text\"\n"),
        );
        write(t.path(), "c.toml", "[[column]]\ntable = \"t\"\n");
        let d = load(t.path()).err().unwrap_or_default();
        let a = t.path().join("a.toml").display().to_string();
        let b = t.path().join("b.toml").display().to_string();
        let c = t.path().join("c.toml").display().to_string();
        let got: Vec<(String, usize)> = d.iter().map(|d| (d.file.clone(), d.line)).collect();
        assert_eq!(
            got,
            vec![
                (c.clone(), 1),
                (c.clone(), 1),
                (c.clone(), 2),
                (b.clone(), 7),
            ],
            "{d:#?}"
        );
        assert_eq!(
            d[3].message,
            format!("duplicate rule for column public.t.a; first defined at {a}:1")
        );
    }

    #[test]
    fn non_utf8_file_is_reported_with_its_line() {
        let t = tmp();
        if let Err(e) = fs::write(t.path().join("x.toml"), b"# ok\n# \xff\n") {
            panic!("{e}");
        }
        let d = load(t.path()).err().unwrap_or_default();
        assert_eq!(
            lines(&d),
            vec![(2, "rule file is not valid UTF-8".to_string())]
        );
    }
}

/// What a rule file says for `role`: its listed access, else the default.
fn listed(r: &crate::rules::ColumnRule, role: &str) -> Access {
    r.access.get(role).copied().unwrap_or(r.default)
}

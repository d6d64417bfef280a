use std::collections::HashMap;

use super::*;
use crate::policy::{access_by, is_restricted, protected_table};
use crate::schema::TableInfo;

fn rules(extra: &str) -> RuleSet {
    RuleSet::new(
        crate::rules::parse_str(
            "r.toml",
            &format!(
                "[[column]]\ntable = \"public.t\"\nname = \"email\"\ntype = \"text\"\n\
                 encrypt = \"deterministic\"\nclass = \"c\"\n[column.access]\nadmin = \"plaintext\"\n\
                 support = \"email\"\n\
                 [[column]]\ntable = \"public.t\"\nname = \"ssn\"\ntype = \"text\"\n\
                 encrypt = \"deterministic\"\nclass = \"c\"\n[column.access]\nadmin = \"plaintext\"\n\
                 {extra}"
            ),
        )
        .unwrap(),
        "v1".into(),
    )
}

fn table() -> TableName {
    TableName {
        schema: "public".into(),
        name: "t".into(),
    }
}

/// `public.t` with (name, type) columns, attnums from 1, OID 100.
fn schema(cols: &[(&str, &str)]) -> SchemaSnapshot {
    let columns = cols
        .iter()
        .enumerate()
        .map(|(i, (n, ty))| ColumnInfo {
            name: n.to_string(),
            attnum: i as i16 + 1,
            type_oid: if *ty == "bytea" { 17 } else { 25 },
            type_name: ty.to_string(),
        })
        .collect();
    let mut m = HashMap::new();
    m.insert(
        table(),
        TableInfo {
            oid: 100,
            relkind: 'r',
            columns,
        },
    );
    SchemaSnapshot::new(vec!["public".into()], m)
}

fn walking() -> SchemaSnapshot {
    schema(&[
        ("id", "bigint"),
        ("email", "text"),
        ("ssn", "bytea"),
        ("pgveil_enc_email", "bytea"),
    ])
}

#[test]
fn a_column_is_in_flight_only_while_it_is_not_bytea_and_has_its_shadow() {
    let r = rules("");
    let f = in_flight(&r, &walking());
    assert_eq!(
        f,
        vec![InFlight {
            table: table(),
            column: "email".into(),
            shadow: "pgveil_enc_email".into(),
        }]
    );
    // Before the tool installed the shadow: not in flight.
    assert!(in_flight(&r, &schema(&[("id", "bigint"), ("email", "text")])).is_empty());
    // After the swap: bytea, no shadow.
    assert!(in_flight(&r, &schema(&[("id", "bigint"), ("email", "bytea")])).is_empty());
    // A shadow left next to a bytea column changes nothing.
    let left = schema(&[("email", "bytea"), ("pgveil_enc_email", "bytea")]);
    assert!(in_flight(&r, &left).is_empty());
    // A rule without `encrypt` is never on the shadow path.
    let plain = RuleSet::new(
        r.columns()
            .iter()
            .cloned()
            .map(|mut c| {
                c.encrypt = None;
                c
            })
            .collect(),
        "p".into(),
    );
    assert!(in_flight(&plain, &walking()).is_empty());
}

#[test]
fn in_flight_columns_are_plaintext_at_rest_and_shadows_denied_to_everyone() {
    let r = rules("");
    let f = in_flight(&r, &walking());
    let s = serving_rules(&r, &f);
    let t = table();
    let email = s.column(&t, "email").unwrap();
    assert!(email.encrypt.is_none());
    for role in ["support", "admin", "nobody"] {
        assert_eq!(
            access_by(email, [role]),
            access_by(r.column(&t, "email").unwrap(), [role]),
            "{role}"
        );
    }
    let shadow = s.column(&t, "pgveil_enc_email").unwrap();
    assert!(
        shadow.encrypt.is_none(),
        "plaintext at rest: the table is masked for everyone"
    );
    assert_eq!(access_by(shadow, ["admin"]), Access::Deny);
    assert_eq!(
        shadow.source, email.source,
        "refusals name the column's rule"
    );
    // Every session goes through the masked derived table, which names the shadow.
    let admin = vec!["admin".to_string()];
    assert!(protected_table(&s, &t, &admin));
    assert!(is_restricted(&s, &admin));
    assert!(!is_restricted(&r, &admin), "not under the final rules");
    assert!(
        s.column(&t, "ssn").unwrap().encrypt.is_some(),
        "not in flight"
    );
    assert!(s.version.starts_with("v1+converting:"), "{}", s.version);
    assert!(s.version.contains("public.t.email"), "{}", s.version);
    assert_eq!(serving_rules(&r, &[]).version, r.version);
}

#[test]
fn a_hand_written_rule_for_the_shadow_is_replaced_not_duplicated() {
    let r = rules(
        "[[column]]\ntable = \"public.t\"\nname = \"pgveil_enc_email\"\ntype = \"text\"\n\
         class = \"c\"\n[column.access]\ndefault = \"plaintext\"\n",
    );
    let s = serving_rules(&r, &in_flight(&r, &walking()));
    let shadows: Vec<_> = s
        .columns()
        .iter()
        .filter(|c| c.name == "pgveil_enc_email")
        .collect();
    assert_eq!(shadows.len(), 1);
    assert_eq!(access_by(shadows[0], ["anyone"]), Access::Deny);
}

#[test]
fn replies_from_the_shadow_or_with_a_changed_type_conflict() {
    let snap = walking();
    let f = in_flight(&rules(""), &snap);
    // email (attnum 2) as text, ssn, id: fine.
    assert_eq!(
        reply_conflict(&snap, &f, [(100, 2, 25), (100, 3, 17), (100, 1, 20)]),
        None
    );
    // After the swap the shadow's attnum (4) is the converted column.
    assert!(reply_conflict(&snap, &f, [(100, 4, 17)]).is_some());
    // An in-place swap (ALTER … TYPE bytea): email's attnum, now bytea.
    assert!(reply_conflict(&snap, &f, [(100, 2, 17)]).is_some());
    // Computed columns and other tables are not this check's business.
    assert_eq!(reply_conflict(&snap, &f, [(0, 0, 17), (200, 2, 17)]), None);
    assert_eq!(reply_conflict(&snap, &[], [(100, 4, 17)]), None);
}

//! The policy's decisions, case by case and as properties: inheritance
//! through memberships, `default`, the most revealing access winning,
//! unknown roles, order independence, and the restricted classification.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::rules::model::{EncryptMode, LogicalType, Mask, SourceLoc};

const P: Access = Access::Plaintext;
const N: Access = Access::Null;
const D: Access = Access::Deny;
const REDACT: Access = Access::Mask(Mask::Redact);
const EMAIL: Access = Access::Mask(Mask::Email);
const HASH: Access = Access::Mask(Mask::Hash);
const YEAR: Access = Access::Mask(Mask::Year);
const MONTH: Access = Access::Mask(Mask::Month);
const P04: Access = Access::Mask(Mask::Partial { first: 0, last: 4 });
const P11: Access = Access::Mask(Mask::Partial { first: 1, last: 1 });
const R10: Access = Access::Mask(Mask::Round(10));
const R1000: Access = Access::Mask(Mask::Round(1000));

fn rule(
    table: &str,
    col: &str,
    enc: bool,
    default: Access,
    listed: &[(&str, Access)],
) -> ColumnRule {
    ColumnRule {
        table: TableName {
            schema: "public".into(),
            name: table.into(),
        },
        name: col.into(),
        ty: LogicalType::Text,
        encrypt: enc.then_some(EncryptMode::Deterministic),
        class: "contact".into(),
        access: listed
            .iter()
            .map(|(r, a)| (r.to_string(), *a))
            .collect::<BTreeMap<_, _>>(),
        default,
        source: SourceLoc {
            file: "t.toml".into(),
            line: 1,
        },
    }
}

fn roles(r: &[&str]) -> Vec<String> {
    r.iter().map(|s| s.to_string()).collect()
}

/// One named test per case: `default`, the listed roles, the session's
/// roles, and the access the session must get.
macro_rules! access_cases {
    ($($name:ident: $default:expr, [$(($r:expr, $a:expr)),*], [$($s:expr),*] => $want:expr;)*) => {
        $(
            #[test]
            fn $name() {
                let r = rule("customers", "email", true, $default, &[$(($r, $a)),*]);
                let session = roles(&[$($s),*]);
                assert_eq!(access(&r, &session), $want);
                let mut reversed = session.clone();
                reversed.reverse();
                assert_eq!(access(&r, &reversed), $want, "order must not matter");
            }
        )*
    };
}

access_cases! {
    unlisted_role_gets_default_deny: D, [("admin", P)], ["nobody"] => D;
    unlisted_role_gets_default_plaintext: P, [("support", EMAIL)], ["nobody"] => P;
    unlisted_role_gets_default_null: N, [("admin", P)], ["nobody"] => N;
    unlisted_role_gets_default_mask: REDACT, [("admin", P)], ["nobody"] => REDACT;
    no_roles_get_default: HASH, [("admin", P)], [] => HASH;
    empty_rule_gives_default: P04, [], ["admin"] => P04;
    listed_mask_beats_default_plaintext: P, [("support", EMAIL)], ["support"] => EMAIL;
    listed_null_beats_default_plaintext: P, [("analyst", N)], ["analyst"] => N;
    listed_deny_beats_default_plaintext: P, [("intern", D)], ["intern"] => D;
    listed_plaintext_beats_default_deny: D, [("admin", P)], ["admin"] => P;
    listed_deny_with_default_deny: D, [("intern", D)], ["intern"] => D;
    unknown_role_beside_listed_changes_nothing: P, [("support", EMAIL)], ["support", "ghost"] => EMAIL;
    two_unknown_roles_get_default: N, [("support", EMAIL)], ["ghost", "phantom"] => N;
    plaintext_beats_mask: D, [("admin", P), ("support", EMAIL)], ["support", "admin"] => P;
    plaintext_beats_null: D, [("admin", P), ("analyst", N)], ["analyst", "admin"] => P;
    plaintext_beats_deny: D, [("admin", P), ("intern", D)], ["intern", "admin"] => P;
    mask_beats_null: D, [("support", EMAIL), ("analyst", N)], ["analyst", "support"] => EMAIL;
    mask_beats_deny: D, [("support", HASH), ("intern", D)], ["intern", "support"] => HASH;
    null_beats_deny: D, [("analyst", N), ("intern", D)], ["intern", "analyst"] => N;
    redact_below_hash: D, [("a", REDACT), ("b", HASH)], ["a", "b"] => HASH;
    hash_below_year: D, [("a", HASH), ("b", YEAR)], ["a", "b"] => YEAR;
    year_below_month: D, [("a", YEAR), ("b", MONTH)], ["a", "b"] => MONTH;
    month_below_email: D, [("a", MONTH), ("b", EMAIL)], ["a", "b"] => EMAIL;
    redact_above_null: D, [("a", N), ("b", REDACT)], ["a", "b"] => REDACT;
    partial_keeping_more_wins: D, [("a", P11), ("b", P04)], ["a", "b"] => P04;
    finer_round_wins: D, [("a", R1000), ("b", R10)], ["a", "b"] => R10;
    round_above_hash: D, [("a", HASH), ("b", R1000)], ["a", "b"] => R1000;
    equal_rank_tie_goes_to_first_role_name: D, [("alpha", EMAIL), ("beta", Access::Mask(Mask::Partial { first: 0, last: 0 }))], ["beta", "alpha"] => EMAIL;
    equal_rank_tie_other_way: D, [("alpha", Access::Mask(Mask::Partial { first: 0, last: 0 })), ("beta", EMAIL)], ["beta", "alpha"] => Access::Mask(Mask::Partial { first: 0, last: 0 });
    listed_role_not_in_session_is_ignored: D, [("admin", P), ("support", EMAIL)], ["support"] => EMAIL;
    only_session_roles_count: P, [("admin", D), ("support", N)], ["other"] => P;
    three_roles_best_wins: D, [("a", N), ("b", HASH), ("c", EMAIL)], ["a", "b", "c"] => EMAIL;
    three_roles_one_plaintext: D, [("a", N), ("b", P), ("c", EMAIL)], ["c", "a", "b"] => P;
    inherited_admin_via_group: D, [("pii_readers", P)], ["alice", "pii_readers"] => P;
    inherited_mask_via_group: P, [("support_team", P04)], ["bob", "support_team"] => P04;
    login_listed_and_group_listed: D, [("bob", N), ("support_team", P04)], ["bob", "support_team"] => P04;
    role_names_are_case_sensitive: D, [("Admin", P)], ["admin"] => D;
    quoted_upper_case_role_matches_exactly: D, [("Admin", P)], ["Admin"] => P;
    role_name_with_spaces: D, [("pii reader", P)], ["pii reader"] => P;
    prefix_of_role_name_does_not_match: D, [("admin", P)], ["admi"] => D;
    longer_role_name_does_not_match: D, [("admin", P)], ["admins"] => D;
    public_is_not_special: D, [("public", P)], ["alice"] => D;
    listed_public_matches_only_when_in_session: D, [("public", N)], ["alice", "public"] => N;
    duplicate_session_roles: D, [("support", EMAIL)], ["support", "support"] => EMAIL;
    default_mask_with_listed_null: EMAIL, [("analyst", N)], ["analyst"] => N;
    default_null_with_listed_mask: N, [("support", HASH)], ["support"] => HASH;
    default_deny_listed_year: D, [("support", YEAR)], ["support"] => YEAR;
    default_deny_listed_month: D, [("support", MONTH)], ["support"] => MONTH;
    default_deny_listed_round: D, [("support", R10)], ["support"] => R10;
    default_deny_listed_redact: D, [("support", REDACT)], ["support"] => REDACT;
    default_plaintext_listed_hash: P, [("analyst", HASH)], ["analyst"] => HASH;
    default_plaintext_unknown_and_listed_deny: P, [("intern", D)], ["intern", "ghost"] => D;
    many_unknown_roles_and_one_listed: D, [("support", P11)], ["a", "b", "c", "support", "d"] => P11;
    default_hash_listed_plaintext: HASH, [("admin", P)], ["admin"] => P;
    default_year_unlisted: YEAR, [("admin", P)], ["support"] => YEAR;
    default_round_unlisted: R10, [], ["support"] => R10;
    listed_deny_does_not_lower_a_listed_mask: D, [("support", EMAIL), ("blocked", D)], ["blocked", "support"] => EMAIL;
    listed_null_does_not_lower_plaintext: D, [("admin", P), ("analyst", N)], ["admin", "analyst"] => P;
    partial_beats_hash: D, [("a", HASH), ("b", P11)], ["a", "b"] => P11;
    email_mask_beats_redact: D, [("a", REDACT), ("b", EMAIL)], ["b", "a"] => EMAIL;
    coarse_round_below_fine_round_reversed: D, [("a", R10), ("b", R1000)], ["b", "a"] => R10;
    group_deny_and_login_plaintext: D, [("alice", P), ("interns", D)], ["alice", "interns"] => P;
    empty_role_name_matches_nothing: D, [("admin", P)], [""] => D;
}

#[test]
fn every_pair_of_listed_accesses_gives_the_more_revealing() {
    let all = [
        P, N, D, REDACT, EMAIL, HASH, YEAR, MONTH, P04, P11, R10, R1000,
    ];
    let mut cases = 0;
    for a in all {
        for b in all {
            let r = rule("t", "c", true, D, &[("r1", a), ("r2", b)]);
            let got = access(&r, &roles(&["r1", "r2"]));
            let want = if reveal_key(b) > reveal_key(a) { b } else { a };
            assert_eq!(got, want, "{a} vs {b}");
            assert!(reveal_key(got) >= reveal_key(a) && reveal_key(got) >= reveal_key(b));
            cases += 1;
        }
    }
    assert_eq!(cases, 144);
}

#[test]
fn plaintext_outranks_every_mask_and_deny_is_lowest() {
    for m in [REDACT, EMAIL, HASH, YEAR, MONTH, P04, P11, R10, R1000] {
        assert!(reveal_key(P) > reveal_key(m), "{m}");
        assert!(reveal_key(m) > reveal_key(N), "{m}");
    }
    assert!(reveal_key(N) > reveal_key(D));
}

#[test]
fn round_of_i64_min_does_not_overflow() {
    let k = reveal_key(Access::Mask(Mask::Round(i64::MIN)));
    assert_eq!(k.1, i64::MIN);
}

#[test]
fn resolve_puts_login_first_and_dedupes() {
    let r = RoleSet::resolve("alice", ["support", "alice", "readers", "support"]);
    assert_eq!(
        r.as_slice(),
        roles(&["alice", "support", "readers"]).as_slice()
    );
}

#[test]
fn resolve_without_memberships_is_the_login_role() {
    let r = RoleSet::resolve("alice", Vec::<String>::new());
    assert_eq!(r.into_vec(), roles(&["alice"]));
}

#[test]
fn resolve_ignores_empty_names() {
    let r = RoleSet::resolve("", ["", "support"]);
    assert_eq!(r.into_vec(), roles(&["support"]));
}

#[test]
fn resolved_membership_grants_the_groups_access() {
    let r = rule("customers", "email", true, D, &[("pii_readers", P)]);
    let s = RoleSet::resolve("alice", ["pii_readers"]);
    assert_eq!(access(&r, s.as_slice()), P);
    let lone = RoleSet::resolve("alice", Vec::<String>::new());
    assert_eq!(access(&r, lone.as_slice()), D);
}

fn ruleset(cols: Vec<ColumnRule>) -> RuleSet {
    RuleSet::new(cols, "v1".into())
}

#[test]
fn restricted_when_any_column_is_not_plaintext() {
    let rs = ruleset(vec![
        rule(
            "customers",
            "email",
            true,
            D,
            &[("admin", P), ("support", EMAIL)],
        ),
        rule(
            "customers",
            "phone",
            false,
            D,
            &[("admin", P), ("support", P)],
        ),
    ]);
    assert!(!is_restricted(&rs, &roles(&["admin"])));
    assert!(is_restricted(&rs, &roles(&["support"])));
    assert!(is_restricted(&rs, &roles(&["ghost"])));
    assert!(!is_restricted(&rs, &roles(&["support", "admin"])));
    assert_eq!(
        restricting_rule(&rs, &roles(&["support"])).map(|r| r.name.as_str()),
        Some("email")
    );
}

#[test]
fn restricting_rule_is_the_first_in_file_order() {
    let rs = ruleset(vec![
        rule("a", "x", true, P, &[]),
        rule("b", "y", true, D, &[]),
        rule("c", "z", true, N, &[]),
    ]);
    let r = restricting_rule(&rs, &roles(&["anyone"])).map(|r| r.table.name.clone());
    assert_eq!(r.as_deref(), Some("b"));
}

#[test]
fn empty_rules_restrict_nobody() {
    let rs = ruleset(vec![]);
    assert!(!is_restricted(&rs, &roles(&["anyone"])));
    assert!(!is_restricted(&rs, &[]));
}

#[test]
fn protected_table_needs_a_plaintext_at_rest_column_not_readable() {
    let rs = ruleset(vec![
        rule("customers", "email", true, D, &[("support", EMAIL)]),
        rule("customers", "phone", false, D, &[("support", P04)]),
        rule("orders", "card", true, D, &[("support", P04)]),
    ]);
    let t = |n: &str| TableName {
        schema: "public".into(),
        name: n.into(),
    };
    let s = roles(&["support"]);
    assert!(protected_table(&rs, &t("customers"), &s));
    assert!(!protected_table(&rs, &t("orders"), &s), "encrypted only");
    assert!(restricted_table(&rs, &t("orders"), &s));
    assert!(!restricted_table(&rs, &t("untagged"), &s));
    assert!(
        protected_table(&rs, &t("customers"), &roles(&["x"])),
        "default deny"
    );
}

#[test]
fn sensitive_is_encrypted_or_not_plaintext() {
    let enc = rule("t", "a", true, P, &[]);
    let plain_open = rule("t", "b", false, P, &[]);
    let plain_masked = rule("t", "c", false, P, &[("support", HASH)]);
    let s = roles(&["support"]);
    assert!(sensitive(&enc, &s));
    assert!(!sensitive(&plain_open, &s));
    assert!(sensitive(&plain_masked, &s));
    assert!(!sensitive(&plain_masked, &roles(&["admin"])));
}

#[test]
fn read_access_of_a_vanished_or_unencrypted_rule_is_deny() {
    let s = roles(&["admin"]);
    assert_eq!(read_access(None, &s), D);
    let plain = rule("t", "p", false, P, &[]);
    assert_eq!(read_access(Some(&plain), &s), D);
    let enc = rule("t", "e", true, D, &[("admin", P)]);
    assert_eq!(read_access(Some(&enc), &s), P);
}

fn any_access() -> impl Strategy<Value = Access> {
    prop_oneof![
        Just(P),
        Just(N),
        Just(D),
        Just(REDACT),
        Just(EMAIL),
        Just(HASH),
        Just(YEAR),
        Just(MONTH),
        (0u32..6, 0u32..6).prop_map(|(first, last)| Access::Mask(Mask::Partial { first, last })),
        (1i64..100_000).prop_map(|n| Access::Mask(Mask::Round(n))),
    ]
}

fn any_rule() -> impl Strategy<Value = (ColumnRule, Vec<String>)> {
    let names = prop::collection::vec("[a-d]{1,2}", 0..6);
    (
        any_access(),
        prop::collection::btree_map("[a-d]{1,2}", any_access(), 0..6),
        names,
        any::<bool>(),
    )
        .prop_map(|(default, listed, session, enc)| {
            let mut r = rule("t", "c", enc, default, &[]);
            r.access = listed;
            (r, session)
        })
}

proptest! {
    #[test]
    fn order_and_duplicates_never_matter((r, session) in any_rule(), seed in any::<u64>()) {
        let want = access(&r, &session);
        let mut shuffled = session.clone();
        let n = shuffled.len();
        if n > 1 {
            shuffled.rotate_left((seed as usize) % n);
        }
        shuffled.extend(session.iter().cloned());
        prop_assert_eq!(access(&r, &shuffled), want);
    }

    #[test]
    fn default_applies_exactly_when_no_role_is_listed((r, session) in any_rule()) {
        let listed: Vec<Access> = session.iter().filter_map(|s| r.access.get(s).copied()).collect();
        let got = access(&r, &session);
        if listed.is_empty() {
            prop_assert_eq!(got, r.default);
        } else {
            prop_assert!(listed.contains(&got));
            for a in listed {
                prop_assert!(reveal_key(got) >= reveal_key(a));
            }
        }
    }

    #[test]
    fn unknown_roles_change_nothing((r, session) in any_rule(), ghost in "[x-z]{3}") {
        let mut more = session.clone();
        more.push(ghost);
        prop_assert_eq!(access(&r, &more), access(&r, &session));
    }

    #[test]
    fn adding_a_listed_role_never_reveals_less_once_one_is_listed(
        (r, session) in any_rule(), extra in "[a-d]{1,2}"
    ) {
        let listed = session.iter().any(|s| r.access.contains_key(s));
        prop_assume!(listed);
        let mut more = session.clone();
        more.push(extra);
        prop_assert!(reveal_key(access(&r, &more)) >= reveal_key(access(&r, &session)));
    }

    #[test]
    fn restricted_iff_some_column_is_not_plaintext(
        cols in prop::collection::vec(any_rule(), 0..5), session in prop::collection::vec("[a-d]{1,2}", 0..4)
    ) {
        let rules: Vec<ColumnRule> = cols.into_iter().enumerate().map(|(i, (mut r, _))| {
            r.name = format!("c{i}");
            r
        }).collect();
        let want = rules.iter().any(|c| access(c, &session) != Access::Plaintext);
        let rs = ruleset(rules);
        prop_assert_eq!(is_restricted(&rs, &session), want);
        prop_assert_eq!(restricting_rule(&rs, &session).is_some(), want);
    }

    #[test]
    fn resolve_keeps_every_role_once(login in "[a-d]{0,2}", member in prop::collection::vec("[a-d]{0,2}", 0..6)) {
        let r = RoleSet::resolve(&login, member.clone());
        let v = r.as_slice();
        let mut dedup = v.to_vec();
        dedup.sort();
        dedup.dedup();
        prop_assert_eq!(dedup.len(), v.len());
        for m in member.iter().filter(|m| !m.is_empty()) {
            prop_assert!(v.contains(m));
        }
        if !login.is_empty() {
            prop_assert_eq!(&v[0], &login);
        }
    }
}

/// One named test per case of the restricted classification: the rule
/// set (column, encrypted, default, listed), the session's roles, and
/// whether the session is restricted.
macro_rules! restricted_cases {
    ($($name:ident: [$(($c:expr, $e:expr, $d:expr, [$(($r:expr, $a:expr)),*])),*], [$($s:expr),*] => $want:expr;)*) => {
        $(
            #[test]
            fn $name() {
                let rs = ruleset(vec![$(rule("customers", $c, $e, $d, &[$(($r, $a)),*])),*]);
                let session = roles(&[$($s),*]);
                assert_eq!(is_restricted(&rs, &session), $want);
                assert_eq!(restricting_rule(&rs, &session).is_some(), $want);
                let mut reversed = session.clone();
                reversed.reverse();
                assert_eq!(is_restricted(&rs, &reversed), $want, "order must not matter");
            }
        )*
    };
}

restricted_cases! {
    plaintext_everywhere_is_unrestricted: [("email", true, D, [("admin", P)]), ("ssn", true, D, [("admin", P)])], ["admin"] => false;
    one_masked_column_restricts: [("email", true, D, [("admin", P)]), ("ssn", true, D, [("admin", EMAIL)])], ["admin"] => true;
    one_null_column_restricts: [("email", true, D, [("admin", P)]), ("ssn", true, D, [("admin", N)])], ["admin"] => true;
    one_denied_column_restricts: [("email", true, D, [("admin", P)]), ("ssn", true, D, [])], ["admin"] => true;
    default_plaintext_unrestricts_unlisted: [("email", true, P, [("support", EMAIL)])], ["nobody"] => false;
    default_plaintext_but_listed_mask_restricts: [("email", true, P, [("support", EMAIL)])], ["support"] => true;
    unencrypted_masked_column_restricts: [("phone", false, D, [("support", P04)])], ["support"] => true;
    unencrypted_plaintext_column_unrestricts: [("phone", false, D, [("support", P)])], ["support"] => false;
    group_membership_lifts_restriction: [("email", true, D, [("pii", P), ("support", EMAIL)])], ["support", "pii"] => false;
    group_membership_with_mask_keeps_restriction: [("email", true, D, [("team", HASH)])], ["bob", "team"] => true;
    no_roles_at_all_are_restricted_by_deny_default: [("email", true, D, [("admin", P)])], [] => true;
    no_roles_with_plaintext_default_are_free: [("email", true, P, [])], [] => false;
    unknown_role_beside_plaintext_role: [("email", true, D, [("admin", P)])], ["admin", "ghost"] => false;
    hash_default_restricts_everyone_unlisted: [("email", true, HASH, [("admin", P)])], ["intern"] => true;
    plaintext_for_one_of_two_columns_only: [("email", true, D, [("a", P)]), ("ssn", true, D, [("b", P)])], ["a"] => true;
    two_roles_covering_two_columns: [("email", true, D, [("a", P)]), ("ssn", true, D, [("b", P)])], ["a", "b"] => false;
    year_mask_restricts: [("birth", true, D, [("analyst", YEAR)])], ["analyst"] => true;
    round_mask_restricts: [("income", false, D, [("analyst", R1000)])], ["analyst"] => true;
    case_sensitive_role_does_not_lift: [("email", true, D, [("Admin", P)])], ["admin"] => true;
    many_columns_all_plaintext: [("a", true, P, []), ("b", false, P, []), ("c", true, D, [("x", P)])], ["x"] => false;
}

mod drift {
    use std::collections::HashMap;

    use super::super::{drift, Drift};
    use crate::rules::model::{Access, ColumnRule, LogicalType, RuleSet, SourceLoc, TableName};
    use crate::schema::{ColumnInfo, SchemaSnapshot, TableInfo};

    fn t(name: &str) -> TableName {
        TableName {
            schema: "public".into(),
            name: name.into(),
        }
    }

    fn rule(table: &str, col: &str) -> ColumnRule {
        ColumnRule {
            table: t(table),
            name: col.into(),
            ty: LogicalType::Text,
            encrypt: None,
            class: "pii".into(),
            access: Default::default(),
            default: Access::Deny,
            source: SourceLoc::default(),
        }
    }

    fn schema(tables: &[(&str, &[&str])]) -> SchemaSnapshot {
        let mut m = HashMap::new();
        for (i, (n, cols)) in tables.iter().enumerate() {
            m.insert(
                t(n),
                TableInfo {
                    oid: 100 + i as u32,
                    relkind: 'r',
                    columns: cols
                        .iter()
                        .enumerate()
                        .map(|(j, c)| ColumnInfo {
                            name: c.to_string(),
                            attnum: j as i16 + 1,
                            type_oid: 25,
                            type_name: "text".into(),
                        })
                        .collect(),
                },
            );
        }
        SchemaSnapshot::new(vec!["public".into()], m)
    }

    #[test]
    fn renamed_tables_and_columns_are_drift() {
        let rules = RuleSet::new(
            vec![rule("customers", "name"), rule("orders", "email")],
            "v".into(),
        );
        let ok = schema(&[("customers", &["id", "name"]), ("orders", &["email"])]);
        assert_eq!(drift(&rules, &ok), None);
        // ALTER TABLE customers RENAME TO c2 (or SET SCHEMA): the name is gone.
        let renamed = schema(&[("c2", &["id", "name"]), ("orders", &["email"])]);
        assert!(
            matches!(drift(&rules, &renamed), Some(Drift::TableMissing(r)) if r.name == "name")
        );
        // RENAME COLUMN name TO n.
        let col = schema(&[("customers", &["id", "n"]), ("orders", &["email"])]);
        assert!(matches!(drift(&rules, &col), Some(Drift::ColumnMissing(r)) if r.name == "name"));
    }
}

//! The policy: who a session is, and what it may get from each tagged
//! column. A pure module: no I/O, no clock, no keys. Every decision is a
//! function of the rules and the session's effective roles, so it can be
//! tested exhaustively and the same answer comes out wherever it is asked
//! (result rows, COPY, masked derived tables, audit records, `explain`).
//!
//! - **Role resolution**: the login role plus every role it is a member of,
//!   directly or not ([`RoleSet::resolve`]).
//! - **Access decision**: per column, the most revealing access among the
//!   listed roles wins; the column's `default` applies only when none of the
//!   session's roles is listed ([`access`]).
//! - **Classification**: a session is restricted when some tagged column is
//!   not plaintext for it ([`is_restricted`]); restricted sessions get every
//!   statement analysed and the restricted-session checks.

use crate::rules::model::{Access, ColumnRule, RuleSet, TableName};
use crate::schema::SchemaSnapshot;

#[cfg(test)]
mod tests;

/// A session's effective roles: the login role first, then every role it is
/// a member of, each once. Role names are compared exactly as PostgreSQL
/// stores them (case-sensitive, already folded by the server).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleSet(Vec<String>);

impl RoleSet {
    /// The roles of a session whose login role is `login` and which the
    /// catalog says is a member of `member_of` (in any order, possibly with
    /// the login role itself and duplicates, as `pg_has_role` lists them).
    pub fn resolve<I, S>(login: &str, member_of: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut roles = Vec::new();
        if !login.is_empty() {
            roles.push(login.to_string());
        }
        for r in member_of {
            let r = r.into();
            if !r.is_empty() && !roles.contains(&r) {
                roles.push(r);
            }
        }
        RoleSet(roles)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

/// What `roles` get from `rule`'s column: the most revealing access among
/// the listed roles; the column's default when none is listed.
///
/// Why the default does not compete with listed roles: a DBA who lists
/// `support = "partial(0,4)"` under `default = "plaintext"` means support
/// sees the mask. Letting the default win would hand support the plaintext.
pub fn access(rule: &ColumnRule, roles: &[String]) -> Access {
    access_by(rule, roles.iter().map(String::as_str))
}

/// [`access`] over any iterator of role names.
///
/// The answer does not depend on the order of `roles`: candidates are
/// visited in the rule's role-name order, and a tie between equally
/// revealing accesses goes to the first role name. Otherwise two replicas
/// reading memberships in different catalog orders could serve one session
/// two different masks.
pub fn access_by<'a, I: IntoIterator<Item = &'a str>>(rule: &ColumnRule, roles: I) -> Access {
    let roles: Vec<&str> = roles.into_iter().collect();
    let mut best: Option<Access> = None;
    for (name, a) in &rule.access {
        if !roles.contains(&name.as_str()) {
            continue;
        }
        if best.is_none_or(|b| reveal_key(*a) > reveal_key(b)) {
            best = Some(*a);
        }
    }
    best.unwrap_or(rule.default)
}

/// Orders accesses by how much they reveal: plaintext above every mask,
/// masks above `null`, `null` above `deny`; between masks of one kind, the
/// one keeping more of the value (more characters kept by `partial`, a
/// finer `round`).
pub fn reveal_key(a: Access) -> (u8, i64) {
    use crate::rules::model::Mask;
    let detail = match a {
        Access::Mask(Mask::Partial { first, last }) => i64::from(first) + i64::from(last),
        Access::Mask(Mask::Round(n)) => n.checked_neg().unwrap_or(i64::MIN),
        _ => 0,
    };
    (a.revealing_rank(), detail)
}

/// The first rule (in rule-file order) that gives these roles less than
/// plaintext: what makes the session restricted, named in refusals.
pub fn restricting_rule<'r>(rules: &'r RuleSet, roles: &[String]) -> Option<&'r ColumnRule> {
    rules
        .columns()
        .iter()
        .find(|c| access(c, roles) != Access::Plaintext)
}

/// A session is restricted when its roles have any non-plaintext access on
/// any tagged column. Such a session gets every statement analysed (no
/// pre-filter), masked derived tables, and the restricted-session refusals.
pub fn is_restricted(rules: &RuleSet, roles: &[String]) -> bool {
    restricting_rule(rules, roles).is_some()
}

/// Whether `t` has a plaintext-at-rest column these roles may not read in
/// plaintext: every reference to it is replaced by the masked derived table.
pub fn protected_table(rules: &RuleSet, t: &TableName, roles: &[String]) -> bool {
    rules
        .table_columns(t)
        .any(|c| c.encrypt.is_none() && access(c, roles) != Access::Plaintext)
}

/// Whether any tagged column of `t` is not plaintext for these roles.
pub fn restricted_table(rules: &RuleSet, t: &TableName, roles: &[String]) -> bool {
    rules
        .table_columns(t)
        .any(|c| access(c, roles) != Access::Plaintext)
}

/// Whether the analysis must track the column: encrypted at rest, or not
/// readable in plaintext by these roles.
pub fn sensitive(rule: &ColumnRule, roles: &[String]) -> bool {
    rule.encrypt.is_some() || access(rule, roles) != Access::Plaintext
}

/// What the session does with a value of an encrypted column it is about
/// to send. `rule` is `None` when the column's rule disappeared in a reload
/// after the statement was prepared: the value stays ciphertext and is
/// never revealed.
pub fn read_access(rule: Option<&ColumnRule>, roles: &[String]) -> Access {
    match rule {
        Some(r) if r.encrypt.is_some() => access(r, roles),
        _ => Access::Deny,
    }
}

/// How the rules and the live catalog disagree about one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift<'r> {
    /// The rule's table is not in the catalog under its name: renamed,
    /// moved to another schema (`SET SCHEMA`) or dropped. Its rows may be
    /// readable under a name no rule covers.
    TableMissing(&'r ColumnRule),
    /// The table is there but the rule's column is not: renamed (or
    /// dropped). Its values may be readable under a column name no rule
    /// covers.
    ColumnMissing(&'r ColumnRule),
}

impl Drift<'_> {
    pub fn rule(&self) -> &ColumnRule {
        match self {
            Drift::TableMissing(r) | Drift::ColumnMissing(r) => r,
        }
    }
}

/// The first rule the catalog snapshot does not match (rules in file
/// order). pgveil knows tables from the catalog by name and the rules by
/// name, so after `ALTER TABLE … RENAME`, `RENAME COLUMN` or `SET SCHEMA`
/// (done outside pgveil) the protected data lives under a name no rule
/// covers. Restricted sessions are refused while this is `Some`: for a
/// missing table any statement that reads a relation (pgveil cannot tell
/// which one now holds the rows), for a missing column any statement on
/// that table. `pgveil check --upstream` reports the same drift.
pub fn drift<'r>(rules: &'r RuleSet, schema: &SchemaSnapshot) -> Option<Drift<'r>> {
    rules
        .columns()
        .iter()
        .find_map(|r| match schema.tables.get(&r.table) {
            None => Some(Drift::TableMissing(r)),
            Some(t) if t.column(&r.name).is_none() => Some(Drift::ColumnMissing(r)),
            Some(_) => None,
        })
}

/// Prefix of the shadow columns of an online conversion (`pgveil encrypt`,
/// `snapshot::overlay`).
pub const SHADOW_PREFIX: &str = "pgveil_enc_";

/// Whether `rule` is a conversion's shadow column as the overlay serves it:
/// plaintext at rest, denied to everyone. The masked derived table names
/// such a column (as a NULL) instead of leaving it out, so that a statement
/// built before the swap, which renames the shadow away, fails in
/// PostgreSQL rather than read the swapped-in column as plaintext.
pub fn is_conversion_shadow(rule: &ColumnRule) -> bool {
    rule.encrypt.is_none()
        && rule.name.starts_with(SHADOW_PREFIX)
        && rule.access.is_empty()
        && rule.default == Access::Deny
}

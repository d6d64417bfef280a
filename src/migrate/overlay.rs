//! The proxy's side of an online conversion, as a pure function the
//! session layer can call (hook for the lead; nothing calls it yet).
//!
//! While a column is on the shadow path, its live values are still the
//! plaintext column, and the shadow column holds ciphertext bound to the
//! column's final name. The proxy must then serve the column as what it is
//! *today*: plaintext at rest, with the rule's access map (so restricted
//! roles get the masked derived table, exactly as for any plaintext-at-rest
//! column), and writes go in as plaintext, which the sync trigger marks for
//! the tool to encrypt. The shadow column gets a deny-all rule, so nobody
//! reads it through the proxy, and so that a session whose catalog snapshot
//! predates the swap (it still knows the new column under the shadow's
//! name) gets a refusal, never ciphertext passed off as a value. After the
//! swap the conversion row says `done` and the rules apply unchanged.
//!
//! Wiring (for the lead): read [`PRESENT_QUERY`], and if true
//! [`IN_FLIGHT_QUERY`], over the session's upstream connection together
//! with `schema::catalog_query`, on the same triggers (connect, DDL through
//! pgveil, rules reload, `catalog_max_age_ms`); build the session's policy
//! from `serving_rules(&rules, &in_flight)` instead of `rules`. A failed
//! read means refuse, as for the catalog.

use crate::rules::{Access, ColumnRule, RuleSet, TableName};

/// Whether the conversion table exists (a never-converted database has none).
pub const PRESENT_QUERY: &str = "SELECT pg_catalog.to_regclass('pgveil.conversion') IS NOT NULL";

/// One row per column on the shadow path of a conversion in flight:
/// `schema, table, column, shadow column`.
pub const IN_FLIGHT_QUERY: &str = "SELECT c.table_schema, c.table_name, u.col, u.shadow \
     FROM pgveil.conversion c, pg_catalog.unnest(c.columns, c.shadows) AS u(col, shadow) \
     WHERE c.phase <> 'done' AND u.shadow <> '' ORDER BY 1, 2, 3";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub table: TableName,
    pub column: String,
    pub shadow: String,
}

/// Parses the text rows of [`IN_FLIGHT_QUERY`]; malformed rows are skipped.
pub fn in_flight_from_rows(rows: &[Vec<Option<String>>]) -> Vec<InFlight> {
    rows.iter()
        .filter_map(|r| {
            let get = |i: usize| r.get(i).and_then(|v| v.clone());
            Some(InFlight {
                table: TableName {
                    schema: get(0)?,
                    name: get(1)?,
                },
                column: get(2)?,
                shadow: get(3)?,
            })
        })
        .collect()
}

/// The rules the proxy should serve while `in_flight` conversions run.
pub fn serving_rules(rules: &RuleSet, in_flight: &[InFlight]) -> RuleSet {
    if in_flight.is_empty() {
        return rules.clone();
    }
    let mut cols = Vec::with_capacity(rules.columns().len() + in_flight.len());
    for r in rules.columns() {
        let f = in_flight
            .iter()
            .find(|f| f.table == r.table && f.column == r.name);
        match f {
            Some(f) if r.encrypt.is_some() => {
                cols.push(ColumnRule {
                    encrypt: None,
                    ..r.clone()
                });
                cols.push(ColumnRule {
                    name: f.shadow.clone(),
                    access: Default::default(),
                    default: Access::Deny,
                    ..r.clone()
                });
            }
            _ => cols.push(r.clone()),
        }
    }
    RuleSet::new(cols, format!("{}+converting", rules.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_columns_are_served_as_plaintext_and_shadows_denied() {
        let rules = RuleSet::new(
            crate::rules::parse_str(
                "r.toml",
                "[[column]]\ntable = \"public.t\"\nname = \"email\"\ntype = \"text\"\n\
                 encrypt = \"deterministic\"\nclass = \"c\"\n[column.access]\nadmin = \"plaintext\"\n\
                 support = \"email\"\n\
                 [[column]]\ntable = \"public.t\"\nname = \"ssn\"\ntype = \"text\"\n\
                 encrypt = \"deterministic\"\nclass = \"c\"\n",
            )
            .unwrap(),
            "v1".into(),
        );
        let rows = vec![vec![
            Some("public".into()),
            Some("t".into()),
            Some("email".into()),
            Some("pgveil_enc_email".into()),
        ]];
        let f = in_flight_from_rows(&rows);
        let s = serving_rules(&rules, &f);
        let t = &f[0].table;
        let email = s.column(t, "email").unwrap();
        assert!(email.encrypt.is_none());
        assert_eq!(
            crate::policy::access_by(email, ["support"]),
            crate::policy::access_by(rules.column(t, "email").unwrap(), ["support"])
        );
        let shadow = s.column(t, "pgveil_enc_email").unwrap();
        assert!(shadow.encrypt.is_some());
        assert_eq!(crate::policy::access_by(shadow, ["admin"]), Access::Deny);
        assert!(
            s.column(t, "ssn").unwrap().encrypt.is_some(),
            "not in flight"
        );
        assert_ne!(s.version, rules.version);
        assert_eq!(serving_rules(&rules, &[]).version, rules.version);
    }
}

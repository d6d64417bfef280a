//! The proxy's side of an online conversion: which columns are on the
//! shadow path right now, the rules pgveil serves them under, and the
//! reply-path check that catches a swap the session has not seen yet.
//! Pure functions; the session layer (`session::catalog`) calls them with
//! each catalog snapshot it reads, and `pgveil encrypt` names its shadow
//! columns with [`shadow_name`]. They live at the snapshot layer, not in
//! `migrate`, because the session may not import `migrate` (which imports
//! the CLI, and so the server and the session).
//!
//! # What is served, and why
//!
//! The DBA deploys the *final* rules (with `encrypt`) before the shadow
//! columns are filled. While a column is on the shadow path its live values
//! are still the plaintext column, and the shadow column holds ciphertext
//! bound to the column's final name. pgveil serves each column as what it
//! is at that moment ([`serving_rules`]):
//!
//! - the column: plaintext at rest, with the rule's access map (restricted
//!   roles get the masked derived table, as for any plaintext-at-rest
//!   column); writes go in as plaintext, which the sync trigger marks for
//!   the tool to encrypt;
//! - the shadow column: plaintext at rest and denied to every role. Being a
//!   plaintext-at-rest column that no role may read, it makes the table
//!   "protected" for every session, so *every* read of the table goes
//!   through the masked derived table, and that derived table names the
//!   shadow (`policy::is_conversion_shadow`). That is the guard for the
//!   swap: the swap drops the plaintext column and renames the shadow, so a
//!   statement built from a snapshot older than the swap names a column
//!   that no longer exists and PostgreSQL refuses it (42703), atomically,
//!   in the statement's own snapshot. Any reference to the shadow itself
//!   (`SELECT pgveil_enc_email`, `*`, `TABLE people`, whole-row
//!   `SELECT people`) is refused by the analysis (42501).
//!
//! After the swap the column is `bytea` and there is no shadow: the final
//! rules apply unchanged.
//!
//! # How a conversion in flight is detected: from the catalog snapshot
//!
//! [`in_flight`] derives it from the session's catalog snapshot alone: a
//! rule says `encrypt`, its column is not `bytea` (the tool's own test for
//! "not converted yet", see `migrate::plan::build`), and the table has the column
//! [`shadow_name`] would give it. `pgveil.conversion` is not read, because:
//!
//! - the snapshot is what the session judges statements by; the overlay
//!   read from the same query, in the same transaction, can never disagree
//!   with the types and attnums it is applied to (a separate read could:
//!   "done" while the snapshot still has the shadow, or the reverse);
//! - `pg_attribute` is readable by every role; `pgveil.conversion` would
//!   need a grant to every application role, and a failed read refuses the
//!   whole session;
//! - the swap and the catalog change commit together, so the snapshot that
//!   shows the swap is the snapshot that no longer needs the overlay.
//!
//! Why this is safe even when someone creates `pgveil_enc_<col>` by hand
//! (only the table's owner can): the overlay only ever applies to a column
//! that is *not* `bytea`. Under the final rules such a column is unusable
//! anyway: pgveil decrypts only `bytea` ciphertext (reads are refused,
//! XX001) and writes ciphertext as `bytea` (the server refuses it for a
//! text column). Serving it as plaintext at rest gives each role exactly
//! its access map over the stored value: masks and `null` are computed in
//! the derived table, `deny` is refused, and only `plaintext` roles see the
//! stored value, which they may see in plaintext anyway. No role gets more
//! than the rules grant, nothing that was ciphertext becomes plaintext, and
//! the hand-made column itself is denied. The owner who could add the
//! column can read the plaintext directly in any case.
//!
//! # The window after the swap
//!
//! A session notices the swap at its next catalog refresh: DDL through
//! pgveil, a rules reload, or its snapshot's age (`catalog_max_age_ms`,
//! capped at [`OVERLAY_MAX_AGE`] while a conversion is in flight). Until
//! then, a statement sent on the old snapshot gets:
//!
//! - a read of the table (any role, any statement with the table in FROM,
//!   including equality lookups and prepared statements prepared before
//!   the swap): the derived table names the vanished shadow, so PostgreSQL
//!   refuses it with 42703 (undefined column);
//! - a result column that comes straight from the table without the derived
//!   table (`RETURNING email` of a write): its (table, attnum) is the old
//!   shadow's in the snapshot, or its type is now `bytea` where the snapshot
//!   says otherwise; [`reply_conflict`] finds it in the RowDescription and
//!   the session is closed (08P01) before any value is sent;
//! - a write of the column as plaintext: refused by the server (the swap's
//!   `NOT VALID` ciphertext check, 23514, or a type error, 42804);
//! - `UPDATE` / `DELETE` whose WHERE compares the column with an untyped
//!   literal: the literal is read as `bytea`, so it matches no row and the
//!   statement reports 0 rows (nothing changed, nothing revealed).
//!
//! Never a stored ciphertext passed off as a value.

use crate::rules::{Access, ColumnRule, RuleSet, TableName};
use crate::schema::{ColumnInfo, SchemaSnapshot};

/// Postgres' identifier limit (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;

/// The shadow column's name: a fixed prefix, cut to Postgres' limit on a
/// character boundary (Postgres would cut it on a byte boundary itself).
pub fn shadow_name(column: &str) -> String {
    let mut s = format!("{}{column}", crate::policy::SHADOW_PREFIX);
    while s.len() > MAX_IDENT {
        s.pop();
    }
    s
}

/// Longest a session keeps a catalog snapshot while a conversion is in
/// flight (whatever `catalog_max_age_ms` says): it bounds how long after a
/// swap the session keeps sending statements built for the shadow path,
/// which are refused (see the module docs), not served.
pub const OVERLAY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// One column on the shadow path of a conversion in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub table: TableName,
    pub column: String,
    pub shadow: String,
}

/// The same test `pgveil encrypt` uses for "already converted".
fn is_bytea(c: &ColumnInfo) -> bool {
    c.type_name == "bytea"
}

/// The columns of `rules` on the shadow path in `schema` (module docs).
pub fn in_flight(rules: &RuleSet, schema: &SchemaSnapshot) -> Vec<InFlight> {
    rules
        .columns()
        .iter()
        .filter(|r| r.encrypt.is_some())
        .filter_map(|r| {
            let t = schema.tables.get(&r.table)?;
            let col = t.column(&r.name)?;
            let shadow = shadow_name(&r.name);
            if is_bytea(col) || shadow == r.name || t.column(&shadow).is_none() {
                return None;
            }
            Some(InFlight {
                table: r.table.clone(),
                column: r.name.clone(),
                shadow,
            })
        })
        .collect()
}

/// The rules the proxy serves while `in_flight` conversions run: each
/// column plaintext at rest under its own access map, each shadow denied to
/// everyone (replacing any rule of that name). The version names the
/// columns, so statements judged under another overlay are judged again.
pub fn serving_rules(rules: &RuleSet, in_flight: &[InFlight]) -> RuleSet {
    if in_flight.is_empty() {
        return rules.clone();
    }
    let find = |t: &TableName, name: &str, shadow: bool| {
        in_flight.iter().find(|f| {
            f.table == *t
                && if shadow {
                    f.shadow == name
                } else {
                    f.column == name
                }
        })
    };
    let mut cols = Vec::with_capacity(rules.columns().len() + in_flight.len());
    for r in rules.columns() {
        if find(&r.table, &r.name, true).is_some() {
            continue;
        }
        match find(&r.table, &r.name, false) {
            Some(f) => {
                cols.push(ColumnRule {
                    encrypt: None,
                    ..r.clone()
                });
                cols.push(ColumnRule {
                    name: f.shadow.clone(),
                    encrypt: None,
                    access: Default::default(),
                    default: Access::Deny,
                    ..r.clone()
                });
            }
            None => cols.push(r.clone()),
        }
    }
    let names: Vec<String> = in_flight
        .iter()
        .map(|f| format!("{}.{}", f.table, f.column))
        .collect();
    RuleSet::new(
        cols,
        format!("{}+converting:{}", rules.version, names.join(",")),
    )
}

/// A RowDescription field: (table OID, attnum, type OID).
pub type Field = (u32, i16, u32);

/// Why a reply cannot be served under the snapshot's overlay: a result
/// column comes from a shadow column (after the swap, the shadow's attnum is
/// the converted column), or an in-flight column arrives as `bytea` while
/// the snapshot says it is not (or the reverse). Either way the session's
/// snapshot predates a swap, and serving the column as plaintext at rest
/// would pass ciphertext off as a value.
pub fn reply_conflict(
    schema: &SchemaSnapshot,
    in_flight: &[InFlight],
    fields: impl IntoIterator<Item = Field>,
) -> Option<&'static str> {
    for (oid, attnum, type_oid) in fields {
        if oid == 0 {
            continue;
        }
        let Some((t, c)) = schema.origin(oid, attnum) else {
            continue;
        };
        for f in in_flight.iter().filter(|f| f.table == *t) {
            if c.name == f.shadow {
                return Some("a result column comes from a conversion's shadow column: the conversion was swapped in after this session read its catalog; reconnect");
            }
            if c.name == f.column && (type_oid == BYTEA_OID) != (c.type_oid == BYTEA_OID) {
                return Some("a column's stored type changed after this session read its catalog (a conversion was swapped in); reconnect");
            }
        }
    }
    None
}

const BYTEA_OID: u32 = 17;

#[cfg(test)]
mod tests;

//! What one run will do, read from the rules and the live catalog before
//! anything is written: the table's walk key, each column's path (shadow
//! column, in place, or offline `ALTER TABLE`), and the refusals that make
//! a run impossible (no key to walk by, no keyring, a column the rules do
//! not encrypt).

use tokio_postgres::GenericClient;

use super::MigrateError;
use crate::rules::{ColumnRule, RuleSet, TableName};

/// Postgres' identifier limit (NAMEDATALEN - 1).
#[cfg(test)]
const MAX_IDENT: usize = 63;

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plaintext to ciphertext (values already ciphertext are kept).
    Encrypt,
    /// Ciphertext under older keys to the active key.
    Rekey,
    /// Ciphertext bound to an old name to the rule's current name.
    Rename,
}

/// What the caller asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub table: String,
    pub columns: Vec<String>,
    pub offline: bool,
    pub rekey: bool,
    pub renamed_from: Option<String>,
}

#[derive(Debug, Clone)]
pub struct KeyCol {
    pub name: String,
    /// `format_type()` spelling, used to cast the checkpoint's text back.
    pub ty: String,
}

#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub rule: ColumnRule,
    /// The column's current database type.
    pub source_type: String,
    /// `bytea` already: converted in place, no shadow column.
    pub in_place: bool,
    /// Online path: the shadow `bytea` column filled during the walk.
    pub shadow: Option<String>,
    /// The name its values were encrypted under (`--renamed-from`).
    pub old_name: Option<(TableName, String)>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub table: TableName,
    pub key: Vec<KeyCol>,
    pub columns: Vec<ColumnPlan>,
    pub kind: Kind,
    pub offline: bool,
    pub rows_total: i64,
}

impl Plan {
    pub fn qualified_table(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.table.schema),
            quote_ident(&self.table.name)
        )
    }

    pub fn shadowed(&self) -> impl Iterator<Item = (&ColumnPlan, &str)> {
        self.columns
            .iter()
            .filter_map(|c| c.shadow.as_deref().map(|s| (c, s)))
    }
}

/// The shadow column's name (defined beside the proxy's overlay, which
/// recognises shadow columns by it).
pub use crate::snapshot::overlay::shadow_name;

pub fn parse_table(s: &str) -> Result<TableName, MigrateError> {
    match s.split_once('.') {
        Some((schema, name)) if !schema.is_empty() && !name.is_empty() => Ok(TableName {
            schema: schema.to_string(),
            name: name.to_string(),
        }),
        _ => Err(MigrateError::Usage(format!(
            "--table {s}: write SCHEMA.TABLE, e.g. public.customers"
        ))),
    }
}

/// The rules' encrypted columns of the table, narrowed to `--columns`.
fn chosen_rules(
    rules: &RuleSet,
    table: &TableName,
    wanted: &[String],
) -> Result<Vec<ColumnRule>, MigrateError> {
    let all: Vec<&ColumnRule> = rules.table_columns(table).collect();
    if all.is_empty() {
        return Err(MigrateError::Usage(format!(
            "no rule tags a column of {table}; nothing to encrypt"
        )));
    }
    for w in wanted {
        match all.iter().find(|r| &r.name == w) {
            None => {
                return Err(MigrateError::Usage(format!(
                    "--columns: {table}.{w} has no rule"
                )))
            }
            Some(r) if r.encrypt.is_none() => {
                return Err(MigrateError::Usage(format!(
                    "--columns: the rule for {table}.{w} (rule {}:{}) is plaintext at rest; \
                     add `encrypt` to it first",
                    r.source.file, r.source.line
                )))
            }
            _ => {}
        }
    }
    let out: Vec<ColumnRule> = all
        .into_iter()
        .filter(|r| r.encrypt.is_some() && (wanted.is_empty() || wanted.contains(&r.name)))
        .cloned()
        .collect();
    if out.is_empty() {
        return Err(MigrateError::Usage(format!(
            "no rule of {table} says `encrypt`; nothing to do"
        )));
    }
    Ok(out)
}

/// `--renamed-from`: `COLUMN` (one column), `SCHEMA.TABLE`, or
/// `SCHEMA.TABLE.COLUMN`.
fn old_name(
    from: &str,
    table: &TableName,
    rule: &ColumnRule,
    n_cols: usize,
) -> Result<(TableName, String), MigrateError> {
    let parts: Vec<&str> = from.split('.').collect();
    let t = |s: &str, n: &str| TableName {
        schema: s.into(),
        name: n.into(),
    };
    match parts.as_slice() {
        [c] if n_cols == 1 && !c.is_empty() => Ok((table.clone(), c.to_string())),
        [s, n] => Ok((t(s, n), rule.name.clone())),
        [s, n, c] if n_cols == 1 => Ok((t(s, n), c.to_string())),
        _ => Err(MigrateError::Usage(format!(
            "--renamed-from {from}: write OLD_COLUMN or SCHEMA.TABLE.OLD_COLUMN with one \
             --columns, or SCHEMA.OLD_TABLE for every column of a renamed table"
        ))),
    }
}

/// Current database type of each column of the table (by name).
pub async fn column_types(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<Vec<(String, String)>, MigrateError> {
    let rows = client
        .query(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod) \
             FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
             AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&table.schema, &table.name],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The primary key, else the narrowest unique, non-partial, plain-column
/// index whose columns are all NOT NULL: keyset pagination needs a total
/// order that no row can escape.
async fn walk_key(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<Option<Vec<KeyCol>>, MigrateError> {
    let rows = client
        .query(
            "SELECT array_agg(a.attname::text ORDER BY k.ord), \
             array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod) ORDER BY k.ord) \
             FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indisvalid \
             AND i.indpred IS NULL AND i.indexprs IS NULL \
             GROUP BY i.indexrelid, i.indisprimary HAVING bool_and(a.attnotnull) \
             ORDER BY i.indisprimary DESC, count(*), i.indexrelid LIMIT 1",
            &[&table.schema, &table.name],
        )
        .await?;
    Ok(rows.first().map(|r| {
        let names: Vec<String> = r.get(0);
        let types: Vec<String> = r.get(1);
        names
            .into_iter()
            .zip(types)
            .map(|(name, ty)| KeyCol { name, ty })
            .collect()
    }))
}

fn kind_of(req: &Request) -> Result<Kind, MigrateError> {
    match (req.rekey, req.renamed_from.is_some()) {
        (true, true) => Err(MigrateError::Usage(
            "--rekey and --renamed-from: run them one after the other".into(),
        )),
        (true, false) => Ok(Kind::Rekey),
        (false, true) => Ok(Kind::Rename),
        (false, false) => Ok(Kind::Encrypt),
    }
}

/// Reads the catalog and decides; writes nothing. `shadows` are the shadow
/// names of a conversion in flight (from its checkpoint), if any.
pub async fn build(
    client: &impl GenericClient,
    rules: &RuleSet,
    req: &Request,
    shadows: Option<(&[String], &[String])>,
) -> Result<Plan, MigrateError> {
    let kind = kind_of(req)?;
    let table = parse_table(&req.table)?;
    let chosen = chosen_rules(rules, &table, &req.columns)?;
    let types = column_types(client, &table).await?;
    if types.is_empty() {
        return Err(MigrateError::Usage(format!(
            "table {table} does not exist (or is not visible to this user)"
        )));
    }
    let key = walk_key(client, &table)
        .await?
        .ok_or_else(|| MigrateError::NoKey(table.to_string()))?;
    let mut columns = Vec::new();
    for rule in chosen {
        if key.iter().any(|k| k.name == rule.name) {
            return Err(MigrateError::KeyEncrypted(rule.qualified()));
        }
        let Some((_, ty)) = types.iter().find(|(n, _)| *n == rule.name) else {
            return Err(MigrateError::Usage(format!(
                "column {} does not exist",
                rule.qualified()
            )));
        };
        let in_place = ty == "bytea";
        if !in_place && kind != Kind::Encrypt {
            return Err(MigrateError::Usage(format!(
                "{} is {ty}, not ciphertext yet: run `pgveil encrypt` without --rekey / \
                 --renamed-from first",
                rule.qualified()
            )));
        }
        let shadow = (!in_place && !req.offline).then(|| {
            shadows
                .and_then(|(cols, sh)| {
                    let i = cols.iter().position(|c| *c == rule.name)?;
                    sh.get(i).filter(|s| !s.is_empty()).cloned()
                })
                .unwrap_or_else(|| shadow_name(&rule.name))
        });
        let old_name = match &req.renamed_from {
            Some(from) => Some(old_name(from, &table, &rule, req.columns.len().max(1))?),
            None => None,
        };
        columns.push(ColumnPlan {
            rule,
            source_type: ty.clone(),
            in_place,
            shadow,
            old_name,
        });
    }
    check_shadow_names(&columns, &types, shadows.is_some())?;
    let rows_total: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.{}",
                quote_ident(&table.schema),
                quote_ident(&table.name)
            ),
            &[],
        )
        .await?
        .get(0);
    Ok(Plan {
        table,
        key,
        columns,
        kind,
        offline: req.offline,
        rows_total,
    })
}

/// A fresh run must not adopt a column that happens to have the shadow's
/// name: it would be dropped by the swap.
fn check_shadow_names(
    columns: &[ColumnPlan],
    types: &[(String, String)],
    resuming: bool,
) -> Result<(), MigrateError> {
    if resuming {
        return Ok(());
    }
    for c in columns {
        if let Some(s) = &c.shadow {
            if types.iter().any(|(n, _)| n == s) {
                return Err(MigrateError::Usage(format!(
                    "{}.{s} already exists and no conversion of this table is in flight; \
                     rename or drop it",
                    c.rule.table
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_names_fit_postgres_identifiers() {
        assert_eq!(shadow_name("email"), "pgveil_enc_email");
        let long = "é".repeat(40);
        let s = shadow_name(&long);
        assert!(s.len() <= MAX_IDENT && s.starts_with("pgveil_enc_"));
    }

    #[test]
    fn renamed_from_forms() {
        let table = parse_table("public.t").unwrap();
        let rules = crate::rules::parse_str(
            "r.toml",
            "[[column]]\ntable = \"public.t\"\nname = \"email\"\ntype = \"text\"\n\
             encrypt = \"deterministic\"\nclass = \"c\"\n",
        )
        .unwrap();
        let rule = &rules[0];
        let (t, c) = old_name("mail", &table, rule, 1).unwrap();
        assert_eq!((t.name.as_str(), c.as_str()), ("t", "mail"));
        let (t, c) = old_name("public.old_t", &table, rule, 3).unwrap();
        assert_eq!((t.name.as_str(), c.as_str()), ("old_t", "email"));
        assert!(old_name("mail", &table, rule, 2).is_err());
        assert!(old_name("a.b.c.d", &table, rule, 1).is_err());
        assert!(parse_table("customers").is_err());
    }
}

//! What `pgveil check --upstream` adds about conversions: per encrypted
//! column, how many stored values each key version still protects (so a key
//! can be retired once its count is 0), and the progress of any conversion
//! in flight. Reads only header bytes and counts; never a value.

use std::fmt::Write as _;

use tokio_postgres::Client;

use super::checkpoint::schema_exists;
use super::plan::{column_types, quote_ident};
use super::MigrateError;
use crate::rules::RuleSet;

/// Key id of a stored value from its header bytes 2–5 (big-endian), NULL
/// for a value without the ciphertext header.
pub fn key_id_sql(column: &str) -> String {
    let c = quote_ident(column);
    format!(
        "CASE WHEN pg_catalog.octet_length({c}) >= 33 AND pg_catalog.get_byte({c}, 0) = 1 THEN \
         (pg_catalog.get_byte({c}, 1)::bigint << 24) | (pg_catalog.get_byte({c}, 2)::bigint << 16) \
         | (pg_catalog.get_byte({c}, 3)::bigint << 8) | pg_catalog.get_byte({c}, 4)::bigint END"
    )
}

/// `(key id or None for not-ciphertext, count)` for one `bytea` column.
pub async fn key_versions(
    client: &Client,
    table: &crate::rules::TableName,
    column: &str,
) -> Result<Vec<(Option<i64>, i64)>, MigrateError> {
    let sql = format!(
        "SELECT {k} AS k, count(*) FROM {}.{} WHERE {} IS NOT NULL GROUP BY 1 ORDER BY 1",
        quote_ident(&table.schema),
        quote_ident(&table.name),
        quote_ident(column),
        k = key_id_sql(column)
    );
    let rows = client.query(&sql, &[]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The report: one line per encrypted `bytea` column, then conversions in
/// flight. Empty when there is nothing to say.
pub async fn report(client: &Client, rules: &RuleSet) -> Result<String, MigrateError> {
    let mut out = String::new();
    let mut tables: Vec<_> = rules.tables().collect();
    tables.sort();
    for t in tables {
        let types = column_types(client, t).await?;
        for r in rules.table_columns(t).filter(|r| r.encrypt.is_some()) {
            if !types.iter().any(|(n, ty)| *n == r.name && ty == "bytea") {
                continue;
            }
            let counts = key_versions(client, t, &r.name).await?;
            let parts: Vec<String> = counts
                .iter()
                .map(|(k, n)| match k {
                    Some(k) => format!("key {k}: {n}"),
                    None => format!("not ciphertext: {n}"),
                })
                .collect();
            let parts = if parts.is_empty() {
                "no values".to_string()
            } else {
                parts.join(", ")
            };
            let _ = writeln!(out, "key versions of {}: {parts}", r.qualified());
        }
    }
    out.push_str(&in_flight(client).await?);
    Ok(out)
}

async fn in_flight(client: &Client) -> Result<String, MigrateError> {
    let mut out = String::new();
    if !schema_exists(client).await? {
        return Ok(out);
    }
    let rows = client
        .query(
            "SELECT table_schema, table_name, kind, phase, pg_catalog.array_to_string(columns, ', '), \
             rows_done, rows_total, \
             pg_catalog.round(extract(epoch FROM pg_catalog.now() - updated_at))::bigint \
             FROM pgveil.conversion WHERE phase <> 'done' ORDER BY 1, 2",
            &[],
        )
        .await?;
    for r in rows {
        let (s, t, kind, phase, cols): (String, String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let (done, total, ago): (i64, i64, i64) = (r.get(5), r.get(6), r.get(7));
        let pct = if total > 0 {
            100 * done.min(total) / total
        } else {
            100
        };
        let _ = writeln!(
            out,
            "conversion in flight: {s}.{t} ({kind} {cols}): {phase}, {done}/{total} rows ({pct}%), \
             last batch {ago}s ago; re-run `pgveil encrypt` to continue it"
        );
    }
    Ok(out)
}

/// [`report`] over a fresh connection, for `pgveil check --upstream`.
pub async fn report_url(rules: &RuleSet, url: &str) -> Result<String, MigrateError> {
    let client = crate::cli::connect(url)
        .await
        .map_err(|e| MigrateError::Connect(e.to_string()))?;
    report(&client, rules).await
}

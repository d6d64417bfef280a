//! The walk: keyset-paginated batches by the table's key, one transaction
//! per batch, each ending with its checkpoint.
//!
//! A batch locks its rows (`FOR NO KEY UPDATE`) while it reads, encrypts and
//! writes them, so an application update of the same row either commits
//! before the batch reads it (and the batch encrypts the new value) or waits
//! for the batch to commit (and then, through the sync trigger, invalidates
//! the shadow value the batch wrote). Only the batch's own rows wait, for
//! the length of one batch; `NO KEY` lets inserts referencing them through
//! foreign keys proceed.

use std::fmt::Write as _;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Row, Statement};

use super::checkpoint;
use super::plan::{quote_ident, Plan};
use super::progress::{Progress, Throttle};
use super::value::{Action, Converter, Stored};
use super::MigrateError;

/// Counts of what happened to values (never the values).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub rows: u64,
    pub written: u64,
    pub kept: u64,
    pub nulls: u64,
    pub undecryptable: u64,
    pub invalid: u64,
}

impl Counts {
    pub fn add(&mut self, o: Counts) {
        self.rows += o.rows;
        self.written += o.written;
        self.kept += o.kept;
        self.nulls += o.nulls;
        self.undecryptable += o.undecryptable;
        self.invalid += o.invalid;
    }
}

/// Which rows a batch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// The next page after the checkpoint.
    After,
    /// The first page.
    First,
    /// Rows whose shadow value is missing (written since their batch).
    Stale,
}

fn key_list(plan: &Plan, prefix: &str) -> String {
    plan.key
        .iter()
        .map(|k| format!("{prefix}{}", quote_ident(&k.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(s1 IS NULL AND c1 IS NOT NULL) OR …`: rows the shadow lags behind.
pub fn stale_predicate(plan: &Plan) -> String {
    let parts: Vec<String> = plan
        .shadowed()
        .map(|(c, s)| {
            format!(
                "({} IS NULL AND {} IS NOT NULL)",
                quote_ident(s),
                quote_ident(&c.rule.name)
            )
        })
        .collect();
    if parts.is_empty() {
        "false".into()
    } else {
        parts.join(" OR ")
    }
}

/// Key columns as text (aliased: an output column named like the key would
/// make `ORDER BY key` sort by the text), then per column: (`c::text`, shadow present) on the
/// shadow path, or the raw `bytea` in place.
pub fn select_sql(plan: &Plan, which: Select, limit: usize) -> String {
    let mut cols: Vec<String> = plan
        .key
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{}::text AS pgveil_k{i}", quote_ident(&k.name)))
        .collect();
    for c in &plan.columns {
        let name = quote_ident(&c.rule.name);
        match &c.shadow {
            Some(s) => {
                cols.push(format!("{name}::text"));
                cols.push(format!("{} IS NOT NULL", quote_ident(s)));
            }
            None => cols.push(name),
        }
    }
    let keys = key_list(plan, "");
    let filter = match which {
        Select::First => String::new(),
        Select::After => {
            let params: Vec<String> = plan
                .key
                .iter()
                .enumerate()
                .map(|(i, k)| format!("${}::text::{}", i + 1, k.ty))
                .collect();
            format!(" WHERE ({keys}) > ({})", params.join(", "))
        }
        Select::Stale => format!(" WHERE {}", stale_predicate(plan)),
    };
    format!(
        "SELECT {} FROM {}{filter} ORDER BY {keys} LIMIT {limit} FOR NO KEY UPDATE",
        cols.join(", "),
        plan.qualified_table()
    )
}

/// One `UPDATE … FROM unnest(…)` for the whole batch (multi-array `unnest`
/// exists only as FROM-clause syntax, so it cannot be schema-qualified; the
/// session's search_path is pg_catalog). A NULL in a column's
/// array means "leave it".
pub fn update_sql(plan: &Plan) -> String {
    let nk = plan.key.len();
    let mut args = Vec::new();
    let mut names = Vec::new();
    for (i, k) in plan.key.iter().enumerate() {
        args.push(format!("${}::text[]", i + 1));
        names.push(format!("k{i}"));
        let _ = k;
    }
    let mut sets = Vec::new();
    for (j, c) in plan.columns.iter().enumerate() {
        args.push(format!("${}::bytea[]", nk + j + 1));
        names.push(format!("v{j}"));
        let target = quote_ident(c.shadow.as_deref().unwrap_or(&c.rule.name));
        sets.push(format!("{target} = COALESCE(v.v{j}, t.{target})"));
    }
    let mut on = String::new();
    for (i, k) in plan.key.iter().enumerate() {
        if i > 0 {
            on.push_str(" AND ");
        }
        let _ = write!(on, "t.{} = v.k{i}::{}", quote_ident(&k.name), k.ty);
    }
    format!(
        "UPDATE {} AS t SET {} FROM unnest({}) AS v({}) WHERE {on}",
        plan.qualified_table(),
        sets.join(", "),
        args.join(", "),
        names.join(", ")
    )
}

/// The batch's changes, column-major, ready to bind.
struct Changes {
    keys: Vec<Vec<String>>,
    values: Vec<Vec<Option<Vec<u8>>>>,
}

fn convert_rows(
    plan: &Plan,
    conv: &[Converter<'_>],
    rows: &[Row],
) -> Result<(Changes, Counts), MigrateError> {
    let nk = plan.key.len();
    let mut ch = Changes {
        keys: vec![Vec::new(); nk],
        values: vec![Vec::new(); plan.columns.len()],
    };
    let mut counts = Counts::default();
    let mut row_vals: Vec<Option<Vec<u8>>> = Vec::with_capacity(plan.columns.len());
    for row in rows {
        counts.rows += 1;
        row_vals.clear();
        let mut at = nk;
        for (c, cv) in plan.columns.iter().zip(conv) {
            let action = if c.shadow.is_some() {
                let text: Option<&str> = row.try_get(at)?;
                let present: bool = row.try_get(at + 1)?;
                at += 2;
                match text {
                    None => None,
                    Some(_) if present => Some(Action::Keep),
                    Some(t) => Some(cv.convert(Stored::Text(t))),
                }
            } else {
                let b: Option<&[u8]> = row.try_get(at)?;
                at += 1;
                b.map(|b| cv.convert(Stored::Bytes(b)))
            };
            row_vals.push(match action {
                None => {
                    counts.nulls += 1;
                    None
                }
                Some(Action::Write(ct)) => {
                    counts.written += 1;
                    Some(ct)
                }
                Some(Action::Keep) => {
                    counts.kept += 1;
                    None
                }
                Some(Action::Undecryptable) => {
                    counts.undecryptable += 1;
                    None
                }
                Some(Action::Invalid) => {
                    counts.invalid += 1;
                    None
                }
            });
        }
        if row_vals.iter().any(Option::is_some) {
            for (i, k) in ch.keys.iter_mut().enumerate() {
                k.push(row.try_get::<_, String>(i)?);
            }
            for (j, v) in row_vals.drain(..).enumerate() {
                ch.values[j].push(v);
            }
        }
    }
    Ok((ch, counts))
}

fn last_key(plan: &Plan, rows: &[Row]) -> Result<Option<Vec<String>>, MigrateError> {
    let Some(r) = rows.last() else {
        return Ok(None);
    };
    (0..plan.key.len())
        .map(|i| r.try_get::<_, String>(i).map_err(MigrateError::from))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Prepared statements of one walk, reused by every batch.
pub struct Statements {
    pub first: Statement,
    pub after: Statement,
    pub stale: Option<Statement>,
    pub update: Statement,
    pub batch: usize,
}

impl Statements {
    pub async fn prepare(client: &Client, plan: &Plan, batch: usize) -> Result<Self, MigrateError> {
        let stale = if plan.shadowed().next().is_some() {
            Some(
                client
                    .prepare(&select_sql(plan, Select::Stale, batch))
                    .await?,
            )
        } else {
            None
        };
        Ok(Statements {
            first: client
                .prepare(&select_sql(plan, Select::First, batch))
                .await?,
            after: client
                .prepare(&select_sql(plan, Select::After, batch))
                .await?,
            stale,
            update: client.prepare(&update_sql(plan)).await?,
            batch,
        })
    }
}

/// Reads, converts and writes one batch inside `tx`. Returns the counts and
/// the key of its last row (None: no row left).
pub async fn run_batch(
    tx: &impl GenericClient,
    plan: &Plan,
    st: &Statements,
    conv: &[Converter<'_>],
    which: Select,
    after: Option<&[String]>,
) -> Result<(Counts, Option<Vec<String>>), MigrateError> {
    let rows = match (which, after) {
        (Select::After, Some(k)) => {
            let params: Vec<&(dyn ToSql + Sync)> =
                k.iter().map(|s| s as &(dyn ToSql + Sync)).collect();
            tx.query(&st.after, &params).await?
        }
        (Select::Stale, _) => match &st.stale {
            Some(s) => tx.query(s, &[]).await?,
            None => Vec::new(),
        },
        _ => tx.query(&st.first, &[]).await?,
    };
    let (ch, counts) = convert_rows(plan, conv, &rows)?;
    if !ch.keys.first().is_none_or(Vec::is_empty) {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        for k in &ch.keys {
            params.push(k);
        }
        for v in &ch.values {
            params.push(v);
        }
        tx.execute(&st.update, &params).await?;
    }
    Ok((counts, last_key(plan, &rows)?))
}

/// Walks the table from `start` to its end, committing one batch (with its
/// checkpoint) at a time.
pub async fn walk(
    client: &mut Client,
    plan: &Plan,
    st: &Statements,
    conv: &[Converter<'_>],
    start: Option<Vec<String>>,
    progress: &mut Progress,
    throttle: &mut Throttle,
) -> Result<Counts, MigrateError> {
    let mut total = Counts::default();
    let mut last = start;
    loop {
        let tx = client.transaction().await?;
        let which = if last.is_some() {
            Select::After
        } else {
            Select::First
        };
        let (counts, key) = run_batch(&tx, plan, st, conv, which, last.as_deref()).await?;
        let Some(key) = key else {
            tx.commit().await?;
            break;
        };
        checkpoint::advance(&tx, plan, &key, counts.rows as i64).await?;
        tx.commit().await?;
        total.add(counts);
        progress.add(counts.rows);
        throttle.pace(counts.rows).await;
        if (counts.rows as usize) < st.batch {
            break;
        }
        last = Some(key);
    }
    Ok(total)
}

//! The conversion state in the database, in pgveil's own schema.
//!
//! One row per table in `pgveil.conversion`: what is being done (`kind`),
//! how far (`phase`, `last_key`, `rows_done`), and with which shadow columns.
//! The checkpoint is updated inside each batch's own transaction, so after a
//! crash, Ctrl-C or `kill -9` the stored position is exactly the last
//! committed batch: re-running continues from there, and no batch is ever
//! half-applied. The same row tells `pgveil check --upstream` (and, once
//! wired in, the proxy) that a conversion is in flight.

use tokio_postgres::{Client, GenericClient};

use super::plan::{quote_ident, Kind, Plan};
use super::MigrateError;
use crate::rules::TableName;

/// Created on first use; `IF NOT EXISTS` so that concurrent first runs and
/// re-runs are harmless.
pub const SCHEMA_DDL: &str = "CREATE SCHEMA IF NOT EXISTS pgveil; \
    CREATE TABLE IF NOT EXISTS pgveil.conversion ( \
      table_schema text NOT NULL, table_name text NOT NULL, \
      kind text NOT NULL, phase text NOT NULL, \
      columns text[] NOT NULL, shadows text[] NOT NULL, \
      last_key text[], rows_done bigint NOT NULL DEFAULT 0, \
      rows_total bigint NOT NULL DEFAULT 0, \
      started_at timestamptz NOT NULL DEFAULT pg_catalog.now(), \
      updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(), \
      finished_at timestamptz, \
      PRIMARY KEY (table_schema, table_name))";

/// Phases of one conversion, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Walking the table by key, batch by batch.
    Backfill,
    /// Walk finished; shadow columns are being caught up and swapped in.
    Swap,
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Backfill => "backfill",
            Phase::Swap => "swap",
            Phase::Done => "done",
        }
    }

    fn parse(s: &str) -> Phase {
        match s {
            "backfill" => Phase::Backfill,
            "swap" => Phase::Swap,
            _ => Phase::Done,
        }
    }
}

/// A stored conversion row.
#[derive(Debug, Clone)]
pub struct State {
    pub kind: String,
    pub phase: Phase,
    pub columns: Vec<String>,
    pub shadows: Vec<String>,
    pub last_key: Option<Vec<String>>,
    pub rows_done: i64,
}

pub async fn ensure_schema(client: &Client) -> Result<(), MigrateError> {
    client.batch_execute(SCHEMA_DDL).await?;
    Ok(())
}

/// Whether `pgveil.conversion` exists (a database never converted has none).
pub async fn schema_exists(client: &impl GenericClient) -> Result<bool, MigrateError> {
    let row = client
        .query_one(
            "SELECT pg_catalog.to_regclass('pgveil.conversion') IS NOT NULL",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn load(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<Option<State>, MigrateError> {
    if !schema_exists(client).await? {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT kind, phase, columns, shadows, last_key, rows_done FROM pgveil.conversion \
             WHERE table_schema = $1 AND table_name = $2",
            &[&table.schema, &table.name],
        )
        .await?;
    Ok(row.map(|r| State {
        kind: r.get(0),
        phase: Phase::parse(r.get::<_, &str>(1)),
        columns: r.get(2),
        shadows: r.get(3),
        last_key: r.get(4),
        rows_done: r.get(5),
    }))
}

/// Records a new conversion (replacing a finished one of the same table).
pub async fn start(client: &impl GenericClient, plan: &Plan) -> Result<(), MigrateError> {
    let columns: Vec<&str> = plan.columns.iter().map(|c| c.rule.name.as_str()).collect();
    let shadows: Vec<&str> = plan
        .columns
        .iter()
        .map(|c| c.shadow.as_deref().unwrap_or(""))
        .collect();
    client
        .execute(
            "INSERT INTO pgveil.conversion AS c (table_schema, table_name, kind, phase, columns, \
             shadows, rows_total) VALUES ($1, $2, $3, 'backfill', $4, $5, $6) \
             ON CONFLICT (table_schema, table_name) DO UPDATE SET kind = EXCLUDED.kind, \
             phase = 'backfill', columns = EXCLUDED.columns, shadows = EXCLUDED.shadows, \
             last_key = NULL, rows_done = 0, rows_total = EXCLUDED.rows_total, \
             started_at = pg_catalog.now(), updated_at = pg_catalog.now(), finished_at = NULL",
            &[
                &plan.table.schema,
                &plan.table.name,
                &plan.kind.as_str(),
                &columns,
                &shadows,
                &plan.rows_total,
            ],
        )
        .await?;
    Ok(())
}

/// The checkpoint of one batch; call inside the batch's transaction.
pub async fn advance(
    tx: &impl GenericClient,
    plan: &Plan,
    last_key: &[String],
    rows: i64,
) -> Result<(), MigrateError> {
    tx.execute(
        "UPDATE pgveil.conversion SET last_key = $3, rows_done = rows_done + $4, \
         updated_at = pg_catalog.now() WHERE table_schema = $1 AND table_name = $2",
        &[&plan.table.schema, &plan.table.name, &last_key, &rows],
    )
    .await?;
    Ok(())
}

pub async fn set_phase(
    tx: &impl GenericClient,
    plan: &Plan,
    phase: Phase,
) -> Result<(), MigrateError> {
    let finished = if phase == Phase::Done {
        "pg_catalog.now()"
    } else {
        "NULL"
    };
    tx.execute(
        &format!(
            "UPDATE pgveil.conversion SET phase = $3, updated_at = pg_catalog.now(), \
             finished_at = {finished} WHERE table_schema = $1 AND table_name = $2"
        ),
        &[&plan.table.schema, &plan.table.name, &phase.as_str()],
    )
    .await?;
    Ok(())
}

/// Refuses to resume a conversion started with other options: mixing two
/// plans on one walk could skip rows or leave a shadow column behind.
pub fn check_resumable(state: &State, plan: &Plan) -> Result<(), MigrateError> {
    let cols: Vec<String> = plan.columns.iter().map(|c| c.rule.name.clone()).collect();
    if state.kind != plan.kind.as_str() || state.columns != cols {
        return Err(MigrateError::InFlight {
            table: plan.table.to_string(),
            kind: state.kind.clone(),
            columns: state.columns.join(","),
        });
    }
    Ok(())
}

/// Name of the per-table advisory lock that keeps two runs apart.
pub fn lock_key(plan: &Plan) -> String {
    format!(
        "pgveil encrypt {}.{}",
        quote_ident(&plan.table.schema),
        quote_ident(&plan.table.name)
    )
}

/// Takes the per-table session advisory lock, or refuses: a second run on
/// the same table would race the first one's checkpoints. A killed run's
/// lock goes with its connection.
pub async fn lock(client: &Client, plan: &Plan) -> Result<(), MigrateError> {
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext($1)::bigint)",
            &[&lock_key(plan)],
        )
        .await?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        Err(MigrateError::Busy(plan.table.to_string()))
    }
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Encrypt => "encrypt",
            Kind::Rekey => "rekey",
            Kind::Rename => "rename",
        }
    }
}

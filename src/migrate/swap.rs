//! The online path's DDL: installing the shadow columns and their sync
//! trigger, catching up rows written during the walk, and the swap.
//!
//! # Why a trigger that *invalidates* rather than encrypts
//!
//! The database never holds a key, so nothing inside it can encrypt a value
//! an application writes during the walk. The trigger therefore does the
//! one thing the database can do safely: when a row's plaintext changes (or
//! a row is inserted), it clears that row's shadow value. The invariant
//!
//! > a non-NULL shadow value is the encryption of the row's *current* plaintext
//!
//! holds at every commit: batches write shadow values only under a row lock,
//! for the plaintext they read under that lock; any later change of the
//! plaintext clears it in the same statement. Rows whose shadow is NULL
//! while the plaintext is not are exactly the rows left to do, and the swap
//! converts the last of them while it holds the table's lock, so the
//! swapped-in column is complete.
//!
//! The trigger is named `zz_pgveil_sync` so that it fires after the
//! application's own `BEFORE` triggers (Postgres fires them by name), and
//! sees the plaintext they finally store.
//!
//! # The swap
//!
//! One short transaction under `lock_timeout`: lock the table, convert the
//! stragglers, drop the trigger and the plaintext column, rename the shadow
//! to the column's name (its values were encrypted for that name from the
//! start), add a `NOT VALID` check that every value has the ciphertext
//! header (so a writer that still believes the column is plaintext fails
//! instead of storing plaintext in it), and mark the conversion done. If the
//! lock is not granted in time, it rolls back, waits and tries again: a long
//! application transaction delays the swap, never the other way round.

use std::time::Duration;

use tokio_postgres::Client;

use super::batch::{run_batch, stale_predicate, Counts, Select, Statements};
use super::checkpoint::{self, Phase};
use super::plan::{quote_ident, Plan};
use super::value::Converter;
use super::MigrateError;

/// How long the swap waits for its lock per attempt, and how many attempts.
const LOCK_TIMEOUT: &str = "2s";
const ATTEMPTS: u32 = 30;

/// Name of the per-table sync function (table names may be long; the OID
/// would change on dump/restore, so the function is named by a hash).
fn sync_fn(plan: &Plan) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{}.{}", plan.table.schema, plan.table.name));
    format!("pgveil.sync_{}", hex::encode(&h[..8]))
}

pub const TRIGGER: &str = "zz_pgveil_sync";

fn trigger_ddl(plan: &Plan) -> String {
    let mut ins = String::new();
    let mut upd = String::new();
    for (c, s) in plan.shadowed() {
        let (c, s) = (quote_ident(&c.rule.name), quote_ident(s));
        ins.push_str(&format!("NEW.{s} := NULL; "));
        upd.push_str(&format!(
            "IF NEW.{c} IS DISTINCT FROM OLD.{c} THEN NEW.{s} := NULL; END IF; "
        ));
    }
    let f = sync_fn(plan);
    format!(
        "CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql \
         SET search_path = pg_catalog AS $pgveil$ BEGIN \
         IF TG_OP = 'INSERT' THEN {ins} ELSE {upd} END IF; RETURN NEW; END $pgveil$; \
         DROP TRIGGER IF EXISTS {TRIGGER} ON {t}; \
         CREATE TRIGGER {TRIGGER} BEFORE INSERT OR UPDATE ON {t} \
         FOR EACH ROW EXECUTE FUNCTION {f}()",
        t = plan.qualified_table()
    )
}

/// Adds the shadow columns and the trigger, and records the conversion, in
/// one transaction: either all of it exists or none. `ADD COLUMN` without a
/// default only touches the catalog, so its exclusive lock is brief (taken
/// under `lock_timeout` and retried like the swap).
pub async fn install(client: &mut Client, plan: &Plan) -> Result<(), MigrateError> {
    let mut ddl = String::new();
    for (_, s) in plan.shadowed() {
        ddl.push_str(&format!(
            "ALTER TABLE {} ADD COLUMN {} bytea; ",
            plan.qualified_table(),
            quote_ident(s)
        ));
    }
    ddl.push_str(&trigger_ddl(plan));
    let mut retry = Retry::new(&plan.table.to_string());
    loop {
        let tx = begin_locked(client).await?;
        let r = async {
            tx.batch_execute(&ddl).await?;
            checkpoint::start(&tx, plan).await
        }
        .await;
        match r {
            Ok(()) => return Ok(tx.commit().await?),
            Err(e) => {
                drop(tx);
                retry.after(e).await?
            }
        }
    }
}

async fn begin_locked(
    client: &mut Client,
) -> Result<tokio_postgres::Transaction<'_>, MigrateError> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .await?;
    Ok(tx)
}

/// Retries a transaction whose lock was not granted in time (SQLSTATE
/// lock_not_available), with growing pauses, a bounded number of times.
struct Retry {
    table: String,
    attempt: u32,
    wait: Duration,
}

impl Retry {
    fn new(table: &str) -> Retry {
        Retry {
            table: table.to_string(),
            attempt: 0,
            wait: Duration::from_millis(100),
        }
    }

    /// Ok: try again; Err: give up with this error.
    async fn after(&mut self, e: MigrateError) -> Result<(), MigrateError> {
        let lock = matches!(&e, MigrateError::Db(d)
            if d.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE));
        if !lock {
            return Err(e);
        }
        self.attempt += 1;
        if self.attempt >= ATTEMPTS {
            return Err(MigrateError::LockTimeout(self.table.clone()));
        }
        tracing::info!(attempt = self.attempt, "lock not granted in time; retrying");
        eprintln!(
            "pgveil encrypt: {}: lock not granted within {LOCK_TIMEOUT} (attempt {}); retrying",
            self.table, self.attempt
        );
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(Duration::from_secs(3));
        Ok(())
    }
}

/// Converts rows whose shadow lags (written since their batch), batch by
/// batch, outside the swap lock. Returns when one pass finds fewer than a
/// batch of them, so the swap has little left to do under its lock.
pub async fn catch_up(
    client: &mut Client,
    plan: &Plan,
    st: &Statements,
    conv: &[Converter<'_>],
) -> Result<Counts, MigrateError> {
    let mut total = Counts::default();
    for _ in 0..1000 {
        let tx = client.transaction().await?;
        let (c, _) = run_batch(&tx, plan, st, conv, Select::Stale, None).await?;
        tx.commit().await?;
        total.add(c);
        if (c.rows as usize) < st.batch || c.written == 0 {
            break;
        }
    }
    Ok(total)
}

/// The swap transaction (see the module docs).
pub async fn swap(
    client: &mut Client,
    plan: &Plan,
    st: &Statements,
    conv: &[Converter<'_>],
) -> Result<Counts, MigrateError> {
    let mut retry = Retry::new(&plan.table.to_string());
    loop {
        let tx = begin_locked(client).await?;
        match swap_in(&tx, plan, st, conv).await {
            Ok(c) => {
                tx.commit().await?;
                return Ok(c);
            }
            Err(e) => {
                drop(tx);
                retry.after(e).await?
            }
        }
    }
}

async fn swap_in(
    tx: &tokio_postgres::Transaction<'_>,
    plan: &Plan,
    st: &Statements,
    conv: &[Converter<'_>],
) -> Result<Counts, MigrateError> {
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        plan.qualified_table()
    ))
    .await?;
    let mut counts = Counts::default();
    loop {
        let (c, _) = run_batch(tx, plan, st, conv, Select::Stale, None).await?;
        counts.add(c);
        if c.written == 0 {
            break;
        }
    }
    let left: i64 = tx
        .query_one(
            &format!(
                "SELECT count(*) FROM {} WHERE {}",
                plan.qualified_table(),
                stale_predicate(plan)
            ),
            &[],
        )
        .await?
        .get(0);
    if left > 0 {
        return Err(MigrateError::Unconvertible {
            table: plan.table.to_string(),
            count: left as u64,
        });
    }
    tx.batch_execute(&swap_ddl(plan)).await?;
    checkpoint::set_phase(tx, plan, Phase::Done).await?;
    Ok(counts)
}

/// The CHECK every converted column carries: the pgveil ciphertext header
/// (format version 1, at least header + tag long).
pub fn ciphertext_check(column: &str) -> String {
    let c = quote_ident(column);
    format!("CHECK ({c} IS NULL OR (pg_catalog.octet_length({c}) >= 33 AND pg_catalog.get_byte({c}, 0) = 1))")
}

pub fn constraint_name(column: &str) -> String {
    let mut s = format!("pgveil_ciphertext_{column}");
    while s.len() > 63 {
        s.pop();
    }
    s
}

fn swap_ddl(plan: &Plan) -> String {
    let t = plan.qualified_table();
    let mut ddl = format!(
        "DROP TRIGGER IF EXISTS {TRIGGER} ON {t}; DROP FUNCTION IF EXISTS {}(); ",
        sync_fn(plan)
    );
    for (c, s) in plan.shadowed() {
        let name = quote_ident(&c.rule.name);
        ddl.push_str(&format!(
            "ALTER TABLE {t} DROP COLUMN {name}; ALTER TABLE {t} RENAME COLUMN {} TO {name}; \
             ALTER TABLE {t} ADD CONSTRAINT {} {} NOT VALID; ",
            quote_ident(s),
            quote_ident(&constraint_name(&c.rule.name)),
            ciphertext_check(&c.rule.name)
        ));
    }
    ddl
}

/// `--offline`: rewrites each non-`bytea` column to `bytea` holding its
/// plaintext's UTF-8 bytes, under the exclusive lock `ALTER TABLE … TYPE`
/// takes for the whole rewrite. The in-place walk then encrypts them.
pub async fn offline_alter(client: &mut Client, plan: &Plan) -> Result<(), MigrateError> {
    let t = plan.qualified_table();
    let mut ddl = String::new();
    for c in plan.columns.iter().filter(|c| !c.in_place) {
        let name = quote_ident(&c.rule.name);
        ddl.push_str(&format!(
            "ALTER TABLE {t} ALTER COLUMN {name} TYPE bytea \
             USING pg_catalog.convert_to({name}::text, 'UTF8'); "
        ));
    }
    if ddl.is_empty() {
        return Ok(());
    }
    let tx = client.transaction().await?;
    tx.batch_execute(&ddl).await?;
    checkpoint::start(&tx, plan).await?;
    tx.commit().await?;
    Ok(())
}

/// After an in-place or offline conversion: the ciphertext-header check on
/// every converted column (skipped where it exists already).
pub async fn add_checks(client: &Client, plan: &Plan) -> Result<(), MigrateError> {
    for c in &plan.columns {
        let name = constraint_name(&c.rule.name);
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k \
                 JOIN pg_catalog.pg_class r ON r.oid = k.conrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace \
                 WHERE n.nspname = $1 AND r.relname = $2 AND k.conname = $3)",
                &[&plan.table.schema, &plan.table.name, &name],
            )
            .await?
            .get(0);
        if !exists {
            client
                .batch_execute(&format!(
                    "SET lock_timeout = '{LOCK_TIMEOUT}'; ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID; RESET lock_timeout",
                    plan.qualified_table(),
                    quote_ident(&name),
                    ciphertext_check(&c.rule.name)
                ))
                .await?;
        }
    }
    Ok(())
}

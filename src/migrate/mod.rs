//! `pgveil encrypt`: brings existing plaintext under encryption, and
//! re-encrypts (after a key rotation, or a rename), online.
//!
//! # Paths
//!
//! - **Shadow (default, online)** for a column that is not `bytea` yet: add
//!   a `bytea` shadow column and a sync trigger ([`swap`]), fill the shadow
//!   by walking the table ([`batch`]), then swap it in with one short
//!   transaction. The values are encrypted for the column's *final* name
//!   from the start, so nothing is re-encrypted at the swap. Applications
//!   keep reading and writing the plaintext column until the swap; the
//!   trigger makes sure what they write during the walk ends up encrypted
//!   (see [`swap`] for the invariant and why the trigger invalidates rather
//!   than encrypts). `ALTER TABLE … TYPE bytea` would do the same work under
//!   an exclusive lock for the whole rewrite, which is not online.
//! - **In place** for a column that is `bytea` already (plaintext bytes
//!   written around pgveil, values under an old key with `--rekey`, or under
//!   an old name with `--renamed-from`): each batch rewrites its rows'
//!   values where needed; values already right are left alone.
//! - **Offline** (`--offline`): `ALTER TABLE … TYPE bytea` (plaintext bytes),
//!   then the in-place walk.
//!
//! # Guarantees
//!
//! - Idempotent: a value that is already ciphertext under the right name and
//!   key is never touched, so nothing is ever encrypted twice ([`value`]).
//! - Resumable: the checkpoint is written in each batch's transaction
//!   ([`checkpoint`]); after a crash, Ctrl-C or `kill -9`, re-running the same
//!   command continues after the last committed batch.
//! - Fail closed: no walk key (primary key or unique NOT NULL key), no
//!   keyring, a column the rules do not encrypt, or values that cannot be
//!   converted: the run refuses (or refuses to swap) and says why, with
//!   counts, never values.
//!
//! The proxy's view of a column in flight is in [`overlay`] (a hook for the
//! session layer), and `pgveil check --upstream`'s report in [`status`].

pub mod args;
pub mod batch;
pub mod checkpoint;
pub mod overlay;
pub mod plan;
pub mod progress;
pub mod status;
pub mod swap;
pub mod value;

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;
use tokio_postgres::Client;

use crate::crypto::{ColumnCipher, Keyring};
use crate::rules::{load_dir, render_report, RuleSet};
use batch::{Counts, Statements};
use checkpoint::Phase;
use plan::{Kind, Plan, Request};
use progress::{Progress, Throttle};
use value::Converter;

#[derive(Debug, Error)]
pub enum MigrateError {
    #[error("invalid rules:\n{0}")]
    Rules(String),
    #[error("{0}")]
    Usage(String),
    #[error("keyring: {0}")]
    Keyring(#[from] crate::crypto::KeyringError),
    #[error("no keyring: pass --keyring FILE (made by `pgveil keygen`) or set PGVEIL_KEYRING; nothing was changed")]
    NoKeyring,
    #[error("crypto: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("upstream: {0}")]
    Connect(String),
    #[error("database: {}", db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("{0} has no primary key and no unique index on NOT NULL columns; pgveil encrypt needs one to walk the table in batches (add one, e.g. ALTER TABLE … ADD PRIMARY KEY); nothing was changed")]
    NoKey(String),
    #[error(
        "{0} is part of the table's walk key; a key column cannot be encrypted by pgveil encrypt"
    )]
    KeyEncrypted(String),
    #[error("a conversion of {table} ({kind} of {columns}) is in flight; re-run that command to finish it first")]
    InFlight {
        table: String,
        kind: String,
        columns: String,
    },
    #[error("another pgveil encrypt is running on {0}")]
    Busy(String),
    #[error("the swap of {0} could not get its lock; long transactions hold it. The shadow columns stay in sync: re-run later")]
    LockTimeout(String),
    #[error("{count} values of {table} are not valid values of their rule's type and were not converted; the swap did not happen. Find them with: SELECT … WHERE pgveil_enc_<column> IS NULL AND <column> IS NOT NULL")]
    Unconvertible { table: String, count: u64 },
    #[error("interrupted; the last batch was rolled back. Re-run the same command to continue")]
    Interrupted,
}

/// SQLSTATE and message, without DETAIL (which can echo row values).
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} (SQLSTATE {})", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

/// Everything `pgveil encrypt` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub upstream: String,
    pub rules_dir: PathBuf,
    pub keyring: Option<PathBuf>,
    pub request: Request,
    pub batch_size: usize,
    pub max_rate: Option<f64>,
    pub dry_run: bool,
    /// Fill and keep the shadow columns in sync, but leave the swap to a
    /// later run (so it can be timed with the proxy's rules change).
    pub no_swap: bool,
    /// Add the shadow columns and the trigger, and stop before the walk: the
    /// shadows stay empty (nothing to serve wrongly) while the proxies move
    /// to the final rules, under which they serve the columns as plaintext
    /// at rest with the shadows denied (`snapshot::overlay`).
    pub install_only: bool,
}

/// What a run did, for the closing summary (counts only).
#[derive(Debug, Default)]
pub struct Summary {
    pub table: String,
    pub text: String,
    pub counts: Counts,
    /// Values that could not be converted: the run's exit status is 1.
    pub incomplete: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Session settings for reading values as the proxy canonicalises them and
/// for names that no `search_path` can redirect.
const SESSION_SETUP: &str = "SET search_path = pg_catalog; SET DateStyle = 'ISO, MDY'; \
     SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; \
     SET statement_timeout = 0; SET application_name = 'pgveil encrypt'";

/// Runs `pgveil encrypt`; Ctrl-C rolls back the batch in progress.
pub async fn run(opts: &Options) -> Result<Summary, MigrateError> {
    tokio::select! {
        r = run_inner(opts) => r,
        _ = tokio::signal::ctrl_c() => Err(MigrateError::Interrupted),
    }
}

fn load_keyring(opts: &Options) -> Result<Keyring, MigrateError> {
    match &opts.keyring {
        Some(p) => Ok(Keyring::load_file(p)?),
        None => Keyring::from_env()?.ok_or(MigrateError::NoKeyring),
    }
}

async fn run_inner(opts: &Options) -> Result<Summary, MigrateError> {
    let rules: RuleSet =
        load_dir(&opts.rules_dir).map_err(|d| MigrateError::Rules(render_report(&d)))?;
    let keyring = load_keyring(opts)?;
    let mut client = crate::cli::connect(&opts.upstream)
        .await
        .map_err(|e| MigrateError::Connect(e.to_string()))?;
    client.batch_execute(SESSION_SETUP).await?;
    let table = plan::parse_table(&opts.request.table)?;
    let state = checkpoint::load(&client, &table)
        .await?
        .filter(|s| s.phase != Phase::Done);
    let shadows = state
        .as_ref()
        .map(|s| (s.columns.as_slice(), s.shadows.as_slice()));
    let plan = plan::build(&client, &rules, &opts.request, shadows).await?;
    if let Some(s) = &state {
        checkpoint::check_resumable(s, &plan)?;
    }
    if opts.dry_run {
        return dry_run(&client, &plan, &keyring, state.as_ref()).await;
    }
    if opts.install_only && plan.shadowed().next().is_none() {
        return Err(MigrateError::Usage(format!(
            "--install-only: no column of {} takes the online path (they are bytea already, \
             or --offline); nothing was changed",
            plan.table
        )));
    }
    checkpoint::lock(&client, &plan).await?;
    checkpoint::ensure_schema(&client).await?;
    let ciphers = ciphers(&keyring, &plan)?;
    let conv: Vec<Converter<'_>> = plan
        .columns
        .iter()
        .zip(&ciphers)
        .map(|(c, (cur, old))| Converter {
            ty: c.rule.ty,
            cipher: cur,
            old: old.as_ref(),
            rekey: plan.kind == Kind::Rekey,
        })
        .collect();
    execute(&mut client, &plan, &conv, state, opts).await
}

type CipherPair = (ColumnCipher, Option<ColumnCipher>);

fn ciphers(keyring: &Keyring, plan: &Plan) -> Result<Vec<CipherPair>, MigrateError> {
    plan.columns
        .iter()
        .map(|c| {
            let mode = c.rule.encrypt.ok_or_else(|| {
                MigrateError::Usage(format!("{} is not encrypted", c.rule.qualified()))
            })?;
            let cur = ColumnCipher::new(keyring, &c.rule.table, &c.rule.name, mode)?;
            let old = match &c.old_name {
                Some((t, n)) => Some(ColumnCipher::new(keyring, t, n, mode)?),
                None => None,
            };
            Ok((cur, old))
        })
        .collect()
}

/// Install (fresh run) or resume, walk, then swap or finish.
async fn execute(
    client: &mut Client,
    plan: &Plan,
    conv: &[Converter<'_>],
    state: Option<checkpoint::State>,
    opts: &Options,
) -> Result<Summary, MigrateError> {
    let shadowed = plan.shadowed().next().is_some();
    let (start, phase, resumed) = match &state {
        Some(s) => (s.last_key.clone(), s.phase, s.rows_done.max(0) as u64),
        None => {
            if shadowed {
                swap::install(client, plan).await?;
            } else if plan.offline && plan.columns.iter().any(|c| !c.in_place) {
                swap::offline_alter(client, plan).await?;
            } else {
                checkpoint::start(&*client, plan).await?;
            }
            (None, Phase::Backfill, 0)
        }
    };
    if opts.install_only {
        return Ok(installed(plan, state.is_some()));
    }
    // After an offline ALTER the columns are bytea: plan again for the walk.
    let replanned;
    let plan = if state.is_none() && plan.offline && !shadowed {
        replanned = Plan {
            columns: plan
                .columns
                .iter()
                .cloned()
                .map(|mut c| {
                    c.in_place = true;
                    c
                })
                .collect(),
            ..plan.clone()
        };
        &replanned
    } else {
        plan
    };
    let st = Statements::prepare(client, plan, opts.batch_size.max(1)).await?;
    let mut progress = Progress::new(&plan.table.to_string(), plan.rows_total as u64, resumed);
    let mut throttle = Throttle::new(opts.max_rate);
    let mut counts = Counts::default();
    if phase == Phase::Backfill {
        counts = batch::walk(client, plan, &st, conv, start, &mut progress, &mut throttle).await?;
    }
    progress.finish();
    let mut swapped = false;
    if shadowed {
        checkpoint::set_phase(&*client, plan, Phase::Swap).await?;
        counts.add(swap::catch_up(client, plan, &st, conv).await?);
        if !opts.no_swap {
            counts.add(swap::swap(client, plan, &st, conv).await?);
            swapped = true;
        }
    } else {
        checkpoint::set_phase(&*client, plan, Phase::Done).await?;
        swap::add_checks(client, plan).await?;
    }
    Ok(summary(
        plan,
        counts,
        &progress,
        swapped,
        opts.no_swap && shadowed,
    ))
}

/// `--install-only`: what exists now and what comes next.
fn installed(plan: &Plan, already: bool) -> Summary {
    let cols: Vec<&str> = plan.shadowed().map(|(_, s)| s).collect();
    let what = if already {
        "already installed (a conversion is in flight)"
    } else {
        "installed, empty"
    };
    Summary {
        table: plan.table.to_string(),
        text: format!(
            "pgveil encrypt {}: shadow columns {} and trigger {what}; deploy the final rules \
             to every pgveil instance, then run the same command without --install-only\n",
            plan.table,
            cols.join(", ")
        ),
        ..Default::default()
    }
}

fn summary(plan: &Plan, c: Counts, p: &Progress, swapped: bool, held: bool) -> Summary {
    use fmt::Write as _;
    let secs = p.elapsed().as_secs_f64();
    let mut text = format!(
        "pgveil encrypt ({}) {}: {} rows walked in {secs:.1} s ({:.0} rows/s); values: {} written, \
         {} already right, {} NULL",
        plan.kind.as_str(),
        plan.table,
        c.rows,
        p.rate(),
        c.written,
        c.kept,
        c.nulls
    );
    if c.undecryptable > 0 || c.invalid > 0 {
        let _ = write!(
            text,
            "; NOT converted: {} that decrypt under none of the column's keys, {} not valid for the rule's type",
            c.undecryptable, c.invalid
        );
    }
    let cols: Vec<&str> = plan.shadowed().map(|(c, _)| c.rule.name.as_str()).collect();
    if swapped {
        let _ = write!(
            text,
            "; swapped in (now bytea, ciphertext only): {}",
            cols.join(", ")
        );
    } else if held {
        let _ = write!(
            text,
            "; shadow columns filled and kept in sync; swap with the same command without --no-swap"
        );
    }
    text.push('\n');
    Summary {
        table: plan.table.to_string(),
        text,
        counts: c,
        incomplete: c.undecryptable > 0 || c.invalid > 0,
    }
}

/// `--dry-run`: what would change and how many values, from counts in SQL
/// (header bytes only); writes nothing, not even pgveil's schema.
async fn dry_run(
    client: &Client,
    plan: &Plan,
    keyring: &Keyring,
    state: Option<&checkpoint::State>,
) -> Result<Summary, MigrateError> {
    use fmt::Write as _;
    let key: Vec<&str> = plan.key.iter().map(|k| k.name.as_str()).collect();
    let mut text = format!(
        "dry run: pgveil encrypt ({}) {}: {} rows, walked by ({})",
        plan.kind.as_str(),
        plan.table,
        plan.rows_total,
        key.join(", ")
    );
    if let Some(s) = state {
        let _ = write!(text, "; resuming a conversion at {} rows", s.rows_done);
    }
    text.push('\n');
    for c in &plan.columns {
        let n = would_change(client, plan, c, keyring.active_id(), state.is_some()).await?;
        let path = match (&c.shadow, c.in_place) {
            (_, true) => "in place".to_string(),
            (Some(s), _) => format!(
                "{} -> bytea online (shadow column {s}, then swap)",
                c.source_type
            ),
            (None, _) => format!(
                "{} -> bytea offline (ALTER TABLE … TYPE bytea)",
                c.source_type
            ),
        };
        let _ = writeln!(
            text,
            "  {}: {path}: {n} values would be rewritten",
            c.rule.name
        );
    }
    text.push_str("nothing was changed\n");
    Ok(Summary {
        table: plan.table.to_string(),
        text,
        ..Default::default()
    })
}

async fn would_change(
    client: &Client,
    plan: &Plan,
    c: &plan::ColumnPlan,
    active: u32,
    resuming: bool,
) -> Result<i64, MigrateError> {
    let name = plan::quote_ident(&c.rule.name);
    let k = status::key_id_sql(&c.rule.name);
    let filter = match (c.in_place, plan.kind) {
        (false, _) => format!("{name} IS NOT NULL"),
        (true, Kind::Encrypt) => format!("{name} IS NOT NULL AND ({k}) IS NULL"),
        (true, Kind::Rekey) => format!("({k}) IS DISTINCT FROM {active} AND ({k}) IS NOT NULL"),
        (true, Kind::Rename) => format!("({k}) IS NOT NULL"),
    };
    let filter = match &c.shadow {
        Some(s) if !c.in_place && resuming => {
            format!("{filter} AND {} IS NULL", plan::quote_ident(s))
        }
        _ => filter,
    };
    let sql = format!(
        "SELECT count(*) FROM {} WHERE {filter}",
        plan.qualified_table()
    );
    Ok(client.query_one(&sql, &[]).await?.get(0))
}

//! `pgveil install`: creates, in the upstream database, the objects pgveil
//! needs for data subjects, in its own schema `pgveil` (which `pgveil
//! encrypt` may already have created).
//!
//! - `pgveil.subject_keys`: one wrapped data key per subject (the key itself
//!   never reaches the database; it is wrapped under a keyring key).
//! - `pgveil.erasures`: which subjects were erased, by token, never by id.
//!
//! Idempotent by construction: the installer first reads what exists, then
//! creates only what is missing, inside one transaction under an advisory
//! lock, so two installs at once cannot race and a re-run changes nothing
//! (and says so). PUBLIC gets no privilege on either table: only the role
//! pgveil connects as (the owner) may read wrapped keys or the erasure list.

use thiserror::Error;
use tokio_postgres::{Client, GenericClient};

use crate::crypto::KeyringError;

#[derive(Debug, Error)]
pub enum InstallError {
    #[error("rules are invalid:\n{0}")]
    Rules(String),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("no keyring: pass --keyring FILE or set PGVEIL_KEYRING")]
    NoKeyring,
    #[error("cannot connect to the upstream: {0}")]
    Connect(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// One table pgveil owns, and how to create it.
struct Object {
    name: &'static str,
    ddl: &'static str,
}

const OBJECTS: &[Object] = &[
    Object {
        name: "subject_keys",
        ddl: "CREATE TABLE pgveil.subject_keys ( \
              subject_table text NOT NULL, subject_id text NOT NULL, \
              key_id text NOT NULL, wrapped bytea NOT NULL, \
              created timestamptz NOT NULL DEFAULT pg_catalog.now(), \
              PRIMARY KEY (subject_table, subject_id))",
    },
    Object {
        name: "erasures",
        ddl: "CREATE TABLE pgveil.erasures ( \
              subject_table text NOT NULL, subject_token bytea NOT NULL, \
              erased_at timestamptz NOT NULL DEFAULT pg_catalog.now(), \
              PRIMARY KEY (subject_table, subject_token))",
    },
];

/// Something `install` would change; what `check --upstream` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Schema,
    Table(&'static str),
    /// The table exists but PUBLIC holds privileges on it.
    PublicAccess(&'static str),
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Schema => f.write_str("schema pgveil does not exist"),
            Missing::Table(t) => write!(f, "table pgveil.{t} does not exist"),
            Missing::PublicAccess(t) => write!(f, "PUBLIC holds privileges on pgveil.{t}"),
        }
    }
}

/// Fully qualified, so the session's search_path cannot steer it.
const STATE_QUERY: &str = "SELECT c.relname::text, \
     EXISTS (SELECT 1 FROM pg_catalog.aclexplode(c.relacl) a WHERE a.grantee = 0) \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = 'pgveil' AND c.relkind IN ('r', 'p')";

/// What is missing from the database, in creation order.
pub async fn missing<C: GenericClient>(client: &C) -> Result<Vec<Missing>, tokio_postgres::Error> {
    let has_schema = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'pgveil'",
            &[],
        )
        .await?
        .is_some();
    let mut out = Vec::new();
    if !has_schema {
        out.push(Missing::Schema);
    }
    let rows = client.query(STATE_QUERY, &[]).await?;
    for o in OBJECTS {
        match rows.iter().find(|r| r.get::<_, String>(0) == o.name) {
            None => out.push(Missing::Table(o.name)),
            Some(r) if r.get::<_, bool>(1) => out.push(Missing::PublicAccess(o.name)),
            Some(_) => {}
        }
    }
    Ok(out)
}

/// Creates what is missing; returns what was done (empty: nothing to do).
pub async fn install(client: &mut Client) -> Result<Vec<Missing>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // A fixed key: 'pgveil install' as text hashed by the server.
    tx.execute(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgveil install'))",
        &[],
    )
    .await?;
    let todo = missing(&tx).await?;
    for m in &todo {
        let sql = match m {
            Missing::Schema => "CREATE SCHEMA IF NOT EXISTS pgveil".to_string(),
            Missing::Table(t) => {
                let ddl = OBJECTS.iter().find(|o| o.name == *t).map_or("", |o| o.ddl);
                format!("{ddl}; REVOKE ALL ON pgveil.{t} FROM PUBLIC")
            }
            Missing::PublicAccess(t) => format!("REVOKE ALL ON pgveil.{t} FROM PUBLIC"),
        };
        tx.batch_execute(&sql).await?;
    }
    tx.commit().await?;
    Ok(todo)
}

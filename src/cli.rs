//! Command-line helpers that talk to a database directly (not through the
//! proxy): the live half of `pgveil check`, and `pgveil explain`.

use std::path::Path;

use thiserror::Error;
use tokio_postgres::NoTls;

use crate::crypto::{looks_like_ciphertext, CryptoSnapshot, Keyring};
use crate::rules::{
    check_against_schema, summarize_samples, Diagnostic, RuleSet, SampleFinding, SampleOutcome,
};
use crate::schema::{catalog_query, from_catalog_rows, SchemaSnapshot, SEARCH_PATH_QUERY};

#[derive(Debug, Error)]
pub enum CliError {
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("keyring: {0}")]
    Keyring(#[from] crate::crypto::KeyringError),
    #[error("crypto: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("{0}")]
    Policy(String),
}

/// How many stored values per encrypted column `check` samples.
const SAMPLE: i64 = 200;

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Connects with the usual PG environment variables (PGUSER, PGPASSWORD,
/// PGDATABASE); the URL gives only host and port.
pub(crate) async fn connect(url: &str) -> Result<tokio_postgres::Client, CliError> {
    let up = crate::config::Upstream::parse(url).map_err(CliError::Upstream)?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&up.host).port(up.port);
    let user = std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into());
    cfg.user(&user);
    if let Ok(p) = std::env::var("PGPASSWORD") {
        cfg.password(p);
    }
    cfg.dbname(std::env::var("PGDATABASE").unwrap_or(user));
    let (client, conn) = cfg.connect(NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn load_schema(
    client: &tokio_postgres::Client,
    rules: &RuleSet,
) -> Result<SchemaSnapshot, CliError> {
    let sp: String = client.query_one(SEARCH_PATH_QUERY, &[]).await?.get(0);
    let rows = client.simple_query(&catalog_query(rules.tables())).await?;
    let text_rows: Vec<Vec<Option<String>>> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect();
    Ok(from_catalog_rows(&sp, &text_rows))
}

/// Checks rules against a live database: existence and types from the
/// catalog, then a sample of each encrypted column. Only counts are ever
/// reported, never a value.
pub async fn check_live(
    rules: &RuleSet,
    url: &str,
    keyring: Option<&Path>,
) -> Result<Vec<Diagnostic>, CliError> {
    let client = connect(url).await?;
    let schema = load_schema(&client, rules).await?;
    let mut diags = check_against_schema(rules, &schema);
    if !diags.is_empty() {
        return Ok(diags);
    }
    let keyring = match keyring {
        Some(p) => Some(Keyring::load_file(p)?),
        None => Keyring::from_env()?,
    };
    let crypto = keyring
        .as_ref()
        .map(|k| CryptoSnapshot::new(k, rules))
        .transpose()?;
    let mut findings = Vec::new();
    for c in rules.columns().iter().filter(|c| c.encrypt.is_some()) {
        let sql = format!(
            "SELECT {col} FROM {s}.{t} WHERE {col} IS NOT NULL LIMIT {SAMPLE}",
            col = quote_ident(&c.name),
            s = quote_ident(&c.table.schema),
            t = quote_ident(&c.table.name)
        );
        let mut f = SampleFinding::new(c.qualified());
        for row in client.query(&sql, &[]).await? {
            let v: Vec<u8> = row.try_get(0).unwrap_or_default();
            let outcome = if !looks_like_ciphertext(&v) {
                SampleOutcome::NotCiphertext
            } else {
                match crypto.as_ref().and_then(|cs| cs.cipher(&c.table, &c.name)) {
                    Some(cipher) if cipher.decrypt(&v).is_err() => SampleOutcome::Undecryptable,
                    _ => SampleOutcome::Decrypted,
                }
            };
            f.record(outcome);
        }
        findings.push(f);
    }
    diags.extend(summarize_samples(rules, &findings));
    Ok(diags)
}

/// `pgveil explain`: the decision the proxy would take for `role`, from the
/// rules alone or (with `url`) with the live schema and role memberships.
pub async fn explain(
    rules: RuleSet,
    role: &str,
    sql: &str,
    url: Option<&str>,
    keyring: Option<&Path>,
) -> Result<String, CliError> {
    let mut roles = vec![role.to_string()];
    let mut schema = None;
    if let Some(url) = url {
        let client = connect(url).await?;
        schema = Some(load_schema(&client, &rules).await?);
        let rows = client
            .query(
                "SELECT r.rolname::text FROM pg_catalog.pg_roles r \
                 WHERE pg_catalog.pg_has_role($1::text::name, r.oid, 'MEMBER')",
                &[&role],
            )
            .await?;
        let members: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        if !members.is_empty() {
            roles = members;
        }
    }
    // Ciphertexts are shown as placeholders, so a throwaway keyring serves
    // when none is given.
    let ring = match keyring {
        Some(p) => Keyring::load_file(p)?,
        None => Keyring::generate()?,
    };
    let policy = crate::policy::Policy::build(rules, Some(&ring))
        .map_err(|e| CliError::Policy(e.to_string()))?;
    let crypto = policy.crypto.as_ref();
    let hash_key_hex = |r: &crate::rules::ColumnRule| {
        crypto
            .and_then(|c| c.hash_key(&r.table, &r.name))
            .map(|k| hex::encode(k.material()))
    };
    let ctx = crate::sql::Context {
        rules: &policy.rules,
        schema: schema.as_ref(),
        roles: &roles,
        encryptor: &policy,
        canonicalize: &crate::policy::canonicalize,
        sql_prepared: None,
        restricted: crate::sql::is_restricted(&policy.rules, &roles),
        hash_key_hex: &hash_key_hex,
    };
    let mut report = crate::sql::explain(sql, &ctx);
    if schema.is_none() {
        report.push_str(&offline_access(&policy.rules, &roles, sql));
    }
    Ok(report)
}

/// Offline, some rewrites need the live column list and are refused; the
/// DBA still gets the rules' verdict for every tagged column of each table
/// the statement names.
fn offline_access(rules: &RuleSet, roles: &[String], sql: &str) -> String {
    use std::fmt::Write as _;
    let words: Vec<String> = crate::sql::fingerprint(sql)
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map(str::to_lowercase)
        .collect();
    let mut out = String::new();
    let mut tables: Vec<&crate::rules::TableName> = rules.tables().collect();
    tables.sort();
    for t in tables.into_iter().filter(|t| words.contains(&t.name)) {
        let _ = writeln!(
            out,
            "rules for {} on {t} (offline; --upstream adds the live schema):",
            roles.join(", ")
        );
        for c in rules.table_columns(t) {
            let enc = match c.encrypt {
                Some(m) => format!("encrypted {m:?}").to_lowercase(),
                None => "plaintext at rest".into(),
            };
            let _ = writeln!(
                out,
                "  {:<14} {:<22} {:<24} rule {}:{}",
                c.name,
                c.access_for(roles.iter().map(String::as_str)).to_string(),
                enc,
                c.source.file,
                c.source.line
            );
        }
    }
    out
}

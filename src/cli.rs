//! Command-line helpers that talk to a database directly (not through the
//! proxy): the live half of `pgveil check`, and `pgveil explain`.

use std::path::Path;
use std::process::ExitCode;

use thiserror::Error;
use tokio_postgres::NoTls;

use crate::crypto::{looks_like_ciphertext, CryptoSnapshot, Keyring};
use crate::rules::{
    check_against_schema, summarize_samples, Diagnostic, RuleSet, SampleFinding, SampleOutcome,
};
use crate::schema::{catalog_query, from_catalog_rows, SchemaSnapshot, SEARCH_PATH_QUERY};
use crate::subject::install::{InstallError, Missing};

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
    Snapshot(String),
}

/// How many stored values per encrypted column `check` samples.
const SAMPLE: i64 = 200;

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Connects as libpq would (see [`crate::net::libpq`]): the URL, then the
/// PG* environment and the password file, with TLS per `sslmode` (the URL's
/// or `PGSSLMODE`, default `prefer`), verified per `verify-ca`/`verify-full`
/// against `sslrootcert`/`PGSSLROOTCERT`.
pub(crate) async fn connect(url: &str) -> Result<tokio_postgres::Client, CliError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let pgpass = crate::net::libpq::pgpass_path(&env).and_then(|p| read_pgpass(&p));
    let p = crate::net::libpq::resolve(url, &env, pgpass.as_deref()).map_err(CliError::Upstream)?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&p.host)
        .port(p.port)
        .user(&p.user)
        .dbname(&p.dbname);
    if let Some(pw) = &p.password {
        cfg.password(pw);
    }
    use crate::net::SslMode;
    use tokio_postgres::config::SslMode as Pg;
    cfg.ssl_mode(match p.sslmode {
        SslMode::Disable => Pg::Disable,
        SslMode::Allow | SslMode::Prefer => Pg::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
    });
    let tls = crate::net::client_config(p.sslmode, p.sslrootcert.as_deref())
        .map_err(|e| CliError::Upstream(e.to_string()))?;
    let client = match tls {
        None => {
            let (client, conn) = cfg.connect(NoTls).await?;
            tokio::spawn(conn);
            client
        }
        Some(tls) => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
            let (client, conn) = cfg.connect(tls).await?;
            tokio::spawn(conn);
            client
        }
    };
    Ok(client)
}

/// The password file's text, ignored (as libpq does) when others can read it.
fn read_pgpass(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "warning: password file {} has group or world access; permissions should be u=rw (0600) or less",
            path.display()
        );
        return None;
    }
    std::fs::read_to_string(path).ok()
}

async fn load_schema(
    client: &tokio_postgres::Client,
    rules: &RuleSet,
) -> Result<SchemaSnapshot, CliError> {
    let sp: String = client.query_one(SEARCH_PATH_QUERY, &[]).await?.get(0);
    let rows = client
        .simple_query(&catalog_query(rules.catalog_tables()))
        .await?;
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
    // Subjects need pgveil's own tables; without subjects nothing needs them.
    if !rules.subjects().is_empty() {
        for m in crate::subject::install::missing(&client).await? {
            diags.push(
                Diagnostic::new("<database>", 0, format!("{m}; [[subject]] entries need it"))
                    .with_hint("run `pgveil install --upstream URL --rules DIR --keyring FILE`"),
            );
        }
    }
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
    let policy = crate::snapshot::Snapshot::build(rules, Some(&ring))
        .map_err(|e| CliError::Snapshot(e.to_string()))?;
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
        canonicalize: &crate::snapshot::canonicalize,
        sql_prepared: None,
        restricted: crate::policy::is_restricted(&policy.rules, &roles),
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
                crate::policy::access(c, roles).to_string(),
                enc,
                c.source.file,
                c.source.line
            );
        }
    }
    out
}

/// A one-request HTTP GET to pgveil's metrics endpoint, returning the status
/// code. Hand-written so the probe adds no HTTP client to the binary; the
/// endpoint speaks exactly this much HTTP.
pub fn http_probe(addr: &str, path: &str) -> Result<u16, String> {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;
    let mut sa: SocketAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not HOST:PORT"))?;
    if sa.ip().is_unspecified() {
        sa.set_ip(if sa.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let timeout = Duration::from_secs(3);
    let mut s = TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("{sa}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {sa}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{sa}: {e}"))?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).map_err(|e| format!("{sa}: {e}"))?;
    String::from_utf8_lossy(&head[..n])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{sa}: not an HTTP answer"))
}

/// What `pgveil check` looks at.
pub struct CheckRequest<'a> {
    pub rules: Option<&'a Path>,
    pub config: Option<&'a Path>,
    pub upstream: Option<&'a str>,
    pub keyring: Option<&'a Path>,
}

/// One problem `check` found, in a shape CI can consume.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    /// `config`, `rules`, `keyring` or `schema` (found against the live database).
    pub kind: &'static str,
    pub file: String,
    /// 0 when the problem is not tied to a line.
    pub line: usize,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The verdict: findings are the configuration's fault (exit 1); an error
/// means the check itself could not run (exit 2), e.g. no connection.
#[derive(Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tagged_columns: Option<usize>,
    /// The one-line summary `check` prints when all is well.
    #[serde(skip)]
    pub summary: Option<String>,
}

impl CheckReport {
    pub fn exit_code(&self) -> u8 {
        match (&self.error, self.findings.is_empty()) {
            (Some(_), _) => 2,
            (None, false) => 1,
            (None, true) => 0,
        }
    }

    fn rules(&mut self, kind: &'static str, diags: Vec<Diagnostic>) {
        self.findings.extend(diags.into_iter().map(|d| Finding {
            kind,
            file: d.file,
            line: d.line,
            message: d.message,
            hint: d.hint,
        }));
    }

    fn plain(&mut self, kind: &'static str, file: &Path, message: String) {
        self.findings.push(Finding {
            kind,
            file: file.display().to_string(),
            line: 0,
            message,
            hint: None,
        });
    }

    /// Human rendering, the same lines as before for rule diagnostics.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let d = Diagnostic {
                file: f.file.clone(),
                line: f.line,
                message: f.message.clone(),
                hint: f.hint.clone(),
            };
            out.push_str(&d.to_string());
            out.push('\n');
        }
        if !self.findings.is_empty() {
            let n = self.findings.len();
            out.push_str(&format!("{n} error{}\n", if n == 1 { "" } else { "s" }));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("error: {e}\n"));
        }
        out
    }
}

/// Validates a config file (as `serve` would read it, every problem at
/// once), the rules it or `--rules` names, the keyring it or `--keyring`
/// names (permissions and format), and with `--upstream` the rules against
/// the live schema.
pub fn check(req: &CheckRequest<'_>) -> CheckReport {
    let mut report = CheckReport::default();
    let mut rules_dir = req.rules.map(Path::to_path_buf);
    let mut keyring = req.keyring.map(Path::to_path_buf);
    if let Some(path) = req.config {
        match crate::config::FileConfig::load(path) {
            Err(e) => report.plain("config", path, e.to_string()),
            Ok(f) => {
                rules_dir = rules_dir.or_else(|| f.rules.clone());
                keyring = keyring.or_else(|| f.keyring.clone());
                if let Err(crate::config::ConfigError::Invalid(errs)) =
                    crate::config::Config::from_file(f)
                {
                    for e in errs {
                        report.plain("config", path, e);
                    }
                }
            }
        }
    }
    if let Some(k) = keyring.as_deref() {
        if let Err(e) = Keyring::load_file(k) {
            report.plain("keyring", k, e.to_string());
        }
    }
    let rules = match rules_dir.as_deref() {
        // A missing directory named by the config is already a config finding.
        Some(dir) if req.rules.is_none() && !dir.exists() => None,
        Some(dir) => match crate::rules::load_dir(dir) {
            Ok(r) => Some(r),
            Err(diags) => {
                report.rules("rules", diags);
                None
            }
        },
        None => Some(RuleSet::default()),
    };
    // The live check needs valid inputs; its findings would only repeat these.
    let Some(rules) = rules.filter(|_| report.findings.is_empty()) else {
        return report;
    };
    if let Some(url) = req.upstream {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let res = match rt {
            Ok(rt) => rt.block_on(check_live(&rules, url, keyring.as_deref())),
            Err(e) => Err(CliError::Upstream(e.to_string())),
        };
        match res {
            Ok(diags) => report.rules("schema", diags),
            Err(e @ CliError::Keyring(_)) => {
                let k = keyring.as_deref().unwrap_or(Path::new("PGVEIL_KEYRING"));
                report.plain("keyring", k, e.to_string());
            }
            Err(e) => {
                // tokio-postgres says only "error connecting to server"; the
                // cause (refused, TLS, authentication) is in the source chain.
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    let part = s.to_string();
                    if !msg.contains(&part) {
                        msg.push_str(&format!(": {part}"));
                    }
                    src = s.source();
                }
                report.error = Some(msg);
            }
        }
    }
    if report.findings.is_empty() && report.error.is_none() {
        report.rules_version = Some(rules.version.clone());
        report.tagged_columns = Some(rules.columns().len());
        report.summary = Some(crate::rules::render_ok(&rules));
    }
    report
}

/// The `pgveil install` arguments.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The database (postgres://HOST:PORT/DB), directly, not through pgveil.
    #[arg(long, value_name = "URL")]
    pub upstream: String,
    /// Directory of rule files (*.toml); validated before anything is created.
    #[arg(long, value_name = "DIR")]
    pub rules: std::path::PathBuf,
    /// Keyring (or PGVEIL_KEYRING); validated before anything is created.
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<std::path::PathBuf>,
}

async fn install_run(args: &InstallArgs) -> Result<Vec<Missing>, InstallError> {
    crate::rules::load_dir(&args.rules)
        .map_err(|d| InstallError::Rules(crate::rules::render_report(&d)))?;
    match &args.keyring {
        Some(p) => drop(Keyring::load_file(p)?),
        None => drop(Keyring::from_env()?.ok_or(InstallError::NoKeyring)?),
    }
    let mut client = connect(&args.upstream)
        .await
        .map_err(|e| InstallError::Connect(e.to_string()))?;
    Ok(crate::subject::install::install(&mut client).await?)
}

/// `pgveil install`: exit 0 when everything is in place afterwards.
pub fn install_main(args: &InstallArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgveil install: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(install_run(args)) {
        Ok(done) if done.is_empty() => {
            println!("pgveil install: nothing to do; schema pgveil is up to date");
            ExitCode::SUCCESS
        }
        Ok(done) => {
            for m in done {
                let what = match m {
                    Missing::Schema => "created schema pgveil".to_string(),
                    Missing::Table(t) => {
                        format!("created table pgveil.{t} (no privileges for PUBLIC)")
                    }
                    Missing::PublicAccess(t) => format!("revoked PUBLIC privileges on pgveil.{t}"),
                };
                println!("pgveil install: {what}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pgveil install: {e}");
            ExitCode::from(1)
        }
    }
}

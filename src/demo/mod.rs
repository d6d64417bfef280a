//! `pgveil demo`: pgveil's main job on an embedded default, for a newcomer's
//! first five minutes.
//!
//! It starts a throwaway PostgreSQL ([`crate::pgtemp`]), creates the
//! `customers` table and the three roles that `rules/customers.toml` talks
//! about, writes a fresh keyring, and runs the real proxy in-process with those
//! rules and an audit directory. Sample customers are loaded *through* the
//! proxy, so what lands in the database is ciphertext, exactly as in a real
//! deployment. Then it reads one customer directly and through pgveil as each
//! role, and prints the psql commands to explore further.
//!
//! Nothing shown is canned: every cell of the comparison is what the database
//! or the proxy answered just now. Everything lives in temporary directories
//! and is removed on exit (`--keep` keeps the rules, keyring and audit files).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use crate::audit::{AuditError, Filter};
use crate::config::{Config, ConfigError, FileConfig};
use crate::crypto::{Keyring, KeyringError};
use crate::pgtemp::{
    quote_literal, PasswordEncryption, PgTemp, PgTempError, PgTempOptions, SUPERUSER,
};
use crate::server::{Server, ServerError};
use crate::snapshot::{SnapshotError, SnapshotSource, SnapshotStore};

/// The repository's example rules, embedded so the demo works from any
/// directory and from an installed binary.
const RULES: &str = include_str!("../../rules/customers.toml");

/// Database the demo creates.
const DB: &str = "demo";

/// Roles the example rules name, most to least privileged.
const ROLES: [&str; 3] = ["admin", "support", "analyst"];

mod data;
use data::{Customer, COLUMNS, CUSTOMERS, SETUP_SQL};

/// Options of `pgveil demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Port pgveil listens on, on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 6432)]
    pub port: u16,
    /// Stop after SECS seconds instead of waiting for Ctrl-C (0 = until Ctrl-C).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub duration: u64,
    /// Keep the demo's rules, keyring and audit directory after it stops.
    #[arg(long)]
    pub keep: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            port: 6432,
            duration: 0,
            keep: false,
        }
    }
}

#[derive(Debug, Error)]
pub enum DemoError {
    #[error(
        "{0}\nOn Debian/Ubuntu, scripts/install-deps.sh (in the pgveil repository) installs them."
    )]
    PostgresMissing(PgTempError),
    #[error("throwaway PostgreSQL: {0}")]
    Postgres(PgTempError),
    #[error("port {port} on 127.0.0.1 is in use (another pgveil or pgbouncer?); choose one with `pgveil demo --port N`, or 0 for any free port")]
    PortInUse { port: u16 },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("keyring: {0}")]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("rules: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("audit: {0}")]
    Audit(#[from] AuditError),
    #[error("proxy: {0}")]
    Server(ServerError),
    /// A demo query failed; `detail` is the server's message (sample data only).
    #[error("{context}: {detail}")]
    Client { context: String, detail: String },
}

impl From<PgTempError> for DemoError {
    fn from(e: PgTempError) -> Self {
        match e {
            PgTempError::BinariesMissing { .. }
            | PgTempError::ToolMissing { .. }
            | PgTempError::NoPostgresUser => DemoError::PostgresMissing(e),
            other => DemoError::Postgres(other),
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let context = context.into();
    move |source| DemoError::Io { context, source }
}

fn client_err(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> DemoError {
    let context = context.into();
    move |e| DemoError::Client {
        context,
        detail: describe(&e),
    }
}

/// `SQLSTATE message` for server errors, the client library's text otherwise.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Runs the demo until Ctrl-C/SIGTERM (or `opts.duration` seconds), then
/// stops the proxy and PostgreSQL and removes their files.
pub fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("starting the runtime"))?;
    rt.block_on(run_async(opts))
}

async fn run_async(opts: DemoOptions) -> Result<(), DemoError> {
    use tokio::signal::unix::{signal, SignalKind};
    // Registered first, so a Ctrl-C during setup is kept and honoured right
    // after it instead of killing the process before cleanup can run.
    let mut sigint = signal(SignalKind::interrupt()).map_err(io_err("installing SIGINT"))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(io_err("installing SIGTERM"))?;

    check_port(opts.port)?;
    let (pg, passwords) = start_database()?;

    let work = WorkDir::create(opts.keep)?;
    let (rules_dir, keyring_path, audit_dir) = write_files(&work)?;

    let config = Config::from_file(FileConfig {
        listen: Some(format!("127.0.0.1:{}", opts.port)),
        upstream: Some(format!("{}?sslmode=disable", pg.url())),
        // A free port: the demo must not fail because 6438 is taken.
        metrics_listen: Some("127.0.0.1:0".into()),
        rules: Some(rules_dir.clone()),
        keyring: Some(keyring_path.clone()),
        audit_dir: Some(audit_dir.clone()),
        workers: Some(2),
        // Idle psql sessions left open must not hold up Ctrl-C for long.
        shutdown_timeout_secs: Some(3),
        ..FileConfig::default()
    })?;
    let audit_cfg = config.audit.clone();
    let policy = Arc::new(SnapshotStore::new(SnapshotSource {
        rules_dir: Some(rules_dir.clone()),
        keyring_file: Some(keyring_path.clone()),
    })?);
    let audit = match audit_cfg {
        Some(a) => Some(crate::audit::Audit::start(
            a,
            &crate::metrics::metrics().registry,
        )?),
        None => None,
    };
    policy.set_audit(audit.clone());
    let server = Server::bind(config, policy, audit).map_err(|e| match e {
        ServerError::Bind { addr, source }
            if source.kind() == std::io::ErrorKind::AddrInUse && addr.port() == opts.port =>
        {
            DemoError::PortInUse { port: opts.port }
        }
        other => DemoError::Server(other),
    })?;
    let proxy_addr = server
        .local_addr()
        .map_err(io_err("reading the proxy address"))?;
    let metrics_addr = server.metrics_addr();
    let shutdown = server.shutdown_handle();
    let server_thread = std::thread::Builder::new()
        .name("pgveil-demo-server".into())
        .spawn(move || server.run())
        .map_err(io_err("starting the proxy thread"))?;

    let shown = show(&pg, proxy_addr, &passwords).await;
    if shown.is_ok() {
        print_instructions(&pg, proxy_addr, metrics_addr, &passwords, &work, &audit_dir);
        if opts.duration == 0 {
            println!("\nPress Ctrl-C to stop; the database and all demo files are then removed.");
        } else {
            println!("\nStopping in {} s.", opts.duration);
        }
        let limit = async {
            if opts.duration == 0 {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(Duration::from_secs(opts.duration)).await
            }
        };
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
            _ = limit => {}
        }
    }
    println!("\npgveil demo: stopping …");
    shutdown.shutdown();
    let served = server_thread.join();
    drop(pg);
    if opts.keep {
        println!("kept {}", work.path.display());
    }
    drop(work);
    shown?;
    match served {
        Ok(r) => r.map_err(DemoError::Server),
        Err(_) => Err(DemoError::Io {
            context: "the proxy thread".into(),
            source: std::io::Error::other("panicked"),
        }),
    }
}

/// Each demo role with its generated password.
type Passwords = Vec<(&'static str, String)>;

/// A throwaway PostgreSQL with the demo's roles (random passwords), database and table.
fn start_database() -> Result<(PgTemp, Passwords), DemoError> {
    println!("pgveil demo: starting a throwaway PostgreSQL …");
    let pg = PgTemp::start(&PgTempOptions::default())?;
    let passwords: Passwords = ROLES
        .iter()
        .map(|r| {
            (
                *r,
                format!("{r}-{}", hex::encode(rand::random::<[u8; 4]>())),
            )
        })
        .collect();
    for (role, pw) in &passwords {
        pg.create_login_role(role, pw, PasswordEncryption::Scram)?;
    }
    pg.create_database(DB, SUPERUSER)?;
    pg.psql(DB, SETUP_SQL)?;
    Ok((pg, passwords))
}

/// Writes the example rules and a new keyring into the work directory:
/// `(rules dir, keyring file, audit dir)`.
fn write_files(work: &WorkDir) -> Result<(PathBuf, PathBuf, PathBuf), DemoError> {
    let rules_dir = work.path.join("rules");
    let keyring_path = work.path.join("keyring.toml");
    let audit_dir = work.path.join("audit");
    std::fs::create_dir(&rules_dir).map_err(io_err(format!("creating {}", rules_dir.display())))?;
    let rules_file = rules_dir.join("customers.toml");
    std::fs::write(&rules_file, RULES)
        .map_err(io_err(format!("writing {}", rules_file.display())))?;
    let keyring = Keyring::generate()?;
    keyring.write_new_file(&keyring_path)?;
    Ok((rules_dir, keyring_path, audit_dir))
}

/// Fails before the slow part when the port is taken (Server::bind checks
/// again; this is only for a quick, clear answer).
fn check_port(port: u16) -> Result<(), DemoError> {
    if port == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(DemoError::PortInUse { port }),
        Err(e) => Err(DemoError::Io {
            context: format!("binding 127.0.0.1:{port}"),
            source: e,
        }),
    }
}

/// Loads the sample customers through the proxy as `admin`, then prints the
/// same row read directly and through pgveil as each role.
async fn show(
    pg: &PgTemp,
    proxy: SocketAddr,
    passwords: &[(&str, String)],
) -> Result<(), DemoError> {
    let admin_pw = password_of(passwords, "admin");
    let admin = connect("127.0.0.1", proxy.port(), "admin", admin_pw)
        .await
        .map_err(client_err("connecting to pgveil as admin"))?;
    for c in &CUSTOMERS {
        admin
            .simple_query(&insert_sql(c))
            .await
            .map_err(client_err("loading sample customers through pgveil"))?;
    }
    let id: i64 = first_value(
        admin
            .simple_query("SELECT min(id) FROM public.customers")
            .await
            .map_err(client_err("reading back the sample customers"))?,
    )
    .and_then(|v| v.parse().ok())
    .ok_or_else(|| DemoError::Client {
        context: "reading back the sample customers".into(),
        detail: "no rows".into(),
    })?;
    println!(
        "Loaded {} sample customers through pgveil as admin: the encrypted columns were encrypted \
         in flight.\n",
        CUSTOMERS.len()
    );

    let direct = connect(pg.host(), pg.port(), SUPERUSER, pg.superuser_password())
        .await
        .map_err(client_err("connecting to PostgreSQL directly"))?;
    let mut grid: Vec<Vec<String>> = vec![COLUMNS.iter().map(|c| c.to_string()).collect()];
    grid.push(read_cells(&direct, id).await);
    let mut refusal = None;
    for role in ROLES {
        let c = connect(
            "127.0.0.1",
            proxy.port(),
            role,
            password_of(passwords, role),
        )
        .await
        .map_err(client_err(format!("connecting to pgveil as {role}")))?;
        grid.push(read_cells(&c, id).await);
        if role == "analyst" {
            refusal = c
                .simple_query("SELECT * FROM customers")
                .await
                .err()
                .map(|e| match e.as_db_error() {
                    Some(db) => format!("{}\n  (SQLSTATE {})", db.message(), db.code().code()),
                    None => e.to_string(),
                });
        }
    }
    println!("The same customer (id {id}), read four ways:\n");
    let headers = [
        "column",
        "PostgreSQL directly",
        "pgveil as admin",
        "pgveil as support",
        "pgveil as analyst",
    ];
    print!("{}", render_grid(&headers, &grid));
    println!(
        "\n  Directly, PostgreSQL holds only ciphertext (bytea) in the encrypted columns; pgveil \
         decrypts,\n  masks, nulls or refuses them per role (rules: rules/customers.toml)."
    );
    if let Some(r) = refusal {
        println!("\n  analyst> SELECT * FROM customers;\n  ERROR:  {r}");
    }
    Ok(())
}

async fn connect(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(host)
        .port(port)
        .user(user)
        .password(password)
        .dbname(DB)
        .application_name("pgveil-demo")
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = cfg.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn password_of<'a>(passwords: &'a [(&str, String)], role: &str) -> &'a str {
    passwords
        .iter()
        .find(|(r, _)| *r == role)
        .map_or("", |(_, p)| p.as_str())
}

/// One column at a time, so a refused column shows as refused without hiding
/// what the role may see of the others.
async fn read_cells(c: &tokio_postgres::Client, id: i64) -> Vec<String> {
    let mut out = Vec::new();
    for col in COLUMNS {
        let sql = format!("SELECT {col} FROM public.customers WHERE id = {id}");
        out.push(match c.simple_query(&sql).await {
            Ok(msgs) => match first_row_value(&msgs) {
                Some(Some(v)) => shorten(v, 26),
                Some(None) => "NULL".into(),
                None => "(no row)".into(),
            },
            Err(e) => match e.as_db_error() {
                Some(db) if db.code().code() == crate::error::sqlstate::INSUFFICIENT_PRIVILEGE => {
                    format!("refused ({})", db.code().code())
                }
                Some(db) => format!("error ({})", db.code().code()),
                None => "error".into(),
            },
        });
    }
    out
}

/// `Some(value)` of the first column of the first row; `None` without rows.
fn first_row_value(msgs: &[SimpleQueryMessage]) -> Option<Option<&str>> {
    msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r.get(0)),
        _ => None,
    })
}

fn first_value(msgs: Vec<SimpleQueryMessage>) -> Option<String> {
    first_row_value(&msgs).flatten().map(str::to_string)
}

/// The INSERT for one sample customer, with literals quoted for SQL.
fn insert_sql(c: &Customer) -> String {
    let lit = |v: Option<&str>| v.map_or_else(|| "NULL".to_string(), quote_literal);
    format!(
        "INSERT INTO customers (full_name, email, ssn, phone, birth_date, card_number) \
         VALUES ({}, {}, {}, {}, {}, {})",
        lit(Some(c.0)),
        lit(Some(c.1)),
        lit(Some(c.2)),
        lit(c.3),
        lit(Some(c.4)),
        lit(c.5)
    )
}

/// Cuts long cells (ciphertext, pseudonyms) to `max` characters with `…`.
fn shorten(v: &str, max: usize) -> String {
    if v.chars().count() <= max {
        v.to_string()
    } else {
        let mut s: String = v.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// `grid[0]` holds the row labels; `grid[1..]` one column of cells each.
fn render_grid(headers: &[&str], grid: &[Vec<String>]) -> String {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            grid.get(i)
                .map_or(0, |col| {
                    col.iter().map(|c| c.chars().count()).max().unwrap_or(0)
                })
                .max(h.chars().count())
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::from(" ");
        for (c, w) in cells.iter().zip(&widths) {
            let pad = w.saturating_sub(c.chars().count());
            let _ = write!(l, " {c}{}  ", " ".repeat(pad));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(headers.to_vec());
    line(rules.iter().map(String::as_str).collect());
    let rows = grid.first().map_or(0, Vec::len);
    for r in 0..rows {
        line(
            grid.iter()
                .map(|col| col.get(r).map_or("", String::as_str))
                .collect(),
        );
    }
    out
}

fn print_instructions(
    pg: &PgTemp,
    proxy: SocketAddr,
    metrics: Option<SocketAddr>,
    passwords: &[(&str, String)],
    work: &WorkDir,
    audit_dir: &Path,
) {
    let psql = if on_path("psql") {
        "psql".to_string()
    } else {
        pg.bin()
            .tool("psql")
            .map_or_else(|_| "psql".to_string(), |p| p.display().to_string())
    };
    let exe = pgveil_command();
    println!("\nRunning now:");
    println!(
        "  PostgreSQL {}   127.0.0.1:{}   data in {}",
        pg.bin().dir().display(),
        pg.port(),
        pg.data_dir().display()
    );
    println!(
        "  pgveil         {proxy}   (upstream {}, rules {}, keyring {})",
        pg.url(),
        work.path.join("rules").display(),
        work.path.join("keyring.toml").display()
    );
    if let Some(m) = metrics {
        println!("  metrics        http://{m}/metrics   (/healthz, /readyz)");
    }
    println!("  audit stream   {}", audit_dir.display());

    println!("\nConnect through pgveil as each role (database `{DB}`, table `customers`):");
    for (role, pw) in passwords {
        println!(
            "  PGPASSWORD={} {psql} \"host=127.0.0.1 port={} dbname={DB} user={role}\"",
            shell_quote(pw),
            proxy.port()
        );
    }
    println!(
        "Connect directly to PostgreSQL, bypassing pgveil (superuser; shows the ciphertext):\n  \
         PGPASSWORD={} {psql} \"host=127.0.0.1 port={} dbname={DB} user={SUPERUSER}\"",
        shell_quote(pg.superuser_password()),
        pg.port()
    );
    println!("\nThings to try:");
    println!("  SELECT full_name, email, ssn, phone, birth_date FROM customers LIMIT 5;");
    println!("  SELECT full_name FROM customers WHERE email = 'alice@example.com';   -- search on a deterministic column");
    println!("  SELECT id, email, phone FROM customers LIMIT 5;                     -- as analyst: pseudonyms and NULLs");
    println!("  SELECT * FROM customers;                                            -- as analyst: refused (ssn, card_number)");
    println!("  SELECT ssn FROM customers ORDER BY ssn;                             -- refused: not computable on ciphertext");
    println!("\nWho saw what (the audit stream, hash-chained):");
    let dir = shell_quote(&audit_dir.display().to_string());
    println!("  {exe} audit search {dir} --format table");
    println!("  {exe} audit search {dir} --role analyst --outcome 42501");
    println!("  {exe} audit verify {dir}");
    if let Ok(n) = crate::audit::search(audit_dir, &Filter::default()).map(Iterator::count) {
        println!("  ({n} records so far)");
    }
}

/// How the user runs this binary: its path when it is `pgveil`, else `pgveil`.
/// (Linux appends " (deleted)" when the file was replaced while running, as
/// a rebuild during `cargo run` does; the path still names the new binary.)
fn pgveil_command() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "pgveil".to_string();
    };
    let shown = exe.display().to_string();
    let shown = shown.strip_suffix(" (deleted)").unwrap_or(&shown);
    if Path::new(shown).file_name().is_some_and(|n| n == "pgveil") {
        shell_quote(shown)
    } else {
        "pgveil".to_string()
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p)
            .any(|d| std::fs::metadata(d.join(tool)).is_ok_and(|m| m.is_file()))
    })
}

/// Quotes for a POSIX shell unless the string is plainly safe.
fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A private temporary directory, removed on drop unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create(keep: bool) -> Result<Self, DemoError> {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!(
            "pgveil-demo-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 4]>())
        ));
        std::fs::create_dir(&path).map_err(io_err(format!("creating {}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("chmod {}", path.display())))?;
        Ok(WorkDir { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse_str;

    /// The demo table and the embedded rules must agree: every tagged column
    /// exists, bytea exactly when encrypted, for the roles the demo creates.
    #[test]
    fn table_matches_embedded_rules() {
        let rules = parse_str("customers.toml", RULES).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(rules.len(), COLUMNS.len());
        for r in &rules {
            assert_eq!(r.table.to_string(), "public.customers");
            let ty = if r.encrypt.is_some() { "bytea" } else { "text" };
            let decl = format!("{:<12}{ty}", r.name);
            assert!(SETUP_SQL.contains(&decl), "{decl} missing from SETUP_SQL");
            assert!(COLUMNS.contains(&r.name.as_str()), "{}", r.name);
            // analyst is deliberately unlisted on ssn (default deny).
            for role in ["admin", "support"] {
                assert!(r.access.contains_key(role), "{role} on {}", r.name);
            }
        }
    }

    #[test]
    fn insert_quotes_literals_and_nulls() {
        let obrien = CUSTOMERS
            .iter()
            .find(|c| c.0.contains('\''))
            .expect("a name with a quote");
        let sql = insert_sql(obrien);
        assert!(sql.contains("'Seán O''Brien'"), "{sql}");
        let liam = CUSTOMERS
            .iter()
            .find(|c| c.3.is_none())
            .expect("a customer without phone");
        let sql = insert_sql(liam);
        assert!(sql.contains("', NULL, '"), "{sql}");
        assert!(!sql.contains("'NULL'"), "{sql}");
    }

    #[test]
    fn sample_data_is_well_formed() {
        let mut emails: Vec<&str> = CUSTOMERS.iter().map(|c| c.1).collect();
        emails.sort_unstable();
        emails.dedup();
        assert_eq!(
            emails.len(),
            CUSTOMERS.len(),
            "emails must be unique (lookup by email)"
        );
        for c in &CUSTOMERS {
            let ssn: Vec<usize> = c.2.split('-').map(str::len).collect();
            assert_eq!(ssn, [3, 2, 4], "{}", c.2);
            assert!(c.1.ends_with(".com") || c.1.ends_with(".org") || c.1.ends_with(".net"));
            assert!(
                c.1.split('@')
                    .nth(1)
                    .is_some_and(|d| d.starts_with("example.")),
                "{}",
                c.1
            );
            assert!(
                crate::values::canonical_text(crate::rules::LogicalType::Date, c.4.as_bytes())
                    .is_ok(),
                "{}",
                c.4
            );
        }
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("admin-1a2b"), "admin-1a2b");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm)"), "'$(rm)'");
    }

    #[test]
    fn cells_are_shortened_by_characters() {
        assert_eq!(shorten("short", 26), "short");
        assert_eq!(shorten("\\x0100000001abcdef", 8), "\\x01000…");
        assert_eq!(shorten("ééééé", 3), "éé…");
    }

    #[test]
    fn grid_aligns_columns() {
        let grid = vec![
            vec!["email".to_string(), "ssn".to_string()],
            vec!["a****@example.com".to_string(), "NULL".to_string()],
        ];
        let out = render_grid(&["column", "as support"], &grid);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        let col = lines[0].find("as support").expect("header");
        assert_eq!(lines[2].find("a****"), Some(col), "{out}");
        assert_eq!(lines[3].find("NULL"), Some(col), "{out}");
    }

    /// deploy/pgveil.toml documents every key: it must parse with the real
    /// (deny_unknown_fields) format, with its commented-out keys too.
    #[test]
    fn example_config_parses_with_every_key() {
        let text = include_str!("../../deploy/pgveil.toml");
        let f: FileConfig = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(f.listen.is_some() && f.audit.durability.is_some());
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(
            uncommented,
            text.replace('\r', ""),
            "expected commented keys"
        );
        let f: FileConfig = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}"));
        assert!(f.workers.is_some() && f.tls.cert.is_some() && f.audit.chain_key_file.is_some());
    }

    /// End to end against real PostgreSQL: what `scripts/demo.sh` runs.
    #[test]
    fn demo_runs_end_to_end() {
        run(DemoOptions {
            port: 0,
            duration: 1,
            keep: false,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

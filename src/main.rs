//! The `pgveil` command line.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use pgveil::config::{Config, FileConfig, LogFormat};
use pgveil::server::Server;

#[derive(Parser)]
#[command(
    name = "pgveil",
    version,
    about = "Transparent encrypting, masking and auditing proxy for PostgreSQL",
    long_about = "pgveil sits between applications and PostgreSQL, speaking the wire protocol on both sides. \
It encrypts the columns a DBA tags in rule files on the way in, decrypts, masks or denies them per database \
role on the way out, and records every access in a tamper-evident audit stream."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Configuration file (TOML); see deploy/pgveil.toml. Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address clients connect to [default: 127.0.0.1:6432].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The real database: postgres://HOST:PORT[?sslmode=disable|prefer|require|verify-full&sslrootcert=FILE]
    /// [default: postgres://127.0.0.1:5432, sslmode=prefer]. Credentials always come from each client.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Address of the Prometheus /metrics, /healthz and /readyz endpoint, or `off` [default: 127.0.0.1:9187].
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Directory of rule files (*.toml) tagging PII columns. May be empty.
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Keyring file (mode 0600) made by `pgveil keygen`; or set PGVEIL_KEYRING to its content.
    #[arg(long, value_name = "FILE")]
    keyring: Option<PathBuf>,
    /// Directory for the append-only audit segments.
    #[arg(long, value_name = "DIR")]
    audit_dir: Option<PathBuf>,
    /// Log format: human (default) or json. Logs never contain query values.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Most client connections at once; extra clients get SQLSTATE 53300 [default: 1000].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Largest message accepted from a client, in bytes; bigger ones get 08P01 [default: 67108864].
    #[arg(long, value_name = "N")]
    max_message_bytes: Option<usize>,
    /// PEM certificate chain offered to clients that send SSLRequest (with --tls-key).
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Refuse clients that do not negotiate TLS (SQLSTATE 28000).
    #[arg(long)]
    require_client_tls: bool,
    /// Seconds to let sessions finish after SIGTERM before exiting [default: 30].
    #[arg(long, value_name = "SECS")]
    shutdown_timeout: Option<u64>,
    /// Worker threads, each with its own event loop [default: number of CPUs].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGVEIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

fn serve(a: ServeArgs) -> Result<()> {
    let mut f = match &a.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    macro_rules! over {
        ($($field:ident),*) => { $( if a.$field.is_some() { f.$field = a.$field; } )* };
    }
    over!(listen, upstream, metrics_listen, rules, keyring, audit_dir, max_connections, max_message_bytes, workers, log_format);
    if a.shutdown_timeout.is_some() {
        f.shutdown_timeout_secs = a.shutdown_timeout;
    }
    if a.tls_cert.is_some() {
        f.tls.cert = a.tls_cert;
    }
    if a.tls_key.is_some() {
        f.tls.key = a.tls_key;
    }
    if a.require_client_tls {
        f.tls.require_client_tls = Some(true);
    }
    let config = Config::from_file(f)?;
    init_logging(config.log_format);
    let server = Server::bind(config).context("starting pgveil")?;
    let handle = server.shutdown_handle();
    std::thread::Builder::new().name("pgveil-signals".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let Ok(rt) = rt else { return };
        rt.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("shutdown requested: draining sessions");
            handle.shutdown();
        });
    })?;
    server.run()?;
    tracing::info!("pgveil stopped");
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(a) => serve(a),
    }
}

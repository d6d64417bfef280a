//! The `pgveil` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use pgveil::config::{Config, FileConfig, LogFormat};
use pgveil::server::Server;
use pgveil::snapshot::{SnapshotSource, SnapshotStore};
use std::sync::Arc;

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
    Serve(Box<ServeArgs>),
    /// Validate rule files (and, with --upstream, check them against the live schema).
    Check(CheckArgs),
    /// Create a keyring file, or rotate one (new active key; old keys kept for decryption).
    Keygen(KeygenArgs),
    /// Show what pgveil would do with a statement for a role: the decision per tagged
    /// column, the statement as it would be forwarded, or why it is refused.
    Explain(ExplainArgs),
    /// Encrypt existing plaintext (or re-encrypt after a rotation or rename), online.
    Encrypt(pgveil::migrate::args::EncryptArgs),
    /// Create pgveil's own tables for data subjects (schema `pgveil`) in the database;
    /// idempotent: a re-run changes nothing and says so.
    Install(pgveil::cli::InstallArgs),
    /// Verify or search the audit stream.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Ask a running pgveil's /healthz (or --path) and exit 0 on 200: a container
    /// HEALTHCHECK that needs no shell or curl in the image.
    Probe(ProbeArgs),
    /// Start a throwaway PostgreSQL with sample customers and serve it through pgveil,
    /// showing what each role sees.
    Demo(pgveil::demo::DemoOptions),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CheckFormat {
    Human,
    Json,
}

/// Exit status: 0 clean, 1 findings, 2 usage error or the check could not run (e.g. the
/// upstream connection failed).
#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["rules", "config"])))]
struct CheckArgs {
    /// Directory of rule files (*.toml). Defaults to the config file's `rules`.
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Validate this `serve` config file too: every setting, the paths it names, and the
    /// keyring's permissions and format.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Also check against this database: tables and columns exist, encrypted columns are bytea,
    /// and a sample of stored values decrypts. Connects as libpq does: the URL
    /// (postgres://[user[:pw]@]host[:port][/db][?sslmode=…&sslrootcert=…]), then PGHOST, PGPORT,
    /// PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT and the password file.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Keyring used to test-decrypt sampled values (with --upstream). Defaults to the config file's.
    #[arg(long, value_name = "FILE")]
    keyring: Option<PathBuf>,
    /// `human` (default) or `json` (one object with `findings`, for CI).
    #[arg(long, value_enum, default_value = "human")]
    format: CheckFormat,
}

#[derive(Args)]
struct ProbeArgs {
    /// The metrics address of the pgveil to ask; 0.0.0.0 and [::] mean this host.
    #[arg(long, env = "PGVEIL_METRICS_LISTEN", default_value = pgveil::config::DEFAULT_METRICS)]
    addr: String,
    /// `/healthz` (alive) or `/readyz` (accepting clients).
    #[arg(long, default_value = "/healthz")]
    path: String,
}

#[derive(Args)]
struct ExplainArgs {
    /// Directory of rule files (*.toml).
    #[arg(long, value_name = "DIR")]
    rules: PathBuf,
    /// The database role to judge the statement for.
    #[arg(long, value_name = "ROLE")]
    role: String,
    /// Also read the live schema and the role's memberships from this database (connected to as
    /// libpq would: URL, PG* environment, password file, sslmode). Without it, only the rules are used.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Keyring to encrypt literals with (ciphertexts are shown as placeholders either way).
    #[arg(long, value_name = "FILE")]
    keyring: Option<PathBuf>,
    /// The SQL statement(s).
    sql: String,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["out", "rotate"])))]
struct KeygenArgs {
    /// Write a new keyring (mode 0600) with one random 256-bit master key. Refuses to overwrite.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// With --out: leave an existing file alone and exit 0 (an init container that may run
    /// again must not fail, nor replace keys values were written under).
    #[arg(long, requires = "out")]
    if_missing: bool,
    /// Add a new active key to an existing keyring, keeping the old keys for decryption.
    #[arg(long, value_name = "FILE")]
    rotate: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of every segment; exit 1 at the first edited, inserted, deleted,
    /// reordered or truncated record.
    Verify {
        /// The audit directory (or use --nats to verify a fleet's shipped stream).
        #[arg(required_unless_present = "nats")]
        dir: Option<PathBuf>,
        /// File holding the chain HMAC key, when the stream was written with one.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        from: StreamArgs,
    },
    /// Print the records matching every given filter.
    Search {
        /// The audit directory (or use --nats to search a fleet's shipped stream).
        #[arg(required_unless_present = "nats")]
        dir: Option<PathBuf>,
        #[command(flatten)]
        from: StreamArgs,
        /// Records at or after this time (RFC 3339, e.g. 2026-11-29T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Records before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Login role or effective role.
        #[arg(long)]
        role: Option<String>,
        /// Table, `schema.table` or `table`.
        #[arg(long)]
        table: Option<String>,
        /// Tagged column, `schema.table.column`, `table.column` or `column`.
        #[arg(long)]
        column: Option<String>,
        /// Classification label of a tagged column.
        #[arg(long)]
        class: Option<String>,
        /// `ok`, `error`, or a SQLSTATE.
        #[arg(long)]
        outcome: Option<String>,
        /// Output: `json` (one record a line) or `table`.
        #[arg(long, default_value = "json")]
        format: String,
    },
}

/// Where `audit verify`/`search` read a shipped stream from.
#[derive(Args)]
struct StreamArgs {
    /// Read the records from NATS JetStream at this URL (nats://HOST:PORT) instead of a directory.
    #[arg(long, value_name = "URL", conflicts_with = "dir")]
    nats: Option<String>,
    /// The JetStream stream the fleet ships into.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "PGVEIL_AUDIT",
        requires = "nats"
    )]
    stream: String,
    /// Only this instance (subject pgveil.audit.NAME) [default: every subject of the stream].
    #[arg(long, value_name = "NAME", requires = "nats")]
    instance: Option<String>,
}

#[derive(Args)]
#[command(args_override_self = true)]
/// Every flag can also be set by the PGVEIL_* environment variable shown in `--help`
/// (12-factor containers). Precedence: flag, then environment, then the config file.
struct ServeArgs {
    /// Configuration file (TOML); see deploy/pgveil.toml. Flags override it.
    #[arg(long, env = "PGVEIL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address clients connect to [default: 127.0.0.1:6432].
    #[arg(long, env = "PGVEIL_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// The real database: postgres://HOST:PORT[?sslmode=disable|allow|prefer|require|verify-ca|verify-full&sslrootcert=FILE]
    /// [default: postgres://127.0.0.1:5432, sslmode=prefer]. Credentials always come from each client.
    #[arg(long, env = "PGVEIL_UPSTREAM", value_name = "URL")]
    upstream: Option<String>,
    /// Address of the Prometheus /metrics, /healthz and /readyz endpoint, or `off` [default: 127.0.0.1:6438].
    #[arg(long, env = "PGVEIL_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Directory of rule files (*.toml) tagging PII columns. May be empty.
    #[arg(long, env = "PGVEIL_RULES", value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Keyring file made by `pgveil keygen` (mode 0600; 0640/0440 for a group-owned Kubernetes
    /// Secret); or set PGVEIL_KEYRING to its content.
    #[arg(long, env = "PGVEIL_KEYRING_FILE", value_name = "FILE")]
    keyring: Option<PathBuf>,
    /// Directory for the append-only, hash-chained audit segments (enables the audit stream).
    #[arg(long, env = "PGVEIL_AUDIT_DIR", value_name = "DIR")]
    audit_dir: Option<PathBuf>,
    /// Audit durability: strict (fsync before results are released; default) or buffered.
    #[arg(long, env = "PGVEIL_AUDIT_DURABILITY", value_name = "MODE")]
    audit_durability: Option<String>,
    /// Also write every audit record to stdout (one JSON line each).
    #[arg(long, env = "PGVEIL_AUDIT_STDOUT")]
    audit_stdout: bool,
    /// Ship every audit record to NATS JetStream at this URL (nats://HOST:PORT).
    #[arg(long, value_name = "URL", env = "PGVEIL_AUDIT_SHIP")]
    audit_ship: Option<String>,
    /// JetStream stream to ship into, created if missing [default: PGVEIL_AUDIT].
    #[arg(long, value_name = "NAME", env = "PGVEIL_AUDIT_SHIP_STREAM")]
    audit_ship_stream: Option<String>,
    /// Subject this instance publishes on [default: pgveil.audit.<instance>].
    #[arg(long, value_name = "SUBJECT", env = "PGVEIL_AUDIT_SHIP_SUBJECT")]
    audit_ship_subject: Option<String>,
    /// This proxy's name in the fleet's audit stream [default: the host name].
    #[arg(long, value_name = "NAME", env = "PGVEIL_AUDIT_INSTANCE")]
    audit_instance: Option<String>,
    /// Log format: human (default) or json. Logs never contain query values.
    #[arg(long, env = "PGVEIL_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
    /// Most client connections at once; extra clients get SQLSTATE 53300 [default: 1000].
    #[arg(long, env = "PGVEIL_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Largest message accepted from a client, in bytes; bigger ones get 08P01 [default: 67108864].
    #[arg(long, env = "PGVEIL_MAX_MESSAGE_BYTES", value_name = "N")]
    max_message_bytes: Option<usize>,
    /// PEM certificate chain offered to clients that send SSLRequest (with --tls-key).
    #[arg(long, env = "PGVEIL_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "PGVEIL_TLS_KEY", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Refuse clients that do not negotiate TLS (SQLSTATE 28000).
    #[arg(long, env = "PGVEIL_REQUIRE_CLIENT_TLS")]
    require_client_tls: bool,
    /// Seconds to let sessions finish after SIGTERM before exiting [default: 30].
    #[arg(long, env = "PGVEIL_SHUTDOWN_TIMEOUT", value_name = "SECS")]
    shutdown_timeout: Option<u64>,
    /// Worker threads, each with its own event loop [default: number of CPUs].
    #[arg(long, env = "PGVEIL_WORKERS", value_name = "N")]
    workers: Option<usize>,
    /// Login roles allowed on the admin console (`psql -d pgveil` to the proxy port),
    /// comma-separated. They authenticate against PostgreSQL as usual.
    #[arg(
        long,
        env = "PGVEIL_ADMIN_ROLES",
        value_name = "ROLES",
        value_delimiter = ','
    )]
    admin_roles: Option<Vec<String>>,
    /// Database the admin console's logins authenticate against [default: postgres].
    #[arg(long, env = "PGVEIL_ADMIN_AUTH_DATABASE", value_name = "DB")]
    admin_auth_database: Option<String>,
    /// Close client sessions idle this many seconds (no transaction open, nothing in
    /// flight) with FATAL 57P05 [default: never].
    #[arg(long, env = "PGVEIL_CLIENT_IDLE_TIMEOUT", value_name = "SECS")]
    client_idle_timeout: Option<u64>,
    /// TCP keepalive idle time on client and upstream sockets, 0 for off [default: 60].
    #[arg(long, env = "PGVEIL_TCP_KEEPALIVE", value_name = "SECS")]
    tcp_keepalive: Option<u64>,
}

/// Colour only for a person at a terminal: escape codes in a journal, a
/// container log or a file are noise to every log shipper. `NO_COLOR`
/// (any non-empty value, see no-color.org) turns it off even there.
fn log_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGVEIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(log_colour())
        .with_writer(std::io::stderr);
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
    over!(
        listen,
        upstream,
        metrics_listen,
        rules,
        keyring,
        audit_dir,
        max_connections,
        max_message_bytes,
        workers,
        log_format
    );
    over!(admin_roles, admin_auth_database);
    if a.shutdown_timeout.is_some() {
        f.shutdown_timeout_secs = a.shutdown_timeout;
    }
    if a.client_idle_timeout.is_some() {
        f.client_idle_timeout_secs = a.client_idle_timeout;
    }
    if a.tcp_keepalive.is_some() {
        f.tcp_keepalive_secs = a.tcp_keepalive;
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
    if a.audit_durability.is_some() {
        f.audit.durability = a.audit_durability;
    }
    if a.audit_stdout {
        f.audit.stdout = Some(true);
    }
    for (flag, field) in [
        (a.audit_ship, &mut f.audit.ship),
        (a.audit_ship_stream, &mut f.audit.ship_stream),
        (a.audit_ship_subject, &mut f.audit.ship_subject),
        (a.audit_instance, &mut f.audit.instance),
    ] {
        if flag.is_some() {
            *field = flag;
        }
    }
    let config = Config::from_file(f)?;
    init_logging(config.log_format);
    let source = SnapshotSource {
        rules_dir: config.rules.clone(),
        keyring_file: config.keyring.clone(),
    };
    let policy = Arc::new(SnapshotStore::new(source).context("loading rules and keys")?);
    tracing::info!(rules_version = %policy.load().rules.version, tagged_columns = policy.load().rules.columns().len(), "rules loaded");
    let audit = match &config.audit {
        Some(a) => Some(
            pgveil::audit::Audit::start(a.clone(), &pgveil::metrics::metrics().registry)
                .context("starting the audit stream")?,
        ),
        None => None,
    };
    policy.set_audit(audit.clone());
    if let (Some(ship), Some(a), Some(writer)) = (&config.audit_ship, &config.audit, &audit) {
        pgveil::audit::ship::start(
            ship.clone(),
            &a.dir,
            a.chain_key.as_ref(),
            Some(writer.durable_seq()),
        )
        .context("starting audit shipping")?;
        tracing::info!(stream = %ship.stream, subject = %ship.subject, instance = %ship.instance, "audit shipping to NATS JetStream");
    }
    let server = Server::bind(config, policy.clone(), audit).context("starting pgveil")?;
    let handle = server.shutdown_handle();
    let tls = server.tls_reloader();
    std::thread::Builder::new()
        .name("pgveil-signals".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(rt) = rt else { return };
            rt.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::hangup()),
                ) else {
                    return;
                };
                tokio::spawn(policy.clone().watch(std::time::Duration::from_secs(2)));
                loop {
                    tokio::select! {
                        _ = term.recv() => break,
                        _ = int.recv() => break,
                        _ = hup.recv() => {
                            tracing::info!("SIGHUP: reloading rules and TLS certificate");
                            let _ = policy.reload();
                            let _ = tls.reload();
                        }
                    }
                }
                tracing::info!("shutdown requested: draining sessions");
                handle.shutdown();
            });
        })?;
    server.run()?;
    tracing::info!("pgveil stopped");
    Ok(())
}

fn check(a: CheckArgs) -> ExitCode {
    let report = pgveil::cli::check(&pgveil::cli::CheckRequest {
        rules: a.rules.as_deref(),
        config: a.config.as_deref(),
        upstream: a.upstream.as_deref(),
        keyring: a.keyring.as_deref(),
    });
    match a.format {
        CheckFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("error: {e}"),
        },
        CheckFormat::Human => {
            eprint!("{}", report.render_human());
            if let Some(s) = &report.summary {
                println!("{s}");
            }
            key_versions(&a);
        }
    }
    ExitCode::from(report.exit_code())
}

/// `check --upstream`: how many values each key version still protects,
/// per column (what `pgveil encrypt --rekey` has left to do).
fn key_versions(a: &CheckArgs) {
    let (Some(dir), Some(url)) = (a.rules.as_deref(), a.upstream.as_deref()) else {
        return;
    };
    let Ok(rules) = pgveil::rules::load_dir(dir) else {
        return;
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return eprintln!("note: key versions not counted: {e}"),
    };
    match rt.block_on(pgveil::migrate::status::report_url(&rules, url)) {
        Ok(r) => print!("{r}"),
        Err(e) => eprintln!("note: key versions not counted: {e}"),
    }
}

fn explain(a: ExplainArgs) -> Result<ExitCode> {
    let rules = match pgveil::rules::load_dir(&a.rules) {
        Ok(r) => r,
        Err(diags) => {
            eprint!("{}", pgveil::rules::render_report(&diags));
            return Ok(ExitCode::from(1));
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(pgveil::cli::explain(
        rules,
        &a.role,
        &a.sql,
        a.upstream.as_deref(),
        a.keyring.as_deref(),
    ))?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn keygen(a: KeygenArgs) -> Result<ExitCode> {
    use pgveil::crypto::Keyring;
    if let Some(out) = a.out {
        if a.if_missing && out.exists() {
            println!("keyring {} exists; left as it is", out.display());
            return Ok(ExitCode::SUCCESS);
        }
        let k = Keyring::generate()?;
        k.write_new_file(&out)?;
        println!(
            "wrote keyring {} (key id {}, mode 0600)",
            out.display(),
            k.active_id()
        );
    } else if let Some(path) = a.rotate {
        let k = Keyring::rotate_file(&path)?;
        println!(
            "rotated keyring {}: new active key id {}, {} key(s) kept for decryption",
            path.display(),
            k.active_id(),
            k.key_ids().len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn probe(a: &ProbeArgs) -> ExitCode {
    match pgveil::cli::http_probe(&a.addr, &a.path) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(code) => {
            eprintln!("pgveil probe: {} answered {code}", a.path);
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("pgveil probe: {e}");
            ExitCode::from(1)
        }
    }
}

fn audit(c: AuditCommand) -> Result<ExitCode> {
    use pgveil::audit::{format_json_line, format_table, search, verify, Filter, Timestamp};
    match c {
        AuditCommand::Verify {
            dir,
            key_file,
            from,
        } => {
            let key = match key_file {
                Some(p) => {
                    Some(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
                }
                None => None,
            };
            let Some(dir) = dir else {
                return verify_fleet(&from, key.as_deref());
            };
            match verify(&dir, key.as_deref()) {
                Ok(s) => {
                    println!(
                        "ok: {} records in {} segment(s) verified{}; head seq {} hash {}",
                        s.records,
                        s.segments,
                        if s.keyed { " (keyed chain)" } else { "" },
                        s.head_seq,
                        s.head_hash
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(f) => {
                    eprintln!("audit chain broken: {f}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::Search {
            dir,
            from,
            since,
            until,
            role,
            table,
            column,
            class,
            outcome,
            format,
        } => {
            let ts = |s: Option<String>| -> Result<Option<Timestamp>> {
                s.map(|s| Timestamp::parse(&s).map_err(|e| anyhow::anyhow!("bad time `{s}`: {e}")))
                    .transpose()
            };
            let filter = Filter {
                since: ts(since)?,
                until: ts(until)?,
                role,
                table,
                column,
                class,
                outcome,
                kind: None,
            };
            let Some(dir) = dir else {
                return search_fleet(&from, &filter, format == "table");
            };
            let mut records = Vec::new();
            for r in search(&dir, &filter)? {
                let r = r?;
                if format == "table" {
                    records.push(r);
                } else {
                    println!("{}", format_json_line(&r));
                }
            }
            if format == "table" {
                print!("{}", format_table(&records));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify_fleet(from: &StreamArgs, key: Option<&[u8]>) -> Result<ExitCode> {
    let url = from.nats.as_deref().unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(pgveil::audit::verify_stream::verify_stream(
        url,
        &from.stream,
        from.instance.as_deref(),
        key,
    ))?;
    if results.is_empty() {
        eprintln!(
            "audit stream {}: no records for the selected instance(s)",
            from.stream
        );
        return Ok(ExitCode::from(1));
    }
    let mut broken = false;
    for r in results {
        match r {
            Ok(s) => println!(
                "ok: {}: {} records verified{}; head seq {} hash {}{}",
                s.subject,
                s.records,
                if key.is_some() { " (keyed chain)" } else { "" },
                s.head_seq,
                s.head_hash,
                if s.duplicates > 0 {
                    format!(" ({} duplicate deliveries ignored)", s.duplicates)
                } else {
                    String::new()
                }
            ),
            Err(f) => {
                broken = true;
                eprintln!("audit chain broken: {f}");
            }
        }
    }
    Ok(if broken {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn search_fleet(
    from: &StreamArgs,
    filter: &pgveil::audit::Filter,
    table: bool,
) -> Result<ExitCode> {
    use pgveil::audit::verify_stream::instance_filter;
    let url = from.nats.as_deref().unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let messages = rt.block_on(pgveil::audit::ship::sink::read_stream(
        url,
        &from.stream,
        &instance_filter(from.instance.as_deref()),
    ))?;
    // Each instance's chain on its own: outcomes fold into that chain's
    // pending statements (pgveil::audit::merge).
    let mut chains: std::collections::BTreeMap<String, Vec<pgveil::audit::AuditRecord>> =
        Default::default();
    for m in messages {
        let r: pgveil::audit::AuditRecord = match serde_json::from_slice(&m.payload) {
            Ok(r) => r,
            Err(e) => {
                eprintln!(
                    "warning: {} stream seq {}: not an audit record ({e})",
                    m.subject, m.stream_seq
                );
                continue;
            }
        };
        chains.entry(m.subject).or_default().push(r);
    }
    for (subject, chain) in chains {
        let records: Vec<_> = pgveil::audit::merge::merge_all(chain)
            .into_iter()
            .filter(|r| filter.matches(r))
            .collect();
        if table {
            println!("== {subject}");
            print!("{}", pgveil::audit::format_table(&records));
            continue;
        }
        let quoted = serde_json::to_string(&subject)?;
        for r in records {
            // The record, with the subject it was shipped on in front.
            let line = pgveil::audit::format_json_line(&r);
            println!(
                "{{\"subject\":{quoted},{}",
                line.get(1..).unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(a) => serve(*a).map(|()| ExitCode::SUCCESS),
        Command::Check(a) => Ok(check(a)),
        Command::Keygen(a) => keygen(a),
        Command::Explain(a) => explain(a),
        Command::Audit(c) => audit(c),
        Command::Probe(a) => Ok(probe(&a)),
        Command::Encrypt(a) => Ok(pgveil::migrate::args::main(&a)),
        Command::Install(a) => Ok(pgveil::cli::install_main(&a)),
        Command::Demo(o) => {
            pgveil::demo::run(o)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

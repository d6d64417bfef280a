//! Proxy configuration: a TOML file (unknown keys rejected) overridden by
//! command-line flags, validated with every problem reported at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::net::SslMode;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// The file format; every field optional so flags can fill the gaps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub metrics_listen: Option<String>,
    pub rules: Option<PathBuf>,
    pub keyring: Option<PathBuf>,
    pub audit_dir: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub max_message_bytes: Option<usize>,
    pub shutdown_timeout_secs: Option<u64>,
    pub connect_timeout_secs: Option<u64>,
    pub workers: Option<usize>,
    /// How old a session's snapshot of role memberships and the catalog may
    /// get before it is re-read at the next statement boundary (changes made
    /// through pgveil apply at once). Default 1000 ms.
    pub catalog_max_age_ms: Option<u64>,
    pub log_format: Option<String>,
    /// Login roles allowed on the admin console (`psql -d pgveil`).
    pub admin_roles: Option<Vec<String>>,
    /// Database the console's logins authenticate against upstream
    /// [default: postgres]. The console itself never queries it.
    pub admin_auth_database: Option<String>,
    /// Close a client session idle (no transaction open, nothing in flight)
    /// this long, with FATAL 57P05 [default: never].
    pub client_idle_timeout_secs: Option<u64>,
    /// TCP keepalive idle time on client and upstream sockets, 0 to turn it
    /// off [default: 60].
    pub tcp_keepalive_secs: Option<u64>,
    #[serde(default)]
    pub tls: TlsFileConfig,
    #[serde(default)]
    pub audit: AuditFileConfig,
}

/// `[audit]`: the audit stream (enabled by `audit_dir`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFileConfig {
    /// `strict` (default): a statement on tagged tables releases its results
    /// only after its record is fsynced (group commit). `buffered`: fsync
    /// every `fsync_interval_ms`.
    pub durability: Option<String>,
    pub fsync_interval_ms: Option<u64>,
    pub segment_max_bytes: Option<u64>,
    pub segment_max_age_secs: Option<u64>,
    /// Also print every record on stdout (container log collection).
    pub stdout: Option<bool>,
    /// File holding the HMAC key of the chain (>= 16 bytes).
    pub chain_key_file: Option<PathBuf>,
    /// `continue` (default) or `refuse`: what happens to statements that
    /// touch nothing tagged while the audit cannot be written.
    pub untagged_when_unavailable: Option<String>,
    /// `nats://HOST:PORT`: also ship every record to NATS JetStream.
    pub ship: Option<String>,
    /// JetStream stream (created if missing) [default: PGVEIL_AUDIT].
    pub ship_stream: Option<String>,
    /// Subject this instance publishes on [default: `pgveil.audit.<instance>`].
    pub ship_subject: Option<String>,
    /// This proxy's name in the fleet [default: the host name].
    pub instance: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFileConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub require_client_tls: Option<bool>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Where the real database is.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
}

impl Upstream {
    /// `postgres://HOST[:PORT][/ignored][?sslmode=…&sslrootcert=…&host=…&port=…]`.
    /// HOST may be a Unix-socket directory, percent-encoded in the URL
    /// (`postgres://%2Fvar%2Frun%2Fpostgresql`) or as `?host=/var/run/postgresql`,
    /// as libpq accepts it. User, password and database come from each
    /// client, never from here.
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("upstream `{s}` is not a URL: {e}"))?;
        if url.scheme() != "postgres" && url.scheme() != "postgresql" {
            return Err(format!("upstream `{s}` must start with postgres://"));
        }
        let mut host = url.host_str().filter(|h| !h.is_empty()).map(|h| {
            crate::net::libpq::pct_decode(h)
                .trim_matches(['[', ']'])
                .to_string()
        });
        let mut port = url.port().unwrap_or(5432);
        let mut sslmode = SslMode::Prefer;
        let mut sslrootcert = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "host" => host = Some(v.into_owned()),
                "port" => {
                    port = v
                        .parse()
                        .map_err(|_| format!("upstream port `{v}` is not a port"))?
                }
                "sslmode" => {
                    sslmode = SslMode::parse(&v).ok_or_else(|| {
                        format!(
                        "sslmode `{v}` unsupported; use disable, allow, prefer, require, verify-ca or verify-full"
                    )
                    })?
                }
                "sslrootcert" => sslrootcert = Some(PathBuf::from(v.as_ref())),
                other => return Err(format!("unknown upstream parameter `{other}`")),
            }
        }
        let host = host.ok_or_else(|| format!("upstream `{s}` has no host"))?;
        Ok(Upstream {
            host,
            port,
            sslmode,
            sslrootcert,
        })
    }
}

impl Upstream {
    /// A socket directory rather than a host: connected to as
    /// `HOST/.s.PGSQL.PORT`, without TLS.
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub upstream: Upstream,
    pub metrics_listen: Option<SocketAddr>,
    pub rules: Option<PathBuf>,
    pub keyring: Option<PathBuf>,
    pub audit_dir: Option<PathBuf>,
    pub max_connections: usize,
    pub max_message_bytes: usize,
    pub shutdown_timeout: Duration,
    pub connect_timeout: Duration,
    pub workers: usize,
    pub catalog_max_age: Duration,
    pub log_format: LogFormat,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub require_client_tls: bool,
    pub audit: Option<crate::audit::AuditConfig>,
    pub audit_required_for_untagged: bool,
    pub audit_ship: Option<crate::audit::ship::ShipConfig>,
    pub admin_roles: Vec<String>,
    pub admin_auth_database: String,
    pub client_idle_timeout: Option<Duration>,
    pub tcp_keepalive: Option<Duration>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:6432";
/// The database name that selects the admin console instead of a real
/// database (pgbouncer's convention); `admin_auth_database` may not be it.
pub const CONSOLE_DATABASE: &str = "pgveil";
pub const DEFAULT_METRICS: &str = "127.0.0.1:6438";
pub const DEFAULT_UPSTREAM: &str = "postgres://127.0.0.1:5432";

impl Config {
    /// Validates a merged file+flags configuration, collecting every error.
    pub fn from_file(f: FileConfig) -> Result<Self, ConfigError> {
        let mut errs = Vec::new();
        let listen_s = f.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_s
            .parse()
            .map_err(|_| errs.push(format!("listen `{listen_s}` is not HOST:PORT")))
            .ok();
        let metrics_s = f.metrics_listen.unwrap_or_else(|| DEFAULT_METRICS.into());
        let metrics_listen = if metrics_s == "off" || metrics_s.is_empty() {
            None
        } else {
            metrics_s
                .parse()
                .map_err(|_| {
                    errs.push(format!(
                        "metrics_listen `{metrics_s}` is not HOST:PORT (or `off`)"
                    ))
                })
                .ok()
        };
        let upstream = Upstream::parse(&f.upstream.unwrap_or_else(|| DEFAULT_UPSTREAM.into()))
            .map_err(|e| errs.push(e))
            .ok();
        let log_format = match f.log_format.as_deref().unwrap_or("human") {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                errs.push(format!("log_format `{other}` unknown; use human or json"));
                LogFormat::Human
            }
        };
        let max_connections = f.max_connections.unwrap_or(1000);
        if max_connections == 0 {
            errs.push("max_connections must be at least 1".into());
        }
        let max_message_bytes = f.max_message_bytes.unwrap_or(64 << 20);
        if max_message_bytes < 1024 {
            errs.push("max_message_bytes must be at least 1024".into());
        }
        if f.tls.cert.is_some() != f.tls.key.is_some() {
            errs.push("[tls] needs both cert and key".into());
        }
        let require_client_tls = f.tls.require_client_tls.unwrap_or(false);
        if require_client_tls && f.tls.cert.is_none() {
            errs.push("require_client_tls needs [tls] cert and key".into());
        }
        for (what, p) in [
            ("rules", &f.rules),
            ("tls cert", &f.tls.cert),
            ("tls key", &f.tls.key),
        ] {
            if let Some(p) = p {
                if !p.exists() {
                    errs.push(format!("{what} path {} does not exist", p.display()));
                }
            }
        }
        let mut audit_required_for_untagged = false;
        let audit = match &f.audit_dir {
            None => None,
            Some(dir) => {
                let mut a = crate::audit::AuditConfig::new(dir.clone());
                match f.audit.durability.as_deref().unwrap_or("strict") {
                    "strict" => {}
                    "buffered" => {
                        a.durability = crate::audit::Durability::Buffered {
                            interval: Duration::from_millis(
                                f.audit.fsync_interval_ms.unwrap_or(1000).max(1),
                            ),
                        }
                    }
                    other => errs.push(format!(
                        "audit durability `{other}` unknown; use strict or buffered"
                    )),
                }
                if let Some(b) = f.audit.segment_max_bytes {
                    a.segment_max_bytes = b;
                }
                if let Some(s) = f.audit.segment_max_age_secs {
                    a.segment_max_age = Duration::from_secs(s.max(1));
                }
                a.stdout = f.audit.stdout.unwrap_or(false);
                if let Some(p) = &f.audit.chain_key_file {
                    match std::fs::read(p) {
                        Ok(k) => a.chain_key = Some(zeroize::Zeroizing::new(k)),
                        Err(e) => errs.push(format!("audit chain_key_file {}: {e}", p.display())),
                    }
                }
                match f
                    .audit
                    .untagged_when_unavailable
                    .as_deref()
                    .unwrap_or("continue")
                {
                    "continue" => {}
                    "refuse" => audit_required_for_untagged = true,
                    other => errs.push(format!(
                        "untagged_when_unavailable `{other}` unknown; use continue or refuse"
                    )),
                }
                Some(a)
            }
        };
        let audit_ship = match (&f.audit.ship, &f.audit_dir) {
            (None, _) => None,
            (Some(_), None) => {
                errs.push("audit ship needs audit_dir (the local audit is what is shipped)".into());
                None
            }
            (Some(url), Some(_)) => crate::audit::ship::ShipConfig::new(
                url,
                f.audit.ship_stream.as_deref(),
                f.audit.ship_subject.as_deref(),
                f.audit.instance.as_deref(),
            )
            .map_err(|e| errs.push(e.to_string()))
            .ok(),
        };
        let admin_roles: Vec<String> = f
            .admin_roles
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        let admin_auth_database = f.admin_auth_database.unwrap_or_else(|| "postgres".into());
        if admin_auth_database.is_empty() || admin_auth_database == CONSOLE_DATABASE {
            errs.push(format!(
                "admin_auth_database must name a real database, not `{admin_auth_database}`"
            ));
        }
        let client_idle_timeout = match f.client_idle_timeout_secs {
            None | Some(0) => None,
            Some(s) => Some(Duration::from_secs(s)),
        };
        let tcp_keepalive = match f.tcp_keepalive_secs.unwrap_or(60) {
            0 => None,
            s => Some(Duration::from_secs(s)),
        };
        let workers = f
            .workers
            .filter(|w| *w > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        match (listen, upstream, errs.is_empty()) {
            (Some(listen), Some(upstream), true) => Ok(Config {
                listen,
                upstream,
                metrics_listen,
                rules: f.rules,
                keyring: f.keyring,
                audit_dir: f.audit_dir,
                max_connections,
                max_message_bytes,
                shutdown_timeout: Duration::from_secs(f.shutdown_timeout_secs.unwrap_or(30)),
                connect_timeout: Duration::from_secs(f.connect_timeout_secs.unwrap_or(10)),
                workers,
                catalog_max_age: Duration::from_millis(f.catalog_max_age_ms.unwrap_or(1000)),
                log_format,
                tls_cert: f.tls.cert,
                tls_key: f.tls.key,
                require_client_tls,
                audit,
                audit_required_for_untagged,
                audit_ship,
                admin_roles,
                admin_auth_database,
                client_idle_timeout,
                tcp_keepalive,
            }),
            _ => Err(ConfigError::Invalid(errs)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let u =
            Upstream::parse("postgres://db.internal:6543?sslmode=verify-full&sslrootcert=/ca.pem")
                .unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.sslmode),
            ("db.internal", 6543, SslMode::VerifyFull)
        );
        assert_eq!(u.sslrootcert.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(Upstream::parse("postgres://127.0.0.1").unwrap().port, 5432);
        assert!(Upstream::parse("mysql://x").is_err());
        assert_eq!(
            Upstream::parse("postgres://x?sslmode=allow")
                .unwrap()
                .sslmode,
            SslMode::Allow
        );
        assert_eq!(
            Upstream::parse("postgres://x?sslmode=verify-ca")
                .unwrap()
                .sslmode,
            SslMode::VerifyCa
        );
        assert!(Upstream::parse("postgres://x?sslmode=bogus").is_err());
        let u = Upstream::parse("postgres://%2Fvar%2Frun%2Fpostgresql:5433").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("/var/run/postgresql", 5433));
        assert!(u.is_unix_socket());
        let u = Upstream::parse("postgres://?host=/tmp/pg").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("/tmp/pg", 5432));
        let u = Upstream::parse("postgres://?host=/tmp/pg&port=6000").unwrap();
        assert_eq!(u.port, 6000);
        assert!(Upstream::parse("postgres://").is_err());
        assert!(Upstream::parse("postgres://x?foo=1").is_err());
    }

    #[test]
    fn all_errors_reported_at_once() {
        let f: FileConfig = toml::from_str(
            "listen = \"nope\"\nupstream = \"http://x\"\nlog_format = \"xml\"\n[tls]\ncert = \"/nonexistent.pem\"\n",
        )
        .unwrap();
        let Err(ConfigError::Invalid(errs)) = Config::from_file(f) else {
            panic!("expected invalid")
        };
        assert_eq!(errs.len(), 5, "{errs:?}");
    }

    #[test]
    fn audit_ship_settings() {
        let parse = |t: &str| Config::from_file(toml::from_str::<FileConfig>(t).unwrap());
        let c = parse(
            "audit_dir = \"/tmp/a\"\n[audit]\nship = \"nats://127.0.0.1:4222\"\ninstance = \"db-1\"\n",
        )
        .unwrap();
        let s = c.audit_ship.unwrap();
        assert_eq!(
            (s.stream.as_str(), s.subject.as_str()),
            ("PGVEIL_AUDIT", "pgveil.audit.db-1")
        );
        for bad in [
            "[audit]\nship = \"nats://h:1\"\n",
            "audit_dir = \"/a\"\n[audit]\nship = \"http://h:1\"\n",
            "audit_dir = \"/a\"\n[audit]\nship = \"nats://h:1\"\ninstance = \"a.b\"\n",
            "audit_dir = \"/a\"\n[audit]\nship = \"nats://h:1\"\nship_subject = \"x.>\"\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_rejected() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
        assert!(toml::from_str::<FileConfig>("[tls]\ncrt = \"x\"").is_err());
    }
}

//! Shared integration-test harness: a throwaway PostgreSQL per test binary, the real `pgveil`
//! binary per test on free ports, clients (tokio-postgres, psql, pgbench, raw sockets, HTTP)
//! and a test CA.
//!
//! Why one PostgreSQL per binary: `initdb` costs about a second; tests isolate themselves with
//! their own database (`Cluster::fresh_db`) instead. Each test starts its own proxy, because
//! several need special flags and a proxy crash must be blamed on the test that caused it.
//! Tests that stop or reconfigure the server start a private cluster with `Cluster::start`.
#![allow(dead_code)]

pub mod customers;
pub mod wire;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

// Compiled in directly so the harness does not depend on lib.rs declaring it.
use pgtemp::{PasswordEncryption, PgTemp, PgTempOptions, SslFiles};
pub use pgveil::pgtemp;

/// Owner of every per-test database; SCRAM.
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app-Pa55word";
/// Password stored as MD5, hba method `md5`: a real MD5 challenge.
pub const MD5_USER: &str = "md5user";
pub const MD5_PASSWORD: &str = "md5-Pa55word";
/// hba method `password`: cleartext password relayed through the proxy.
pub const CLEAR_USER: &str = "clearuser";
pub const CLEAR_PASSWORD: &str = "clear-Pa55word";
/// hba method `trust`: no password; also used for hand-written protocol sessions.
pub const TRUST_USER: &str = "trustuser";
/// Rejected by the server unless the (proxy→server) connection uses TLS.
pub const TLS_ONLY_USER: &str = "tlsonly";
pub const TLS_ONLY_PASSWORD: &str = "tls-Pa55word";

/// PostgreSQL plus the CA whose server certificate it presents (ssl = on).
pub struct Cluster {
    pub pg: PgTemp,
    pub certs: TestCerts,
    counter: AtomicUsize,
}

static SHARED: OnceLock<Cluster> = OnceLock::new();

extern "C" fn cleanup_shared() {
    if let Some(c) = SHARED.get() {
        c.pg.cleanup();
    }
}

/// The cluster shared by all tests of this binary; stopped at process exit.
pub fn shared() -> &'static Cluster {
    SHARED.get_or_init(|| {
        let c = Cluster::start();
        // SAFETY: registers a plain extern "C" fn; statics are never dropped, so this is
        // what stops the server when the test binary exits normally.
        unsafe {
            libc::atexit(cleanup_shared);
        }
        c
    })
}

impl Cluster {
    /// A new cluster with TLS on, the test roles and hba lines. Panics with the reason
    /// (including what to install) if PostgreSQL cannot be started.
    pub fn start() -> Cluster {
        let certs = TestCerts::generate();
        let opts = PgTempOptions {
            ssl: Some(SslFiles {
                cert: certs.server_cert.clone(),
                key: certs.server_key.clone(),
            }),
            hba_prefix: vec![
                format!("host all {TRUST_USER} 127.0.0.1/32 trust"),
                format!("host all {MD5_USER} 127.0.0.1/32 md5"),
                format!("host all {CLEAR_USER} 127.0.0.1/32 password"),
                format!("hostnossl all {TLS_ONLY_USER} all reject"),
            ],
            ..Default::default()
        };
        let pg = PgTemp::start(&opts).unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
        let roles = [
            (APP_USER, APP_PASSWORD, PasswordEncryption::Scram),
            (MD5_USER, MD5_PASSWORD, PasswordEncryption::Md5),
            (CLEAR_USER, CLEAR_PASSWORD, PasswordEncryption::Scram),
            (TRUST_USER, "unused-pw", PasswordEncryption::Scram),
            (TLS_ONLY_USER, TLS_ONLY_PASSWORD, PasswordEncryption::Scram),
        ];
        for (name, pw, enc) in roles {
            pg.create_login_role(name, pw, enc)
                .unwrap_or_else(|e| panic!("creating role {name}: {e}"));
        }
        pg.psql(
            "postgres",
            &format!("ALTER ROLE {APP_USER} CREATEDB; GRANT pg_read_all_stats TO {APP_USER};"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Cluster {
            pg,
            certs,
            counter: AtomicUsize::new(0),
        }
    }

    /// Creates a database for one test (owned by `app`, usable by every test role).
    pub fn fresh_db(&self, tag: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!("t_{tag}_{n}");
        self.pg
            .create_database(&name, APP_USER)
            .unwrap_or_else(|e| panic!("{e}"));
        self.sql(&name, "GRANT ALL ON SCHEMA public TO PUBLIC;");
        name
    }

    /// Runs SQL as superuser over the unix socket (direct, not through the proxy).
    pub fn sql(&self, db: &str, sql: &str) -> String {
        self.pg
            .psql(db, sql)
            .unwrap_or_else(|e| panic!("superuser SQL failed: {e}"))
    }

    /// `postgres://127.0.0.1:PORT` for `--upstream`.
    pub fn url(&self) -> String {
        self.pg.url()
    }

    /// `postgres://localhost:PORT?sslmode=verify-full&sslrootcert=CA` for `--upstream`.
    pub fn tls_url(&self) -> String {
        format!(
            "postgres://localhost:{}?sslmode=verify-full&sslrootcert={}",
            self.pg.port(),
            self.certs.ca.display()
        )
    }
}

/// A test CA and a server certificate for `localhost` / 127.0.0.1 signed by it.
pub struct TestCerts {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub ca_der: rustls::pki_types::CertificateDer<'static>,
}

impl TestCerts {
    pub fn generate() -> TestCerts {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "pgveil test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("ca key");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let mut sp = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params");
        sp.distinguished_name.push(DnType::CommonName, "localhost");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let server_key = KeyPair::generate().expect("server key");
        let server = sp
            .signed_by(&server_key, &ca, &ca_key)
            .expect("server cert");
        let write = |name: &str, data: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, data).expect("write pem");
            p
        };
        let ca_path = write("ca.pem", &ca.pem());
        let cert_path = write("server.crt", &server.pem());
        let key_path = write("server.key", &server_key.serialize_pem());
        // libpq and PostgreSQL refuse group/world-readable keys.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod key");
        // Readable by a `postgres` OS user when the proxy/psql run as root is not needed:
        // only the server copies them (pgtemp does that), so the directory can stay private.
        TestCerts {
            ca: ca_path,
            server_cert: cert_path,
            server_key: key_path,
            ca_der: ca.der().clone(),
            _dir: dir,
        }
    }

    /// rustls client config trusting only the test CA (so verification is verify-full).
    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add CA");
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    pgtemp::free_port().expect("free port")
}

/// The `pgveil serve` process under test, on free ports; killed on drop (its log is printed
/// if the test is failing).
pub struct Proxy {
    child: Child,
    pub port: u16,
    pub metrics_port: u16,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts `pgveil serve --upstream URL` with extra flags and waits until it listens.
    pub fn start(upstream: &str, extra: &[&str]) -> Proxy {
        Self::start_with_env(upstream, extra, &[])
    }

    /// Like [`Proxy::start`], with extra environment variables (e.g. `PGVEIL_LOG`).
    pub fn start_with_env(upstream: &str, extra: &[&str], envs: &[(&str, &str)]) -> Proxy {
        // A port free a moment ago can be taken by a parallel test before pgveil binds it:
        // then start again on other ports.
        for _ in 0..3 {
            if let Some(p) = Self::try_start(upstream, extra, envs) {
                return p;
            }
        }
        panic!("pgveil could not bind a free port three times");
    }

    fn try_start(upstream: &str, extra: &[&str], envs: &[(&str, &str)]) -> Option<Proxy> {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let metrics_port = free_port();
        let log_path = dir.path().join("pgveil.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let log2 = log.try_clone().expect("log file");
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).expect("rules dir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgveil"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--upstream")
            .arg(upstream)
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--rules")
            .arg(&rules)
            .args(extra)
            .env("PGVEIL_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = cmd.spawn().expect("spawn pgveil");
        let mut p = Proxy {
            child,
            port,
            metrics_port,
            log_path,
            _dir: dir,
        };
        p.wait_ready().then_some(p)
    }

    /// Waits until pgveil listens; false when it exited because a port was
    /// taken (the caller retries on other ports).
    fn wait_ready(&mut self) -> bool {
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                let log = self.log();
                if log.contains("in use") {
                    return false;
                }
                panic!("pgveil exited during startup ({st}):\n{log}");
            }
            if self.log().contains("listening on") {
                return true;
            }
            // Fall back to a TCP probe in case the log line is filtered or reworded.
            if start.elapsed() > Duration::from_secs(5)
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return true;
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!("pgveil did not start listening:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain syscall on the pid of our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- pgveil log -----\n{}\n----- end -----", self.log());
        }
    }
}

/// tokio-postgres config for 127.0.0.1:`port`.
pub fn pg_config(port: u16, db: &str, user: &str, password: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .dbname(db)
        .user(user)
        .password(password)
        .application_name("pgveil-tests")
        .connect_timeout(Duration::from_secs(10));
    c
}

/// Connects without TLS; the connection task runs on the current runtime.
pub async fn connect(
    port: u16,
    db: &str,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_with(pg_config(port, db, user, password)).await
}

pub async fn connect_with(
    cfg: tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Connects with TLS required, verifying the server certificate against the test CA for
/// host name `host` (verify-full semantics).
pub async fn connect_tls(
    certs: &TestCerts,
    host: &str,
    port: u16,
    db: &str,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut cfg = pg_config(port, db, user, password);
    cfg.host(host)
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(certs.client_config());
    let (client, conn) = cfg.connect(tls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The SQLSTATE of a server error, if it is one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_string())
}

/// A libpq tool (psql, pgbench) aimed at 127.0.0.1:`port` with credentials in the env.
pub fn client_cmd(tool: &str, port: u16, db: &str, user: &str, password: &str) -> Command {
    let path = shared_bin().tool(tool).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(path);
    for var in [
        "PGSERVICE",
        "PGSSLMODE",
        "PGOPTIONS",
        "PGPASSFILE",
        "PGSSLROOTCERT",
        "PGREQUIRESSL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGDATABASE", db)
        .env("PGUSER", user)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGTZ", "UTC")
        .env("PGAPPNAME", "pgveil-tests")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn shared_bin() -> &'static pgtemp::PgBin {
    static BIN: OnceLock<pgtemp::PgBin> = OnceLock::new();
    BIN.get_or_init(|| pgtemp::PgBin::find().unwrap_or_else(|e| panic!("{e}")))
}

/// Output of a finished client tool, as text.
#[derive(Debug)]
pub struct ToolOut {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for ToolOut {
    fn from(o: Output) -> Self {
        ToolOut {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs a command, feeding `stdin` if given, with a hard time limit (kills it after).
pub fn run_tool(mut cmd: Command, stdin: Option<&[u8]>, limit: Duration) -> ToolOut {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn client tool");
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let pid = child.id() as i32;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = done.clone();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if done2.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if done2.load(Ordering::Relaxed) {
            return false;
        }
        // SAFETY: plain syscall on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        true
    });
    let out = child.wait_with_output().expect("wait client tool");
    done.store(true, Ordering::Relaxed);
    let killed = killer.join().unwrap_or(false);
    assert!(!killed, "client tool exceeded {limit:?} and was killed");
    out.into()
}

/// Runs psql through `port` as `user` with `-X -v ON_ERROR_STOP=0` plus `args`.
pub fn psql(
    port: u16,
    db: &str,
    user: &str,
    password: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> ToolOut {
    let mut cmd = client_cmd("psql", port, db, user, password);
    cmd.arg("-X").args(args);
    run_tool(cmd, stdin.map(str::as_bytes), Duration::from_secs(120))
}

/// A minimal HTTP/1.1 GET by hand (no HTTP client dependency): (status, headers+body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Path helper for files in a test's temporary directory.
pub fn tmp_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// The value of an unlabelled metric on pgveil's /metrics (0 when absent).
pub fn metric(port: u16, name: &str) -> f64 {
    let (_, text) = http_get(port, "/metrics");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .filter(|rest| rest.starts_with(' '))
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

//! Throwaway PostgreSQL clusters for the integration tests and `pgveil demo`.
//!
//! Why this exists: pgveil's claims (transparency, auth relay, cancel, COPY …) can only be
//! proven against a real server, and neither the tests nor the demo may depend on a database
//! that happens to be running or on fixed ports. A [`PgTemp`] is an `initdb`-fresh cluster in
//! its own directory, listening on 127.0.0.1 at a free port with SCRAM for TCP and trust on
//! its private unix socket (so the owner can run setup SQL without a password). It is stopped
//! and deleted on drop; a small watchdog process also removes it if the owning process dies
//! without running destructors (SIGKILL, `static`s, aborts), so test runs do not leak servers.
//!
//! PostgreSQL refuses to run as root, so when the caller is root the server tools run as the
//! `postgres` OS user (created by the Debian/Ubuntu packages) and the directory is chowned to it.

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

mod bin;
pub use bin::PgBin;

/// What to install when the PostgreSQL binaries are missing (Debian/Ubuntu).
pub const INSTALL_HINT: &str = "apt-get install postgresql postgresql-client";

/// Name of the bootstrap superuser created by `initdb -U`.
pub const SUPERUSER: &str = "postgres";

/// Environment variable naming the directory that holds `initdb`, `pg_ctl` and `postgres`.
pub const BIN_ENV: &str = "PGVEIL_PG_BIN";

/// Environment variable overriding the parent directory of the cluster directories.
pub const TMP_ENV: &str = "PGVEIL_TMPDIR";

/// Errors from locating, starting, using or stopping a throwaway cluster.
///
/// Messages never contain passwords; command failures carry the tool's stderr, which for
/// setup SQL is the caller's own (test) SQL.
#[derive(Debug, thiserror::Error)]
pub enum PgTempError {
    /// The server binaries could not be found anywhere we looked.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found ({looked}); \
         install them with `{INSTALL_HINT}` (as root), or set {BIN_ENV} to the directory holding initdb"
    )]
    BinariesMissing {
        /// Where we looked, for the user to check.
        looked: String,
    },
    /// A client tool (psql, pgbench …) is missing.
    #[error("`{tool}` not found in {dir} nor on PATH; install it with `{INSTALL_HINT}` (as root)")]
    ToolMissing {
        /// Tool name.
        tool: String,
        /// The server binary directory that was searched first.
        dir: PathBuf,
    },
    /// Running as root, but there is no unprivileged account to run the server as.
    #[error(
        "running as root, and PostgreSQL refuses to run as root, but the `postgres` OS user does \
         not exist; `{INSTALL_HINT}` creates it"
    )]
    NoPostgresUser,
    /// A file-system or process-spawn operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A PostgreSQL tool exited unsuccessfully.
    #[error("{command} failed ({status}): {stderr}")]
    CommandFailed {
        /// The tool and its role (not its full argument list).
        command: String,
        /// Exit status.
        status: String,
        /// Trimmed stderr (and, for server start, the server log tail).
        stderr: String,
    },
    /// A role or database name that is not a plain lower-case identifier.
    #[error("invalid SQL identifier {0:?}: use [a-z_][a-z0-9_]*")]
    InvalidName(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> PgTempError {
    let context = context.into();
    move |source| PgTempError::Io { context, source }
}

/// Returns a port on 127.0.0.1 that was free a moment ago (bind to port 0, read, drop).
pub fn free_port() -> Result<u16, PgTempError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err("binding 127.0.0.1:0"))?;
    let port = l.local_addr().map_err(io_err("reading local port"))?.port();
    Ok(port)
}

/// Unprivileged identity the server tools run as when we are root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunAs {
    uid: u32,
    gid: u32,
}

fn server_identity() -> Result<Option<RunAs>, PgTempError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    lookup_user(SUPERUSER)?
        .map(Some)
        .ok_or(PgTempError::NoPostgresUser)
}

fn lookup_user(name: &str) -> Result<Option<RunAs>, PgTempError> {
    let cname = CString::new(name).map_err(|_| PgTempError::InvalidName(name.to_string()))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data; an all-zero value is valid before getpwnam_r fills it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the duration of the call and buf.len() is its size;
    // getpwnam_r is the re-entrant variant, safe with concurrent callers.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(PgTempError::Io {
            context: format!("looking up OS user {name}"),
            source: io::Error::from_raw_os_error(rc),
        });
    }
    if result.is_null() {
        return Ok(None);
    }
    Ok(Some(RunAs {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    }))
}

fn chown(path: &Path, who: RunAs) -> Result<(), PgTempError> {
    std::os::unix::fs::chown(path, Some(who.uid), Some(who.gid))
        .map_err(io_err(format!("chown {}", path.display())))
}

/// Server TLS material, copied into the cluster directory (PostgreSQL insists the key is
/// owned by the server user and not group/world readable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslFiles {
    /// PEM certificate chain presented by the server.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// How to set up a cluster. `Default` gives SCRAM on TCP, no TLS and a random superuser password.
#[derive(Clone, Default)]
pub struct PgTempOptions {
    /// Password of the `postgres` superuser for TCP (SCRAM); random when `None`.
    pub superuser_password: Option<String>,
    /// Turn on `ssl` with these files.
    pub ssl: Option<SslFiles>,
    /// `pg_hba.conf` lines placed before the defaults (first match wins), e.g.
    /// `host all md5user 127.0.0.1/32 md5`.
    pub hba_prefix: Vec<String>,
    /// Extra `postgresql.conf` lines.
    pub extra_conf: Vec<String>,
    /// Port to listen on; a free one when `None`.
    pub port: Option<u16>,
}

impl fmt::Debug for PgTempOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTempOptions")
            .field(
                "superuser_password",
                &self.superuser_password.as_ref().map(|_| "<redacted>"),
            )
            .field("ssl", &self.ssl)
            .field("hba_prefix", &self.hba_prefix)
            .field("extra_conf", &self.extra_conf)
            .field("port", &self.port)
            .finish()
    }
}

/// Password encoding for [`PgTemp::create_login_role`]; decides which auth methods can work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordEncryption {
    /// SCRAM-SHA-256 verifier (works with `scram-sha-256`, `md5` and `password` hba methods).
    Scram,
    /// Legacy MD5 hash (needed for a real MD5 challenge).
    Md5,
}

/// A running throwaway cluster. Stopped (`pg_ctl stop -m fast`) and deleted on drop.
pub struct PgTemp {
    bin: PgBin,
    root: PathBuf,
    data: PathBuf,
    port: u16,
    password: String,
    run_as: Option<RunAs>,
    base_hba: String,
    state: Mutex<State>,
}

struct State {
    running: bool,
    watchdog: Option<Child>,
    removed: bool,
}

impl fmt::Debug for PgTemp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTemp")
            .field("root", &self.root)
            .field("port", &self.port)
            .field("bin", &self.bin.dir)
            .finish_non_exhaustive()
    }
}

impl PgTemp {
    /// Finds the binaries and starts a cluster with `opts`.
    pub fn start(opts: &PgTempOptions) -> Result<Self, PgTempError> {
        Self::start_with(PgBin::find()?, opts)
    }

    /// Starts a cluster using the given binaries.
    pub fn start_with(bin: PgBin, opts: &PgTempOptions) -> Result<Self, PgTempError> {
        let run_as = server_identity()?;
        let root = make_root_dir(run_as.is_some())?;
        // From here on, dropping `pg` cleans up the directory on any error.
        let password = opts
            .superuser_password
            .clone()
            .unwrap_or_else(|| hex::encode(rand::random::<[u8; 12]>()));
        let mut pg = PgTemp {
            data: root.join("data"),
            root,
            bin,
            port: 0,
            password,
            run_as,
            base_hba: String::new(),
            state: Mutex::new(State {
                running: false,
                watchdog: None,
                removed: false,
            }),
        };
        if let Some(who) = run_as {
            chown(&pg.root, who)?;
        }
        pg.spawn_watchdog();
        pg.initdb()?;
        pg.configure(opts)?;
        // A port picked as free can be taken before the server binds it; retry a few times.
        let mut last = None;
        for _ in 0..3 {
            pg.port = match opts.port {
                Some(p) => p,
                None => free_port()?,
            };
            match pg.pg_ctl_start() {
                Ok(()) => return Ok(pg),
                Err(e) => {
                    let port_clash = pg.log_tail().contains("could not bind");
                    last = Some(e);
                    if !port_clash || opts.port.is_some() {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| PgTempError::CommandFailed {
            command: "pg_ctl start".into(),
            status: "not attempted".into(),
            stderr: String::new(),
        }))
    }

    /// TCP host the server listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory of the server's unix socket (trust auth for the superuser).
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// The cluster's private directory (data directory, log, socket).
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The binaries in use.
    pub fn bin(&self) -> &PgBin {
        &self.bin
    }

    /// The superuser's TCP password.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// `postgres://127.0.0.1:PORT` — the form `pgveil serve --upstream` takes.
    pub fn url(&self) -> String {
        format!("postgres://{}:{}", self.host(), self.port)
    }

    /// Path of the server log.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// Last ~4 KiB of the server log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read(self.log_path()).unwrap_or_default();
        let start = text.len().saturating_sub(4096);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// Whether the server was started and not stopped by us.
    pub fn is_running(&self) -> bool {
        self.lock().running
    }

    /// Stops the server (`pg_ctl stop -m fast`), keeping the data; idempotent.
    pub fn stop(&self) -> Result<(), PgTempError> {
        let mut st = self.lock();
        if !st.running {
            return Ok(());
        }
        let mut cmd = self.server_cmd("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "fast", "-w", "-t", "60"]);
        run(cmd, "pg_ctl stop")?;
        st.running = false;
        Ok(())
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port.
    pub fn restart(&self) -> Result<(), PgTempError> {
        if self.is_running() {
            return Ok(());
        }
        self.pg_ctl_start()
    }

    /// Replaces the extra `pg_hba.conf` lines placed before the defaults, and reloads.
    pub fn set_hba_prefix(&self, lines: &[String]) -> Result<(), PgTempError> {
        self.write_hba(lines)?;
        self.psql("postgres", "SELECT pg_reload_conf()")?;
        Ok(())
    }

    /// Runs SQL as the superuser over the unix socket (psql, `ON_ERROR_STOP`), returning the
    /// unaligned, tuples-only output. SQL goes through stdin so it never shows up in `ps`.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, PgTempError> {
        let psql = self.bin.tool("psql")?;
        let mut cmd = Command::new(psql);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.root)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", database, "-f", "-"])
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(io_err("spawning psql"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(sql.as_bytes())
                .map_err(io_err("writing SQL to psql"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(io_err("waiting for psql"))?;
        if !out.status.success() {
            return Err(PgTempError::CommandFailed {
                command: format!("psql (superuser, database {database})"),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates a LOGIN role with a password stored in the given encoding.
    pub fn create_login_role(
        &self,
        name: &str,
        password: &str,
        enc: PasswordEncryption,
    ) -> Result<(), PgTempError> {
        check_ident(name)?;
        let method = match enc {
            PasswordEncryption::Scram => "scram-sha-256",
            PasswordEncryption::Md5 => "md5",
        };
        self.psql(
            "postgres",
            &format!(
                "SET password_encryption = '{method}';\nCREATE ROLE {name} LOGIN PASSWORD {};\n",
                quote_literal(password)
            ),
        )?;
        Ok(())
    }

    /// Creates a database owned by `owner`.
    pub fn create_database(&self, name: &str, owner: &str) -> Result<(), PgTempError> {
        check_ident(name)?;
        check_ident(owner)?;
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} OWNER {owner};\n"),
        )?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (plain flags), so recover.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A command for a server tool, run as the `postgres` OS user when we are root.
    fn server_cmd(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bin.dir.join(tool));
        cmd.current_dir(&self.root)
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(who) = self.run_as {
            cmd.uid(who.uid).gid(who.gid).env("HOME", &self.root);
        }
        cmd
    }

    fn initdb(&self) -> Result<(), PgTempError> {
        let pwfile = self.root.join("pwfile");
        write_private(&pwfile, self.password.as_bytes(), self.run_as)?;
        let mut cmd = self.server_cmd("initdb");
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-U", SUPERUSER])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["-E", "UTF8", "--locale=C", "-N"])
            .arg(format!("--pwfile={}", pwfile.display()));
        let res = run(cmd, "initdb");
        let _ = fs::remove_file(&pwfile);
        res
    }

    fn configure(&mut self, opts: &PgTempOptions) -> Result<(), PgTempError> {
        let mut conf = String::from("\n# pgtemp\n");
        conf.push_str("listen_addresses = '127.0.0.1'\n");
        conf.push_str(&format!(
            "unix_socket_directories = '{}'\n",
            self.root.display()
        ));
        conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        conf.push_str("max_connections = 120\nshared_buffers = 64MB\n");
        if let Some(ssl) = &opts.ssl {
            let cert = self.root.join("server.crt");
            let key = self.root.join("server.key");
            let cert_pem =
                fs::read(&ssl.cert).map_err(io_err(format!("reading {}", ssl.cert.display())))?;
            let key_pem =
                fs::read(&ssl.key).map_err(io_err(format!("reading {}", ssl.key.display())))?;
            write_private(&cert, &cert_pem, self.run_as)?;
            write_private(&key, &key_pem, self.run_as)?;
            conf.push_str(&format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                cert.display(),
                key.display()
            ));
        }
        for line in &opts.extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = self.data.join("postgresql.conf");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .map_err(io_err(format!("opening {}", conf_path.display())))?;
        f.write_all(conf.as_bytes())
            .map_err(io_err(format!("writing {}", conf_path.display())))?;
        let hba_path = self.data.join("pg_hba.conf");
        self.base_hba = fs::read_to_string(&hba_path)
            .map_err(io_err(format!("reading {}", hba_path.display())))?;
        self.write_hba(&opts.hba_prefix)
    }

    fn write_hba(&self, prefix: &[String]) -> Result<(), PgTempError> {
        let mut text = String::from("# pgtemp prefix\n");
        for line in prefix {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&self.base_hba);
        let path = self.data.join("pg_hba.conf");
        write_private(&path, text.as_bytes(), self.run_as)
    }

    fn pg_ctl_start(&self) -> Result<(), PgTempError> {
        let mut st = self.lock();
        let mut cmd = self.server_cmd("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.log_path())
            .arg("-o")
            .arg(format!("-p {}", self.port))
            .args(["-w", "-t", "60", "start"]);
        match run(cmd, "pg_ctl start") {
            Ok(()) => {
                st.running = true;
                Ok(())
            }
            Err(PgTempError::CommandFailed {
                command,
                status,
                stderr,
            }) => Err(PgTempError::CommandFailed {
                command,
                status,
                stderr: format!("{stderr}\n--- server log ---\n{}", self.log_tail()),
            }),
            Err(e) => Err(e),
        }
    }

    /// Starts a detached `sh` that waits for this process to disappear, then stops the server
    /// with SIGQUIT and removes the directory. Best effort: without it a test binary killed by
    /// a timeout would leave a postmaster behind.
    fn spawn_watchdog(&self) {
        const SCRIPT: &str = r#"
while [ -d "/proc/$1" ]; do sleep 1; done
if [ -f "$2/postmaster.pid" ]; then
  pid=$(head -n 1 "$2/postmaster.pid")
  kill -QUIT "$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
fi
rm -rf "$3"
"#;
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("pgtemp-watchdog")
            .arg(std::process::id().to_string())
            .arg(&self.data)
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        if let Ok(child) = spawned {
            self.lock().watchdog = Some(child);
        }
    }

    /// Stops the server and deletes its directory; idempotent. Called by `Drop`; call it
    /// yourself for clusters kept in a `static` (e.g. from an `atexit` hook).
    pub fn cleanup(&self) {
        let _ = self.stop();
        let mut st = self.lock();
        if st.running {
            // `pg_ctl stop` failed; make sure the postmaster goes away before deleting.
            if let Ok(pidfile) = fs::read_to_string(self.data.join("postmaster.pid")) {
                if let Some(pid) = pidfile.lines().next().and_then(|l| l.trim().parse().ok()) {
                    // SAFETY: plain syscall; the pid comes from our own cluster's pid file.
                    unsafe {
                        libc::kill(pid, libc::SIGQUIT);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            }
            st.running = false;
        }
        if !st.removed {
            let _ = fs::remove_dir_all(&self.root);
            st.removed = true;
        }
        if let Some(mut w) = st.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for PgTemp {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), PgTempError> {
    let out = cmd.output().map_err(io_err(format!("spawning {what}")))?;
    if out.status.success() {
        Ok(())
    } else {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !stdout.trim().is_empty() {
            stderr.push('\n');
            stderr.push_str(stdout.trim());
        }
        Err(PgTempError::CommandFailed {
            command: what.to_string(),
            status: out.status.to_string(),
            stderr,
        })
    }
}

/// Writes a file readable only by its owner (the server user when we are root).
fn write_private(path: &Path, data: &[u8], owner: Option<RunAs>) -> Result<(), PgTempError> {
    fs::write(path, data).map_err(io_err(format!("writing {}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(io_err(format!("chmod {}", path.display())))?;
    if let Some(who) = owner {
        chown(path, who)?;
    }
    Ok(())
}

/// Creates `<base>/pgveil-pg-<pid>-<random>` with mode 0700.
///
/// When the server runs as another user every ancestor must be traversable by it, so a
/// private `$TMPDIR` (e.g. under /root) is replaced by /tmp unless `$PGVEIL_TMPDIR` is set.
fn make_root_dir(other_user: bool) -> Result<PathBuf, PgTempError> {
    let base = match std::env::var_os(TMP_ENV) {
        Some(b) => PathBuf::from(b),
        None => {
            let t = std::env::temp_dir();
            if other_user && !world_traversable(&t) {
                PathBuf::from("/tmp")
            } else {
                t
            }
        }
    };
    let name = format!(
        "pgveil-pg-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 6]>())
    );
    let root = base.join(name);
    fs::create_dir(&root).map_err(io_err(format!("creating {}", root.display())))?;
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("chmod {}", root.display())))?;
    Ok(root)
}

fn world_traversable(dir: &Path) -> bool {
    let Ok(dir) = fs::canonicalize(dir) else {
        return false;
    };
    dir.ancestors().all(|a| {
        fs::metadata(a)
            .map(|m| m.mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

fn check_ident(name: &str) -> Result<(), PgTempError> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() < 64;
    if ok {
        Ok(())
    } else {
        Err(PgTempError::InvalidName(name.to_string()))
    }
}

/// Quotes a string as an SQL literal (standard_conforming_strings on, the default).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests;

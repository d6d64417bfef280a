//! The `customers` fixture shared by the encryption and rules/CLI tests: the
//! example rules, roles admin/support/analyst, a fresh keyring, the table
//! (encrypted columns bytea) and a proxy started with them.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::*;
use pgveil::pgtemp::PasswordEncryption;

pub const ADMIN: &str = "admin";
pub const SUPPORT: &str = "support";
pub const ANALYST: &str = "analyst";
/// No access entry in the rules: `default = "deny"` applies to every column.
pub const OUTSIDER: &str = "auditoutsider";
pub const PW: &str = "Role-Pa55word";

pub const TABLE: &str =
    "CREATE TABLE public.customers (id bigserial PRIMARY KEY, full_name text NOT NULL, \
     email bytea, ssn bytea, phone bytea, birth_date bytea, card_number bytea); \
     GRANT ALL ON public.customers, public.customers_id_seq TO admin, support, analyst, auditoutsider;";

pub fn rules_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/rules"))
}

pub fn pgveil(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgveil"))
        .args(args)
        .output()
        .expect("run pgveil")
}

/// Cluster-wide roles, created once per test binary.
pub fn cluster() -> &'static Cluster {
    static ROLES: OnceLock<()> = OnceLock::new();
    let c = shared();
    ROLES.get_or_init(|| {
        for r in [ADMIN, SUPPORT, ANALYST, OUTSIDER] {
            c.pg.create_login_role(r, PW, PasswordEncryption::Scram)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    });
    c
}

pub struct Env {
    pub db: String,
    pub proxy: Proxy,
    pub keyring: PathBuf,
    pub _dir: tempfile::TempDir,
}

/// A fresh keyring in `dir` (made by `pgveil keygen`, as an operator would).
pub fn keygen(dir: &std::path::Path) -> PathBuf {
    let keyring = dir.join("keyring.toml");
    let out = pgveil(&["keygen", "--out", keyring.to_str().expect("utf8 path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    keyring
}

/// The proxy under the repository's example rules with `keyring`, plus `extra` flags.
pub fn proxy_with_rules(c: &Cluster, keyring: &std::path::Path, extra: &[&str]) -> Proxy {
    let rules = rules_dir();
    let mut args = vec![
        "--rules",
        rules.to_str().expect("utf8 path"),
        "--keyring",
        keyring.to_str().expect("utf8 path"),
    ];
    args.extend_from_slice(extra);
    Proxy::start(&c.url(), &args)
}

pub fn setup(tag: &str) -> Env {
    let c = cluster();
    let db = c.fresh_db(tag);
    c.sql(&db, TABLE);
    let dir = tempfile::tempdir().expect("tempdir");
    let keyring = keygen(dir.path());
    let proxy = proxy_with_rules(c, &keyring, &[]);
    Env {
        db,
        proxy,
        keyring,
        _dir: dir,
    }
}

pub async fn as_role(env: &Env, role: &str) -> tokio_postgres::Client {
    connect(env.proxy.port, &env.db, role, PW)
        .await
        .unwrap_or_else(|e| panic!("connect as {role}: {e}\n{}", env.proxy.log()))
}

pub const ALICE: (&str, &str, &str, &str, &str) = (
    "alice@example.com",
    "123-45-6789",
    "+1-202-555-0143",
    "1984-07-19",
    "4111 1111 1111 1111",
);

pub async fn insert_alice(c: &tokio_postgres::Client) {
    let bd = chrono::NaiveDate::parse_from_str(ALICE.3, "%Y-%m-%d").unwrap();
    let n = c
        .execute(
            "INSERT INTO customers (full_name, email, ssn, phone, birth_date, card_number) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&"Alice Smith", &ALICE.0, &ALICE.1, &ALICE.2, &bd, &ALICE.4],
        )
        .await
        .expect("insert through the proxy");
    assert_eq!(n, 1);
}

static BINARY_PROXY_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn kill_binary_proxy() {
    let pid = BINARY_PROXY_PID.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: plain syscall on the pid of the proxy this binary started.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// One proxy under the example rules (fresh keyring) shared by every test of
/// a binary: it and its keyring outlive the tests, and it is killed at exit.
/// Returns its port.
pub fn proxy_for_binary(c: &Cluster) -> u16 {
    let dir = tempfile::tempdir().expect("tempdir");
    let keyring = keygen(dir.path());
    let proxy = proxy_with_rules(c, &keyring, &[]);
    let port = proxy.port;
    BINARY_PROXY_PID.store(proxy.pid(), std::sync::atomic::Ordering::SeqCst);
    // SAFETY: registers a plain extern "C" fn that kills our own child at exit.
    unsafe {
        libc::atexit(kill_binary_proxy);
    }
    std::mem::forget(proxy);
    std::mem::forget(dir);
    port
}

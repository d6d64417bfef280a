//! The deployment artifacts against a real pgveil: every metric name the Grafana dashboard
//! and the Prometheus alerts use is exposed by /metrics after real traffic; the container
//! contract (env-only configuration, shell-less probe, Secret-mounted keyring modes); the
//! drain that load balancers rely on; logs fit for a log shipper.

mod common;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::customers::*;
use common::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every `pgveil_*` identifier in `text`.
fn pgveil_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("pgveil_") {
        let boundary = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if boundary {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// The sample names a /metrics body exposes (histograms as `_bucket`, `_sum`, `_count`).
fn exposed(body: &str) -> BTreeSet<String> {
    let body = body.split("\r\n\r\n").nth(1).unwrap_or(body);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_only_metrics_pgveil_exposes() {
    let c = cluster();
    let db = c.fresh_db("deploy_names");
    c.sql(&db, TABLE);
    let dir = tempfile::tempdir().unwrap();
    let keyring = keygen(dir.path());
    let audit = dir.path().join("audit");
    let proxy = proxy_with_rules(c, &keyring, &["--audit-dir", audit.to_str().unwrap()]);
    // Traffic that creates every labelled series: encryption (admin insert), decryption and
    // masks (support read), a refusal (a role the rules deny), an error, a reload.
    let admin = connect(proxy.port, &db, ADMIN, PW).await.unwrap();
    insert_alice(&admin).await;
    admin.simple_query("SELECT * FROM customers").await.unwrap();
    let support = connect(proxy.port, &db, SUPPORT, PW).await.unwrap();
    support
        .simple_query("SELECT full_name, email, ssn FROM customers")
        .await
        .unwrap();
    let outsider = connect(proxy.port, &db, OUTSIDER, PW).await.unwrap();
    let refused = outsider.simple_query("SELECT ssn FROM customers").await;
    assert!(refused.is_err(), "the rules deny this role");
    let _ = admin.simple_query("SELECT 1/0").await;
    proxy.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || {
            metric(proxy.metrics_port, "pgveil_rules_reloads_total") >= 1.0
        }),
        "SIGHUP reload not counted"
    );
    let (status, body) = http_get(proxy.metrics_port, "/metrics");
    assert_eq!(status, 200);
    let have = exposed(&body);
    for needed in [
        "pgveil_crypto_operations_total",
        "pgveil_masked_values_total",
        "pgveil_statements_refused_total",
        "pgveil_audit_fsync_seconds_bucket",
    ] {
        assert!(have.contains(needed), "traffic did not create {needed}");
    }

    let dashboard = std::fs::read_to_string(repo("deploy/grafana/pgveil.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let panels = json["panels"].as_array().expect("panels");
    let queries: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(queries.len() >= 20, "dashboard lost its queries");
    let alerts = std::fs::read_to_string(repo("deploy/prometheus/pgveil-alerts.yml")).unwrap();
    for (what, text) in [
        ("dashboard", dashboard.as_str()),
        ("alerts", alerts.as_str()),
    ] {
        let used = pgveil_names(text);
        assert!(
            used.len() >= 10,
            "{what}: too few metric names found: {used:?}"
        );
        let unknown: Vec<&String> = used.iter().filter(|n| !have.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "{what} uses metric names /metrics does not expose: {unknown:?}\nexposed: {have:?}"
        );
    }
}

/// `pgveil serve` with exactly these arguments and environment (nothing inherited that
/// starts with PGVEIL_), its log in `log`.
fn serve(args: &[&str], envs: &[(&str, String)], log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgveil"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PGVEIL_") || k == "NO_COLOR" {
            cmd.env_remove(k);
        }
    }
    cmd.arg("serve")
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f);
    cmd.spawn().expect("spawn pgveil")
}

fn wait_listening(child: &mut Child, log: &Path) {
    let ok = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("listening on")
            || matches!(child.try_wait(), Ok(Some(_)))
    });
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        ok && text.contains("listening on"),
        "pgveil did not start:\n{text}"
    );
}

fn refused(port: u16) -> bool {
    matches!(
        TcpStream::connect(("127.0.0.1", port)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_only_configuration_and_precedence_flag_env_file() {
    let c = cluster();
    let db = c.fresh_db("deploy_env");
    let dir = tempfile::tempdir().unwrap();
    let keyring = keygen(dir.path());
    let log = dir.path().join("env.log");
    let (listen, metrics) = (free_port(), free_port());
    // Environment only, as a container would run it.
    let envs = vec![
        ("PGVEIL_LISTEN", format!("127.0.0.1:{listen}")),
        ("PGVEIL_UPSTREAM", c.url()),
        ("PGVEIL_METRICS_LISTEN", format!("127.0.0.1:{metrics}")),
        ("PGVEIL_RULES", rules_dir().display().to_string()),
        ("PGVEIL_KEYRING_FILE", keyring.display().to_string()),
        ("PGVEIL_LOG_FORMAT", "json".into()),
        ("PGVEIL_MAX_CONNECTIONS", "1".into()),
    ];
    let mut child = serve(&[], &envs, &log);
    wait_listening(&mut child, &log);
    let child = Killed(child);
    let client = connect(listen, &db, APP_USER, APP_PASSWORD).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    // PGVEIL_MAX_CONNECTIONS=1 is in force: a second client is turned away.
    let second = connect(listen, &db, APP_USER, APP_PASSWORD).await;
    assert_eq!(
        second.err().as_ref().and_then(sqlstate).as_deref(),
        Some("53300")
    );
    assert!(
        metric(metrics, "pgveil_rules_tagged_columns") >= 1.0,
        "PGVEIL_RULES ignored"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.trim_start().starts_with('{'),
        "PGVEIL_LOG_FORMAT ignored:\n{text}"
    );
    drop(child);

    // Precedence: a flag beats the environment, the environment beats the file, and the
    // file still fills what neither gives.
    let (file_listen, env_listen, flag_listen) = (free_port(), free_port(), free_port());
    let (file_metrics, env_metrics) = (free_port(), free_port());
    let cfg = dir.path().join("pgveil.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{file_listen}\"\nmetrics_listen = \"127.0.0.1:{file_metrics}\"\nupstream = \"{}\"\nmax_connections = 7\n",
            c.url()
        ),
    )
    .unwrap();
    let envs = vec![
        ("PGVEIL_CONFIG", cfg.display().to_string()),
        ("PGVEIL_LISTEN", format!("127.0.0.1:{env_listen}")),
        ("PGVEIL_METRICS_LISTEN", format!("127.0.0.1:{env_metrics}")),
    ];
    let flag = format!("127.0.0.1:{flag_listen}");
    let log2 = dir.path().join("prec.log");
    let mut child = serve(&["--listen", &flag], &envs, &log2);
    wait_listening(&mut child, &log2);
    let _child = Killed(child);
    assert!(!refused(flag_listen), "flag address not listening");
    assert!(
        refused(env_listen),
        "env address used although a flag was given"
    );
    assert!(
        refused(file_listen),
        "file address used although env and flag were given"
    );
    let (status, _) = http_get(env_metrics, "/healthz");
    assert_eq!(status, 200, "PGVEIL_METRICS_LISTEN should beat the file");
    assert!(refused(file_metrics));
    // The file's upstream is used (no flag, no env): a session works end to end.
    let client = connect(flag_listen, &db, APP_USER, APP_PASSWORD)
        .await
        .unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_connections_within_a_second_while_a_session_finishes() {
    let c = cluster();
    let db = c.fresh_db("deploy_drain");
    c.sql(&db, "CREATE TABLE d(x int); GRANT ALL ON d TO PUBLIC;");
    let mut p = Proxy::start(&c.url(), &["--shutdown-timeout", "20"]);
    let client = connect(p.port, &db, APP_USER, APP_PASSWORD).await.unwrap();
    client
        .batch_execute("BEGIN; INSERT INTO d VALUES (1)")
        .await
        .unwrap();
    assert_eq!(http_get(p.metrics_port, "/readyz").0, 200);
    let t0 = Instant::now();
    p.signal(libc::SIGTERM);
    let port = p.port;
    let closed = wait_until(Duration::from_secs(1), || refused(port));
    assert!(
        closed,
        "listener still open {:?} after SIGTERM",
        t0.elapsed()
    );
    assert_eq!(
        http_get(p.metrics_port, "/readyz").0,
        503,
        "/readyz must say 503 while draining"
    );
    assert_eq!(metric(p.metrics_port, "pgveil_ready"), 0.0);
    assert!(p.is_alive(), "exited before the open transaction finished");
    client
        .batch_execute("INSERT INTO d VALUES (2); COMMIT")
        .await
        .unwrap();
    drop(client);
    let status = tokio::task::block_in_place(|| p.wait_exit(Duration::from_secs(15)));
    assert!(status.expect("did not exit after the drain").success());
    assert_eq!(c.sql(&db, "SELECT count(*) FROM d").trim(), "2");
}

#[test]
fn logs_to_a_file_have_no_escape_codes() {
    let c = shared();
    // Human format, debug level: the most decorated output there is.
    let p = Proxy::start_with_env(&c.url(), &[], &[("PGVEIL_LOG", "debug")]);
    let _ = TcpStream::connect(("127.0.0.1", p.port));
    std::thread::sleep(Duration::from_millis(200));
    let log = p.log();
    assert!(log.contains("listening on"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a non-TTY log:\n{log:?}"
    );
}

/// Under a pseudo-terminal (util-linux `script`) colour is on, and NO_COLOR turns it off.
/// Proves the non-TTY test above tests the TTY check, not a build without colour.
#[test]
fn no_color_is_honoured_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: util-linux `script` not installed; no pseudo-terminal to test with");
        return;
    }
    // pgveil logs "rules loaded", then fails to bind the taken port and exits.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let run = |no_color: bool| -> String {
        let bin = env!("CARGO_BIN_EXE_pgveil");
        let inner = format!("{bin} serve --listen {addr} --metrics-listen off 2>&1; true");
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &inner, "/dev/null"])
            .env_remove("NO_COLOR")
            .env("PGVEIL_LOG", "info")
            .stdin(Stdio::null());
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        let out = cmd.output().expect("script");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = run(false);
    assert!(coloured.contains("rules loaded"), "{coloured:?}");
    assert!(
        coloured.contains('\u{1b}'),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = run(true);
    assert!(plain.contains("rules loaded"), "{plain:?}");
    assert!(!plain.contains('\u{1b}'), "NO_COLOR ignored: {plain:?}");
}

#[test]
fn keyring_secret_modes_0440_served_0444_refused() {
    let c = shared();
    let dir = tempfile::tempdir().unwrap();
    let keyring = keygen(dir.path());
    let k = keyring.to_str().unwrap();
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o440)).unwrap();
    let p = Proxy::start(&c.url(), &["--keyring", k]);
    assert!(p.log().contains("listening on"));
    drop(p);
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o444)).unwrap();
    let log = dir.path().join("refused.log");
    let mut child = serve(
        &[
            "--keyring",
            k,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
        ],
        &[],
        &log,
    );
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !status.success(),
        "served a world-readable keyring:\n{text}"
    );
    assert!(
        text.contains("0444") && text.contains("chmod 600"),
        "{text}"
    );
}

#[test]
fn probe_answers_for_the_container_healthcheck() {
    let c = shared();
    let p = Proxy::start(&c.url(), &[]);
    let probe = |addr: String, path: &str| {
        Command::new(env!("CARGO_BIN_EXE_pgveil"))
            .args(["probe", "--addr", &addr, "--path", path])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(
        probe(format!("0.0.0.0:{}", p.metrics_port), "/healthz"),
        Some(0)
    );
    assert_eq!(
        probe(format!("127.0.0.1:{}", p.metrics_port), "/readyz"),
        Some(0)
    );
    assert_eq!(
        probe(format!("127.0.0.1:{}", p.metrics_port), "/nope"),
        Some(1)
    );
    assert_eq!(
        probe(format!("127.0.0.1:{}", free_port()), "/healthz"),
        Some(1)
    );
}

//! One table per `SHOW`, built from what the console may see: the session
//! registry, the policy in force, the audit handle and the configuration.
//! Each is text (`name | value` where the answer is a list of facts), so
//! `psql` and scripts read them alike.

use std::collections::BTreeSet;
use std::time::SystemTime;

use super::commands::Command;
use super::registry::Registry;
use crate::audit::{Audit, Durability, Timestamp};
use crate::config::Config;
use crate::metrics::metrics;
use crate::protocol::results::TextTable;
use crate::snapshot::SnapshotStore;

/// Everything the console reads. Borrowed from the server's shared state.
pub struct ConsoleEnv<'a> {
    pub registry: &'a Registry,
    pub policy: &'a SnapshotStore,
    pub audit: Option<&'a Audit>,
    pub config: &'a Config,
}

/// The table answering `cmd` (not `Empty` or `Reload`, which have none).
pub fn table(cmd: Command, env: &ConsoleEnv<'_>) -> TextTable {
    match cmd {
        Command::Clients => clients(env.registry),
        Command::Stats => stats(),
        Command::Rules => rules(env.policy),
        Command::Keys => keys(env.policy),
        Command::Audit => audit(env.audit, env.config),
        Command::Config => config(env.config),
        Command::Version => version(),
        Command::Help | Command::Empty | Command::Reload => help(),
    }
}

fn time(t: SystemTime) -> String {
    Timestamp::from_system_time(t).to_string()
}

fn some(s: impl ToString) -> Option<String> {
    Some(s.to_string())
}

/// Who is connected: one row per authenticated session (the console's own
/// included). Names and addresses only, as `pg_stat_activity` shows them.
pub fn clients(registry: &Registry) -> TextTable {
    let mut t = TextTable::new(&[
        "id",
        "client_addr",
        "login_role",
        "database",
        "application_name",
        "state",
        "connected_since",
        "statements",
        "rules_version",
    ]);
    for s in registry.snapshot() {
        t.push(vec![
            some(s.who.id),
            s.who.peer.map(|p| p.to_string()),
            some(&s.who.user),
            some(&s.who.database),
            some(&s.who.application),
            some(s.state().as_str()),
            some(time(s.since)),
            some(s.statements()),
            some(s.rules_version().as_str()),
        ]);
    }
    t
}

/// Every pgveil counter and gauge, as `/metrics` would show them now
/// (histograms as their count and sum). Process metrics are left to
/// `/metrics`.
pub fn stats() -> TextTable {
    use prometheus::proto::MetricType;
    let mut t = TextTable::new(&["name", "value"]);
    for fam in metrics().registry.gather() {
        let name = fam.name();
        if !name.starts_with("pgveil_") || name.starts_with("pgveil_process_") {
            continue;
        }
        for m in fam.get_metric() {
            let labels: Vec<String> = m
                .get_label()
                .iter()
                .map(|l| format!("{}=\"{}\"", l.name(), l.value()))
                .collect();
            let series = if labels.is_empty() {
                name.to_string()
            } else {
                format!("{name}{{{}}}", labels.join(","))
            };
            match fam.get_field_type() {
                MetricType::COUNTER => t.kv(&series, m.get_counter().get_value()),
                MetricType::GAUGE => t.kv(&series, m.get_gauge().get_value()),
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    t.kv(&format!("{series}_count"), h.get_sample_count());
                    t.kv(&format!("{series}_sum"), h.get_sample_sum());
                }
                _ => {}
            }
        }
    }
    t
}

/// The rules in force: one row per tagged column with its access per role.
/// The version and the files are columns too, so one query answers all.
pub fn rules(policy: &SnapshotStore) -> TextTable {
    let p = policy.load();
    let mut t = TextTable::new(&[
        "rules_version",
        "column",
        "type",
        "encrypted",
        "class",
        "access",
        "default",
        "file",
    ]);
    let files: BTreeSet<&str> = p
        .rules
        .columns()
        .iter()
        .map(|c| c.source.file.as_str())
        .collect();
    if files.is_empty() {
        t.push(vec![some(&p.rules.version)]);
    }
    for c in p.rules.columns() {
        let access: Vec<String> = c.access.iter().map(|(r, a)| format!("{r}={a}")).collect();
        t.push(vec![
            some(&p.rules.version),
            some(c.qualified()),
            some(c.ty),
            some(
                c.encrypt
                    .map_or("no".to_string(), |m| format!("{m:?}").to_lowercase()),
            ),
            some(&c.class),
            some(access.join(", ")),
            some(c.default),
            some(format!("{}:{}", c.source.file, c.source.line)),
        ]);
    }
    t
}

/// Key ids, creation times and which one new values use. Never material:
/// the console only ever sees the ids the crypto snapshot keeps.
pub fn keys(policy: &SnapshotStore) -> TextTable {
    let p = policy.load();
    let mut t = TextTable::new(&["key_id", "created", "active"]);
    if let Some(c) = p.crypto.as_ref() {
        for id in c.key_ids() {
            t.push(vec![
                some(id),
                c.key_created(*id)
                    .map(|s| Timestamp(s.saturating_mul(1_000_000)).to_string()),
                some(*id == c.active_key_id()),
            ]);
        }
    }
    t
}

/// The audit stream's head, health, queue and (when shipping) lag.
pub fn audit(audit: Option<&Audit>, config: &Config) -> TextTable {
    let mut t = TextTable::new(&["name", "value"]);
    let Some(a) = audit else {
        t.kv("enabled", false);
        return t;
    };
    t.kv("enabled", true);
    t.kv("healthy", a.is_healthy());
    t.kv(
        "durability",
        match a.durability() {
            Durability::Strict => "strict".to_string(),
            Durability::Buffered { interval } => format!("buffered ({} ms)", interval.as_millis()),
        },
    );
    let head = a.metrics().chain_head_seq.get();
    let durable = a.durable_seq().get();
    t.kv("head_seq", head);
    t.kv("durable_seq", durable);
    // Written but not yet fsynced (buffered durability; ~0 when strict).
    t.kv(
        "fsync_lag_records",
        u64::try_from(head).unwrap_or(0).saturating_sub(durable),
    );
    t.kv("queue_depth", a.queue_depth());
    t.kv("records_lost", a.metrics().records_lost.get());
    if let Some(dir) = &config.audit_dir {
        t.kv("dir", dir.display());
    }
    if config.audit_ship.is_some() {
        let m = metrics();
        t.kv("ship_connected", m.audit_ship_connected.get() == 1);
        t.kv("ship_head_seq", m.audit_ship_head_seq.get());
        t.kv("ship_lag_records", m.audit_ship_lag_records.get());
        t.kv("ship_lag_seconds", m.audit_ship_lag_seconds.get());
    }
    t
}

fn opt_path(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref()
        .map_or_else(|| "(none)".to_string(), |p| p.display().to_string())
}

fn secs(d: Option<std::time::Duration>) -> String {
    d.map_or_else(|| "off".to_string(), |d| d.as_secs().to_string())
}

/// The running configuration. Paths are shown, file contents never (the
/// keyring and the chain key are secrets).
pub fn config(c: &Config) -> TextTable {
    let mut t = TextTable::new(&["name", "value"]);
    t.kv("listen", c.listen);
    t.kv(
        "upstream",
        format!(
            "{}:{} sslmode={}",
            c.upstream.host,
            c.upstream.port,
            c.upstream.sslmode.as_str()
        ),
    );
    t.kv(
        "metrics_listen",
        c.metrics_listen
            .map_or("off".to_string(), |a| a.to_string()),
    );
    t.kv("rules", opt_path(&c.rules));
    t.kv("keyring", opt_path(&c.keyring));
    t.kv("audit_dir", opt_path(&c.audit_dir));
    t.kv("max_connections", c.max_connections);
    t.kv("max_message_bytes", c.max_message_bytes);
    t.kv("shutdown_timeout_secs", c.shutdown_timeout.as_secs());
    t.kv("connect_timeout_secs", c.connect_timeout.as_secs());
    t.kv("workers", c.workers);
    t.kv("catalog_max_age_ms", c.catalog_max_age.as_millis());
    t.kv("log_format", format!("{:?}", c.log_format).to_lowercase());
    t.kv("tls", c.tls_cert.is_some());
    t.kv("require_client_tls", c.require_client_tls);
    t.kv("admin_roles", c.admin_roles.join(","));
    t.kv("admin_auth_database", &c.admin_auth_database);
    t.kv("client_idle_timeout_secs", secs(c.client_idle_timeout));
    t.kv("tcp_keepalive_secs", secs(c.tcp_keepalive));
    t
}

pub fn version() -> TextTable {
    let mut t = TextTable::new(&["version"]);
    t.push(vec![some(format!(
        "pgveil {} (commit {})",
        env!("CARGO_PKG_VERSION"),
        option_env!("PGVEIL_GIT_COMMIT").unwrap_or("unknown")
    ))]);
    t
}

pub fn help() -> TextTable {
    let mut t = TextTable::new(&["command", "answers"]);
    for (c, what) in [
        (
            "SHOW CLIENTS",
            "sessions: address, role, application, state, since, statements, rules version",
        ),
        ("SHOW STATS", "every pgveil counter and gauge"),
        (
            "SHOW RULES",
            "tagged columns of the rules in force and the access of each role",
        ),
        (
            "SHOW KEYS",
            "key ids, creation times, the active key (never material)",
        ),
        (
            "SHOW AUDIT",
            "audit head sequence, health, queue depth, shipping lag",
        ),
        ("SHOW CONFIG", "the running configuration"),
        ("SHOW VERSION", "pgveil's version"),
        ("RELOAD", "re-read rules and keyring (as SIGHUP does)"),
    ] {
        t.push(vec![some(c), some(what)]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_lists_pgveil_series_only() {
        metrics().connections_total.inc_by(0);
        let t = stats();
        assert!(t
            .rows
            .iter()
            .any(|r| r[0].as_deref() == Some("pgveil_client_connections_total")));
        assert!(t.rows.iter().all(|r| r[0]
            .as_deref()
            .is_some_and(|n| n.starts_with("pgveil_") && !n.starts_with("pgveil_process_"))));
    }

    #[test]
    fn an_empty_policy_still_names_its_version() {
        let store = SnapshotStore::fixed(crate::snapshot::Snapshot::empty());
        let t = rules(&store);
        assert_eq!(t.rows.len(), 1);
        assert!(keys(&store).rows.is_empty());
    }
}

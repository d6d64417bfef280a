//! The policy snapshot every statement is judged against: rules, the keys
//! derived for them, and the cheap name matcher that lets statements which
//! touch no tagged table skip parsing altogether.
//!
//! A snapshot is immutable. Reload (SIGHUP, or a change in the rules
//! directory) builds a complete new one, validates it, and swaps it in with
//! one atomic pointer store; a statement keeps the snapshot it started with.
//! An invalid edit leaves the old snapshot in place.

pub mod overlay;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use thiserror::Error;

use crate::crypto::{CryptoError, CryptoSnapshot, Keyring, KeyringError};
use crate::metrics::metrics;
use crate::rules::{load_dir, render_report, ColumnRule, Diagnostic, LogicalType, RuleSet};
use crate::sql::{Encryptor, TaggedNames};

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("invalid rules:\n{}", render_report(.0))]
    Rules(Vec<Diagnostic>),
    #[error("{0}")]
    Keyring(#[from] KeyringError),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("the rules encrypt {0} but no keyring is configured: pass --keyring FILE (made by `pgveil keygen`) or set PGVEIL_KEYRING")]
    NoKeyring(String),
}

pub struct Snapshot {
    pub rules: Arc<RuleSet>,
    /// Shared with the per-session serving snapshots built from this one
    /// ([`Snapshot::serving`]).
    pub crypto: Option<Arc<CryptoSnapshot>>,
    pub names: TaggedNames,
}

/// Names the rules version only: keys never appear in logs.
impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("rules_version", &self.rules.version)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    pub fn empty() -> Self {
        let rules = Arc::new(RuleSet::default());
        Snapshot {
            names: TaggedNames::new(&rules),
            rules,
            crypto: None,
        }
    }

    pub fn build(rules: RuleSet, keyring: Option<&Keyring>) -> Result<Self, SnapshotError> {
        let crypto = match keyring {
            Some(k) => Some(Arc::new(CryptoSnapshot::new(k, &rules)?)),
            None => {
                if let Some(c) = rules.columns().iter().find(|c| c.encrypt.is_some()) {
                    return Err(SnapshotError::NoKeyring(c.qualified()));
                }
                None
            }
        };
        Ok(Snapshot {
            names: TaggedNames::new(&rules),
            rules: Arc::new(rules),
            crypto,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The same keys under other rules: a session's serving rules while a
    /// conversion is in flight (`migrate::overlay`). The keys were derived
    /// for the final rules; the serving rules only take `encrypt` away from
    /// columns and add denied ones, so no cipher is missing that a serving
    /// rule would need.
    pub fn serving(&self, rules: RuleSet) -> Snapshot {
        Snapshot {
            names: TaggedNames::new(&rules),
            rules: Arc::new(rules),
            crypto: self.crypto.clone(),
        }
    }
}

impl Snapshot {
    /// The column's cipher, counting the encryption about to happen.
    fn encrypting_cipher(
        &self,
        rule: &ColumnRule,
    ) -> Result<&Arc<crate::crypto::ColumnCipher>, String> {
        let c = self
            .crypto
            .as_ref()
            .and_then(|c| c.cipher(&rule.table, &rule.name))
            .ok_or_else(|| format!("no key for {}", rule.qualified()))?;
        metrics()
            .crypto_ops
            .with_label_values(&["encrypt", &rule.class])
            .inc();
        Ok(c)
    }
}

/// Encrypts literals and parameters for the SQL layer with this snapshot's keys.
impl Encryptor for Snapshot {
    fn encrypt_for_write(&self, rule: &ColumnRule, canonical: &[u8]) -> Result<Vec<u8>, String> {
        self.encrypting_cipher(rule)?
            .encrypt(canonical)
            .map_err(|e| e.to_string())
    }

    fn live_versions(&self, rule: &ColumnRule) -> usize {
        self.crypto
            .as_ref()
            .and_then(|c| c.cipher(&rule.table, &rule.name))
            .map_or(1, |c| c.key_ids().len())
    }

    fn encrypt_for_match(
        &self,
        rule: &ColumnRule,
        canonical: &[u8],
    ) -> Result<Vec<Vec<u8>>, String> {
        self.encrypting_cipher(rule)?
            .encrypt_all_versions(canonical)
            .map_err(|e| e.to_string())
    }
}

/// Value normaliser handed to the SQL layer.
pub fn canonicalize(ty: LogicalType, v: &[u8]) -> Result<Vec<u8>, String> {
    crate::values::canonical_text(ty, v).map_err(|e| e.to_string())
}

/// Where the policy comes from, so it can be rebuilt.
#[derive(Debug, Clone, Default)]
pub struct SnapshotSource {
    pub rules_dir: Option<PathBuf>,
    pub keyring_file: Option<PathBuf>,
}

impl SnapshotSource {
    pub fn load(&self) -> Result<Snapshot, SnapshotError> {
        let rules = match &self.rules_dir {
            Some(d) => load_dir(d).map_err(SnapshotError::Rules)?,
            None => RuleSet::default(),
        };
        let keyring = match &self.keyring_file {
            Some(p) => Some(Keyring::load_file(p)?),
            None => Keyring::from_env()?,
        };
        Snapshot::build(rules, keyring.as_ref())
    }

    /// Newest modification time among the rules files and keyring: a cheap
    /// change detector that needs no inotify dependency.
    fn stamp(&self) -> Option<SystemTime> {
        let mut newest: Option<SystemTime> = None;
        let mut see = |p: &Path| {
            if let Ok(t) = std::fs::metadata(p).and_then(|m| m.modified()) {
                newest = Some(newest.map_or(t, |n| n.max(t)));
            }
        };
        if let Some(d) = &self.rules_dir {
            see(d);
            if let Ok(rd) = std::fs::read_dir(d) {
                for e in rd.flatten() {
                    see(&e.path());
                }
            }
        }
        if let Some(k) = &self.keyring_file {
            see(k);
        }
        newest
    }
}

/// The live policy, swapped atomically on reload.
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
    source: SnapshotSource,
    /// Reloads and key rotations are audit records too.
    audit: std::sync::OnceLock<Option<crate::audit::Audit>>,
}

impl SnapshotStore {
    pub fn new(source: SnapshotSource) -> Result<Self, SnapshotError> {
        let p = source.load()?;
        Ok(SnapshotStore {
            current: ArcSwap::from_pointee(p),
            source,
            audit: std::sync::OnceLock::new(),
        })
    }

    pub fn fixed(p: Snapshot) -> Self {
        SnapshotStore {
            current: ArcSwap::from_pointee(p),
            source: SnapshotSource::default(),
            audit: std::sync::OnceLock::new(),
        }
    }

    pub fn set_audit(&self, audit: Option<crate::audit::Audit>) {
        let _ = self.audit.set(audit);
    }

    fn audit_event(
        &self,
        kind: crate::audit::RecordKind,
        outcome: &str,
        version: &str,
        detail: String,
    ) {
        if let Some(Some(a)) = self.audit.get() {
            let mut r = crate::audit::AuditRecordInput::new(kind, SystemTime::now());
            r.outcome = outcome.to_string();
            r.rules_version = Some(version.to_string());
            r.detail = Some(detail);
            let _ = a.record_nowait(r);
        }
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Validates, then swaps. On error the old policy stays.
    pub fn reload(&self) -> Result<(), SnapshotError> {
        match self.source.load() {
            Ok(p) => {
                let version = p.rules.version.clone();
                let old_key = self
                    .current
                    .load()
                    .crypto
                    .as_ref()
                    .map(|c| c.active_key_id());
                let new_key = p.crypto.as_ref().map(|c| c.active_key_id());
                self.current.store(Arc::new(p));
                metrics().rules_reloads.inc();
                tracing::info!(rules_version = %version, "rules reloaded");
                use crate::audit::RecordKind;
                self.audit_event(
                    RecordKind::RulesReload,
                    "ok",
                    &version,
                    format!("rules version {version}"),
                );
                if old_key != new_key {
                    if let Some(k) = new_key {
                        self.audit_event(
                            RecordKind::KeyRotation,
                            "ok",
                            &version,
                            format!("active key id {k}"),
                        );
                    }
                }
                Ok(())
            }
            Err(e) => {
                metrics().rules_reload_failures.inc();
                tracing::error!(error = %e, "rules reload rejected; keeping the previous rules");
                let version = self.current.load().rules.version.clone();
                self.audit_event(
                    crate::audit::RecordKind::RulesReload,
                    crate::error::sqlstate::CONFIG_FILE_ERROR,
                    &version,
                    "rejected: the new rules or keyring are invalid; previous rules kept".into(),
                );
                Err(e)
            }
        }
    }

    /// Polls the rules directory and keyring for changes and reloads.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut last = self.source.stamp();
        loop {
            tokio::time::sleep(every).await;
            let now = self.source.stamp();
            if now != last {
                last = now;
                let _ = self.reload();
            }
        }
    }
}

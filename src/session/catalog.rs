//! The session's catalog: its effective roles and the schema snapshot of the
//! tagged tables, read over the session's own upstream connection (no extra
//! credentials, and exactly what this role can see), and re-read when it
//! goes stale. The one type, query and reader for both the first load
//! during authentication and every later refresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::policy::RoleSet;
use crate::protocol::rows::text_row;
use crate::schema::{
    catalog_query, dependent_views_query, from_catalog_rows, protected_views_from_rows,
    SchemaSnapshot, SEARCH_PATH_QUERY,
};
use crate::snapshot::Snapshot;

/// Per-session catalog facts: effective roles and the schema snapshot.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub roles: Vec<String>,
    pub schema: Arc<SchemaSnapshot>,
    /// Whether these roles are restricted, memoised per rules version: it is
    /// asked for every statement and every batch of replies.
    restricted: std::sync::OnceLock<(String, bool)>,
}

impl Catalog {
    pub fn new(roles: Vec<String>, schema: SchemaSnapshot) -> Self {
        Catalog {
            roles,
            schema: Arc::new(schema),
            restricted: std::sync::OnceLock::new(),
        }
    }

    /// See [`crate::policy::is_restricted`].
    pub fn restricted(&self, policy: &Snapshot) -> bool {
        match self.restricted.get() {
            Some((v, r)) if *v == policy.rules.version => *r,
            Some(_) => crate::policy::is_restricted(&policy.rules, &self.roles),
            None => {
                let r = crate::policy::is_restricted(&policy.rules, &self.roles);
                let _ = self.restricted.set((policy.rules.version.clone(), r));
                r
            }
        }
    }
}

/// The catalog query: the session's effective roles (login role plus every
/// role it is a member of, directly or not), its search_path, the catalog
/// entries of the tagged tables, and the views that depend on them.
pub fn catalog_sql(policy: &Snapshot) -> String {
    format!(
        "SELECT r.rolname::text FROM pg_catalog.pg_roles r WHERE pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER');\n{};\n{};\n{}",
        SEARCH_PATH_QUERY,
        catalog_query(policy.rules.tables()),
        dependent_views_query(policy.rules.tables())
    )
}

/// The replies to [`catalog_sql`] as they arrive, one backend frame at a time.
#[derive(Debug)]
pub struct CatalogReply {
    results: Vec<Vec<Vec<Option<String>>>>,
    failed: bool,
}

impl Default for CatalogReply {
    fn default() -> Self {
        CatalogReply {
            results: vec![Vec::new()],
            failed: false,
        }
    }
}

impl CatalogReply {
    /// Takes one frame of the reply; true once the ReadyForQuery arrived.
    pub fn feed(&mut self, frame: &[u8]) -> bool {
        match frame.first() {
            Some(b'D') => match (text_row(frame), self.results.last_mut()) {
                (Ok(row), Some(last)) => last.push(row),
                _ => self.failed = true,
            },
            Some(b'C') => self.results.push(Vec::new()),
            Some(b'E') => self.failed = true,
            Some(b'Z') => return true,
            _ => {}
        }
        false
    }

    /// The catalog, or None when any part of the reply failed.
    pub fn finish(&self, login: &str) -> Option<Catalog> {
        let results = &self.results;
        if self.failed || results.len() < 4 {
            return None;
        }
        let members = results[0]
            .iter()
            .filter_map(|r| r.first().cloned().flatten());
        let roles = RoleSet::resolve(login, members).into_vec();
        let sp = results[1]
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_default();
        let mut schema = from_catalog_rows(&sp, &results[2]);
        schema.protected_views = protected_views_from_rows(&results[3]);
        Some(Catalog::new(roles, schema))
    }
}

/// The session's current catalog and when and under what it was read.
#[derive(Debug)]
pub struct SessionCatalog {
    pub current: Arc<Catalog>,
    /// A catalog was read successfully at least once.
    pub loaded: bool,
    /// The DDL epoch and rules version it was read at.
    pub epoch: u64,
    pub version: String,
    pub at: Instant,
}

impl SessionCatalog {
    pub fn new(catalog: Option<Catalog>, epoch: u64, version: String) -> Self {
        SessionCatalog {
            loaded: catalog.is_some(),
            current: Arc::new(catalog.unwrap_or_default()),
            epoch,
            version,
            at: Instant::now(),
        }
    }

    /// Whether it must be re-read: never read, too old, read under other
    /// rules, or DDL went through pgveil since.
    pub fn stale(&self, version: &str, epoch: u64, max_age: Duration) -> bool {
        !self.loaded
            || self.at.elapsed() > max_age
            || self.version != version
            || self.epoch != epoch
    }

    /// Takes a refresh's outcome. A failed refresh keeps the previous
    /// catalog and retries after the usual interval, not on every statement.
    pub fn refreshed(&mut self, fresh: Option<Catalog>, epoch: u64, version: &str) -> bool {
        self.at = Instant::now();
        let Some(c) = fresh else { return false };
        self.current = Arc::new(c);
        self.loaded = true;
        self.epoch = epoch;
        self.version = version.to_string();
        true
    }
}

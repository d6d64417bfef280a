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
    /// Whether the rules name something this schema lacks (a rename), per
    /// rules version: then even plaintext sessions' statements are analysed,
    /// because a write into the new name would store plaintext.
    drifted: std::sync::OnceLock<(String, bool)>,
}

impl Catalog {
    pub fn new(roles: Vec<String>, schema: SchemaSnapshot) -> Self {
        Catalog {
            roles,
            schema: Arc::new(schema),
            restricted: std::sync::OnceLock::new(),
            drifted: std::sync::OnceLock::new(),
        }
    }

    /// See [`crate::policy::is_restricted`].
    pub fn restricted(&self, policy: &Snapshot) -> bool {
        memo(&self.restricted, policy, || {
            crate::policy::is_restricted(&policy.rules, &self.roles)
        })
    }

    /// See [`crate::policy::drift`].
    pub fn drifted(&self, policy: &Snapshot) -> bool {
        memo(&self.drifted, policy, || {
            crate::policy::drift(&policy.rules, &self.schema).is_some()
        })
    }
}

/// A per-rules-version memo: computed once for the version it was first
/// asked under, recomputed (not stored) for any other.
fn memo(
    cell: &std::sync::OnceLock<(String, bool)>,
    policy: &Snapshot,
    f: impl FnOnce() -> bool,
) -> bool {
    match cell.get() {
        Some((v, r)) if *v == policy.rules.version => *r,
        Some(_) => f(),
        None => {
            let r = f();
            let _ = cell.set((policy.rules.version.clone(), r));
            r
        }
    }
}

/// Longest pgveil's own catalog read may take, whatever the session set.
const CATALOG_STATEMENT_TIMEOUT: &str = "10s";

/// The catalog query: the session's search_path, its effective roles (login
/// role plus every role it is a member of, directly or not), the catalog
/// entries of the tagged tables, and the views that depend on them.
///
/// Immune to the session's own settings: it runs with pgveil's timeouts,
/// and after the session's search_path is read, with `pg_catalog` first and
/// `pg_temp` last, so a temporary type or function named like a built-in
/// (`CREATE TYPE pg_temp.text …`) cannot break or bend it. Outside a
/// transaction it is its own read-only transaction; inside the client's
/// transaction (`in_txn`) it runs in a savepoint that is rolled back, so the
/// client's transaction is left exactly as it was (see [`CATALOG_UNDO`] for
/// when the read itself fails).
pub fn catalog_sql(policy: &Snapshot, in_txn: bool) -> String {
    let (open, close) = if in_txn {
        (
            "SAVEPOINT pgveil_catalog",
            "ROLLBACK TO SAVEPOINT pgveil_catalog;\nRELEASE SAVEPOINT pgveil_catalog",
        )
    } else {
        ("BEGIN READ ONLY", "COMMIT")
    };
    format!(
        "{open};\n\
         SET LOCAL statement_timeout = '{CATALOG_STATEMENT_TIMEOUT}';\n\
         SET LOCAL lock_timeout = '{CATALOG_STATEMENT_TIMEOUT}';\n\
         {SEARCH_PATH_QUERY};\n\
         SET LOCAL search_path = pg_catalog, pg_temp;\n\
         SELECT r.rolname::pg_catalog.text FROM pg_catalog.pg_roles r WHERE pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER');\n\
         {};\n{};\n{close}",
        catalog_query(policy.rules.tables()),
        dependent_views_query(policy.rules.tables())
    )
}

/// Sent after a catalog read inside the client's transaction failed: the
/// error aborted the rest of that read, savepoint rollback included, so the
/// client's transaction is restored here.
pub const CATALOG_UNDO: &str =
    "ROLLBACK TO SAVEPOINT pgveil_catalog; RELEASE SAVEPOINT pgveil_catalog";

/// The replies to [`catalog_sql`] as they arrive, one backend frame at a
/// time: one result set per RowDescription (the transaction control and SET
/// commands return none).
#[derive(Debug, Default)]
pub struct CatalogReply {
    results: Vec<Vec<Vec<Option<String>>>>,
    failed: bool,
}

impl CatalogReply {
    /// Takes one frame of the reply; true once the ReadyForQuery arrived.
    pub fn feed(&mut self, frame: &[u8]) -> bool {
        match frame.first() {
            Some(b'T') => self.results.push(Vec::new()),
            Some(b'D') => match (text_row(frame), self.results.last_mut()) {
                (Ok(row), Some(last)) => last.push(row),
                _ => self.failed = true,
            },
            Some(b'E') => self.failed = true,
            Some(b'Z') => return true,
            _ => {}
        }
        false
    }

    /// The catalog, or None when any part of the reply failed.
    pub fn finish(&self, login: &str) -> Option<Catalog> {
        let results = &self.results;
        if self.failed || results.len() != 4 {
            return None;
        }
        let sp = results[0]
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_default();
        let members = results[1]
            .iter()
            .filter_map(|r| r.first().cloned().flatten());
        let roles = RoleSet::resolve(login, members).into_vec();
        let mut schema = from_catalog_rows(&sp, &results[2]);
        schema.protected_views = protected_views_from_rows(&results[3]);
        Some(Catalog::new(roles, schema))
    }
}

/// The session's current catalog and when and under what it was read.
#[derive(Debug)]
pub struct SessionCatalog {
    pub current: Arc<Catalog>,
    /// The last read succeeded. While false, the session has nothing to
    /// judge statements by, and they are refused.
    pub loaded: bool,
    /// The DDL epoch and rules version it was read at.
    pub epoch: u64,
    pub version: String,
    pub at: Instant,
    /// Bumped whenever the rules or the session's roles change: statements,
    /// portals and cursors made under an older generation are checked again
    /// or refused.
    pub generation: u64,
}

impl SessionCatalog {
    pub fn new(catalog: Option<Catalog>, epoch: u64, version: String) -> Self {
        SessionCatalog {
            loaded: catalog.is_some(),
            current: Arc::new(catalog.unwrap_or_default()),
            epoch,
            version,
            at: Instant::now(),
            generation: 0,
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

    /// Takes a refresh's outcome. A failed refresh leaves the session
    /// without a catalog (its statements are refused) and retries before
    /// the next statement: roles may have been revoked, so the previous
    /// catalog proves nothing any more.
    pub fn refreshed(&mut self, fresh: Option<Catalog>, epoch: u64, version: &str) -> bool {
        self.at = Instant::now();
        let Some(c) = fresh else {
            self.loaded = false;
            return false;
        };
        if c.roles != self.current.roles || self.version != version {
            self.generation += 1;
        }
        self.current = Arc::new(c);
        self.loaded = true;
        self.epoch = epoch;
        self.version = version.to_string();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(rows: &[&[&str]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for set in rows {
            out.push(b"T\0\0\0\x06\0\0".to_vec());
            for v in *set {
                let mut w = crate::protocol::rows::DataRowWriter::new(1, 16);
                w.push(Some(v.as_bytes()));
                out.push(w.finish().to_vec());
            }
            out.push(b"C\0\0\0\x0bSELECT 1\0".to_vec());
        }
        out
    }

    #[test]
    fn reply_with_four_result_sets_is_a_catalog() {
        let mut r = CatalogReply::default();
        for f in frames(&[&["public"], &["support", "alice"], &[], &[]]) {
            assert!(!r.feed(&f));
        }
        assert!(r.feed(b"Z\0\0\0\x05I"));
        let c = r.finish("alice").expect("catalog");
        assert_eq!(c.roles, vec!["alice".to_string(), "support".to_string()]);
    }

    #[test]
    fn any_error_or_missing_result_set_is_no_catalog() {
        let mut r = CatalogReply::default();
        for f in frames(&[&["public"], &["alice"], &[]]) {
            r.feed(&f);
        }
        assert!(r.finish("alice").is_none(), "three result sets");
        let mut r = CatalogReply::default();
        for f in frames(&[&["public"], &["alice"], &[], &[]]) {
            r.feed(&f);
        }
        r.feed(b"E\0\0\0\x04");
        assert!(r.finish("alice").is_none(), "an error");
    }

    #[test]
    fn a_failed_refresh_unloads_and_a_role_change_bumps_the_generation() {
        let mut c = SessionCatalog::new(
            Some(Catalog::new(vec!["a".into()], SchemaSnapshot::default())),
            0,
            "v1".into(),
        );
        assert!(c.loaded);
        assert!(!c.refreshed(None, 0, "v1"));
        assert!(!c.loaded);
        assert!(c.refreshed(
            Some(Catalog::new(vec!["a".into()], SchemaSnapshot::default())),
            0,
            "v1"
        ));
        assert_eq!(c.generation, 0, "same roles, same rules");
        c.refreshed(
            Some(Catalog::new(
                vec!["a".into(), "admin".into()],
                SchemaSnapshot::default(),
            )),
            0,
            "v1",
        );
        assert_eq!(c.generation, 1);
        c.refreshed(
            Some(Catalog::new(
                vec!["a".into(), "admin".into()],
                SchemaSnapshot::default(),
            )),
            0,
            "v2",
        );
        assert_eq!(c.generation, 2);
    }
}

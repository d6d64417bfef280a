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
use crate::snapshot::overlay::{self, InFlight, OVERLAY_MAX_AGE};
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

    /// See [`crate::policy::is_restricted`]. While a conversion is in
    /// flight every session is restricted (its shadow column is denied to
    /// everyone), whether `policy` is the shared snapshot or the session's
    /// serving one: the startup checks ask with the shared one.
    pub fn restricted(&self, policy: &Snapshot) -> bool {
        memo(&self.restricted, policy, || {
            crate::policy::is_restricted(&policy.rules, &self.roles)
                || !overlay::in_flight(&policy.rules, &self.schema).is_empty()
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
    /// The DDL epoch and (shared) rules version it was read at.
    pub epoch: u64,
    pub version: String,
    pub at: Instant,
    /// Bumped whenever the rules, the session's roles or the conversions in
    /// flight change: statements, portals and cursors made under an older
    /// generation are checked again or refused.
    pub generation: u64,
    /// Columns on the shadow path in this snapshot (`snapshot::overlay`).
    pub in_flight: Vec<InFlight>,
    /// The serving snapshot for `in_flight`, and the shared snapshot it was
    /// built from.
    serving: Option<(Arc<Snapshot>, Arc<Snapshot>)>,
}

impl SessionCatalog {
    pub fn new(catalog: Option<Catalog>, epoch: u64, policy: &Snapshot) -> Self {
        let in_flight = catalog
            .as_ref()
            .map(|c| overlay::in_flight(&policy.rules, &c.schema))
            .unwrap_or_default();
        SessionCatalog {
            loaded: catalog.is_some(),
            current: Arc::new(catalog.unwrap_or_default()),
            epoch,
            version: policy.rules.version.clone(),
            at: Instant::now(),
            generation: 0,
            in_flight,
            serving: None,
        }
    }

    /// The policy this session's statements and replies are judged by: the
    /// shared snapshot, or while conversions are in flight in this
    /// session's catalog, the same keys under the serving rules
    /// (`snapshot::overlay::serving_rules`). Every rules lookup of the
    /// session goes through the snapshot this returns; only the catalog
    /// read itself (which tables, which version) uses the shared one.
    pub fn policy(&mut self, shared: &Arc<Snapshot>) -> Arc<Snapshot> {
        if self.in_flight.is_empty() {
            return shared.clone();
        }
        if let Some((base, serving)) = &self.serving {
            if Arc::ptr_eq(base, shared) {
                return serving.clone();
            }
        }
        // Rules reloaded since the catalog was read: the catalog is stale and
        // is re-read before the next statement; until then, the new rules
        // over the same snapshot.
        let in_flight = overlay::in_flight(&shared.rules, &self.current.schema);
        if in_flight != self.in_flight {
            self.in_flight = in_flight;
            self.generation += 1;
            if self.in_flight.is_empty() {
                self.serving = None;
                return shared.clone();
            }
        }
        let serving =
            Arc::new(shared.serving(overlay::serving_rules(&shared.rules, &self.in_flight)));
        self.serving = Some((shared.clone(), serving.clone()));
        serving
    }

    /// Why a RowDescription cannot be served under this snapshot (see
    /// `snapshot::overlay::reply_conflict`). Decoded only while a
    /// conversion is in flight: otherwise there is nothing to compare.
    pub fn reply_conflict(&self, frame: &[u8]) -> Option<&'static str> {
        if self.in_flight.is_empty() {
            return None;
        }
        let Ok(rd) = crate::protocol::messages::decode_row_description(frame) else {
            return Some("an undecodable RowDescription while a conversion is in flight");
        };
        overlay::reply_conflict(
            &self.current.schema,
            &self.in_flight,
            rd.fields
                .iter()
                .map(|f| (f.table_id as u32, f.column_id, f.type_id)),
        )
    }

    /// Whether it must be re-read: never read, too old, read under other
    /// rules, or DDL went through pgveil since. While a conversion is in
    /// flight it is never kept longer than [`OVERLAY_MAX_AGE`], which bounds
    /// the window after a swap (see `snapshot::overlay`).
    pub fn stale(&self, version: &str, epoch: u64, max_age: Duration) -> bool {
        let max_age = if self.in_flight.is_empty() {
            max_age
        } else {
            max_age.min(OVERLAY_MAX_AGE)
        };
        !self.loaded
            || self.at.elapsed() > max_age
            || self.version != version
            || self.epoch != epoch
    }

    /// Takes a refresh's outcome, read under the shared `policy`. A failed
    /// refresh leaves the session without a catalog (its statements are
    /// refused) and retries before the next statement: roles may have been
    /// revoked, so the previous catalog proves nothing any more.
    pub fn refreshed(&mut self, fresh: Option<Catalog>, epoch: u64, policy: &Snapshot) -> bool {
        self.at = Instant::now();
        let Some(c) = fresh else {
            self.loaded = false;
            return false;
        };
        let version = &policy.rules.version;
        let in_flight = overlay::in_flight(&policy.rules, &c.schema);
        if c.roles != self.current.roles || self.version != *version || in_flight != self.in_flight
        {
            self.generation += 1;
        }
        if in_flight != self.in_flight {
            self.serving = None;
        }
        self.in_flight = in_flight;
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

    fn policy(version: &str) -> Snapshot {
        let mut rules = crate::rules::RuleSet::default();
        rules.version = version.into();
        Snapshot::build(rules, None).expect("snapshot")
    }

    #[test]
    fn a_failed_refresh_unloads_and_a_role_change_bumps_the_generation() {
        let (v1, v2) = (policy("v1"), policy("v2"));
        let mut c = SessionCatalog::new(
            Some(Catalog::new(vec!["a".into()], SchemaSnapshot::default())),
            0,
            &v1,
        );
        assert!(c.loaded);
        assert!(!c.refreshed(None, 0, &v1));
        assert!(!c.loaded);
        assert!(c.refreshed(
            Some(Catalog::new(vec!["a".into()], SchemaSnapshot::default())),
            0,
            &v1
        ));
        assert_eq!(c.generation, 0, "same roles, same rules");
        c.refreshed(
            Some(Catalog::new(
                vec!["a".into(), "admin".into()],
                SchemaSnapshot::default(),
            )),
            0,
            &v1,
        );
        assert_eq!(c.generation, 1);
        c.refreshed(
            Some(Catalog::new(
                vec!["a".into(), "admin".into()],
                SchemaSnapshot::default(),
            )),
            0,
            &v2,
        );
        assert_eq!(c.generation, 2);
    }

    /// Final rules encrypting `public.t.email` (admin plaintext), with keys.
    fn final_rules() -> Arc<Snapshot> {
        let rules = crate::rules::RuleSet::new(
            crate::rules::parse_str(
                "r.toml",
                "[[column]]\ntable = \"public.t\"\nname = \"email\"\ntype = \"text\"\n\
                 encrypt = \"deterministic\"\nclass = \"c\"\n[column.access]\nadmin = \"plaintext\"\n",
            )
            .expect("rules"),
            "final".into(),
        );
        let ring = crate::crypto::Keyring::generate().expect("keyring");
        Arc::new(Snapshot::build(rules, Some(&ring)).expect("snapshot"))
    }

    /// `public.t` (OID 100) with these (name, type) columns.
    fn table(cols: &[(&str, &str)]) -> SchemaSnapshot {
        let columns = cols
            .iter()
            .enumerate()
            .map(|(i, (n, ty))| crate::schema::ColumnInfo {
                name: n.to_string(),
                attnum: i as i16 + 1,
                type_oid: if *ty == "bytea" { 17 } else { 25 },
                type_name: ty.to_string(),
            })
            .collect();
        let t = crate::ident::TableName {
            schema: "public".into(),
            name: "t".into(),
        };
        let info = crate::schema::TableInfo {
            oid: 100,
            relkind: 'r',
            columns,
        };
        SchemaSnapshot::new(vec!["public".into()], [(t, info)].into_iter().collect())
    }

    fn admin(schema: SchemaSnapshot) -> Option<Catalog> {
        Some(Catalog::new(vec!["admin".into()], schema))
    }

    #[test]
    fn the_overlay_follows_the_catalog_and_each_change_bumps_the_generation() {
        let shared = final_rules();
        let walking = table(&[
            ("id", "int8"),
            ("email", "text"),
            ("pgveil_enc_email", "bytea"),
        ]);
        let swapped = table(&[("id", "int8"), ("email", "bytea")]);
        let mut c = SessionCatalog::new(
            admin(table(&[("id", "int8"), ("email", "text")])),
            0,
            &shared,
        );
        assert!(Arc::ptr_eq(&c.policy(&shared), &shared), "no shadow yet");
        // The tool installed the shadow: served as plaintext at rest.
        c.refreshed(admin(walking.clone()), 0, &shared);
        assert_eq!(c.generation, 1);
        let serving = c.policy(&shared);
        assert_ne!(serving.rules.version, shared.rules.version);
        let t = crate::ident::TableName {
            schema: "public".into(),
            name: "t".into(),
        };
        assert!(serving
            .rules
            .column(&t, "email")
            .is_some_and(|r| r.encrypt.is_none()));
        assert!(Arc::ptr_eq(&c.policy(&shared), &serving), "built once");
        assert!(c.current.restricted(&serving) && c.current.restricted(&shared));
        assert!(
            c.stale(&shared.rules.version, 0, Duration::from_secs(3600))
                == (c.at.elapsed() > OVERLAY_MAX_AGE)
        );
        // The same snapshot again: nothing changes.
        c.refreshed(admin(walking), 0, &shared);
        assert_eq!(c.generation, 1);
        // The swap: final rules, and statements judged before are judged again.
        c.refreshed(admin(swapped), 0, &shared);
        assert_eq!(c.generation, 2);
        assert!(Arc::ptr_eq(&c.policy(&shared), &shared));
        assert!(!c.current.restricted(&shared));
    }

    #[test]
    fn a_reply_from_the_old_shadow_is_a_conflict_only_under_the_overlay() {
        use pgwire::messages::data::{FieldDescription, RowDescription};
        let shared = final_rules();
        let walking = table(&[
            ("id", "int8"),
            ("email", "text"),
            ("pgveil_enc_email", "bytea"),
        ]);
        let mut c = SessionCatalog::new(admin(walking), 0, &shared);
        let rd = |attnum: i16, ty: u32| {
            let f = FieldDescription::new("email".into(), 100, attnum, ty, -1, -1, 0);
            let mut out = bytes::BytesMut::new();
            crate::protocol::messages::encode_row_description(
                &RowDescription::new(vec![f]),
                &mut out,
            )
            .expect("encode");
            out
        };
        assert_eq!(c.reply_conflict(&rd(2, 25)), None, "email as text");
        assert!(
            c.reply_conflict(&rd(3, 17)).is_some(),
            "the shadow's attnum"
        );
        assert!(c.reply_conflict(&rd(2, 17)).is_some(), "email became bytea");
        c.refreshed(
            admin(table(&[("id", "int8"), ("email", "bytea")])),
            0,
            &shared,
        );
        assert_eq!(
            c.reply_conflict(&rd(3, 17)),
            None,
            "no overlay, nothing to compare"
        );
    }
}

//! The session's cache of analysed statement shapes (see
//! [`crate::sql::shape`]): a simple-protocol statement whose shape was
//! analysed before is served by splicing its literals into that analysis,
//! without parsing, checking or re-serialising it again.
//!
//! Per session, not shared: no lock or cross-thread traffic on the hot path,
//! and the catalog an analysis depends on is the session's own. Entries are
//! valid for one rules set, keyring and catalog snapshot (compared by
//! identity, so a reload, rotation or catalog refresh empties the cache).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;

use super::catalog::Catalog;
use super::rows::RowPlan;
use crate::crypto::CryptoSnapshot;
use crate::rules::RuleSet;
use crate::snapshot::Snapshot;
use crate::sql::{ParamPlan, StatementPlan};

/// Most shapes a session keeps; past it the cache starts over.
const MAX_SHAPES: usize = 256;

/// What the analysis of a shape said.
#[derive(Debug, Clone)]
pub enum Cached {
    /// Forward the rewritten `sql` with the literals spliced in.
    Rewritten {
        sql: Arc<str>,
        /// Where `sql` takes the literals (see [`crate::sql::shape::holes`]).
        holes: Arc<Vec<(usize, usize, usize)>>,
        plan: Arc<StatementPlan>,
        params: Arc<Vec<ParamPlan>>,
    },
    /// The statement touches nothing tagged: forward it as written.
    Passthrough,
    /// The shape could not be served (refused, or analysed differently from
    /// its literal form): every statement of it takes the full analysis.
    Full,
}

/// What cached decisions were made under: the rules, keyring and catalog
/// snapshot (held, so they are compared by identity with no reuse of a
/// freed address) and the catalog generation.
type Stamp = (Arc<RuleSet>, Option<Arc<CryptoSnapshot>>, Arc<Catalog>, u64);

/// A bounded map of decisions valid for one [`Stamp`].
#[derive(Debug)]
pub struct StampedCache<K, V> {
    stamp: Option<Stamp>,
    map: HashMap<K, V>,
}

impl<K, V> Default for StampedCache<K, V> {
    fn default() -> Self {
        StampedCache {
            stamp: None,
            map: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> StampedCache<K, V> {
    /// The entry for `key`, after emptying the cache if what its entries
    /// were decided under has changed.
    pub fn get<Q>(
        &mut self,
        key: &Q,
        policy: &Snapshot,
        catalog: &Arc<Catalog>,
        gen: u64,
    ) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let same = self.stamp.as_ref().is_some_and(|(r, c, k, g)| {
            Arc::ptr_eq(r, &policy.rules)
                && match (c, &policy.crypto) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
                && Arc::ptr_eq(k, catalog)
                && *g == gen
        });
        if !same {
            self.map.clear();
            self.stamp = Some((
                policy.rules.clone(),
                policy.crypto.clone(),
                catalog.clone(),
                gen,
            ));
            return None;
        }
        self.map.get(key).cloned()
    }

    pub fn insert(&mut self, key: K, entry: V) {
        if self.map.len() >= MAX_SHAPES {
            self.map.clear();
        }
        self.map.insert(key, entry);
    }
}

/// Analysed statement shapes, by shape text.
pub type ShapeCache = StampedCache<String, Cached>;

/// A planned RowDescription: the plan, the rewritten frame, the formats.
pub type SharedRows = (Arc<RowPlan>, Option<BytesMut>, Vec<i16>);

/// Planned RowDescriptions of simple-protocol results, by the frame's
/// bytes and whether the statement was forwarded as written (`strict`):
/// the plan is a function of those and of the stamp.
pub type RowPlanCache = StampedCache<(Vec<u8>, bool), Option<SharedRows>>;

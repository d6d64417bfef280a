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

use super::catalog::Catalog;
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
        plan: Arc<StatementPlan>,
        params: Arc<Vec<ParamPlan>>,
    },
    /// The statement touches nothing tagged: forward it as written.
    Passthrough,
    /// The shape could not be served (refused, or analysed differently from
    /// its literal form): every statement of it takes the full analysis.
    Full,
}

type Stamp = (Arc<RuleSet>, Option<Arc<CryptoSnapshot>>, Arc<Catalog>);

#[derive(Debug, Default)]
pub struct ShapeCache {
    stamp: Option<Stamp>,
    map: HashMap<String, Cached>,
}

impl ShapeCache {
    /// The entry for `shape`, after emptying the cache if what its entries
    /// were analysed under has changed.
    pub fn get(
        &mut self,
        shape: &str,
        policy: &Snapshot,
        catalog: &Arc<Catalog>,
    ) -> Option<Cached> {
        let same = self.stamp.as_ref().is_some_and(|(r, c, k)| {
            Arc::ptr_eq(r, &policy.rules)
                && match (c, &policy.crypto) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
                && Arc::ptr_eq(k, catalog)
        });
        if !same {
            self.map.clear();
            self.stamp = Some((policy.rules.clone(), policy.crypto.clone(), catalog.clone()));
            return None;
        }
        self.map.get(shape).cloned()
    }

    pub fn insert(&mut self, shape: String, entry: Cached) {
        if self.map.len() >= MAX_SHAPES {
            self.map.clear();
        }
        self.map.insert(shape, entry);
    }
}

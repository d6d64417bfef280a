//! The registry of live sessions the admin console reads (`SHOW CLIENTS`).
//!
//! Lock-light by design: a session registers once after authentication and
//! deregisters when it ends (one sharded map insert and remove), and in
//! between it only stores into its own slot's atomics. The console reads
//! those atomics from whichever worker it runs on; nothing is ever sent
//! between threads on a session's hot path, and a session never waits for
//! the console.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use dashmap::DashMap;

/// What a session is doing, as PostgreSQL's `pg_stat_activity.state` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    Idle,
    Active,
    IdleInTransaction,
    IdleInFailedTransaction,
}

impl ClientState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Active => "active",
            ClientState::IdleInTransaction => "idle in transaction",
            ClientState::IdleInFailedTransaction => "idle in transaction (aborted)",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => ClientState::Active,
            2 => ClientState::IdleInTransaction,
            3 => ClientState::IdleInFailedTransaction,
            _ => ClientState::Idle,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            ClientState::Idle => 0,
            ClientState::Active => 1,
            ClientState::IdleInTransaction => 2,
            ClientState::IdleInFailedTransaction => 3,
        }
    }

    /// The state after a ReadyForQuery with this transaction status, when
    /// nothing else is in flight.
    pub fn from_ready(status: u8) -> Self {
        match status {
            b'T' => ClientState::IdleInTransaction,
            b'E' => ClientState::IdleInFailedTransaction,
            _ => ClientState::Idle,
        }
    }
}

/// Who a session is: fixed at registration.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub id: u64,
    pub peer: Option<SocketAddr>,
    pub user: String,
    pub database: String,
    pub application: String,
}

/// One live session's entry. The session writes, the console reads.
#[derive(Debug)]
pub struct ClientSlot {
    pub who: ClientIdentity,
    pub since: SystemTime,
    state: AtomicU8,
    statements: AtomicU64,
    /// The rules version its latest statement was judged under.
    rules_version: ArcSwap<String>,
}

impl ClientSlot {
    pub fn new(who: ClientIdentity, rules_version: &str) -> Self {
        ClientSlot {
            who,
            since: SystemTime::now(),
            state: AtomicU8::new(ClientState::Idle.to_u8()),
            statements: AtomicU64::new(0),
            rules_version: ArcSwap::from_pointee(rules_version.to_string()),
        }
    }

    pub fn set_state(&self, s: ClientState) {
        self.state.store(s.to_u8(), Ordering::Relaxed);
    }

    pub fn state(&self) -> ClientState {
        ClientState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// A ReadyForQuery reached the client: `completed` statements ended,
    /// under the rules `version`; `in_flight` when more is still owed.
    pub fn ready(&self, status: u8, completed: u64, in_flight: bool, version: &str) {
        if completed > 0 {
            self.statements.fetch_add(completed, Ordering::Relaxed);
        }
        self.set_state(if in_flight {
            ClientState::Active
        } else {
            ClientState::from_ready(status)
        });
        // A short string compare per ReadyForQuery; it allocates only when
        // a reload changed the version.
        if self.rules_version.load().as_str() != version {
            self.rules_version.store(Arc::new(version.to_string()));
        }
    }

    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    pub fn rules_version(&self) -> Arc<String> {
        self.rules_version.load_full()
    }
}

/// Bytes from the client mean it asked for something: active until the
/// next ReadyForQuery says otherwise.
impl crate::net::ReadActivity for ClientSlot {
    fn on_read(&self) {
        self.set_state(ClientState::Active);
    }
}

/// Every live, authenticated session, by session id.
#[derive(Debug, Default)]
pub struct Registry {
    slots: DashMap<u64, Arc<ClientSlot>>,
}

impl Registry {
    /// Adds a session; it stays listed until the returned guard drops (also
    /// when the session's task panics).
    pub fn register(self: &Arc<Self>, slot: ClientSlot) -> Registration {
        let slot = Arc::new(slot);
        self.slots.insert(slot.who.id, slot.clone());
        Registration {
            registry: self.clone(),
            slot,
        }
    }

    /// A copy of the entries, ordered by session id (oldest first).
    pub fn snapshot(&self) -> Vec<Arc<ClientSlot>> {
        let mut v: Vec<_> = self.slots.iter().map(|e| e.value().clone()).collect();
        v.sort_by_key(|s| s.who.id);
        v
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// A session's place in the [`Registry`], removed on drop.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    pub slot: Arc<ClientSlot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.slots.remove(&self.slot.who.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(id: u64) -> ClientIdentity {
        ClientIdentity {
            id,
            peer: None,
            user: "u".into(),
            database: "d".into(),
            application: String::new(),
        }
    }

    #[test]
    fn sessions_are_listed_until_their_guard_drops() {
        let r = Arc::new(Registry::default());
        let a = r.register(ClientSlot::new(who(2), "v1"));
        let b = r.register(ClientSlot::new(who(1), "v1"));
        assert_eq!(
            r.snapshot().iter().map(|s| s.who.id).collect::<Vec<_>>(),
            vec![1, 2]
        );
        drop(a);
        assert_eq!(r.len(), 1);
        drop(b);
        assert!(r.is_empty());
    }

    #[test]
    fn ready_counts_statements_and_follows_the_transaction() {
        let s = ClientSlot::new(who(1), "v1");
        let v2 = "v2";
        s.set_state(ClientState::Active);
        s.ready(b'T', 1, false, v2);
        assert_eq!(s.state(), ClientState::IdleInTransaction);
        s.ready(b'I', 3, true, v2);
        assert_eq!(s.state(), ClientState::Active);
        s.ready(b'I', 0, false, v2);
        assert_eq!(s.state(), ClientState::Idle);
        assert_eq!(s.statements(), 4);
        assert_eq!(s.rules_version().as_str(), "v2");
    }
}

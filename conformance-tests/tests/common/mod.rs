//! A small, correct reference store for the suite's self-tests.
//!
//! Every namespace lives in one shared map owned by the factory, so stores
//! opened on different namespaces share a "backend" but not their sessions,
//! `clear` is per namespace, and reopening a namespace sees what was written
//! (the factory declares itself durable). Expired records stay in the map
//! until `delete_expired` (lazy reaping, like an SQL backend), so every
//! reader must filter them. Records pass through the canonical
//! JSON encoding on every write, so the suite's exactness checks are proven
//! achievable by a byte-oriented backend.

#[allow(dead_code, reason = "not every test crate uses every helper")]
pub(crate) mod fault;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use session_conformance::{Capabilities, StoreFactory};
use session_core::{
    Cursor, Page, Record, Result, SessionKey, SessionStore, Timestamp, UpdateOutcome, async_trait,
};

/// One namespace's sessions.
pub(crate) type Sessions = HashMap<SessionKey, Record>;

/// Every namespace of one "backend".
type Universe = Arc<Mutex<HashMap<String, Sessions>>>;

/// Opens [`RefStore`]s that share one universe of namespaces.
#[derive(Debug, Clone)]
pub(crate) struct RefFactory {
    universe: Universe,
    durable: bool,
}

impl Default for RefFactory {
    fn default() -> Self {
        Self {
            universe: Universe::default(),
            durable: true,
        }
    }
}

impl RefFactory {
    /// The same store, declared not durable (the reopen check is skipped).
    #[allow(dead_code, reason = "used by some of the test crates only")]
    pub(crate) fn not_durable() -> Self {
        Self {
            durable: false,
            ..Self::default()
        }
    }
}

#[async_trait]
impl StoreFactory for RefFactory {
    type Store = RefStore;

    async fn open(&self, namespace: &str) -> RefStore {
        RefStore {
            universe: Arc::clone(&self.universe),
            namespace: namespace.to_owned(),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(self.durable)
    }
}

/// A correct store over one namespace of the shared universe.
#[derive(Debug, Clone)]
pub(crate) struct RefStore {
    universe: Universe,
    namespace: String,
}

impl RefStore {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Sessions>> {
        self.universe.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `f` on this namespace's sessions, under the lock.
    pub(crate) fn with_map<R>(&self, f: impl FnOnce(&mut Sessions) -> R) -> R {
        let mut universe = self.lock();
        f(universe.entry(self.namespace.clone()).or_default())
    }

    /// The namespace this store works on.
    #[allow(dead_code, reason = "used by some of the test crates only")]
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Run `f` on every namespace, under the lock.
    #[allow(dead_code, reason = "used by some of the test crates only")]
    pub(crate) fn with_universe<R>(
        &self,
        f: impl FnOnce(&mut HashMap<String, Sessions>) -> R,
    ) -> R {
        f(&mut self.lock())
    }
}

/// `record` as a byte-oriented backend would return it: through the
/// canonical JSON encoding.
pub(crate) fn canonical(key: &SessionKey, record: &Record) -> Result<Record> {
    Record::decode(key, &record.encode()?)
}

/// A liveness rule: whether a record is live at an instant. The contract's
/// is [`Record::is_live_at`]; broken stores in the self-tests use others.
pub(crate) type Rule = fn(&Record, Timestamp) -> bool;

/// The contract's rule: live while `now < expires_at`.
pub(crate) fn contract_rule(record: &Record, now: Timestamp) -> bool {
    record.is_live_at(now)
}

/// The reference operations at an explicit instant and liveness rule: the
/// store below uses the clock and the contract's rule; a broken store can
/// reuse them with another rule.
#[allow(dead_code, reason = "used by some of the test crates only")]
impl RefStore {
    pub(crate) fn load_at(&self, key: &SessionKey, now: Timestamp, live: Rule) -> Option<Record> {
        self.with_map(|m| m.get(key).filter(|r| live(r, now)).cloned())
    }

    pub(crate) fn create_at(
        &self,
        key: &SessionKey,
        record: &Record,
        now: Timestamp,
        live: Rule,
    ) -> Result<bool> {
        let record = canonical(key, record)?;
        Ok(self.with_map(|m| {
            if m.get(key).is_some_and(|r| live(r, now)) {
                return false;
            }
            if live(&record, now) {
                m.insert(*key, record);
            } else {
                m.remove(key);
            }
            true
        }))
    }

    pub(crate) fn update_at(
        &self,
        key: &SessionKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
        live: Rule,
    ) -> Result<UpdateOutcome> {
        let record = canonical(key, record)?;
        Ok(
            self.with_map(|m| match m.get(key).filter(|r| live(r, now)) {
                None => UpdateOutcome::Missing,
                Some(current) if current.version != expected_version => UpdateOutcome::Conflict,
                Some(_) => {
                    // Kept even if already expired: reaping is lazy, as in an
                    // SQL backend, so every reader must filter.
                    m.insert(*key, record.with_version(expected_version.wrapping_add(1)));
                    UpdateOutcome::Updated
                }
            }),
        )
    }

    pub(crate) fn touch_at(
        &self,
        key: &SessionKey,
        expires_at: Timestamp,
        now: Timestamp,
        live: Rule,
    ) -> bool {
        self.with_map(|m| match m.get_mut(key).filter(|r| live(r, now)) {
            None => false,
            Some(record) => {
                // A touch to the past leaves an expired record behind, for
                // `delete_expired` (lazy reaping).
                record.expires_at = expires_at;
                true
            }
        })
    }

    pub(crate) fn len_at(&self, now: Timestamp, live: Rule) -> u64 {
        self.with_map(|m| m.values().filter(|r| live(r, now)).count() as u64)
    }

    pub(crate) fn list_at(
        &self,
        cursor: Option<&Cursor>,
        limit: NonZeroUsize,
        now: Timestamp,
        live: Rule,
    ) -> Result<Page> {
        let entries = self.with_map(|m| m.iter().map(|(k, r)| (*k, r.clone())).collect());
        key_ordered_page(entries, cursor, limit, |r| live(r, now))
    }
}

/// Keyset pagination over `entries`: the `limit` smallest keys after the
/// cursor's, of which `keep` decides the ones to return.
pub(crate) fn key_ordered_page(
    mut entries: Vec<(SessionKey, Record)>,
    cursor: Option<&Cursor>,
    limit: NonZeroUsize,
    keep: impl Fn(&Record) -> bool,
) -> Result<Page> {
    let after = cursor.map(|c| c.key_after("reference")).transpose()?;
    entries.retain(|(k, _)| after.is_none_or(|a| *k > a));
    entries.sort_unstable_by_key(|(k, _)| *k);
    entries.truncate(limit.get());
    Page::from_key_ordered(entries, limit, |_, r| Ok(keep(&r).then_some(r)))
}

#[async_trait]
impl SessionStore for RefStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        Ok(self.load_at(key, Timestamp::now(), contract_rule))
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        self.create_at(key, record, Timestamp::now(), contract_rule)
    }

    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<UpdateOutcome> {
        self.update_at(
            key,
            record,
            expected_version,
            Timestamp::now(),
            contract_rule,
        )
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        let record = canonical(key, record)?;
        let live = record.is_live_at(Timestamp::now());
        self.with_map(|m| {
            if live {
                m.insert(*key, record);
            } else {
                m.remove(key);
            }
        });
        Ok(())
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        Ok(self.touch_at(key, expires_at, Timestamp::now(), contract_rule))
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        self.with_map(|m| m.remove(key));
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.with_map(HashMap::clear);
        Ok(())
    }

    async fn len(&self) -> Result<u64> {
        Ok(self.len_at(Timestamp::now(), contract_rule))
    }

    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        self.list_at(cursor, limit, Timestamp::now(), contract_rule)
    }

    async fn delete_expired(&self) -> Result<u64> {
        let now = Timestamp::now();
        Ok(self.with_map(|m| {
            let before = m.len();
            m.retain(|_, r| r.is_live_at(now));
            (before - m.len()) as u64
        }))
    }
}

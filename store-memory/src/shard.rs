//! One shard: a map from key to entry and its expiry index, kept under one
//! lock by the store. Every method takes the current time (`now`, Unix
//! milliseconds) explicitly, so the rules are plain functions of their
//! inputs and are tested without a clock.
//!
//! The expiry index is lazy about postponements: a key sits in `index` under
//! an expiry that is never later than its entry's real one, and moving an
//! expiry later (`touch`, or a write with a later expiry, the common case)
//! changes only the entry. Whoever meets an index position that is earlier
//! than the entry's real expiry (reaping, eviction, counting) moves it then.
//! So a touch costs a hash-map write, and reaping still walks only the
//! index prefix that is due, each postponed key being moved at most once
//! per pass.
//!
//! Index positions are `(expiry, sequence number)`, the number counting
//! the shard's index insertions: positions are small integers, cheap to
//! compare, and entries written with the same expiry (a burst of logins in
//! one millisecond, a fixed absolute lifetime) go in at the end of their
//! run rather than at random places by key. Ties expire, and are evicted,
//! in the order they were indexed.
//!
//! Invariant: `index` maps `slot.position` to `key` exactly when `key`
//! maps to `slot` in `map`, and `slot.indexed_at() <= slot.entry.expires_at`.
//! Every method that changes one keeps the other in step.

use session_core::EncodedData;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};

use crate::hash::{Key, KeyHashBuilder};

/// What is kept per session besides its key: 40 bytes (56 with its index
/// position) plus the data as a JSON text.
///
/// The text is shared ([`EncodedData`] is an `Arc<str>`), so that `load`
/// clones a pointer under the lock and the data is decoded, if the
/// application reads it at all, outside of the store.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The session data, as produced by `Record::encode_data`.
    pub(crate) data: EncodedData,
    /// `created_at` in Unix milliseconds.
    pub(crate) created_at: i64,
    /// `expires_at` in Unix milliseconds; live while `now < expires_at`.
    pub(crate) expires_at: i64,
    /// The record's version.
    pub(crate) version: u64,
}

impl Entry {
    fn is_live(&self, now: i64) -> bool {
        now < self.expires_at
    }
}

/// What a write did to the shard's population, for the store's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Removed {
    /// Live entries removed to respect the capacity bound.
    pub(crate) evicted: u64,
}

/// Result of a versioned update on a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Update {
    Updated,
    Missing,
    Conflict,
}

/// A position in the expiry index: (expiry, sequence number).
type Position = (i64, u64);

/// An entry and where it sits in the index.
#[derive(Debug)]
struct Slot {
    entry: Entry,
    /// Its index position, whose expiry is at most `entry.expires_at`.
    position: Position,
}

impl Slot {
    /// The expiry it is indexed under.
    fn indexed_at(&self) -> i64 {
        self.position.0
    }
}

/// Keys by index position, soonest first.
#[derive(Debug, Default)]
struct ExpiryIndex {
    by_position: BTreeMap<Position, Key>,
    /// The next sequence number. A `u64` counted up by one per insertion
    /// does not wrap in practice (584 years at a billion per second); the
    /// `wrapping_add` only keeps it from panicking.
    next_seq: u64,
}

impl ExpiryIndex {
    /// Index `key` at `expires_at`, after every key already indexed there.
    fn insert(&mut self, expires_at: i64, key: Key) -> Position {
        let position = (expires_at, self.next_seq);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.by_position.insert(position, key);
        position
    }

    /// Move the slot of `key` to an earlier expiry if `expires_at` is
    /// earlier than its position, and set its entry's expiry.
    fn set_expiry(&mut self, key: Key, slot: &mut Slot, expires_at: i64) {
        if expires_at < slot.indexed_at() {
            self.by_position.remove(&slot.position);
            slot.position = self.insert(expires_at, key);
        }
        slot.entry.expires_at = expires_at;
    }
}

/// A map with an expiry index.
#[derive(Debug)]
pub(crate) struct Shard {
    map: HashMap<Key, Slot, KeyHashBuilder>,
    index: ExpiryIndex,
}

/// Shrink a map when fewer than one slot in `SHRINK_RATIO` is used...
const SHRINK_RATIO: usize = 4;
/// ...and it has room for more than this many entries (small maps are not
/// worth the churn).
const SHRINK_MIN_CAPACITY: usize = 64;

impl Shard {
    pub(crate) fn new(hasher: KeyHashBuilder) -> Self {
        Self {
            map: HashMap::with_hasher(hasher),
            index: ExpiryIndex::default(),
        }
    }

    /// Entries held, expired or not.
    #[cfg(test)]
    pub(crate) fn stored(&self) -> usize {
        self.map.len()
    }

    /// Slots allocated in the map.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.map.capacity()
    }

    /// The live entry under `key`.
    pub(crate) fn get(&self, key: &Key, now: i64) -> Option<&Entry> {
        self.map
            .get(key)
            .map(|slot| &slot.entry)
            .filter(|e| e.is_live(now))
    }

    /// Live entries: all of them minus the expired ones, which are all in
    /// the index prefix that is due (indexed expiries are never later than
    /// real ones), so the cost follows that prefix, not the live count.
    pub(crate) fn live_len(&self, now: i64) -> usize {
        let expired = self
            .index
            .by_position
            .range(..=(now, u64::MAX))
            .filter(|(_, key)| {
                self.map
                    .get(key)
                    .is_some_and(|slot| !slot.entry.is_live(now))
            })
            .count();
        self.map.len() - expired
    }

    /// Append every live entry to `out`.
    pub(crate) fn collect_live(&self, now: i64, out: &mut Vec<(Key, Entry)>) {
        out.extend(
            self.map
                .iter()
                .filter(|(_, slot)| slot.entry.is_live(now))
                .map(|(k, slot)| (*k, slot.entry.clone())),
        );
    }

    /// Remove `key`, returning its entry.
    pub(crate) fn remove(&mut self, key: &Key) -> Option<Entry> {
        let slot = self.map.remove(key)?;
        self.index.by_position.remove(&slot.position);
        Some(slot.entry)
    }

    /// Insert-or-replace a **live** entry. A new key in a full shard
    /// (`stored() >= cap`) first makes room (see [`make_room`](Self::make_room)).
    pub(crate) fn put(&mut self, key: Key, entry: Entry, now: i64, cap: usize) -> Removed {
        if let Some(slot) = self.map.get_mut(&key) {
            let expires_at = entry.expires_at;
            slot.entry = entry;
            self.index.set_expiry(key, slot, expires_at);
            return Removed::default();
        }
        let mut removed = Removed::default();
        while self.map.len() >= cap {
            if !self.make_room(now, &mut removed) {
                break;
            }
        }
        let position = self.index.insert(entry.expires_at, key);
        self.map.insert(key, Slot { entry, position });
        removed
    }

    /// Remove the entry that expires first (ties: the first indexed). Expired
    /// entries expire before live ones, so they always go first; removing a
    /// live one counts as an eviction. `false` if the shard is empty.
    fn make_room(&mut self, now: i64, removed: &mut Removed) -> bool {
        while let Some(((indexed_at, _), key)) = self.index.by_position.pop_first() {
            let Some(slot) = self.map.get_mut(&key) else {
                // Cannot happen (the invariant); nothing to remove for it.
                continue;
            };
            let expires_at = slot.entry.expires_at;
            if indexed_at < expires_at {
                // Postponed since it was indexed: not the first after all.
                slot.position = self.index.insert(expires_at, key);
                continue;
            }
            self.map.remove(&key);
            if now < expires_at {
                removed.evicted += 1;
            }
            return true;
        }
        false
    }

    /// `create`: insert unless a live entry exists. Returns whether it
    /// inserted (an entry that is already expired is "inserted" as nothing:
    /// the key ends up absent).
    pub(crate) fn create(
        &mut self,
        key: Key,
        entry: Entry,
        now: i64,
        cap: usize,
    ) -> (bool, Removed) {
        match self.map.get(&key) {
            Some(old) if old.entry.is_live(now) => return (false, Removed::default()),
            Some(_) => {
                self.remove(&key);
            }
            None => {}
        }
        if !entry.is_live(now) {
            return (true, Removed::default());
        }
        (true, self.put(key, entry, now, cap))
    }

    /// `save`: insert-or-replace, or remove if `entry` is not live.
    pub(crate) fn save(&mut self, key: Key, entry: Entry, now: i64, cap: usize) -> Removed {
        if entry.is_live(now) {
            self.put(key, entry, now, cap)
        } else {
            self.remove(&key);
            Removed::default()
        }
    }

    /// `update`: replace the live entry under `key` if its version is
    /// `expected`; the new version is `expected + 1` (wrapping: versions are
    /// only compared for equality).
    pub(crate) fn update(&mut self, key: Key, mut entry: Entry, expected: u64, now: i64) -> Update {
        let Some(old) = self.map.get(&key).map(|slot| &slot.entry) else {
            return Update::Missing;
        };
        if !old.is_live(now) {
            // Dead weight: drop it now that we hold the lock anyway.
            self.remove(&key);
            return Update::Missing;
        }
        if old.version != expected {
            return Update::Conflict;
        }
        if !entry.is_live(now) {
            self.remove(&key);
            return Update::Updated;
        }
        entry.version = expected.wrapping_add(1);
        // Replacing an existing key never needs room.
        self.put(key, entry, now, usize::MAX);
        Update::Updated
    }

    /// `touch`: move the expiry of the live entry under `key`.
    pub(crate) fn touch(&mut self, key: Key, expires_at: i64, now: i64) -> bool {
        let Some(slot) = self.map.get_mut(&key) else {
            return false;
        };
        if !slot.entry.is_live(now) || now >= expires_at {
            // Expired already, or touched into the past: either way gone.
            let live = slot.entry.is_live(now);
            self.remove(&key);
            return live;
        }
        self.index.set_expiry(key, slot, expires_at);
        true
    }

    /// Remove expired entries, soonest first, taking at most `budget` steps
    /// (a step removes an entry or moves a postponed one to its real
    /// expiry). Returns how many it removed and whether it finished.
    pub(crate) fn reap(&mut self, now: i64, budget: usize) -> (usize, bool) {
        let mut removed = 0;
        for _ in 0..budget {
            let Some((&(indexed_at, _), &key)) = self.index.by_position.first_key_value() else {
                return (removed, true);
            };
            if indexed_at > now {
                return (removed, true);
            }
            self.index.by_position.pop_first();
            // One lookup whichever way it goes: at a million sessions each
            // is a cache miss.
            match self.map.entry(key) {
                MapEntry::Occupied(mut slot) if slot.get().entry.is_live(now) => {
                    let slot = slot.get_mut();
                    slot.position = self.index.insert(slot.entry.expires_at, key);
                }
                MapEntry::Occupied(slot) => {
                    slot.remove();
                    removed += 1;
                }
                // Cannot happen (the invariant); the stale position is gone.
                MapEntry::Vacant(_) => {}
            }
        }
        (removed, false)
    }

    /// Give memory back when the map has become much emptier than its
    /// allocation: hash maps never shrink on their own. Keeps 2× headroom so
    /// that a shard that refills does not immediately regrow.
    pub(crate) fn shrink_if_sparse(&mut self) {
        if self.index.by_position.is_empty() {
            // A B-tree keeps its last (empty) node; that node was allocated
            // late, high in the heap, and would stop the allocator from
            // returning everything below it. Drop it.
            self.index.by_position = BTreeMap::new();
        }
        let capacity = self.map.capacity();
        if capacity > SHRINK_MIN_CAPACITY && self.map.len() < capacity / SHRINK_RATIO {
            self.map.shrink_to(self.map.len() * 2);
        }
    }

    /// Empty the shard, returning its old contents so the caller can drop
    /// them after releasing the lock.
    pub(crate) fn take(&mut self) -> Self {
        let hasher = self.map.hasher().clone();
        std::mem::replace(self, Self::new(hasher))
    }

    /// Every entry, expired or not (for redistributing into new shards).
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (Key, Entry)> {
        self.map.into_iter().map(|(key, slot)| (key, slot.entry))
    }
}

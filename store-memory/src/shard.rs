//! One shard: a map from key to entry and its expiry index, kept under one
//! lock by the store. Every method takes the current time (`now`, Unix
//! milliseconds) explicitly, so the rules are plain functions of their
//! inputs and are tested without a clock.
//!
//! Invariant: `(entry.expires_at, key)` is in `index` exactly when `key` maps
//! to `entry` in `map`. Every method that changes one changes the other.

use session_core::EncodedData;
use std::collections::{BTreeSet, HashMap};

use crate::hash::{Key, KeyHashBuilder};

/// What is kept per session besides its key: 40 bytes plus the data as a
/// JSON text.
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

/// A map with an expiry index.
#[derive(Debug)]
pub(crate) struct Shard {
    map: HashMap<Key, Entry, KeyHashBuilder>,
    /// `(expires_at, key)` of every entry, soonest first.
    index: BTreeSet<(i64, Key)>,
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
            index: BTreeSet::new(),
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
        self.map.get(key).filter(|e| e.is_live(now))
    }

    /// Live entries: all of them minus the index prefix that has expired,
    /// so the cost follows the expired count.
    pub(crate) fn live_len(&self, now: i64) -> usize {
        let expired = self.index.range(..=(now, Key::MAX)).count();
        self.map.len() - expired
    }

    /// Append every live entry to `out`.
    pub(crate) fn collect_live(&self, now: i64, out: &mut Vec<(Key, Entry)>) {
        out.extend(
            self.map
                .iter()
                .filter(|(_, e)| e.is_live(now))
                .map(|(k, e)| (*k, e.clone())),
        );
    }

    /// Remove `key`, returning its entry.
    pub(crate) fn remove(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.map.remove(key)?;
        self.index.remove(&(entry.expires_at, *key));
        Some(entry)
    }

    /// Insert-or-replace a **live** entry. A new key in a full shard
    /// (`stored() >= cap`) first makes room (see [`make_room`](Self::make_room)).
    pub(crate) fn put(&mut self, key: Key, entry: Entry, now: i64, cap: usize) -> Removed {
        if let Some(old) = self.map.get_mut(&key) {
            if old.expires_at != entry.expires_at {
                self.index.remove(&(old.expires_at, key));
                self.index.insert((entry.expires_at, key));
            }
            *old = entry;
            return Removed::default();
        }
        let mut removed = Removed::default();
        while self.map.len() >= cap {
            if !self.make_room(now, &mut removed) {
                break;
            }
        }
        self.index.insert((entry.expires_at, key));
        self.map.insert(key, entry);
        removed
    }

    /// Remove the entry that expires first (ties: the smallest key). Expired
    /// entries expire before live ones, so they always go first; removing a
    /// live one counts as an eviction. `false` if the shard is empty.
    fn make_room(&mut self, now: i64, removed: &mut Removed) -> bool {
        let Some((expires_at, key)) = self.index.pop_first() else {
            return false;
        };
        self.map.remove(&key);
        if now < expires_at {
            removed.evicted += 1;
        }
        true
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
            Some(old) if old.is_live(now) => return (false, Removed::default()),
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
        let Some(old) = self.map.get(&key) else {
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
        let Some(entry) = self.map.get_mut(&key) else {
            return false;
        };
        let old = entry.expires_at;
        if !entry.is_live(now) || now >= expires_at {
            // Expired already, or touched into the past: either way gone.
            let live = entry.is_live(now);
            self.remove(&key);
            return live;
        }
        if old != expires_at {
            entry.expires_at = expires_at;
            self.index.remove(&(old, key));
            self.index.insert((expires_at, key));
        }
        true
    }

    /// Remove up to `budget` expired entries, soonest first. Returns how
    /// many it removed; fewer than `budget` means none is left.
    pub(crate) fn reap(&mut self, now: i64, budget: usize) -> usize {
        let mut removed = 0;
        while removed < budget {
            match self.index.first() {
                Some(&(expires_at, key)) if expires_at <= now => {
                    self.index.pop_first();
                    self.map.remove(&key);
                    removed += 1;
                }
                _ => break,
            }
        }
        removed
    }

    /// Give memory back when the map has become much emptier than its
    /// allocation: hash maps never shrink on their own. Keeps 2× headroom so
    /// that a shard that refills does not immediately regrow.
    pub(crate) fn shrink_if_sparse(&mut self) {
        if self.index.is_empty() {
            // A B-tree keeps its last (empty) node; that node was allocated
            // late, high in the heap, and would stop the allocator from
            // returning everything below it. Drop it.
            self.index = BTreeSet::new();
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
        self.map.into_iter()
    }
}

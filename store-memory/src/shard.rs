//! One shard: a map from key to entry and its expiry index, kept under one
//! lock by the store. Every method takes the current time (`now`, Unix
//! milliseconds) explicitly, so the rules are plain functions of their
//! inputs and are tested without a clock.
//!
//! The expiry index buckets keys by expiry **tick** (`expires_at >> 10`,
//! 1.024 s, about the finest level of Caffeine's timer wheel): a tree of
//! ticks, soonest first, each holding a vector of keys. Indexing a key
//! pushes it onto its tick's vector, and unindexing swaps the vector's last
//! key into its place: both O(1), with the few ticks a shard spans staying
//! in cache. A balanced tree of `(expiry, key)` made `create` and `destroy`
//! about twice the cost of the map alone (its nodes are searched on every
//! write and crowd the map out of the cache); the price of ticks is that
//! eviction and reaping order sessions by tick, not by millisecond.
//!
//! The index is lazy about postponements: a key sits in a tick that is
//! never later than its entry's real one, and moving an expiry later
//! (`touch`, or a write with a later expiry, the common case) changes only
//! the entry. Whoever meets a key indexed in an earlier tick than its
//! entry's (reaping, eviction) moves it then. So a touch costs a hash-map
//! write, and reaping still walks only the ticks that are due, each
//! postponed key being moved at most once per pass.
//!
//! Next to them, the shard keeps its keys by principal ([`Owners`]): only
//! the keys whose entry names one, so that anonymous sessions (the hot
//! path) never hash a principal nor allocate for it. A write compares the
//! old entry's principal with the new one's (two `None`s: nothing to do).
//!
//! Invariant: `index` holds `key` at `slot.position` exactly when `key`
//! maps to `slot` in `map`, and `slot.position.tick <=
//! tick_of(slot.entry.expires_at)`; no tick's vector is empty. `owners`
//! holds `key` under `p` exactly when `key` maps to an entry (live or not)
//! whose principal is `p`; no set is empty. Every method that changes one
//! keeps the others in step.

use session_core::{EncodedData, Principal};
use std::collections::btree_map::Entry as BTreeEntry;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use crate::hash::{Key, KeyHashBuilder};

/// What is kept per session besides its key: 48 bytes (64 with its index
/// position) plus the data as a JSON text.
///
/// The text is shared ([`EncodedData`] is an `Arc<str>`), so that `load`
/// clones a pointer under the lock and the data is decoded, if the
/// application reads it at all, outside of the store. The principal is
/// shared too (one pointer, 8 bytes, `None` for anonymous sessions), so
/// cloning it under the lock allocates nothing.
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
    /// Who the session belongs to, if anyone.
    pub(crate) principal: Option<Arc<Principal>>,
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

/// log2 of the index's tick, in milliseconds (1.024 s).
const TICK_SHIFT: u32 = 10;

/// The tick `expires_at` falls in (an arithmetic shift: floor division,
/// also for times before 1970).
fn tick_of(expires_at: i64) -> i64 {
    expires_at >> TICK_SHIFT
}

/// A position in the expiry index: a tick and an offset in its vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    tick: i64,
    offset: usize,
}

/// An entry and where it sits in the index.
#[derive(Debug)]
struct Slot {
    entry: Entry,
    /// Its index position, in a tick at most `tick_of(entry.expires_at)`.
    position: Position,
}

/// A tick's vector keeps its allocation down to this many slots; below a
/// quarter full, a larger one is shrunk (to twice its length), so memory
/// goes back once a burst of sessions is destroyed.
const MIN_TICK_CAPACITY: usize = 64;

/// Keys by expiry tick, soonest first.
#[derive(Debug, Default)]
struct ExpiryIndex {
    /// Never holds an empty vector.
    ticks: BTreeMap<i64, Vec<Key>>,
}

impl ExpiryIndex {
    /// Index `key` in the tick of `expires_at`.
    fn insert(&mut self, expires_at: i64, key: Key) -> Position {
        let tick = tick_of(expires_at);
        let keys = self.ticks.entry(tick).or_default();
        keys.push(key);
        Position {
            tick,
            offset: keys.len() - 1,
        }
    }

    /// Remove the key at `position`. Returns the key moved into its place
    /// (the tick's last one), whose slot must be given `position`.
    #[must_use = "the moved key's slot must be updated"]
    fn remove(&mut self, position: Position) -> Option<Key> {
        let BTreeEntry::Occupied(mut tick) = self.ticks.entry(position.tick) else {
            // Cannot happen (the invariant): nothing indexed there.
            return None;
        };
        let keys = tick.get_mut();
        if position.offset >= keys.len() {
            // Cannot happen (the invariant).
            return None;
        }
        keys.swap_remove(position.offset);
        let moved = keys.get(position.offset).copied();
        if keys.is_empty() {
            tick.remove();
        } else if keys.capacity() > MIN_TICK_CAPACITY && keys.len() < keys.capacity() / 4 {
            keys.shrink_to(keys.len() * 2);
        }
        moved
    }

    /// Take the last key of the soonest tick (nothing moves), with its tick.
    fn pop_first(&mut self) -> Option<(i64, Key)> {
        let mut first = self.ticks.first_entry()?;
        let tick = *first.key();
        let key = first.get_mut().pop();
        if first.get().is_empty() {
            first.remove();
        }
        // `None` cannot happen (no vector is empty).
        key.map(|key| (tick, key))
    }

    /// The key at `offset` in `tick`, if any.
    fn get(&self, tick: i64, offset: usize) -> Option<Key> {
        self.ticks.get(&tick)?.get(offset).copied()
    }

    /// Give `slot` (of `key`, which now expires at `expires_at`) an earlier
    /// tick if `expires_at` is in one. Returns the position it left, which
    /// the shard must [`unindex`](Shard::unindex).
    #[must_use = "the position left must be unindexed"]
    fn follow(&mut self, key: Key, slot: &mut Slot, expires_at: i64) -> Option<Position> {
        slot.entry.expires_at = expires_at;
        if tick_of(expires_at) >= slot.position.tick {
            return None;
        }
        let left = slot.position;
        slot.position = self.insert(expires_at, key);
        Some(left)
    }
}

/// Where a [`Shard::reap`] sweep stands in the tick that holds `now`,
/// between calls: it walks that tick's vector from the end, and resumes
/// there after letting go of the lock.
#[derive(Debug, Default)]
pub(crate) struct Sweep {
    /// Offsets at and above this one were checked.
    checked_from: Option<usize>,
}

/// The keys of a shard by principal: only keys whose entry names one.
///
/// The principals are hashed with std's SipHash (seeded per map): unlike
/// keys, they are chosen by people (user names), and only logins and
/// logouts pay for it.
#[derive(Debug)]
struct Owners {
    /// Never holds an empty set.
    by_principal: HashMap<Arc<Principal>, HashSet<Key, KeyHashBuilder>>,
    /// The hasher of the key sets (the shard map's).
    hasher: KeyHashBuilder,
}

impl Owners {
    fn new(hasher: KeyHashBuilder) -> Self {
        Self {
            by_principal: HashMap::new(),
            hasher,
        }
    }

    /// Record that `key`'s entry names `principal`.
    fn link(&mut self, principal: &Arc<Principal>, key: Key) {
        if let Some(keys) = self.by_principal.get_mut(&**principal) {
            keys.insert(key);
        } else {
            let mut keys = HashSet::with_hasher(self.hasher.clone());
            keys.insert(key);
            self.by_principal.insert(Arc::clone(principal), keys);
        }
    }

    /// Record that `key`'s entry no longer names `principal`.
    fn unlink(&mut self, principal: &Principal, key: &Key) {
        if let Some(keys) = self.by_principal.get_mut(principal) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_principal.remove(principal);
            } else if keys.capacity() > SHRINK_MIN_CAPACITY
                && keys.len() < keys.capacity() / SHRINK_RATIO
            {
                // A principal that held many sessions gives the room back.
                keys.shrink_to(keys.len() * 2);
            }
        }
    }

    /// `key`'s entry named `old` and names `new` now. Two `None`s (an
    /// anonymous session written again, the common case) cost a compare.
    fn relink(&mut self, old: Option<&Arc<Principal>>, new: Option<&Arc<Principal>>, key: Key) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            self.unlink(old, &key);
        }
        if let Some(new) = new {
            self.link(new, key);
        }
    }

    /// The keys whose entry names `principal`.
    fn keys_of(&self, principal: &Principal) -> Option<&HashSet<Key, KeyHashBuilder>> {
        self.by_principal.get(principal)
    }
}

/// A map with an expiry index and its keys by principal.
#[derive(Debug)]
pub(crate) struct Shard {
    map: HashMap<Key, Slot, KeyHashBuilder>,
    index: ExpiryIndex,
    owners: Owners,
}

/// Shrink a map when fewer than one slot in `SHRINK_RATIO` is used...
const SHRINK_RATIO: usize = 4;
/// ...and it has room for more than this many entries (small maps are not
/// worth the churn).
const SHRINK_MIN_CAPACITY: usize = 64;

impl Shard {
    pub(crate) fn new(hasher: KeyHashBuilder) -> Self {
        Self {
            map: HashMap::with_hasher(hasher.clone()),
            index: ExpiryIndex::default(),
            owners: Owners::new(hasher),
        }
    }

    /// Keys held under `principal`, expired or not (tests).
    #[cfg(test)]
    pub(crate) fn owned(&self, principal: &Principal) -> usize {
        self.owners.keys_of(principal).map_or(0, HashSet::len)
    }

    /// Principals with at least one key (tests).
    #[cfg(test)]
    pub(crate) fn principals(&self) -> usize {
        self.owners.by_principal.len()
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

    /// Panic unless the invariant in the module docs holds (tests).
    #[cfg(test)]
    #[allow(clippy::panic, reason = "a test helper that fails the test")]
    pub(crate) fn assert_consistent(&self) {
        let mut indexed = 0;
        for (&tick, keys) in &self.index.ticks {
            assert!(!keys.is_empty(), "tick {tick} is empty");
            for (offset, key) in keys.iter().enumerate() {
                let Some(slot) = self.map.get(key) else {
                    panic!("tick {tick} offset {offset}: a key that is not in the map");
                };
                assert_eq!(slot.position, Position { tick, offset }, "{key:?}");
                assert!(
                    tick <= tick_of(slot.entry.expires_at),
                    "{key:?} indexed late"
                );
                indexed += 1;
            }
        }
        assert_eq!(indexed, self.map.len(), "every key indexed once");
        let mut owned = 0;
        for (principal, keys) in &self.owners.by_principal {
            assert!(!keys.is_empty(), "{principal:?} has an empty set");
            for key in keys {
                let Some(slot) = self.map.get(key) else {
                    panic!("{principal:?}: {key:?} is not in the map");
                };
                assert_eq!(
                    slot.entry.principal.as_deref(),
                    Some(&**principal),
                    "{key:?} listed under {principal:?}"
                );
                owned += 1;
            }
        }
        let named = self
            .map
            .values()
            .filter(|slot| slot.entry.principal.is_some())
            .count();
        assert_eq!(owned, named, "every key with a principal listed once");
    }

    /// The live entry under `key`.
    pub(crate) fn get(&self, key: &Key, now: i64) -> Option<&Entry> {
        self.map
            .get(key)
            .map(|slot| &slot.entry)
            .filter(|e| e.is_live(now))
    }

    /// Live entries: all of them minus the expired ones, which are all in
    /// the ticks that are due (indexed ticks are never later than real
    /// ones), so the cost follows those ticks, not the live count.
    pub(crate) fn live_len(&self, now: i64) -> usize {
        let expired = self
            .index
            .ticks
            .range(..=tick_of(now))
            .flat_map(|(_, keys)| keys)
            .filter(|key| {
                self.map
                    .get(key)
                    .is_some_and(|slot| !slot.entry.is_live(now))
            })
            .count();
        self.map.len() - expired
    }

    /// The `want` smallest keys after `after` whose entries are live, in
    /// key order: one page of a keyset listing. Costs a pass over the map
    /// and a heap of `want` keys, whatever the shard's size.
    pub(crate) fn live_after(
        &self,
        after: Option<&Key>,
        want: usize,
        now: i64,
    ) -> Vec<(Key, Entry)> {
        let mut smallest: BinaryHeap<Key> = BinaryHeap::with_capacity(want.saturating_add(1));
        for (key, slot) in &self.map {
            if after.is_some_and(|a| key <= a) || !slot.entry.is_live(now) {
                continue;
            }
            if smallest.len() < want {
                smallest.push(*key);
            } else if smallest.peek().is_some_and(|top| key < top) {
                smallest.pop();
                smallest.push(*key);
            }
        }
        smallest
            .into_sorted_vec()
            .into_iter()
            .filter_map(|key| Some((key, self.map.get(&key)?.entry.clone())))
            .collect()
    }

    /// Take the key at `position` out of the index, giving the key moved
    /// into its place its new position.
    fn unindex(&mut self, position: Position) {
        if let Some(moved) = self.index.remove(position)
            && let Some(slot) = self.map.get_mut(&moved)
        {
            slot.position = position;
        }
    }

    /// Remove `key`, returning its entry.
    pub(crate) fn remove(&mut self, key: &Key) -> Option<Entry> {
        let slot = self.map.remove(key)?;
        self.unindex(slot.position);
        if let Some(principal) = &slot.entry.principal {
            self.owners.unlink(principal, key);
        }
        Some(slot.entry)
    }

    /// The live entries whose principal is `principal`, read from its key
    /// set: costs what the principal holds in this shard, not the shard.
    pub(crate) fn owned_by(&self, principal: &Principal, now: i64) -> Vec<(Key, Entry)> {
        let Some(keys) = self.owners.keys_of(principal) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|key| {
                let entry = &self.map.get(key)?.entry;
                entry.is_live(now).then(|| (*key, entry.clone()))
            })
            .collect()
    }

    /// Remove every entry whose principal is `principal` (expired ones
    /// too: they are dead weight) except `except`'s. Returns how many live
    /// ones it removed, and the entries, for the caller to drop after
    /// releasing the lock.
    pub(crate) fn remove_owned_by(
        &mut self,
        principal: &Principal,
        except: Option<&Key>,
        now: i64,
    ) -> (u64, Vec<Entry>) {
        let Some(keys) = self.owners.keys_of(principal) else {
            return (0, Vec::new());
        };
        let doomed: Vec<Key> = keys
            .iter()
            .filter(|key| except != Some(*key))
            .copied()
            .collect();
        let mut live = 0;
        let mut removed = Vec::with_capacity(doomed.len());
        for key in doomed {
            if let Some(entry) = self.remove(&key) {
                live += u64::from(entry.is_live(now));
                removed.push(entry);
            }
        }
        (live, removed)
    }

    /// How many keys `principal` holds in this shard, expired or not.
    pub(crate) fn owned_count(&self, principal: &Principal) -> usize {
        self.owners.keys_of(principal).map_or(0, HashSet::len)
    }

    /// Insert-or-replace a **live** entry. A new key in a full shard
    /// (`stored() >= cap`) first makes room (see [`make_room`](Self::make_room)).
    pub(crate) fn put(&mut self, key: Key, entry: Entry, now: i64, cap: usize) -> Removed {
        self.write(key, entry, now, cap, false).unwrap_or_default()
    }

    /// [`put`](Self::put), or, with `unless_live`, nothing (`None`) if a
    /// live entry is under `key`: one map probe either way.
    fn write(
        &mut self,
        key: Key,
        entry: Entry,
        now: i64,
        cap: usize,
        unless_live: bool,
    ) -> Option<Removed> {
        let full = self.map.len() >= cap;
        match self.map.entry(key) {
            MapEntry::Occupied(slot) if unless_live && slot.get().entry.is_live(now) => None,
            MapEntry::Occupied(mut slot) => {
                let expires_at = entry.expires_at;
                let slot = slot.get_mut();
                let old = std::mem::replace(&mut slot.entry, entry);
                self.owners
                    .relink(old.principal.as_ref(), slot.entry.principal.as_ref(), key);
                if let Some(left) = self.index.follow(key, slot, expires_at) {
                    self.unindex(left);
                }
                Some(Removed::default())
            }
            MapEntry::Vacant(vacant) if !full => {
                let position = self.index.insert(entry.expires_at, key);
                if let Some(principal) = &entry.principal {
                    self.owners.link(principal, key);
                }
                vacant.insert(Slot { entry, position });
                Some(Removed::default())
            }
            MapEntry::Vacant(_) => Some(self.insert_after_making_room(key, entry, now, cap)),
        }
    }

    /// Insert a new key into a full shard: make room first.
    fn insert_after_making_room(
        &mut self,
        key: Key,
        entry: Entry,
        now: i64,
        cap: usize,
    ) -> Removed {
        let mut removed = Removed::default();
        while self.map.len() >= cap {
            if !self.make_room(now, &mut removed) {
                break;
            }
        }
        let position = self.index.insert(entry.expires_at, key);
        if let Some(principal) = &entry.principal {
            self.owners.link(principal, key);
        }
        self.map.insert(key, Slot { entry, position });
        removed
    }

    /// Remove an entry of the soonest tick (within it, the last indexed).
    /// Expired entries are in ticks no later than any live one's, so they go
    /// first, except for live ones sharing their tick (expiring within
    /// 1.024 s of them); removing a live one counts as an eviction. `false`
    /// if the shard is empty.
    fn make_room(&mut self, now: i64, removed: &mut Removed) -> bool {
        while let Some((tick, key)) = self.index.pop_first() {
            let Some(slot) = self.map.get_mut(&key) else {
                // Cannot happen (the invariant); nothing to remove for it.
                continue;
            };
            let expires_at = slot.entry.expires_at;
            if tick < tick_of(expires_at) {
                // Postponed since it was indexed: not due after all.
                slot.position = self.index.insert(expires_at, key);
                continue;
            }
            if let Some(slot) = self.map.remove(&key)
                && let Some(principal) = &slot.entry.principal
            {
                self.owners.unlink(principal, &key);
            }
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
        if !entry.is_live(now) {
            match self.map.get(&key) {
                Some(old) if old.entry.is_live(now) => return (false, Removed::default()),
                Some(_) => {
                    self.remove(&key);
                }
                None => {}
            }
            return (true, Removed::default());
        }
        self.write(key, entry, now, cap, true)
            .map_or((false, Removed::default()), |removed| (true, removed))
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
        if let Some(left) = self.index.follow(key, slot, expires_at) {
            self.unindex(left);
        }
        true
    }

    /// Remove expired entries, taking at most `budget` steps (a step checks
    /// one indexed key: removes it, moves a postponed one to its real tick,
    /// or, in `now`'s own tick, leaves one that is not due). Ticks before
    /// `now`'s are emptied soonest first; `now`'s tick, which holds due and
    /// not-yet-due keys alike, is walked once, from the end, resuming where
    /// `sweep` says. Returns how many it removed and whether it finished.
    pub(crate) fn reap(&mut self, now: i64, budget: usize, sweep: &mut Sweep) -> (usize, bool) {
        let now_tick = tick_of(now);
        let mut removed = 0;
        let mut steps = 0;
        loop {
            match self.index.ticks.first_key_value() {
                Some((&tick, _)) if tick < now_tick => {}
                _ => break,
            }
            if steps >= budget {
                return (removed, false);
            }
            let Some((_, key)) = self.index.pop_first() else {
                break;
            };
            steps += 1;
            // One lookup whichever way it goes: at a million sessions each
            // is a cache miss.
            match self.map.entry(key) {
                MapEntry::Occupied(mut slot) if slot.get().entry.is_live(now) => {
                    // Postponed into a later tick than this one.
                    let slot = slot.get_mut();
                    slot.position = self.index.insert(slot.entry.expires_at, key);
                }
                MapEntry::Occupied(slot) => {
                    if let Some(principal) = &slot.remove().entry.principal {
                        self.owners.unlink(principal, &key);
                    }
                    removed += 1;
                }
                // Cannot happen (the invariant); the stale position is gone.
                MapEntry::Vacant(_) => {}
            }
        }
        let len = self.index.ticks.get(&now_tick).map_or(0, Vec::len);
        let mut offset = sweep.checked_from.unwrap_or(len).min(len);
        while offset > 0 {
            if steps >= budget {
                sweep.checked_from = Some(offset);
                return (removed, false);
            }
            offset -= 1;
            steps += 1;
            let Some(key) = self.index.get(now_tick, offset) else {
                break;
            };
            let position = Position {
                tick: now_tick,
                offset,
            };
            let Some(slot) = self.map.get_mut(&key) else {
                // Cannot happen (the invariant).
                continue;
            };
            let expires_at = slot.entry.expires_at;
            if !slot.entry.is_live(now) {
                if let Some(slot) = self.map.remove(&key)
                    && let Some(principal) = &slot.entry.principal
                {
                    self.owners.unlink(principal, &key);
                }
                removed += 1;
            } else if tick_of(expires_at) > now_tick {
                // Postponed: move it now, as an earlier tick would.
                slot.position = self.index.insert(expires_at, key);
            } else {
                continue;
            }
            // The key moved into `offset` comes from the end, which was
            // checked already (or written since the sweep began, so live).
            self.unindex(position);
        }
        sweep.checked_from = None;
        (removed, true)
    }

    /// Give memory back when the map has become much emptier than its
    /// allocation: hash maps never shrink on their own. Keeps 2× headroom so
    /// that a shard that refills does not immediately regrow.
    pub(crate) fn shrink_if_sparse(&mut self) {
        if self.index.ticks.is_empty() {
            // A B-tree keeps its last (empty) node; that node was allocated
            // late, high in the heap, and would stop the allocator from
            // returning everything below it. Drop it.
            self.index.ticks = BTreeMap::new();
        }
        let capacity = self.map.capacity();
        if capacity > SHRINK_MIN_CAPACITY && self.map.len() < capacity / SHRINK_RATIO {
            self.map.shrink_to(self.map.len() * 2);
        }
        let owners = &mut self.owners.by_principal;
        if owners.capacity() > SHRINK_MIN_CAPACITY
            && owners.len() < owners.capacity() / SHRINK_RATIO
        {
            owners.shrink_to(owners.len() * 2);
        }
    }

    /// Empty the shard, returning its old contents so the caller can drop
    /// them after releasing the lock.
    pub(crate) fn take(&mut self) -> Self {
        let hasher = self.map.hasher().clone();
        std::mem::replace(self, Self::new(hasher))
    }
}

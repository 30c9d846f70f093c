//! One shard: a map from key to entry and its expiry index, kept under one
//! lock by the store. Every method takes the current time (`now`, Unix
//! milliseconds) explicitly, so the rules are plain functions of their
//! inputs and are tested without a clock.
//!
//! The expiry index buckets keys by expiry **tick** (`expires_at >> 10`,
//! 1.024 s, about the finest level of Caffeine's timer wheel): a tree of
//! ticks, soonest first, each holding a vector of keys. Indexing a key
//! pushes it onto its tick's vector; unindexing leaves a **hole** in its
//! place (and drops the holes at the vector's end). Both are O(1) and touch
//! only the one vector slot: unindexing by swapping the last key into the
//! hole (as before) had to look that key up in the map to give it its new
//! offset, a second map probe (a cache miss at scale) on every `destroy`,
//! which made `destroy` cost twice the map's own remove. Holes are bounded:
//! a tick whose keys are all gone is dropped whole, and one that becomes
//! mostly holes is compacted (its keys keep their order, and each moved key
//! is given its offset: at most one probe per three holes, amortised). A
//! balanced tree of `(expiry, key)` made `create` and `destroy` about twice
//! the cost of the map alone (its nodes are searched on every write and
//! crowd the map out of the cache); the price of ticks is that eviction and
//! reaping order sessions by tick, not by millisecond.
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
//! tick_of(slot.entry.expires_at)`; every other place of a tick's vector is
//! a hole; no tick's vector is empty or ends with a hole, and each tick
//! counts its keys (`live`). `owners`
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

/// A tick's vector is compacted once it is this long or longer...
const COMPACT_MIN_LEN: usize = 16;
/// ...and fewer than one of its places in this many holds a key.
const COMPACT_RATIO: usize = 4;

/// The keys of one tick, in the order they were indexed, with holes where
/// keys were unindexed.
#[derive(Debug, Default)]
struct Tick {
    /// Never empty, never ends with a hole (`None`).
    keys: Vec<Option<Key>>,
    /// How many places hold a key.
    live: usize,
}

impl Tick {
    /// Drop the holes at the end (the last key is never a hole), then give
    /// back memory if the vector has become much shorter than its
    /// allocation.
    fn trim(&mut self) {
        while self.keys.last().is_some_and(Option::is_none) {
            self.keys.pop();
        }
        let capacity = self.keys.capacity();
        if capacity > MIN_TICK_CAPACITY && self.keys.len() < capacity / 4 {
            self.keys.shrink_to(self.keys.len() * 2);
        }
    }

    /// Whether holes have come to outnumber keys enough to compact.
    fn is_sparse(&self) -> bool {
        self.keys.len() >= COMPACT_MIN_LEN && self.live * COMPACT_RATIO < self.keys.len()
    }
}

/// Keys by expiry tick, soonest first.
#[derive(Debug, Default)]
struct ExpiryIndex {
    /// Never holds an empty tick.
    ticks: BTreeMap<i64, Tick>,
}

/// What [`ExpiryIndex::remove`] left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    /// Nothing more to do.
    Done,
    /// The tick is mostly holes: the shard should
    /// [`compact`](Shard::compact) it.
    Sparse,
}

impl ExpiryIndex {
    /// Index `key` in the tick of `expires_at`.
    fn insert(&mut self, expires_at: i64, key: Key) -> Position {
        let tick = tick_of(expires_at);
        let entry = self.ticks.entry(tick).or_default();
        entry.keys.push(Some(key));
        entry.live += 1;
        Position {
            tick,
            offset: entry.keys.len() - 1,
        }
    }

    /// Leave a hole at `position` (nothing else moves).
    fn remove(&mut self, position: Position) -> Removal {
        let BTreeEntry::Occupied(mut tick) = self.ticks.entry(position.tick) else {
            // Cannot happen (the invariant): nothing indexed there.
            return Removal::Done;
        };
        let keys = tick.get_mut();
        let Some(place @ Some(_)) = keys.keys.get_mut(position.offset) else {
            // Cannot happen (the invariant).
            return Removal::Done;
        };
        *place = None;
        keys.live -= 1;
        if keys.live == 0 {
            // All holes: no key to move, the whole vector goes.
            tick.remove();
            return Removal::Done;
        }
        keys.trim();
        if keys.is_sparse() {
            Removal::Sparse
        } else {
            Removal::Done
        }
    }

    /// Take the last key of the soonest tick (nothing moves), with its tick.
    fn pop_first(&mut self) -> Option<(i64, Key)> {
        let mut first = self.ticks.first_entry()?;
        let tick = *first.key();
        let keys = first.get_mut();
        // `None` cannot happen (no vector is empty or ends with a hole).
        let key = keys.keys.pop().flatten();
        keys.live -= usize::from(key.is_some());
        if keys.live == 0 {
            first.remove();
        } else {
            keys.trim();
        }
        key.map(|key| (tick, key))
    }

    /// What is at `offset` in `tick`: `None` past the end, `Some(None)` for a
    /// hole.
    fn get(&self, tick: i64, offset: usize) -> Option<Option<Key>> {
        self.ticks.get(&tick)?.keys.get(offset).copied()
    }

    /// The length of `tick`'s vector, holes included.
    fn len_of(&self, tick: i64) -> usize {
        self.ticks.get(&tick).map_or(0, |t| t.keys.len())
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

    /// Places in the expiry index's vectors, holes included (tests).
    #[cfg(test)]
    pub(crate) fn index_places(&self) -> usize {
        self.index.ticks.values().map(|t| t.keys.len()).sum()
    }

    /// Panic unless the invariant in the module docs holds (tests).
    #[cfg(test)]
    #[allow(clippy::panic, reason = "a test helper that fails the test")]
    pub(crate) fn assert_consistent(&self) {
        let mut indexed = 0;
        for (&tick, keys) in &self.index.ticks {
            assert!(!keys.keys.is_empty(), "tick {tick} is empty");
            assert!(
                keys.keys.last().is_some_and(Option::is_some),
                "tick {tick} ends with a hole"
            );
            let mut live = 0;
            for (offset, key) in keys.keys.iter().enumerate() {
                let Some(key) = key else { continue };
                let Some(slot) = self.map.get(key) else {
                    panic!("tick {tick} offset {offset}: a key that is not in the map");
                };
                assert_eq!(slot.position, Position { tick, offset }, "{key:?}");
                assert!(
                    tick <= tick_of(slot.entry.expires_at),
                    "{key:?} indexed late"
                );
                indexed += 1;
                live += 1;
            }
            assert_eq!(keys.live, live, "tick {tick} counts its keys");
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
            .flat_map(|(_, keys)| keys.keys.iter().flatten())
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

    /// Take the key at `position` out of the index (a hole, no map probe),
    /// compacting its tick if it has become mostly holes.
    fn unindex(&mut self, position: Position) {
        if self.index.remove(position) == Removal::Sparse {
            self.compact(position.tick);
        }
    }

    /// Close the holes of `tick`'s vector, keeping its keys' order, and give
    /// each key that moved its new offset. Keys only move to lower offsets,
    /// which a [`reap`](Self::reap) sweep resuming in this tick relies on.
    #[cold]
    fn compact(&mut self, tick: i64) {
        let Some(keys) = self.index.ticks.get_mut(&tick) else {
            return;
        };
        let mut to = 0;
        for from in 0..keys.keys.len() {
            let Some(key) = keys.keys[from] else { continue };
            if from != to {
                keys.keys[to] = Some(key);
                if let Some(slot) = self.map.get_mut(&key) {
                    slot.position.offset = to;
                }
            }
            to += 1;
        }
        keys.keys.truncate(to);
        keys.trim();
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
                // Compared in place: an anonymous rewrite (None, None) costs
                // a compare, not a move of the old entry out.
                if slot.entry.principal != entry.principal {
                    self.owners.relink(
                        slot.entry.principal.as_ref(),
                        entry.principal.as_ref(),
                        key,
                    );
                }
                slot.entry = entry;
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
        // One probe on the hot path (live, expected version, still live
        // after): the check and the write share it.
        let Some(slot) = self.map.get_mut(&key) else {
            return Update::Missing;
        };
        if !slot.entry.is_live(now) {
            // Dead weight: drop it now that we hold the lock anyway.
            self.remove(&key);
            return Update::Missing;
        }
        if slot.entry.version != expected {
            return Update::Conflict;
        }
        if !entry.is_live(now) {
            self.remove(&key);
            return Update::Updated;
        }
        entry.version = expected.wrapping_add(1);
        let expires_at = entry.expires_at;
        if slot.entry.principal != entry.principal {
            self.owners
                .relink(slot.entry.principal.as_ref(), entry.principal.as_ref(), key);
        }
        slot.entry = entry;
        if let Some(left) = self.index.follow(key, slot, expires_at) {
            self.unindex(left);
        }
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
        let mut offset = sweep.checked_from.unwrap_or(usize::MAX);
        loop {
            // The vector may have become shorter (holes dropped at its end,
            // a compaction, the tick dropped): keys only ever move down.
            offset = offset.min(self.index.len_of(now_tick));
            if offset == 0 {
                break;
            }
            if steps >= budget {
                sweep.checked_from = Some(offset);
                return (removed, false);
            }
            offset -= 1;
            steps += 1;
            let Some(Some(key)) = self.index.get(now_tick, offset) else {
                // A hole.
                continue;
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
            // A compaction this may cause moves keys down only: those below
            // `offset` stay unchecked, checked ones may be checked again.
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

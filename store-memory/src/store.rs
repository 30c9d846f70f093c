//! [`MemoryStore`]: shards, routing, configuration and the trait impl.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use session_core::{
    Cursor, Error, Page, Principal, PrincipalIndex, Record, Result, SessionKey, SessionStore,
    Timestamp, UpdateOutcome, async_trait,
};

use crate::hash::{Key, Seeds};
use crate::shard::{Entry, Removed, Shard, Sweep, Update};
use crate::{BACKEND, MemoryStoreBuilder};

/// Shards per available core, before rounding up to a power of two.
const SHARDS_PER_CORE: usize = 4;
/// Fewest shards chosen automatically.
const MIN_AUTO_SHARDS: usize = 16;
/// Most shards [`MemoryStoreBuilder::with_shards`] accepts.
pub(crate) const MAX_SHARDS: usize = 1 << 16;
/// With a capacity bound and an automatic shard count, each shard's share of
/// the bound is at least this many sessions, so that the per-shard bound
/// stays close to the global one.
const MIN_SHARE: usize = 1024;
/// `delete_expired` releases a shard's lock after this many steps (a step
/// checks one indexed key: removes it, re-indexes a postponed one, or leaves
/// one that is not due yet), so a sweep never blocks requests for long.
const REAP_BATCH: usize = 4096;
/// The prefix of this store's listing cursors: `mem:<shard>:<key or empty>`.
const CURSOR: &str = "mem:";

/// One shard on its own cache lines, so that locking one shard does not
/// slow down its neighbours (false sharing).
#[repr(align(128))]
struct Slot(RwLock<Shard>);

/// An in-process session store: sharded, optionally bounded, reaped in time
/// proportional to what expired. See the [crate documentation](crate).
///
/// Each `MemoryStore` is its own namespace. Cloning is not provided: share
/// one store through an `Arc`.
pub struct MemoryStore {
    shards: Box<[Slot]>,
    /// `shards.len() - 1`; the length is a power of two.
    mask: usize,
    seeds: Seeds,
    max_sessions: Option<NonZeroUsize>,
    /// Entries a shard may hold: `max_sessions / shards`, or `usize::MAX`.
    shard_cap: usize,
    evictions: AtomicU64,
}

impl MemoryStore {
    /// An empty, unbounded store with the automatic shard count (4 per
    /// core, at least 16, a power of two). For a bound or another shard
    /// count, use [`builder`](Self::builder).
    #[must_use]
    pub fn new() -> Self {
        Self::with_layout(None, None)
    }

    /// Configure a store: a capacity bound, the shard count.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::new()
    }

    /// A store with `shards` (already checked: 1 to 65,536) or the
    /// automatic count, bounded to `max` sessions if given.
    pub(crate) fn with_layout(shards: Option<usize>, max: Option<NonZeroUsize>) -> Self {
        let seeds = Seeds::random();
        let (count, shard_cap) = layout(shards, max);
        Self {
            shards: new_shards(count, &seeds),
            mask: count - 1,
            seeds,
            max_sessions: max,
            shard_cap,
            evictions: AtomicU64::new(0),
        }
    }

    /// The number of shards.
    #[must_use]
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The capacity bound, if any.
    #[must_use]
    pub fn max_sessions(&self) -> Option<NonZeroUsize> {
        self.max_sessions
    }

    /// How many **live** sessions were evicted to respect the capacity bound
    /// since the store was built. Expired records removed to make room are
    /// not counted: they were dead already.
    #[must_use]
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    fn slot(&self, key: &Key) -> &RwLock<Shard> {
        &self.shards[self.seeds.route(key, self.mask)].0
    }

    fn count(&self, removed: Removed) {
        if removed.evicted > 0 {
            self.evictions.fetch_add(removed.evicted, Ordering::Relaxed);
        }
    }

    /// Entries held per shard, expired or not (tests).
    #[cfg(test)]
    pub(crate) fn stored_per_shard(&self) -> Vec<usize> {
        self.shards.iter().map(|s| s.0.read().stored()).collect()
    }

    /// Map slots allocated over all shards (tests).
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> usize {
        self.shards.iter().map(|s| s.0.read().capacity()).sum()
    }

    /// Keys held under `principal` in the shards' own maps, expired or not,
    /// and the number of principals with any key (tests).
    #[cfg(test)]
    pub(crate) fn owners(&self, principal: &Principal) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(keys, principals), s| {
            let shard = s.0.read();
            shard.assert_consistent();
            (
                keys + shard.owned(principal),
                principals + shard.principals(),
            )
        })
    }

    // The operations at an explicit time (Unix milliseconds): the trait
    // methods call them with the clock, the tests with chosen instants.

    pub(crate) fn load_at(&self, key: &SessionKey, now: i64) -> Result<Option<Record>> {
        let k = Key(*key.as_bytes());
        let entry = self.slot(&k).read().get(&k, now).cloned();
        Ok(entry.map(decode))
    }

    pub(crate) fn create_at(&self, key: &SessionKey, record: &Record, now: i64) -> Result<bool> {
        let entry = encode(record)?;
        let k = Key(*key.as_bytes());
        let (created, removed) = self.slot(&k).write().create(k, entry, now, self.shard_cap);
        self.count(removed);
        Ok(created)
    }

    pub(crate) fn update_at(
        &self,
        key: &SessionKey,
        record: &Record,
        expected: u64,
        now: i64,
    ) -> Result<UpdateOutcome> {
        let entry = encode(record)?;
        let k = Key(*key.as_bytes());
        let outcome = self.slot(&k).write().update(k, entry, expected, now);
        Ok(match outcome {
            Update::Updated => UpdateOutcome::Updated,
            Update::Missing => UpdateOutcome::Missing,
            Update::Conflict => UpdateOutcome::Conflict,
        })
    }

    pub(crate) fn save_at(&self, key: &SessionKey, record: &Record, now: i64) -> Result<()> {
        let entry = encode(record)?;
        let k = Key(*key.as_bytes());
        let removed = self.slot(&k).write().save(k, entry, now, self.shard_cap);
        self.count(removed);
        Ok(())
    }

    pub(crate) fn touch_at(&self, key: &SessionKey, expires_at: Timestamp, now: i64) -> bool {
        let k = Key(*key.as_bytes());
        self.slot(&k).write().touch(k, expires_at.as_millis(), now)
    }

    pub(crate) fn len_at(&self, now: i64) -> u64 {
        let live: usize = self.shards.iter().map(|s| s.0.read().live_len(now)).sum();
        live as u64
    }

    /// One page: shard by shard, each in key order (keyset pagination
    /// within a shard, whose keys never move to another shard).
    pub(crate) fn list_at(
        &self,
        cursor: Option<&Cursor>,
        limit: NonZeroUsize,
        now: i64,
    ) -> Result<Page> {
        let (mut shard, mut after) = match cursor {
            None => (0, None),
            Some(cursor) => self.parse_cursor(cursor)?,
        };
        let mut entries = Vec::new();
        while shard < self.shards.len() {
            let want = limit.get() - entries.len();
            let found = self.shards[shard]
                .0
                .read()
                .live_after(after.as_ref(), want, now);
            let full = found.len() == want;
            after = found.last().map(|(k, _)| *k);
            entries.extend(found);
            if full {
                break;
            }
            shard += 1;
            after = None;
        }
        let next = (shard < self.shards.len()).then(|| {
            let hex = after.map(|k| SessionKey::from_bytes(k.0));
            Cursor::new(format!(
                "{CURSOR}{shard}:{}",
                hex.as_ref().map_or("", SessionKey::as_str)
            ))
        });
        let records = entries
            .into_iter()
            .map(|(k, e)| (SessionKey::from_bytes(k.0), decode(e)))
            .collect();
        Ok(Page { records, next })
    }

    /// The shard and key a cursor of [`list_at`](Self::list_at) resumes at.
    fn parse_cursor(&self, cursor: &Cursor) -> Result<(usize, Option<Key>)> {
        let invalid = |reason| Error::invalid_cursor(BACKEND, reason);
        let (shard, key) = cursor
            .as_str()
            .strip_prefix(CURSOR)
            .and_then(|rest| rest.split_once(':'))
            .ok_or_else(|| invalid("not a memory store cursor"))?;
        let shard: usize = shard.parse().map_err(|_| invalid("not a shard number"))?;
        if shard >= self.shards.len() {
            return Err(invalid("a shard this store does not have"));
        }
        let key = if key.is_empty() {
            None
        } else {
            let key = SessionKey::parse(key).map_err(|_| invalid("not a session key"))?;
            Some(Key(*key.as_bytes()))
        };
        Ok((shard, key))
    }

    pub(crate) fn delete_expired_at(&self, now: i64) -> u64 {
        let mut total = 0u64;
        for slot in self.shards.iter() {
            let mut sweep = Sweep::default();
            loop {
                let mut shard = slot.0.write();
                let (removed, finished) = shard.reap(now, REAP_BATCH, &mut sweep);
                total += removed as u64;
                if finished {
                    shard.shrink_if_sparse();
                    break;
                }
                // More to do: let waiting requests in between batches.
                drop(shard);
            }
        }
        total
    }

    /// The live sessions of `principal`: each shard's key set for it,
    /// under that shard's read lock (decoded after it is released).
    pub(crate) fn sessions_of_at(
        &self,
        principal: &Principal,
        now: i64,
    ) -> Vec<(SessionKey, Record)> {
        let mut found = Vec::new();
        for slot in self.shards.iter() {
            found.extend(slot.0.read().owned_by(principal, now));
        }
        found
            .into_iter()
            .map(|(k, e)| (SessionKey::from_bytes(k.0), decode(e)))
            .collect()
    }

    /// Remove every session of `principal` but `except`, shard by shard,
    /// each under its write lock: a write to one of them either comes
    /// before (and is removed) or finds it gone (`update` is `Missing`).
    pub(crate) fn destroy_all_of_at(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
        now: i64,
    ) -> u64 {
        let except = except.map(|k| Key(*k.as_bytes()));
        let mut destroyed = 0;
        for slot in self.shards.iter() {
            let (live, removed) = slot
                .0
                .write()
                .remove_owned_by(principal, except.as_ref(), now);
            destroyed += live;
            // The data is freed after the lock is released.
            drop(removed);
        }
        destroyed
    }

    /// Keys held under `principal`, expired-unreaped ones included.
    pub(crate) fn index_len_now(&self, principal: &Principal) -> u64 {
        let held: usize = self
            .shards
            .iter()
            .map(|s| s.0.read().owned_count(principal))
            .sum();
        held as u64
    }

    fn clear_now(&self) {
        for slot in self.shards.iter() {
            let old = slot.0.write().take();
            // Freed after the lock is released.
            drop(old);
        }
    }
}

impl Default for MemoryStore {
    /// Same as [`MemoryStore::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .field("max_sessions", &self.max_sessions)
            .field("evictions", &self.evictions())
            .finish_non_exhaustive()
    }
}

/// `(shard count, per-shard cap)` for a configuration.
fn layout(requested: Option<usize>, max: Option<NonZeroUsize>) -> (usize, usize) {
    let mut count = match requested {
        Some(n) => n.clamp(1, MAX_SHARDS).next_power_of_two(),
        None => auto_shards(),
    };
    let Some(max) = max else {
        return (count, usize::MAX);
    };
    let max = max.get();
    if requested.is_none() {
        count = count.min(floor_power_of_two(max / MIN_SHARE));
    }
    count = count.min(floor_power_of_two(max));
    (count, max / count)
}

/// `SHARDS_PER_CORE` × available cores, rounded up to a power of two, at
/// least `MIN_AUTO_SHARDS`.
fn auto_shards() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    cores
        .saturating_mul(SHARDS_PER_CORE)
        .clamp(MIN_AUTO_SHARDS, MAX_SHARDS)
        .next_power_of_two()
}

/// The largest power of two `<= n`, and 1 for 0.
fn floor_power_of_two(n: usize) -> usize {
    if n <= 1 {
        1
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

fn new_shards(count: usize, seeds: &Seeds) -> Box<[Slot]> {
    (0..count)
        .map(|_| Slot(RwLock::new(Shard::new(seeds.map_hasher()))))
        .collect()
}

fn encode(record: &Record) -> Result<Entry> {
    Ok(Entry {
        data: Record::encode_data(&record.data)?,
        created_at: record.created_at.as_millis(),
        expires_at: record.expires_at.as_millis(),
        version: record.version,
        // Allocated here, outside the lock; anonymous sessions allocate
        // nothing.
        principal: record.principal.clone().map(Arc::new),
    })
}

/// The record of an entry. The data is handed out as the shared text and
/// decoded only when the application first reads it: the text was made by
/// `Record::encode_data` and cannot be changed from outside, so it needs
/// no checking.
fn decode(entry: Entry) -> Record {
    Record::with_times(
        entry.data,
        Timestamp::from_millis(entry.created_at),
        Timestamp::from_millis(entry.expires_at),
    )
    .with_version(entry.version)
    .with_principal(entry.principal.map(Arc::unwrap_or_clone))
}

fn now() -> i64 {
    Timestamp::now().as_millis()
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.load_at(key, now())
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        self.create_at(key, record, now())
    }

    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<UpdateOutcome> {
        self.update_at(key, record, expected_version, now())
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        self.save_at(key, record, now())
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        Ok(self.touch_at(key, expires_at, now()))
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        let k = Key(*key.as_bytes());
        let removed = self.slot(&k).write().remove(&k);
        // The data is freed after the lock is released.
        drop(removed);
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.clear_now();
        Ok(())
    }

    async fn len(&self) -> Result<u64> {
        Ok(self.len_at(now()))
    }

    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        self.list_at(cursor, limit, now())
    }

    async fn delete_expired(&self) -> Result<u64> {
        Ok(self.delete_expired_at(now()))
    }
}

/// Kept per shard next to the records, under the same lock: see the
/// [crate documentation](crate#the-principal-index).
#[async_trait]
impl PrincipalIndex for MemoryStore {
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<(SessionKey, Record)>> {
        Ok(self.sessions_of_at(principal, now()))
    }

    async fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
    ) -> Result<u64> {
        Ok(self.destroy_all_of_at(principal, except, now()))
    }

    async fn index_len(&self, principal: &Principal) -> Result<u64> {
        Ok(self.index_len_now(principal))
    }
}

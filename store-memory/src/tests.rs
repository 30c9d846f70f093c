//! What the conformance suite cannot see: capacity, eviction, reaping cost
//! and shrinking, sharding, the decode-error path, the reaper.
//!
//! Most tests run the operations at chosen instants (`*_at`), so expiry is
//! deterministic; only the reaper test waits on the clock.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use session_core::{
    Cursor, Data, Error, Principal, Reaper, ReaperConfig, Record, SessionId, SessionKey,
    SessionStore, Timestamp, UpdateOutcome,
};

use crate::MemoryStore;
use crate::hash::Key;
use crate::shard::{Entry, Shard, Sweep};

/// A fixed "now" for the deterministic tests, at the start of an index tick.
const T0: i64 = 1_700_000_000_000;
/// The expiry index's tick, in milliseconds.
const TICK: i64 = 1024;

fn key() -> SessionKey {
    SessionId::generate().unwrap().key()
}

fn data(n: i64) -> Data {
    let serde_json::Value::Object(map) = json!({ "n": n }) else {
        unreachable!()
    };
    map.into()
}

impl MemoryStore {
    /// Every live record at `now`, listed in pages of `limit`.
    fn list_all_at(&self, now: i64, limit: usize) -> Vec<(SessionKey, Record)> {
        let limit = NonZeroUsize::new(limit).unwrap();
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.list_at(cursor.as_ref(), limit, now).unwrap();
            assert!(page.records.len() <= limit.get());
            out.extend(page.records);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return out,
            }
        }
    }
}

/// A record created at `T0` expiring at `T0 + ms`.
fn expiring_in(ms: i64, n: i64) -> Record {
    Record::with_times(
        data(n),
        Timestamp::from_millis(T0),
        Timestamp::from_millis(T0 + ms),
    )
}

fn max(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

fn entry(expires_at: i64) -> Entry {
    Entry {
        data: session_core::Data::new().encoded().unwrap(),
        created_at: T0,
        expires_at,
        version: 0,
        principal: None,
    }
}

/// The principals the random test uses: `principal(0..RANDOM_PRINCIPALS)`.
const RANDOM_PRINCIPALS: u8 = 3;

fn principal(n: u8) -> Principal {
    Principal::new(format!("user:{n}")).unwrap()
}

/// [`entry`] of `principal(p)`, or anonymous.
fn owned_entry(expires_at: i64, p: Option<u8>) -> Entry {
    Entry {
        principal: p.map(|p| Arc::new(principal(p))),
        ..entry(expires_at)
    }
}

fn raw_key(b: u8) -> Key {
    Key([b; 32])
}

#[test]
fn shard_evicts_expired_first_then_soonest_to_expire() {
    assert_eq!(T0 % TICK, 0);
    let mut shard = Shard::new(crate::hash::Seeds::random().map_hasher());
    let cap = 3;
    assert_eq!(
        shard.put(raw_key(1), entry(T0 + 3 * TICK), T0, cap).evicted,
        0
    );
    assert_eq!(shard.put(raw_key(2), entry(T0 + TICK), T0, cap).evicted, 0);
    assert_eq!(
        shard.put(raw_key(3), entry(T0 + 2 * TICK), T0, cap).evicted,
        0
    );

    // Half a tick after key 2 expired: making room removes it, no eviction.
    let now = T0 + TICK + TICK / 2;
    assert_eq!(
        shard
            .put(raw_key(4), entry(T0 + 4 * TICK), now, cap)
            .evicted,
        0
    );
    assert!(shard.get(&raw_key(2), now).is_none());
    assert_eq!(shard.stored(), 3);

    // Nothing expired left: the soonest to expire (key 3) goes.
    assert_eq!(
        shard
            .put(raw_key(5), entry(T0 + 5 * TICK), now, cap)
            .evicted,
        1
    );
    assert!(shard.get(&raw_key(3), now).is_none());
    for k in [1, 4, 5] {
        assert!(shard.get(&raw_key(k), now).is_some(), "key {k} kept");
    }

    // Replacing an existing key never evicts.
    assert_eq!(
        shard
            .put(raw_key(5), entry(T0 + 9 * TICK), now, cap)
            .evicted,
        0
    );
    assert_eq!(shard.stored(), 3);
}

#[test]
fn eviction_orders_by_tick_and_follows_earlier_expiries() {
    let mut shard = Shard::new(crate::hash::Seeds::random().map_hasher());
    // Keys 3 and 9 expire in the same tick (100 ms apart), key 7 a tick later.
    shard.put(raw_key(3), entry(T0 + TICK + 100), T0, 3);
    shard.put(raw_key(9), entry(T0 + TICK + 200), T0, 3);
    shard.put(raw_key(7), entry(T0 + 2 * TICK), T0, 3);
    assert_eq!(
        shard.put(raw_key(1), entry(T0 + 5 * TICK), T0, 3).evicted,
        1
    );
    let kept = [3, 9].map(|k| shard.get(&raw_key(k), T0).is_some());
    assert_eq!(
        kept.iter().filter(|&&k| k).count(),
        1,
        "one of the soonest tick"
    );
    assert!(shard.get(&raw_key(7), T0).is_some());
    // Moving key 1's expiry earlier, before every other, indexes it again:
    // it goes next, by touch or by a write alike.
    assert!(shard.touch(raw_key(1), T0 + 100, T0));
    assert_eq!(
        shard.put(raw_key(2), entry(T0 + 6 * TICK), T0, 3).evicted,
        1
    );
    assert!(shard.get(&raw_key(1), T0).is_none());
    shard.put(raw_key(7), entry(T0 + 50), T0, 3);
    assert_eq!(
        shard.put(raw_key(4), entry(T0 + 6 * TICK), T0, 3).evicted,
        1
    );
    assert!(shard.get(&raw_key(7), T0).is_none());
    assert_eq!(shard.stored(), 3);
    assert_eq!(shard.live_len(T0), 3);
}

#[test]
fn reaping_walks_now_s_tick_in_bounded_steps() {
    // 3,000 keys in now's tick, every third one due; the rest of the tick
    // is not. With 100 steps per call the sweep must resume where it left
    // off (starting over would never finish) and remove exactly the due
    // ones, while writes between the calls move keys around in the tick.
    let mut shard = Shard::new(crate::hash::Seeds::random().map_hasher());
    let now = T0 + TICK / 2;
    for i in 0..3_000u32 {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        let expires_at = if i % 3 == 0 {
            now - 1
        } else {
            now + 1 + i64::from(i % 400)
        };
        shard.put(Key(k), entry(expires_at), T0, usize::MAX);
    }
    let mut sweep = Sweep::default();
    let (mut removed, mut calls) = (0, 0u32);
    loop {
        let (n, finished) = shard.reap(now, 100, &mut sweep);
        removed += n;
        calls += 1;
        if finished {
            break;
        }
        assert!(calls < 100, "the sweep does not progress");
        // A destroy between calls leaves a hole in the tick (and may make
        // it sparse enough to be compacted under the sweep).
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&(1 + 3 * calls).to_le_bytes());
        assert!(shard.remove(&Key(k)).is_some());
    }
    assert_eq!(removed, 1_000);
    assert_eq!(
        shard.stored(),
        2_000 - (calls as usize - 1),
        "destroyed between calls"
    );
    assert_eq!(shard.live_len(now), shard.stored());
    // A second sweep finds nothing, and still ends.
    let mut sweep = Sweep::default();
    let mut calls = 0;
    while !matches!(shard.reap(now, 100, &mut sweep), (0, true)) {
        calls += 1;
        assert!(calls < 100, "the second sweep does not progress");
    }
}

/// A sweep whose own removals make now's tick mostly holes compacts it
/// while the sweep is under way; keys only move down, so the resumed sweep
/// still removes every due key and keeps the others.
#[test]
fn reaping_survives_compaction_of_now_s_tick() {
    let mut shard = Shard::new(crate::hash::Seeds::random().map_hasher());
    let now = T0 + TICK / 2;
    for i in 0..1_000u32 {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        let expires_at = if i % 10 == 0 { now + 1 } else { now - 1 };
        shard.put(Key(k), entry(expires_at), T0, usize::MAX);
    }
    let mut sweep = Sweep::default();
    let (mut removed, mut calls) = (0, 0u32);
    loop {
        let (n, finished) = shard.reap(now, 37, &mut sweep);
        removed += n;
        calls += 1;
        shard.assert_consistent();
        if finished {
            break;
        }
        assert!(calls < 1_000, "the sweep does not progress");
    }
    assert_eq!(removed, 900);
    assert_eq!((shard.stored(), shard.live_len(now)), (100, 100));
    assert!(shard.index_places() <= 4 * 100 + 16, "compacted");
}

/// Destroying keys leaves holes in their tick, not a moved key (whose map
/// slot would need a second probe); a tick that becomes mostly holes is
/// compacted, and every key's recorded position follows it.
#[test]
fn destroying_most_of_a_tick_compacts_it_and_keeps_positions() {
    let mut shard = Shard::new(crate::hash::Seeds::random().map_hasher());
    let key_of = |i: u32| {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        Key(k)
    };
    for i in 0..1_000 {
        shard.put(key_of(i), entry(T0 + TICK / 2), T0, usize::MAX);
    }
    // A scattered order (7919 is prime to 1,000), keeping every tenth key.
    for i in 0..1_000u32 {
        let j = (i * 7_919) % 1_000;
        if j % 10 != 0 {
            assert!(shard.remove(&key_of(j)).is_some());
            shard.assert_consistent();
            assert!(
                shard.index_places() <= 4 * shard.stored() + 16,
                "holes are bounded: {} places for {} keys",
                shard.index_places(),
                shard.stored()
            );
        }
    }
    assert_eq!(shard.stored(), 100);
    assert_eq!(shard.live_len(T0), 100);
    // The survivors are found by reaping once they expire, and the tick
    // goes with them.
    let mut sweep = Sweep::default();
    assert_eq!(shard.reap(T0 + TICK, usize::MAX, &mut sweep), (100, true));
    assert_eq!((shard.stored(), shard.index_places()), (0, 0));
    shard.assert_consistent();
}

#[tokio::test]
async fn store_evicts_soonest_to_expire_and_counts_it() {
    let store = MemoryStore::builder()
        .with_max_sessions(max(3))
        .build_now()
        .unwrap();
    assert_eq!(store.shard_count(), 1, "a small bound is exact: one shard");
    let keys: Vec<_> = (0..3).map(|_| key()).collect();
    for (i, (k, ttl)) in keys.iter().zip([30_000, 10_000, 20_000]).enumerate() {
        store.save_at(k, &expiring_in(ttl, i as i64), T0).unwrap();
    }
    assert_eq!(store.evictions(), 0);

    // Writes to existing keys never evict.
    store
        .save_at(&keys[0], &expiring_in(30_000, 7), T0)
        .unwrap();
    assert_eq!(
        store
            .update_at(&keys[1], &expiring_in(10_000, 8), 0, T0)
            .unwrap(),
        UpdateOutcome::Updated
    );
    assert!(store.touch_at(&keys[2], Timestamp::from_millis(T0 + 20_000), T0));
    assert_eq!(store.evictions(), 0);

    // A fourth session evicts keys[1], the one closest to expiring.
    let fourth = key();
    assert!(
        store
            .create_at(&fourth, &expiring_in(40_000, 3), T0)
            .unwrap()
    );
    assert_eq!(store.evictions(), 1);
    assert_eq!(store.len_at(T0), 3);
    assert_eq!(store.load_at(&keys[1], T0).unwrap(), None);
    for k in [&keys[0], &keys[2], &fourth] {
        assert!(store.load_at(k, T0).unwrap().is_some());
    }

    // Once keys[2] has expired (at +20 s), it makes room without counting.
    let later = T0 + 25_000;
    store
        .save_at(&key(), &expiring_in(50_000, 4), later)
        .unwrap();
    assert_eq!(store.evictions(), 1);
    assert_eq!(store.len_at(later), 3);
}

#[test]
fn capacity_bound_is_never_exceeded() {
    // One shard: exact.
    let store = MemoryStore::builder()
        .with_max_sessions(max(100))
        .build_now()
        .unwrap();
    for i in 0..1000 {
        store
            .save_at(&key(), &expiring_in(60_000 + i * TICK, i), T0)
            .unwrap();
    }
    assert_eq!(store.len_at(T0), 100);
    assert_eq!(store.evictions(), 900);
    // The survivors are the 100 that expire last (one per tick here).
    let mut expiries: Vec<i64> = store
        .list_all_at(T0, 7)
        .iter()
        .map(|(_, r)| (r.expires_at.as_millis() - T0 - 60_000) / TICK)
        .collect();
    expiries.sort_unstable();
    assert_eq!(expiries, (900..1000).collect::<Vec<_>>());

    // Many shards: each holds max / shards, so the total stays <= max.
    let store = MemoryStore::builder()
        .with_shards(16)
        .with_max_sessions(max(100))
        .build_now()
        .unwrap();
    assert_eq!(store.shard_count(), 16);
    for i in 0..1000 {
        store.save_at(&key(), &expiring_in(60_000, i), T0).unwrap();
    }
    let len = store.len_at(T0);
    assert!(len <= 96, "16 shards x 6 = 96 at most, got {len}");
    assert_eq!(store.evictions() + len, 1000);

    // Automatic shard count with a large bound: shares of >= 1024.
    let store = MemoryStore::builder()
        .with_max_sessions(max(10_000))
        .build_now()
        .unwrap();
    assert!(store.shard_count() <= 8 && store.shard_count().is_power_of_two());
    for i in 0..20_000 {
        store.save_at(&key(), &expiring_in(60_000, i), T0).unwrap();
    }
    let len = store.len_at(T0);
    assert!((9_000..=10_000).contains(&len), "len {len}");
    assert_eq!(store.evictions() + len, 20_000);
}

#[test]
fn delete_expired_leaves_live_ones_and_shrinks() {
    let store = MemoryStore::new();
    let live: Vec<_> = (0..100).map(|_| key()).collect();
    for (i, k) in live.iter().enumerate() {
        store
            .save_at(k, &expiring_in(3_600_000, i as i64), T0)
            .unwrap();
    }
    for i in 0..20_000 {
        store
            .save_at(&key(), &expiring_in(1_000 + i % 500, i), T0)
            .unwrap();
    }
    let allocated = store.allocated();
    assert!(allocated >= 20_100);

    let now = T0 + 2_000;
    assert_eq!(store.len_at(now), 100, "len ignores the expired");
    assert_eq!(store.delete_expired_at(now), 20_000);
    assert_eq!(store.delete_expired_at(now), 0, "idempotent");
    assert_eq!(store.len_at(now), 100);
    assert_eq!(store.stored_per_shard().iter().sum::<usize>(), 100);
    for k in &live {
        assert!(store.load_at(k, now).unwrap().is_some());
    }
    let after = store.allocated();
    assert!(
        after * 4 < allocated,
        "maps shrank: {allocated} -> {after} slots"
    );
}

#[test]
fn delete_expired_removes_only_what_expired_by_now() {
    let store = MemoryStore::new();
    for i in 0..10 {
        store
            .save_at(&key(), &expiring_in(100 * (i + 1), i), T0)
            .unwrap();
    }
    // Expiry is exclusive: at exactly T0 + 500, the record expiring then is gone.
    assert_eq!(store.len_at(T0 + 499), 6);
    assert_eq!(store.len_at(T0 + 500), 5);
    assert_eq!(store.delete_expired_at(T0 + 500), 5);
    assert_eq!(store.len_at(T0 + 500), 5);
}

#[tokio::test]
async fn clear_releases_everything() {
    let store = MemoryStore::new();
    for i in 0..5_000 {
        store.save_at(&key(), &expiring_in(60_000, i), T0).unwrap();
    }
    store.clear().await.unwrap();
    assert_eq!(store.len_at(T0), 0);
    assert_eq!(store.allocated(), 0);
}

#[test]
fn sharding_spreads_keys() {
    let store = MemoryStore::new();
    let shards = store.shard_count();
    assert!(shards >= 16 && shards.is_power_of_two());
    let n = 1_000 * shards;
    for i in 0..n {
        store
            .save_at(&key(), &expiring_in(60_000, i as i64), T0)
            .unwrap();
    }
    let counts = store.stored_per_shard();
    // Mean 1000, standard deviation ~32: +-25% is over 7 deviations.
    for (i, &c) in counts.iter().enumerate() {
        assert!((750..=1250).contains(&c), "shard {i} holds {c} of {n}");
    }
}

#[test]
fn shard_layout() {
    let shards = |n| {
        MemoryStore::builder()
            .with_shards(n)
            .build_now()
            .map(|s| s.shard_count())
    };
    assert_eq!(shards(5).unwrap(), 8, "rounded up to a power of two");
    assert_eq!(shards(1).unwrap(), 1);
    assert_eq!(shards(1 << 16).unwrap(), 1 << 16);
    for bad in [0, (1 << 16) + 1] {
        let err = shards(bad).unwrap_err();
        assert!(
            matches!(
                err,
                session_core::Error::Config {
                    backend: "memory",
                    ..
                }
            ),
            "{err}"
        );
    }
    // The bound caps the count so every shard holds at least one session.
    let store = MemoryStore::builder()
        .with_shards(64)
        .with_max_sessions(max(10))
        .build_now()
        .unwrap();
    assert_eq!(store.shard_count(), 8);
    assert_eq!(store.max_sessions(), Some(max(10)));
    let small = MemoryStore::builder()
        .with_max_sessions(max(2047))
        .build_now()
        .unwrap();
    assert_eq!(small.shard_count(), 1);
    assert_eq!(MemoryStore::default().max_sessions(), None);
}

#[test]
fn len_and_all_follow_expiry_and_touch() {
    let store = MemoryStore::new();
    let k = key();
    store.save_at(&k, &expiring_in(1_000, 1), T0).unwrap();
    assert!(store.touch_at(&k, Timestamp::from_millis(T0 + 5_000), T0 + 500));
    assert_eq!(store.len_at(T0 + 4_999), 1);
    assert_eq!(store.list_all_at(T0 + 4_999, 1).len(), 1);
    assert_eq!(store.len_at(T0 + 5_000), 0);
    assert!(store.list_all_at(T0 + 5_000, 1).is_empty());
    // Touching into the past expires it; touching it again finds nothing.
    store.save_at(&k, &expiring_in(1_000, 1), T0).unwrap();
    assert!(store.touch_at(&k, Timestamp::from_millis(T0), T0));
    assert!(!store.touch_at(&k, Timestamp::from_millis(T0 + 9_000), T0));
    assert_eq!(store.stored_per_shard().iter().sum::<usize>(), 0);
}

#[tokio::test]
async fn loaded_data_shares_the_stored_text_until_changed() {
    let store = MemoryStore::new();
    let k = key();
    let saved = Record::new(data(1), Duration::from_secs(60));
    store.save(&k, &saved).await.unwrap();
    let mut loaded = store.load(&k).await.unwrap().unwrap();
    // Handed out as the stored text: saving it back encodes nothing...
    assert!(loaded.data.is_encoded());
    assert_eq!(
        loaded.data.encoded().unwrap(),
        saved.data.encoded().unwrap()
    );
    // ...and it reads as what was saved.
    assert_eq!(loaded.data, saved.data);
    loaded.data.insert("changed".into(), true.into());
    assert!(!loaded.data.is_encoded());
    let (_, listed) = store.all().await.unwrap().pop().unwrap();
    assert_eq!(listed.data, saved.data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_the_generic_reaper() {
    let store = Arc::new(MemoryStore::new());
    for i in 0..1_000 {
        let record = Record::new(data(i), Duration::from_millis(100));
        store.save(&key(), &record).await.unwrap();
    }
    let live = key();
    store
        .save(&live, &Record::new(data(0), Duration::from_secs(600)))
        .await
        .unwrap();
    let reaper = Reaper::spawn(store.clone(), ReaperConfig::new(Duration::from_millis(50)));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.stored_per_shard().iter().sum::<usize>() > 1 {
        assert!(std::time::Instant::now() < deadline, "reaper did not reap");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reaper.stop().await;
    assert!(store.load(&live).await.unwrap().is_some());
    assert_eq!(store.len().await.unwrap(), 1);
}

#[test]
fn postponed_expiries_are_reindexed_when_met() {
    let mut shard = Shard::new(crate::hash::Seeds::random().map_hasher());
    let cap = usize::MAX;
    shard.put(raw_key(1), entry(T0 + TICK), T0, cap);
    shard.put(raw_key(2), entry(T0 + TICK), T0, cap);
    shard.put(raw_key(3), entry(T0 + TICK), T0, cap);
    // Key 1 postponed by touch, key 2 by a write; key 3 moved earlier.
    assert!(shard.touch(raw_key(1), T0 + 5 * TICK, T0));
    shard.put(raw_key(2), entry(T0 + 3 * TICK), T0, cap);
    assert!(shard.touch(raw_key(3), T0 + 50, T0));

    let now = T0 + 2 * TICK;
    assert_eq!(shard.live_len(now), 2);
    // Key 3 is removed at its earlier expiry, from now's tick...
    assert_eq!(shard.reap(T0 + 60, 10, &mut Sweep::default()), (1, true));
    // ...and the postponed keys are moved, not removed, when met.
    assert_eq!(shard.reap(now, 10, &mut Sweep::default()), (0, true));
    assert_eq!(shard.stored(), 2);
    assert_eq!(shard.live_len(now), 2);
    assert_eq!(
        shard.reap(T0 + 3 * TICK, 10, &mut Sweep::default()),
        (1, true)
    );
    assert!(shard.get(&raw_key(1), T0 + 3 * TICK).is_some());
    assert_eq!(shard.live_len(T0 + 5 * TICK), 0);
    assert_eq!(
        shard.reap(T0 + 5 * TICK, 10, &mut Sweep::default()),
        (1, true)
    );
    assert_eq!(shard.stored(), 0);
}

#[test]
fn eviction_skips_postponed_index_positions() {
    let mut shard = Shard::new(crate::hash::Seeds::random().map_hasher());
    shard.put(raw_key(1), entry(T0 + TICK), T0, 2);
    shard.put(raw_key(2), entry(T0 + 2 * TICK), T0, 2);
    // Key 1 now expires last, although it is still indexed first.
    assert!(shard.touch(raw_key(1), T0 + 9 * TICK, T0));
    assert_eq!(
        shard.put(raw_key(3), entry(T0 + 3 * TICK), T0, 2).evicted,
        1
    );
    assert!(shard.get(&raw_key(2), T0).is_none());
    assert!(shard.get(&raw_key(1), T0).is_some());
    assert!(shard.get(&raw_key(3), T0).is_some());
}

/// Keys the random test uses: `raw_key(0..RANDOM_KEYS)`.
const RANDOM_KEYS: u8 = 40;

/// What `shard` stores (live or not) for the keys `raw_key(0..RANDOM_KEYS)`,
/// by key byte: the expiry and the principal's number.
fn stored(shard: &Shard) -> Model {
    (0..RANDOM_KEYS)
        // Every entry is "live" at the earliest instant.
        .filter_map(|k| {
            let e = shard.get(&raw_key(k), i64::MIN)?;
            let p = e.principal.as_ref().map(|p| {
                (0..RANDOM_PRINCIPALS)
                    .find(|&n| **p == principal(n))
                    .unwrap()
            });
            Some((k, (e.expires_at, p)))
        })
        .collect()
}

/// Key byte → (expiry, principal's number).
type Model = std::collections::BTreeMap<u8, (i64, Option<u8>)>;

/// Random operations on a few keys and principals at random times, each
/// checked against a model of what the shard stores, with the expiry index
/// and the keys by principal checked after every step.
#[test]
fn random_operations_match_a_model_and_keep_the_index_consistent() {
    for seed in [0x9E37_79B9_7F4A_7C15, 1, 2, 3, 4, 5] {
        random_operations(seed);
    }
}

#[allow(clippy::too_many_lines, reason = "one model, one loop")]
fn random_operations(seed: u64) {
    let cap = 12;
    let mut shard = Shard::new(crate::hash::Seeds::random().map_hasher());
    let mut model = Model::new();
    let mut state: u64 = seed;
    let mut next = move |n: i64| {
        // xorshift64: reproducible, no dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.unsigned_abs()) as i64
    };
    let (mut now, mut sweep, mut evictions) = (T0, Sweep::default(), 0);
    for step in 0..20_000 {
        let k = next(i64::from(RANDOM_KEYS)) as u8;
        // Expiries within a few ticks around now, at any millisecond.
        let at = now - 2 * TICK + next(8 * TICK);
        // Anonymous half of the time.
        let owner = u8::try_from(next(2 * i64::from(RANDOM_PRINCIPALS)))
            .ok()
            .filter(|&p| p < RANDOM_PRINCIPALS);
        let live = |model: &Model| model.get(&k).is_some_and(|&(e, _)| now < e);
        let mut evicted = 0;
        match next(9) {
            0 | 1 => {
                let was_live = live(&model);
                let (created, removed) = shard.create(raw_key(k), owned_entry(at, owner), now, cap);
                evicted = removed.evicted;
                assert_eq!(created, !was_live, "seed {seed} step {step}");
                if created {
                    model.remove(&k);
                    if now < at {
                        model.insert(k, (at, owner));
                    }
                }
            }
            2 => {
                evicted = shard
                    .save(raw_key(k), owned_entry(at, owner), now, cap)
                    .evicted;
                model.remove(&k);
                if now < at {
                    model.insert(k, (at, owner));
                }
            }
            3 => {
                let was_live = live(&model);
                assert_eq!(
                    shard.touch(raw_key(k), at, now),
                    was_live,
                    "seed {seed} step {step}"
                );
                if let Some((_, p)) = model.remove(&k)
                    && was_live
                    && now < at
                {
                    // Touch keeps the principal.
                    model.insert(k, (at, p));
                }
            }
            4 => {
                shard.remove(&raw_key(k));
                model.remove(&k);
            }
            5 | 6 => {
                let (removed, finished) = shard.reap(now, 1 + next(4) as usize, &mut sweep);
                let before = model.len();
                let held = stored(&shard);
                // Only expired entries go.
                assert!(
                    model
                        .iter()
                        .all(|(k, &(e, _))| held.contains_key(k) || e <= now),
                    "seed {seed} step {step}: removed a live one"
                );
                model.retain(|k, _| held.contains_key(k));
                assert_eq!(before - model.len(), removed, "seed {seed} step {step}");
                if finished {
                    assert!(
                        model.values().all(|&(e, _)| now < e),
                        "seed {seed} step {step}: left expired"
                    );
                }
            }
            7 => {
                let p = owner.unwrap_or(0);
                let except = (next(2) == 0).then(|| raw_key(k));
                let mut listed: Vec<u8> = shard
                    .owned_by(&principal(p), now)
                    .into_iter()
                    .map(|(key, _)| key.0[0])
                    .collect();
                listed.sort_unstable();
                let expected: Vec<u8> = model
                    .iter()
                    .filter(|&(_, &(e, q))| q == Some(p) && now < e)
                    .map(|(&k, _)| k)
                    .collect();
                assert_eq!(listed, expected, "seed {seed} step {step}: listed");
                let (destroyed, _) = shard.remove_owned_by(&principal(p), except.as_ref(), now);
                let doomed = expected
                    .iter()
                    .filter(|&&key| except != Some(raw_key(key)))
                    .count();
                assert_eq!(destroyed as usize, doomed, "seed {seed} step {step}");
                model.retain(|&key, &mut (_, q)| q != Some(p) || except == Some(raw_key(key)));
            }
            _ => {
                now += next(TICK / 2);
                // A sweep belongs to one instant.
                sweep = Sweep::default();
            }
        }
        shard.assert_consistent();
        // Room for a new key is made by removing expired entries, or, when
        // none is left in the soonest tick, by evicting live ones.
        let held = stored(&shard);
        let gone: Vec<_> = model
            .keys()
            .filter(|k| !held.contains_key(k))
            .copied()
            .collect();
        let live_gone = gone.iter().filter(|k| now < model[k].0).count();
        assert_eq!(
            live_gone as u64, evicted,
            "seed {seed} step {step}: evictions counted"
        );
        for k in gone {
            model.remove(&k);
        }
        assert_eq!(held, model, "seed {seed} step {step}");
        assert!(held.len() <= cap, "seed {seed} step {step}");
        for p in 0..RANDOM_PRINCIPALS {
            let owned = model.values().filter(|&&(_, q)| q == Some(p)).count();
            assert_eq!(shard.owned(&principal(p)), owned, "seed {seed} step {step}");
        }
        evictions += evicted;
    }
    assert!(evictions > 0, "the bound was reached");
}

#[test]
fn listing_crosses_shards_once_and_skips_what_expired() {
    let store = MemoryStore::builder().with_shards(8).build_now().unwrap();
    let mut live = Vec::new();
    for i in 0..300 {
        let k = key();
        store.save_at(&k, &expiring_in(60_000, i), T0).unwrap();
        live.push(k);
    }
    for i in 0..50 {
        store.save_at(&key(), &expiring_in(1_000, i), T0).unwrap();
    }
    live.sort_unstable();
    for limit in [1, 3, 37, 300, 1_000] {
        let mut listed: Vec<_> = store
            .list_all_at(T0 + 1_000, limit)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        listed.sort_unstable();
        assert_eq!(listed, live, "limit {limit}");
    }
}

#[test]
fn a_cursor_for_a_shard_the_store_lacks_is_invalid() {
    let small = MemoryStore::builder().with_shards(2).build_now().unwrap();
    let big = MemoryStore::builder().with_shards(64).build_now().unwrap();
    for _ in 0..200 {
        big.save_at(&key(), &expiring_in(60_000, 0), T0).unwrap();
    }
    let limit = NonZeroUsize::new(150).unwrap();
    let next = big.list_at(None, limit, T0).unwrap().next.unwrap();
    assert!(next.as_str().starts_with("mem:"), "{next}");
    // The big store's cursor sits past the small store's two shards.
    for cursor in [
        Cursor::new("mem:63:"),
        Cursor::new("mem:2:"),
        Cursor::new("mem:x:"),
    ] {
        assert!(
            matches!(
                small.list_at(Some(&cursor), limit, T0),
                Err(Error::InvalidCursor {
                    backend: "memory",
                    ..
                })
            ),
            "{cursor}"
        );
    }
}

/// The check on the engine itself: 10,000 sessions of one
/// principal are all in the shards' key sets while live, and once they
/// have expired and `delete_expired` has run, no set holds any key and no
/// principal is left in any shard.
#[test]
fn ten_thousand_sessions_of_one_principal_leave_no_index_entry_once_reaped() {
    let store = MemoryStore::new();
    let alice = principal(1);
    let record = expiring_in(2_000, 0).with_principal(Some(alice.clone()));
    for _ in 0..10_000 {
        assert!(store.create_at(&key(), &record, T0).unwrap());
    }
    let (held, principals) = store.owners(&alice);
    assert_eq!(held, 10_000);
    assert_eq!(principals, store.shard_count(), "one set per shard");
    assert_eq!(store.sessions_of_at(&alice, T0 + 1_999).len(), 10_000);

    let expired = T0 + 2_000;
    assert!(store.sessions_of_at(&alice, expired).is_empty());
    // Expired, not reaped yet: still held, and counted by `index_len`.
    assert_eq!(store.index_len_now(&alice), 10_000);
    assert_eq!(store.delete_expired_at(expired), 10_000);
    assert_eq!(store.owners(&alice), (0, 0));
    assert_eq!(store.index_len_now(&alice), 0);
    assert!(store.stored_per_shard().iter().all(|&n| n == 0));
}

/// Every way a record leaves a shard takes its key out of its principal's
/// set: destroy, a write with another or no principal, an expired write,
/// eviction, `destroy_all_of`, `clear`; `touch` keeps it.
#[tokio::test]
async fn the_principal_index_follows_every_write() {
    let store = MemoryStore::builder()
        .with_max_sessions(max(2))
        .build_now()
        .unwrap();
    let (ada, bob) = (principal(0), principal(1));
    let owned = |p: &Principal| store.owners(p).0;
    let of = |p: &Principal| Some(p.clone());
    let (k1, k2, k3) = (key(), key(), key());
    let r = |ms, p: Option<Principal>| expiring_in(ms, 0).with_principal(p);

    store.save_at(&k1, &r(60_000, of(&ada)), T0).unwrap();
    assert!(store.touch_at(&k1, Timestamp::from_millis(T0 + 90_000), T0));
    assert_eq!(
        store.load_at(&k1, T0).unwrap().unwrap().principal,
        of(&ada),
        "touch keeps the principal"
    );
    assert_eq!(owned(&ada), 1);
    // Another principal, then none.
    let loaded = store.load_at(&k1, T0).unwrap().unwrap();
    let moved = loaded.clone().with_principal(of(&bob));
    assert_eq!(
        store.update_at(&k1, &moved, loaded.version, T0).unwrap(),
        UpdateOutcome::Updated
    );
    assert_eq!((owned(&ada), owned(&bob)), (0, 1));
    store.save_at(&k1, &r(60_000, None), T0).unwrap();
    assert_eq!((owned(&ada), owned(&bob)), (0, 0));
    // An expired write removes the record and its key.
    store.save_at(&k1, &r(60_000, of(&ada)), T0).unwrap();
    store.save_at(&k1, &r(-1, of(&ada)), T0).unwrap();
    assert_eq!(owned(&ada), 0);
    // Eviction (the bound is 2, one shard).
    store.save_at(&k1, &r(10_000, of(&ada)), T0).unwrap();
    store.save_at(&k2, &r(60_000, of(&ada)), T0).unwrap();
    store.save_at(&k3, &r(90_000, None), T0).unwrap();
    assert_eq!(store.evictions(), 1);
    assert_eq!(owned(&ada), 1, "the evicted session's key went with it");
    // destroy_all_of keeps the exception.
    store.save_at(&k1, &r(60_000, of(&ada)), T0).unwrap();
    assert_eq!(store.destroy_all_of_at(&ada, Some(&k1), T0), 0);
    assert_eq!(owned(&ada), 1);
    assert_eq!(store.sessions_of_at(&ada, T0)[0].0, k1);
    store.destroy(&k1).await.unwrap();
    assert_eq!(owned(&ada), 0);
    store.save_at(&k2, &r(60_000, of(&bob)), T0).unwrap();
    store.clear().await.unwrap();
    assert_eq!(store.owners(&bob), (0, 0));
}

/// What the docs say an entry costs: the principal is one pointer, so an
/// anonymous session pays 8 bytes for it (48 instead of 40).
#[cfg(target_pointer_width = "64")]
#[test]
fn an_entry_is_48_bytes() {
    assert_eq!(std::mem::size_of::<Entry>(), 48);
}

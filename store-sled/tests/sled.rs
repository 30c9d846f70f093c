//! sled-specific checks the shared suite cannot make: corrupt values written
//! behind the store's back, values of the previous format, a real reopen of
//! the directory, the expiry and principal indexes covering every record
//! (also under racing writers and reapers) and counted on the trees
//! themselves, configuration errors.

#![allow(clippy::unwrap_used, reason = "test helpers fail the test on error")]

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use session_conformance::fixtures::{
    assert_decode_error, create_sessions_of, expired, key, live, object, race_principal_writes,
    sample,
};
use session_core::{
    Cursor, Error, Page, Principal, PrincipalIndex, Record, SessionKey, SessionStore, Timestamp,
    UpdateOutcome,
};
use session_store_sled::{SledStore, sled};

/// A database path (not created yet) inside a temporary directory that is
/// removed on drop.
struct TempDir {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TempDir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        Self { _dir: dir, path }
    }
}

/// How long the live records of these tests last.
const TTL: Duration = Duration::from_secs(600);

/// The expiry index as (expires_at ms, key) pairs.
fn index(store: &SledStore) -> Vec<(i64, SessionKey)> {
    store
        .expiry_tree()
        .unwrap()
        .iter()
        .keys()
        .map(|k| {
            let k = k.unwrap();
            let ms = i64::from_ne_bytes(
                (u64::from_be_bytes(k[..8].try_into().unwrap()) ^ (1 << 63)).to_ne_bytes(),
            );
            (ms, SessionKey::from_bytes(k[8..].try_into().unwrap()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_tree_is_a_decode_error_naming_the_key() {
    let store = SledStore::temporary().await.unwrap();
    let (short, bad_json, good) = (key(), key(), key());
    for k in [&short, &bad_json, &good] {
        store.save(k, &live(sample(), TTL)).await.unwrap();
    }
    store
        .records_tree()
        .unwrap()
        .insert(short.as_bytes(), &b"garbage"[..])
        .unwrap();
    let mut value = store
        .records_tree()
        .unwrap()
        .get(bad_json.as_bytes())
        .unwrap()
        .unwrap()
        .to_vec();
    value.truncate(30); // header intact, JSON cut short
    store
        .records_tree()
        .unwrap()
        .insert(bad_json.as_bytes(), value)
        .unwrap();
    for k in [&short, &bad_json] {
        assert_decode_error(store.load(k).await, k);
    }
    assert!(matches!(store.all().await, Err(Error::Decode { .. })));
    assert!(matches!(
        store.list(None, NonZeroUsize::new(3).unwrap()).await,
        Err(Error::Decode { .. })
    ));
    assert!(matches!(store.len().await, Err(Error::Decode { .. })));
    assert!(matches!(
        store.update(&short, &live(sample(), TTL), 0).await,
        Err(Error::Decode { .. })
    ));
    assert!(store.load(&good).await.unwrap().is_some());
    // Corrupt records can still be removed.
    store.destroy(&short).await.unwrap();
    store.save(&bad_json, &live(sample(), TTL)).await.unwrap();
    assert_eq!(store.len().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_wait_outlasts_a_handle_that_is_closing() {
    let dir = TempDir::new();
    let held = SledStore::open(&dir.path).await.unwrap();
    // Without a wait, a held directory fails the build at once.
    let err = SledStore::open(&dir.path).await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    // With one, the build keeps trying until the holder lets go: the holder
    // is dropped about 50 ms after the build starts (a try fails in well
    // under a millisecond), so the build meets the lock held first.
    let (started, start) = tokio::sync::oneshot::channel();
    let release = tokio::spawn(async move {
        start.await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
    });
    let builder = SledStore::builder(&dir.path).with_lock_wait(Duration::from_secs(10));
    started.send(()).unwrap();
    let store = builder.build().await.unwrap();
    release.await.unwrap();
    store.save(&key(), &live(sample(), TTL)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_closing_and_reopening_the_directory() {
    let dir = TempDir::new();
    let (k, record) = (key(), live(sample(), TTL).with_version(9));
    {
        let store = SledStore::builder(&dir.path)
            .with_namespace("web")
            .with_flush_every(None)
            .build()
            .await
            .unwrap();
        store.save(&k, &record).await.unwrap();
        // The directory is locked while open.
        assert!(SledStore::open(&dir.path).await.is_err());
    } // last handle dropped: sled flushes and unlocks, a little later
    let store = SledStore::builder(&dir.path)
        .with_namespace("web")
        .with_lock_wait(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    assert_eq!(store.load(&k).await.unwrap(), Some(record));
    assert_eq!(index(&store).len(), 1);
    let other = store.open_namespace("api").await.unwrap();
    assert_eq!(other.load(&k).await.unwrap(), None);
}

/// The index invariant: every record has an index entry at or before its
/// expiry, so that `delete_expired` meets it once it has expired.
fn assert_covered(store: &SledStore) {
    let index = index(store);
    for entry in store.records_tree().unwrap().iter() {
        let (k, record) = entry.unwrap();
        let k = SessionKey::from_bytes(k[..].try_into().unwrap());
        let expires_at = i64::from_be_bytes(record[1..9].try_into().unwrap());
        assert!(
            index.iter().any(|&(at, ik)| ik == k && at <= expires_at),
            "record {k:?} expiring at {expires_at} has no index entry at or before it: {index:?}"
        );
    }
}

/// An index entry for `k` at `at`, written behind the store's back.
fn entry(at: i64, k: &SessionKey) -> Vec<u8> {
    let mut e = ((at as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    e.extend_from_slice(k.as_bytes());
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiry_index_covers_every_write() {
    let store = SledStore::builder_temporary()
        .with_sync_writes(true)
        .build()
        .await
        .unwrap();
    let k = key();
    let r = live(sample(), TTL);
    assert!(store.create(&k, &r).await.unwrap());
    assert_eq!(index(&store), vec![(r.expires_at.as_millis(), k)]);

    // Postponing writes no entry: the earlier one still covers the record.
    let later = Timestamp::now() + Duration::from_secs(3600);
    assert!(store.touch(&k, later).await.unwrap());
    assert_eq!(index(&store), vec![(r.expires_at.as_millis(), k)]);
    let loaded = store.load(&k).await.unwrap().unwrap();
    assert_eq!(
        (loaded.data, loaded.version, loaded.expires_at),
        (r.data.clone(), 0, later)
    );

    // Moving the expiry earlier adds an entry at the new expiry.
    let sooner = Timestamp::now() + Duration::from_secs(60);
    assert!(store.touch(&k, sooner).await.unwrap());
    assert_eq!(index(&store)[0], (sooner.as_millis(), k));
    assert_covered(&store);

    let r2 = live(sample(), TTL);
    assert_eq!(
        store.update(&k, &r2, 0).await.unwrap(),
        UpdateOutcome::Updated
    );
    assert_covered(&store);
    store.save(&k, &r).await.unwrap();
    assert_covered(&store);

    // Saving an expired record removes the record; its entries stay until
    // they are due, and the reaper drops them then.
    store.save(&k, &expired(sample())).await.unwrap();
    assert!(store.records_tree().unwrap().is_empty());

    // An expired record (created expired) is replaced by create.
    let old = expired(sample());
    assert!(store.create(&k, &old).await.unwrap());
    assert_covered(&store);
    assert!(store.create(&k, &r).await.unwrap());
    assert_covered(&store);
    assert_eq!(store.load(&k).await.unwrap().unwrap().data, r.data);

    store.destroy(&k).await.unwrap();
    assert!(store.records_tree().unwrap().is_empty());
    // Entries without a record are dropped when due; the future ones stay
    // until then.
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    let now = Timestamp::now().as_millis();
    assert!(
        index(&store).iter().all(|&(at, _)| at > now),
        "{:?}",
        index(&store)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_moves_the_entry_of_a_postponed_record() {
    let store = SledStore::temporary().await.unwrap();
    let k = key();
    let r = live(sample(), TTL);
    store.save(&k, &r).await.unwrap();
    // As if the record had been postponed after its entry was written.
    let past = Timestamp::now().as_millis() - 1000;
    store.expiry_tree().unwrap().clear().unwrap();
    store
        .expiry_tree()
        .unwrap()
        .insert(entry(past, &k), &[][..])
        .unwrap();

    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert_eq!(index(&store), vec![(r.expires_at.as_millis(), k)]);
    assert!(store.load(&k).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_reapers_keep_every_record_covered() {
    // Few keys and few distinct expiries, so that writers and reapers race
    // on the same index entries (same key, same millisecond) all the time.
    let store = SledStore::temporary().await.unwrap();
    let keys: Vec<SessionKey> = (0..4).map(|_| key()).collect();
    let now = Timestamp::now();
    let times = [
        now - Duration::from_secs(2),
        now - Duration::from_secs(1),
        now + Duration::from_secs(3600),
        now + Duration::from_secs(7200),
    ];
    let record = move |i: usize| {
        Record::with_times(
            object(json!({"i": i})),
            now - Duration::from_secs(10),
            times[i % times.len()],
        )
    };
    let mut tasks = Vec::new();
    for w in 0..4usize {
        let (store, keys) = (store.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..1500usize {
                let n = i.wrapping_mul(31).wrapping_add(w * 7);
                let k = &keys[n % keys.len()];
                match n % 6 {
                    0 => {
                        let _ = store.create(k, &record(n / 6)).await.unwrap();
                    }
                    1 => store.save(k, &record(n / 6)).await.unwrap(),
                    2 => {
                        let _ = store.touch(k, times[(n / 6) % times.len()]).await.unwrap();
                    }
                    3 => {
                        if let Some(r) = store.load(k).await.unwrap() {
                            let _ = store.update(k, &record(n / 6), r.version).await.unwrap();
                        }
                    }
                    4 => store.destroy(k).await.unwrap(),
                    _ => {
                        let _ = store.delete_expired().await.unwrap();
                    }
                }
            }
        }));
    }
    for _ in 0..2 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..300 {
                store.delete_expired().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_covered(&store);
    // And the reaper then removes exactly the expired records.
    let cutoff = Timestamp::now();
    let expired_now = store
        .records_tree()
        .unwrap()
        .iter()
        .values()
        .filter(|v| {
            i64::from_be_bytes(v.as_ref().unwrap()[1..9].try_into().unwrap()) <= cutoff.as_millis()
        })
        .count();
    assert_eq!(store.delete_expired().await.unwrap(), expired_now as u64);
    assert_covered(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_expired_removes_expired_records_and_their_entries_only() {
    let store = SledStore::temporary().await.unwrap();
    let live_keys: Vec<_> = (0..5).map(|_| key()).collect();
    for k in &live_keys {
        store.save(k, &live(sample(), TTL)).await.unwrap();
    }
    for _ in 0..2500 {
        assert!(store.create(&key(), &expired(sample())).await.unwrap());
    }
    // A stale entry without a record is dropped, not counted.
    let ghost = key();
    let mut stale = [0u8; 40];
    stale[..8].copy_from_slice(&(1u64 << 63).to_be_bytes());
    stale[8..].copy_from_slice(ghost.as_bytes());
    store
        .expiry_tree()
        .unwrap()
        .insert(&stale[..], &[][..])
        .unwrap();

    assert_eq!(store.len().await.unwrap(), 5);
    assert_eq!(store.delete_expired().await.unwrap(), 2500);
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert_eq!(index(&store).len(), 5);
    assert_eq!(store.records_tree().unwrap().len(), 5);
    for k in &live_keys {
        assert!(store.load(k).await.unwrap().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_fail_at_build_time() {
    let dir = TempDir::new();
    for builder in [
        SledStore::builder(&dir.path).with_namespace(""),
        SledStore::builder(&dir.path).with_namespace("a/b"),
        SledStore::builder(&dir.path).with_namespace("x".repeat(129)),
        SledStore::builder(&dir.path).with_flush_every(Some(Duration::ZERO)),
        SledStore::builder(&dir.path).with_flush_every(Some(Duration::from_micros(999))),
        SledStore::builder(""),
    ] {
        let err = builder.build().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Config {
                    backend: "sled",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert!(
        !dir.path.exists(),
        "a refused configuration created the directory"
    );
    let db = sled::Config::new().temporary(true).open().unwrap();
    assert!(matches!(
        SledStore::new(&db, "no spaces"),
        Err(Error::Config { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_of_one_db_are_separate_trees() {
    let a = SledStore::temporary().await.unwrap();
    let b = a.open_namespace("other").await.unwrap();
    let k = key();
    a.save(&k, &live(sample(), TTL)).await.unwrap();
    b.save(&key(), &live(sample(), TTL)).await.unwrap();
    assert_eq!(b.load(&k).await.unwrap(), None);
    b.clear().await.unwrap();
    assert_eq!((a.len().await.unwrap(), b.len().await.unwrap()), (1, 0));
    assert!(a.flush().await.is_ok());
}

/// Every page of `store` from the start, in pages of `limit`.
async fn pages(store: &SledStore, limit: usize) -> Vec<Page> {
    let limit = NonZeroUsize::new(limit).unwrap();
    let mut pages: Vec<Page> = Vec::new();
    loop {
        let cursor = pages.last().and_then(|p| p.next.as_ref());
        let page = store.list(cursor, limit).await.unwrap();
        let done = page.next.is_none();
        pages.push(page);
        if done {
            return pages;
        }
    }
}

/// Namespaces are trees named `session_store/<namespace>/records`, so a
/// namespace whose name extends another's (`web`, `web.v2`, `web-x`) must
/// still list only its own records, in key order, resuming after the last
/// key read (expired ones included, which count towards the page but are
/// never returned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_stays_in_its_namespace_and_in_key_order() {
    let web = SledStore::builder_temporary()
        .with_namespace("web")
        .build()
        .await
        .unwrap();
    let mut mine = Vec::new();
    for _ in 0..7 {
        let k = key();
        web.save(&k, &live(sample(), TTL)).await.unwrap();
        mine.push(k);
    }
    mine.sort();
    for name in ["web.v2", "web-x", "we", "sessions"] {
        let other = web.open_namespace(name).await.unwrap();
        for _ in 0..5 {
            other.save(&key(), &live(sample(), TTL)).await.unwrap();
        }
    }
    // An expired record sorts first and takes the first page's only slot.
    let stale = SessionKey::from_bytes([0; 32]);
    web.save(&stale, &live(sample(), TTL)).await.unwrap();
    web.touch(&stale, Timestamp::from_millis(1)).await.unwrap();
    assert_eq!(web.records_tree().unwrap().len(), 8);

    let first = web.list(None, NonZeroUsize::MIN).await.unwrap();
    assert!(first.records.is_empty(), "{first:?}");
    assert_eq!(first.next, Some(Cursor::after(&stale)));

    let pages = pages(&web, 3).await;
    assert_eq!(pages.len(), 3, "8 keys read 3 at a time");
    let listed: Vec<SessionKey> = pages
        .iter()
        .flat_map(|p| &p.records)
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(
        listed, mine,
        "this namespace's live keys, each once, in key order"
    );
    assert_eq!(web.all().await.unwrap().len(), 7);
}

/// A corrupt value fails the page that reads it, naming its key; pages
/// before it list; a cursor this store did not make is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_reports_the_corrupt_value_it_reads_and_refuses_foreign_cursors() {
    let store = SledStore::temporary().await.unwrap();
    let (low, high) = (
        SessionKey::from_bytes([1; 32]),
        SessionKey::from_bytes([0xee; 32]),
    );
    store.save(&low, &live(sample(), TTL)).await.unwrap();
    store.save(&high, &live(sample(), TTL)).await.unwrap();
    store
        .records_tree()
        .unwrap()
        .insert(high.as_bytes(), &b"garbage"[..])
        .unwrap();
    let first = store.list(None, NonZeroUsize::MIN).await.unwrap();
    assert_eq!(first.records.len(), 1);
    assert_eq!(first.records[0].0, low);
    assert_decode_error(
        store.list(first.next.as_ref(), NonZeroUsize::MIN).await,
        &high,
    );
    assert_decode_error(store.all().await, &high);
    for foreign in [
        Cursor::new(""),
        Cursor::new("after:xyz"),
        Cursor::new(format!("memory:0:{}", low.as_str())),
    ] {
        assert!(
            matches!(
                store.list(Some(&foreign), NonZeroUsize::MIN).await,
                Err(Error::InvalidCursor {
                    backend: "sled",
                    ..
                })
            ),
            "{foreign:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_never_prints_session_data() {
    let store = SledStore::temporary().await.unwrap();
    store.save(&key(), &live(sample(), TTL)).await.unwrap();
    let printed = format!("{store:?}");
    assert!(!printed.contains("ada"), "{printed}");
    assert!(printed.contains("sessions"), "{printed}");
}

/// 64 writers with `with_sync_writes(true)`, each saving and updating its
/// own sessions: every write completes and is on disk when it returns, and
/// the database then closes. With sled's `flush_async` behind every write,
/// seven or more concurrent writers stopped completing for good (0 writes
/// in a minute) and dropping the store hung too; the bound below turns such
/// a hang into a failure instead of a stuck test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(clippy::expect_used, reason = "a hang is the failure named")]
async fn sixty_four_synced_writers_all_complete_and_reach_the_disk() {
    const WRITERS: usize = 64;
    const WRITES: usize = 20;
    let dir = TempDir::new();
    let store = SledStore::builder(&dir.path)
        .with_sync_writes(true)
        .build()
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut keys = Vec::new();
            for n in 0..WRITES {
                let k = key();
                let r = live(object(json!({ "writer": writer, "n": n })), TTL);
                assert!(store.create(&k, &r).await.unwrap());
                assert_eq!(
                    store.update(&k, &r, 0).await.unwrap(),
                    UpdateOutcome::Updated
                );
                keys.push(k);
            }
            keys
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        let mut all = Vec::new();
        while let Some(keys) = tasks.join_next().await {
            all.extend(keys.unwrap());
        }
        all
    })
    .await
    .expect("synced writers stopped completing (sled flush deadlock)");
    assert_eq!(all.len(), WRITERS * WRITES);
    // Every acknowledged write is on disk: the database, opened again after
    // the store is gone, has each record at version 1.
    let path = dir.path.clone();
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || drop(store)),
    )
    .await
    .expect("closing the database hung")
    .unwrap();
    // The group flush's blocking task may still hold the last handle for
    // a moment after the writers were answered, and sled lets go of its
    // directory lock only once that is dropped: wait for the lock.
    let reopened = SledStore::builder(&path)
        .with_lock_wait(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    assert_eq!(reopened.len().await.unwrap(), (WRITERS * WRITES) as u64);
    for k in &all {
        assert_eq!(reopened.load(k).await.unwrap().unwrap().version, 1);
    }
}

/// Writes are synced by default, whichever way the store is made, and only
/// a store that opened a directory itself reopens it after an I/O error
/// (the full-disk test in `faults.rs` checks the reopen itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_synced_by_default_and_only_a_path_store_reopens() {
    let dir = TempDir::new();
    let on_path = SledStore::open(&dir.path).await.unwrap();
    let other = on_path.open_namespace("other").await.unwrap();
    let temporary = SledStore::temporary().await.unwrap();
    let users = SledStore::new(&temporary.db().unwrap(), "mine").unwrap();
    for (store, reopens) in [
        (&on_path, true),
        (&other, true),
        (&temporary, false),
        (&users, false),
    ] {
        assert_eq!(store.reopens(), reopens, "{store:?}");
        let printed = format!("{store:?}");
        assert!(printed.contains("sync_writes: true"), "{printed}");
    }
    let buffered = SledStore::builder_temporary()
        .with_sync_writes(false)
        .build()
        .await
        .unwrap();
    assert!(format!("{buffered:?}").contains("sync_writes: false"));
}

/// The principals tree of `store`'s namespace, opened by name through the
/// raw `sled` API: what the engine holds, not what the store says.
fn raw_principals(store: &SledStore) -> sled::Tree {
    store
        .db()
        .unwrap()
        .open_tree(format!("session_store/{}/principals", store.namespace()))
        .unwrap()
}

/// The entries of `tree` under `principal`: its length byte and name.
fn raw_count(tree: &sled::Tree, principal: &Principal) -> usize {
    let mut prefix = vec![u8::try_from(principal.as_str().len()).unwrap()];
    prefix.extend_from_slice(principal.as_str().as_bytes());
    tree.scan_prefix(prefix).count()
}

fn owned(ttl: Duration, principal: &Principal) -> Record {
    live(sample(), ttl).with_principal(Some(principal.clone()))
}

/// The issue's check, on the tree itself: 10,000 sessions of one principal
/// with a 2 s TTL are 10,000 entries of the principals tree once written
/// (expired or not: nothing has reaped them yet); once they have all
/// expired and `delete_expired` has run, none is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_sessions_of_one_principal_leave_no_entry_once_reaped() {
    let store = SledStore::builder_temporary()
        .with_sync_writes(false)
        .build()
        .await
        .unwrap();
    let alice = Principal::new("alice@example.com").unwrap();
    let ttl = Duration::from_secs(2);
    let start = std::time::Instant::now();
    let (_, last) = create_sessions_of(&store, &alice, 10_000, ttl, 16).await;
    eprintln!("10,000 creates took {:?}", start.elapsed());
    let tree = raw_principals(&store);
    assert_eq!(raw_count(&tree, &alice), 10_000);
    assert_eq!(tree.len(), 10_000);
    assert_eq!(store.index_len(&alice).await.unwrap(), 10_000);
    assert!(store.sessions_of(&alice).await.unwrap().len() <= 10_000);

    // Wait for the clock to pass the last expiry (bounded: 2 s).
    while Timestamp::now() <= last {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.sessions_of(&alice).await.unwrap().is_empty());
    assert_eq!(raw_count(&tree, &alice), 10_000, "until reaped");
    assert_eq!(store.delete_expired().await.unwrap(), 10_000);
    assert_eq!(raw_count(&tree, &alice), 0);
    assert!(tree.is_empty());
    assert!(store.records_tree().unwrap().is_empty());
    assert_eq!(store.index_len(&alice).await.unwrap(), 0);
}

/// The principal invariant: every record that names a principal has its
/// entry in the principals tree; `exact` also requires the converse (no
/// entry without such a record).
fn assert_principals_cover(store: &SledStore, exact: bool) {
    let tree = store.principals_tree().unwrap();
    let mut named = Vec::new();
    for entry in store.records_tree().unwrap().iter() {
        let (k, value) = entry.unwrap();
        let len = usize::from(value[25]);
        if len > 0 {
            let mut e = value[25..26 + len].to_vec();
            e.extend_from_slice(&k);
            assert!(
                tree.contains_key(&e).unwrap(),
                "record {k:?} of {:?} has no entry",
                String::from_utf8_lossy(&value[26..26 + len])
            );
            named.push(e);
        }
    }
    if exact {
        assert_eq!(tree.len(), named.len(), "entries without their record");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_principal_index_follows_every_write() {
    let store = SledStore::temporary().await.unwrap();
    let (ada, bob) = (
        Principal::new("ada").unwrap(),
        Principal::new("bob").unwrap(),
    );
    let tree = raw_principals(&store);
    let k = key();
    assert!(store.create(&k, &owned(TTL, &ada)).await.unwrap());
    assert_eq!((raw_count(&tree, &ada), raw_count(&tree, &bob)), (1, 0));
    // Touch keeps it; another principal moves it; none removes it.
    assert!(
        store
            .touch(&k, Timestamp::now() + Duration::from_secs(7200))
            .await
            .unwrap()
    );
    assert_eq!(
        store.load(&k).await.unwrap().unwrap().principal,
        Some(ada.clone())
    );
    assert_eq!(raw_count(&tree, &ada), 1);
    assert_eq!(
        store.update(&k, &owned(TTL, &bob), 0).await.unwrap(),
        UpdateOutcome::Updated
    );
    assert_eq!((raw_count(&tree, &ada), raw_count(&tree, &bob)), (0, 1));
    store.save(&k, &live(sample(), TTL)).await.unwrap();
    assert!(tree.is_empty());
    // An expired save and a destroy remove the entry with the record.
    store.save(&k, &owned(TTL, &ada)).await.unwrap();
    store
        .save(&k, &expired(sample()).with_principal(Some(ada.clone())))
        .await
        .unwrap();
    assert!(tree.is_empty());
    store.save(&k, &owned(TTL, &ada)).await.unwrap();
    store.destroy(&k).await.unwrap();
    assert!(tree.is_empty());
    // A record created expired is removed by the reaper with its entry.
    assert!(
        store
            .create(&k, &expired(sample()).with_principal(Some(ada.clone())))
            .await
            .unwrap()
    );
    store.delete_expired().await.unwrap();
    assert!(tree.is_empty());
    // Clear empties the tree; another namespace's entries stay.
    let other = store.open_namespace("other").await.unwrap();
    other.save(&key(), &owned(TTL, &ada)).await.unwrap();
    store.save(&k, &owned(TTL, &ada)).await.unwrap();
    store.clear().await.unwrap();
    assert!(tree.is_empty());
    assert_eq!(other.index_len(&ada).await.unwrap(), 1);
}

/// Entries left without their record (a crash between the two writes, or
/// written behind the store's back) are dropped by `sessions_of` and
/// `destroy_all_of` of their principal, after checking the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_entries_are_dropped_when_met() {
    let store = SledStore::temporary().await.unwrap();
    let (ada, bob) = (
        Principal::new("ada").unwrap(),
        Principal::new("bob").unwrap(),
    );
    let tree = store.principals_tree().unwrap();
    let (gone, other, kept) = (key(), key(), key());
    store.save(&other, &owned(TTL, &bob)).await.unwrap();
    store.save(&kept, &owned(TTL, &ada)).await.unwrap();
    for k in [&gone, &other] {
        let mut e = b"\x03ada".to_vec();
        e.extend_from_slice(k.as_bytes());
        tree.insert(e, &[][..]).unwrap();
    }
    // Not a key: dropped too.
    tree.insert(&b"\x03adashort"[..], &[][..]).unwrap();
    assert_eq!(store.index_len(&ada).await.unwrap(), 4);
    let found = store.sessions_of(&ada).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, kept);
    assert_eq!(store.index_len(&ada).await.unwrap(), 1);
    assert_principals_cover(&store, true);

    let mut e = b"\x03ada".to_vec();
    e.extend_from_slice(other.as_bytes());
    tree.insert(e, &[][..]).unwrap();
    assert_eq!(store.destroy_all_of(&ada, None).await.unwrap(), 1);
    assert_eq!(store.index_len(&ada).await.unwrap(), 0);
    assert!(store.load(&other).await.unwrap().is_some(), "bob's stays");
    assert_principals_cover(&store, true);
}

/// Writers giving a few keys to a few principals (or none), destroying
/// them, reaping and signing everyone out, all at once: afterwards every
/// record that names a principal has its entry, and once `sessions_of`
/// has run for each principal, no entry is left without its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_and_index_calls_keep_the_principal_index_exact() {
    let store = SledStore::temporary().await.unwrap();
    let keys: Vec<SessionKey> = (0..4).map(|_| key()).collect();
    let people: Vec<Principal> = ["ada", "bob"]
        .iter()
        .map(|p| Principal::new(*p).unwrap())
        .collect();
    race_principal_writes(std::sync::Arc::new(store.clone()), &keys, &people).await;
    assert_principals_cover(&store, false);
    for p in &people {
        store.sessions_of(p).await.unwrap();
    }
    assert_principals_cover(&store, true);
}

/// A value of the layout before principals (format tag 1, written by
/// earlier versions of this crate) reads as a record without principal, as
/// the crate docs say: `load`, `list`, `touch` and `update` work on it, and
/// the first rewrite stores format 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_of_the_previous_format_reads_without_principal() {
    let store = SledStore::temporary().await.unwrap();
    let k = key();
    let expires_at = (Timestamp::now() + TTL).as_millis();
    let mut old = vec![1u8];
    old.extend_from_slice(&expires_at.to_be_bytes());
    old.extend_from_slice(&1_000_i64.to_be_bytes());
    old.extend_from_slice(&7_u64.to_be_bytes());
    old.extend_from_slice(br#"{"user":"ada"}"#);
    store
        .records_tree()
        .unwrap()
        .insert(k.as_bytes(), old)
        .unwrap();
    let loaded = store.load(&k).await.unwrap().unwrap();
    assert_eq!(loaded.data["user"], "ada");
    assert_eq!(loaded.version, 7);
    assert_eq!(loaded.principal, None);
    assert_eq!(store.all().await.unwrap(), vec![(k, loaded.clone())]);
    assert_eq!(store.len().await.unwrap(), 1);
    let later = Timestamp::now() + TTL + TTL;
    assert!(store.touch(&k, later).await.unwrap());
    assert_eq!(store.load(&k).await.unwrap().unwrap().expires_at, later);

    let ada = Principal::new("ada").unwrap();
    let next = loaded.with_principal(Some(ada.clone()));
    assert_eq!(
        store.update(&k, &next, 7).await.unwrap(),
        UpdateOutcome::Updated
    );
    let raw = store
        .records_tree()
        .unwrap()
        .get(k.as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(raw[0], 2, "rewritten in the current format");
    assert_eq!(store.sessions_of(&ada).await.unwrap().len(), 1);
}

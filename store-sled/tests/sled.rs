//! sled-specific checks the shared suite cannot make: corrupt values written
//! behind the store's back, a real reopen of the directory, the expiry index
//! staying in step with the records, configuration errors.

#![allow(clippy::unwrap_used, reason = "test helpers fail the test on error")]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use session_conformance::fixtures::{assert_decode_error, key, object};
use session_core::{Error, Record, SessionKey, SessionStore, Timestamp, UpdateOutcome};
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

fn live() -> Record {
    Record::new(
        object(json!({"user": "ada", "big": u64::MAX})),
        Duration::from_secs(600),
    )
}

fn expired() -> Record {
    let now = Timestamp::now();
    Record::with_times(
        object(json!({"old": true})),
        now - Duration::from_secs(60),
        now - Duration::from_secs(1),
    )
}

/// The expiry index as (expires_at ms, key) pairs.
fn index(store: &SledStore) -> Vec<(i64, SessionKey)> {
    store
        .expiry_tree()
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
        store.save(k, &live()).await.unwrap();
    }
    store
        .records_tree()
        .insert(short.as_bytes(), &b"garbage"[..])
        .unwrap();
    let mut value = store
        .records_tree()
        .get(bad_json.as_bytes())
        .unwrap()
        .unwrap()
        .to_vec();
    value.truncate(30); // header intact, JSON cut short
    store
        .records_tree()
        .insert(bad_json.as_bytes(), value)
        .unwrap();
    for k in [&short, &bad_json] {
        assert_decode_error(store.load(k).await, k);
    }
    assert!(matches!(store.all().await, Err(Error::Decode { .. })));
    assert!(matches!(store.len().await, Err(Error::Decode { .. })));
    assert!(matches!(
        store.update(&short, &live(), 0).await,
        Err(Error::Decode { .. })
    ));
    assert!(store.load(&good).await.unwrap().is_some());
    // Corrupt records can still be removed.
    store.destroy(&short).await.unwrap();
    store.save(&bad_json, &live()).await.unwrap();
    assert_eq!(store.len().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_closing_and_reopening_the_directory() {
    let dir = TempDir::new();
    let (k, record) = (key(), live().with_version(9));
    {
        let store = SledStore::builder(&dir.path)
            .with_namespace("web")
            .with_flush_every_ms(None)
            .build()
            .await
            .unwrap();
        store.save(&k, &record).await.unwrap();
        // The directory is locked while open.
        assert!(SledStore::open(&dir.path).await.is_err());
    } // last handle dropped: sled flushes and unlocks
    let store = SledStore::builder(&dir.path)
        .with_namespace("web")
        .build()
        .await
        .unwrap();
    assert_eq!(store.load(&k).await.unwrap(), Some(record));
    assert_eq!(index(&store).len(), 1);
    let other = store.open_namespace("api").unwrap();
    assert_eq!(other.load(&k).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiry_index_follows_every_write() {
    let store = SledStore::builder_temporary()
        .with_sync_writes(true)
        .build()
        .await
        .unwrap();
    let k = key();
    let r = live();
    assert!(store.create(&k, &r).await.unwrap());
    assert_eq!(index(&store), vec![(r.expires_at.as_millis(), k)]);

    let later = Timestamp::now() + Duration::from_secs(3600);
    assert!(store.touch(&k, later).await.unwrap());
    assert_eq!(index(&store), vec![(later.as_millis(), k)]);
    let loaded = store.load(&k).await.unwrap().unwrap();
    assert_eq!(
        (loaded.data, loaded.version, loaded.expires_at),
        (r.data.clone(), 0, later)
    );

    let r2 = live();
    assert_eq!(
        store.update(&k, &r2, 0).await.unwrap(),
        UpdateOutcome::Updated
    );
    assert_eq!(index(&store), vec![(r2.expires_at.as_millis(), k)]);

    store.save(&k, &r).await.unwrap();
    assert_eq!(index(&store), vec![(r.expires_at.as_millis(), k)]);
    store.save(&k, &expired()).await.unwrap();
    assert_eq!(index(&store), vec![]);
    assert!(store.records_tree().is_empty());

    // An expired record (created expired) is replaced by create, index too.
    let old = expired();
    assert!(store.create(&k, &old).await.unwrap());
    assert!(store.create(&k, &r).await.unwrap());
    assert_eq!(index(&store), vec![(r.expires_at.as_millis(), k)]);

    store.destroy(&k).await.unwrap();
    assert_eq!(index(&store), vec![]);
    assert!(store.records_tree().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_expired_removes_expired_records_and_their_entries_only() {
    let store = SledStore::temporary().await.unwrap();
    let live_keys: Vec<_> = (0..5).map(|_| key()).collect();
    for k in &live_keys {
        store.save(k, &live()).await.unwrap();
    }
    for _ in 0..2500 {
        assert!(store.create(&key(), &expired()).await.unwrap());
    }
    // A stale entry without a record is dropped, not counted.
    let ghost = key();
    let mut stale = [0u8; 40];
    stale[..8].copy_from_slice(&(1u64 << 63).to_be_bytes());
    stale[8..].copy_from_slice(ghost.as_bytes());
    store.expiry_tree().insert(&stale[..], &[][..]).unwrap();

    assert_eq!(store.len().await.unwrap(), 5);
    assert_eq!(store.delete_expired().await.unwrap(), 2500);
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert_eq!(index(&store).len(), 5);
    assert_eq!(store.records_tree().len(), 5);
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
        SledStore::builder(&dir.path).with_flush_every_ms(Some(0)),
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
    let b = a.open_namespace("other").unwrap();
    let k = key();
    a.save(&k, &live()).await.unwrap();
    b.save(&key(), &live()).await.unwrap();
    assert_eq!(b.load(&k).await.unwrap(), None);
    b.clear().await.unwrap();
    assert_eq!((a.len().await.unwrap(), b.len().await.unwrap()), (1, 0));
    assert!(a.flush().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_never_prints_session_data() {
    let store = SledStore::temporary().await.unwrap();
    store.save(&key(), &live()).await.unwrap();
    let printed = format!("{store:?}");
    assert!(!printed.contains("ada"), "{printed}");
    assert!(printed.contains("sessions"), "{printed}");
}

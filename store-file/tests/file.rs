//! File-store checks the shared suite cannot make: files corrupted or
//! truncated behind the store's back, files and directories of the previous
//! format, leftovers of a writer that died before its rename, the file
//! layout, the expiry index (an ended bucket is reaped without reading the
//! live files), the principal index's markers (counted on the file system),
//! a listing opening only the files from its cursor on, durability and
//! configuration errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on error"
)]

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use session_conformance::fixtures::{
    assert_decode_error, create_sessions_of, expired, key, live, race_principal_writes, sample,
};
use session_core::{
    Cursor, Error, Principal, PrincipalIndex, Record, SessionKey, SessionStore, Timestamp,
    UpdateOutcome,
};
use session_store_file::{Durability, FileStore};

/// How long the live records of these tests last.
const TTL: Duration = Duration::from_secs(600);

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Every file under `dir`, recursively, relative to it.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_one_file_named_by_its_key_in_a_shard() {
    let root = temp();
    let store = FileStore::open(root.path()).await.unwrap();
    let k = key();
    store.save(&k, &live(sample(), TTL)).await.unwrap();
    let shard = &k.as_str()[..2];
    let expected = root.path().join("sessions").join(shard).join(k.as_str());
    assert_eq!(store.path_of(&k), expected);
    assert!(expected.is_file());
    let bytes = std::fs::read(&expected).unwrap();
    assert_eq!(&bytes[..5], b"sesf\x02", "magic and format version");
    assert_eq!(bytes[29], 0, "no principal");
    assert_eq!(store.dir(), root.path().join("sessions"));
    assert_eq!(
        std::fs::read_to_string(root.path().join("sessions/.format")).unwrap(),
        "session-store-file 2\n"
    );
    // Nothing but the session, its shard's lock file, the format marker and
    // one index line.
    let listed = files(store.dir());
    assert_eq!(listed.len(), 4, "{listed:?}");
    let index: Vec<_> = listed.iter().filter(|p| p.starts_with(".expiry")).collect();
    assert_eq!(index.len(), 1, "{listed:?}");
    assert_eq!(
        std::fs::read_to_string(store.dir().join(index[0])).unwrap(),
        format!("{k}\n")
    );
}

/// Garbage, a truncated header, truncated data, an empty file and a
/// future format: `Error::Decode` naming the key from every method whose
/// answer depends on the file; `save`, `destroy` and `clear` get rid of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_truncated_files_are_decode_errors_naming_the_key() {
    let root = temp();
    let store = FileStore::open(root.path()).await.unwrap();
    let record = live(sample(), TTL);
    let keys: Vec<SessionKey> = (0..5).map(|_| key()).collect();
    let good = key();
    for k in keys.iter().chain([&good]) {
        store.save(k, &record).await.unwrap();
    }
    let whole = std::fs::read(store.path_of(&good)).unwrap();
    let mut future = whole.clone();
    future[4] = 3;
    let contents: [Vec<u8>; 5] = [
        b"garbage written behind the store's back".to_vec(),
        whole[..10].to_vec(),
        whole[..whole.len() - 3].to_vec(),
        Vec::new(),
        future,
    ];
    for (k, bytes) in keys.iter().zip(&contents) {
        std::fs::write(store.path_of(k), bytes).unwrap();
    }
    for k in &keys {
        assert_decode_error(store.load(k).await, k);
    }
    assert!(matches!(store.all().await, Err(Error::Decode { .. })));
    assert!(matches!(store.len().await, Err(Error::Decode { .. })));
    // Truncated data under a readable header: the writers go by the header
    // (a live record: create collides, touch copies the bytes, update
    // replaces them); the others stop at an unreadable header.
    for (i, k) in keys.iter().enumerate() {
        let (create, update) = (
            store.create(k, &record).await,
            store.update(k, &record, 0).await,
        );
        if i == 2 {
            assert!(!create.unwrap());
            assert_eq!(update.unwrap(), UpdateOutcome::Updated);
        } else {
            assert_decode_error(create, k);
            assert_decode_error(store.touch(k, Timestamp::now() + TTL).await, k);
            assert_decode_error(update, k);
        }
    }
    assert_eq!(
        store.load(&keys[2]).await.unwrap(),
        Some(record.clone().with_version(1))
    );
    // The rest is unaffected, and delete_expired goes on.
    assert_eq!(store.load(&good).await.unwrap(), Some(record.clone()));
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    // save replaces a corrupt file, destroy removes one.
    store.save(&keys[0], &record).await.unwrap();
    assert_eq!(store.load(&keys[0]).await.unwrap(), Some(record.clone()));
    store.destroy(&keys[1]).await.unwrap();
    assert_eq!(store.load(&keys[1]).await.unwrap(), None);
    store.clear().await.unwrap();
    assert_eq!(store.len().await.unwrap(), 0);
}

/// A writer that died between creating its temporary file and renaming it
/// leaves the shard's `.tmp`: never read, replaced by the next write,
/// removed by `delete_expired` and `clear`. Stray files that are not named
/// like a key are ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftover_temporary_files_are_ignored_and_cleaned() {
    let root = temp();
    let store = FileStore::open(root.path()).await.unwrap();
    let k = key();
    let record = live(sample(), TTL);
    store.save(&k, &record).await.unwrap();
    let shard = store.path_of(&k).parent().unwrap().to_owned();
    let leftover = shard.join(".tmp");
    std::fs::write(&leftover, b"half a sess").unwrap();
    std::fs::write(shard.join("README"), b"not a session").unwrap();
    std::fs::write(shard.join(k.as_str().to_uppercase()), b"not a key").unwrap();
    assert_eq!(store.load(&k).await.unwrap(), Some(record.clone()));
    assert_eq!(store.len().await.unwrap(), 1);
    assert_eq!(store.all().await.unwrap(), vec![(k, record.clone())]);
    let page = store
        .list(None, NonZeroUsize::new(5).unwrap())
        .await
        .unwrap();
    assert_eq!(page.records, vec![(k, record.clone())]);
    assert_eq!(page.next, None, "a short read ends the listing");
    // The next write in the shard replaces it.
    assert_eq!(
        store.update(&k, &record, 0).await.unwrap(),
        UpdateOutcome::Updated
    );
    assert!(!leftover.exists());
    std::fs::write(&leftover, b"half a sess").unwrap();
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert!(!leftover.exists(), "delete_expired removes a leftover");
    std::fs::write(&leftover, b"half a sess").unwrap();
    store.clear().await.unwrap();
    assert!(!leftover.exists(), "clear removes a leftover");
    assert!(
        shard.join("README").exists(),
        "clear removes only its own files"
    );
}

/// A key whose first byte is `shard` and whose other bytes are `rest`.
fn key_in(shard: u8, rest: u8) -> SessionKey {
    let mut bytes = [rest; 32];
    bytes[0] = shard;
    SessionKey::from_bytes(bytes)
}

/// `list` resumes at its cursor's shard directory and name: a corrupt file
/// before the cursor (in an earlier shard or earlier in the same one) is
/// never opened, so it fails only the page that reads it. A misplaced
/// session file (a key of another shard), the lock, a temporary file and
/// other names are never listed; an expired file counts towards the page
/// but is not returned; missing shard directories are passed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_opens_only_the_files_from_its_cursor_on() {
    let root = temp();
    let store = FileStore::open(root.path()).await.unwrap();
    let record = live(sample(), TTL);
    let (k00, k10a, k10b, k10c, k20, kff) = (
        key_in(0x00, 1),
        key_in(0x10, 1),
        key_in(0x10, 2),
        key_in(0x10, 3),
        key_in(0x20, 1),
        key_in(0xff, 1),
    );
    for k in [&k00, &k10a, &k10b, &k10c, &k20, &kff] {
        store.save(k, &record).await.unwrap();
    }
    // Expired but not reaped (a touch to the past would remove the file):
    // its header's expiry, bytes 5..13, set to 1 ms after the epoch.
    let mut stale = std::fs::read(store.path_of(&k10c)).unwrap();
    stale[5..13].copy_from_slice(&1_i64.to_be_bytes());
    std::fs::write(store.path_of(&k10c), stale).unwrap();
    for k in [&k00, &k10a] {
        std::fs::write(store.path_of(k), b"garbage").unwrap();
    }
    let shard10 = store.path_of(&k10a).parent().unwrap().to_owned();
    assert!(shard10.join(".lock").exists());
    std::fs::write(shard10.join(".tmp"), b"half a sess").unwrap();
    std::fs::write(shard10.join("README"), b"not a session").unwrap();
    std::fs::write(shard10.join(key_in(0x30, 9).as_str()), b"misplaced").unwrap();
    std::fs::write(
        shard10.join(key_in(0x10, 0xab).as_str().to_uppercase()),
        b"x",
    )
    .unwrap();

    let two = NonZeroUsize::new(2).unwrap();
    let page = store.list(Some(&Cursor::after(&k10a)), two).await.unwrap();
    assert_eq!(page.records, vec![(k10b, record.clone())], "k10c expired");
    assert_eq!(
        page.next,
        Some(Cursor::after(&k10c)),
        "after the last name read"
    );
    let page = store.list(page.next.as_ref(), two).await.unwrap();
    assert_eq!(
        page.records,
        vec![(k20, record.clone()), (kff, record.clone())]
    );
    assert_eq!(page.next, Some(Cursor::after(&kff)));
    let page = store.list(page.next.as_ref(), two).await.unwrap();
    assert_eq!((page.records, page.next), (vec![], None));
    // From the start, the corrupt files are read and reported.
    assert_decode_error(store.list(None, two).await, &k00);
    let after_k00 = Cursor::after(&k00);
    assert_decode_error(store.list(Some(&after_k00), two).await, &k10a);
    assert_decode_error(store.all().await, &k00);
}

/// A cursor the file store did not hand out is `Error::InvalidCursor`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_cursor_is_invalid() {
    let root = temp();
    let store = FileStore::open(root.path()).await.unwrap();
    for text in ["", "after:", "after:ABC", "memory:0:"] {
        let result = store
            .list(Some(&Cursor::new(text)), NonZeroUsize::MIN)
            .await;
        assert!(
            matches!(
                result,
                Err(Error::InvalidCursor {
                    backend: "file",
                    ..
                })
            ),
            "{text:?}: {result:?}"
        );
    }
}

/// `delete_expired` reads the files listed in ended buckets and no others:
/// live files made unreadable behind the store's back do not disturb it.
/// A record postponed since its first expiry is listed again in its new
/// bucket, and reaped from there once that ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_expired_reads_only_the_files_of_ended_buckets() {
    let root = temp();
    let store = FileStore::builder(root.path())
        .with_bucket(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let live_keys: Vec<SessionKey> = (0..50).map(|_| key()).collect();
    for k in &live_keys {
        store.save(k, &live(sample(), TTL)).await.unwrap();
        std::fs::write(store.path_of(k), b"unreadable").unwrap();
    }
    let short: Vec<SessionKey> = (0..5).map(|_| key()).collect();
    for k in &short {
        store
            .save(k, &live(sample(), Duration::from_millis(300)))
            .await
            .unwrap();
    }
    let postponed = key();
    store
        .save(&postponed, &live(sample(), Duration::from_millis(300)))
        .await
        .unwrap();
    let later = Timestamp::now() + Duration::from_millis(1_500);
    assert!(store.touch(&postponed, later).await.unwrap());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(store.delete_expired().await.unwrap(), 5);
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert!(store.load(&postponed).await.unwrap().is_some());
    // Listed again at its new expiry: reaped once that bucket ends.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(store.delete_expired().await.unwrap(), 1);
    // Only the live (unreadable) files' index lines are left.
    for k in &live_keys {
        assert!(store.path_of(k).exists());
    }
    let expiry: Vec<_> = files(&store.dir().join(".expiry"));
    assert!(!expiry.is_empty() && expiry.len() <= 50, "{expiry:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_durability_writes_and_reopens() {
    let root = temp();
    let store = FileStore::builder(root.path())
        .with_durability(Durability::Synced)
        .with_namespace("synced")
        .build()
        .await
        .unwrap();
    assert_eq!(store.durability(), Durability::Synced);
    let k = key();
    let record = live(sample(), TTL);
    assert!(store.create(&k, &record).await.unwrap());
    assert!(store.touch(&k, Timestamp::now() + TTL).await.unwrap());
    drop(store);
    let reopened = FileStore::builder(root.path())
        .with_namespace("synced")
        .build()
        .await
        .unwrap();
    assert!(reopened.load(&k).await.unwrap().is_some());
    let other = reopened.open_namespace("other").await.unwrap();
    assert_eq!(other.namespace(), "other");
    assert_eq!(other.root(), root.path());
    assert_eq!(other.load(&k).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_config_errors_at_build() {
    let root = temp();
    let config = |r: session_core::Result<FileStore>| {
        assert!(
            matches!(
                r,
                Err(Error::Config {
                    backend: "file",
                    ..
                })
            ),
            "{r:?}"
        );
    };
    for bad in ["", ".", "..", ".hidden", "a/b", "../escape", "nul\0"] {
        config(
            FileStore::builder(root.path())
                .with_namespace(bad)
                .build()
                .await,
        );
    }
    for width in [
        Duration::ZERO,
        Duration::from_micros(1_500),
        Duration::from_secs(2 * 24 * 3600),
    ] {
        config(
            FileStore::builder(root.path())
                .with_bucket(width)
                .build()
                .await,
        );
    }
    let file = root.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    config(FileStore::open(&file).await);
    std::fs::create_dir_all(root.path().join("old")).unwrap();
    std::fs::write(root.path().join("old/.format"), b"session-store-file 9\n").unwrap();
    config(
        FileStore::builder(root.path())
            .with_namespace("old")
            .build()
            .await,
    );
    assert!(!format!("{:?}", FileStore::open(root.path()).await.unwrap()).is_empty());
}

/// With buckets wider than the wait, an expired record sits in the bucket
/// `now` falls in: `delete_expired` reaps it there too, and the live
/// record listed beside it stays listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coarse_buckets_reap_the_current_bucket_and_keep_its_live_lines() {
    let root = temp();
    let store = FileStore::builder(root.path())
        .with_bucket(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let (short, longer) = (key(), key());
    store
        .save(&short, &live(sample(), Duration::from_millis(200)))
        .await
        .unwrap();
    store
        .save(&longer, &live(sample(), Duration::from_secs(5)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.delete_expired().await.unwrap(), 1);
    assert!(!store.path_of(&short).exists());
    assert!(store.load(&longer).await.unwrap().is_some());
    let index: String = files(&store.dir().join(".expiry"))
        .iter()
        .map(|p| std::fs::read_to_string(store.dir().join(".expiry").join(p)).unwrap())
        .collect();
    assert_eq!(index, format!("{longer}\n"), "the live record stays listed");
    assert_eq!(store.delete_expired().await.unwrap(), 0);
}

/// Writers of every kind (create, save, update, touch, destroy, with short
/// expiries moved earlier and later) race reapers on a few keys: once
/// everything has expired, one `delete_expired` leaves no session file
/// behind. A writer that skipped an index line it needed, or a reaper that
/// dropped a line whose record it had not dealt with, would leave a file no
/// reap ever finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_and_reapers_leave_nothing_unreaped() {
    let root = temp();
    let store = FileStore::builder(root.path())
        .with_bucket(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let keys: Vec<SessionKey> = (0..12).map(|_| key()).collect();
    let stop = Timestamp::now() + Duration::from_millis(1_500);
    let mut tasks = Vec::new();
    for t in 0..6u64 {
        let (store, keys) = (store.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = t;
            while Timestamp::now() < stop {
                n = n
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let k = &keys[(n >> 33) as usize % keys.len()];
                let ttl = Duration::from_millis((n >> 20) % 300);
                let record = live(sample(), ttl);
                match (n >> 40) % 5 {
                    0 => _ = store.create(k, &record).await.unwrap(),
                    1 => store.save(k, &record).await.unwrap(),
                    2 => {
                        if let Some(old) = store.load(k).await.unwrap() {
                            let _ = store.update(k, &record, old.version).await.unwrap();
                        }
                    }
                    3 => _ = store.touch(k, record.expires_at).await.unwrap(),
                    _ => store.destroy(k).await.unwrap(),
                }
            }
        }));
    }
    for _ in 0..2 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            while Timestamp::now() < stop {
                store.delete_expired().await.unwrap();
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    store.delete_expired().await.unwrap();
    let left: Vec<_> = keys.iter().filter(|k| store.path_of(k).exists()).collect();
    assert!(left.is_empty(), "unreaped files: {left:?}");
    assert_eq!(store.len().await.unwrap(), 0);

    // An expiry moved earlier is listed again at once: reaped when it
    // comes, not when the first one would have.
    let (touched, updated) = (keys[0], keys[1]);
    for k in [&touched, &updated] {
        store.save(k, &live(sample(), TTL)).await.unwrap();
    }
    let soon = live(sample(), Duration::from_millis(100));
    assert!(store.touch(&touched, soon.expires_at).await.unwrap());
    assert_eq!(
        store.update(&updated, &soon, 0).await.unwrap(),
        UpdateOutcome::Updated
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.delete_expired().await.unwrap(), 2);
}

/// The marker directory of `principal` in `store`'s namespace:
/// `.principals/<hex SHA-256 of the name>`, computed here independently.
fn principal_dir(store: &FileStore, principal: &Principal) -> PathBuf {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(principal.as_str().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    store.dir().join(".principals").join(hex)
}

/// The marker files of `principal`, read with `std::fs`: what is on the
/// disk, not what the store says.
fn markers(store: &FileStore, principal: &Principal) -> Vec<SessionKey> {
    let entries = match std::fs::read_dir(principal_dir(store, principal)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        other => other.unwrap(),
    };
    // Names that are not keys are not markers.
    let mut keys: Vec<SessionKey> = entries
        .filter_map(|e| SessionKey::parse(e.unwrap().file_name().to_str().unwrap()).ok())
        .collect();
    keys.sort_unstable();
    keys
}

fn owned(ttl: Duration, principal: &Principal) -> Record {
    live(sample(), ttl).with_principal(Some(principal.clone()))
}

/// The issue's check, on the file system: 10,000 sessions of one principal
/// with a 2 s TTL are 10,000 marker files once written (expired or not:
/// nothing has reaped them yet); once they have all expired and
/// `delete_expired` has run, no marker is left, nor the principal's
/// directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_sessions_of_one_principal_leave_no_marker_once_reaped() {
    let root = temp();
    let store = FileStore::open(root.path()).await.unwrap();
    let alice = Principal::new("alice@example.com").unwrap();
    let ttl = Duration::from_secs(2);
    let start = std::time::Instant::now();
    let (_, last) = create_sessions_of(&store, &alice, 10_000, ttl, 40).await;
    eprintln!("10,000 creates took {:?}", start.elapsed());
    assert_eq!(markers(&store, &alice).len(), 10_000);
    assert_eq!(store.index_len(&alice).await.unwrap(), 10_000);
    let live = store.sessions_of(&alice).await.unwrap().len();
    assert!(live <= 10_000);

    // Wait for the clock to pass the last expiry (bounded: 2 s).
    while Timestamp::now() <= last {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.sessions_of(&alice).await.unwrap().is_empty());
    assert_eq!(markers(&store, &alice).len(), 10_000, "until reaped");
    assert_eq!(store.delete_expired().await.unwrap(), 10_000);
    assert!(markers(&store, &alice).is_empty());
    assert!(!principal_dir(&store, &alice).exists());
    assert_eq!(store.index_len(&alice).await.unwrap(), 0);
    assert_eq!(store.len().await.unwrap(), 0);
}

/// Every way a file stops naming a principal removes its marker (a write
/// naming another or none, an expired write, destroy, the reaper, clear);
/// touch keeps it; the listing, `len` and `clear` ignore `.principals`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_markers_follow_every_write() {
    let root = temp();
    let store = FileStore::open(root.path()).await.unwrap();
    let (ada, bob) = (
        Principal::new("ada").unwrap(),
        Principal::new("bob").unwrap(),
    );
    let k = key();
    assert!(store.create(&k, &owned(TTL, &ada)).await.unwrap());
    assert_eq!(markers(&store, &ada), vec![k]);
    let bytes = std::fs::read(store.path_of(&k)).unwrap();
    assert_eq!(bytes[29..33], *b"\x03ada", "the principal after the header");
    assert!(
        store
            .touch(&k, Timestamp::now() + Duration::from_secs(7200))
            .await
            .unwrap()
    );
    assert_eq!(markers(&store, &ada), vec![k]);
    assert_eq!(
        store.load(&k).await.unwrap().unwrap().principal,
        Some(ada.clone())
    );
    assert_eq!(store.len().await.unwrap(), 1);
    assert_eq!(store.all().await.unwrap().len(), 1);

    assert_eq!(
        store.update(&k, &owned(TTL, &bob), 0).await.unwrap(),
        UpdateOutcome::Updated
    );
    assert_eq!(
        (markers(&store, &ada), markers(&store, &bob)),
        (vec![], vec![k])
    );
    assert!(
        !principal_dir(&store, &ada).exists(),
        "an empty directory goes"
    );
    store.save(&k, &live(sample(), TTL)).await.unwrap();
    assert!(markers(&store, &bob).is_empty());

    store.save(&k, &owned(TTL, &ada)).await.unwrap();
    store
        .save(&k, &expired(sample()).with_principal(Some(ada.clone())))
        .await
        .unwrap();
    assert!(markers(&store, &ada).is_empty(), "an expired save");
    store.save(&k, &owned(TTL, &ada)).await.unwrap();
    store.destroy(&k).await.unwrap();
    assert!(markers(&store, &ada).is_empty(), "destroy");

    // The reaper: a session expiring in 1.5 s (a margin for a stalled
    // write: one written already expired would write nothing), then
    // expired but not reaped (bounded polling).
    store
        .save(&k, &owned(Duration::from_millis(1_500), &ada))
        .await
        .unwrap();
    assert_eq!(markers(&store, &ada), vec![k]);
    while store.load(&k).await.unwrap().is_some() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(markers(&store, &ada), vec![k], "until it is reaped");
    assert_eq!(store.delete_expired().await.unwrap(), 1);
    assert!(markers(&store, &ada).is_empty(), "delete_expired");

    let other = store.open_namespace("other").await.unwrap();
    other.save(&key(), &owned(TTL, &ada)).await.unwrap();
    store.save(&k, &owned(TTL, &ada)).await.unwrap();
    store.clear().await.unwrap();
    assert!(markers(&store, &ada).is_empty(), "clear");
    assert!(!principal_dir(&store, &ada).exists());
    assert_eq!(markers(&other, &ada).len(), 1, "another namespace's stay");
}

/// Markers without their file (a crash between the two steps, or made
/// behind the store's back) are dropped by `sessions_of` and
/// `destroy_all_of` of their principal after checking the file; an
/// unreadable file under a marker is left in place by `destroy_all_of`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_markers_are_dropped_when_met() {
    let root = temp();
    let store = FileStore::open(root.path()).await.unwrap();
    let (ada, bob) = (
        Principal::new("ada").unwrap(),
        Principal::new("bob").unwrap(),
    );
    let (gone, others, kept, corrupt) = (key(), key(), key(), key());
    store.save(&others, &owned(TTL, &bob)).await.unwrap();
    store.save(&kept, &owned(TTL, &ada)).await.unwrap();
    std::fs::create_dir_all(store.path_of(&corrupt).parent().unwrap()).unwrap();
    std::fs::write(store.path_of(&corrupt), b"garbage").unwrap();
    for k in [&gone, &others, &corrupt] {
        std::fs::write(principal_dir(&store, &ada).join(k.as_str()), b"").unwrap();
    }
    // Not a key: not a marker.
    std::fs::write(principal_dir(&store, &ada).join("notes"), b"").unwrap();
    assert_eq!(store.index_len(&ada).await.unwrap(), 4);
    let found = store.sessions_of(&ada).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, kept);
    assert_eq!(markers(&store, &ada), vec![kept]);

    for k in [&gone, &others, &corrupt] {
        std::fs::write(principal_dir(&store, &ada).join(k.as_str()), b"").unwrap();
    }
    assert_eq!(store.destroy_all_of(&ada, None).await.unwrap(), 1);
    assert!(markers(&store, &ada).is_empty());
    assert!(store.load(&others).await.unwrap().is_some(), "bob's stays");
    assert!(store.path_of(&corrupt).exists(), "not known to be ada's");
}

/// Writers giving a few keys to a few principals (or none), destroying
/// them, reaping and signing everyone out, all at once: afterwards every
/// file that names a principal has its marker, and once `sessions_of` has
/// run for each principal, no marker is left without its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_and_index_calls_keep_the_markers_exact() {
    let root = temp();
    let store = FileStore::open(root.path()).await.unwrap();
    let keys: Vec<SessionKey> = (0..4).map(|_| key()).collect();
    let people: Vec<Principal> = ["ada", "bob"]
        .iter()
        .map(|p| Principal::new(*p).unwrap())
        .collect();
    race_principal_writes(std::sync::Arc::new(store.clone()), &keys, &people).await;
    let owners = || {
        let mut by: Vec<(Principal, SessionKey)> = Vec::new();
        for k in &keys {
            if let Ok(bytes) = std::fs::read(store.path_of(k))
                && bytes[29] > 0
            {
                let name = std::str::from_utf8(&bytes[30..30 + usize::from(bytes[29])]).unwrap();
                by.push((Principal::new(name).unwrap(), *k));
            }
        }
        by
    };
    for (p, k) in owners() {
        assert!(markers(&store, &p).contains(&k), "{k} of {p} has no marker");
    }
    for p in &people {
        store.sessions_of(p).await.unwrap();
    }
    let named = owners();
    for p in &people {
        let mut expected: Vec<SessionKey> = named
            .iter()
            .filter(|(q, _)| q == p)
            .map(|(_, k)| *k)
            .collect();
        expected.sort_unstable();
        assert_eq!(markers(&store, p), expected, "markers of {p}");
    }
}

/// A directory of the format before principals (`.format` says 1, files
/// `sesf\x01` with the data right after the header) opens, as the crate
/// docs say: its files read as sessions without principal, `touch` and
/// `update` work on them, the first rewrite stores format 2, and the
/// marker says 2 from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_of_the_previous_format_opens_and_reads() {
    let root = temp();
    let k = key();
    let dir = root.path().join("sessions");
    std::fs::create_dir_all(dir.join(&k.as_str()[..2])).unwrap();
    std::fs::write(dir.join(".format"), "session-store-file 1\n").unwrap();
    let expires_at = (Timestamp::now() + TTL).as_millis();
    let mut old = b"sesf\x01".to_vec();
    old.extend_from_slice(&expires_at.to_be_bytes());
    old.extend_from_slice(&1_000_i64.to_be_bytes());
    old.extend_from_slice(&7_u64.to_be_bytes());
    old.extend_from_slice(br#"{"user":"ada"}"#);
    std::fs::write(dir.join(&k.as_str()[..2]).join(k.as_str()), old).unwrap();

    let store = FileStore::open(root.path()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join(".format")).unwrap(),
        "session-store-file 2\n"
    );
    let loaded = store.load(&k).await.unwrap().unwrap();
    assert_eq!(loaded.data["user"], "ada");
    assert_eq!((loaded.version, loaded.principal.clone()), (7, None));
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
    assert_eq!(&std::fs::read(store.path_of(&k)).unwrap()[..5], b"sesf\x02");
    assert_eq!(markers(&store, &ada), vec![k]);
    assert_eq!(store.sessions_of(&ada).await.unwrap().len(), 1);
}

//! Real faults: the writing process killed mid-stream, and a full disk.
//!
//! The crash test runs a writer in a child process (this test binary run
//! again, as the ignored test `crash_writer`), reads every write the child
//! saw acknowledged, kills it with SIGKILL, and checks the file: intact,
//! every acknowledged write in it. The full-disk test mounts a small tmpfs
//! (it needs root; `SESSION_SKIP_FULL_DISK=1` skips it elsewhere).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::time::Duration;

use session_conformance::fault;
use session_conformance::fixtures::{key, live, object};
use session_core::{Error, SessionStore};
use session_store_sqlite::{SqliteStore, Synchronous, rusqlite};

/// Where the child writes: the database path.
const DB_VAR: &str = "SESSION_SQLITE_CRASH_DB";
/// Concurrent writers in the child.
const WRITERS: usize = 64;
/// How many acknowledged writes the parent waits for before the kill.
const ACKS_BEFORE_KILL: usize = 1_500;
/// Every wait here is bounded by this.
const DEADLINE: Duration = Duration::from_secs(120);
const TTL: Duration = Duration::from_secs(3600);

/// The child: 64 tasks saving fresh sessions (and updating each one once)
/// with `synchronous = FULL`, printing each write as soon as the store
/// acknowledged it, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of a_killed_writer_loses_no_acknowledged_write, started by it"]
async fn crash_writer() {
    let db = std::env::var(DB_VAR).unwrap_or_else(|_| {
        panic!("this is the child of a_killed_writer_loses_no_acknowledged_write: run that test")
    });
    let store = SqliteStore::builder(&db)
        .with_synchronous(Synchronous::Full)
        .build()
        .await
        .unwrap();
    fault::write_until_killed(store, WRITERS).await;
}

#[test]
fn a_killed_writer_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.db");
    let acked = fault::kill_mid_stream(
        "crash_writer",
        &[(DB_VAR, db.as_os_str())],
        ACKS_BEFORE_KILL,
        DEADLINE,
    );
    let count = acked.writes;

    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        let lost = acked.lost(&store).await;
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged writes lost after the kill: {:?}",
            lost.len(),
            acked.latest.len(),
            &lost[..lost.len().min(5)]
        );
        eprintln!(
            "{count} acknowledged writes ({} sessions) before SIGKILL, 0 lost",
            acked.latest.len()
        );
        // The same file takes writes again.
        let k = key();
        store
            .save(&k, &live(object(serde_json::json!({})), TTL))
            .await
            .unwrap();
        assert!(store.load(&k).await.unwrap().is_some());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_typed_error_and_the_same_store_recovers() {
    let Some(disk) = fault::Tmpfs::mount(4 << 20) else {
        return;
    };
    let ballast = disk.ballast(1 << 20);
    let store = SqliteStore::builder(disk.path().join("sessions.db"))
        .with_synchronous(Synchronous::Full)
        .build()
        .await
        .unwrap();
    let big = object(serde_json::json!({"pad": "x".repeat(32 * 1024)}));
    let mut saved = Vec::new();
    let mut failure = None;
    for _ in 0..1_000 {
        let k = key();
        match store.save(&k, &live(big.clone(), TTL)).await {
            Ok(()) => saved.push(k),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("4 MiB never filled up");
    assert!(
        matches!(
            failure,
            Error::Backend {
                backend: "sqlite",
                ..
            }
        ),
        "{failure:?}"
    );
    assert!(
        session_core::report(&failure).contains("full"),
        "{}",
        session_core::report(&failure)
    );
    assert!(saved.len() > 10, "only {} saves fitted", saved.len());
    // Reads go on while the disk is full.
    assert!(store.load(&saved[0]).await.unwrap().is_some());

    std::fs::remove_file(ballast).unwrap();
    // The same store takes writes again, and kept every acknowledged one.
    for _ in 0..10 {
        store.save(&key(), &live(big.clone(), TTL)).await.unwrap();
    }
    for k in &saved {
        assert!(
            store.load(k).await.unwrap().is_some(),
            "an acknowledged save was lost"
        );
    }
    assert_eq!(store.len().await.unwrap(), saved.len() as u64 + 10);
    drop(store);
    let conn = rusqlite::Connection::open(disk.path().join("sessions.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

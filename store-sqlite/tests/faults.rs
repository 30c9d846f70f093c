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
use session_core::SessionStore;
use session_store_sqlite::{SqliteStore, Synchronous, rusqlite};

/// Where the child writes: the database path.
const DB_VAR: &str = "SESSION_SQLITE_CRASH_DB";
const TTL: Duration = Duration::from_secs(3600);

/// The child: 64 tasks saving fresh sessions (and updating each one once)
/// with `synchronous = FULL`, printing each write as soon as the store
/// acknowledged it, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of a_killed_writer_loses_no_acknowledged_write, started by it"]
async fn crash_writer() {
    let db = fault::child_var(DB_VAR);
    let store = SqliteStore::builder(&db)
        .with_synchronous(Synchronous::Full)
        .build()
        .await
        .unwrap();
    fault::write_until_killed(store).await;
}

#[test]
fn a_killed_writer_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.db");
    let acked = fault::kill_mid_stream("crash_writer", &[(DB_VAR, db.as_os_str())]);

    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        acked.assert_none_lost(&store).await;
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
    let big = live(
        object(serde_json::json!({"pad": "x".repeat(32 * 1024)})),
        TTL,
    );
    let (saved, _) = fault::fill_until_error(&store, &big, 1_000, "sqlite", "full").await;
    assert!(saved.len() > 10, "only {} saves fitted", saved.len());
    // Reads go on while the disk is full.
    assert!(store.load(&saved[0]).await.unwrap().is_some());

    std::fs::remove_file(ballast).unwrap();
    // The same store takes writes again, and kept every acknowledged one.
    for _ in 0..10 {
        store.save(&key(), &big).await.unwrap();
    }
    fault::assert_all_present(&store, &saved, "after space returned").await;
    assert_eq!(store.len().await.unwrap(), saved.len() as u64 + 10);
    drop(store);
    let conn = rusqlite::Connection::open(disk.path().join("sessions.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

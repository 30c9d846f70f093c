//! The connection threads stop when the last store sharing them is dropped.
//! Its own test binary (one test), so that no other test's store owns
//! threads while it counts them.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use session_conformance::fixtures::key;
use session_core::{Record, SessionStore};
use session_store_sqlite::SqliteStore;

/// Names of this process's threads that belong to a store (Linux: read from
/// `/proc`; elsewhere nothing is counted).
fn store_threads() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("sqlite-"))
        .collect()
}

/// Waits (bounded) until no store thread is left in `/proc`. The drop joins
/// the threads, but Linux wakes a joiner while the exiting thread is still
/// listed (`CLONE_CHILD_CLEARTID` fires before the task is released), so an
/// entry can outlive the join by a moment. A thread that never stops still
/// fails this after the deadline.
async fn no_store_threads_left() -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut names = store_threads();
    while !names.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        names = store_threads();
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_stop_when_the_last_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("threads.db");
    assert_eq!(store_threads(), Vec::<String>::new());

    let store = SqliteStore::builder(&path)
        .with_read_connections(3)
        .build()
        .await
        .unwrap();
    if cfg!(target_os = "linux") {
        // A new thread names itself once it runs: wait for that (bounded),
        // not for a fixed time.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut names = store_threads();
        while names.len() < 4 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            names = store_threads();
        }
        names.sort();
        assert_eq!(
            names,
            [
                "sqlite-reader0",
                "sqlite-reader1",
                "sqlite-reader2",
                "sqlite-writer"
            ]
        );
    }
    let other = store.open_namespace("other").await.unwrap();
    let clone = store.clone();
    let record = Record::new(session_core::Data::new(), Duration::from_secs(60));
    // Concurrent writes, so that some share a group commit.
    let keys: Vec<_> = (0..50).map(|_| key()).collect();
    let writes = keys.iter().map(|key| {
        let (store, record, key) = (clone.clone(), record.clone(), *key);
        tokio::spawn(async move { store.save(&key, &record).await })
    });
    for write in writes {
        write.await.unwrap().unwrap();
    }
    assert_eq!(store.len().await.unwrap(), 50);
    other.save(&keys[0], &record).await.unwrap();

    drop(store);
    drop(clone);
    // `other` shares the connections: they still serve it.
    assert!(other.load(&keys[0]).await.unwrap().is_some());
    assert_eq!(
        store_threads().len(),
        if cfg!(target_os = "linux") { 4 } else { 0 }
    );
    // The drop of the last one joins the threads.
    drop(other);
    assert_eq!(no_store_threads_left().await, Vec::<String>::new());

    // An in-memory store has its writer thread only, gone with it too.
    let memory = SqliteStore::open_in_memory().await.unwrap();
    memory.save(&keys[1], &record).await.unwrap();
    assert!(memory.load(&keys[1]).await.unwrap().is_some());
    if cfg!(target_os = "linux") {
        assert_eq!(store_threads(), ["sqlite-writer"]);
    }
    drop(memory);
    assert_eq!(no_store_threads_left().await, Vec::<String>::new());

    // The data was committed before the threads stopped.
    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(reopened.len().await.unwrap(), 50);
}

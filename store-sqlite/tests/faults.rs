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

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use session_conformance::fixtures::{key, live, object};
use session_core::{Error, SessionKey, SessionStore};
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
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, out) = (store.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0u64.. {
                let k = key();
                let record = live(object(serde_json::json!({"w": writer, "n": n})), TTL);
                store.save(&k, &record).await.unwrap();
                ack(&out, &k, 0);
                let outcome = store.update(&k, &record, 0).await.unwrap();
                assert_eq!(outcome, session_core::UpdateOutcome::Updated);
                ack(&out, &k, 1);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Print `ACK <key> <version>` on a line of its own and flush it: the
/// write is acknowledged from here on.
fn ack(out: &std::sync::Mutex<std::io::Stdout>, k: &SessionKey, version: u64) {
    let mut out = out.lock().unwrap();
    writeln!(out, "\nACK {k} {version}").unwrap();
    out.flush().unwrap();
}

#[test]
fn a_killed_writer_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_writer", "--exact", "--ignored", "--nocapture"])
        .env(DB_VAR, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut count = 0;
    let mut killed = false;
    for line in lines {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (k, version) = rest.split_once(' ').unwrap();
            let version: u64 = version.parse().unwrap();
            let known = acked.entry(k.to_owned()).or_default();
            *known = (*known).max(version);
            count += 1;
        }
        // Kill it mid-stream; what it printed before dying is still read.
        if !killed && (count >= ACKS_BEFORE_KILL || started.elapsed() > DEADLINE) {
            child.kill().unwrap();
            killed = true;
        }
    }
    child.wait().unwrap();
    assert!(killed, "the writer ended by itself, without the kill");
    assert!(
        count >= ACKS_BEFORE_KILL,
        "only {count} writes were acknowledged in {DEADLINE:?}"
    );

    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        let mut lost = Vec::new();
        for (k, version) in &acked {
            let k = SessionKey::parse(k).unwrap();
            match store.load(&k).await.unwrap() {
                Some(record) if record.version >= *version => {}
                other => lost.push((k, *version, other.map(|r| r.version))),
            }
        }
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged writes lost after the kill: {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(5)]
        );
        eprintln!(
            "{count} acknowledged writes ({} sessions) before SIGKILL, 0 lost",
            acked.len()
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

/// A small tmpfs, unmounted (and its folder removed) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mount `bytes` of tmpfs, or `None` if this run opted out.
    fn mount(bytes: u64) -> Option<Self> {
        if std::env::var("SESSION_SKIP_FULL_DISK").is_ok_and(|v| v.trim() == "1") {
            eprintln!("skipped: SESSION_SKIP_FULL_DISK=1");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(Self { dir }),
            other => panic!(
                "cannot mount a tmpfs for the full-disk test ({other:?}): it needs root (or \
                 CAP_SYS_ADMIN); set SESSION_SKIP_FULL_DISK=1 to skip it explicitly"
            ),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fill `path` with a file of `bytes`.
fn ballast(path: &Path, bytes: usize) -> PathBuf {
    let file = path.join("ballast");
    std::fs::write(&file, vec![7u8; bytes]).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_typed_error_and_the_same_store_recovers() {
    let Some(disk) = Tmpfs::mount(4 << 20) else {
        return;
    };
    let ballast = ballast(disk.path(), 1 << 20);
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

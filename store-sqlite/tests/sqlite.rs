//! SQLite-specific checks the shared suite cannot make: corrupt rows written
//! behind the store's back, reopening, the schema version and its
//! migration, configuration errors, batched reaping, namespaces sharing an
//! in-memory database, the principal index counted on the engine.

#![allow(clippy::unwrap_used, reason = "test helpers fail the test on error")]

use std::path::PathBuf;
use std::time::Duration;

use session_conformance::fixtures::{
    assert_decode_error, create_sessions_of, expired, key, live, sample,
};
use session_core::{Error, Principal, PrincipalIndex, SessionStore, Timestamp, UpdateOutcome};
use session_store_sqlite::{SCHEMA_VERSION, SqliteStore, Synchronous, rusqlite};

/// A temporary directory (removed on drop) holding the test database.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    fn db(&self) -> PathBuf {
        self.0.path().join("sessions.db")
    }
}

/// How long the live records of these tests last.
const TTL: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_table_is_a_decode_error_naming_the_key() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).await.unwrap();
    let (bad_json, bad_type, good) = (key(), key(), key());
    for k in [&bad_json, &bad_type, &good] {
        store.save(k, &live(sample(), TTL)).await.unwrap();
    }
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.execute(
        "UPDATE sessions SET data = 'not json {' WHERE key = ?1",
        [bad_json.as_str()],
    )
    .unwrap();
    conn.execute(
        "UPDATE sessions SET created_at = 'yesterday' WHERE key = ?1",
        [bad_type.as_str()],
    )
    .unwrap();
    for k in [&bad_json, &bad_type] {
        assert_decode_error(store.load(k).await, k);
    }
    assert!(matches!(store.all().await, Err(Error::Decode { .. })));
    // The rest of the table is unaffected.
    assert!(store.load(&good).await.unwrap().is_some());
    assert_eq!(store.len().await.unwrap(), 3);
}

/// A row whose expiry or version is not an integer cannot be proven live
/// nor compared: every method whose answer depends on it says so, naming
/// the key, instead of taking it for a collision, a conflict, an absent
/// session or a live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_expiry_or_version_is_a_decode_error_from_every_reading_method() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).await.unwrap();
    let (bad_expiry, bad_version, real_expiry) = (key(), key(), key());
    let record = live(sample(), TTL);
    for k in [&bad_expiry, &bad_version, &real_expiry] {
        store.save(k, &record).await.unwrap();
    }
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    for (sql, k) in [
        (
            "UPDATE sessions SET expires_at = 'soon' WHERE key = ?1",
            &bad_expiry,
        ),
        (
            "UPDATE sessions SET version = 'seven' WHERE key = ?1",
            &bad_version,
        ),
        (
            "UPDATE sessions SET expires_at = 1e300 WHERE key = ?1",
            &real_expiry,
        ),
    ] {
        conn.execute(sql, [k.as_str()]).unwrap();
    }
    let later = Timestamp::now() + TTL;
    for k in [&bad_expiry, &real_expiry] {
        assert_decode_error(store.load(k).await, k);
        assert_decode_error(store.create(k, &record).await, k);
        assert_decode_error(store.update(k, &record, 0).await, k);
        assert_decode_error(store.touch(k, later).await, k);
    }
    assert_decode_error(store.load(&bad_version).await, &bad_version);
    assert_decode_error(store.update(&bad_version, &record, 0).await, &bad_version);
    assert!(matches!(store.len().await, Err(Error::Decode { .. })));
    assert!(matches!(store.all().await, Err(Error::Decode { .. })));
    // Only destroy removes what cannot be read (delete_expired cannot tell
    // whether it expired); then everything works again.
    for k in [&bad_expiry, &bad_version, &real_expiry] {
        store.destroy(k).await.unwrap();
    }
    assert_eq!(store.len().await.unwrap(), 0);
    assert!(store.create(&bad_expiry, &record).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_reopening_the_file() {
    let dir = TempDir::new();
    let (k, record) = (key(), live(sample(), TTL).with_version(7));
    {
        let store = SqliteStore::builder(dir.db())
            .with_namespace("web")
            .with_synchronous(Synchronous::Full)
            .build()
            .await
            .unwrap();
        store.save(&k, &record).await.unwrap();
    }
    let store = SqliteStore::builder(dir.db())
        .with_namespace("web")
        .build()
        .await
        .unwrap();
    assert_eq!(store.load(&k).await.unwrap(), Some(record));
    // Another table of the same file does not see it.
    let other = SqliteStore::builder(dir.db())
        .with_namespace("api")
        .build()
        .await
        .unwrap();
    assert_eq!(other.load(&k).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_version_is_recorded_and_checked() {
    let dir = TempDir::new();
    drop(SqliteStore::open(dir.db()).await.unwrap());
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let index: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'sessions' \
             AND sql LIKE '%expires_at%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(index, 1);

    // A file from a newer version of this crate is refused, not damaged.
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = SqliteStore::open(dir.db()).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");

    // A file another application versions is refused.
    let foreign = dir.0.path().join("app.db");
    let app = rusqlite::Connection::open(&foreign).unwrap();
    app.execute_batch("CREATE TABLE users (id INTEGER); PRAGMA user_version = 12;")
        .unwrap();
    let err = SqliteStore::open(&foreign).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_fail_at_build_time() {
    let dir = TempDir::new();
    for builder in [
        SqliteStore::builder(dir.db()).with_namespace("x\"; DROP TABLE sessions; --"),
        SqliteStore::builder(dir.db()).with_namespace(""),
        SqliteStore::builder(dir.db()).with_namespace("a__b"),
        SqliteStore::builder(dir.db()).with_read_connections(0),
        SqliteStore::builder(dir.db()).with_reap_batch(0),
        SqliteStore::builder(dir.db()).with_busy_timeout(Duration::from_secs(u64::MAX / 2)),
        SqliteStore::builder(""),
    ] {
        let err = builder.build().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Config {
                    backend: "sqlite",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    let store = SqliteStore::open_in_memory().await.unwrap();
    assert!(matches!(
        store.open_namespace("no spaces").await,
        Err(Error::Config { .. })
    ));
    assert!(
        !dir.db().exists(),
        "a refused configuration created the file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_replaces_only_an_expired_row_and_update_tells_missing_from_conflict() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let k = key();
    store
        .save(&k, &live(sample(), TTL).with_version(3))
        .await
        .unwrap();
    assert!(!store.create(&k, &live(sample(), TTL)).await.unwrap());
    assert_eq!(
        store.update(&k, &live(sample(), TTL), 2).await.unwrap(),
        UpdateOutcome::Conflict
    );
    assert_eq!(
        store.update(&k, &live(sample(), TTL), 3).await.unwrap(),
        UpdateOutcome::Updated
    );
    assert_eq!(store.load(&k).await.unwrap().unwrap().version, 4);

    // Make the row expired behind the store's back (save would delete it).
    let e = key();
    assert!(store.create(&e, &expired(sample())).await.unwrap());
    assert_eq!(
        store.update(&e, &live(sample(), TTL), 0).await.unwrap(),
        UpdateOutcome::Missing
    );
    assert!(
        !store
            .touch(&e, Timestamp::now() + Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(store.create(&e, &live(sample(), TTL)).await.unwrap());
    assert_eq!(store.load(&e).await.unwrap().unwrap().version, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_expired_works_in_batches_and_spares_live_rows() {
    let store = SqliteStore::builder_in_memory()
        .with_reap_batch(7)
        .build()
        .await
        .unwrap();
    let live_keys: Vec<_> = (0..5).map(|_| key()).collect();
    for k in &live_keys {
        store.save(k, &live(sample(), TTL)).await.unwrap();
    }
    for _ in 0..50 {
        assert!(store.create(&key(), &expired(sample())).await.unwrap());
    }
    assert_eq!(store.len().await.unwrap(), 5);
    assert_eq!(store.delete_expired().await.unwrap(), 50);
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert_eq!(store.len().await.unwrap(), 5);
    for k in &live_keys {
        assert!(store.load(k).await.unwrap().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_share_one_in_memory_database() {
    let a = SqliteStore::open_in_memory().await.unwrap();
    let b = a.open_namespace("other").await.unwrap();
    assert_eq!((a.namespace(), b.namespace()), ("sessions", "other"));
    let k = key();
    a.save(&k, &live(sample(), TTL)).await.unwrap();
    b.save(&key(), &live(sample(), TTL)).await.unwrap();
    assert_eq!(b.load(&k).await.unwrap(), None);
    b.clear().await.unwrap();
    assert_eq!((a.len().await.unwrap(), b.len().await.unwrap()), (1, 0));
}

#[tokio::test(flavor = "current_thread")]
async fn works_on_a_current_thread_runtime() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).await.unwrap();
    let k = key();
    store.save(&k, &live(sample(), TTL)).await.unwrap();
    assert!(store.load(&k).await.unwrap().is_some());
}

/// What happened to one write of [`saves_with_failures`].
struct Outcome {
    doomed: bool,
    result: session_core::Result<()>,
}

impl Outcome {
    /// Whether the write failed because another write rolled its group back
    /// (not because of its own error).
    fn lost_to_another(&self) -> bool {
        let Err(e) = &self.result else {
            return false;
        };
        // The store's error says which backend failed; its source says why.
        std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source()).any(|e| {
            e.to_string()
                .contains("rolled back by an error in another write")
        })
    }
}

/// 64 saves of fresh keys, every fifth of which (the first included) a
/// trigger makes fail with `raise`; returns each outcome in submission order.
///
/// The writes must share transactions for this to test anything, so the
/// grouping is forced rather than hoped for: another connection holds the
/// write lock while one task queues every save in key order, and lets go
/// only once all are queued. The writer thread can have taken only a prefix
/// before it blocks on the lock, so the saves commit in at most two groups,
/// in key order, one of them holding at least 32 writes.
async fn saves_with_failures(raise: &str) -> Vec<Outcome> {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).await.unwrap();
    let keys: Vec<_> = (0..64).map(|_| key()).collect();
    let doomed = |i: usize| i.is_multiple_of(5);
    let list = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| doomed(*i))
        .map(|(_, k)| format!("'{}'", k.as_str()))
        .collect::<Vec<_>>()
        .join(",");
    let blocker = rusqlite::Connection::open(dir.db()).unwrap();
    blocker
        .execute_batch(&format!(
            "CREATE TRIGGER doom BEFORE INSERT ON sessions WHEN NEW.key IN ({list}) \
             BEGIN SELECT RAISE({raise}, 'doomed'); END; \
             BEGIN IMMEDIATE;"
        ))
        .unwrap();
    let record = live(sample(), TTL);
    // `join_all` polls each save once, in order, before yielding: every job
    // is queued before the lock is let go just after.
    let (results, ()) = tokio::join!(
        futures::future::join_all(keys.iter().map(|k| store.save(k, &record))),
        async move { blocker.execute_batch("COMMIT").unwrap() },
    );
    let mut outcomes = Vec::new();
    for (i, (key, result)) in keys.iter().zip(results).enumerate() {
        // A write answered Ok is committed; one answered with an error left
        // nothing behind.
        let stored = store.load(key).await.unwrap().is_some();
        assert_eq!(result.is_ok(), stored, "write {i}: {result:?}");
        outcomes.push(Outcome {
            doomed: doomed(i),
            result,
        });
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_in_a_group_commit_fails_only_its_caller() {
    for (i, outcome) in saves_with_failures("ABORT").await.iter().enumerate() {
        assert_eq!(outcome.result.is_ok(), !outcome.doomed, "write {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_rolls_back_the_whole_group_fails_its_callers_only() {
    // RAISE(ROLLBACK) ends the shared transaction: the writes of the group
    // that ran before it are lost and their callers hear so; the writes
    // after it go on in a new transaction. Everything answered Ok is stored
    // (checked inside).
    let outcomes = saves_with_failures("ROLLBACK").await;
    let last_doomed = outcomes.iter().rposition(|o| o.doomed).unwrap();
    for (i, outcome) in outcomes.iter().enumerate() {
        if outcome.doomed {
            // Its own error, not the group's.
            assert!(
                outcome.result.is_err() && !outcome.lost_to_another(),
                "write {i}: {:?}",
                outcome.result
            );
        } else if i > last_doomed {
            // Nothing after it can roll it back.
            assert!(outcome.result.is_ok(), "write {i}: {:?}", outcome.result);
        } else {
            assert!(
                outcome.result.is_ok() || outcome.lost_to_another(),
                "write {i}: {:?}",
                outcome.result
            );
        }
    }
    // One group holds at least 32 consecutive writes, so some write ran
    // just before a doomed one in the same transaction and was lost.
    assert!(outcomes.iter().any(Outcome::lost_to_another));
}

/// The principal of a test.
fn principal(name: &str) -> Principal {
    Principal::new(name).unwrap()
}

/// A file of layout version 1 (`user_version` 1, the registry, the tables
/// as that version created them) is migrated when a store opens it: every
/// registered table gets the `principal` column and its partial index, the
/// sessions in it still load (without a principal), and the file is marked
/// version 2. Two stores opening it at once both succeed (the migration
/// runs in one `IMMEDIATE` transaction). A registered table that no longer
/// exists is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_layout_1_is_migrated_when_opened() {
    let dir = TempDir::new();
    let (old, other_old) = (key(), key());
    let expires_at = (Timestamp::now() + TTL).as_millis();
    {
        // Copied from layout 1's `prepare`.
        let conn = rusqlite::Connection::open(dir.db()).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE session_store__tables (name TEXT PRIMARY KEY NOT NULL);
             CREATE TABLE \"sessions\" (
                 key        TEXT    PRIMARY KEY NOT NULL,
                 data       TEXT    NOT NULL,
                 created_at INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL,
                 version    INTEGER NOT NULL
             );
             CREATE INDEX \"sessions__expires_at\" ON \"sessions\" (expires_at);
             CREATE TABLE \"other\" (
                 key        TEXT    PRIMARY KEY NOT NULL,
                 data       TEXT    NOT NULL,
                 created_at INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL,
                 version    INTEGER NOT NULL
             );
             CREATE INDEX \"other__expires_at\" ON \"other\" (expires_at);
             INSERT INTO session_store__tables (name) VALUES ('sessions'), ('other'), ('gone');
             PRAGMA user_version = 1;",
        )
        .unwrap();
        for (table, k) in [("sessions", &old), ("other", &other_old)] {
            conn.execute(
                &format!(
                    "INSERT INTO \"{table}\" (key, data, created_at, expires_at, version) \
                     VALUES (?1, '{{\"user\":\"ada\"}}', 1000, ?2, 3)"
                ),
                rusqlite::params![k.as_str(), expires_at],
            )
            .unwrap();
        }
    }
    let (a, b) = tokio::join!(
        SqliteStore::open(dir.db()),
        SqliteStore::builder(dir.db())
            .with_namespace("other")
            .build()
    );
    let (store, other) = (a.unwrap(), b.unwrap());
    for (s, k) in [(&store, &old), (&other, &other_old)] {
        let record = s.load(k).await.unwrap().unwrap();
        assert_eq!(record.principal, None);
        assert_eq!(
            (record.version, record.data["user"].as_str()),
            (3, Some("ada"))
        );
    }

    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 2);
    for table in ["sessions", "other"] {
        let column: String = conn
            .query_row(
                "SELECT type FROM pragma_table_info(?1) WHERE name = 'principal'",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(column, "TEXT", "{table}");
        let index: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?1",
                [format!("{table}__principal")],
                |r| r.get(0),
            )
            .unwrap();
        assert!(index.ends_with("WHERE principal IS NOT NULL"), "{index}");
    }
    let gone: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'gone')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!gone, "the migration created a table it was not asked for");

    // The migrated table indexes principals like a new one.
    let ada = principal("ada");
    let record = live(sample(), TTL).with_principal(Some(ada.clone()));
    store.save(&old, &record).await.unwrap();
    assert_eq!(
        store.sessions_of(&ada).await.unwrap(),
        vec![(old, record.with_version(0))]
    );
    assert_eq!(other.sessions_of(&ada).await.unwrap(), vec![]);
}

/// A principal written behind the store's back that is not one (a blob,
/// an empty or control-character name) is a decode error naming the key,
/// from `load`, `list` and `sessions_of`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_principal_that_is_not_one_is_a_decode_error_naming_the_key() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).await.unwrap();
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    for bad in [
        rusqlite::types::Value::Blob(b"ada".to_vec()),
        rusqlite::types::Value::Text(String::new()),
        rusqlite::types::Value::Text("ada\n".into()),
    ] {
        let k = key();
        let record = live(sample(), TTL).with_principal(Some(principal("ada")));
        store.save(&k, &record).await.unwrap();
        conn.execute(
            "UPDATE sessions SET principal = ?1 WHERE key = ?2",
            rusqlite::params![bad, k.as_str()],
        )
        .unwrap();
        assert_decode_error(store.load(&k).await, &k);
        assert_decode_error(store.all().await, &k);
        store.destroy(&k).await.unwrap();
    }
    // A row of the principal whose data is garbage fails its listing.
    let k = key();
    let record = live(sample(), TTL).with_principal(Some(principal("ada")));
    store.save(&k, &record).await.unwrap();
    conn.execute(
        "UPDATE sessions SET data = 'not json' WHERE key = ?1",
        [k.as_str()],
    )
    .unwrap();
    assert_decode_error(store.sessions_of(&principal("ada")).await, &k);
    // and "sign out everywhere" still removes it.
    assert_eq!(
        store.destroy_all_of(&principal("ada"), None).await.unwrap(),
        1
    );
    assert_eq!(store.sessions_of(&principal("ada")).await.unwrap(), vec![]);
}

/// The check, on the engine itself: 10,000 sessions of one
/// principal (beside 100 anonymous ones, which the partial index leaves
/// out) put exactly 10,000 entries in the principal index; once they have
/// expired, `sessions_of` lists none, and after `delete_expired` the index
/// holds none, counted through the index with a plain SQLite connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sessions_of_one_principal_leave_no_index_entry_once_expired_and_reaped() {
    const SESSIONS: usize = 10_000;
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).await.unwrap();
    let who = principal("user:10k");
    let ttl = Duration::from_secs(3);
    let started = std::time::Instant::now();
    // Every session expires at this instant or later.
    let first_expiry = Timestamp::now() + ttl;
    // Concurrent creates (the SQL stores batch or pipeline them).
    let (_, last) = create_sessions_of(&store, &who, SESSIONS, ttl, 256).await;
    let took = started.elapsed();
    for _ in 0..100 {
        store.save(&key(), &live(sample(), TTL)).await.unwrap();
    }

    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    // Counted in the index itself (INDEXED BY fails rather than scan).
    let in_index = |name: Option<&str>| -> i64 {
        match name {
            Some(name) => conn.query_row(
                "SELECT count(*) FROM sessions INDEXED BY sessions__principal \
                 WHERE principal = ?1",
                [name],
                |r| r.get(0),
            ),
            None => conn.query_row(
                "SELECT count(*) FROM sessions INDEXED BY sessions__principal \
                 WHERE principal IS NOT NULL",
                [],
                |r| r.get(0),
            ),
        }
        .unwrap()
    };
    assert_eq!(in_index(Some(who.as_str())), SESSIONS as i64);
    assert_eq!(
        in_index(None),
        SESSIONS as i64,
        "anonymous sessions indexed"
    );
    assert_eq!(store.index_len(&who).await.unwrap(), SESSIONS as u64);
    let listed = store.sessions_of(&who).await.unwrap();
    if Timestamp::now() < first_expiry {
        assert_eq!(listed.len(), SESSIONS);
    }

    // Wait (bounded by the TTL) until every one of them has expired.
    while Timestamp::now() <= last {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.sessions_of(&who).await.unwrap(), vec![]);
    assert_eq!(store.destroy_all_of(&who, None).await.unwrap(), 0);
    // Expired rows stay (invisible) until they are reaped.
    assert_eq!(in_index(Some(who.as_str())), SESSIONS as i64);
    let reaping = std::time::Instant::now();
    assert_eq!(store.delete_expired().await.unwrap(), SESSIONS as u64);
    let reaped = reaping.elapsed();
    assert_eq!(in_index(Some(who.as_str())), 0);
    assert_eq!(in_index(None), 0);
    assert_eq!(store.index_len(&who).await.unwrap(), 0);
    assert_eq!(store.len().await.unwrap(), 100);
    println!("10,000 creates: {took:?}; delete_expired of them: {reaped:?}");
}

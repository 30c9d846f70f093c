//! What the suite cannot check: rows written behind the store's back,
//! the table layout and its version marker, configuration errors, the
//! operation deadline, batched reaping.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use std::time::Duration;

use common::{TEST_SCHEMA, drop_tables, postgres_url, raw, skip, store};
use session_conformance::fixtures::{assert_decode_error, expired, key, live, sample};
use session_conformance::unique_namespace;
use session_core::{Error, Record, SessionStore, SessionStoreExt, Timestamp, UpdateOutcome};
use session_store_postgres::{PostgresStore, SCHEMA_VERSION};

fn table(namespace: &str) -> String {
    format!("\"{TEST_SCHEMA}\".\"{namespace}\"")
}

#[tokio::test]
async fn garbage_written_directly_is_a_decode_error_naming_the_key() {
    if skip().is_some() {
        return;
    }
    let ns = unique_namespace();
    let store = store(&ns).await;
    let client = raw().await;
    let far = (Timestamp::now() + Duration::from_secs(600)).as_millis();
    for garbage in ["not json", "[1, 2]", "\"text\"", ""] {
        let k = key();
        client
            .execute(
                &format!(
                    "INSERT INTO {} (key, data, created_at, expires_at, version) \
                     VALUES ($1, $2, 0, $3, 0)",
                    table(&ns)
                ),
                &[&k.as_bytes().as_slice(), &garbage, &far],
            )
            .await
            .unwrap();
        assert_decode_error(store.load(&k).await, &k);
        assert_decode_error(store.all().await, &k);
        // Writes that do not read the data still work on it.
        assert!(
            store
                .touch(&k, Timestamp::now() + Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert!(
            !store
                .create(&k, &live(sample(), Duration::from_secs(60)))
                .await
                .unwrap()
        );
        store.destroy(&k).await.unwrap();
        assert_eq!(store.load(&k).await.unwrap(), None);
    }
    drop_tables(vec![ns]);
}

#[tokio::test]
async fn the_layout_is_documented_and_versions_round_trip_as_bits() {
    if skip().is_some() {
        return;
    }
    let ns = unique_namespace();
    let store = store(&ns).await;
    let client = raw().await;
    let k = key();
    let record = live(sample(), Duration::from_secs(600)).with_version(u64::MAX);
    store.save(&k, &record).await.unwrap();
    let row = client
        .query_one(
            &format!(
                "SELECT data, created_at, expires_at, version FROM {} WHERE key = $1",
                table(&ns)
            ),
            &[&k.as_bytes().as_slice()],
        )
        .await
        .unwrap();
    let data: &str = row.get(0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(data).unwrap()["user"],
        "ada"
    );
    assert_eq!(row.get::<_, i64>(1), record.created_at.as_millis());
    assert_eq!(row.get::<_, i64>(2), record.expires_at.as_millis());
    assert_eq!(row.get::<_, i64>(3), -1, "u64::MAX is stored as its bits");
    // and wraps to 0
    assert_eq!(
        store.update(&k, &record, u64::MAX).await.unwrap(),
        UpdateOutcome::Updated
    );
    assert_eq!(store.load(&k).await.unwrap().unwrap().version, 0);

    let layout: i32 = client
        .query_one(
            &format!(
                "SELECT layout FROM \"{TEST_SCHEMA}\".session_store__registry WHERE name = $1"
            ),
            &[&ns],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(layout, SCHEMA_VERSION);
    let index: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 \
             AND indexname = $3)",
            &[&TEST_SCHEMA, &ns, &format!("{ns}__expires_at")],
        )
        .await
        .unwrap()
        .get(0);
    assert!(index, "no expiry index");
    drop_tables(vec![ns]);
}

#[tokio::test]
async fn update_to_a_past_expiry_deletes_the_row() {
    if skip().is_some() {
        return;
    }
    let ns = unique_namespace();
    let store = store(&ns).await;
    let k = key();
    store
        .save(
            &k,
            &live(sample(), Duration::from_secs(600)).with_version(4),
        )
        .await
        .unwrap();
    assert_eq!(
        store.update(&k, &expired(sample()), 3).await.unwrap(),
        UpdateOutcome::Conflict
    );
    assert_eq!(
        store.update(&k, &expired(sample()), 4).await.unwrap(),
        UpdateOutcome::Updated
    );
    let count: i64 = raw()
        .await
        .query_one(&format!("SELECT count(*) FROM {}", table(&ns)), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "the row is gone, not left expired");
    assert_eq!(
        store.update(&k, &expired(sample()), 5).await.unwrap(),
        UpdateOutcome::Missing
    );
    drop_tables(vec![ns]);
}

#[tokio::test]
async fn delete_expired_works_in_batches_and_leaves_live_rows() {
    if skip().is_some() {
        return;
    }
    let ns = unique_namespace();
    let store = PostgresStore::builder()
        .with_schema(TEST_SCHEMA)
        .with_namespace(&ns)
        .with_reap_batch(3)
        .connect(&postgres_url())
        .await
        .unwrap();
    let live_keys: Vec<_> = (0..4).map(|_| key()).collect();
    for k in &live_keys {
        store
            .save(k, &live(sample(), Duration::from_secs(600)))
            .await
            .unwrap();
    }
    // Expired rows can only be written behind the store's back.
    let client = raw().await;
    for i in 0..10_i64 {
        client
            .execute(
                &format!(
                    "INSERT INTO {} (key, data, created_at, expires_at, version) \
                     VALUES ($1, '{{}}', 0, $2, 0)",
                    table(&ns)
                ),
                &[&key().as_bytes().as_slice(), &(1_000 + i)],
            )
            .await
            .unwrap();
    }
    assert_eq!(store.len().await.unwrap(), 4);
    assert_eq!(store.delete_expired().await.unwrap(), 10);
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert_eq!(store.len().await.unwrap(), 4);
    for k in &live_keys {
        assert!(store.load(k).await.unwrap().is_some());
    }
    drop_tables(vec![ns]);
}

#[tokio::test]
async fn an_unknown_layout_version_is_refused() {
    if skip().is_some() {
        return;
    }
    let ns = unique_namespace();
    drop(store(&ns).await);
    raw()
        .await
        .execute(
            &format!(
                "UPDATE \"{TEST_SCHEMA}\".session_store__registry SET layout = 99 WHERE name = $1"
            ),
            &[&ns],
        )
        .await
        .unwrap();
    let err = PostgresStore::builder()
        .with_schema(TEST_SCHEMA)
        .with_namespace(&ns)
        .connect(&postgres_url())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { reason, .. } if reason.contains("99")),
        "{err:?}"
    );
    drop_tables(vec![ns]);
}

#[tokio::test]
async fn a_table_that_is_not_a_session_table_is_refused() {
    if skip().is_some() {
        return;
    }
    let ns = unique_namespace();
    let client = raw().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{TEST_SCHEMA}\"; CREATE TABLE {} (id INT)",
            table(&ns)
        ))
        .await
        .unwrap();
    let err = PostgresStore::builder()
        .with_schema(TEST_SCHEMA)
        .with_namespace(&ns)
        .connect(&postgres_url())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    drop_tables(vec![ns]);
}

#[tokio::test]
async fn open_namespace_shares_the_pool_and_isolates_sessions() {
    if skip().is_some() {
        return;
    }
    let (a, b) = (unique_namespace(), unique_namespace());
    let first = store(&a).await;
    let second = first.open_namespace(&b).await.unwrap();
    assert_eq!(second.namespace(), b);
    assert_eq!(second.schema(), TEST_SCHEMA);
    let k = key();
    first
        .save(&k, &live(sample(), Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(second.load(&k).await.unwrap().is_none());
    assert!(second.is_empty().await.unwrap());
    assert!(matches!(
        first.open_namespace("bad-name").await,
        Err(Error::Config { .. })
    ));
    drop_tables(vec![a, b]);
}

#[tokio::test]
async fn settings_are_checked_when_the_store_is_built() {
    let url = postgres_url();
    let builders = [
        PostgresStore::builder().with_namespace(""),
        PostgresStore::builder().with_namespace("a\"b"),
        PostgresStore::builder().with_namespace("x; DROP TABLE y"),
        PostgresStore::builder().with_namespace("a__b"),
        PostgresStore::builder().with_schema("pg_catalog"),
        PostgresStore::builder().with_schema("1x"),
        PostgresStore::builder().with_pool_size(0),
        PostgresStore::builder().with_reap_batch(0),
        PostgresStore::builder().with_operation_timeout(Duration::ZERO),
    ];
    for builder in builders {
        let described = format!("{builder:?}");
        let err = builder.connect(&url).await.unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{described}: {err:?}");
    }
    // A bad URL, holding a password that must not be echoed.
    let err = PostgresStore::connect("postgres://u:hunter2@127.0.0.1:5432/db?sslmode=bogus")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
    #[cfg(not(feature = "rustls"))]
    {
        let err = PostgresStore::connect("postgres://u@127.0.0.1:5432/db?sslmode=require")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Config { reason, .. } if reason.contains("rustls")),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn debug_never_prints_credentials() {
    if skip().is_some() {
        return;
    }
    let ns = unique_namespace();
    let store = store(&ns).await;
    let shown = format!("{store:?}");
    assert!(
        shown.contains("127.0.0.1") || shown.contains("localhost"),
        "{shown}"
    );
    assert!(shown.contains(&ns), "{shown}");
    // A password in the URL (trust auth ignores it) never shows.
    let url = postgres_url();
    if let Some(rest) = url.strip_prefix("postgres://")
        && let Some((user, host)) = rest.split_once('@')
        && !user.contains(':')
    {
        let with_password = format!("postgres://{user}:s3cr3t-pw@{host}");
        let store = PostgresStore::builder()
            .with_schema(TEST_SCHEMA)
            .with_namespace(&ns)
            .connect(&with_password)
            .await
            .unwrap();
        assert!(!format!("{store:?}").contains("s3cr3t-pw"));
    }
    drop_tables(vec![ns]);
}

/// A server that accepts connections and never answers: building (which
/// connects) fails with `Error::Timeout` at the operation deadline.
#[tokio::test]
async fn a_silent_server_times_out_at_the_operation_deadline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = std::time::Instant::now();
    let err = PostgresStore::builder()
        .with_operation_timeout(Duration::from_millis(300))
        .connect(&format!(
            "postgres://u@127.0.0.1:{port}/db?connect_timeout=30"
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { backend: "postgres", operation: "connect", after } if after == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A statement blocked on a row lock held elsewhere: the call fails with
/// `Error::Timeout` naming the operation.
#[tokio::test]
async fn a_blocked_statement_times_out_at_the_operation_deadline() {
    if skip().is_some() {
        return;
    }
    let ns = unique_namespace();
    let store = PostgresStore::builder()
        .with_schema(TEST_SCHEMA)
        .with_namespace(&ns)
        .with_operation_timeout(Duration::from_millis(500))
        .connect(&postgres_url())
        .await
        .unwrap();
    let k = key();
    let record = live(sample(), Duration::from_secs(600));
    store.save(&k, &record).await.unwrap();
    let mut client = raw().await;
    let tx = client.transaction().await.unwrap();
    tx.execute(
        &format!("SELECT 1 FROM {} WHERE key = $1 FOR UPDATE", table(&ns)),
        &[&k.as_bytes().as_slice()],
    )
    .await
    .unwrap();
    let err = store.update(&k, &record, 0).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                operation: "update",
                ..
            }
        ),
        "{err:?}"
    );
    tx.rollback().await.unwrap();
    // Once the lock is gone the store works again.
    assert!(store.load(&k).await.unwrap().is_some());
    drop(store);
    drop_tables(vec![ns]);
}

/// `create` over an expired row replaces it in the same statement (no
/// reaping needed), and a live row is a collision.
#[tokio::test]
async fn create_replaces_an_expired_row_in_place() {
    if skip().is_some() {
        return;
    }
    let ns = unique_namespace();
    let store = store(&ns).await;
    let k = key();
    raw()
        .await
        .execute(
            &format!(
                "INSERT INTO {} (key, data, created_at, expires_at, version) \
                 VALUES ($1, '{{\"old\":true}}', 0, 1000, 9)",
                table(&ns)
            ),
            &[&k.as_bytes().as_slice()],
        )
        .await
        .unwrap();
    let fresh = live(sample(), Duration::from_secs(60));
    assert!(store.create(&k, &fresh).await.unwrap());
    assert!(!store.create(&k, &fresh).await.unwrap());
    let loaded: Record = store.load(&k).await.unwrap().unwrap();
    assert_eq!(loaded.data, fresh.data);
    assert_eq!(loaded.version, fresh.version);
    drop_tables(vec![ns]);
}

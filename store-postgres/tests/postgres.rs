//! What the suite cannot check: rows written behind the store's back,
//! the table layout, its version marker and its migration, configuration
//! errors, the operation deadline, batched reaping, the principal index
//! counted on the engine.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use std::time::Duration;

use common::{Postgres, TEST_SCHEMA, builder, fresh, postgres_url, raw, skip};
use session_conformance::fault::{
    StallProxy, assert_deadline_bounds_building_and_a_stall, assert_timeout,
};
use session_conformance::fixtures::{
    assert_decode_error, create_sessions_of, expired, key, live, sample,
};
use session_core::{
    Error, Principal, PrincipalIndex, Record, SessionKey, SessionStore, SessionStoreExt, Timestamp,
    UpdateOutcome,
};
use session_store_postgres::{PostgresStore, SCHEMA_VERSION};

fn table(namespace: &str) -> String {
    format!("\"{TEST_SCHEMA}\".\"{namespace}\"")
}

/// Write a row behind the store's back.
async fn raw_insert(
    client: &tokio_postgres::Client,
    namespace: &str,
    key: &SessionKey,
    data: &str,
    expires_at: i64,
    version: i64,
) {
    client
        .execute(
            &format!(
                "INSERT INTO {} (key, data, created_at, expires_at, version) \
                 VALUES ($1, $2, 0, $3, $4)",
                table(namespace)
            ),
            &[&key.as_bytes().as_slice(), &data, &expires_at, &version],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn garbage_written_directly_is_a_decode_error_naming_the_key() {
    let Some((_tables, ns, store)) = fresh().await else {
        return;
    };
    let client = raw().await;
    let far = (Timestamp::now() + Duration::from_secs(600)).as_millis();
    for garbage in ["not json", "[1, 2]", "\"text\"", ""] {
        let k = key();
        raw_insert(&client, &ns, &k, garbage, far, 0).await;
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
}

#[tokio::test]
async fn the_layout_is_documented_and_versions_round_trip_as_bits() {
    let Some((_tables, ns, store)) = fresh().await else {
        return;
    };
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
}

#[tokio::test]
async fn update_to_a_past_expiry_deletes_the_row() {
    let Some((_tables, ns, store)) = fresh().await else {
        return;
    };
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
}

#[tokio::test]
async fn delete_expired_works_in_batches_and_leaves_live_rows() {
    let Some((_tables, ns, _)) = fresh().await else {
        return;
    };
    let store = builder(&ns)
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
        raw_insert(&client, &ns, &key(), "{}", 1_000 + i, 0).await;
    }
    assert_eq!(store.len().await.unwrap(), 4);
    assert_eq!(store.delete_expired().await.unwrap(), 10);
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert_eq!(store.len().await.unwrap(), 4);
    for k in &live_keys {
        assert!(store.load(k).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn an_unknown_layout_version_is_refused() {
    let Some((_tables, ns, store)) = fresh().await else {
        return;
    };
    drop(store);
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
    let err = builder(&ns).connect(&postgres_url()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Config { reason, .. } if reason.contains("99")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_table_that_is_not_a_session_table_is_refused() {
    if skip().is_some() {
        return;
    }
    let tables = Postgres::new();
    let ns = tables.cleanup.unique_namespace();
    let client = raw().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{TEST_SCHEMA}\"; CREATE TABLE {} (id INT)",
            table(&ns)
        ))
        .await
        .unwrap();
    let err = builder(&ns).connect(&postgres_url()).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
}

#[tokio::test]
async fn open_namespace_shares_the_pool_and_isolates_sessions() {
    let Some((tables, _, first)) = fresh().await else {
        return;
    };
    let b = tables.cleanup.unique_namespace();
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
    let Some((_tables, ns, store)) = fresh().await else {
        return;
    };
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
        let store = builder(&ns).connect(&with_password).await.unwrap();
        assert!(!format!("{store:?}").contains("s3cr3t-pw"));
    }
}

/// A stalled server (through [`StallProxy`]): building fails with
/// `Error::Timeout` at the operation deadline; once it answers again, each
/// call on a stall ends at the deadline and the store recovers.
#[tokio::test]
async fn a_stalled_server_is_a_timeout_at_the_operation_deadline_and_the_store_recovers() {
    let Some((_tables, ns, _)) = fresh().await else {
        return;
    };
    let (proxy, url) = StallProxy::in_front_of(&postgres_url()).await.unwrap();
    let deadline = Duration::from_millis(500);
    let build = || builder(&ns).with_operation_timeout(deadline).connect(&url);
    assert_deadline_bounds_building_and_a_stall(&proxy, "postgres", deadline, build).await;
}

/// A statement blocked on a row lock held elsewhere: the call fails with
/// `Error::Timeout` naming the operation.
#[tokio::test]
async fn a_blocked_statement_times_out_at_the_operation_deadline() {
    let Some((_tables, ns, _)) = fresh().await else {
        return;
    };
    let deadline = Duration::from_millis(500);
    let store = builder(&ns)
        .with_operation_timeout(deadline)
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
    assert_timeout(
        store.update(&k, &record, 0).await,
        "postgres",
        "update",
        deadline,
    );
    tx.rollback().await.unwrap();
    // Once the lock is gone the store works again.
    assert!(store.load(&k).await.unwrap().is_some());
}

/// `create` over an expired row replaces it in the same statement (no
/// reaping needed), and a live row is a collision.
#[tokio::test]
async fn create_replaces_an_expired_row_in_place() {
    let Some((_tables, ns, store)) = fresh().await else {
        return;
    };
    let k = key();
    raw_insert(&raw().await, &ns, &k, "{\"old\":true}", 1000, 9).await;
    let fresh = live(sample(), Duration::from_secs(60));
    assert!(store.create(&k, &fresh).await.unwrap());
    assert!(!store.create(&k, &fresh).await.unwrap());
    let loaded: Record = store.load(&k).await.unwrap().unwrap();
    assert_eq!(loaded.data, fresh.data);
    assert_eq!(loaded.version, fresh.version);
}

/// The principal of a test.
fn principal(name: &str) -> Principal {
    Principal::new(name).unwrap()
}

/// A table of layout version 1 (created and registered as that version
/// did) is migrated when a store is built on it: the `principal` column
/// and its partial index are added, the registry says 2, and the session
/// in it still loads (without a principal). Two builders at once both
/// succeed (the advisory lock serializes them; the second finds the table
/// migrated).
#[tokio::test]
async fn a_table_of_layout_1_is_migrated_when_a_store_is_built() {
    // A first store creates the schema and its registry (under the
    // store's lock, so that concurrent tests do not race on them).
    let Some((tables, _, _first)) = fresh().await else {
        return;
    };
    let ns = tables.cleanup.unique_namespace();
    let client = raw().await;
    // Copied from layout 1's `prepare`.
    client
        .batch_execute(&format!(
            "CREATE TABLE {t} (
                 key        BYTEA  PRIMARY KEY NOT NULL CHECK (octet_length(key) = 32),
                 data       TEXT   NOT NULL,
                 created_at BIGINT NOT NULL,
                 expires_at BIGINT NOT NULL,
                 version    BIGINT NOT NULL
             );
             CREATE INDEX \"{ns}__expires_at\" ON {t} (expires_at);
             INSERT INTO \"{TEST_SCHEMA}\".session_store__registry (name, layout)
                 VALUES ('{ns}', 1);",
            t = table(&ns)
        ))
        .await
        .unwrap();
    let old = key();
    let far = (Timestamp::now() + Duration::from_secs(600)).as_millis();
    raw_insert(&client, &ns, &old, "{\"user\":\"ada\"}", far, 3).await;

    let url = postgres_url();
    let (a, b) = tokio::join!(builder(&ns).connect(&url), builder(&ns).connect(&url));
    let (store, _) = (a.unwrap(), b.unwrap());
    let record = store.load(&old).await.unwrap().unwrap();
    assert_eq!(record.principal, None);
    assert_eq!(
        (record.version, record.data["user"].as_str()),
        (3, Some("ada"))
    );

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
    assert_eq!((layout, SCHEMA_VERSION), (2, 2));
    let column: String = client
        .query_one(
            "SELECT data_type FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 AND column_name = 'principal'",
            &[&TEST_SCHEMA, &ns],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(column, "text");
    let index: String = client
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 \
             AND indexname = $3",
            &[&TEST_SCHEMA, &ns, &format!("{ns}__principal")],
        )
        .await
        .unwrap()
        .get(0);
    assert!(index.ends_with("WHERE (principal IS NOT NULL)"), "{index}");

    // The migrated table indexes principals like a new one.
    let ada = principal("ada");
    let record = live(sample(), Duration::from_secs(600)).with_principal(Some(ada.clone()));
    store.save(&old, &record).await.unwrap();
    assert_eq!(store.sessions_of(&ada).await.unwrap(), vec![(old, record)]);
}

/// A principal written behind the store's back that is not one (empty, a
/// control character) is a decode error naming the key, from `load` and
/// `list`; a row of the principal whose data is garbage fails
/// `sessions_of` the same way, and `destroy_all_of` still removes it.
#[tokio::test]
async fn a_stored_principal_that_is_not_one_is_a_decode_error_naming_the_key() {
    let Some((_tables, ns, store)) = fresh().await else {
        return;
    };
    let client = raw().await;
    let ada = principal("ada");
    let record = live(sample(), Duration::from_secs(600)).with_principal(Some(ada.clone()));
    for bad in ["", "ada\n", "\u{7f}"] {
        let k = key();
        store.save(&k, &record).await.unwrap();
        client
            .execute(
                &format!("UPDATE {} SET principal = $1 WHERE key = $2", table(&ns)),
                &[&bad, &k.as_bytes().as_slice()],
            )
            .await
            .unwrap();
        assert_decode_error(store.load(&k).await, &k);
        assert_decode_error(store.all().await, &k);
        store.destroy(&k).await.unwrap();
    }
    let k = key();
    store.save(&k, &record).await.unwrap();
    client
        .execute(
            &format!("UPDATE {} SET data = 'not json' WHERE key = $1", table(&ns)),
            &[&k.as_bytes().as_slice()],
        )
        .await
        .unwrap();
    assert_decode_error(store.sessions_of(&ada).await, &k);
    assert_eq!(store.destroy_all_of(&ada, None).await.unwrap(), 1);
    assert_eq!(store.sessions_of(&ada).await.unwrap(), vec![]);
}

/// The check, on the engine itself: 10,000 sessions of one
/// principal (beside 100 anonymous ones) are 10,000 rows with that
/// principal, counted through the principal index with a plain
/// tokio-postgres connection; once they have expired `sessions_of` lists
/// none, and after `delete_expired` the count is 0.
#[tokio::test]
async fn ten_thousand_sessions_of_one_principal_leave_no_index_entry_once_expired_and_reaped() {
    const SESSIONS: usize = 10_000;
    let Some((_tables, ns, store)) = fresh().await else {
        return;
    };
    let who = principal("user:10k");
    let ttl = Duration::from_secs(4);
    let started = std::time::Instant::now();
    // Every session expires at this instant or later.
    let first_expiry = Timestamp::now() + ttl;
    // Concurrent creates (the SQL stores batch or pipeline them).
    let (_, last) = create_sessions_of(&store, &who, SESSIONS, ttl, 64).await;
    let took = started.elapsed();
    for _ in 0..100 {
        store
            .save(&key(), &live(sample(), Duration::from_secs(600)))
            .await
            .unwrap();
    }

    let client = raw().await;
    // Through the index: no sequential scan on this connection.
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    let count = format!("SELECT count(*) FROM {} WHERE principal = $1", table(&ns));
    let in_index =
        async |name: &str| -> i64 { client.query_one(&count, &[&name]).await.unwrap().get(0) };
    assert_eq!(in_index(who.as_str()).await, SESSIONS as i64);
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
    assert_eq!(in_index(who.as_str()).await, SESSIONS as i64);
    let reaping = std::time::Instant::now();
    assert_eq!(store.delete_expired().await.unwrap(), SESSIONS as u64);
    let reaped = reaping.elapsed();
    assert_eq!(in_index(who.as_str()).await, 0);
    assert_eq!(store.index_len(&who).await.unwrap(), 0);
    assert_eq!(store.len().await.unwrap(), 100);
    println!("10,000 creates: {took:?}; delete_expired of them: {reaped:?}");
}

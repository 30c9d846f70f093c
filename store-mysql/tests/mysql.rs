//! What the suite cannot check: garbage written behind the store's back,
//! the layout marker and its migration, configuration errors, the operation
//! deadline, the packet limit, the plans of `delete_expired` and `list`,
//! credentials in messages, the principal index counted on the engine.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::time::Duration;

use common::{builder, fresh, store};
use mysql_async::prelude::Queryable as _;
use mysql_async::{Params, Row, Value};
use session_conformance::env::MYSQL;
use session_conformance::fault::{
    StallProxy, assert_deadline_bounds_building_and_a_stall, assert_timeout,
};
use session_conformance::fixtures::{
    assert_decode_error, create_sessions_of, expired, key, live, sample,
};
use session_core::{
    Data, Error, Principal, PrincipalIndex, Record, SessionStore, Timestamp, UpdateOutcome,
};
use session_store_mysql::{LAYOUT_VERSION, MysqlStore, REGISTRY};

async fn raw_insert(store: &MysqlStore, k: &session_core::SessionKey, data: &str) {
    let far = Timestamp::now().as_millis() + 86_400_000;
    let mut conn = store.pool().get_conn().await.unwrap();
    conn.exec_drop(
        format!(
            "INSERT INTO `{}` (`key`, data, created_at, expires_at, version) \
             VALUES (?, ?, ?, ?, ?)",
            store.namespace()
        ),
        Params::Positional(vec![
            Value::Bytes(k.as_bytes().to_vec()),
            data.into(),
            far.into(),
            far.into(),
            1_u64.into(),
        ]),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn garbage_written_directly_is_a_decode_error_naming_the_key() {
    let Some((_tables, _, store)) = fresh().await else {
        return;
    };
    for garbage in ["not json", "[1,2]", "{\"a\":", ""] {
        let k = key();
        raw_insert(&store, &k, garbage).await;
        assert_decode_error(store.load(&k).await, &k);
        assert!(
            matches!(store.all().await, Err(Error::Decode { .. })),
            "{garbage:?}"
        );
        // A create over it is a collision (the row is live), never a panic.
        assert!(
            !store
                .create(&k, &live(sample(), Duration::from_secs(60)))
                .await
                .unwrap()
        );
        store.destroy(&k).await.unwrap();
    }
}

#[tokio::test]
async fn rows_hold_binary_keys_json_text_and_milliseconds() {
    let Some((_tables, _, store)) = fresh().await else {
        return;
    };
    let k = key();
    let record = live(sample(), Duration::from_secs(600)).with_version(u64::MAX);
    store.save(&k, &record).await.unwrap();
    let mut conn = store.pool().get_conn().await.unwrap();
    let row: Row = conn
        .exec_first(
            format!(
                "SELECT HEX(`key`), data, expires_at, version FROM `{}`",
                store.namespace()
            ),
            (),
        )
        .await
        .unwrap()
        .unwrap();
    let (hex, data, expires_at, version): (String, String, i64, u64) = mysql_async::from_row(row);
    assert_eq!(hex.to_ascii_lowercase(), k.as_str());
    // JSON text of the data (key order is serde_json's: it depends on
    // features other crates of the workspace turn on), u64::MAX exact.
    assert_eq!(
        session_core::Record::decode_data(&k, data.as_bytes()).unwrap(),
        record.data
    );
    assert!(data.contains("\"big\":18446744073709551615"), "{data}");
    assert_eq!(expires_at, record.expires_at.as_millis());
    assert_eq!(version, u64::MAX);
}

#[tokio::test]
async fn versions_wrap_from_u64_max_to_zero() {
    let Some((_tables, _, store)) = fresh().await else {
        return;
    };
    let k = key();
    let record = live(sample(), Duration::from_secs(600)).with_version(u64::MAX);
    store.save(&k, &record).await.unwrap();
    assert_eq!(
        store.update(&k, &record, u64::MAX).await.unwrap(),
        UpdateOutcome::Updated
    );
    assert_eq!(store.load(&k).await.unwrap().unwrap().version, 0);
}

#[tokio::test]
async fn records_of_several_mib_round_trip_and_larger_than_the_packet_limit_are_refused() {
    let Some((_tables, _, store)) = fresh().await else {
        return;
    };
    let k = key();
    let mut data = Data::new();
    data.insert("blob".into(), "é".repeat(2 << 20).into()); // 4 MiB of UTF-8
    let record = live(data, Duration::from_secs(600));
    store.save(&k, &record).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap(), Some(record));

    let limit = store.max_allowed_packet();
    let mut data = Data::new();
    data.insert(
        "blob".into(),
        "x".repeat(usize::try_from(limit).unwrap()).into(),
    );
    let big = live(data, Duration::from_secs(600));
    let k2 = key();
    for result in [
        store.save(&k2, &big).await.map(|()| true),
        store.create(&k2, &big).await,
        store.update(&k, &big, 0).await.map(|_| true),
    ] {
        assert!(
            matches!(result, Err(Error::TooLarge { .. })),
            "{:?}",
            result.map_err(|e| session_core::report(&e))
        );
    }
    assert_eq!(store.load(&k2).await.unwrap(), None);
}

#[tokio::test]
async fn an_unknown_layout_version_is_refused_at_build() {
    let Some((_tables, _, store)) = fresh().await else {
        return;
    };
    let mut conn = store.pool().get_conn().await.unwrap();
    conn.exec_drop(
        format!("UPDATE `{REGISTRY}` SET layout = ? WHERE name = ?"),
        (LAYOUT_VERSION + 1, store.namespace()),
    )
    .await
    .unwrap();
    let url = MYSQL.url();
    let err = MysqlStore::builder()
        .with_namespace(store.namespace())
        .connect(&url)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { reason, .. } if reason.contains("layout")),
        "{err:?}"
    );
    let err = store.open_namespace(store.namespace()).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
}

#[tokio::test]
async fn a_table_that_is_not_a_session_table_is_refused_at_build() {
    let Some((tables, _, store)) = fresh().await else {
        return;
    };
    let other = tables.cleanup.unique_namespace();
    let mut conn = store.pool().get_conn().await.unwrap();
    conn.query_drop(format!("CREATE TABLE `{other}` (name TEXT)"))
        .await
        .unwrap();
    let err = store.open_namespace(&other).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
}

#[tokio::test]
async fn building_twice_on_one_table_is_fine_and_namespaces_share_the_pool() {
    let Some((tables, table, a)) = fresh().await else {
        return;
    };
    let b = store(&table).await;
    let k = key();
    a.save(&k, &live(sample(), Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(b.load(&k).await.unwrap().is_some());
    let other = tables.cleanup.unique_namespace();
    let c = a.open_namespace(&other).await.unwrap();
    assert_eq!(c.len().await.unwrap(), 0);
    assert_eq!(b.len().await.unwrap(), 1);
}

#[tokio::test]
async fn delete_expired_goes_through_the_expiry_index_in_batches() {
    let Some((_tables, ns, _)) = fresh().await else {
        return;
    };
    let store = builder(&ns)
        .with_reap_batch(7)
        .connect(&MYSQL.url())
        .await
        .unwrap();
    for _ in 0..30 {
        store
            .save(&key(), &live(sample(), Duration::from_secs(600)))
            .await
            .unwrap();
    }
    // Expired rows can only be written behind the store's back.
    let mut conn = store.pool().get_conn().await.unwrap();
    conn.exec_drop(
        format!(
            "UPDATE `{}` SET expires_at = ? ORDER BY id LIMIT 20",
            store.namespace()
        ),
        (Timestamp::now().as_millis() - 1000,),
    )
    .await
    .unwrap();
    assert_eq!(store.len().await.unwrap(), 10);
    assert_eq!(store.delete_expired().await.unwrap(), 20);
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert_eq!(store.len().await.unwrap(), 10);

    let plan: Vec<Row> = conn
        .exec(
            format!(
                "EXPLAIN DELETE FROM `{}` WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
                store.namespace()
            ),
            (0_i64, 1000_u64),
        )
        .await
        .unwrap();
    let text = format!("{plan:?}");
    let key_column = plan
        .first()
        .and_then(|row| {
            let names = row.columns_ref();
            let at = names.iter().position(|c| c.name_str() == "key")?;
            row.get::<Option<String>, usize>(at).flatten()
        })
        .unwrap_or_else(|| panic!("no key in the plan: {text}"));
    assert_eq!(key_column, "expires_at", "{text}");
}

/// `list` walks the unique `key` index in key order from the cursor on,
/// without sorting: the plans of its two statements (the same SQL as the
/// store's), with a page of 1,000 (`session_core::ALL_PAGE`) on a table of
/// 20,000 rows (a few hundred expired) after `ANALYZE TABLE`.
#[tokio::test]
async fn list_walks_the_key_index_in_key_order() {
    let Some((_tables, ns, store)) = fresh().await else {
        return;
    };
    let mut conn = store.pool().get_conn().await.unwrap();
    // 20,000 rows from a cross join of digits: portable to MySQL and
    // MariaDB (no sequence engine, no recursion limit).
    let digits = "(SELECT 0 n UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
                  UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
                  UNION ALL SELECT 8 UNION ALL SELECT 9)";
    conn.query_drop(format!(
        "INSERT INTO `{ns}` (`key`, data, created_at, expires_at, version) \
         SELECT UNHEX(SHA2(i, 256)), '{{}}', 0, \
         IF(i % 50 = 0, 1000 + i, 4000000000000 + i), 0 FROM \
         (SELECT a.n + 10 * b.n + 100 * c.n + 1000 * d.n + 10000 * e.n AS i \
          FROM {digits} a, {digits} b, {digits} c, {digits} d, {digits} e \
          WHERE e.n < 2) s"
    ))
    .await
    .unwrap();
    conn.query_drop(format!("ANALYZE TABLE `{ns}`"))
        .await
        .unwrap();
    let columns = format!("SELECT `key`, data, created_at, expires_at, version FROM `{ns}`");
    let (now, limit) = (2_000_000_000_000_i64, 1000_u64);
    let plans: [(Vec<Row>, &str); 2] = [
        (
            conn.exec(
                format!("EXPLAIN {columns} WHERE expires_at > ? ORDER BY `key` LIMIT ?"),
                (now, limit),
            )
            .await
            .unwrap(),
            "first page",
        ),
        (
            conn.exec(
                format!(
                    "EXPLAIN {columns} WHERE `key` > ? AND expires_at > ? ORDER BY `key` LIMIT ?"
                ),
                (Value::Bytes(vec![0x80; 32]), now, limit),
            )
            .await
            .unwrap(),
            "after a cursor",
        ),
    ];
    // One cell of a plan's first row, by column name.
    let cell = |plan: &[Row], name: &str| {
        plan.first().and_then(|row| {
            let at = row
                .columns_ref()
                .iter()
                .position(|c| c.name_str() == name)?;
            row.get::<Option<String>, usize>(at).flatten()
        })
    };
    for (plan, what) in &plans {
        let text = ["type", "possible_keys", "key", "rows", "Extra"]
            .map(|name| format!("{name}={}", cell(plan, name).unwrap_or_default()))
            .join(" ");
        println!("{what}: {text}");
        assert_eq!(cell(plan, "key").as_deref(), Some("key"), "{what}: {text}");
        let extra = cell(plan, "Extra").unwrap_or_default();
        assert!(!extra.contains("filesort"), "{what} sorts: {text}");
    }
    assert_eq!(
        cell(&plans[1].0, "type").as_deref(),
        Some("range"),
        "the cursor does not seek into the index"
    );
}

#[tokio::test]
async fn expired_rows_never_count_nor_block_create() {
    let Some((_tables, _, store)) = fresh().await else {
        return;
    };
    let k = key();
    // An expired record given to create stores nothing live.
    assert!(store.create(&k, &expired(sample())).await.unwrap());
    assert_eq!(store.load(&k).await.unwrap(), None);
    assert!(
        store
            .create(&k, &live(sample(), Duration::from_secs(60)))
            .await
            .unwrap()
    );
    assert!(
        !store
            .create(&k, &live(sample(), Duration::from_secs(60)))
            .await
            .unwrap()
    );
    // Touching to the same expiry again is still a touch of a live record.
    let at = store.load(&k).await.unwrap().unwrap().expires_at;
    assert!(store.touch(&k, at).await.unwrap());
    assert!(store.touch(&k, at).await.unwrap());
}

#[tokio::test]
async fn configuration_errors_are_reported_when_building() {
    let url = "mysql://root@127.0.0.1:1/test";
    for builder in [
        MysqlStore::builder().with_namespace(""),
        MysqlStore::builder().with_namespace("a`b"),
        MysqlStore::builder().with_namespace("a__b"),
        MysqlStore::builder().with_pool_size(0),
        MysqlStore::builder().with_operation_timeout(Duration::ZERO),
        MysqlStore::builder().with_reap_batch(0),
    ] {
        let err = builder.clone().connect(url).await;
        assert!(
            matches!(err, Err(Error::Config { .. })),
            "{builder:?}: {err:?}"
        );
    }
    for bad in [
        "not-a-url://hunter2secret",
        "postgres://ada:hunter2secret@127.0.0.1/x",
        "mysql://ada:hunter2secret@127.0.0.1:3306",
        "mysql://ada:hunter2secret@127.0.0.1:3306/test?pool_max=x",
    ] {
        let err = MysqlStore::connect(bad).await.unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{bad}: {err:?}");
        let shown = format!("{err:?} {err}");
        assert!(!shown.contains("hunter2secret"), "{shown}");
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
    let (proxy, url) = StallProxy::in_front_of(&MYSQL.url()).await.unwrap();
    // mysql_async moves a loopback connection to the server's Unix socket
    // when it can, which would pass the proxy by.
    let url = format!(
        "{url}{}prefer_socket=false",
        if url.contains('?') { '&' } else { '?' }
    );
    let deadline = Duration::from_millis(500);
    let build = || builder(&ns).with_operation_timeout(deadline).connect(&url);
    assert_deadline_bounds_building_and_a_stall(&proxy, "mysql", deadline, build).await;
}

#[tokio::test]
async fn an_unreachable_server_fails_at_build_without_leaking_the_password() {
    let err = MysqlStore::builder()
        .with_operation_timeout(Duration::from_secs(2))
        .connect("mysql://ada:hunter2secret@127.0.0.1:1/test")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    // The error, its Debug form and every cause in its chain.
    let chain = format!("{err:?} {}", session_core::report(&err));
    assert!(!chain.contains("hunter2secret"), "{chain}");
}

#[tokio::test]
async fn a_call_held_up_by_a_lock_fails_with_timeout_at_the_deadline() {
    let Some((_tables, table, _)) = fresh().await else {
        return;
    };
    let deadline = Duration::from_millis(500);
    let store = builder(&table)
        .with_operation_timeout(deadline)
        .connect(&MYSQL.url())
        .await
        .unwrap();
    let k = key();
    let record = live(sample(), Duration::from_secs(600));
    store.save(&k, &record).await.unwrap();
    // Another client holds the row's lock in an open transaction.
    let mut holder = store.pool().get_conn().await.unwrap();
    holder.query_drop("BEGIN").await.unwrap();
    holder
        .exec_drop(
            format!("SELECT 1 FROM `{table}` WHERE `key` = ? FOR UPDATE"),
            (Value::Bytes(k.as_bytes().to_vec()),),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_timeout(
        store.update(&k, &record, 0).await,
        "mysql",
        "update",
        deadline,
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    holder.query_drop("ROLLBACK").await.unwrap();
    drop(holder);
    // The abandoned statement may still apply once the lock is gone (a
    // write that timed out may or may not have been applied); either way
    // the store works on. (Give it the time to run once the lock is gone.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let version = store.load(&k).await.unwrap().unwrap().version;
    assert!(version <= 1, "{version}");
    assert_eq!(
        store.update(&k, &record, version).await.unwrap(),
        UpdateOutcome::Updated
    );
}

#[tokio::test]
async fn debug_shows_the_server_and_table_but_never_credentials() {
    let Some((_tables, table, store)) = fresh().await else {
        return;
    };
    let shown = format!("{store:?}");
    assert!(shown.contains(&table), "{shown}");
    assert!(shown.contains("mysql://"), "{shown}");
    assert!(!shown.contains('@'), "{shown}");
}

#[tokio::test]
async fn the_record_is_stored_as_given() {
    let Some((_tables, _, store)) = fresh().await else {
        return;
    };
    let k = key();
    let now = Timestamp::now();
    let record = Record::with_times(
        sample(),
        Timestamp::from_millis(i64::MIN + 1),
        now + Duration::from_secs(60),
    )
    .with_version(7);
    assert!(store.create(&k, &record).await.unwrap());
    assert_eq!(store.load(&k).await.unwrap(), Some(record.clone()));
    let all = store.all().await.unwrap();
    assert_eq!(all, vec![(k, record)]);
}

/// The principal of a test.
fn principal(name: &str) -> Principal {
    Principal::new(name).unwrap()
}

/// A table of layout version 1 (created and registered as that version
/// did) is migrated when a store is built on it: the `principal` column
/// and its index are added, the registry says 2, and the session in it
/// still loads (without a principal). Two builders at once both succeed
/// (the second's `ALTER`s find the column and index there). A table of
/// layout 1 that a build created but never recorded is upgraded too.
#[tokio::test]
async fn a_table_of_layout_1_is_migrated_when_a_store_is_built() {
    // A first store creates the registry.
    let Some((tables, _, first)) = fresh().await else {
        return;
    };
    let (recorded, unrecorded) = (
        tables.cleanup.unique_namespace(),
        tables.cleanup.unique_namespace(),
    );
    let mut conn = first.pool().get_conn().await.unwrap();
    let (old, far) = (key(), Timestamp::now().as_millis() + 600_000);
    for ns in [&recorded, &unrecorded] {
        // Copied from layout 1's `prepare`.
        conn.query_drop(format!(
            "CREATE TABLE `{ns}` (
                id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                `key`      BINARY(32)      NOT NULL,
                data       LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
                created_at BIGINT          NOT NULL,
                expires_at BIGINT          NOT NULL,
                version    BIGINT UNSIGNED NOT NULL,
                UNIQUE KEY `key` (`key`),
                KEY expires_at (expires_at)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        ))
        .await
        .unwrap();
        conn.exec_drop(
            format!(
                "INSERT INTO `{ns}` (`key`, data, created_at, expires_at, version) \
                 VALUES (?, '{{\"user\":\"ada\"}}', 1000, ?, 3)"
            ),
            (Value::Bytes(old.as_bytes().to_vec()), far),
        )
        .await
        .unwrap();
    }
    conn.exec_drop(
        format!("INSERT INTO `{REGISTRY}` (name, layout) VALUES (?, 1)"),
        (&recorded,),
    )
    .await
    .unwrap();

    let url = MYSQL.url();
    let (a, b, c) = tokio::join!(
        builder(&recorded).connect(&url),
        builder(&recorded).connect(&url),
        first.open_namespace(&unrecorded),
    );
    let stores = [a.unwrap(), b.unwrap(), c.unwrap()];
    for store in &stores {
        let record = store.load(&old).await.unwrap().unwrap();
        assert_eq!(record.principal, None);
        assert_eq!(
            (record.version, record.data["user"].as_str()),
            (3, Some("ada"))
        );
    }
    for ns in [&recorded, &unrecorded] {
        let layout: Option<u32> = conn
            .exec_first(
                format!("SELECT layout FROM `{REGISTRY}` WHERE name = ?"),
                (ns,),
            )
            .await
            .unwrap();
        assert_eq!((layout, LAYOUT_VERSION), (Some(2), 2), "{ns}");
        let column: Option<String> = conn
            .exec_first(
                "SELECT column_type FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = ? AND column_name = 'principal'",
                (ns,),
            )
            .await
            .unwrap();
        assert_eq!(column.as_deref(), Some("varbinary(255)"), "{ns}");
        let index: Option<String> = conn
            .exec_first(
                "SELECT column_name FROM information_schema.statistics \
                 WHERE table_schema = DATABASE() AND table_name = ? AND index_name = 'principal'",
                (ns,),
            )
            .await
            .unwrap();
        assert_eq!(index.as_deref(), Some("principal"), "{ns}");
    }

    // The migrated table indexes principals like a new one.
    let ada = principal("ada");
    let record = live(sample(), Duration::from_secs(600)).with_principal(Some(ada.clone()));
    stores[0].save(&old, &record).await.unwrap();
    assert_eq!(
        stores[1].sessions_of(&ada).await.unwrap(),
        vec![(old, record)]
    );
}

/// A principal written behind the store's back that is not one (bytes
/// that are not UTF-8, an empty or control-character name) is a decode
/// error naming the key, from `load` and `list`; a row of the principal
/// whose data is garbage fails `sessions_of` the same way, and
/// `destroy_all_of` still removes it.
#[tokio::test]
async fn a_stored_principal_that_is_not_one_is_a_decode_error_naming_the_key() {
    let Some((_tables, ns, store)) = fresh().await else {
        return;
    };
    let mut conn = store.pool().get_conn().await.unwrap();
    let ada = principal("ada");
    let record = live(sample(), Duration::from_secs(600)).with_principal(Some(ada.clone()));
    for bad in [&b"ad\xffa"[..], b"", b"ada\n"] {
        let k = key();
        store.save(&k, &record).await.unwrap();
        conn.exec_drop(
            format!("UPDATE `{ns}` SET principal = ? WHERE `key` = ?"),
            (
                Value::Bytes(bad.to_vec()),
                Value::Bytes(k.as_bytes().to_vec()),
            ),
        )
        .await
        .unwrap();
        assert_decode_error(store.load(&k).await, &k);
        assert_decode_error(store.all().await, &k);
        store.destroy(&k).await.unwrap();
    }
    let k = key();
    store.save(&k, &record).await.unwrap();
    conn.exec_drop(
        format!("UPDATE `{ns}` SET data = 'not json' WHERE `key` = ?"),
        (Value::Bytes(k.as_bytes().to_vec()),),
    )
    .await
    .unwrap();
    assert_decode_error(store.sessions_of(&ada).await, &k);
    assert_eq!(store.destroy_all_of(&ada, None).await.unwrap(), 1);
    assert_eq!(store.sessions_of(&ada).await.unwrap(), vec![]);
}

/// The check, on the engine itself: 10,000 sessions of one
/// principal (beside 100 anonymous ones) are 10,000 entries of the
/// `principal` index, counted through that index (`FORCE INDEX`) with a
/// plain connection; once they have expired `sessions_of` lists none, and
/// after `delete_expired` the count is 0.
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

    let opts = mysql_async::Opts::from_url(&MYSQL.url()).unwrap();
    let mut raw = mysql_async::Conn::new(opts).await.unwrap();
    let count = format!("SELECT COUNT(*) FROM `{ns}` FORCE INDEX (principal) WHERE principal = ?");
    let mut in_index = async |name: &str| -> u64 {
        raw.exec_first(count.as_str(), (Value::Bytes(name.as_bytes().to_vec()),))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(in_index(who.as_str()).await, SESSIONS as u64);
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
    assert_eq!(in_index(who.as_str()).await, SESSIONS as u64);
    let reaping = std::time::Instant::now();
    assert_eq!(store.delete_expired().await.unwrap(), SESSIONS as u64);
    let reaped = reaping.elapsed();
    assert_eq!(in_index(who.as_str()).await, 0);
    assert_eq!(store.index_len(&who).await.unwrap(), 0);
    assert_eq!(store.len().await.unwrap(), 100);
    raw.disconnect().await.unwrap();
    println!("10,000 creates: {took:?}; delete_expired of them: {reaped:?}");
}

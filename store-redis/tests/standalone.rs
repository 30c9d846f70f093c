//! The conformance suite and Redis-specific checks on a standalone server.

mod common;

use std::time::Duration;

use common::{Standalone, redis_url, skip_standalone, standalone};
use session_conformance::fixtures::assert_decode_error;
use session_core::{Error, Record, SessionId, SessionStore, SessionStoreExt};
use session_store_redis::RedisStore;

session_conformance::conformance_suite!(Standalone);

/// The whole suite again through `Arc<dyn SessionStore>`.
mod dynamic {
    session_conformance::conformance_suite!(session_conformance::Dyn(crate::common::Standalone));
}

/// The `PrincipalIndex` behaviours.
mod principals {
    session_conformance::principal_index_suite!(crate::common::Standalone);
}

/// The `PrincipalIndex` behaviours through `Arc<dyn PrincipalIndex>`.
mod principals_dynamic {
    session_conformance::principal_index_suite!(session_conformance::DynIndex(
        crate::common::Standalone
    ));
}

fn data() -> session_core::Data {
    let mut data = session_core::Data::new();
    data.insert("user".into(), "ada".into());
    data
}

#[allow(clippy::unwrap_used, reason = "test helper")]
async fn raw() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

#[tokio::test]
async fn garbage_written_directly_is_a_decode_error_naming_the_key() {
    if skip_standalone().is_some() {
        return;
    }
    let prefix = session_conformance::unique_namespace();
    let store = standalone(&prefix).await;
    let mut conn = raw().await;

    // A hash under a session key: something else wrote it.
    let key = SessionId::generate().unwrap().key();
    let _: () = redis::cmd("HSET")
        .arg(store.redis_key(&key))
        .arg(&["v", "1", "d", "{}"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_decode_error(store.load(&key).await, &key);
    assert!(matches!(store.all().await, Err(Error::Decode { .. })));
    for outcome in [
        store
            .update(&key, &Record::new(data(), Duration::from_secs(60)), 1)
            .await
            .map(drop),
        store
            .touch(
                &key,
                session_core::Timestamp::now() + Duration::from_secs(60),
            )
            .await
            .map(drop),
    ] {
        assert_decode_error(outcome, &key);
    }

    // A string that is not a session.
    let key3 = SessionId::generate().unwrap().key();
    let _: () = redis::cmd("SET")
        .arg(store.redis_key(&key3))
        .arg("not a session")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_decode_error(store.load(&key3).await, &key3);
    let err = store
        .update(&key3, &Record::new(data(), Duration::from_secs(60)), 0)
        .await;
    assert!(matches!(err, Err(Error::Decode { .. })), "{err:?}");

    store.clear().await.unwrap();
    assert!(store.is_empty().await.unwrap());
}

/// A stored value that is wrong in any field is `Error::Decode` naming the
/// key, from every method that reads it, and a record the store cannot
/// prove live is never returned (issue 13, defect 7): values whose header
/// `expires_at` disagrees with the key's own Redis expiry, written behind
/// the store's back. Liveness is Redis's to judge, so the header is checked
/// against the key's `PEXPIRETIME`, never this process's clock.
#[tokio::test]
async fn a_header_expiry_that_disagrees_with_the_key_expiry_is_a_decode_error_everywhere() {
    if skip_standalone().is_some() {
        return;
    }
    let prefix = session_conformance::unique_namespace();
    let store = standalone(&prefix).await;
    let mut conn = raw().await;
    let now = session_core::Timestamp::now();
    let header = |expires_at: session_core::Timestamp| {
        format!(
            "s1 00000000000000000003 {:+020} {:+020} {{\"user\":\"ada\"}}",
            now.as_millis(),
            expires_at.as_millis()
        )
    };
    let hour = Duration::from_secs(3600);
    // (header expires_at, the key's Redis expiry: None = no expiry at all)
    let cases = [
        // The header says it expired an hour ago; the key lives an hour on.
        (now - hour, Some(now + hour)),
        // The header says an hour, the key expires in two.
        (now + hour, Some(now + hour + hour)),
        // The header says an hour, the key never expires (PERSIST by hand).
        (now + hour, None),
        // One millisecond apart.
        (now + hour, Some(now + hour + Duration::from_millis(1))),
    ];
    for (expires_at, key_expiry) in cases {
        store.clear().await.unwrap();
        let key = SessionId::generate().unwrap().key();
        let value = header(expires_at);
        let mut set = redis::cmd("SET");
        set.arg(store.redis_key(&key)).arg(&value);
        if let Some(at) = key_expiry {
            set.arg("PXAT").arg(at.as_millis());
        }
        let () = set.query_async(&mut conn).await.unwrap();
        let case = format!("header {expires_at:?}, key expiry {key_expiry:?}");

        assert_decode_error(store.load(&key).await, &key);
        assert_decode_error(store.all().await, &key);
        let record = Record::new(data(), Duration::from_secs(60)).with_version(3);
        assert_decode_error(store.update(&key, &record, 3).await, &key);
        assert_decode_error(store.touch(&key, now + hour).await, &key);
        // Neither write touched the value or the key's expiry.
        let (stored, expiry): (String, i64) = redis::pipe()
            .cmd("GET")
            .arg(store.redis_key(&key))
            .cmd("PEXPIRETIME")
            .arg(store.redis_key(&key))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(stored, value, "{case}");
        assert_eq!(
            expiry,
            key_expiry.map_or(-1, session_core::Timestamp::as_millis),
            "{case}"
        );
        // The key is counted: len reads no value, and the key is there.
        assert_eq!(store.len().await.unwrap(), 1, "{case}");
    }

    // The same header with the key expiry the store gives it is a session.
    store.clear().await.unwrap();
    let key = SessionId::generate().unwrap().key();
    let _: () = redis::cmd("SET")
        .arg(store.redis_key(&key))
        .arg(header(now + hour))
        .arg("PXAT")
        .arg((now + hour).as_millis() - 1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!((loaded.version, loaded.expires_at), (3, now + hour));
    assert_eq!(store.all().await.unwrap(), vec![(key, loaded.clone())]);
    assert!(store.touch(&key, now + hour + hour).await.unwrap());
    assert_eq!(
        store.update(&key, &loaded, 3).await.unwrap(),
        session_core::UpdateOutcome::Updated
    );
    store.clear().await.unwrap();
}

/// The scripts of `update` and `touch` read the header: a header wrong in
/// any field (each with the key expiry the store would give it) is
/// `Error::Decode` naming the key from them as from `load`, and is left as
/// it was, never a `Conflict` or a touch that makes it look valid.
#[tokio::test]
async fn a_malformed_header_is_a_decode_error_from_update_and_touch_too() {
    if skip_standalone().is_some() {
        return;
    }
    let store = standalone(&session_conformance::unique_namespace()).await;
    let mut conn = raw().await;
    let expires = session_core::Timestamp::now() + Duration::from_secs(3600);
    let field = format!("{:+020}", expires.as_millis());
    let created = "+0000001764500000000";
    for header in [
        // version above u64::MAX
        format!("s1 99999999999999999999 {created} {field} "),
        // a letter in the version
        format!("s1 0000000000000000000x {created} {field} "),
        // created_at below i64::MIN
        format!("s1 00000000000000000003 -9223372036854775809 {field} "),
        // no sign
        format!("s1 00000000000000000003 00000001764500000000 {field} "),
        // another format tag
        format!("s2 00000000000000000003 {created} {field} "),
        // no space before the data
        format!("s1 00000000000000000003 {created} {field}x"),
    ] {
        let key = SessionId::generate().unwrap().key();
        let value = format!("{header}{{}}");
        let _: () = redis::cmd("SET")
            .arg(store.redis_key(&key))
            .arg(&value)
            .arg("PXAT")
            .arg(expires.as_millis() - 1)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_decode_error(store.load(&key).await, &key);
        let record = Record::new(data(), Duration::from_secs(60));
        assert_decode_error(store.update(&key, &record, 3).await, &key);
        assert_decode_error(store.touch(&key, expires).await, &key);
        let stored: String = redis::cmd("GET")
            .arg(store.redis_key(&key))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(stored, value);
    }
    store.clear().await.unwrap();
}

/// `update`'s script skips the full header check when the header matches
/// what it knows (the expected version, the new record's `created_at`, the
/// key's expiry): a header that matches in all but the expiry is still a
/// decode error left as it was, and a record whose `created_at` differs
/// from the stored one (the full check decides) is still updated.
#[tokio::test]
async fn update_checks_the_expiry_even_when_the_rest_of_the_header_matches() {
    if skip_standalone().is_some() {
        return;
    }
    let store = standalone(&session_conformance::unique_namespace()).await;
    let mut conn = raw().await;
    let key = SessionId::generate().unwrap().key();
    let record = Record::new(data(), Duration::from_secs(600)).with_version(4);
    store.save(&key, &record).await.unwrap();
    // The key's expiry moved behind the store's back: the header (same
    // version, same created_at) no longer names it.
    let moved = record.expires_at.as_millis() + 5_000;
    let _: i64 = redis::cmd("PEXPIREAT")
        .arg(store.redis_key(&key))
        .arg(moved)
        .query_async(&mut conn)
        .await
        .unwrap();
    let before: String = redis::cmd("GET")
        .arg(store.redis_key(&key))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_decode_error(store.update(&key, &record, 4).await, &key);
    assert_decode_error(store.load(&key).await, &key);
    let after: String = redis::cmd("GET")
        .arg(store.redis_key(&key))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(after, before);
    assert_eq!(pexpiretime(&mut conn, &store.redis_key(&key)).await, moved);

    // A good header with another created_at than the new record's.
    store.save(&key, &record).await.unwrap();
    let older = Record::with_times(
        data(),
        record.created_at - Duration::from_secs(60),
        record.expires_at,
    );
    assert_eq!(
        store.update(&key, &older, 4).await.unwrap(),
        session_core::UpdateOutcome::Updated
    );
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!((loaded.version, loaded.created_at), (5, older.created_at));
    assert_eq!(
        store.update(&key, &older, 4).await.unwrap(),
        session_core::UpdateOutcome::Conflict
    );
    store.destroy(&key).await.unwrap();
}

/// The key's Redis expiry, Unix ms.
#[allow(clippy::unwrap_used, reason = "test helper")]
async fn pexpiretime(conn: &mut redis::aio::MultiplexedConnection, name: &str) -> i64 {
    redis::cmd("PEXPIRETIME")
        .arg(name)
        .query_async(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn keys_live_under_the_prefix_with_the_redis_ttl() {
    if skip_standalone().is_some() {
        return;
    }
    let prefix = session_conformance::unique_namespace();
    let store = standalone(&prefix).await;
    let key = SessionId::generate().unwrap().key();
    let record = Record::new(data(), Duration::from_secs(600));
    store.save(&key, &record).await.unwrap();

    let mut conn = raw().await;
    let name = format!("{prefix}:{}", key.as_str());
    assert_eq!(store.redis_key(&key), name);
    // The Redis expiry is the last millisecond the record is live (see
    // `redis_keeps_a_key_readable_in_its_expiry_millisecond`).
    assert_eq!(
        pexpiretime(&mut conn, &name).await,
        record.expires_at.as_millis() - 1
    );

    // touch moves both the TTL and the stored expires_at.
    let later = record.expires_at + Duration::from_secs(60);
    assert!(store.touch(&key, later).await.unwrap());
    assert_eq!(pexpiretime(&mut conn, &name).await, later.as_millis() - 1);
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.expires_at, later);

    // So does update.
    let sooner = later - Duration::from_secs(120);
    let next = Record::with_times(data(), loaded.created_at, sooner);
    assert_eq!(
        store.update(&key, &next, loaded.version).await.unwrap(),
        session_core::UpdateOutcome::Updated
    );
    assert_eq!(pexpiretime(&mut conn, &name).await, sooner.as_millis() - 1);
    store.destroy(&key).await.unwrap();
}

/// Why the store gives a key the Redis expiry `expires_at - 1`: Redis hides
/// a key only once its clock is *past* the key's expiry time, while a record
/// is live only while `now < expires_at`. Checked inside one script, where
/// Redis's clock stands still, so that this is exact and cannot flake: a key
/// set to expire at the script's own millisecond is still readable, one set
/// to the millisecond before is gone. If a Redis version changes this rule,
/// this fails and `px_at` must change with it.
#[tokio::test]
async fn redis_keeps_a_key_readable_in_its_expiry_millisecond() {
    if skip_standalone().is_some() {
        return;
    }
    let name = format!("{}:probe", session_conformance::unique_namespace());
    let seen: Vec<String> = redis::Script::new(
        r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('SET', KEYS[1], 'at', 'PXAT', now)
local at = redis.call('GET', KEYS[1]) or 'gone'
redis.call('SET', KEYS[1], 'before', 'PXAT', now - 1)
local before = redis.call('GET', KEYS[1]) or 'gone'
redis.call('DEL', KEYS[1])
return {at, before}
",
    )
    .key(&name)
    .invoke_async(&mut raw().await)
    .await
    .unwrap();
    assert_eq!(seen, ["at", "gone"]);
}

#[tokio::test]
async fn prefixes_with_glob_characters_and_nested_prefixes_stay_apart() {
    if skip_standalone().is_some() {
        return;
    }
    let base = session_conformance::unique_namespace();
    let star = standalone(&format!("{base}*")).await;
    let plain = standalone(&base).await;
    let nested = standalone(&format!("{base}:inner")).await;
    let bracket = standalone(&format!("{base}[x]")).await;
    for store in [&star, &plain, &nested, &bracket] {
        let key = SessionId::generate().unwrap().key();
        store
            .save(&key, &Record::new(data(), Duration::from_secs(600)))
            .await
            .unwrap();
    }
    for store in [&star, &plain, &nested, &bracket] {
        assert_eq!(store.len().await.unwrap(), 1, "{store:?}");
        assert_eq!(store.all().await.unwrap().len(), 1, "{store:?}");
    }
    star.clear().await.unwrap();
    plain.clear().await.unwrap();
    assert_eq!(nested.len().await.unwrap(), 1);
    assert_eq!(bracket.len().await.unwrap(), 1);
    nested.clear().await.unwrap();
    bracket.clear().await.unwrap();
}

#[tokio::test]
async fn configuration_errors_are_reported_when_building() {
    for bad in ["", "has space", "tab\t"] {
        let err = RedisStore::builder()
            .with_namespace(bad)
            .connect("redis://127.0.0.1:1/")
            .await;
        assert!(matches!(err, Err(Error::Config { .. })), "{bad:?}: {err:?}");
    }
    let err = RedisStore::connect("http://not-redis/").await;
    assert!(matches!(err, Err(Error::Config { .. })), "{err:?}");
    let err = RedisStore::connect_cluster(Vec::<String>::new()).await;
    assert!(matches!(err, Err(Error::Config { .. })), "{err:?}");
    let err = RedisStore::builder()
        .with_scan_count(0)
        .connect("redis://127.0.0.1:1/")
        .await;
    assert!(matches!(err, Err(Error::Config { .. })), "{err:?}");
}

#[tokio::test]
async fn unreachable_server_is_a_backend_error_and_urls_never_leak_passwords() {
    let err = RedisStore::builder()
        .with_connection_timeout(Duration::from_millis(500))
        .with_reconnect_retries(0)
        .connect("redis://user:hunter2secret@127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(!format!("{err:?} {err}").contains("hunter2secret"));
    let err = RedisStore::connect("redis://user:hunter2secret@[bad")
        .await
        .unwrap_err();
    assert!(!format!("{err:?} {err}").contains("hunter2secret"));
}

#[tokio::test]
async fn debug_shows_the_address_but_not_the_password() {
    if skip_standalone().is_some() {
        return;
    }
    // The test server has no password; `default` with an empty password is
    // accepted, so build the URL with a user-info part that holds no secret
    // and check the store from a ready connection as well.
    let store = standalone("dbg").await;
    let shown = format!("{store:?}");
    assert!(shown.contains("dbg"), "{shown}");
    assert!(shown.contains("redis://"), "{shown}");

    let client = redis::Client::open(redis_url()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let store = RedisStore::builder()
        .with_namespace("p")
        .build(conn)
        .await
        .unwrap();
    let shown = format!("{store:?}");
    assert!(shown.contains("provided connection"), "{shown}");
}

#[tokio::test]
async fn versions_wrap_from_u64_max_to_zero() {
    if skip_standalone().is_some() {
        return;
    }
    let store = standalone(&session_conformance::unique_namespace()).await;
    let key = SessionId::generate().unwrap().key();
    let record = Record::new(data(), Duration::from_secs(600)).with_version(u64::MAX);
    store.save(&key, &record).await.unwrap();
    let outcome = store.update(&key, &record, u64::MAX).await.unwrap();
    assert_eq!(outcome, session_core::UpdateOutcome::Updated);
    assert_eq!(store.load(&key).await.unwrap().unwrap().version, 0);
    store.destroy(&key).await.unwrap();
}

#[tokio::test]
async fn sessions_are_strings_with_a_readable_header() {
    if skip_standalone().is_some() {
        return;
    }
    let store = standalone(&session_conformance::unique_namespace()).await;
    let key = SessionId::generate().unwrap().key();
    let record = Record::with_times(
        data(),
        session_core::Timestamp::from_millis(1_764_500_000_000),
        session_core::Timestamp::now() + Duration::from_secs(600),
    )
    .with_version(7);
    store.save(&key, &record).await.unwrap();
    let mut conn = raw().await;
    let value: String = redis::cmd("GET")
        .arg(store.redis_key(&key))
        .query_async(&mut conn)
        .await
        .unwrap();
    let expected = format!(
        "s1 00000000000000000007 +0000001764500000000 {:+020} {{\"user\":\"ada\"}}",
        record.expires_at.as_millis()
    );
    assert_eq!(value, expected);

    // touch rewrites the header's expires_at in place, nothing else.
    let later = record.expires_at + Duration::from_secs(60);
    assert!(store.touch(&key, later).await.unwrap());
    let value: String = redis::cmd("GET")
        .arg(store.redis_key(&key))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        value,
        expected.replace(
            &format!("{:+020}", record.expires_at.as_millis()),
            &format!("{:+020}", later.as_millis())
        )
    );
    store.destroy(&key).await.unwrap();
}

#[tokio::test]
async fn touch_into_the_past_leaves_no_key_behind() {
    if skip_standalone().is_some() {
        return;
    }
    let store = standalone(&session_conformance::unique_namespace()).await;
    let key = SessionId::generate().unwrap().key();
    store
        .save(&key, &Record::new(data(), Duration::from_secs(600)))
        .await
        .unwrap();
    let past = session_core::Timestamp::now() - Duration::from_secs(5);
    assert!(store.touch(&key, past).await.unwrap());
    let mut conn = raw().await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(store.redis_key(&key))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    assert!(!store.touch(&key, past).await.unwrap());
    assert_eq!(store.len().await.unwrap(), 0);
}

/// The address of the test server, for a proxy in front of it.
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helper: a URL the proxy cannot serve fails the test"
)]
async fn server_addr() -> std::net::SocketAddr {
    use redis::IntoConnectionInfo as _;
    let info = redis_url().into_connection_info().unwrap();
    let (host, port) = match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
        other => {
            panic!("a TCP proxy cannot stand in front of {other:?}: SESSION_REDIS_URL must be TCP")
        }
    };
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap()
}

#[tokio::test]
async fn a_stalled_server_is_a_timeout_at_the_operation_deadline_and_the_store_recovers() {
    if skip_standalone().is_some() {
        return;
    }
    let proxy = session_conformance::fault::StallProxy::start(server_addr().await)
        .await
        .unwrap();
    let deadline = Duration::from_millis(500);
    let url = format!("redis://{}/", proxy.addr());
    let store = RedisStore::builder()
        .with_namespace(format!("stall:{}", session_conformance::unique_namespace()))
        .with_operation_timeout(deadline)
        .connect(&url)
        .await
        .unwrap_or_else(|e| session_conformance::env::REDIS.unreachable(&url, &e));
    assert_eq!(store.operation_timeout(), deadline);
    // The response timeout (5 s by default) is ten times the deadline: the
    // deadline is what ends each call on the stalled server.
    session_conformance::fault::assert_deadline_bounds_a_stall(&store, &proxy, "redis", deadline)
        .await;
    store.clear().await.unwrap();
}

#[tokio::test]
async fn a_server_gone_for_good_fails_each_call_by_the_deadline_not_the_reconnect_budget() {
    if skip_standalone().is_some() {
        return;
    }
    let proxy = session_conformance::fault::StallProxy::start(server_addr().await)
        .await
        .unwrap();
    let deadline = Duration::from_millis(800);
    let url = format!("redis://{}/", proxy.addr());
    let store = RedisStore::builder()
        .with_namespace(format!("gone:{}", session_conformance::unique_namespace()))
        .with_operation_timeout(deadline)
        .connect(&url)
        .await
        .unwrap_or_else(|e| session_conformance::env::REDIS.unreachable(&url, &e));
    let key = SessionId::generate().unwrap().key();
    assert_eq!(store.load(&key).await.unwrap(), None);
    // Closing the proxy closes the connection and refuses new ones: the
    // driver reconnects with backoff (about 10 s by default).
    drop(proxy);
    let mut timeouts = 0;
    for _ in 0..3 {
        let started = tokio::time::Instant::now();
        let load = store.load(&key).await;
        let waited = started.elapsed();
        assert!(
            matches!(load, Err(Error::Timeout { .. } | Error::Backend { .. })),
            "{load:?}"
        );
        // A bound, not a speed figure: without the deadline each call
        // waited for the whole reconnect budget (~9.5 s).
        assert!(
            waited < deadline + Duration::from_secs(3),
            "a call waited {waited:?} with a deadline of {deadline:?}"
        );
        timeouts += usize::from(matches!(load, Err(Error::Timeout { .. })));
    }
    // The first call may fail at once on the broken connection; the next
    // ones wait for the reconnect, and the deadline is what ends them.
    assert!(timeouts >= 2, "{timeouts} of 3 calls ended at the deadline");
}

/// The keys a `list` cursor carries for the next pages (its fourth field,
/// comma-separated; see the crate documentation).
fn carried(cursor: &session_core::Cursor) -> usize {
    let keys = cursor.as_str().splitn(4, ':').nth(3).unwrap_or("");
    if keys.is_empty() {
        0
    } else {
        keys.split(',').count()
    }
}

/// `list` on a shared server, where the namespace is a sliver of the
/// keyspace and one `SCAN` batch returns more of its keys than a tiny page
/// holds: the keys beyond the page ride in the cursor, so every page stays
/// within its limit, nothing is skipped or listed twice, and the keys
/// around the namespace (another prefix, keys under the prefix that are no
/// session key) are never listed.
#[tokio::test]
async fn list_pages_stay_within_the_limit_when_a_scan_returns_more() {
    if skip_standalone().is_some() {
        return;
    }
    let prefix = session_conformance::unique_namespace();
    let store = RedisStore::builder()
        .with_namespace(&prefix)
        .with_reconnect_retries(2)
        .with_scan_count(1_000)
        .connect(&redis_url())
        .await
        .unwrap();
    let mut conn = raw().await;
    let mut unrelated = Vec::new();
    for i in 0..300 {
        unrelated.push(format!("{prefix}-other:{i}"));
    }
    unrelated.push(format!("{prefix}:not-a-session-key"));
    unrelated.push(format!(
        "{prefix}:sub:{}",
        SessionId::generate().unwrap().key().as_str()
    ));
    for name in &unrelated {
        let () = redis::cmd("SET")
            .arg(name)
            .arg("x")
            .arg("EX")
            .arg(600)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let mut stored = std::collections::BTreeMap::new();
    for i in 0..40 {
        let key = SessionId::generate().unwrap().key();
        let mut data = data();
        data.insert("i".into(), i.into());
        let record = Record::new(data, Duration::from_secs(600));
        store.save(&key, &record).await.unwrap();
        stored.insert(key, store.load(&key).await.unwrap().unwrap());
    }

    for limit in [1, 3] {
        let size = std::num::NonZeroUsize::new(limit).unwrap();
        let mut listed = std::collections::BTreeMap::new();
        let (mut cursor, mut most_carried, mut calls) = (None, 0, 0);
        loop {
            calls += 1;
            assert!(calls < 10_000, "limit {limit}: the listing does not end");
            let page = store.list(cursor.as_ref(), size).await.unwrap();
            assert!(
                page.records.len() <= limit,
                "limit {limit}: a page of {}",
                page.records.len()
            );
            for (key, record) in page.records {
                assert!(
                    listed.insert(key, record).is_none(),
                    "limit {limit}: {key} listed twice"
                );
            }
            match page.next {
                Some(next) => {
                    most_carried = most_carried.max(carried(&next));
                    cursor = Some(next);
                }
                None => break,
            }
        }
        assert_eq!(listed, stored, "limit {limit}");
        // One SCAN of COUNT 1000 saw more of the namespace than one page:
        // the carry-over path was taken.
        assert!(
            most_carried >= 2,
            "limit {limit}: no cursor carried keys (at most {most_carried})"
        );
    }

    store.clear().await.unwrap();
    let mut unlink = redis::cmd("UNLINK");
    for name in &unrelated {
        unlink.arg(name);
    }
    let _: i64 = unlink.query_async(&mut conn).await.unwrap();
}

/// A cursor naming a node the server does not have (a standalone server is
/// node 0 only), or badly formed in any field, is `Error::InvalidCursor`;
/// the cursor the store hands out works.
#[tokio::test]
async fn list_refuses_a_cursor_with_a_node_out_of_range() {
    if skip_standalone().is_some() {
        return;
    }
    let store = standalone(&session_conformance::unique_namespace()).await;
    let key = SessionId::generate().unwrap().key();
    store
        .save(&key, &Record::new(data(), Duration::from_secs(600)))
        .await
        .unwrap();
    let hex = key.as_str();
    let limit = std::num::NonZeroUsize::new(10).unwrap();
    for text in [
        "redis:1:0:".to_owned(),
        "redis:2:0:".to_owned(),
        "redis:1:5:".to_owned(),
        format!("redis:2:0:{hex}"),
        "redis:18446744073709551615:0:".to_owned(),
        "redis:0:zero:".to_owned(),
        format!("redis:0:0:{}", hex.to_uppercase()),
        format!("redis:0:0:{}", &hex[..63]),
        format!("redis:0:0:{hex},"),
    ] {
        let cursor = session_core::Cursor::new(text.clone());
        match store.list(Some(&cursor), limit).await {
            Err(Error::InvalidCursor { .. }) => {}
            other => panic!("{text}: {other:?}"),
        }
    }
    // Past the last node with keys still to read: valid, and reads them.
    let cursor = session_core::Cursor::new(format!("redis:1:0:{hex}"));
    let page = store.list(Some(&cursor), limit).await.unwrap();
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].0, key);
    assert_eq!(page.next, None);
    store.clear().await.unwrap();
}

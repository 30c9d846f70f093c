//! The principal index on Redis, checked on the engine itself (the raw
//! sorted sets), on a standalone server and on a Redis Cluster.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on error")]

mod common;

use std::time::{Duration, Instant};

use common::{cluster, cluster_nodes, redis_url, skip_cluster, skip_standalone, standalone};
use redis::aio::ConnectionLike;
use session_core::{
    Principal, PrincipalIndex, Record, SessionId, SessionKey, SessionStore, SessionStoreExt,
    Timestamp, UpdateOutcome,
};
use session_store_redis::RedisStore;
use tokio::task::JoinSet;

/// How many sessions the size test writes for one principal.
const MANY: usize = 10_000;

/// How many tasks write them.
const WRITERS: usize = 64;

async fn raw_standalone() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

async fn raw_cluster() -> redis::cluster_async::ClusterConnection {
    let client = redis::cluster::ClusterClient::new(cluster_nodes()).unwrap();
    client.get_async_connection().await.unwrap()
}

fn principal(name: &str) -> Principal {
    Principal::new(name).unwrap()
}

fn owned(name: &str, ttl: Duration) -> Record {
    let mut data = session_core::Data::new();
    data.insert("user".into(), name.into());
    Record::new(data, ttl).with_principal(Some(principal(name)))
}

async fn zcard(raw: &mut impl ConnectionLike, name: &str) -> u64 {
    redis::cmd("ZCARD")
        .arg(name)
        .query_async(raw)
        .await
        .unwrap()
}

async fn exists(raw: &mut impl ConnectionLike, name: &str) -> bool {
    let n: i64 = redis::cmd("EXISTS")
        .arg(name)
        .query_async(raw)
        .await
        .unwrap();
    n == 1
}

async fn zscore(raw: &mut impl ConnectionLike, name: &str, key: &SessionKey) -> Option<f64> {
    redis::cmd("ZSCORE")
        .arg(name)
        .arg(key.as_str())
        .query_async(raw)
        .await
        .unwrap()
}

async fn get(raw: &mut impl ConnectionLike, name: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(name).query_async(raw).await.unwrap()
}

/// `MANY` sessions of one principal expiring in `ttl`, written by
/// `WRITERS` tasks at once: their keys.
async fn create_many(store: &RedisStore, who: &str, ttl: Duration) -> Vec<SessionKey> {
    let mut tasks = JoinSet::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        let record = owned(who, ttl);
        tasks.spawn(async move {
            let mut keys = Vec::with_capacity(MANY / WRITERS + 1);
            for _ in 0..MANY / WRITERS {
                let key = SessionId::generate().unwrap().key();
                assert!(store.create(&key, &record).await.unwrap());
                keys.push(key);
            }
            keys
        });
    }
    let mut keys = Vec::with_capacity(MANY);
    while let Some(done) = tasks.join_next().await {
        keys.extend(done.unwrap());
    }
    // The rest of MANY / WRITERS.
    let record = owned(who, ttl);
    while keys.len() < MANY {
        let key = SessionId::generate().unwrap().key();
        assert!(store.create(&key, &record).await.unwrap());
        keys.push(key);
    }
    keys
}

/// The issue's size check: 10,000 sessions of one principal put exactly
/// 10,000 entries in its sorted set; once they have expired, one
/// `delete_expired` leaves no entry and no key behind (counted with the raw
/// client, not only through `index_len`).
async fn ten_thousand_sessions_leave_no_index_behind(
    store: RedisStore,
    mut raw: impl ConnectionLike + Send,
    what: &str,
) {
    let who = "user:ten-thousand";
    let p = principal(who);
    let name = store.index_key(&p);
    let ttl = Duration::from_secs(3);
    let started = Instant::now();
    let keys = create_many(&store, who, ttl).await;
    let written = started.elapsed();
    assert_eq!(keys.len(), MANY);
    assert_eq!(zcard(&mut raw, &name).await, MANY as u64);
    assert_eq!(store.index_len(&p).await.unwrap(), MANY as u64);
    // Anonymous traffic next to it adds nothing to any index.
    let anonymous = SessionId::generate().unwrap().key();
    store
        .create(&anonymous, &Record::new(session_core::Data::new(), ttl))
        .await
        .unwrap();
    assert_eq!(zcard(&mut raw, &name).await, MANY as u64);

    // Every session expires by Redis's clock (bounded wait: SCAN never
    // returns an expired key, so `len` is 0 once all have).
    let deadline = Instant::now() + ttl + Duration::from_secs(30);
    while store.len().await.unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "sessions still live 30 s after their TTL"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reaping = Instant::now();
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    let reaped = reaping.elapsed();
    assert_eq!(zcard(&mut raw, &name).await, 0);
    assert!(
        !exists(&mut raw, &name).await,
        "the empty index key is gone"
    );
    assert_eq!(store.index_len(&p).await.unwrap(), 0);
    assert!(store.sessions_of(&p).await.unwrap().is_empty());
    println!(
        "{what}: {MANY} sessions of one principal written in {written:?} ({WRITERS} tasks), \
         their index reaped by delete_expired in {reaped:?}"
    );
    store.clear().await.unwrap();
}

#[tokio::test]
async fn ten_thousand_sessions_of_one_principal_leave_no_index_behind_standalone() {
    if skip_standalone().is_some() {
        return;
    }
    let store = standalone(&session_conformance::unique_namespace()).await;
    ten_thousand_sessions_leave_no_index_behind(store, raw_standalone().await, "standalone").await;
}

#[tokio::test]
async fn ten_thousand_sessions_of_one_principal_leave_no_index_behind_on_cluster() {
    if skip_cluster().is_some() {
        return;
    }
    let store = cluster(&session_conformance::unique_namespace()).await;
    ten_thousand_sessions_leave_no_index_behind(store, raw_cluster().await, "cluster").await;
}

/// The layout: a session with a principal is an `s2` value (the principal
/// between the header and the data), its index a sorted set whose score is
/// the announced expiry (+ 1 ms: a write announces twice, and the second
/// announcement of the same expiry moves the score up by one); a session
/// without one is the `s1` value of before and has no index at all.
#[tokio::test]
async fn a_principal_is_stored_in_the_value_and_its_index_holds_the_expiry() {
    if skip_standalone().is_some() {
        return;
    }
    let prefix = session_conformance::unique_namespace();
    let store = standalone(&prefix).await;
    let mut raw = raw_standalone().await;
    let ada = principal("ada");
    let key = SessionId::generate().unwrap().key();
    let record = owned("ada", Duration::from_secs(600));
    assert!(store.create(&key, &record).await.unwrap());
    let value = get(&mut raw, &store.redis_key(&key)).await.unwrap();
    let text = String::from_utf8(value).unwrap();
    assert!(text.starts_with("s2 00000000000000000000 "), "{text}");
    assert!(text.ends_with(r#" 003 ada{"user":"ada"}"#), "{text}");
    let name = store.index_key(&ada);
    assert_eq!(
        name.len(),
        prefix.len() + ":principal:".len() + 64 + ":sessions".len()
    );
    assert_eq!(
        zscore(&mut raw, &name, &key).await,
        Some((record.expires_at.as_millis() + 1) as f64)
    );
    assert_eq!(store.load(&key).await.unwrap(), Some(record.clone()));

    // touch raises the entry to the new expiry (and keeps the principal).
    let later = record.expires_at + Duration::from_secs(60);
    assert!(store.touch(&key, later).await.unwrap());
    assert_eq!(
        zscore(&mut raw, &name, &key).await,
        Some(later.as_millis() as f64)
    );
    assert_eq!(
        store.load(&key).await.unwrap().unwrap().principal,
        Some(ada)
    );

    // Anonymous sessions: the `s1` value, no index key anywhere.
    let anonymous = SessionId::generate().unwrap().key();
    store
        .save(
            &anonymous,
            &Record::new(session_core::Data::new(), Duration::from_secs(600)),
        )
        .await
        .unwrap();
    let value = get(&mut raw, &store.redis_key(&anonymous)).await.unwrap();
    assert!(value.starts_with(b"s1 "));
    let (_, names): (String, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("{prefix}:principal:*"))
        .arg("COUNT")
        .arg(1_000_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(names, [name]);
    store.clear().await.unwrap();
}

/// Every announcement changes the entry's score, even a write of the same
/// expiry: this is what lets a reader remove a stale entry only if no write
/// announced it since it was read (a write racing with the removal keeps
/// its entry).
#[tokio::test]
async fn every_write_moves_the_entry_score_up() {
    if skip_standalone().is_some() {
        return;
    }
    let store = standalone(&session_conformance::unique_namespace()).await;
    let mut raw = raw_standalone().await;
    let key = SessionId::generate().unwrap().key();
    let record = owned("bob", Duration::from_secs(600));
    let name = store.index_key(&principal("bob"));
    store.save(&key, &record).await.unwrap();
    let mut last = zscore(&mut raw, &name, &key).await.unwrap();
    assert!(last >= record.expires_at.as_millis() as f64);
    for version in 0..3 {
        let outcome = store.update(&key, &record, version).await.unwrap();
        assert_eq!(outcome, UpdateOutcome::Updated);
        let score = zscore(&mut raw, &name, &key).await.unwrap();
        assert!(score > last, "{score} after {last}");
        last = score;
    }
    store.clear().await.unwrap();
    assert!(!exists(&mut raw, &name).await, "clear removes the index");
}

/// A value of the layout before principals (`s1`, written by an older
/// version of the store) is a session without principal: loaded, updated,
/// touched and listed as before; given a principal by an update, it becomes
/// an `s2` value and is indexed.
#[tokio::test]
async fn a_value_of_the_layout_before_principals_is_a_session_without_one() {
    if skip_standalone().is_some() {
        return;
    }
    let store = standalone(&session_conformance::unique_namespace()).await;
    let mut raw = raw_standalone().await;
    let key = SessionId::generate().unwrap().key();
    let now = Timestamp::now();
    let expires_at = now + Duration::from_secs(600);
    let old = format!(
        "s1 00000000000000000004 {:+020} {:+020} {{\"user\":\"ada\"}}",
        now.as_millis(),
        expires_at.as_millis()
    );
    let () = redis::cmd("SET")
        .arg(store.redis_key(&key))
        .arg(&old)
        .arg("PXAT")
        .arg(expires_at.as_millis() - 1)
        .query_async(&mut raw)
        .await
        .unwrap();
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.principal, None);
    assert_eq!(loaded.version, 4);
    assert_eq!(loaded.data["user"], "ada");
    assert!(
        store
            .touch(&key, expires_at + Duration::from_secs(1))
            .await
            .unwrap()
    );
    assert_eq!(store.all().await.unwrap().len(), 1);

    let ada = principal("ada");
    let mine = loaded.clone().with_principal(Some(ada.clone()));
    assert_eq!(
        store.update(&key, &mine, 4).await.unwrap(),
        UpdateOutcome::Updated
    );
    let value = get(&mut raw, &store.redis_key(&key)).await.unwrap();
    assert!(value.starts_with(b"s2 00000000000000000005 "));
    let listed = store.sessions_of(&ada).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, key);
    // And back: an update without principal writes `s1` again, and the
    // entry left under ada goes at her next listing.
    assert_eq!(
        store.update(&key, &loaded, 5).await.unwrap(),
        UpdateOutcome::Updated
    );
    assert!(
        get(&mut raw, &store.redis_key(&key))
            .await
            .unwrap()
            .starts_with(b"s1 ")
    );
    assert_eq!(store.index_len(&ada).await.unwrap(), 1);
    assert!(store.sessions_of(&ada).await.unwrap().is_empty());
    assert_eq!(store.index_len(&ada).await.unwrap(), 0);
    store.clear().await.unwrap();
}

/// `destroy_all_of` deletes a session only if it still names the principal
/// when it gets to it: one moved to another principal is left alone.
#[tokio::test]
async fn destroy_all_of_leaves_a_session_that_moved_to_another_principal() {
    if skip_standalone().is_some() {
        return;
    }
    let store = standalone(&session_conformance::unique_namespace()).await;
    let (ada, bob) = (principal("ada"), principal("bob"));
    let moved = SessionId::generate().unwrap().key();
    let stays = SessionId::generate().unwrap().key();
    let record = owned("ada", Duration::from_secs(600));
    assert!(store.create(&moved, &record).await.unwrap());
    assert!(store.create(&stays, &record).await.unwrap());
    let bobs = record.clone().with_principal(Some(bob.clone()));
    assert_eq!(
        store.update(&moved, &bobs, 0).await.unwrap(),
        UpdateOutcome::Updated
    );
    assert_eq!(store.destroy_all_of(&ada, None).await.unwrap(), 1);
    assert_eq!(store.load(&stays).await.unwrap(), None);
    assert_eq!(
        store.load(&moved).await.unwrap().unwrap().principal,
        Some(bob.clone())
    );
    assert_eq!(store.index_len(&ada).await.unwrap(), 0);
    assert_eq!(store.sessions_of(&bob).await.unwrap().len(), 1);
    store.clear().await.unwrap();
}

/// Index keys are no sessions: `len`, `list` and `clear` of this namespace
/// and of a namespace nested under its index names never mistake one for a
/// session, and `clear` removes this namespace's indexes only.
#[tokio::test]
async fn index_keys_are_never_taken_for_sessions() {
    if skip_standalone().is_some() {
        return;
    }
    let prefix = session_conformance::unique_namespace();
    let store = standalone(&prefix).await;
    let nested = standalone(&format!("{prefix}:principal")).await;
    let mut raw = raw_standalone().await;
    let ada = principal("ada");
    for s in [&store, &nested] {
        let key = SessionId::generate().unwrap().key();
        assert!(
            s.create(&key, &owned("ada", Duration::from_secs(600)))
                .await
                .unwrap()
        );
    }
    for s in [&store, &nested] {
        assert_eq!(s.len().await.unwrap(), 1);
        assert_eq!(s.all().await.unwrap().len(), 1);
        assert_eq!(s.sessions_of(&ada).await.unwrap().len(), 1);
    }
    nested.clear().await.unwrap();
    assert!(nested.is_empty().await.unwrap());
    assert!(!exists(&mut raw, &nested.index_key(&ada)).await);
    assert!(exists(&mut raw, &store.index_key(&ada)).await);
    assert_eq!(store.len().await.unwrap(), 1);
    store.clear().await.unwrap();
    assert!(!exists(&mut raw, &store.index_key(&ada)).await);
}

/// Something else than a sorted set under an index's name (written behind
/// the store's back) fails the writes of that principal's sessions with
/// `Error::Decode` naming the session, and its listing with an error.
#[tokio::test]
async fn an_index_of_another_type_is_an_error() {
    if skip_standalone().is_some() {
        return;
    }
    let store = standalone(&session_conformance::unique_namespace()).await;
    let mut raw = raw_standalone().await;
    let eve = principal("eve");
    let () = redis::cmd("SET")
        .arg(store.index_key(&eve))
        .arg("not an index")
        .query_async(&mut raw)
        .await
        .unwrap();
    let key = SessionId::generate().unwrap().key();
    session_conformance::fixtures::assert_decode_error(
        store
            .save(&key, &owned("eve", Duration::from_secs(600)))
            .await,
        &key,
    );
    assert!(store.sessions_of(&eve).await.is_err());
    store.clear().await.unwrap();
    assert!(!exists(&mut raw, &store.index_key(&eve)).await);
}

/// The calls of each command since the last `CONFIG RESETSTAT`, from
/// `INFO commandstats` (`cmdstat_set:calls=2,...`).
async fn command_calls(raw: &mut impl ConnectionLike) -> std::collections::BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(raw)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .filter(|(name, _)| !name.starts_with("config") && name != "info")
        .collect()
}

/// Anonymous traffic pays nothing for the index: on a private server (so
/// that nobody else's commands are counted), every method on a session
/// without principal sends exactly the commands it sent before principals
/// existed, and no index command at all; a session with a principal sends
/// its two announcements (`EVAL`) per write and one per `touch`.
#[tokio::test]
async fn a_session_without_principal_sends_no_index_command() {
    if skip_standalone().is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = common::server::RedisProcess::start(&dir.path().join("count"), &[]).await;
    let store = RedisStore::builder()
        .with_namespace("count")
        .connect(&server.url())
        .await
        .unwrap();
    let mut raw = common::server::node_connection(server.port())
        .await
        .unwrap();
    let ttl = Duration::from_secs(600);
    let anonymous = Record::new(session_core::Data::new(), ttl);
    // Load both scripts first: the counts below are the steady state.
    let warm = SessionId::generate().unwrap().key();
    assert!(store.create(&warm, &anonymous).await.unwrap());
    assert_eq!(
        store.update(&warm, &anonymous, 0).await.unwrap(),
        UpdateOutcome::Updated
    );
    assert!(store.touch(&warm, anonymous.expires_at).await.unwrap());

    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut raw)
        .await
        .unwrap();
    let key = SessionId::generate().unwrap().key();
    assert!(store.create(&key, &anonymous).await.unwrap());
    assert!(store.load(&key).await.unwrap().is_some());
    assert_eq!(
        store.update(&key, &anonymous, 0).await.unwrap(),
        UpdateOutcome::Updated
    );
    store.save(&key, &anonymous).await.unwrap();
    assert!(store.touch(&key, anonymous.expires_at).await.unwrap());
    store.destroy(&key).await.unwrap();
    // What the scripts call is counted too: one `GETRANGE` of the header
    // each (an `s1` value costs no principal read), `PEXPIRETIME`, and
    // their writes. A `load` whose two answers agree needs no transaction.
    let expected = [
        ("evalsha", 2),
        ("get", 1),
        ("getrange", 2),
        ("pexpireat", 1),
        ("pexpiretime", 3),
        ("set", 3),
        ("setrange", 1),
        ("unlink", 1),
    ];
    assert_eq!(
        command_calls(&mut raw).await,
        expected.map(|(name, n)| (name.to_owned(), n)).into(),
        "an anonymous create, load, update, save, touch and destroy"
    );

    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut raw)
        .await
        .unwrap();
    let owned = owned("ada", ttl);
    assert!(store.create(&key, &owned).await.unwrap());
    assert!(store.touch(&key, owned.expires_at).await.unwrap());
    let calls = command_calls(&mut raw).await;
    assert_eq!(calls.get("eval"), Some(&3), "{calls:?}");
    assert_eq!(calls.get("set"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("evalsha"), Some(&1), "{calls:?}");
}

/// Listings racing with writes that move sessions away from a principal
/// and back never lose a session from the index: each writer ends with its
/// session under the principal, at the same expiry every time (so a write
/// that did not change the score could not be told from no write), and
/// afterwards the principal lists every one of them.
async fn racing_listings_never_drop_a_session_written_back(store: RedisStore) {
    const SESSIONS: usize = 16;
    const ROUNDS: u64 = 40;
    let who = principal("racer");
    let expires_at = Timestamp::now() + Duration::from_secs(600);
    let theirs = Record::with_times(session_core::Data::new(), Timestamp::now(), expires_at)
        .with_principal(Some(who.clone()));
    let nobodys = theirs.clone().with_principal(None);
    let mut keys = Vec::new();
    let mut writers = JoinSet::new();
    for _ in 0..SESSIONS {
        let key = SessionId::generate().unwrap().key();
        assert!(store.create(&key, &theirs).await.unwrap());
        keys.push(key);
        let (store, theirs, nobodys) = (store.clone(), theirs.clone(), nobodys.clone());
        writers.spawn(async move {
            for round in 0..ROUNDS {
                for (i, record) in [&nobodys, &theirs].into_iter().enumerate() {
                    let version = 2 * round + i as u64;
                    let outcome = store.update(&key, record, version).await.unwrap();
                    assert_eq!(outcome, UpdateOutcome::Updated);
                }
            }
        });
    }
    // Two listers, each removing what it finds stale, until the writers are
    // done.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut listers = JoinSet::new();
    for _ in 0..2 {
        let (store, who, stop) = (store.clone(), who.clone(), stop.clone());
        listers.spawn(async move {
            let mut listings = 0_u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.sessions_of(&who).await.unwrap();
                listings += 1;
            }
            listings
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while let Some(done) = listers.join_next().await {
        assert!(done.unwrap() > 0, "a lister never listed");
    }
    let listed: std::collections::BTreeSet<_> = store
        .sessions_of(&who)
        .await
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(listed, keys.iter().copied().collect());
    store.clear().await.unwrap();
}

#[tokio::test]
async fn racing_listings_never_drop_a_session_written_back_standalone() {
    if skip_standalone().is_some() {
        return;
    }
    let store = standalone(&session_conformance::unique_namespace()).await;
    racing_listings_never_drop_a_session_written_back(store).await;
}

#[tokio::test]
async fn racing_listings_never_drop_a_session_written_back_on_cluster() {
    if skip_cluster().is_some() {
        return;
    }
    let store = cluster(&session_conformance::unique_namespace()).await;
    racing_listings_never_drop_a_session_written_back(store).await;
}

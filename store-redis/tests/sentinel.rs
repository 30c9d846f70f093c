//! Redis behind Sentinel, on a private deployment per test: a primary, a
//! replica and three sentinels (`redis-server --sentinel`) on free loopback
//! ports in a temp dir, killed by pid when the test ends. The whole
//! conformance suite passes through `connect_sentinel`, and a primary
//! `SIGKILL`ed is followed by the same store once the sentinels promote
//! the replica.
//!
//! Needs `redis-server` installed (a missing one fails with a message
//! saying how to install it); `SESSION_SKIP_REDIS=1` skips it.
#![allow(
    clippy::panic,
    reason = "test binary: its helpers fail the test with a message"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::recovery::{DEADLINE, RECOVERY_BOUND, builder, new_key, record, save_until_served};
use common::server::{RedisProcess, node_connection};
use session_conformance::env::REDIS;
use session_conformance::fault::Stall as _;
use session_conformance::{Capabilities, Dyn, StoreFactory, run_all, run_all_principal};
use session_core::{Error, SessionStore, async_trait};
use session_store_redis::RedisStore;
use tokio::time::Instant;

/// The name the sentinels monitor the primary under.
const SERVICE: &str = "sessions";

/// A private primary, replica and three sentinels.
struct Deployment {
    primary: RedisProcess,
    replica: RedisProcess,
    sentinels: Vec<RedisProcess>,
    _dir: tempfile::TempDir,
}

impl Deployment {
    /// Start it and wait until the replica is in sync and every sentinel
    /// knows the replica and the two other sentinels (before that, a
    /// failover cannot be agreed on).
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let primary = RedisProcess::start(&dir.path().join("primary"), &[]).await;
        let port = primary.port().to_string();
        let replica = RedisProcess::start(
            &dir.path().join("replica"),
            &["--replicaof", "127.0.0.1", &port],
        )
        .await;
        let mut sentinels = Vec::new();
        for i in 0..3 {
            sentinels.push(
                RedisProcess::start_sentinel(
                    &dir.path().join(format!("sentinel-{i}")),
                    SERVICE,
                    primary.port(),
                    Duration::from_millis(1000),
                )
                .await,
            );
        }
        let deployment = Self {
            primary,
            replica,
            sentinels,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(60);
        while !deployment.ready().await {
            assert!(
                Instant::now() < until,
                "the private Sentinel deployment was not ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        deployment
    }

    async fn ready(&self) -> bool {
        let Ok(mut replica) = node_connection(self.replica.port()).await else {
            return false;
        };
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut replica)
            .await
            .unwrap_or_default();
        if !info.contains("master_link_status:up") {
            return false;
        }
        for sentinel in &self.sentinels {
            let Ok(mut conn) = node_connection(sentinel.port()).await else {
                return false;
            };
            let mut count = async |what: &str| -> usize {
                redis::cmd("SENTINEL")
                    .arg(what)
                    .arg(SERVICE)
                    .query_async::<Vec<redis::Value>>(&mut conn)
                    .await
                    .map_or(0, |v| v.len())
            };
            if count("REPLICAS").await < 1 || count("SENTINELS").await < 2 {
                return false;
            }
        }
        true
    }

    fn urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisProcess::url).collect()
    }
}

/// Save each key through `store` and check that it is on `promoted` (the
/// former replica): the store follows the new primary.
async fn saves_reach(
    store: &RedisStore,
    keys: &[session_core::SessionKey],
    promoted: &mut redis::aio::MultiplexedConnection,
) {
    for key in keys {
        store
            .save(key, &record(7))
            .await
            .unwrap_or_else(|e| panic!("save after the failover: {e:?}"));
        let exists: i64 = redis::cmd("EXISTS")
            .arg(store.redis_key(key))
            .query_async(promoted)
            .await
            .unwrap_or_else(|e| panic!("EXISTS: {e}"));
        assert_eq!(
            exists, 1,
            "the save went elsewhere than the promoted replica"
        );
    }
}

/// Stores on the deployment through its sentinels.
struct Sentinel {
    urls: Vec<String>,
}

#[async_trait]
impl StoreFactory for Sentinel {
    type Store = RedisStore;

    async fn open(&self, namespace: &str) -> RedisStore {
        RedisStore::builder()
            .with_namespace(namespace)
            .connect_sentinel(&self.urls, SERVICE)
            .await
            .unwrap_or_else(|e| panic!("connect through the private sentinels: {e:?}"))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true).expires_natively(true)
    }

    fn skip_reason(&self) -> Option<String> {
        REDIS.skip_reason()
    }
}

/// Every behaviour of the suite, through `connect_sentinel`, directly and
/// through `Arc<dyn SessionStore>`, and the principal index's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_through_sentinel() {
    if let Some(reason) = REDIS.skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let deployment = Deployment::start().await;
    let mut outcomes = run_all(Arc::new(Sentinel {
        urls: deployment.urls(),
    }))
    .await;
    outcomes.extend(
        run_all(Arc::new(Dyn(Sentinel {
            urls: deployment.urls(),
        })))
        .await,
    );
    // The principal index is the same code as on a standalone server.
    outcomes.extend(
        run_all_principal(Arc::new(Sentinel {
            urls: deployment.urls(),
        }))
        .await,
    );
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed()).collect();
    assert!(
        failed.is_empty(),
        "behaviours failed through Sentinel: {failed:#?}"
    );
    eprintln!("sentinel: {} behaviours passed", outcomes.len());
}

/// The primary `SIGKILL`ed: every call returns within the deadline, and
/// the same store writes to the promoted replica once the sentinels have
/// failed over, where the session written (and replicated) before the kill
/// is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_behind_sentinel_is_followed_by_the_same_store() {
    if let Some(reason) = REDIS.skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let mut deployment = Deployment::start().await;
    let store = builder()
        .connect_sentinel(deployment.urls(), SERVICE)
        .await
        .unwrap_or_else(|e| panic!("connect through the private sentinels: {e:?}"));
    let (before, first) = (new_key(), record(1));
    store
        .save(&before, &first)
        .await
        .unwrap_or_else(|e| panic!("save before the kill: {e:?}"));
    // Wait until the replica has it: Redis replicates asynchronously.
    let mut primary = node_connection(deployment.primary.port())
        .await
        .unwrap_or_else(|e| panic!("primary: {e}"));
    let replicas: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut primary)
        .await
        .unwrap_or_else(|e| panic!("WAIT: {e}"));
    assert_eq!(replicas, 1, "the replica did not acknowledge the write");

    let killed = Instant::now();
    deployment.primary.kill().await;
    let keys: Vec<_> = (0..4).map(|_| new_key()).collect();
    let (recovered, attempts) = save_until_served(&store, &keys, killed).await;

    // The store now writes to the former replica, which the sentinels name
    // as the primary.
    let mut promoted = node_connection(deployment.replica.port())
        .await
        .unwrap_or_else(|e| panic!("promoted replica: {e}"));
    let role: Vec<redis::Value> = redis::cmd("ROLE")
        .query_async(&mut promoted)
        .await
        .unwrap_or_else(|e| panic!("ROLE: {e}"));
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec())),
        "{role:?}"
    );
    let loaded = store.load(&before).await;
    assert!(
        matches!(&loaded, Ok(Some(r)) if *r == first),
        "the session replicated before the kill: {loaded:?}"
    );
    saves_reach(&store, &keys, &mut promoted).await;
    eprintln!(
        "sentinel primary SIGKILL (down-after 1 s, deadline {DEADLINE:?}): time without service \
         {:?} ({attempts} attempts, bound {RECOVERY_BOUND:?})",
        recovered - killed
    );
    store
        .clear()
        .await
        .unwrap_or_else(|e| panic!("clear: {e:?}"));
}

/// The primary stopped with `SIGSTOP` (it holds connections open and
/// answers nothing): calls end at the deadline, and once the sentinels
/// have promoted the replica the same store writes there. A connection
/// that only stops answering is left because a call gave up on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_stopped_behind_sentinel_is_left_for_the_promoted_replica() {
    if let Some(reason) = REDIS.skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let deployment = Deployment::start().await;
    let store = builder()
        .connect_sentinel(deployment.urls(), SERVICE)
        .await
        .unwrap_or_else(|e| panic!("connect through the private sentinels: {e:?}"));
    let keys: Vec<_> = (0..4).map(|_| new_key()).collect();
    store
        .save(&keys[0], &record(0))
        .await
        .unwrap_or_else(|e| panic!("save before the stop: {e:?}"));

    let stopped = Instant::now();
    deployment.primary.stall();
    let (recovered, attempts) = save_until_served(&store, &keys, stopped).await;
    let mut promoted = node_connection(deployment.replica.port())
        .await
        .unwrap_or_else(|e| panic!("promoted replica: {e}"));
    saves_reach(&store, &keys, &mut promoted).await;
    eprintln!(
        "sentinel primary SIGSTOP (down-after 1 s, deadline {DEADLINE:?}): time without service \
         {:?} ({attempts} attempts, bound {RECOVERY_BOUND:?})",
        recovered - stopped
    );
}

/// Sentinel settings are checked when the store is built.
#[tokio::test]
async fn sentinel_configuration_errors_are_reported_when_building() {
    let none = RedisStore::connect_sentinel(Vec::<String>::new(), SERVICE).await;
    assert!(matches!(none, Err(Error::Config { .. })), "{none:?}");
    let bad = RedisStore::connect_sentinel(["http://not-redis/"], SERVICE).await;
    assert!(matches!(bad, Err(Error::Config { .. })), "{bad:?}");
    let unnamed = RedisStore::connect_sentinel(["redis://127.0.0.1:1/"], " ").await;
    assert!(matches!(unnamed, Err(Error::Config { .. })), "{unnamed:?}");
}

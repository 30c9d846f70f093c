//! Test factories: which servers to use, and the failure message when they
//! are unreachable.
#![allow(dead_code, unreachable_pub)]
#![allow(
    clippy::panic,
    reason = "an unreachable server must fail the test, with a message"
)]

use session_conformance::{Capabilities, StoreFactory};
use session_core::async_trait;
use session_store_redis::RedisStore;

/// Where the standalone tests look for Redis.
pub fn redis_url() -> String {
    std::env::var("SESSION_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// The cluster nodes the cluster tests use.
pub fn cluster_nodes() -> Vec<String> {
    let nodes = std::env::var("SESSION_REDIS_CLUSTER_NODES")
        .unwrap_or_else(|_| "redis://127.0.0.1:7000/".to_owned());
    nodes
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn opted_out(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if v == "1" => Some(format!("{var}=1")),
        _ => None,
    }
}

/// Skip reason for standalone tests.
pub fn skip_standalone() -> Option<String> {
    opted_out("SESSION_SKIP_REDIS")
}

/// Skip reason for cluster tests (also skipped with `SESSION_SKIP_REDIS=1`).
pub fn skip_cluster() -> Option<String> {
    opted_out("SESSION_SKIP_REDIS_CLUSTER").or_else(skip_standalone)
}

/// A standalone store on `prefix`, or a panic that says how to get a server.
pub async fn standalone(prefix: &str) -> RedisStore {
    let url = redis_url();
    match RedisStore::builder()
        .prefix(prefix)
        .reconnect_retries(2)
        .connect(&url)
        .await
    {
        Ok(store) => store,
        Err(e) => panic!(
            "cannot reach Redis at {url}: {e} ({:?}). Run ./scripts/test, which starts a \
             server, or start `redis-server` and set SESSION_REDIS_URL; set \
             SESSION_SKIP_REDIS=1 to skip these tests explicitly",
            std::error::Error::source(&e).map(ToString::to_string)
        ),
    }
}

/// A cluster store on `prefix`, or a panic that says how to get a cluster.
pub async fn cluster(prefix: &str) -> RedisStore {
    let nodes = cluster_nodes();
    match RedisStore::builder()
        .prefix(prefix)
        .reconnect_retries(2)
        .connect_cluster(&nodes)
        .await
    {
        Ok(store) => store,
        Err(e) => panic!(
            "cannot reach a Redis Cluster at {}: {e} ({:?}). Run ./scripts/test, which starts \
             a 6-node cluster on loopback, or set SESSION_REDIS_CLUSTER_NODES to \
             comma-separated redis:// URLs of a running cluster; set \
             SESSION_SKIP_REDIS_CLUSTER=1 to skip these tests explicitly",
            nodes.join(","),
            std::error::Error::source(&e).map(ToString::to_string)
        ),
    }
}

/// The conformance factory for a standalone server.
#[derive(Debug, Clone, Copy)]
pub struct Standalone;

#[async_trait]
impl StoreFactory for Standalone {
    type Store = RedisStore;

    async fn open(&self, namespace: &str) -> RedisStore {
        standalone(namespace).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true)
    }

    fn skip_reason(&self) -> Option<String> {
        skip_standalone()
    }
}

/// The conformance factory for a Redis Cluster.
#[derive(Debug, Clone, Copy)]
pub struct Cluster;

#[async_trait]
impl StoreFactory for Cluster {
    type Store = RedisStore;

    async fn open(&self, namespace: &str) -> RedisStore {
        cluster(namespace).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true)
    }

    fn skip_reason(&self) -> Option<String> {
        skip_cluster()
    }
}

/// Write `record` under the Redis key `name` the way versions before the
/// string layout did: a hash with the fields v, c, e, d and a key expiry.
#[allow(clippy::unwrap_used, reason = "test helper")]
pub async fn write_hash(
    conn: &mut impl redis::aio::ConnectionLike,
    name: &str,
    record: &session_core::Record,
) {
    let _: i64 = redis::cmd("HSET")
        .arg(name)
        .arg("v")
        .arg(record.version)
        .arg("c")
        .arg(record.created_at.as_millis())
        .arg("e")
        .arg(record.expires_at.as_millis())
        .arg("d")
        .arg(&*session_core::Record::encode_data(&record.data).unwrap())
        .query_async(conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("PEXPIREAT")
        .arg(name)
        .arg(record.expires_at.as_millis())
        .query_async(conn)
        .await
        .unwrap();
}

//! Test factories for a standalone server and a cluster; where they are
//! and what an unreachable one says come from `session_conformance::env`.
#![allow(dead_code, unreachable_pub)]

use session_conformance::env::{REDIS, REDIS_CLUSTER};
use session_conformance::{Capabilities, StoreFactory};
use session_core::async_trait;
use session_store_redis::RedisStore;

/// Where the standalone tests look for Redis.
pub fn redis_url() -> String {
    REDIS.url()
}

/// The cluster nodes the cluster tests use.
pub fn cluster_nodes() -> Vec<String> {
    REDIS_CLUSTER.urls()
}

/// Skip reason for standalone tests.
pub fn skip_standalone() -> Option<String> {
    REDIS.skip_reason()
}

/// Skip reason for cluster tests (also skipped with `SESSION_SKIP_REDIS=1`).
pub fn skip_cluster() -> Option<String> {
    REDIS_CLUSTER.skip_reason()
}

/// A standalone store on `namespace`, or a failure that says how to get a
/// server.
pub async fn standalone(namespace: &str) -> RedisStore {
    let url = redis_url();
    RedisStore::builder()
        .with_namespace(namespace)
        .with_reconnect_retries(2)
        .connect(&url)
        .await
        .unwrap_or_else(|e| REDIS.unreachable(&url, &e))
}

/// A cluster store on `namespace`, or a failure that says how to get a
/// cluster.
pub async fn cluster(namespace: &str) -> RedisStore {
    let nodes = cluster_nodes();
    RedisStore::builder()
        .with_namespace(namespace)
        .with_reconnect_retries(2)
        .connect_cluster(&nodes)
        .await
        .unwrap_or_else(|e| REDIS_CLUSTER.unreachable(&nodes.join(","), &e))
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
        Capabilities::new().durable(true).expires_natively(true)
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
        Capabilities::new().durable(true).expires_natively(true)
    }

    fn skip_reason(&self) -> Option<String> {
        skip_cluster()
    }
}

pub mod recovery;
pub mod server;

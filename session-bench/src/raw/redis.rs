//! The Redis engine's limit: the store's own connection doing `GET`,
//! `SET PX`, `SET PX NX`, `PEXPIRE` and `DEL` of the same bytes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManagerConfig;
use redis::cluster::ClusterClientBuilder;
use session_core::{SessionKey, SessionStore, Timestamp};
use session_store_redis::{RedisConnection, RedisStore};

use crate::Result;
use crate::backends::{Env, Opened, opened};
use crate::payload::Payload;
use crate::target::Target;

/// Response timeout of the shared connection: generous, so that a busy
/// machine does not turn a slow reply into an error (the crate's default is
/// about 500 ms).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Plain string commands on `{prefix}:{key hex}`, on a clone of the store's
/// connection. The value is the canonical record encoding.
#[derive(Debug)]
pub struct RawRedis {
    conn: RedisConnection,
    prefix: String,
    /// A store on the raw prefix, used only to `clear` it (SCAN on every
    /// primary, then UNLINK: works on a cluster too).
    cleaner: RedisStore,
}

impl RawRedis {
    fn key(&self, key: &SessionKey) -> String {
        format!("{}:{}", self.prefix, key.as_str())
    }
}

fn ttl_ms(expires_at: Timestamp) -> u64 {
    expires_at
        .duration_since(Timestamp::now())
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
        .max(1)
}

#[async_trait]
impl Target for RawRedis {
    async fn load(&self, key: &SessionKey) -> Result<bool> {
        let mut conn = self.conn.clone();
        let value: Option<Vec<u8>> = conn.get(self.key(key)).await?;
        Ok(value.is_some())
    }

    async fn write(&self, key: &SessionKey, payload: &Payload, _expected: u64) -> Result<bool> {
        self.put(key, payload).await?;
        Ok(true)
    }

    async fn create(&self, key: &SessionKey, payload: &Payload) -> Result<bool> {
        let mut conn = self.conn.clone();
        let reply: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(&*payload.record_bytes)
            .arg("PX")
            .arg(ttl_ms(payload.expires_at))
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        Ok(reply.is_some())
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let mut conn = self.conn.clone();
        let done: i64 = redis::cmd("PEXPIRE")
            .arg(self.key(key))
            .arg(ttl_ms(expires_at))
            .query_async(&mut conn)
            .await?;
        Ok(done == 1)
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.del(self.key(key)).await?;
        Ok(())
    }

    async fn put(&self, key: &SessionKey, payload: &Payload) -> Result<()> {
        let mut conn = self.conn.clone();
        let () = redis::cmd("SET")
            .arg(self.key(key))
            .arg(&*payload.record_bytes)
            .arg("PX")
            .arg(ttl_ms(payload.expires_at))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        Ok(self.cleaner.clear().await?)
    }
}

/// Connect once (standalone: a connection manager; cluster: a cluster
/// connection), then build the store and the raw baseline on clones of that
/// one connection, on prefixes `{namespace}` and `{namespace}_raw`.
pub(crate) async fn open_pair(env: &Env, namespace: &str, cluster: bool) -> Result<Opened> {
    let conn = if cluster {
        let nodes = env.redis_cluster_nodes.join(",");
        let client = ClusterClientBuilder::new(env.redis_cluster_nodes.clone())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .build()
            .map_err(|e| format!("Redis Cluster nodes {nodes}: {e}"))?;
        let conn = client.get_async_connection().await.map_err(|e| {
            format!(
                "cannot connect to Redis Cluster at {nodes}: {e} (start a cluster or set \
                 SESSION_REDIS_CLUSTER_NODES)"
            )
        })?;
        RedisConnection::from(conn)
    } else {
        let url = &env.redis_url;
        let client =
            redis::Client::open(url.as_str()).map_err(|e| format!("Redis URL {url}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| {
                format!(
                    "cannot connect to Redis at {url}: {e} (start redis-server or set \
                     SESSION_REDIS_URL)"
                )
            })?;
        RedisConnection::from(conn)
    };
    let store = RedisStore::builder()
        .with_namespace(namespace)
        .build(conn.clone())
        .await?;
    let raw_prefix = format!("{namespace}_raw");
    let cleaner = store.open_namespace(&raw_prefix).await?;
    let raw = RawRedis {
        conn,
        prefix: raw_prefix,
        cleaner,
    };
    // Fail now, naming the address, rather than in the middle of a phase.
    let where_ = if cluster {
        env.redis_cluster_nodes.join(",")
    } else {
        env.redis_url.clone()
    };
    raw.load(&SessionKey::from_bytes([0; 32]))
        .await
        .map_err(|e| format!("Redis at {where_} does not answer: {e}"))?;
    let store: Arc<dyn SessionStore> = Arc::new(store);
    Ok(opened(store, Arc::new(raw), Vec::new()))
}

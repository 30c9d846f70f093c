//! A connection to the primary of a Redis Sentinel deployment that follows
//! failovers: the `redis` crate's [`SentinelClient`] finds the primary (and
//! checks its `ROLE`); this module keeps one multiplexed connection to it,
//! and asks the sentinels again once that connection breaks, the server
//! answers `READONLY` (a primary demoted to replica), or a call gave up
//! waiting for an answer.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// A connection to the current primary of one Sentinel-monitored service,
/// shared by its clones, that follows failovers: the `redis` crate's
/// [`SentinelClient`] finds the primary (and checks its `ROLE`); one
/// multiplexed connection to it serves every request until it breaks, the
/// server answers `READONLY` (a primary demoted to replica), or a request
/// is given up before its answer (the store's operation deadline), and then
/// the sentinels are asked again.
///
/// A request that fails because the connection broke (the primary died or
/// was failed over), was refused as `READONLY` or was given up fails as it
/// is (the store does not resend a write that may have been applied); the
/// next request asks the sentinels for the primary and connects to it. Until the
/// sentinels have promoted a replica, that lookup fails and so does the
/// request: the store's operation deadline bounds each call meanwhile.
#[derive(Clone)]
pub struct SentinelConnection {
    inner: Arc<Inner>,
}

struct Inner {
    /// The sentinels and the service name; locked while looking the
    /// primary up, so that one lookup serves every request waiting for it.
    client: tokio::sync::Mutex<SentinelClient>,
    /// Timeouts of the connections to the primary.
    config: AsyncConnectionConfig,
    /// The connection in use and its generation (which lookup made it).
    current: RwLock<Option<(u64, MultiplexedConnection)>>,
    /// The generation of the next connection.
    generations: AtomicU64,
}

impl fmt::Debug for SentinelConnection {
    /// Names the kind of connection only (the driver's types may show
    /// credentials).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SentinelConnection")
    }
}

impl SentinelConnection {
    /// Look the primary up through `client` (built for
    /// [`SentinelServerType::Master`](redis::sentinel::SentinelServerType::Master))
    /// and connect to it with `config`'s timeouts.
    ///
    /// # Errors
    ///
    /// If no sentinel names a reachable primary, or it cannot be connected.
    pub async fn connect(
        client: SentinelClient,
        config: AsyncConnectionConfig,
    ) -> RedisResult<Self> {
        let conn = Self {
            inner: Arc::new(Inner {
                client: tokio::sync::Mutex::new(client),
                config,
                current: RwLock::new(None),
                generations: AtomicU64::new(0),
            }),
        };
        conn.current().await?;
        Ok(conn)
    }

    /// The connection in use, or a new one to the primary the sentinels
    /// name now.
    async fn current(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.read() {
            return Ok(current);
        }
        let mut client = self.inner.client.lock().await;
        // Another request may have connected while this one waited.
        if let Some(current) = self.read() {
            return Ok(current);
        }
        let conn = client
            .async_get_client()
            .await?
            .get_multiplexed_async_connection_with_config(&self.inner.config)
            .await?;
        let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed);
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    fn read(&self) -> Option<(u64, MultiplexedConnection)> {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drop connection `generation` (if it is still the one in use) when
    /// `error` says it no longer reaches a primary.
    fn check(&self, generation: u64, error: &RedisError) {
        let gone = error.is_io_error()
            || error.is_connection_dropped()
            || error.is_unrecoverable_error()
            || error.code() == Some("READONLY");
        if gone {
            self.abandon(generation);
        }
    }

    /// Stop using connection `generation`, if it is still the one in use
    /// (a request on an older connection must not drop a newer one).
    /// Requests already sent on it finish on it.
    fn abandon(&self, generation: u64) {
        let mut slot = self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
            *slot = None;
        }
    }

    /// Run `request` on the current connection; a request given up before
    /// its answer (the store's operation deadline passed) leaves the
    /// connection suspect: a primary that stopped answering without closing
    /// it (stopped, cut off by the network) is never left otherwise, even
    /// after the sentinels promoted its replica. The next call asks them.
    async fn run<T>(
        &self,
        request: impl AsyncFnOnce(&mut MultiplexedConnection) -> RedisResult<T>,
        failed: impl FnOnce(&RedisResult<T>) -> Option<RedisError>,
    ) -> RedisResult<T> {
        let (generation, mut conn) = self.current().await?;
        let unanswered = Unanswered {
            conn: self,
            generation,
        };
        let reply = request(&mut conn).await;
        std::mem::forget(unanswered);
        if let Some(e) = failed(&reply) {
            self.check(generation, &e);
        }
        reply
    }
}

/// Abandons a connection when dropped: see [`SentinelConnection::run`].
struct Unanswered<'a> {
    conn: &'a SentinelConnection,
    generation: u64,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        self.conn.abandon(self.generation);
    }
}

/// A reply that is a `READONLY` error (a pipeline with its errors kept as
/// values).
fn readonly(values: &[Value]) -> Option<RedisError> {
    values.iter().find_map(|v| match v {
        Value::ServerError(e) if e.code() == "READONLY" => Some(e.clone().into()),
        _ => None,
    })
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.run(
            async |conn| conn.req_packed_command(cmd).await,
            |reply| reply.as_ref().err().cloned(),
        ))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.run(
            async move |conn| conn.req_packed_commands(pipeline, offset, count).await,
            |reply| match reply {
                Err(e) => Some(e.clone()),
                Ok(values) => readonly(values),
            },
        ))
    }

    fn get_db(&self) -> i64 {
        // The connection info of the primary is the sentinels' business;
        // the store's commands do not depend on it.
        self.read().map_or(0, |(_, c)| c.get_db())
    }
}

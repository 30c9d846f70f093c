//! Configuration of a [`RedisStore`], checked when the store is built.

use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::cluster::ClusterClientBuilder;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo as _};
use session_core::{Error, Result};

use crate::{BACKEND, RedisConnection, RedisStore, SentinelConnection};

/// The namespace (key prefix) used when none is configured.
pub const DEFAULT_NAMESPACE: &str = "session";

/// The response and connection timeout used when none is configured.
///
/// The driver's own defaults (about 500 ms and 1 s) fail requests spuriously
/// on a busy machine; a session store prefers a slow answer to a failed
/// request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one store call may take, end to end, when none is configured:
/// see [`RedisStoreBuilder::with_operation_timeout`].
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// How many keys one `SCAN` call asks for when none is configured.
pub const DEFAULT_SCAN_COUNT: u32 = 500;

/// Builds a [`RedisStore`]: namespace (key prefix), timeouts, and how to
/// reach the server.
///
/// Every setting is checked when the store is built ([`connect`](Self::connect),
/// [`connect_cluster`](Self::connect_cluster), [`build`](Self::build)), never on
/// first use.
///
/// ```no_run
/// # async fn example() -> session_core::Result<()> {
/// use std::time::Duration;
/// use session_store_redis::RedisStore;
///
/// let store = RedisStore::builder()
///     .with_namespace("myapp:sessions")
///     .with_response_timeout(Duration::from_secs(2))
///     .connect("redis://127.0.0.1:6379/")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisStoreBuilder {
    prefix: String,
    response_timeout: Duration,
    connection_timeout: Duration,
    scan_count: u32,
    retries: Option<u32>,
    operation_timeout: Duration,
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_NAMESPACE.to_owned(),
            response_timeout: DEFAULT_TIMEOUT,
            connection_timeout: DEFAULT_TIMEOUT,
            scan_count: DEFAULT_SCAN_COUNT,
            retries: None,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
        }
    }
}

impl RedisStoreBuilder {
    /// A builder with the defaults: namespace [`DEFAULT_NAMESPACE`], timeouts
    /// [`DEFAULT_TIMEOUT`], `SCAN` batches of [`DEFAULT_SCAN_COUNT`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The namespace, a key prefix: sessions live under
    /// `{namespace}:{key}`, and `clear`/`len`/`list` see only keys of that
    /// shape. Must be non-empty and free of whitespace and control
    /// characters.
    ///
    /// On Redis Cluster, a prefix holding a hash tag (`{sessions}`) puts every
    /// session into one slot, on one primary: usually not what you want.
    pub fn with_namespace(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long to wait for the answer to one command (default
    /// [`DEFAULT_TIMEOUT`]). Applies to connections this builder opens.
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long to wait for a TCP connection to a server (default
    /// [`DEFAULT_TIMEOUT`]). Applies to connections this builder opens.
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// The operation deadline (default [`DEFAULT_OPERATION_TIMEOUT`]): how
    /// long one call of the store may take **end to end**, reconnecting and
    /// retrying included, before it fails with [`Error::Timeout`]. The
    /// response and connection timeouts bound single steps; while the server
    /// is down the driver reconnects with backoff for longer than either
    /// (about 10 s by default), and this deadline is what a request waits at
    /// most. `clear` and `len` bound each round trip (one `SCAN` page, one
    /// batch of per-key commands) instead of the whole walk; `list` bounds
    /// each page (so `all`, which follows `list`, each of its pages).
    /// Building waits at most this long for the first connection too.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// How many keys each `SCAN` call asks for in `clear` and `len`, and at
    /// least in `list` (which asks for its page size if that is larger, up
    /// to 10,000) (default [`DEFAULT_SCAN_COUNT`]; at least 1).
    pub fn with_scan_count(mut self, count: u32) -> Self {
        self.scan_count = count;
        self
    }

    /// How often the connection retries (re)connecting, with exponential
    /// backoff, before a request fails; default: the driver's (6 for a
    /// standalone server, about 10 s in all when the server is down). Also
    /// bounds how long building waits for a server that refuses
    /// connections.
    pub fn with_reconnect_retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Connect to a standalone server through an auto-reconnecting
    /// [`ConnectionManager`](redis::aio::ConnectionManager).
    ///
    /// `url` is a `redis://`, `rediss://` (with a TLS feature of `redis`
    /// enabled) or `redis+unix://` URL, e.g. `redis://:password@host:6379/0`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting or URL (the URL is not
    /// echoed: it may hold a password); [`Error::Backend`] if the server
    /// cannot be reached.
    pub async fn connect(self, url: &str) -> Result<RedisStore> {
        self.validate()?;
        let client = redis::Client::open(url).map_err(|e| {
            Error::config(BACKEND, format!("not a valid Redis URL ({:?})", e.kind()))
        })?;
        let target = format!("redis://{}", client.get_connection_info().addr());
        let mut config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.response_timeout))
            .set_connection_timeout(Some(self.connection_timeout));
        if let Some(retries) = self.retries {
            config = config.set_number_of_retries(usize::try_from(retries).unwrap_or(usize::MAX));
        }
        let manager = Error::within(BACKEND, "connect", self.operation_timeout, async {
            client
                .get_connection_manager_with_config(config)
                .await
                .map_err(|e| Error::backend(BACKEND, e))
        })
        .await?;
        Ok(self.into_store(RedisConnection::Manager(manager), target))
    }

    /// Connect to a Redis Cluster through any of its nodes (`redis://` URLs;
    /// the cluster's topology is discovered from them).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting, an empty list or an invalid
    /// URL; [`Error::Backend`] if the cluster cannot be reached.
    pub async fn connect_cluster<I, S>(self, nodes: I) -> Result<RedisStore>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.validate()?;
        let infos = node_infos(nodes, "Redis Cluster node")?;
        let target = format!("redis-cluster://{}", addrs(&infos));
        let mut builder = ClusterClientBuilder::new(infos)
            .connection_timeout(self.connection_timeout)
            .response_timeout(self.response_timeout);
        if let Some(retries) = self.retries {
            builder = builder.retries(retries);
        }
        let client = builder.build().map_err(|e| {
            Error::config(
                BACKEND,
                format!("invalid Redis Cluster settings ({:?})", e.kind()),
            )
        })?;
        let conn = Error::within(BACKEND, "connect", self.operation_timeout, async {
            client
                .get_async_connection()
                .await
                .map_err(|e| Error::backend(BACKEND, e))
        })
        .await?;
        Ok(self.into_store(RedisConnection::Cluster(conn), target))
    }

    /// Connect to the primary of `service` (the name the sentinels
    /// monitor it under) through any of its **sentinels** (`redis://`
    /// URLs of Redis Sentinel processes, not of the data servers), and
    /// follow it across failovers: once the connection to the primary
    /// breaks or it answers `READONLY`, the next call asks the sentinels
    /// again (see [`SentinelConnection`](crate::SentinelConnection)). The
    /// primary is reached without credentials or TLS; build a
    /// `SentinelConnection` yourself for those and pass it to
    /// [`build`](Self::build).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting, an empty list, an invalid
    /// URL or an empty service name; [`Error::Backend`] if no sentinel names
    /// a reachable primary; [`Error::Timeout`] if that takes longer than the
    /// operation deadline.
    pub async fn connect_sentinel<I, S>(self, sentinels: I, service: &str) -> Result<RedisStore>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.validate()?;
        let infos = node_infos(sentinels, "Redis Sentinel")?;
        if service.trim().is_empty() {
            return Err(Error::config(BACKEND, "the Sentinel service name is empty"));
        }
        let target = format!("redis-sentinel://{}/{service}", addrs(&infos));
        let client =
            SentinelClient::build(infos, service.to_owned(), None, SentinelServerType::Master)
                .map_err(|e| {
                    Error::config(
                        BACKEND,
                        format!("invalid Redis Sentinel settings ({:?})", e.kind()),
                    )
                })?;
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(self.response_timeout))
            .set_connection_timeout(Some(self.connection_timeout));
        let conn = Error::within(BACKEND, "connect", self.operation_timeout, async {
            SentinelConnection::connect(client, config)
                .await
                .map_err(|e| Error::backend(BACKEND, e))
        })
        .await?;
        Ok(self.into_store(RedisConnection::Sentinel(conn), target))
    }

    /// Build the store on a connection you opened yourself (timeouts are then
    /// the connection's own: set them, the driver's defaults are short).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting.
    #[allow(
        clippy::unused_async,
        reason = "every store's build is async; a ready connection needs no wait"
    )]
    pub async fn build(self, conn: impl Into<RedisConnection>) -> Result<RedisStore> {
        self.validate()?;
        let conn = conn.into();
        let target = if conn.is_cluster() {
            "redis-cluster (provided connection)"
        } else {
            "redis (provided connection)"
        };
        Ok(self.into_store(conn, target.to_owned()))
    }

    fn validate(&self) -> Result<()> {
        validate_namespace(&self.prefix)?;
        if self.scan_count == 0 {
            return Err(Error::config(BACKEND, "scan_count must be at least 1"));
        }
        if self.response_timeout.is_zero()
            || self.connection_timeout.is_zero()
            || self.operation_timeout.is_zero()
        {
            return Err(Error::config(BACKEND, "timeouts must be longer than zero"));
        }
        Ok(())
    }

    fn into_store(self, conn: RedisConnection, target: String) -> RedisStore {
        RedisStore::from_parts(
            conn,
            self.prefix,
            target,
            self.scan_count,
            self.operation_timeout,
        )
    }
}

/// Parse the URLs of a list of `what`s (cluster nodes, sentinels): at
/// least one, each valid (the URL is not echoed: it may hold a password).
fn node_infos<I, S>(nodes: I, what: &str) -> Result<Vec<ConnectionInfo>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut infos = Vec::new();
    for node in nodes {
        let info = node.as_ref().into_connection_info().map_err(|e| {
            Error::config(BACKEND, format!("not a valid {what} URL ({:?})", e.kind()))
        })?;
        infos.push(info);
    }
    if infos.is_empty() {
        return Err(Error::config(BACKEND, format!("no {what} given")));
    }
    Ok(infos)
}

/// `host:port,host:port` of the nodes, for `Debug` (no credentials).
fn addrs(infos: &[ConnectionInfo]) -> String {
    infos
        .iter()
        .map(|i| i.addr().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Check a namespace (key prefix): non-empty, no whitespace or control
/// characters.
pub(crate) fn validate_namespace(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Err(Error::config(
            BACKEND,
            "the namespace (key prefix) must not be empty",
        ));
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::config(
            BACKEND,
            "the namespace (key prefix) must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

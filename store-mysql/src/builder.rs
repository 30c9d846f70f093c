//! Configuration of a [`MysqlStore`], checked when the store is built.

use std::time::Duration;

use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints};
use session_core::{Error, Result};

use crate::schema;
use crate::{BACKEND, MysqlStore, backend};

/// The table (namespace) used when none is configured.
pub const DEFAULT_NAMESPACE: &str = "sessions";

/// The most connections the store's pool opens when none is configured.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// The deadline of every store call, connecting and retrying included, when
/// none is configured.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a pooled connection may stay idle before it is closed (unless
/// the URL sets `inactive_connection_ttl`).
const IDLE_CONNECTION_TTL: Duration = Duration::from_secs(60);

/// How many expired rows one `DELETE` of `delete_expired` removes at most
/// when none is configured.
pub const DEFAULT_REAP_BATCH: usize = 1_000;

/// Builds a [`MysqlStore`]: table, pool size, operation deadline and reaping
/// batch, then how to reach the server.
///
/// Building connects, reads `max_allowed_packet` and creates the table (and
/// the registry of tables) if missing, so settings and connectivity problems
/// surface there, never on first use.
///
/// ```no_run
/// # async fn example() -> session_core::Result<()> {
/// use std::time::Duration;
/// use session_store_mysql::MysqlStore;
///
/// let store = MysqlStore::builder()
///     .with_namespace("sessions")
///     .with_pool_size(32)
///     .with_operation_timeout(Duration::from_secs(2))
///     .connect("mysql://app:secret@127.0.0.1:3306/myapp")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct MysqlStoreBuilder {
    table: String,
    pool_size: usize,
    operation_timeout: Duration,
    reap_batch: usize,
}

impl Default for MysqlStoreBuilder {
    fn default() -> Self {
        Self {
            table: DEFAULT_NAMESPACE.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            reap_batch: DEFAULT_REAP_BATCH,
        }
    }
}

impl MysqlStoreBuilder {
    /// A builder with the defaults: table [`DEFAULT_NAMESPACE`], pool of
    /// [`DEFAULT_POOL_SIZE`], deadline [`DEFAULT_OPERATION_TIMEOUT`], reaping
    /// batch [`DEFAULT_REAP_BATCH`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The table: the store's namespace. `clear`, `len`, `all` and
    /// `delete_expired` see this table and nothing else. An ASCII identifier
    /// (`[A-Za-z][A-Za-z0-9_]*`, at most 64 characters, no `__`).
    pub fn with_namespace(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The most connections the pool opens (default [`DEFAULT_POOL_SIZE`]);
    /// at least 1. Overrides the URL's `pool_max`.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// The deadline of every store call, end to end: waiting for a
    /// connection, connecting, the statements and their retries (default
    /// [`DEFAULT_OPERATION_TIMEOUT`]). A call past it fails with
    /// [`Error::Timeout`]; building the store is bounded by it too.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// How many expired rows one `DELETE` of
    /// [`delete_expired`](session_core::SessionStore::delete_expired) removes
    /// at most (default [`DEFAULT_REAP_BATCH`]); the sweep repeats it until
    /// fewer are left, so no statement holds its locks for long.
    pub fn with_reap_batch(mut self, rows: usize) -> Self {
        self.reap_batch = rows;
        self
    }

    /// Connect with a `mysql://user:password@host:port/database` URL (any
    /// parameter `mysql_async` knows may follow, e.g. `?require_ssl=true`
    /// with the `rustls` feature) and build the store.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting or URL (the URL's password is
    /// never echoed), a URL without a database, or a table of an unknown
    /// layout; [`Error::Backend`] if the server refuses; [`Error::Timeout`]
    /// if it does not answer within the operation deadline.
    pub async fn connect(self, url: &str) -> Result<MysqlStore> {
        let opts = Opts::from_url(url).map_err(|e| {
            Error::config(
                BACKEND,
                format!(
                    "invalid MySQL URL: {}",
                    session_core::scrub_password(&e.to_string(), url)
                ),
            )
        })?;
        self.build(opts).await
    }

    /// Build the store from connection options you assembled yourself. The
    /// store sets its own pool size, turns `CLIENT_FOUND_ROWS` off (its
    /// writes read "rows changed", see the crate docs) and keeps prepared
    /// statements across pool checkouts (`reset_connection=false`).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn build(self, opts: Opts) -> Result<MysqlStore> {
        self.validate()?;
        let Some(database) = opts.db_name().map(str::to_owned) else {
            return Err(Error::config(
                BACKEND,
                "the URL names no database (mysql://host:port/DATABASE)",
            ));
        };
        let target = format!(
            "mysql://{}:{}/{database}",
            opts.ip_or_hostname(),
            opts.tcp_port()
        );
        let constraints = PoolConstraints::new(0, self.pool_size)
            .ok_or_else(|| Error::config(BACKEND, "invalid pool size"))?;
        let mut pool_opts = opts
            .pool_opts()
            .clone()
            .with_constraints(constraints)
            .with_reset_connection(false);
        if pool_opts.inactive_connection_ttl().is_zero() {
            // With no idle TTL, mysql_async keeps only `min` idle
            // connections (0 here) and closes every other one it gets
            // back: each call would connect anew. Keep them, closing those
            // idle for a while.
            pool_opts = pool_opts.with_inactive_connection_ttl(IDLE_CONNECTION_TTL);
        }
        let opts = OptsBuilder::from_opts(opts)
            .client_found_rows(false)
            .pool_opts(pool_opts);
        let pool = Pool::new(opts);
        let table = self.table.clone();
        let setup = async {
            let mut conn = pool.get_conn().await.map_err(backend)?;
            let max_packet = schema::max_allowed_packet(&mut conn).await?;
            schema::prepare(&mut conn, &table).await?;
            Ok(max_packet)
        };
        let max_packet =
            match Error::within(BACKEND, "connect", self.operation_timeout, setup).await {
                Ok(max_packet) => max_packet,
                Err(e) => {
                    // Close what was opened, without waiting on a dead server.
                    let _closed =
                        tokio::time::timeout(Duration::from_millis(200), pool.disconnect()).await;
                    return Err(e);
                }
            };
        Ok(MysqlStore::from_parts(
            pool,
            target,
            &self.table,
            self.operation_timeout,
            self.reap_batch,
            max_packet,
        ))
    }

    fn validate(&self) -> Result<()> {
        schema::NAMES.check("table", &self.table)?;
        if self.pool_size == 0 {
            return Err(Error::config(BACKEND, "the pool size must be at least 1"));
        }
        if self.operation_timeout.is_zero() {
            return Err(Error::config(
                BACKEND,
                "the operation timeout must be longer than zero",
            ));
        }
        if self.reap_batch == 0 {
            return Err(Error::config(BACKEND, "the reap batch must be at least 1"));
        }
        Ok(())
    }
}

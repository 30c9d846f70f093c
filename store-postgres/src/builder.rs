//! Configuration of a [`PostgresStore`], checked when the store is built.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use session_core::{Error, Result};
use tokio_postgres::config::{Host, SslMode};

use crate::schema::{self, Statements};
use crate::{BACKEND, PostgresStore, backend};

/// The namespace (table) used when none is configured.
pub const DEFAULT_NAMESPACE: &str = "sessions";
/// The PostgreSQL schema used when none is configured.
pub const DEFAULT_SCHEMA: &str = "public";
/// Default [`PostgresStoreBuilder::with_pool_size`].
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Default [`PostgresStoreBuilder::with_operation_timeout`].
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`PostgresStoreBuilder::with_reap_batch`].
pub const DEFAULT_REAP_BATCH: usize = 1000;

/// Upper bound for [`PostgresStoreBuilder::with_pool_size`].
const MAX_POOL_SIZE: usize = 1024;
/// Upper bound for [`PostgresStoreBuilder::with_reap_batch`].
const MAX_REAP_BATCH: usize = 1_000_000;

/// Builds a [`PostgresStore`]: schema and table, pool size, the operation
/// deadline, and how to reach the server.
///
/// Every setting is checked when the store is built ([`connect`](Self::connect)
/// or [`build`](Self::build)), never on first use; building also creates the
/// schema, the table and its expiry index if they are missing.
///
/// ```no_run
/// # async fn example() -> session_core::Result<()> {
/// use std::time::Duration;
/// use session_store_postgres::PostgresStore;
///
/// let store = PostgresStore::builder()
///     .with_schema("app")
///     .with_namespace("web_sessions")
///     .with_pool_size(32)
///     .with_operation_timeout(Duration::from_secs(2))
///     .connect("postgres://app@db.internal/app")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `connect` or `build` is awaited"]
pub struct PostgresStoreBuilder {
    schema: String,
    table: String,
    pool_size: usize,
    operation_timeout: Duration,
    reap_batch: usize,
    #[cfg(feature = "rustls")]
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for PostgresStoreBuilder {
    fn default() -> Self {
        Self {
            schema: DEFAULT_SCHEMA.to_owned(),
            table: DEFAULT_NAMESPACE.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            reap_batch: DEFAULT_REAP_BATCH,
            #[cfg(feature = "rustls")]
            tls: None,
        }
    }
}

impl PostgresStoreBuilder {
    /// A builder with the defaults: table [`DEFAULT_NAMESPACE`] in schema
    /// [`DEFAULT_SCHEMA`], [`DEFAULT_POOL_SIZE`] connections,
    /// [`DEFAULT_OPERATION_TIMEOUT`], [`DEFAULT_REAP_BATCH`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The namespace: the table that holds this store's sessions. Default
    /// `sessions`. Must be an ASCII identifier (`[A-Za-z][A-Za-z0-9_]*`, at
    /// most 63 characters, no `__`, not starting with `pg_`); it is quoted,
    /// never interpolated unchecked.
    pub fn with_namespace(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The PostgreSQL schema of the table, created if missing. Default
    /// `public`; the same rules as [`with_namespace`](Self::with_namespace).
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most connections the pool opens (default 16, between 1 and 1024).
    /// Connections are opened on demand and kept.
    pub fn with_pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections;
        self
    }

    /// The deadline of one store call, end to end: waiting for a pooled
    /// connection, connecting, preparing and running the statements
    /// (default 5 s). A call past it fails with
    /// [`Error::Timeout`](session_core::Error::Timeout). Building the store
    /// (connecting and creating the table) has the same deadline.
    ///
    /// A write that timed out may still be applied by the server: the
    /// deadline stops waiting, not the statement.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// How many expired rows one `DELETE` of
    /// [`delete_expired`](session_core::SessionStore::delete_expired)
    /// removes (each batch its own statement and transaction, so locks are
    /// held briefly). Default 1000, between 1 and 1,000,000.
    pub fn with_reap_batch(mut self, rows: usize) -> Self {
        self.reap_batch = rows;
        self
    }

    /// The TLS settings used when the URL asks for TLS (`sslmode=prefer`,
    /// the default, or `sslmode=require`); default: rustls with the Mozilla
    /// root certificates of `webpki-roots`.
    #[cfg(feature = "rustls")]
    pub fn with_tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(Arc::new(config));
        self
    }

    fn validate(&self) -> Result<()> {
        schema::NAMES.check("schema", &self.schema)?;
        schema::NAMES.check("table", &self.table)?;
        if !(1..=MAX_POOL_SIZE).contains(&self.pool_size) {
            return Err(Error::config(
                BACKEND,
                format!(
                    "pool_size must be between 1 and {MAX_POOL_SIZE}, got {}",
                    self.pool_size
                ),
            ));
        }
        if !(1..=MAX_REAP_BATCH).contains(&self.reap_batch) {
            return Err(Error::config(
                BACKEND,
                format!(
                    "reap_batch must be between 1 and {MAX_REAP_BATCH}, got {}",
                    self.reap_batch
                ),
            ));
        }
        if self.operation_timeout.is_zero() {
            return Err(Error::config(
                BACKEND,
                "operation_timeout must be longer than zero",
            ));
        }
        Ok(())
    }

    /// Connect to the server at `url` (`postgres://user:password@host:port/db`
    /// or `postgresql://…`, or a `key=value` connection string) through a
    /// pool of [`with_pool_size`](Self::with_pool_size) connections, then
    /// create the schema, table and index if missing.
    ///
    /// Without the `rustls` feature, connections are plain (the URL's
    /// default `sslmode=prefer` falls back to plain), and `sslmode=require`
    /// is a configuration error.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting or URL (the URL is not
    /// echoed: it may hold a password), or a table this crate must not
    /// touch; [`Error::Backend`] if the server cannot be reached or refuses;
    /// [`Error::Timeout`] past the operation timeout.
    pub async fn connect(self, url: &str) -> Result<PostgresStore> {
        self.validate()?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            Error::config(
                BACKEND,
                format!("not a valid PostgreSQL URL or connection string ({e})"),
            )
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.operation_timeout);
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = self.manager(config.clone(), manager_config)?;
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .build()
            .map_err(|e| Error::config(BACKEND, format!("cannot build the pool: {e}")))?;
        let target = describe(&config);
        self.into_store(pool, target).await
    }

    #[cfg(not(feature = "rustls"))]
    fn manager(
        &self,
        config: tokio_postgres::Config,
        manager_config: ManagerConfig,
    ) -> Result<Manager> {
        if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
            return Err(Error::config(
                BACKEND,
                "the URL requires TLS (sslmode=require): enable the `rustls` feature of \
                 session-store-postgres",
            ));
        }
        Ok(Manager::from_config(
            config,
            tokio_postgres::NoTls,
            manager_config,
        ))
    }

    #[cfg(feature = "rustls")]
    fn manager(
        &self,
        config: tokio_postgres::Config,
        manager_config: ManagerConfig,
    ) -> Result<Manager> {
        if config.get_ssl_mode() == SslMode::Disable {
            return Ok(Manager::from_config(
                config,
                tokio_postgres::NoTls,
                manager_config,
            ));
        }
        let tls = match &self.tls {
            Some(tls) => Arc::clone(tls),
            None => Arc::new(crate::tls::default_config()?),
        };
        let connector = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
        Ok(Manager::from_config(config, connector, manager_config))
    }

    /// Build the store on a pool you configured yourself (TLS, credentials,
    /// hooks), then create the schema, table and index if missing. The
    /// pool's own size applies; [`with_pool_size`](Self::with_pool_size) is
    /// ignored.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), minus the URL.
    pub async fn build(self, pool: Pool) -> Result<PostgresStore> {
        self.validate()?;
        self.into_store(pool, "postgres (provided pool)".to_owned())
            .await
    }

    async fn into_store(self, pool: Pool, target: String) -> Result<PostgresStore> {
        let (schema, table) = (self.schema, self.table);
        let deadline = self.operation_timeout;
        Error::within(BACKEND, "connect", deadline, async {
            let mut client = pool.get().await.map_err(backend)?;
            schema::prepare(&mut client, &schema, &table).await
        })
        .await?;
        Ok(PostgresStore {
            pool,
            sql: Arc::new(Statements::new(&schema, &table)),
            schema: schema.into(),
            table: table.into(),
            target: target.into(),
            operation_timeout: deadline,
            reap_batch: self.reap_batch,
        })
    }
}

/// Where a configuration points, without credentials: `host:port/dbname`.
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = config
                .get_ports()
                .get(i)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{}/{db}", hosts.join(","))
}

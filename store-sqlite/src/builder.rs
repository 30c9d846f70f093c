//! Building a [`SqliteStore`]: where the database lives and how it is tuned.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use session_core::{Error, Result};

use crate::pool::Pool;
use crate::schema::{self, Statements};
use crate::{BACKEND, SqliteStore, backend};

/// SQLite's `PRAGMA synchronous` for the writer connection: how hard a commit
/// tries to reach the disk. The journal is always WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// `synchronous = NORMAL` (the default). A committed write survives the
    /// process crashing; after a power loss or an OS crash the last commits
    /// before it may be rolled back (the database stays consistent, never
    /// corrupt): a visitor may find a session slightly older than its last
    /// request. The WAL is synced at checkpoints only. Measured ~47k
    /// single-row commits/s here.
    #[default]
    Normal,
    /// `synchronous = FULL`. The WAL is synced on every commit, so a commit
    /// also survives a power loss, at the price of one fsync per write
    /// (measured ~7.4k single-row commits/s here).
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

/// Configures and opens a [`SqliteStore`]; every setting is checked by
/// [`build`](Self::build), which reports mistakes as
/// [`Error::Config`](session_core::Error::Config).
///
/// ```no_run
/// # async fn demo() -> session_core::Result<()> {
/// use std::time::Duration;
/// use session_store_sqlite::{SqliteStore, Synchronous};
///
/// let store = SqliteStore::builder("sessions.db")
///     .with_namespace("web_sessions")
///     .with_synchronous(Synchronous::Full)
///     .with_busy_timeout(Duration::from_secs(2))
///     .with_read_connections(2)
///     .with_cache_size(64 << 20)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct SqliteStoreBuilder {
    /// The database file; `None`: a private in-memory database.
    path: Option<PathBuf>,
    table: String,
    synchronous: Synchronous,
    busy_timeout: Duration,
    read_connections: usize,
    reap_batch: usize,
    cache_size: usize,
}

/// Default namespace: the table `sessions`.
pub const DEFAULT_NAMESPACE: &str = "sessions";
/// Default [`SqliteStoreBuilder::with_busy_timeout`].
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`SqliteStoreBuilder::with_read_connections`].
pub const DEFAULT_READ_CONNECTIONS: usize = 4;
/// Default [`SqliteStoreBuilder::with_reap_batch`].
pub const DEFAULT_REAP_BATCH: usize = 1000;
/// Default [`SqliteStoreBuilder::with_cache_size`]: 16 MiB per connection.
pub const DEFAULT_CACHE_SIZE: usize = 16 * 1024 * 1024;

/// Upper bound for [`SqliteStoreBuilder::with_read_connections`].
const MAX_READ_CONNECTIONS: usize = 64;
/// Upper bound for [`SqliteStoreBuilder::with_reap_batch`].
const MAX_REAP_BATCH: usize = 1_000_000;
/// Bounds for [`SqliteStoreBuilder::with_cache_size`]: 64 KiB to 1 TiB.
const MIN_CACHE_SIZE: usize = 64 * 1024;
const MAX_CACHE_SIZE: u64 = 1 << 40;

impl SqliteStoreBuilder {
    /// A builder for the file at `path`, or (`None`) a private in-memory
    /// database.
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            table: DEFAULT_NAMESPACE.to_owned(),
            synchronous: Synchronous::default(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            read_connections: DEFAULT_READ_CONNECTIONS,
            reap_batch: DEFAULT_REAP_BATCH,
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }

    /// The namespace: the table that holds this store's sessions. Default
    /// `sessions`. Must be an ASCII identifier (`[A-Za-z][A-Za-z0-9_]*`, at
    /// most 63 characters, no `__`, not starting with `sqlite_`); it is never
    /// interpolated into SQL unchecked.
    pub fn with_namespace(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Durability of each commit; see [`Synchronous`]. Default
    /// [`Synchronous::Normal`].
    pub fn with_synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long a statement waits for a lock held by another connection
    /// (another process, or another store on the same file) before failing
    /// with a backend error. Default 5 s; at most `i32::MAX` milliseconds.
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How many read connections serve `load`, `len` and `all` in parallel
    /// with the single writer (WAL readers never block the writer nor each
    /// other). Default 4, between 1 and 64. An in-memory database ignores
    /// this: it has exactly one connection.
    pub fn with_read_connections(mut self, connections: usize) -> Self {
        self.read_connections = connections;
        self
    }

    /// How many expired rows one `DELETE` of
    /// [`delete_expired`](session_core::SessionStore::delete_expired) removes
    /// before it lets other writers in. Default 1000, between 1 and
    /// 1,000,000.
    pub fn with_reap_batch(mut self, rows: usize) -> Self {
        self.reap_batch = rows;
        self
    }

    /// The most memory SQLite's page cache may take, per connection
    /// (`PRAGMA cache_size`), in bytes. Default 16 MiB, between 64 KiB and
    /// 1 TiB. Each connection (the writer and every reader) has its own, and
    /// it fills only as pages are read, so a small database never uses it
    /// all. SQLite's own default, 2 MiB (500 pages), is smaller than what one
    /// `delete_expired` batch of 1,000 rows dirties at a million sessions
    /// (about one random leaf of the key index per row): the pages written
    /// by the saves of those sessions are evicted before the reap rewrites
    /// them, and a batch spills.
    pub fn with_cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }

    fn validate(&self) -> Result<()> {
        schema::NAMES.check("table", &self.table)?;
        if !(1..=MAX_READ_CONNECTIONS).contains(&self.read_connections) {
            return Err(Error::config(
                BACKEND,
                format!(
                    "read_connections must be between 1 and {MAX_READ_CONNECTIONS}, got {}",
                    self.read_connections
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
        if self.cache_size < MIN_CACHE_SIZE || self.cache_size as u64 > MAX_CACHE_SIZE {
            return Err(Error::config(
                BACKEND,
                format!(
                    "cache_size must be between {MIN_CACHE_SIZE} and {MAX_CACHE_SIZE} bytes, got {}",
                    self.cache_size
                ),
            ));
        }
        if self.busy_timeout.as_millis() > i32::MAX as u128 {
            return Err(Error::config(
                BACKEND,
                "busy_timeout must be at most i32::MAX milliseconds",
            ));
        }
        if let Some(path) = &self.path
            && path.as_os_str().is_empty()
        {
            return Err(Error::config(BACKEND, "database path must not be empty"));
        }
        Ok(())
    }

    /// Check the settings, open the database (creating the file if needed),
    /// bring its schema to the current version and create the table and its
    /// expiry index if missing, and start the connection threads. The
    /// blocking work runs on tokio's blocking pool.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad setting, or a database whose schema is
    /// newer than this crate or that belongs to another application;
    /// [`Error::Backend`] if SQLite fails (unwritable path, corrupt file).
    pub async fn build(self) -> Result<SqliteStore> {
        self.validate()?;
        session_core::run_blocking(BACKEND, move || self.open_blocking()).await
    }

    fn open_blocking(self) -> Result<SqliteStore> {
        let (mut writer, readers) = match &self.path {
            None => {
                let conn = Connection::open_in_memory().map_err(backend)?;
                self.tune(&conn)?;
                (conn, Vec::new())
            }
            Some(path) => {
                let writer = self.open_file(path)?;
                writer
                    .pragma_update_and_check(None, "journal_mode", "WAL", |row| {
                        row.get::<_, String>(0)
                    })
                    .map_err(backend)?;
                writer
                    .pragma_update(None, "synchronous", self.synchronous.pragma())
                    .map_err(backend)?;
                let readers = (0..self.read_connections)
                    .map(|_| {
                        let reader = self.open_file(path)?;
                        reader
                            .pragma_update(None, "query_only", true)
                            .map_err(backend)?;
                        Ok(reader)
                    })
                    .collect::<Result<Vec<_>>>()?;
                (writer, readers)
            }
        };
        schema::prepare(&mut writer, &self.table)?;
        Ok(SqliteStore {
            pool: Arc::new(Pool::start(writer, readers)?),
            sql: Arc::new(Statements::new(&self.table)),
            table: self.table.into(),
            reap_batch: self.reap_batch,
        })
    }

    fn open_file(&self, path: &Path) -> Result<Connection> {
        // No SQLITE_OPEN_URI: a path is a path, even if it starts with "file:".
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(backend)?;
        conn.busy_timeout(self.busy_timeout).map_err(backend)?;
        self.tune(&conn)?;
        Ok(conn)
    }

    fn tune(&self, conn: &Connection) -> Result<()> {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // A negative cache_size is in KiB.
        let kib = i64::try_from(self.cache_size / 1024).unwrap_or(i64::MAX);
        conn.pragma_update(None, "cache_size", -kib)
            .map_err(backend)
    }
}

/// Prepared statements kept per connection: fifteen per table (and five for
/// group commits on the writer), room for a few tables sharing the
/// connections (see `SqliteStore::open_namespace`).
const STATEMENT_CACHE: usize = 64;

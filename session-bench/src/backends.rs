//! The backends the bench knows, how each store and its raw baseline are
//! opened, and where servers are found.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use session_core::SessionStore;

use crate::Result;
use crate::target::Target;

/// A backend: one store crate and the engine under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Backend {
    /// `session-store-memory` next to a plain sharded `HashMap`.
    Memory,
    /// `session-store-sqlite` next to plain rusqlite statements.
    Sqlite,
    /// `session-store-sled` next to plain sled calls.
    Sled,
    /// `session-store-redis` (standalone) next to the same connection doing
    /// `GET` / `SET PX` / `PEXPIRE` / `DEL`.
    Redis,
    /// `session-store-redis` on Redis Cluster, next to the same cluster
    /// connection doing the same commands.
    RedisCluster,
    /// `session-store-mongo` next to the `mongodb` driver's
    /// insert / find / update / delete.
    Mongo,
    /// `session-store-file` next to plain `std::fs` reads, temp-file writes
    /// renamed over the session, and unlinks on the same layout.
    File,
    /// `session-store-postgres` next to the same tokio-postgres statements
    /// on a pool of the same size.
    Postgres,
    /// `session-store-mysql` next to the same `mysql_async` statements on a
    /// pool of the same size.
    Mysql,
}

impl Backend {
    /// Every backend, compiled in or not.
    pub const ALL: [Self; 9] = [
        Self::Memory,
        Self::Sqlite,
        Self::Sled,
        Self::Redis,
        Self::RedisCluster,
        Self::Mongo,
        Self::File,
        Self::Postgres,
        Self::Mysql,
    ];

    /// Its name in `--stores` and in the results.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::Sled => "sled",
            Self::Redis => "redis",
            Self::RedisCluster => "redis-cluster",
            Self::Mongo => "mongo",
            Self::File => "file",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
        }
    }

    /// Whether this binary was built with the backend's feature.
    #[must_use]
    pub fn compiled(self) -> bool {
        match self {
            Self::Memory => cfg!(feature = "memory"),
            Self::Sqlite => cfg!(feature = "sqlite"),
            Self::Sled => cfg!(feature = "sled"),
            Self::Redis | Self::RedisCluster => cfg!(feature = "redis"),
            Self::Mongo => cfg!(feature = "mongo"),
            Self::File => cfg!(feature = "file"),
            Self::Postgres => cfg!(feature = "postgres"),
            Self::Mysql => cfg!(feature = "mysql"),
        }
    }

    /// Every backend compiled in.
    #[must_use]
    pub fn all_compiled() -> Vec<Self> {
        Self::ALL.into_iter().filter(|b| b.compiled()).collect()
    }

    /// Open a fresh store of this backend on a fresh namespace (a temporary
    /// file or folder, a random key prefix or collection).
    ///
    /// # Errors
    ///
    /// If the backend is not compiled in, or cannot be reached (naming the
    /// address tried).
    pub async fn open_store(self, env: &Env) -> Result<Opened> {
        let namespace = session_conformance::unique_namespace();
        match self {
            Self::Memory => open::memory_store(),
            Self::Sqlite => open::sqlite_store(env, &namespace).await,
            Self::Sled => open::sled_store(env, &namespace).await,
            Self::Redis => open::redis_store(env, &namespace, false).await,
            Self::RedisCluster => open::redis_store(env, &namespace, true).await,
            Self::Mongo => open::mongo_store(env, &namespace).await,
            Self::File => open::file_store(env, &namespace).await,
            Self::Postgres => open::postgres_store(env, &namespace).await,
            Self::Mysql => open::mysql_store(env, &namespace).await,
        }
    }

    /// Open a fresh store and, beside it, the raw baseline of its engine on
    /// its own namespace (the same connection for a server).
    ///
    /// # Errors
    ///
    /// As [`open_store`](Self::open_store).
    pub async fn open_with_raw(self, env: &Env) -> Result<(Opened, Arc<dyn Target>)> {
        let opened = self.open_store(env).await?;
        let raw = opened
            .raw
            .clone()
            .ok_or_else(|| format!("{}: no raw baseline was opened", self.name()))?;
        Ok((opened, raw))
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An opened store, its raw baseline, and whatever must live as long as they
/// do (temporary folders are deleted when this is dropped).
pub struct Opened {
    /// The store.
    pub store: Arc<dyn SessionStore>,
    /// The raw baseline of the same engine, on another namespace.
    pub raw: Option<Arc<dyn Target>>,
    /// Kept alive with the store (temporary folders).
    _guard: Vec<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("store", &self.store)
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

/// Where servers and files are: the same environment variables and
/// loopback defaults as the tests (`session_conformance::env`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    /// `SESSION_REDIS_URL`.
    pub redis_url: String,
    /// `SESSION_REDIS_CLUSTER_NODES` (comma-separated).
    pub redis_cluster_nodes: Vec<String>,
    /// `SESSION_MONGO_URL`.
    pub mongo_url: String,
    /// `SESSION_POSTGRES_URL`.
    pub postgres_url: String,
    /// `SESSION_MYSQL_URL`.
    pub mysql_url: String,
    /// Folder for SQLite and sled files (a temporary folder inside it per
    /// store); default the system's temporary folder.
    pub data_dir: Option<PathBuf>,
}

impl Env {
    /// Read the environment (through `session_conformance::env`, as the
    /// tests do).
    #[must_use]
    pub fn from_env() -> Self {
        use session_conformance::env::{MONGO, POSTGRES, REDIS, REDIS_CLUSTER};
        Self {
            redis_url: REDIS.url(),
            redis_cluster_nodes: REDIS_CLUSTER.urls(),
            mongo_url: MONGO.url(),
            postgres_url: POSTGRES.url(),
            mysql_url: session_conformance::env::MYSQL.url(),
            data_dir: None,
        }
    }

    /// A new temporary folder for one store's files.
    ///
    /// # Errors
    ///
    /// If it cannot be created.
    pub fn temp_dir(&self) -> Result<tempfile::TempDir> {
        let builder = {
            let mut b = tempfile::Builder::new();
            b.prefix("session-bench-");
            b
        };
        Ok(match &self.data_dir {
            Some(dir) => builder.tempdir_in(dir)?,
            None => builder.tempdir()?,
        })
    }
}

#[allow(
    clippy::unused_async,
    reason = "every opener has the same shape, compiled in or not"
)]
mod open {
    use super::{Env, Opened};
    use crate::Result;

    #[allow(dead_code, reason = "used only when a backend feature is off")]
    fn not_compiled(name: &str) -> crate::BoxError {
        format!(
            "the {name} backend is not compiled in: build with `--features {}`",
            name.split('-').next().unwrap_or(name)
        )
        .into()
    }

    #[cfg(feature = "memory")]
    pub(super) fn memory_store() -> Result<Opened> {
        use std::sync::Arc;
        Ok(Opened {
            store: Arc::new(session_store_memory::MemoryStore::new()),
            raw: Some(Arc::new(crate::raw::RawMemory::new())),
            _guard: Vec::new(),
        })
    }

    #[cfg(not(feature = "memory"))]
    pub(super) fn memory_store() -> Result<Opened> {
        Err(not_compiled("memory"))
    }

    #[cfg(feature = "sqlite")]
    pub(super) async fn sqlite_store(env: &Env, namespace: &str) -> Result<Opened> {
        use std::sync::Arc;
        let dir = env.temp_dir()?;
        let store = session_store_sqlite::SqliteStore::builder(dir.path().join("store.db"))
            .with_namespace(namespace)
            .build()
            .await?;
        let raw = crate::raw::sqlite::RawSqlite::open(&dir.path().join("raw.db"))?;
        Ok(Opened {
            store: Arc::new(store),
            raw: Some(Arc::new(raw)),
            _guard: vec![Box::new(dir)],
        })
    }

    #[cfg(not(feature = "sqlite"))]
    pub(super) async fn sqlite_store(_env: &Env, _namespace: &str) -> Result<Opened> {
        Err(not_compiled("sqlite"))
    }

    #[cfg(feature = "sled")]
    pub(super) async fn sled_store(env: &Env, namespace: &str) -> Result<Opened> {
        crate::raw::sled::open_pair(env, namespace).await
    }

    #[cfg(not(feature = "sled"))]
    pub(super) async fn sled_store(_env: &Env, _namespace: &str) -> Result<Opened> {
        Err(not_compiled("sled"))
    }

    #[cfg(feature = "redis")]
    pub(super) async fn redis_store(env: &Env, namespace: &str, cluster: bool) -> Result<Opened> {
        crate::raw::redis::open_pair(env, namespace, cluster).await
    }

    #[cfg(not(feature = "redis"))]
    pub(super) async fn redis_store(
        _env: &Env,
        _namespace: &str,
        _cluster: bool,
    ) -> Result<Opened> {
        Err(not_compiled("redis"))
    }

    #[cfg(feature = "mongo")]
    pub(super) async fn mongo_store(env: &Env, namespace: &str) -> Result<Opened> {
        crate::raw::mongo::open_pair(env, namespace).await
    }

    #[cfg(not(feature = "mongo"))]
    pub(super) async fn mongo_store(_env: &Env, _namespace: &str) -> Result<Opened> {
        Err(not_compiled("mongo"))
    }

    #[cfg(feature = "file")]
    pub(super) async fn file_store(env: &Env, namespace: &str) -> Result<Opened> {
        crate::raw::file::open_pair(env, namespace).await
    }

    #[cfg(not(feature = "file"))]
    pub(super) async fn file_store(_env: &Env, _namespace: &str) -> Result<Opened> {
        Err(not_compiled("file"))
    }

    #[cfg(feature = "postgres")]
    pub(super) async fn postgres_store(env: &Env, namespace: &str) -> Result<Opened> {
        crate::raw::postgres::open_pair(env, namespace).await
    }

    #[cfg(not(feature = "postgres"))]
    pub(super) async fn postgres_store(_env: &Env, _namespace: &str) -> Result<Opened> {
        Err(not_compiled("postgres"))
    }

    #[cfg(feature = "mysql")]
    pub(super) async fn mysql_store(env: &Env, namespace: &str) -> Result<Opened> {
        crate::raw::mysql::open_pair(env, namespace).await
    }

    #[cfg(not(feature = "mysql"))]
    pub(super) async fn mysql_store(_env: &Env, _namespace: &str) -> Result<Opened> {
        Err(not_compiled("mysql"))
    }

    /// Build an [`Opened`] (for the per-engine modules).
    #[allow(dead_code, reason = "used only by some backend features")]
    pub(crate) fn opened(
        store: std::sync::Arc<dyn session_core::SessionStore>,
        raw: std::sync::Arc<dyn crate::target::Target>,
        guard: Vec<Box<dyn std::any::Any + Send + Sync>>,
    ) -> Opened {
        Opened {
            store,
            raw: Some(raw),
            _guard: guard,
        }
    }
}

#[allow(unused_imports, reason = "used only by some backend features")]
pub(crate) use open::opened;

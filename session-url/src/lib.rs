//! One URL per store: `memory`, `cookie`, `sqlite://PATH`, `sled://PATH`,
//! `file://PATH`, `redis://…` (a comma list or `redis+cluster://` for a
//! Cluster), `mongodb://…`, `postgres://…`, `mysql://…`/`mariadb://…`.
//! The scheme the demo's `--store` and `session-admin`'s `--store`/`--to`
//! share, and opening what it names with bounded waits.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> session_core::Result<()> {
//! use session_url::StoreUrl;
//! let url: StoreUrl = "memory".parse().expect("a store URL");
//! let opened = url.open().await?;
//! assert_eq!(opened.backend, "memory");
//! assert!(opened.store.is_some());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use session_core::PrincipalIndex;

/// How long opening a server-backed store may wait for its server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A store, as named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory`: in this process, gone when it stops.
    Memory,
    /// `cookie`: no store; each session sealed (encrypted) in its cookie.
    Cookie,
    /// `sqlite://PATH`: a SQLite database file.
    Sqlite(PathBuf),
    /// `sled://PATH`: a sled database folder.
    Sled(PathBuf),
    /// `redis://…` or `rediss://…`: a standalone Redis.
    Redis(String),
    /// `redis://a:1,redis://b:2,…` or `redis+cluster://a:1,b:2`: the nodes
    /// of a Redis Cluster (any of them; the rest is discovered).
    RedisCluster(Vec<String>),
    /// `mongodb://…` or `mongodb+srv://…`.
    Mongo(String),
    /// `file://PATH`: a directory of session files.
    File(PathBuf),
    /// `postgres://…` or `postgresql://…`: table `sessions` of that
    /// database.
    Postgres(String),
    /// `mysql://USER:PASSWORD@HOST:PORT/DATABASE` (or `mariadb://…`, kept
    /// as the `mysql://` URL the driver reads): MySQL or MariaDB.
    Mysql(String),
}

/// What `--store` accepts, for help and error texts.
pub const STORE_FORMS: &str = "memory, cookie, sqlite://PATH, sled://PATH, redis://HOST:PORT[/DB], \
     redis+cluster://HOST:PORT,HOST:PORT,..., mongodb://HOST:PORT, file://PATH, \
     postgres://USER@HOST:PORT/DB, \
     mysql://USER@HOST:PORT/DATABASE (or mariadb://...)";

/// A `--store` value that names no backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown store {given:?}: expected one of {STORE_FORMS}")]
pub struct BadStoreUrl {
    given: String,
}

impl FromStr for StoreUrl {
    type Err = BadStoreUrl;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadStoreUrl {
            given: session_core::redact_url(s),
        };
        let path = |rest: &str| {
            if rest.is_empty() {
                Err(bad())
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        if s == "memory" {
            return Ok(Self::Memory);
        }
        if s == "cookie" {
            return Ok(Self::Cookie);
        }
        if let Some(rest) = s.strip_prefix("sqlite://") {
            return path(rest).map(Self::Sqlite);
        }
        if let Some(rest) = s.strip_prefix("sled://") {
            return path(rest).map(Self::Sled);
        }
        if let Some(rest) = s.strip_prefix("file://") {
            return path(rest).map(Self::File);
        }
        if let Some(rest) = s.strip_prefix("redis+cluster://") {
            let nodes: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| format!("redis://{n}"))
                .collect();
            return if nodes.is_empty() {
                Err(bad())
            } else {
                Ok(Self::RedisCluster(nodes))
            };
        }
        if s.starts_with("redis://") || s.starts_with("rediss://") {
            if s.contains(',') {
                let nodes: Vec<String> = s.split(',').map(|n| n.trim().to_owned()).collect();
                if nodes
                    .iter()
                    .any(|n| !(n.starts_with("redis://") || n.starts_with("rediss://")))
                {
                    return Err(bad());
                }
                return Ok(Self::RedisCluster(nodes));
            }
            return Ok(Self::Redis(s.to_owned()));
        }
        if s.starts_with("mongodb://") || s.starts_with("mongodb+srv://") {
            return Ok(Self::Mongo(s.to_owned()));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Self::Postgres(s.to_owned()));
        }
        if s.starts_with("mysql://") {
            return Ok(Self::Mysql(s.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("mariadb://") {
            return Ok(Self::Mysql(format!("mysql://{rest}")));
        }
        Err(bad())
    }
}

impl fmt::Display for StoreUrl {
    /// The URL with any password hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Cookie => f.write_str("cookie"),
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Sled(path) => write!(f, "sled://{}", path.display()),
            Self::File(path) => write!(f, "file://{}", path.display()),
            Self::Redis(url) | Self::Mongo(url) | Self::Postgres(url) | Self::Mysql(url) => {
                f.write_str(&session_core::redact_url(url))
            }
            Self::RedisCluster(nodes) => {
                let nodes: Vec<String> =
                    nodes.iter().map(|n| session_core::redact_url(n)).collect();
                f.write_str(&nodes.join(","))
            }
        }
    }
}

/// An opened store and what the demo must know of it.
#[derive(Debug)]
pub struct Opened {
    /// The store, with its principal index (every server-side store keeps
    /// one; it is a `SessionStore` too); `None` for cookie-only sessions,
    /// which keep nothing on the server.
    pub store: Option<Arc<dyn PrincipalIndex>>,
    /// Its backend name, for logs and the page.
    pub backend: &'static str,
    /// Whether a reaper must run `delete_expired`: expired sessions stay
    /// until it removes them (memory, SQLite, sled, files, PostgreSQL,
    /// MySQL), or (Redis) the principal indexes keep entries of ended
    /// sessions until it, or a read of that user's list, removes them.
    pub needs_reaper: bool,
}

impl StoreUrl {
    /// Open the store, waiting a bounded time for a server.
    ///
    /// # Errors
    ///
    /// The store's error: an unreachable server, an unusable file.
    pub async fn open(&self) -> session_core::Result<Opened> {
        self.open_in(None).await
    }

    /// Open the store on `namespace` (a table, key prefix, collection, tree
    /// or directory, as each store names it; `None`: the store's default),
    /// waiting a bounded time for a server. The memory store has no
    /// namespaces: it is new and empty in every process.
    ///
    /// # Errors
    ///
    /// The store's error: an unreachable server, an unusable file, a
    /// namespace the store refuses.
    pub async fn open_in(&self, namespace: Option<&str>) -> session_core::Result<Opened> {
        /// `builder` with the namespace, if one is given.
        fn within<B>(builder: B, namespace: Option<&str>, with: impl FnOnce(B, String) -> B) -> B {
            match namespace {
                Some(namespace) => with(builder, namespace.to_owned()),
                None => builder,
            }
        }
        let opened = |store: Arc<dyn PrincipalIndex>, backend, needs_reaper| Opened {
            store: Some(store),
            backend,
            needs_reaper,
        };
        Ok(match self {
            Self::Cookie => Opened {
                store: None,
                backend: "cookie",
                needs_reaper: false,
            },
            Self::Memory => opened(
                Arc::new(session_store_memory::MemoryStore::new()),
                "memory",
                true,
            ),
            Self::Sqlite(path) => {
                create_parent(path)?;
                let builder = session_store_sqlite::SqliteStore::builder(path);
                let store = within(builder, namespace, |b, n| b.with_namespace(n))
                    .build()
                    .await?;
                opened(Arc::new(store), "sqlite", true)
            }
            Self::Sled(path) => {
                create_parent(path)?;
                let builder = session_store_sled::SledStore::builder(path);
                let store = within(builder, namespace, |b, n| b.with_namespace(n))
                    .build()
                    .await?;
                opened(Arc::new(store), "sled", true)
            }
            Self::Redis(url) => {
                let store = within(redis_builder(), namespace, |b, n| b.with_namespace(n))
                    .connect(url)
                    .await?;
                // Redis expires sessions itself; the reaper keeps the
                // principal indexes free of ended sessions.
                opened(Arc::new(store), "redis", true)
            }
            Self::RedisCluster(nodes) => {
                let store = within(redis_builder(), namespace, |b, n| b.with_namespace(n))
                    .connect_cluster(nodes)
                    .await?;
                opened(Arc::new(store), "redis-cluster", true)
            }
            Self::Mongo(url) => {
                let builder = session_store_mongo::MongoStoreBuilder::new()
                    .with_server_selection_timeout(CONNECT_TIMEOUT);
                let store = within(builder, namespace, |b, n| b.with_namespace(n))
                    .connect(url)
                    .await?;
                // The TTL index reaps; reads filter on expiry meanwhile.
                opened(Arc::new(store), "mongodb", false)
            }
            Self::File(path) => {
                let builder = session_store_file::FileStore::builder(path);
                let store = within(builder, namespace, |b, n| b.with_namespace(n))
                    .build()
                    .await?;
                opened(Arc::new(store), "file", true)
            }
            Self::Postgres(url) => {
                // Connecting is bounded by the operation timeout.
                let builder = session_store_postgres::PostgresStore::builder()
                    .with_operation_timeout(CONNECT_TIMEOUT);
                let store = within(builder, namespace, |b, n| b.with_namespace(n))
                    .connect(url)
                    .await?;
                // Expired rows stay (unreadable) until delete_expired.
                opened(Arc::new(store), "postgres", true)
            }
            Self::Mysql(url) => {
                let builder = session_store_mysql::MysqlStoreBuilder::new()
                    .with_operation_timeout(CONNECT_TIMEOUT);
                let store = within(builder, namespace, |b, n| b.with_namespace(n))
                    .connect(url)
                    .await?;
                // Reads filter on expiry; expired rows stay until reaped.
                opened(Arc::new(store), "mysql", true)
            }
        })
    }
}

fn redis_builder() -> session_store_redis::RedisStoreBuilder {
    session_store_redis::RedisStoreBuilder::new()
        .with_connection_timeout(CONNECT_TIMEOUT)
        .with_reconnect_retries(1)
}

fn create_parent(path: &Path) -> session_core::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent)
            .map_err(|e| session_core::Error::backend("filesystem", e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn every_form_parses() {
        assert_eq!("memory".parse(), Ok(StoreUrl::Memory));
        assert_eq!("cookie".parse(), Ok(StoreUrl::Cookie));
        assert_eq!(StoreUrl::Cookie.to_string(), "cookie");
        assert_eq!(
            "sqlite://data/s.db".parse(),
            Ok(StoreUrl::Sqlite("data/s.db".into()))
        );
        assert_eq!(
            "sqlite:///var/s.db".parse(),
            Ok(StoreUrl::Sqlite("/var/s.db".into()))
        );
        assert_eq!("sled://d".parse(), Ok(StoreUrl::Sled("d".into())));
        assert_eq!(
            "file:///var/sessions".parse(),
            Ok(StoreUrl::File("/var/sessions".into()))
        );
        assert_eq!(StoreUrl::File("d".into()).to_string(), "file://d");
        assert_eq!(
            "redis://127.0.0.1:6379/0".parse(),
            Ok(StoreUrl::Redis("redis://127.0.0.1:6379/0".into()))
        );
        assert_eq!(
            "redis+cluster://a:1, b:2".parse(),
            Ok(StoreUrl::RedisCluster(vec![
                "redis://a:1".into(),
                "redis://b:2".into()
            ]))
        );
        assert_eq!(
            "redis://a:1/,redis://b:2/".parse(),
            Ok(StoreUrl::RedisCluster(vec![
                "redis://a:1/".into(),
                "redis://b:2/".into()
            ]))
        );
        assert_eq!(
            "mongodb://h:27017/".parse(),
            Ok(StoreUrl::Mongo("mongodb://h:27017/".into()))
        );
        for url in [
            "postgres://u@h:5432/db",
            "postgresql://u@h/db?sslmode=disable",
        ] {
            assert_eq!(url.parse(), Ok(StoreUrl::Postgres(url.into())));
        }
        let url: StoreUrl = "postgres://ada:hunter2@h/db".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://***@h/db");
        assert_eq!(
            "mysql://root@h:3306/test".parse(),
            Ok(StoreUrl::Mysql("mysql://root@h:3306/test".into()))
        );
        assert_eq!(
            "mariadb://root@h:3306/test".parse(),
            Ok(StoreUrl::Mysql("mysql://root@h:3306/test".into()))
        );
        let url: StoreUrl = "mariadb://ada:hunter2@h/db".parse().unwrap();
        assert_eq!(url.to_string(), "mysql://***@h/db");
    }

    #[test]
    fn bad_values_are_refused_without_echoing_secrets() {
        for bad in [
            "",
            "postgress://x",
            "sqlite://",
            "file://",
            "redis+cluster://",
            "redis://a,b",
        ] {
            let err = bad.parse::<StoreUrl>().unwrap_err();
            assert!(err.to_string().contains("expected one of"), "{err}");
        }
        let err = "foo://user:hunter2@host".parse::<StoreUrl>().unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn display_hides_passwords() {
        let url: StoreUrl = "redis://:hunter2@host:6379/0".parse().unwrap();
        assert_eq!(url.to_string(), "redis://***@host:6379/0");
        let url: StoreUrl = "mongodb://ada:pw@h/db?x=a@b".parse().unwrap();
        assert_eq!(url.to_string(), "mongodb://***@h/db?x=a@b");
    }
}

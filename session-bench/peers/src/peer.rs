//! A tower-sessions store as a benchmark [`Target`], used the way a
//! tower-sessions user uses it: through its `SessionStore` trait (`create`,
//! `save`, `load`, `delete`) and nothing else.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use session_bench_workload::payload::{KEY_SEED, VARIANTS, keys, session_data};
use session_bench_workload::{Result, Target, payload::Payload};
use session_core::{SessionKey, Timestamp};
use tower_sessions_core::SessionStore;
use tower_sessions_core::session::{Id, Record};

/// The peers, named as on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Peer {
    /// `tower-sessions-memory-store`: one `tokio::sync::Mutex<HashMap>`.
    #[value(name = "memory-store")]
    Memory,
    /// `tower-sessions-moka-store`: a moka `future::Cache`, unbounded.
    #[value(name = "moka-store")]
    Moka,
    /// `tower-sessions-redis-store`: fred, a pool of 6 connections.
    #[value(name = "redis-store")]
    Redis,
    /// `tower-sessions-sqlx-store`'s `SqliteStore`: an sqlx pool (its default
    /// size) on a WAL file at `synchronous=NORMAL`, as our SQLite store runs.
    #[value(name = "sqlx-store")]
    Sqlx,
}

impl Peer {
    /// The crate, as written in the results.
    pub(crate) fn crate_name(self) -> &'static str {
        match self {
            Self::Memory => "tower-sessions-memory-store",
            Self::Moka => "tower-sessions-moka-store",
            Self::Redis => "tower-sessions-redis-store",
            Self::Sqlx => "tower-sessions-sqlx-store",
        }
    }

    /// Our backend on the same engine (session-bench's store name).
    pub(crate) fn engine(self) -> &'static str {
        match self {
            Self::Memory | Self::Moka => "memory",
            Self::Redis => "redis",
            Self::Sqlx => "sqlite",
        }
    }

    /// Open the peer's store, ready for `preload` sessions.
    pub(crate) async fn open(
        self,
        preload: usize,
        redis_url: &str,
        data_dir: Option<&Path>,
    ) -> Result<Opened> {
        let (target, guard): (Arc<dyn Target>, Option<tempfile::TempDir>) = match self {
            Self::Memory => (
                PeerTarget::target(tower_sessions_memory_store::MemoryStore::default(), preload),
                None,
            ),
            Self::Moka => (
                PeerTarget::target(tower_sessions_moka_store::MokaStore::new(None), preload),
                None,
            ),
            Self::Redis => (PeerTarget::target(redis(redis_url).await?, preload), None),
            Self::Sqlx => {
                let dir = match data_dir {
                    Some(d) => tempfile::tempdir_in(d)?,
                    None => tempfile::tempdir()?,
                };
                let store = sqlite(&dir.path().join("peer.db")).await?;
                (PeerTarget::target(store, preload), Some(dir))
            }
        };
        Ok(Opened {
            target,
            _dir: guard,
        })
    }
}

/// An open peer, and the temporary folder of its file (if any).
#[derive(Debug)]
pub(crate) struct Opened {
    /// The peer as a target.
    pub(crate) target: Arc<dyn Target>,
    _dir: Option<tempfile::TempDir>,
}

/// `tower-sessions-redis-store` on a fred pool, as its own example builds it
/// (6 connections).
async fn redis(
    url: &str,
) -> Result<tower_sessions_redis_store::RedisStore<tower_sessions_redis_store::fred::prelude::Pool>>
{
    use tower_sessions_redis_store::fred::prelude::{ClientLike as _, Config, Pool};
    let pool = Pool::new(Config::from_url(url)?, None, None, None, 6)?;
    let _connection = pool.connect();
    tokio::time::timeout(Duration::from_secs(10), pool.wait_for_connect())
        .await
        .map_err(|_| format!("Redis at {url}: no connection in 10 s"))??;
    Ok(tower_sessions_redis_store::RedisStore::new(pool))
}

/// `tower-sessions-sqlx-store`'s `SqliteStore` on a fresh file: WAL and
/// `synchronous=NORMAL` (our SQLite store's journal and default level, with
/// which session-bench runs it), sqlx's default pool, the store's own
/// `migrate`.
async fn sqlite(path: &Path) -> Result<tower_sessions_sqlx_store::SqliteStore> {
    use tower_sessions_sqlx_store::sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let pool = SqlitePoolOptions::new().connect_with(options).await?;
    let store = tower_sessions_sqlx_store::SqliteStore::new(pool);
    store.migrate().await?;
    Ok(store)
}

/// A tower-sessions store doing the workload's operations.
///
/// - `load`: `load(id)`, a hit if it returns a record;
/// - `write` (the `save` phase): `save(record)`, the store's unconditional
///   write (tower-sessions has no versioned update);
/// - `create`: `create(&mut record)` with a fresh id, a hit if the store
///   kept that id (it picks another on a collision);
/// - `touch`: tower-sessions has no touch; its equivalent is a `save` of the
///   record with the new expiry (what its session layer does when only the
///   expiry changed), so that is what is timed;
/// - `destroy`: `delete(id)`;
/// - `put` (preloading, untimed): `create`.
///
/// The id is the first 16 bytes of the workload's 32-byte key (tower-sessions
/// ids are 128-bit). Each write builds the `Record` it passes (the id, a clone
/// of the payload variant's data as a `HashMap`, the expiry): a
/// tower-sessions `Record` carries its id, so it cannot be built once per
/// variant as our side's payload is.
struct PeerTarget<S> {
    store: S,
    /// The workload's data per payload variant, as tower-sessions holds it.
    data: Vec<HashMap<String, serde_json::Value>>,
    /// Sessions preloaded (with [`KEY_SEED`]): what `clear` removes.
    preload: usize,
}

impl<S> fmt::Debug for PeerTarget<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTarget")
            .field("store", &std::any::type_name::<S>())
            .finish_non_exhaustive()
    }
}

impl<S: SessionStore> PeerTarget<S> {
    fn target(store: S, preload: usize) -> Arc<dyn Target> {
        let data = (0..VARIANTS as u64)
            .map(|n| {
                session_data(n)
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .collect();
        Arc::new(Self {
            store,
            data,
            preload,
        })
    }

    fn record(&self, key: &SessionKey, variant: u64, expires_at: Timestamp) -> Result<Record> {
        let data = &self.data[usize::try_from(variant).unwrap_or(0) % self.data.len()];
        Ok(Record {
            id: id(key),
            data: data.clone(),
            expiry_date: expires_at
                .to_offset_date_time()
                .ok_or("an expiry out of OffsetDateTime's range")?,
        })
    }
}

/// The tower-sessions id of a workload key: its first 16 bytes.
fn id(key: &SessionKey) -> Id {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&key.as_bytes()[..16]);
    Id(i128::from_le_bytes(bytes))
}

#[async_trait]
impl<S: SessionStore> Target for PeerTarget<S> {
    async fn load(&self, key: &SessionKey) -> Result<bool> {
        Ok(self.store.load(&id(key)).await?.is_some())
    }

    async fn write(&self, key: &SessionKey, payload: &Payload, _version: u64) -> Result<bool> {
        let record = self.record(key, payload.variant, payload.expires_at)?;
        self.store.save(&record).await?;
        Ok(true)
    }

    async fn create(&self, key: &SessionKey, payload: &Payload) -> Result<bool> {
        let mut record = self.record(key, payload.variant, payload.expires_at)?;
        let wanted = record.id;
        self.store.create(&mut record).await?;
        Ok(record.id == wanted)
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let record = self.record(key, 0, expires_at)?;
        self.store.save(&record).await?;
        Ok(true)
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        Ok(self.store.delete(&id(key)).await?)
    }

    async fn put(&self, key: &SessionKey, payload: &Payload) -> Result<()> {
        if self.create(key, payload).await? {
            Ok(())
        } else {
            Err("a preloaded id collided".into())
        }
    }

    async fn clear(&self) -> Result<()> {
        for key in keys(self.preload, KEY_SEED) {
            self.store.delete(&id(&key)).await?;
        }
        Ok(())
    }
}

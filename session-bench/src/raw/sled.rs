//! The sled engine's limit: plain `get` / `insert` / `compare_and_swap` /
//! `remove` on one tree, values = 8-byte expiry ‖ the data JSON; each write
//! flushed before it returns when the store's default syncs its writes, so
//! that both sides pay the same durability.

use std::sync::Arc;

use async_trait::async_trait;
use session_core::{SessionKey, Timestamp};
use sled::Tree;

use crate::Result;
use crate::backends::{Env, Opened, opened};
use crate::payload::Payload;
use crate::target::Target;

/// One sled tree, flushed in the background every 500 ms like the store's
/// default, and (`synced`) after every write before it returns, like the
/// store's default synced writes: a blocking `Db::flush` on tokio's
/// blocking pool, one per write (sled's `flush_async` deadlocks its own
/// pool under concurrency). No expiry index, no transaction, no group
/// commit of our own: the least work that stores, finds, re-dates and
/// removes a session's bytes at that durability.
#[derive(Debug)]
pub struct RawSled {
    db: sled::Db,
    tree: Tree,
    synced: bool,
}

impl RawSled {
    /// Open (creating) a database at `path`; `synced`: flush after every
    /// write.
    ///
    /// # Errors
    ///
    /// If sled fails.
    pub fn open(path: &std::path::Path, synced: bool) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(
                session_store_sled::DEFAULT_FLUSH_EVERY
                    .map(|every| u64::try_from(every.as_millis()).unwrap_or(u64::MAX)),
            )
            .open()?;
        let tree = db.open_tree("raw")?;
        Ok(Self { db, tree, synced })
    }

    /// After a write: flush it to disk if synced.
    async fn written(&self) -> Result<()> {
        if self.synced {
            let db = self.db.clone();
            tokio::task::spawn_blocking(move || db.flush()).await??;
        }
        Ok(())
    }
}

fn value(expires_at: i64, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&expires_at.to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn expiry(value: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    if let Some(head) = value.get(..8) {
        b.copy_from_slice(head);
    }
    i64::from_be_bytes(b)
}

#[async_trait]
impl Target for RawSled {
    async fn load(&self, key: &SessionKey) -> Result<bool> {
        let now = Timestamp::now().as_millis();
        let found = self.tree.get(key.as_bytes())?;
        Ok(found.is_some_and(|v| now < expiry(&v)))
    }

    async fn write(&self, key: &SessionKey, payload: &Payload, _expected: u64) -> Result<bool> {
        self.put(key, payload).await?;
        Ok(true)
    }

    async fn create(&self, key: &SessionKey, payload: &Payload) -> Result<bool> {
        let v = value(payload.expires_at.as_millis(), payload.data_json.as_bytes());
        let swapped = self
            .tree
            .compare_and_swap(key.as_bytes(), None::<&[u8]>, Some(v))?;
        if swapped.is_ok() {
            self.written().await?;
        }
        Ok(swapped.is_ok())
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let now = Timestamp::now().as_millis();
        let Some(old) = self.tree.get(key.as_bytes())? else {
            return Ok(false);
        };
        if now >= expiry(&old) {
            return Ok(false);
        }
        let mut new = old.to_vec();
        new[..8].copy_from_slice(&expires_at.as_millis().to_be_bytes());
        self.tree.insert(key.as_bytes(), new)?;
        self.written().await?;
        Ok(true)
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        if self.tree.remove(key.as_bytes())?.is_some() {
            self.written().await?;
        }
        Ok(())
    }

    async fn put(&self, key: &SessionKey, payload: &Payload) -> Result<()> {
        let v = value(payload.expires_at.as_millis(), payload.data_json.as_bytes());
        self.tree.insert(key.as_bytes(), v)?;
        self.written().await
    }

    async fn clear(&self) -> Result<()> {
        self.tree.clear()?;
        self.written().await
    }
}

/// The sled store (default settings: synced writes) and the raw tree at the
/// same durability, each in its own database folder.
pub(crate) async fn open_pair(env: &Env, namespace: &str) -> Result<Opened> {
    let dir = env.temp_dir()?;
    let store = session_store_sled::SledStore::builder(dir.path().join("store"))
        .with_namespace(namespace)
        .build()
        .await?;
    let path = dir.path().join("raw");
    let synced = session_store_sled::DEFAULT_SYNC_WRITES;
    let raw = tokio::task::spawn_blocking(move || RawSled::open(&path, synced)).await??;
    Ok(opened(Arc::new(store), Arc::new(raw), vec![Box::new(dir)]))
}

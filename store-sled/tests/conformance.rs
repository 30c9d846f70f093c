//! The shared behaviour suite on one sled database per factory.
//!
//! sled locks its directory, so a process can open a path only once at a
//! time: every namespace the suite opens shares one `sled::Db`. The factory
//! keeps only a `Weak` to it, so when the last store is dropped the
//! database really closes, and reopening a namespace opens the directory
//! again from disk (a true reopen, not a cached handle).

#![allow(
    clippy::panic,
    reason = "the factory must fail the test, with a message, when it cannot open a store"
)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use session_conformance::{Capabilities, StoreFactory, conformance_suite};
use session_core::{
    Record, Result, SessionKey, SessionStore, Timestamp, UpdateOutcome, async_trait,
};
use session_store_sled::{SledStore, sled};

struct Factory {
    /// Removed when the factory is dropped.
    _temp: tempfile::TempDir,
    dir: PathBuf,
    db: Mutex<Weak<sled::Db>>,
}

impl Factory {
    fn new() -> Self {
        let temp = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let dir = temp.path().join("db");
        Self {
            _temp: temp,
            dir,
            db: Mutex::new(Weak::new()),
        }
    }

    /// The open database, or the directory opened again if no store holds it.
    fn db(&self) -> Arc<sled::Db> {
        let mut slot = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = slot.upgrade() {
            return db;
        }
        // The previous handle may still be closing on another thread:
        // retry the directory lock for a while.
        let mut attempts = 0;
        let db = loop {
            match sled::Config::new().path(&self.dir).open() {
                Ok(db) => break Arc::new(db),
                Err(e) if attempts < 100 => {
                    attempts += 1;
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot open sled at {}: {e}", self.dir.display()),
            }
        };
        *slot = Arc::downgrade(&db);
        db
    }
}

/// A `SledStore` that keeps the factory's database handle alive.
struct Held {
    store: SledStore,
    _db: Arc<sled::Db>,
}

impl std::fmt::Debug for Held {
    // Not derived: sled's `Debug` for a `Db` prints every tree's contents.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.store.fmt(f)
    }
}

#[async_trait]
impl StoreFactory for Factory {
    type Store = Held;

    async fn open(&self, namespace: &str) -> Held {
        let db = self.db();
        let store = SledStore::new(&db, namespace)
            .unwrap_or_else(|e| panic!("cannot open namespace {namespace}: {e}"));
        Held { store, _db: db }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true)
    }
}

#[async_trait]
impl SessionStore for Held {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.store.load(key).await
    }
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        self.store.create(key, record).await
    }
    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        self.store.update(key, record, expected).await
    }
    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        self.store.save(key, record).await
    }
    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        self.store.touch(key, expires_at).await
    }
    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        self.store.destroy(key).await
    }
    async fn clear(&self) -> Result<()> {
        self.store.clear().await
    }
    async fn len(&self) -> Result<u64> {
        self.store.len().await
    }
    async fn all(&self) -> Result<Vec<(SessionKey, Record)>> {
        self.store.all().await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.store.delete_expired().await
    }
}

conformance_suite!(Factory::new());

/// The same suite through `Arc<dyn SessionStore>`.
mod dyn_store {
    use super::Factory;
    session_conformance::conformance_suite!(session_conformance::Dyn(Factory::new()));
}

//! A fault-injecting wrapper around a small correct store, shared by the
//! tests.
//!
//! The store is `SessionStore`'s "implementing a store" doc example
//! (`tiny_store.rs`, included there and in the crate's other doc examples),
//! so session-core needs no store crate, not even as a dev-dependency.
#![allow(dead_code, unreachable_pub, reason = "shared by several test crates")]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use session_core::{
    Error, Record, Result, SessionKey, SessionStore, Timestamp, UpdateOutcome, async_trait,
};

mod tiny_store;
pub use tiny_store::TinyStore;

/// Wraps a correct store, counts calls and injects faults on demand.
#[derive(Debug, Default)]
pub struct Faulty {
    pub inner: TinyStore,
    pub loads: AtomicU32,
    pub creates: AtomicU32,
    pub updates: AtomicU32,
    pub fail_destroy: AtomicBool,
    pub fail_create: AtomicBool,
    pub create_collides: AtomicBool,
    pub always_conflict: AtomicBool,
    pub sweeps: AtomicU32,
    pub fail_sweep: AtomicBool,
}

pub fn injected() -> Error {
    Error::backend("faulty", std::io::Error::other("injected failure"))
}

#[async_trait]
impl SessionStore for Faulty {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key).await
    }
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        if self.fail_create.load(Ordering::SeqCst) {
            return Err(injected());
        }
        if self.create_collides.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.inner.create(key, record).await
    }
    async fn update(&self, key: &SessionKey, record: &Record, v: u64) -> Result<UpdateOutcome> {
        self.updates.fetch_add(1, Ordering::SeqCst);
        if self.always_conflict.load(Ordering::SeqCst) {
            return Ok(UpdateOutcome::Conflict);
        }
        self.inner.update(key, record, v).await
    }
    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        self.inner.save(key, record).await
    }
    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        self.inner.touch(key, expires_at).await
    }
    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        if self.fail_destroy.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.destroy(key).await
    }
    async fn clear(&self) -> Result<()> {
        self.inner.clear().await
    }
    async fn len(&self) -> Result<u64> {
        self.inner.len().await
    }
    async fn all(&self) -> Result<Vec<(SessionKey, Record)>> {
        self.inner.all().await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.sweeps.fetch_add(1, Ordering::SeqCst);
        if self.fail_sweep.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.delete_expired().await
    }
}

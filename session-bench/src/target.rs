//! Something that does the phases: a store, or a raw engine doing the same
//! work directly.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use session_core::{SessionKey, SessionStore, Timestamp, UpdateOutcome};

use crate::Result;
use crate::payload::Payload;

/// The operations of the standard workload, as one target performs them.
///
/// A [`StoreTarget`] maps them onto a [`SessionStore`]; each raw baseline
/// maps them onto its engine's own primitives (a `GET`, a `SELECT`, a map
/// lookup) on the same bytes, which is the limit a store on that engine can
/// approach.
///
/// Every method reports whether the operation found what the workload
/// expects (`true`), so that a misbehaving target shows up as misses instead
/// of as an implausibly fast run.
#[async_trait]
pub trait Target: fmt::Debug + Send + Sync + 'static {
    /// Read the live value under `key`; `true` if there was one.
    async fn load(&self, key: &SessionKey) -> Result<bool>;

    /// The `save` phase. A store does its versioned `update` from
    /// `expected_version` (`true` if applied); a raw engine does its plain
    /// unconditional write.
    async fn write(
        &self,
        key: &SessionKey,
        payload: &Payload,
        expected_version: u64,
    ) -> Result<bool>;

    /// Insert under a fresh key, only if absent; `true` if inserted.
    async fn create(&self, key: &SessionKey, payload: &Payload) -> Result<bool>;

    /// Move the expiry of the live value under `key`; `true` if it did.
    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool>;

    /// Remove `key`.
    async fn destroy(&self, key: &SessionKey) -> Result<()>;

    /// Unconditional insert-or-replace, used to preload (not timed).
    async fn put(&self, key: &SessionKey, payload: &Payload) -> Result<()>;

    /// Remove everything this target wrote (its namespace only).
    async fn clear(&self) -> Result<()>;
}

/// A [`SessionStore`] as a benchmark target.
#[derive(Debug, Clone)]
pub struct StoreTarget {
    store: Arc<dyn SessionStore>,
}

impl StoreTarget {
    /// Benchmark `store`.
    #[must_use]
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self { store }
    }

    /// The store itself.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }
}

#[async_trait]
impl Target for StoreTarget {
    async fn load(&self, key: &SessionKey) -> Result<bool> {
        Ok(self.store.load(key).await?.is_some())
    }

    async fn write(
        &self,
        key: &SessionKey,
        payload: &Payload,
        expected_version: u64,
    ) -> Result<bool> {
        let outcome = self
            .store
            .update(key, &payload.record, expected_version)
            .await?;
        Ok(outcome == UpdateOutcome::Updated)
    }

    async fn create(&self, key: &SessionKey, payload: &Payload) -> Result<bool> {
        Ok(self.store.create(key, &payload.record).await?)
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        Ok(self.store.touch(key, expires_at).await?)
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        Ok(self.store.destroy(key).await?)
    }

    async fn put(&self, key: &SessionKey, payload: &Payload) -> Result<()> {
        Ok(self.store.save(key, &payload.record).await?)
    }

    async fn clear(&self) -> Result<()> {
        Ok(self.store.clear().await?)
    }
}

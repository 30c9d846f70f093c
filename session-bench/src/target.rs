//! Something that does the phases: a store, or a raw engine doing the same
//! work directly.

use std::sync::Arc;

use async_trait::async_trait;
use session_core::{SessionKey, SessionStore, Timestamp, UpdateOutcome};

use crate::Result;
use crate::payload::Payload;
pub use session_bench_workload::target::Target;

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

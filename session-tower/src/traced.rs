//! A store wrapper that reports every call to `tracing`: the backend, the
//! operation, how long it took and whether it failed. Never the key's
//! session ID (stores see only hashed keys, and those are not logged
//! either).

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;

use session_core::{
    Cursor, Page, Record, Result, SessionKey, SessionStore, Timestamp, UpdateOutcome, async_trait,
};

#[derive(Debug)]
pub(crate) struct Traced {
    inner: Arc<dyn SessionStore>,
    backend: &'static str,
}

impl Traced {
    pub(crate) fn new(inner: Arc<dyn SessionStore>, backend: &'static str) -> Self {
        Self { inner, backend }
    }

    async fn call<T>(&self, op: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        // The clock is read only if someone listens.
        let started = tracing::enabled!(target: "session_tower::store", tracing::Level::WARN)
            .then(Instant::now);
        let result = call.await;
        let Some(started) = started else {
            return result;
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match &result {
            Ok(_) => tracing::debug!(
                target: "session_tower::store",
                backend = self.backend,
                op,
                micros,
                "store call"
            ),
            Err(error) => tracing::warn!(
                target: "session_tower::store",
                backend = self.backend,
                op,
                micros,
                %error,
                "store call failed"
            ),
        }
        result
    }
}

#[async_trait]
impl SessionStore for Traced {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.call("load", self.inner.load(key)).await
    }
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        self.call("create", self.inner.create(key, record)).await
    }
    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        version: u64,
    ) -> Result<UpdateOutcome> {
        self.call("update", self.inner.update(key, record, version))
            .await
    }
    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        self.call("save", self.inner.save(key, record)).await
    }
    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        self.call("touch", self.inner.touch(key, expires_at)).await
    }
    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        self.call("destroy", self.inner.destroy(key)).await
    }
    async fn clear(&self) -> Result<()> {
        self.call("clear", self.inner.clear()).await
    }
    async fn len(&self) -> Result<u64> {
        self.call("len", self.inner.len()).await
    }
    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        self.call("list", self.inner.list(cursor, limit)).await
    }
    async fn all(&self) -> Result<Vec<(SessionKey, Record)>> {
        self.call("all", self.inner.all()).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.call("delete_expired", self.inner.delete_expired())
            .await
    }
}

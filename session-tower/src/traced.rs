//! A store wrapper that reports every call to `tracing`: the backend, the
//! operation, how long it took and whether it failed. Never the key's
//! session ID (stores see only hashed keys, and those are not logged
//! either).

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;

use session_core::{
    Cursor, Page, Principal, PrincipalIndex, Record, Result, SessionKey, SessionStore, Timestamp,
    UpdateOutcome, async_trait,
};

/// `S` is `dyn SessionStore`, or `dyn PrincipalIndex` for a layer whose
/// store keeps the index (then the index calls are traced too).
#[derive(Debug)]
pub(crate) struct Traced<S: ?Sized> {
    inner: Arc<S>,
    backend: &'static str,
}

impl<S: ?Sized + Send + Sync> Traced<S> {
    pub(crate) fn new(inner: Arc<S>, backend: &'static str) -> Self {
        Self { inner, backend }
    }

    async fn call<T: Send>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
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
impl<S: SessionStore + ?Sized> SessionStore for Traced<S> {
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

#[async_trait]
impl<S: PrincipalIndex + ?Sized> PrincipalIndex for Traced<S> {
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<(SessionKey, Record)>> {
        self.call("sessions_of", self.inner.sessions_of(principal))
            .await
    }
    async fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
    ) -> Result<u64> {
        self.call(
            "destroy_all_of",
            self.inner.destroy_all_of(principal, except),
        )
        .await
    }
    async fn index_len(&self, principal: &Principal) -> Result<u64> {
        self.call("index_len", self.inner.index_len(principal))
            .await
    }
}

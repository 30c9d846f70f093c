//! Wrapping the reference store to change one behaviour: deliberate faults
//! (broken stores the suite must catch) and harmless disturbances (stalls
//! the suite must tolerate).

use std::borrow::Cow;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::num::NonZeroUsize;

use session_conformance::{Capabilities, StoreFactory};
use session_core::{
    Cursor, Page, Record, Result, SessionKey, SessionStore, Timestamp, UpdateOutcome, async_trait,
};

use super::{RefFactory, RefStore};

/// One deliberate deviation from the contract. Every method defaults to the
/// reference store's correct behaviour; a fault overrides one or two.
#[async_trait]
pub(crate) trait Fault: Debug + Default + Send + Sync + 'static {
    async fn load(&self, s: &RefStore, key: &SessionKey) -> Result<Option<Record>> {
        s.load(key).await
    }
    /// What `create`, `save` and `update` store in place of `record`: a
    /// fault that corrupts every write overrides only this.
    fn written<'a>(&self, record: &'a Record) -> Cow<'a, Record> {
        Cow::Borrowed(record)
    }
    async fn create(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<bool> {
        s.create(key, &self.written(record)).await
    }
    async fn update(
        &self,
        s: &RefStore,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        s.update(key, &self.written(record), expected).await
    }
    async fn save(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<()> {
        s.save(key, &self.written(record)).await
    }
    async fn touch(&self, s: &RefStore, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        s.touch(key, expires_at).await
    }
    async fn destroy(&self, s: &RefStore, key: &SessionKey) -> Result<()> {
        s.destroy(key).await
    }
    async fn clear(&self, s: &RefStore) -> Result<()> {
        s.clear().await
    }
    async fn len(&self, s: &RefStore) -> Result<u64> {
        s.len().await
    }
    async fn list(
        &self,
        s: &RefStore,
        cursor: Option<&Cursor>,
        limit: NonZeroUsize,
    ) -> Result<Page> {
        s.list(cursor, limit).await
    }
    async fn delete_expired(&self, s: &RefStore) -> Result<u64> {
        s.delete_expired().await
    }
}

/// The reference store with fault `B`.
#[derive(Debug)]
pub(crate) struct Faulty<B> {
    inner: RefStore,
    fault: B,
}

#[async_trait]
impl<B: Fault> SessionStore for Faulty<B> {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.fault.load(&self.inner, key).await
    }
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        self.fault.create(&self.inner, key, record).await
    }
    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        self.fault.update(&self.inner, key, record, expected).await
    }
    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        self.fault.save(&self.inner, key, record).await
    }
    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        self.fault.touch(&self.inner, key, expires_at).await
    }
    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        self.fault.destroy(&self.inner, key).await
    }
    async fn clear(&self) -> Result<()> {
        self.fault.clear(&self.inner).await
    }
    async fn len(&self) -> Result<u64> {
        self.fault.len(&self.inner).await
    }
    // `all` is the trait's: `list` followed to its end, so a fault in
    // `list` shows in `all` as it would in a real store.
    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        self.fault.list(&self.inner, cursor, limit).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.fault.delete_expired(&self.inner).await
    }
}

/// Opens [`Faulty`] stores over one reference universe.
#[derive(Debug, Default)]
pub(crate) struct FaultyFactory<B> {
    reference: RefFactory,
    fault: PhantomData<B>,
}

#[async_trait]
impl<B: Fault> StoreFactory for FaultyFactory<B> {
    type Store = Faulty<B>;

    async fn open(&self, namespace: &str) -> Faulty<B> {
        Faulty {
            inner: self.reference.open(namespace).await,
            fault: B::default(),
        }
    }

    fn capabilities(&self) -> Capabilities {
        self.reference.capabilities()
    }
}

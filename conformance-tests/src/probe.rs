//! [`Probe`]: a store wrapper for the tests of code that *uses* a store (a
//! web layer, a session manager): it counts every call and makes chosen
//! operations fail or misbehave on demand.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use session_conformance::fixtures::key;
//! use session_conformance::probe::{Op, Probe, Trouble};
//! use session_core::SessionStore;
//! use session_store_memory::MemoryStore;
//!
//! let store = Probe::new(MemoryStore::new());
//! assert_eq!(store.load(&key()).await.unwrap(), None);
//! assert_eq!(store.calls(Op::Load), 1);
//!
//! store.set(&[Op::Load], Some(Trouble::Fail));
//! assert!(store.load(&key()).await.is_err());
//! store.heal();
//! assert_eq!(store.total_calls(), 2);
//! # }
//! ```

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use session_core::{
    Cursor, Error, Page, Record, Result, SessionKey, SessionStore, Timestamp, UpdateOutcome,
    async_trait,
};

/// A method of [`SessionStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `load`.
    Load,
    /// `create`.
    Create,
    /// `update`.
    Update,
    /// `save`.
    Save,
    /// `touch`.
    Touch,
    /// `destroy`.
    Destroy,
    /// `clear`.
    Clear,
    /// `len`.
    Len,
    /// `list`.
    List,
    /// `all`.
    All,
    /// `delete_expired`.
    DeleteExpired,
}

impl Op {
    /// Every operation.
    pub const ALL: [Self; 11] = [
        Self::Load,
        Self::Create,
        Self::Update,
        Self::Save,
        Self::Touch,
        Self::Destroy,
        Self::Clear,
        Self::Len,
        Self::List,
        Self::All,
        Self::DeleteExpired,
    ];

    /// The operations that write one session: `create`, `update`, `save`,
    /// `touch`, `destroy`.
    pub const WRITES: [Self; 5] = [
        Self::Create,
        Self::Update,
        Self::Save,
        Self::Touch,
        Self::Destroy,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// What a troubled operation does instead of its job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Trouble {
    /// Fail with [`Error::Backend`] (backend `"probe"`), writing nothing.
    Fail,
    /// `load` only: fail with [`Error::Decode`] naming the key, as a store
    /// holding garbage does.
    Corrupt,
    /// `create` only: answer `false` (a collision), writing nothing.
    Collide,
    /// `update` only: answer [`UpdateOutcome::Conflict`], writing nothing.
    Conflict,
}

impl Trouble {
    fn code(self) -> u8 {
        match self {
            Self::Fail => 1,
            Self::Corrupt => 2,
            Self::Collide => 3,
            Self::Conflict => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Fail),
            2 => Some(Self::Corrupt),
            3 => Some(Self::Collide),
            4 => Some(Self::Conflict),
            _ => None,
        }
    }
}

/// The failure a [`Trouble::Fail`] operation returns.
#[must_use]
pub fn injected() -> Error {
    Error::backend("probe", std::io::Error::other("injected failure"))
}

/// Wraps a correct store: counts every call per [`Op`] and, for the
/// operations [`set`](Self::set) names, does the chosen [`Trouble`]
/// instead. Thread-safe; share it through an `Arc`.
pub struct Probe<S> {
    inner: S,
    calls: [AtomicU32; Op::ALL.len()],
    trouble: [AtomicU8; Op::ALL.len()],
    /// Latency added before every call, in microseconds.
    delay_micros: AtomicU64,
}

impl<S: fmt::Debug> fmt::Debug for Probe<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("inner", &self.inner)
            .field("calls", &self.total_calls())
            .finish_non_exhaustive()
    }
}

impl<S: Default> Default for Probe<S> {
    fn default() -> Self {
        Self::new(S::default())
    }
}

impl<S> Probe<S> {
    /// Wrap `inner`, with no trouble set.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            calls: Default::default(),
            trouble: Default::default(),
            delay_micros: AtomicU64::new(0),
        }
    }

    /// From now on, every call waits `delay` before it runs (a store far
    /// away), so that concurrent callers really overlap.
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.delay_micros.store(micros, Ordering::SeqCst);
    }

    /// The wrapped store, to look behind the probe's back.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Calls of `op` so far (troubled ones included).
    #[must_use]
    pub fn calls(&self, op: Op) -> u32 {
        self.calls[op.index()].load(Ordering::SeqCst)
    }

    /// Calls of every operation so far.
    #[must_use]
    pub fn total_calls(&self) -> u32 {
        Op::ALL.iter().map(|&op| self.calls(op)).sum()
    }

    /// Calls of the [`Op::WRITES`] so far.
    #[must_use]
    pub fn write_calls(&self) -> u32 {
        Op::WRITES.iter().map(|&op| self.calls(op)).sum()
    }

    /// From now on, `ops` do `trouble` (`None`: their job again).
    pub fn set(&self, ops: &[Op], trouble: Option<Trouble>) {
        let code = trouble.map_or(0, Trouble::code);
        for op in ops {
            self.trouble[op.index()].store(code, Ordering::SeqCst);
        }
    }

    /// Every operation does its job again.
    pub fn heal(&self) {
        self.set(&Op::ALL, None);
    }
}

/// The waiting parts, for stores (which are `Sync`).
impl<S: Send + Sync> Probe<S> {
    /// Wait the configured delay, if any.
    async fn pause(&self) {
        let micros = self.delay_micros.load(Ordering::SeqCst);
        if micros > 0 {
            tokio::time::sleep(Duration::from_micros(micros)).await;
        }
    }

    /// Count a call of `op`, wait the delay, and say what trouble it has.
    async fn enter(&self, op: Op) -> Option<Trouble> {
        self.calls[op.index()].fetch_add(1, Ordering::SeqCst);
        self.pause().await;
        Trouble::from_code(self.trouble[op.index()].load(Ordering::SeqCst))
    }

    /// `Err` if `op` is set to fail.
    async fn check(&self, op: Op) -> Result<()> {
        match self.enter(op).await {
            Some(Trouble::Fail) => Err(injected()),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for Probe<S> {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        match self.enter(Op::Load).await {
            Some(Trouble::Fail) => Err(injected()),
            Some(Trouble::Corrupt) => Err(Error::decode(key, "garbage injected by the probe")),
            _ => self.inner.load(key).await,
        }
    }
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        match self.enter(Op::Create).await {
            Some(Trouble::Fail) => Err(injected()),
            Some(Trouble::Collide) => Ok(false),
            _ => self.inner.create(key, record).await,
        }
    }
    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        version: u64,
    ) -> Result<UpdateOutcome> {
        match self.enter(Op::Update).await {
            Some(Trouble::Fail) => Err(injected()),
            Some(Trouble::Conflict) => Ok(UpdateOutcome::Conflict),
            _ => self.inner.update(key, record, version).await,
        }
    }
    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        self.check(Op::Save).await?;
        self.inner.save(key, record).await
    }
    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        self.check(Op::Touch).await?;
        self.inner.touch(key, expires_at).await
    }
    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        self.check(Op::Destroy).await?;
        self.inner.destroy(key).await
    }
    async fn clear(&self) -> Result<()> {
        self.check(Op::Clear).await?;
        self.inner.clear().await
    }
    async fn len(&self) -> Result<u64> {
        self.check(Op::Len).await?;
        self.inner.len().await
    }
    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        self.check(Op::List).await?;
        self.inner.list(cursor, limit).await
    }
    async fn all(&self) -> Result<Vec<(SessionKey, Record)>> {
        self.check(Op::All).await?;
        self.inner.all().await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.check(Op::DeleteExpired).await?;
        self.inner.delete_expired().await
    }
}

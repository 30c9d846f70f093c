//! [`MemoryStoreBuilder`]: a capacity bound and the shard count, checked
//! when the store is built.

use std::num::NonZeroUsize;

use session_core::{Error, Result};

use crate::store::MAX_SHARDS;
use crate::{BACKEND, MemoryStore};

/// Configures a [`MemoryStore`]; every setting is checked by
/// [`build`](Self::build), which reports mistakes as
/// [`Error::Config`](session_core::Error::Config).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// use std::num::NonZeroUsize;
/// use session_store_memory::MemoryStore;
///
/// let store = MemoryStore::builder()
///     .with_max_sessions(NonZeroUsize::new(100_000).unwrap())
///     .build()
///     .await?;
/// assert_eq!(store.max_sessions().map(NonZeroUsize::get), Some(100_000));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct MemoryStoreBuilder {
    max_sessions: Option<NonZeroUsize>,
    shards: Option<usize>,
}

impl MemoryStoreBuilder {
    /// The defaults: unbounded, the automatic shard count.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bound the store to at most `max` sessions, evicting when a new key
    /// arrives in a full shard (see the crate documentation, "Capacity and
    /// eviction").
    ///
    /// Unless [`with_shards`](Self::with_shards) fixes the shard count, the
    /// store uses fewer shards when the bound is small, so that each shard's
    /// share (`max / shards`) is at least 1024 sessions; below 2048 sessions
    /// there is one shard and the bound is exact.
    pub fn with_max_sessions(mut self, max: NonZeroUsize) -> Self {
        self.max_sessions = Some(max);
        self
    }

    /// Use `shards` shards (1 to 65,536, rounded up to a power of two)
    /// instead of the automatic count. With a capacity bound the count is
    /// further limited to at most `max_sessions`, so every shard may hold at
    /// least one session.
    pub fn with_shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Check the settings and build the (empty) store.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the shard count is 0 or above 65,536.
    #[allow(
        clippy::unused_async,
        reason = "every store's build is async; this one has nothing to wait for"
    )]
    pub async fn build(self) -> Result<MemoryStore> {
        self.build_now()
    }

    /// [`build`](Self::build), for callers without a runtime.
    pub(crate) fn build_now(self) -> Result<MemoryStore> {
        if let Some(shards) = self.shards
            && !(1..=MAX_SHARDS).contains(&shards)
        {
            return Err(Error::config(
                BACKEND,
                format!("with_shards({shards}): the shard count must be 1 to {MAX_SHARDS}"),
            ));
        }
        Ok(MemoryStore::with_layout(self.shards, self.max_sessions))
    }
}

//! Something that does the phases: a store, or a raw engine doing the same
//! work directly.

use std::fmt;

use async_trait::async_trait;
use session_core::{SessionKey, Timestamp};

use crate::Result;
use crate::payload::Payload;

/// The operations of the standard workload, as one target performs them.
///
/// session-bench's `StoreTarget` maps them onto a
/// [`SessionStore`](session_core::SessionStore); each raw baseline maps them
/// onto its engine's own primitives (a `GET`, a `SELECT`, a map lookup) on
/// the same bytes, which is the limit a store on that engine can approach;
/// the peers (`session-bench/peers`) map them onto a tower-sessions store's
/// `create`, `save`, `load` and `delete`.
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
    /// unconditional write, and so does a peer (its `save`).
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

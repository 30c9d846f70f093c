#![doc = include_str!("../README.md")]

mod codec;
mod config;
mod store;

pub use crate::config::{DEFAULT_FLUSH_EVERY_MS, DEFAULT_NAMESPACE, SledStoreBuilder};
pub use crate::store::SledStore;

/// The sled version this crate uses, re-exported so that callers can open
/// and share the same [`sled::Db`].
pub use sled;

/// The backend name in [`session_core::Error`]s from this crate.
pub(crate) const BACKEND: &str = "sled";

/// Wrap a driver error.
pub(crate) fn backend(e: sled::Error) -> session_core::Error {
    session_core::Error::backend(BACKEND, e)
}

/// Run blocking work on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> session_core::Result<T>
where
    F: FnOnce() -> session_core::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| session_core::Error::backend(BACKEND, e))?
}

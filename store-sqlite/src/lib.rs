#![doc = include_str!("../README.md")]

mod builder;
mod pool;
mod principal;
mod schema;
mod store;

pub use crate::builder::{
    DEFAULT_BUSY_TIMEOUT, DEFAULT_CACHE_SIZE, DEFAULT_NAMESPACE, DEFAULT_READ_CONNECTIONS,
    DEFAULT_REAP_BATCH, SqliteStoreBuilder, Synchronous,
};
pub use crate::schema::SCHEMA_VERSION;
pub use crate::store::SqliteStore;

/// The SQLite driver this crate uses, re-exported so that callers can open
/// and inspect the same database with the same version.
pub use rusqlite;

/// The backend name in [`session_core::Error`]s from this crate.
pub const BACKEND: &str = "sqlite";

/// Wrap a driver error.
pub(crate) fn backend(e: rusqlite::Error) -> session_core::Error {
    session_core::Error::backend(BACKEND, e)
}

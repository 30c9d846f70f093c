#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod principal;
mod schema;
mod store;
#[cfg(feature = "rustls")]
mod tls;

pub use crate::builder::{
    DEFAULT_NAMESPACE, DEFAULT_OPERATION_TIMEOUT, DEFAULT_POOL_SIZE, DEFAULT_REAP_BATCH,
    DEFAULT_SCHEMA, PostgresStoreBuilder,
};
pub use crate::schema::SCHEMA_VERSION;
pub use crate::store::PostgresStore;

/// The connection pool this crate uses, re-exported so that callers can
/// build a pool themselves for [`PostgresStoreBuilder::build`].
pub use deadpool_postgres;
/// The PostgreSQL driver this crate uses, re-exported so that callers can
/// run their own statements with the same version.
pub use tokio_postgres;

/// The backend name in [`session_core::Error`]s from this crate.
pub const BACKEND: &str = "postgres";

/// Wrap a driver or pool error.
pub(crate) fn backend(
    e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
) -> session_core::Error {
    session_core::Error::backend(BACKEND, e)
}

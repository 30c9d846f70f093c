#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod principal;
mod retry;
mod row;
mod schema;
mod store;

pub use crate::builder::{
    DEFAULT_NAMESPACE, DEFAULT_OPERATION_TIMEOUT, DEFAULT_POOL_SIZE, DEFAULT_REAP_BATCH,
    MysqlStoreBuilder,
};
pub use crate::schema::{LAYOUT_VERSION, REGISTRY};
pub use crate::store::MysqlStore;

/// The driver this store runs on, re-exported so that options and pools
/// built by hand use the same version.
pub use mysql_async;

/// The backend name in [`session_core::Error`]s from this crate.
pub const BACKEND: &str = "mysql";

/// Wrap a driver error.
pub(crate) fn backend(e: mysql_async::Error) -> session_core::Error {
    session_core::Error::backend(BACKEND, e)
}

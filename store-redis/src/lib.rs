#![doc = include_str!("../README.md")]

mod builder;
mod connection;
mod format;
mod index;
mod list;
mod scan;
mod scripts;
mod sentinel;
mod store;

pub use crate::builder::{
    DEFAULT_NAMESPACE, DEFAULT_OPERATION_TIMEOUT, DEFAULT_SCAN_COUNT, DEFAULT_TIMEOUT,
    RedisStoreBuilder,
};
pub use crate::connection::RedisConnection;
pub use crate::sentinel::SentinelConnection;
pub use crate::store::RedisStore;

/// The driver this store runs on, re-exported so that a connection built by
/// hand uses the same version.
pub use redis;

/// The backend name in [`session_core::Error`]s from this crate.
pub const BACKEND: &str = "redis";

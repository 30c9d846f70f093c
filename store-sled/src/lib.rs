#![doc = include_str!("../README.md")]

mod builder;
mod codec;
mod flush;
mod index;
mod owners;
mod shared;
mod store;

pub use crate::builder::{
    DEFAULT_FLUSH_EVERY, DEFAULT_NAMESPACE, DEFAULT_SYNC_WRITES, SledStoreBuilder,
};
pub use crate::store::SledStore;

/// The sled version this crate uses, re-exported so that callers can open
/// and share the same [`sled::Db`].
pub use sled;

/// The backend name in [`session_core::Error`]s from this crate.
pub const BACKEND: &str = "sled";

/// Wrap a driver error.
pub(crate) fn backend(e: sled::Error) -> session_core::Error {
    session_core::Error::backend(BACKEND, e)
}

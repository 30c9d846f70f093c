#![doc = include_str!("../README.md")]

mod builder;
mod hash;
mod shard;
mod store;
#[cfg(test)]
mod tests;

pub use crate::builder::MemoryStoreBuilder;
pub use crate::store::MemoryStore;

/// The backend name in [`session_core::Error`]s from this crate.
pub const BACKEND: &str = "memory";

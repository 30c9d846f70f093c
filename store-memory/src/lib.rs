#![doc = include_str!("../README.md")]

mod hash;
mod shard;
mod store;
#[cfg(test)]
mod tests;

pub use crate::store::MemoryStore;

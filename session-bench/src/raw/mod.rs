//! Raw baselines: each engine doing the workload's work directly, without a
//! session store, on the same bytes. A store's throughput divided by its
//! baseline's, measured in the same run, says how close the store comes to
//! the limit of its engine.

#[cfg(feature = "file")]
pub mod file;
pub mod memory;
#[cfg(feature = "mongo")]
pub mod mongo;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sled")]
pub mod sled;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use self::memory::RawMemory;

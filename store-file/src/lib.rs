#![doc = include_str!("../README.md")]

mod builder;
mod format;
mod index;
mod layout;
mod ops;
mod owners;
mod shard;
mod store;

use std::path::{Path, PathBuf};

pub use crate::builder::{DEFAULT_BUCKET, DEFAULT_NAMESPACE, Durability, FileStoreBuilder};
pub use crate::store::FileStore;

/// The backend name in [`session_core::Error`]s from this crate.
pub const BACKEND: &str = "file";

/// A file system error, with what was being done to which path.
#[derive(Debug)]
struct IoError {
    what: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot {} {}", self.what, self.path.display())
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Wrap a file system error as [`session_core::Error::Backend`].
pub(crate) fn io_error(
    what: &'static str,
    path: &Path,
    source: std::io::Error,
) -> session_core::Error {
    session_core::Error::backend(
        BACKEND,
        IoError {
            what,
            path: path.to_owned(),
            source,
        },
    )
}

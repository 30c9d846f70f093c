//! Running a synchronous engine's calls from async store methods.

use crate::{Error, Result};

/// Run `work` on tokio's blocking pool and return its result: for stores
/// whose engine has no async API (an embedded database, file I/O), so no
/// blocking call ever runs on an async worker thread.
///
/// A panic or cancellation of the blocking task becomes
/// [`Error::Backend`] of `backend`, never a panic of the caller.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// let size = session_core::run_blocking("files", || {
///     std::fs::metadata(".")
///         .map(|m| m.len())
///         .map_err(|e| session_core::Error::backend("files", e))
/// })
/// .await?;
/// # let _ = size;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// `work`'s error, or [`Error::Backend`] if the task panicked or was
/// cancelled.
pub async fn run_blocking<T, F>(backend: &'static str, work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::backend(backend, e))?
}

//! One periodic reaper for every store.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::SessionStore;

/// Settings of a [`Reaper`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct ReaperConfig {
    interval: Duration,
    jitter: Duration,
}

impl ReaperConfig {
    /// Sweep every `interval` (at least 1 ms).
    pub fn new(interval: Duration) -> Self {
        Self {
            interval: interval.max(Duration::from_millis(1)),
            jitter: Duration::ZERO,
        }
    }

    /// Add a random delay of up to `jitter` to each wait, so that many
    /// processes sharing one server do not all sweep at the same instant.
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    fn next_wait(&self) -> Duration {
        if self.jitter.is_zero() {
            return self.interval;
        }
        let mut bytes = [0u8; 8];
        // Jitter is best effort: without randomness, sweep on the plain
        // interval rather than fail.
        if getrandom::fill(&mut bytes).is_err() {
            return self.interval;
        }
        let fraction = u64::from_le_bytes(bytes) as f64 / u64::MAX as f64;
        self.interval + self.jitter.mul_f64(fraction)
    }
}

/// A spawned task that calls [`SessionStore::delete_expired`] periodically.
///
/// Failures are logged (`tracing` at `warn`) and the reaper carries on.
/// [`stop`](Self::stop) ends it after the sweep in progress, if any;
/// dropping the handle aborts it.
///
/// ```
/// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/tiny_store.rs"));
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::{sync::Arc, time::Duration};
/// use session_core::{Reaper, ReaperConfig};
/// let store = Arc::new(TinyStore::default()); // any SessionStore
/// let reaper = Reaper::spawn(store, ReaperConfig::new(Duration::from_secs(60)));
/// // ... serve requests ...
/// reaper.stop().await;
/// # }
/// ```
#[derive(Debug)]
pub struct Reaper {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Reaper {
    /// Spawn the reaper on the current tokio runtime. The first sweep happens
    /// one interval after spawning.
    ///
    /// # Panics
    ///
    /// Like [`tokio::spawn`], if called outside a tokio runtime.
    #[must_use = "dropping the Reaper stops it"]
    pub fn spawn<S: SessionStore + ?Sized>(store: Arc<S>, config: ReaperConfig) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep(config.next_wait()) => {}
                }
                match store.delete_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "reaped expired sessions"),
                    Err(error) => {
                        tracing::warn!(
                            error = &error as &dyn std::error::Error,
                            "session reaper sweep failed"
                        );
                    }
                }
            }
        });
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Stop the reaper and wait for it to finish its current sweep.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            // A sweep cannot panic the task (errors are logged), so the only
            // join error is cancellation, which is what we asked for.
            let _ = task.await;
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

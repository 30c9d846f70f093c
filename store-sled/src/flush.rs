//! Group commit: one blocking `Db::flush` on a thread of tokio's blocking
//! pool serves every write waiting behind it.
//!
//! sled's own `flush_async` runs on sled's small thread pool, and with
//! seven or more concurrent callers the pool's threads all ended up waiting
//! inside the flush for work that needed a pool thread: writes stopped for
//! good, and dropping the database hung as well. A blocking `Db::flush` from
//! a thread of our own does not touch that pool, and one flush at a time,
//! covering every write made before it started, keeps the number of fsyncs
//! down to one per batch of waiting writers.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use session_core::{Error, Result};
use tokio::sync::watch;

use crate::BACKEND;

/// The longest a write waits for the flush covering it before failing with
/// [`Error::Timeout`] (the flush itself goes on).
pub(crate) const FLUSH_DEADLINE: Duration = Duration::from_secs(10);

/// The flusher of one database, shared by a store and its clones.
pub(crate) struct GroupFlush {
    db: sled::Db,
    state: Mutex<State>,
    done: watch::Sender<Flushed>,
}

#[derive(Default)]
struct State {
    /// Requests so far; request `n` is served by the first flush that
    /// started after it was made.
    requested: u64,
    /// Whether a flush task is running (it serves requests until none is
    /// left).
    running: bool,
}

/// The last flush to finish: the requests it covered and how it went.
#[derive(Clone)]
struct Flushed {
    covered: u64,
    result: std::result::Result<usize, sled::Error>,
}

impl GroupFlush {
    pub(crate) fn new(db: sled::Db) -> Arc<Self> {
        Arc::new(Self {
            db,
            state: Mutex::new(State::default()),
            done: watch::Sender::new(Flushed {
                covered: 0,
                result: Ok(0),
            }),
        })
    }

    /// Wait until everything written before this call is on disk (written
    /// and fsynced), sharing the flush with every caller waiting at the
    /// same time. Returns the bytes written by the flush that covered it.
    pub(crate) async fn flush(self: &Arc<Self>) -> Result<usize> {
        let mut done = self.done.subscribe();
        let ticket = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.requested += 1;
            if !state.running {
                state.running = true;
                let me = Arc::clone(self);
                // Detached on purpose: the task ends when no request is left,
                // and a caller that gives up does not stop a flush that
                // others wait for.
                drop(tokio::task::spawn_blocking(move || me.serve()));
            }
            state.requested
        };
        // A later flush that succeeded also covers this request: sled's
        // flush writes everything written before it started.
        // Bounded: after some disk errors sled never finishes a flush (a
        // failed write of a large node leaves its log buffer waiting for
        // good); the caller gets a timeout instead of waiting forever.
        Error::within(BACKEND, "flush", FLUSH_DEADLINE, async {
            let flushed = done
                .wait_for(|f| f.covered >= ticket)
                .await
                .map_err(|_| Error::backend(BACKEND, std::io::Error::other("flusher stopped")))?;
            flushed.result.clone().map_err(crate::backend)
        })
        .await
    }

    /// Flush until no request is waiting.
    fn serve(&self) {
        loop {
            let target = self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .requested;
            // A panic inside sled must not leave `running` set with callers
            // waiting for a flush that never comes.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.db.flush()))
                .unwrap_or_else(|_| {
                    Err(sled::Error::ReportableBug("sled's flush panicked".into()))
                });
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            self.done.send_replace(Flushed {
                covered: target,
                result,
            });
            if state.requested == target {
                state.running = false;
                return;
            }
        }
    }
}

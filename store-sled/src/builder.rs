//! Building a [`SledStore`]: where the database lives, how often it reaches
//! the disk.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use session_core::{Error, Result};

use crate::shared::Reopen;
use crate::{BACKEND, SledStore, backend};

/// Default namespace.
pub const DEFAULT_NAMESPACE: &str = "sessions";
/// Default [`SledStoreBuilder::with_flush_every`]: sled's own default.
pub const DEFAULT_FLUSH_EVERY: Option<Duration> = Some(Duration::from_millis(500));

/// Default [`SledStoreBuilder::with_sync_writes`]: on, so that a write the
/// store acknowledged is on disk, whatever happens next.
pub const DEFAULT_SYNC_WRITES: bool = true;

/// Configures and opens a [`SledStore`] on a database it opens itself; every
/// setting is checked by [`build`](Self::build), which reports mistakes as
/// [`Error::Config`](session_core::Error::Config). To put a store on a
/// [`sled::Db`] you already have, use [`SledStore::new`].
///
/// ```no_run
/// # async fn demo() -> session_core::Result<()> {
/// use std::time::Duration;
/// use session_store_sled::SledStore;
///
/// let store = SledStore::builder("sessions.sled")
///     .with_namespace("web")
///     // Faster, less safe: acknowledge writes before they reach the disk,
///     // losing at most ~100 ms of them on a crash or a failed disk write.
///     .with_sync_writes(false)
///     .with_flush_every(Some(Duration::from_millis(100)))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct SledStoreBuilder {
    /// The database folder; `None`: a temporary one, deleted on drop.
    path: Option<PathBuf>,
    namespace: String,
    flush_every: Option<Duration>,
    sync_writes: bool,
    lock_wait: Duration,
}

/// How often [`SledStoreBuilder::build`] tries the directory lock again
/// while it waits for it.
const LOCK_RETRY: Duration = Duration::from_millis(10);

/// The start of the message of the error sled 0.34 returns when another
/// handle holds the directory's lock (an `io::Error` of kind `Other` whose
/// text is all there is to tell it from other I/O errors).
const LOCKED: &str = "could not acquire lock";

impl SledStoreBuilder {
    /// A builder for the database folder `path`, or (`None`) a temporary
    /// one.
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            flush_every: DEFAULT_FLUSH_EVERY,
            sync_writes: DEFAULT_SYNC_WRITES,
            lock_wait: Duration::ZERO,
        }
    }

    /// The namespace: its three trees are `session_store/<namespace>/records`,
    /// `…/expiry` and `…/principals`. Default `sessions`. 1 to 128
    /// characters among ASCII letters, digits, `_`, `-` and `.`.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// sled's background flush period (`sled::Config::flush_every_ms`, in
    /// whole milliseconds): buffered writes reach the disk (written and
    /// fsynced) within about this long. With synced writes (the default)
    /// every write is on disk before it returns anyway; this matters for
    /// [`with_sync_writes(false)`](Self::with_sync_writes), where a crash
    /// (process or machine) or a failed disk write loses at most the writes
    /// of the last period. The database stays consistent either way (sled
    /// recovers a prefix of its log, and since a writer inserts a record's
    /// index entry before the record, every record that survives keeps an
    /// entry covering it). `None` disables background flushing: buffered
    /// writes then reach the disk only by [`SledStore::flush`] or a clean
    /// shutdown (dropping the last handle). Default 500 ms; a period under
    /// 1 ms is rejected.
    pub fn with_flush_every(mut self, every: Option<Duration>) -> Self {
        self.flush_every = every;
        self
    }

    /// Whether a write is flushed (written and fsynced) before it returns.
    /// Default `true` ([`DEFAULT_SYNC_WRITES`]): a write the store
    /// acknowledged survives a crash and a later failed disk write (a full
    /// disk). Concurrent writers share each flush (a group commit), so the
    /// cost is one fsync per batch of waiting writes, not per write; see
    /// the crate docs for the measured cost.
    ///
    /// `false` acknowledges a write once it is in sled's memory buffers and
    /// leaves it to the background flush ([`with_flush_every`](Self::with_flush_every)):
    /// faster, but a crash **or an I/O error** (a full disk) loses the
    /// writes of the last flush period, acknowledged or not.
    pub fn with_sync_writes(mut self, sync: bool) -> Self {
        self.sync_writes = sync;
        self
    }

    /// How long [`build`](Self::build) keeps trying when the directory is
    /// locked, before failing. sled locks its directory while it is open,
    /// and lets go a little *after* the last handle is dropped (its
    /// background thread finishes writing first): reopening a directory in
    /// the process that just closed it can fail for a few milliseconds. Set
    /// a wait to reopen at once without handling that. Only the lock is
    /// waited for; other errors fail at once. Default zero: a directory
    /// held by another handle or process fails the build immediately.
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Check the settings, open the database (on tokio's blocking pool:
    /// sled reads and recovers its log when opening) and its three trees.
    ///
    /// A store built on a path reopens the directory by itself after an
    /// I/O error (sled fails every later write of a database that hit
    /// one); a temporary database is deleted when it closes, so it is not
    /// reopened, and its errors stay.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad setting; [`Error::Backend`] if sled
    /// cannot open the database (unwritable path, or already open in
    /// this or another process: sled locks its directory).
    pub async fn build(self) -> Result<SledStore> {
        crate::store::validate_namespace(&self.namespace)?;
        let flush_every_ms = match self.flush_every {
            None => None,
            Some(every) if every < Duration::from_millis(1) => {
                return Err(Error::config(
                    BACKEND,
                    "flush_every must be at least 1 ms (or None to disable background flushes)",
                ));
            }
            Some(every) => Some(u64::try_from(every.as_millis()).unwrap_or(u64::MAX)),
        };
        if let Some(path) = &self.path
            && path.as_os_str().is_empty()
        {
            return Err(Error::config(BACKEND, "database path must not be empty"));
        }
        // A temporary database is deleted when it closes: reopening it
        // would lose every session, so only a path is reopened.
        let reopen = self.path.clone().map(|path| Reopen {
            path,
            flush_every_ms,
            lock_wait: self.lock_wait,
        });
        session_core::run_blocking(BACKEND, move || {
            let config = || {
                let config = sled::Config::new().flush_every_ms(flush_every_ms);
                match &self.path {
                    Some(path) => config.path(path),
                    None => config.temporary(true),
                }
            };
            let db = open(config, self.lock_wait)?;
            Ok(SledStore::on(db, &self.namespace, reopen)?.with_sync_writes(self.sync_writes))
        })
        .await
    }
}

/// Open the database `config` makes, trying again (with a fresh `Config`
/// each time) for up to `wait` while its directory is locked.
pub(crate) fn open(config: impl Fn() -> sled::Config, wait: Duration) -> Result<sled::Db> {
    let deadline = Instant::now() + wait;
    loop {
        match config().open() {
            Err(sled::Error::Io(e))
                if e.to_string().starts_with(LOCKED) && Instant::now() < deadline =>
            {
                std::thread::sleep(LOCK_RETRY);
            }
            result => return result.map_err(backend),
        }
    }
}

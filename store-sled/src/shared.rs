//! The database a store and its clones (and the stores of its other
//! namespaces) work on, and reopening it in place after an I/O error.
//!
//! After a failed disk write (a full disk, say) sled 0.34 keeps the error:
//! it sets a database-wide error that every later write, every flush and
//! some reads return, whether or not the cause is gone, until the database
//! is opened again (measured on a full tmpfs; see the crate docs). So an
//! I/O error from sled marks the open database as failed, and the next call
//! reopens the directory: one reopen at a time, after every call still
//! running on the failed database has finished (sled locks its directory
//! until the last handle is dropped), each step bounded in time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use session_core::{Error, Result};
use sled::Tree;

use crate::flush::GroupFlush;
use crate::{BACKEND, backend};

/// The longest a call waits for a reopen of a failed database, its own or
/// another call's, before failing with [`Error::Timeout`].
pub(crate) const REOPEN_DEADLINE: Duration = Duration::from_secs(10);
/// The longest a reopen waits for the calls still running on the failed
/// database to finish; after that it gives up (the next call tries again).
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);
/// The shortest wait for sled's directory lock when reopening: sled lets go
/// of it a little after the last handle is dropped.
const REOPEN_LOCK_WAIT: Duration = Duration::from_secs(2);

/// How to open the database again: kept only for a database the store
/// opened itself from a path.
#[derive(Clone, Debug)]
pub(crate) struct Reopen {
    pub(crate) path: PathBuf,
    pub(crate) flush_every_ms: Option<u64>,
    pub(crate) lock_wait: Duration,
}

impl Reopen {
    /// Open the database at `path`, waiting up to `wait` for its lock.
    fn open(&self, wait: Duration) -> Result<sled::Db> {
        crate::builder::open(
            || {
                sled::Config::new()
                    .path(&self.path)
                    .flush_every_ms(self.flush_every_ms)
            },
            wait,
        )
    }
}

/// The three trees of one namespace.
#[derive(Clone)]
pub(crate) struct Trees {
    pub(crate) records: Tree,
    pub(crate) expiry: Tree,
    pub(crate) principals: Tree,
}

impl Trees {
    /// Open (creating) the trees of `namespace` in `db`.
    pub(crate) fn open(db: &sled::Db, namespace: &str) -> Result<Self> {
        Ok(Self {
            records: db
                .open_tree(format!("session_store/{namespace}/records"))
                .map_err(backend)?,
            expiry: db
                .open_tree(format!("session_store/{namespace}/expiry"))
                .map_err(backend)?,
            principals: db
                .open_tree(format!("session_store/{namespace}/principals"))
                .map_err(backend)?,
        })
    }
}

/// One opening of the database: what calls run on. A call holds an `Arc`
/// of it while it runs, which is how a reopen knows when the last call on a
/// failed database is done.
pub(crate) struct Opened {
    pub(crate) db: sled::Db,
    pub(crate) flusher: Arc<GroupFlush>,
    /// The trees of every namespace, by [`Shared::register`] index.
    trees: Vec<Trees>,
    generation: u64,
}

impl Opened {
    /// The trees of the namespace registered as `index`.
    pub(crate) fn trees(&self, index: usize) -> Result<&Trees> {
        self.trees.get(index).ok_or_else(|| {
            Error::backend(
                BACKEND,
                std::io::Error::other(format!("namespace #{index} is not open")),
            )
        })
    }
}

/// The database shared by every store of it and their clones.
pub(crate) struct Shared {
    /// `None` while a failed database is closed for a reopen (or after a
    /// reopen failed: the next call tries again).
    current: RwLock<Option<Arc<Opened>>>,
    /// `generation + 1` of a database an I/O error was seen on; 0: none.
    failed: AtomicU64,
    /// The namespaces opened so far, by index: a reopen opens them all.
    namespaces: Mutex<Vec<String>>,
    /// `None`: a database the user opened (or a temporary one, deleted on
    /// close), which this crate never reopens.
    reopen: Option<Reopen>,
    /// One reopen at a time.
    reopening: tokio::sync::Mutex<()>,
}

impl Shared {
    /// Share `db` (opened with `reopen`, if it can be opened again) with
    /// the trees of `namespace`, registered as index 0.
    pub(crate) fn new(db: sled::Db, namespace: &str, reopen: Option<Reopen>) -> Result<Arc<Self>> {
        let trees = Trees::open(&db, namespace)?;
        let opened = Opened {
            flusher: GroupFlush::new(db.clone()),
            db,
            trees: vec![trees],
            generation: 0,
        };
        Ok(Arc::new(Self {
            current: RwLock::new(Some(Arc::new(opened))),
            failed: AtomicU64::new(0),
            namespaces: Mutex::new(vec![namespace.to_owned()]),
            reopen,
            reopening: tokio::sync::Mutex::new(()),
        }))
    }

    /// Whether this database is reopened after an I/O error.
    pub(crate) fn reopens(&self) -> bool {
        self.reopen.is_some()
    }

    /// The open database, unless it failed (or is closed for a reopen).
    fn healthy(&self) -> Option<Arc<Opened>> {
        self.with_healthy(Arc::clone)
    }

    /// Run `call` on the open database unless it failed (or is closed
    /// for a reopen): `None` then, for the caller to go through
    /// [`get`](Self::get). For short calls that write nothing (`load`):
    /// they run under the read lock instead of taking a reference to the
    /// database, which saves two atomic updates of a counter every
    /// concurrent call shares (measurable at 64 tasks on 2 cores). A
    /// reopen takes the write lock, so it waits for such calls as it waits
    /// for the references.
    pub(crate) fn with_healthy<T>(&self, call: impl FnOnce(&Arc<Opened>) -> T) -> Option<T> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|o| self.failed.load(Ordering::Acquire) != o.generation + 1)
            .map(call)
    }

    /// The database to run a call on: the open one, or, if it failed, a
    /// new opening of its directory.
    ///
    /// # Errors
    ///
    /// The reopen's error, or [`Error::Timeout`] if it did not finish
    /// within [`REOPEN_DEADLINE`].
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Arc<Opened>> {
        if let Some(opened) = self.healthy() {
            return Ok(opened);
        }
        if self.reopen.is_none() {
            // Never marked failed: only closed by a reopen, which this
            // database does not have.
            return self.current().ok_or_else(closed);
        }
        let shared = Arc::clone(self);
        // Detached: a caller that gives up does not stop a reopen that
        // others wait for, nor drop the old database on an async worker.
        let reopen = tokio::spawn(async move { shared.reopen_once().await });
        Error::within(BACKEND, "reopen", REOPEN_DEADLINE, async {
            reopen.await.map_err(|e| Error::backend(BACKEND, e))?
        })
        .await
    }

    /// The open database, failed or not.
    pub(crate) fn current(&self) -> Option<Arc<Opened>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Pass `result` (of a call on `opened`) through, marking `opened` as
    /// failed if it is an I/O error from sled and this database reopens.
    pub(crate) fn settle<T>(&self, opened: &Opened, result: Result<T>) -> Result<T> {
        if let Err(Error::Backend { source, .. }) = &result
            && self.reopen.is_some()
            && matches!(
                source.downcast_ref::<sled::Error>(),
                Some(sled::Error::Io(_))
            )
        {
            self.failed.store(opened.generation + 1, Ordering::Release);
        }
        result
    }

    /// Open the trees of `namespace` too; returns its index.
    pub(crate) fn register(&self, namespace: &str) -> Result<usize> {
        let mut names = self
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = names.iter().position(|n| n == namespace) {
            return Ok(index);
        }
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let opened = current.as_ref().ok_or_else(closed)?;
        let mut trees = opened.trees.clone();
        trees.push(Trees::open(&opened.db, namespace)?);
        *current = Some(Arc::new(Opened {
            db: opened.db.clone(),
            flusher: Arc::clone(&opened.flusher),
            trees,
            generation: opened.generation,
        }));
        names.push(namespace.to_owned());
        Ok(names.len() - 1)
    }

    /// Reopen the failed database, unless another call did already.
    async fn reopen_once(&self) -> Result<Arc<Opened>> {
        let _one_at_a_time = self.reopening.lock().await;
        if let Some(opened) = self.healthy() {
            return Ok(opened);
        }
        let Some(reopen) = self.reopen.clone() else {
            return self.current().ok_or_else(closed);
        };
        // Closed from here on: new calls wait for this reopen.
        let old = self
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let generation = match old {
            Some(old) => {
                let generation = old.generation;
                let old = self.wait_for_calls(old).await?;
                // Dropping the last handle makes sled flush (failing fast
                // after an I/O error) and join its threads: not on an async
                // worker.
                session_core::run_blocking(BACKEND, move || {
                    drop(old);
                    Ok(())
                })
                .await?;
                generation + 1
            }
            // An earlier reopen failed after closing it.
            None => self.failed.load(Ordering::Acquire),
        };
        let names = self
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let opened = session_core::run_blocking(BACKEND, move || {
            let db = reopen.open(reopen.lock_wait.max(REOPEN_LOCK_WAIT))?;
            let trees = names
                .iter()
                .map(|name| Trees::open(&db, name))
                .collect::<Result<Vec<_>>>()?;
            Ok(Opened {
                flusher: GroupFlush::new(db.clone()),
                db,
                trees,
                generation,
            })
        })
        .await?;
        let opened = Arc::new(opened);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&opened));
        Ok(opened)
    }

    /// Wait (bounded) until no call but this one holds `old` or its
    /// flusher, and return it unshared; on time out put it back (still
    /// failed) for a later reopen to try again.
    async fn wait_for_calls(&self, old: Arc<Opened>) -> Result<Opened> {
        let deadline = Instant::now() + IN_FLIGHT_WAIT;
        let mut old = old;
        loop {
            if Arc::strong_count(&old.flusher) == 1 {
                match Arc::try_unwrap(old) {
                    Ok(unshared) => return Ok(unshared),
                    Err(shared) => old = shared,
                }
            }
            if Instant::now() >= deadline {
                let running = Arc::strong_count(&old) - 1;
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(old);
                return Err(Error::backend(
                    BACKEND,
                    std::io::Error::other(format!(
                        "the database failed and cannot be reopened yet: {running} calls \
                         still running on it after {IN_FLIGHT_WAIT:?}"
                    )),
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The error of a call made while the database is closed.
pub(crate) fn closed() -> Error {
    Error::backend(
        BACKEND,
        std::io::Error::other("the database is closed after an I/O error and not reopened yet"),
    )
}

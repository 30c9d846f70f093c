//! [`SledStore`] and its [`SessionStore`] implementation.

use std::num::NonZeroUsize;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use session_core::{
    Cursor, Error, Page, Principal, PrincipalIndex, Record, Result, SessionKey, SessionStore,
    Timestamp, UpdateOutcome, async_trait,
};
use sled::{IVec, Tree};

use crate::SledStoreBuilder;
use crate::codec::{self, Header};
use crate::shared::{Opened, Reopen, Shared, Trees};
use crate::{BACKEND, backend};

/// A [`SessionStore`] and [`PrincipalIndex`] on one namespace (three
/// trees) of a [`sled::Db`].
///
/// Cloning is cheap and shares the database (and its reopening after an
/// I/O error). Point operations (`load`, `create`, `update`, `save`,
/// `touch`, `destroy`) run inline: each is a read and a compare-and-swap of
/// one record (plus an index insert when the expiry moves earlier, and a
/// principal-index write when the principal changes), a few
/// microseconds; a write then waits for the group-committed flush that
/// puts it on disk, unless writes are buffered (see the crate docs for the
/// measurements). Whole-namespace scans (`len`, `clear`,
/// `delete_expired`), the pages of `list` and flushes run on tokio's
/// blocking pool.
#[derive(Clone)]
pub struct SledStore {
    shared: Arc<Shared>,
    /// This namespace's index in the shared database's trees.
    index: usize,
    namespace: Arc<str>,
    sync_writes: bool,
}

impl std::fmt::Debug for SledStore {
    /// The namespace and settings only: sled's own `Debug` prints every
    /// tree's contents, which would put session data in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("namespace", &self.namespace)
            .field("sync_writes", &self.sync_writes)
            .field("reopens", &self.shared.reopens())
            .finish_non_exhaustive()
    }
}

/// Check a namespace: 1 to 128 characters among ASCII letters, digits, `_`,
/// `-` and `.`.
pub(crate) fn validate_namespace(namespace: &str) -> Result<()> {
    let ok = (1..=128).contains(&namespace.len())
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            BACKEND,
            format!(
                "namespace {namespace:?} must be 1 to 128 characters among ASCII letters, \
                 digits, '_', '-' and '.'"
            ),
        ))
    }
}

/// What a write decides after reading the current record.
enum Step<T> {
    /// Finish with this result, writing nothing.
    Done(T),
    /// Swap in `new`, expiring at the given time, then finish with `T`.
    Write(IVec, i64, T),
}

fn now() -> i64 {
    Timestamp::now().as_millis()
}

impl SledStore {
    /// Open (creating if needed) the database directory at `path`, with the
    /// default settings and namespace `sessions`.
    ///
    /// # Errors
    ///
    /// As [`SledStoreBuilder::build`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).build().await
    }

    /// A fresh temporary database (in `/dev/shm` or the temp directory),
    /// deleted when the last handle on it is dropped; namespace `sessions`.
    ///
    /// # Errors
    ///
    /// As [`SledStoreBuilder::build`].
    pub async fn temporary() -> Result<Self> {
        Self::builder_temporary().build().await
    }

    /// Configure a store on the database directory at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SledStoreBuilder {
        SledStoreBuilder::new(Some(path.as_ref().to_owned()))
    }

    /// Configure a store on a fresh temporary database.
    pub fn builder_temporary() -> SledStoreBuilder {
        SledStoreBuilder::new(None)
    }

    /// A store on `namespace` of a database you opened yourself (its
    /// background flush period is then yours, see
    /// [`sled::Config::flush_every_ms`]). Opens the namespace's three trees,
    /// which touches the disk the first time: call it at startup, or from a
    /// blocking context. Writes are synced as with the builder's default
    /// ([`with_sync_writes`](Self::with_sync_writes) turns that off).
    ///
    /// This store never reopens your database: after a failed disk write
    /// (a full disk, say) sled fails every later write, every flush and
    /// some reads of it until it is opened again, so its errors stay until
    /// you drop every handle and open the directory again. A store built
    /// by [`SledStore::builder`] on a path reopens it by itself.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid namespace; [`Error::Backend`] if sled
    /// cannot open the trees.
    pub fn new(db: &sled::Db, namespace: &str) -> Result<Self> {
        Self::on(db.clone(), namespace, None)
    }

    /// A store on `namespace` of `db`, which is reopened from `reopen`
    /// after an I/O error if given.
    pub(crate) fn on(db: sled::Db, namespace: &str, reopen: Option<Reopen>) -> Result<Self> {
        validate_namespace(namespace)?;
        Ok(Self {
            shared: Shared::new(db, namespace, reopen)?,
            index: 0,
            namespace: namespace.into(),
            sync_writes: crate::DEFAULT_SYNC_WRITES,
        })
    }

    /// Another namespace of the same database (with the same
    /// [`with_sync_writes`](Self::with_sync_writes)).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new); [`Error::Backend`] while the database is
    /// closed for a reopen after an I/O error.
    #[allow(
        clippy::unused_async,
        reason = "every store's open_namespace is async; sled opens trees without waiting"
    )]
    pub async fn open_namespace(&self, namespace: &str) -> Result<Self> {
        validate_namespace(namespace)?;
        // One database, one flusher: namespaces share its group commits
        // and its reopens.
        Ok(Self {
            shared: Arc::clone(&self.shared),
            index: self.shared.register(namespace)?,
            namespace: namespace.into(),
            sync_writes: self.sync_writes,
        })
    }

    /// Whether to flush after every write before returning (see
    /// [`SledStoreBuilder::with_sync_writes`]; default `true`).
    #[must_use]
    pub fn with_sync_writes(mut self, sync: bool) -> Self {
        self.sync_writes = sync;
        self
    }

    /// Write and fsync everything written so far. Returns the number of
    /// bytes written by the flush that covered this call. After it returns,
    /// every earlier write survives a crash.
    ///
    /// Callers waiting at the same time share one flush (a group commit), run
    /// as a blocking `Db::flush` on tokio's blocking pool: sled's own
    /// `flush_async` deadlocked its thread pool with seven or more concurrent
    /// callers.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if the disk write fails.
    pub async fn flush(&self) -> Result<usize> {
        let opened = self.shared.get().await?;
        let result = opened.flusher.flush().await;
        self.shared.settle(&opened, result)
    }

    /// The namespace this store works on.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The database open now. Hold it only briefly: after an I/O error the
    /// store reopens the directory once every handle on the failed database
    /// is dropped, and a reopen waits only a few seconds for that.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] while the database is closed for a reopen.
    pub fn db(&self) -> Result<sled::Db> {
        Ok(self.opened_now()?.db.clone())
    }

    /// The records tree of the database open now (hold it briefly, as
    /// [`db`](Self::db)): key = the session key's 32 bytes, value = a
    /// 25-byte header (format tag 2; `expires_at` and `created_at` as
    /// big-endian `i64` milliseconds; `version` as big-endian `u64`), the
    /// principal's length in bytes (0 for none) and UTF-8 bytes, then the
    /// data as JSON. Values of format tag 1 (no principal section, written
    /// by earlier versions) still read, as records without principal. For
    /// inspection and tools: writing to it directly bypasses the expiry and
    /// principal indexes.
    ///
    /// # Errors
    ///
    /// As [`db`](Self::db).
    pub fn records_tree(&self) -> Result<Tree> {
        Ok(self.opened_now()?.trees(self.index)?.records.clone())
    }

    /// The expiry index tree of the database open now (hold it briefly, as
    /// [`db`](Self::db)): key = expiry (big-endian `i64` milliseconds with
    /// the sign bit flipped, so that byte order is time order) then the
    /// session key's 32 bytes; value empty.
    ///
    /// # Errors
    ///
    /// As [`db`](Self::db).
    pub fn expiry_tree(&self) -> Result<Tree> {
        Ok(self.opened_now()?.trees(self.index)?.expiry.clone())
    }

    /// The principal index tree of the database open now (hold it
    /// briefly, as [`db`](Self::db)): key = the principal's length in
    /// bytes (one byte), its UTF-8 bytes, then the session key's 32 bytes;
    /// value empty. One entry per record that names a principal (see the
    /// crate docs).
    ///
    /// # Errors
    ///
    /// As [`db`](Self::db).
    pub fn principals_tree(&self) -> Result<Tree> {
        Ok(self.opened_now()?.trees(self.index)?.principals.clone())
    }

    /// Whether this store reopens its database by itself after an I/O
    /// error: a store built on a path does; one on a database you opened
    /// ([`new`](Self::new)) or on a temporary one does not.
    #[must_use]
    pub fn reopens(&self) -> bool {
        self.shared.reopens()
    }

    /// The database open now, failed or not.
    fn opened_now(&self) -> Result<Arc<Opened>> {
        self.shared.current().ok_or_else(crate::shared::closed)
    }

    /// Run `call` on the database (reopened first if it failed) and the
    /// trees of this namespace; `call` returns its result and whether it
    /// wrote. See [`finish`](Self::finish).
    async fn run<T>(&self, call: impl FnOnce(&Trees) -> Result<(T, bool)>) -> Result<T> {
        let opened = self.shared.get().await?;
        let result = opened.trees(self.index).and_then(call);
        self.finish(&opened, result).await
    }

    /// [`run`](Self::run) on tokio's blocking pool, for whole-namespace
    /// work.
    async fn run_blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Trees) -> Result<(T, bool)> + Send + 'static,
    ) -> Result<T> {
        let opened = self.shared.get().await?;
        let held = Arc::clone(&opened);
        let index = self.index;
        let result = session_core::run_blocking(BACKEND, move || call(held.trees(index)?)).await;
        self.finish(&opened, result).await
    }

    /// After a call on `opened`: flush if it wrote and writes are synced,
    /// and mark the database failed on an I/O error, for the next call to
    /// reopen it.
    async fn finish<T>(&self, opened: &Opened, result: Result<(T, bool)>) -> Result<T> {
        let result = match result {
            Ok((out, true)) if self.sync_writes => opened.flusher.flush().await.map(|_| out),
            Ok((out, _)) => Ok(out),
            Err(e) => Err(e),
        };
        self.shared.settle(opened, result)
    }
}

impl Trees {
    /// The record stored under `key`, if any.
    pub(crate) fn get(&self, key: &SessionKey) -> Result<Option<IVec>> {
        self.records.get(key.as_bytes()).map_err(backend)
    }

    /// Replace the record `old` (what was read under `key`) with `new`,
    /// which expires at `expires_at`, keeping the index invariant (see the
    /// crate docs): some entry at or before a record's expiry always
    /// exists; and the principal index's (see the `owners` module): a
    /// record that names a principal has its entry.
    ///
    /// Returns the value found instead of `old` if another writer got
    /// there first (nothing is written then), for the caller to decide
    /// again on fresh data.
    pub(crate) fn swap(
        &self,
        key: &SessionKey,
        old: Option<&IVec>,
        new: &IVec,
        expires_at: i64,
    ) -> Result<std::result::Result<(), Option<IVec>>> {
        let entry = self.prepare_entry(key, old, expires_at)?;
        let owner = self.prepare_owner(key, old, new)?;
        let swapped = self
            .records
            .compare_and_swap(key.as_bytes(), old, Some(new))
            .map_err(backend)?;
        if let Err(raced) = swapped {
            if owner.is_some() {
                // Not written after all: the entry goes unless the record
                // there names the same principal.
                self.drop_owner(codec::owner(new), key)?;
            }
            return Ok(Err(raced.current));
        }
        self.settle_owner(key, old, new, owner.as_deref())?;
        if let Some(entry) = entry {
            // A reaper may have removed this same entry (another record of
            // this key expiring in the same millisecond) after we inserted
            // it and before it could see our record: put it back. The
            // reaper checks the record after its removal, so one of the two
            // always sees the other.
            self.ensure_entry(&entry)?;
        }
        Ok(Ok(()))
    }

    /// Read, decide, compare-and-swap; decide again if another writer got
    /// in between. Each round means another write succeeded, so the loop
    /// makes progress. Returns what `decide` finished with.
    fn write_loop<T>(
        &self,
        key: &SessionKey,
        decide: impl FnMut(Option<&IVec>) -> Result<Step<T>>,
    ) -> Result<T> {
        let current = self.get(key)?;
        self.write_loop_from(key, current, decide)
    }

    /// [`write_loop`](Self::write_loop) starting from a guess of the
    /// current value instead of a read: a wrong guess costs one failed
    /// compare-and-swap, which returns the real value.
    fn write_loop_from<T>(
        &self,
        key: &SessionKey,
        mut current: Option<IVec>,
        mut decide: impl FnMut(Option<&IVec>) -> Result<Step<T>>,
    ) -> Result<T> {
        loop {
            match decide(current.as_ref())? {
                Step::Done(out) => return Ok(out),
                Step::Write(new, expires_at, out) => {
                    match self.swap(key, current.as_ref(), &new, expires_at)? {
                        Ok(()) => return Ok(out),
                        Err(fresh) => current = fresh,
                    }
                }
            }
        }
    }

    /// One page of [`SessionStore::list`]: the records tree holds this
    /// namespace only and is ordered by key bytes, so a range scan after
    /// `after` reads up to `limit` entries in key order; the live ones are
    /// returned, and the next page resumes after the last entry read.
    fn list_after(
        &self,
        after: Option<&SessionKey>,
        limit: NonZeroUsize,
        now: i64,
    ) -> Result<Page> {
        let start = after.map_or(Bound::Unbounded, |key| Bound::Excluded(&key.as_bytes()[..]));
        // Not `with_capacity(limit)`: a caller may ask for `usize::MAX`.
        let mut scanned = Vec::new();
        for entry in self
            .records
            .range::<&[u8], _>((start, Bound::Unbounded))
            .take(limit.get())
        {
            let (key, value) = entry.map_err(backend)?;
            scanned.push((codec::session_key(&key)?, value));
        }
        Page::from_key_ordered(scanned, limit, |key, value| {
            if codec::read(&key, &value)?.is_live_at(now) {
                codec::decode(&key, &value).map(Some)
            } else {
                Ok(None)
            }
        })
    }

    /// The header of `old`, if a live record: `Ok(None)` when there is no
    /// record or it expired by `now`; a decode error for a corrupt one.
    fn live_header(key: &SessionKey, old: Option<&IVec>, now: i64) -> Result<Option<Header>> {
        match old {
            None => Ok(None),
            Some(old) => {
                let header = codec::read(key, old)?;
                Ok(header.is_live_at(now).then_some(header))
            }
        }
    }
}

#[async_trait]
impl SessionStore for SledStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        let load = |trees: &Trees| {
            let Some(value) = trees.get(key)? else {
                return Ok(None);
            };
            if !codec::read(key, &value)?.is_live_at(now()) {
                return Ok(None);
            }
            codec::decode(key, &value).map(Some)
        };
        // The common case, without touching the database's reference
        // count; a failed database goes through `run`, which reopens it.
        let healthy = self.shared.with_healthy(|opened| {
            let result = opened.trees(self.index).and_then(load);
            self.shared.settle(opened, result)
        });
        match healthy {
            Some(result) => result,
            None => self.run(|trees| Ok((load(trees)?, false))).await,
        }
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        let header = Header::of(record);
        let value = IVec::from(codec::VALUE.encode(header, record)?);
        let now = now();
        self.run(|trees| {
            // Session keys are fresh random values: guess that nothing is
            // stored, and save the read.
            let created = trees.write_loop_from(key, None, |old| {
                // A corrupt record is reported, not silently replaced.
                if Trees::live_header(key, old, now)?.is_some() {
                    return Ok(Step::Done(false));
                }
                Ok(Step::Write(value.clone(), header.expires_at, true))
            })?;
            Ok((created, created))
        })
        .await
    }

    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<UpdateOutcome> {
        // Wrapping: a version is only compared for equality, and 2^64 updates
        // of one session do not happen.
        let header = Header {
            version: expected_version.wrapping_add(1),
            ..Header::of(record)
        };
        let value = IVec::from(codec::VALUE.encode(header, record)?);
        let now = now();
        self.run(|trees| {
            let outcome = trees.write_loop(key, |old| {
                let Some(old_header) = Trees::live_header(key, old, now)? else {
                    return Ok(Step::Done(UpdateOutcome::Missing));
                };
                if old_header.version != expected_version {
                    return Ok(Step::Done(UpdateOutcome::Conflict));
                }
                Ok(Step::Write(
                    value.clone(),
                    header.expires_at,
                    UpdateOutcome::Updated,
                ))
            })?;
            Ok((outcome, outcome == UpdateOutcome::Updated))
        })
        .await
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        let header = Header::of(record);
        let value = if header.is_live_at(now()) {
            Some(IVec::from(codec::VALUE.encode(header, record)?))
        } else {
            None
        };
        self.run(|trees| {
            let Some(value) = &value else {
                // Not stored; whatever was there goes. Its index entry is
                // left for the reaper, which drops entries without a record;
                // its principal's entry goes now.
                let removed = trees.records.remove(key.as_bytes()).map_err(backend)?;
                if let Some(old) = &removed {
                    trees.removed(key, old)?;
                }
                return Ok(((), removed.is_some()));
            };
            // Unconditional: the loop only retries when another writer
            // changed the record between the read and the swap. A corrupt
            // old record is overwritten (its header is unreadable, so the
            // new one is indexed).
            trees.write_loop(key, |_| {
                Ok(Step::Write(value.clone(), header.expires_at, ()))
            })?;
            Ok(((), true))
        })
        .await
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let expires_at = expires_at.as_millis();
        let now = now();
        self.run(|trees| {
            let touched = trees.write_loop(key, |old| {
                let (Some(old), Some(_)) = (old, Trees::live_header(key, old, now)?) else {
                    return Ok(Step::Done(false));
                };
                let new = IVec::from(codec::VALUE.with_expiry(old, expires_at));
                Ok(Step::Write(new, expires_at, true))
            })?;
            Ok((touched, touched))
        })
        .await
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        self.run(|trees| {
            // The record's index entry stays until its time comes: the
            // reaper drops entries whose record is gone. Finding the entry
            // here would need its position, which postponements do not
            // record. Its principal's entry (if any) goes now.
            let removed = trees.records.remove(key.as_bytes()).map_err(backend)?;
            if let Some(old) = &removed {
                trees.removed(key, old)?;
            }
            Ok(((), removed.is_some()))
        })
        .await
    }

    async fn clear(&self) -> Result<()> {
        self.run_blocking(|trees| {
            // Index first, records second: a record written during the
            // clear either goes with it or was swapped in after the index
            // was cleared, and then its writer finds its entry missing and
            // puts it back (see `swap`). The reverse order could remove the
            // entry of a record that stays. The principal index likewise.
            trees.expiry.clear().map_err(backend)?;
            trees.principals.clear().map_err(backend)?;
            trees.records.clear().map_err(backend)?;
            Ok(((), true))
        })
        .await
    }

    async fn len(&self) -> Result<u64> {
        self.run_blocking(|trees| {
            let now = now();
            let mut count = 0u64;
            for entry in trees.records.iter() {
                let (key, value) = entry.map_err(backend)?;
                let key = codec::session_key(&key)?;
                if codec::read(&key, &value)?.is_live_at(now) {
                    count += 1;
                }
            }
            Ok((count, false))
        })
        .await
    }

    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        let after = cursor.map(|c| c.key_after(BACKEND)).transpose()?;
        self.run_blocking(move |trees| Ok((trees.list_after(after.as_ref(), limit, now())?, false)))
            .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.run_blocking(|trees| {
            let removed = trees.reap_due(now())?;
            Ok((removed, removed > 0))
        })
        .await
    }
}

/// Kept in the namespace's third tree by the same writes that write the
/// records: see the [crate documentation](crate#the-principal-index).
#[async_trait]
impl PrincipalIndex for SledStore {
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<(SessionKey, Record)>> {
        let principal = principal.clone();
        self.run_blocking(move |trees| trees.sessions_of(&principal, now()))
            .await
    }

    async fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
    ) -> Result<u64> {
        let (principal, except) = (principal.clone(), except.copied());
        self.run_blocking(move |trees| trees.destroy_all_of(&principal, except.as_ref(), now()))
            .await
    }

    async fn index_len(&self, principal: &Principal) -> Result<u64> {
        let principal = principal.clone();
        self.run_blocking(move |trees| Ok((trees.owned_count(&principal)?, false)))
            .await
    }
}

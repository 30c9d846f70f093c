//! [`SledStore`] and its [`SessionStore`] implementation.

use std::path::Path;
use std::sync::Arc;

use session_core::{
    Error, Record, Result, SessionKey, SessionStore, Timestamp, UpdateOutcome, async_trait,
};
use sled::{IVec, Tree};

use crate::SledStoreBuilder;
use crate::codec::{self, Header};
use crate::flush::GroupFlush;
use crate::{BACKEND, backend};

/// A [`SessionStore`] on one namespace (two trees) of a [`sled::Db`].
///
/// Cloning is cheap and shares the database. Point operations (`load`,
/// `create`, `update`, `save`, `touch`, `destroy`) run inline: each is a
/// read and a compare-and-swap of one record (plus an index insert when the
/// expiry moves earlier), a few microseconds, and sled does its disk writes
/// on its own background flusher (see the crate docs for the measurements).
/// Whole-namespace scans (`len`, `all`, `clear`, `delete_expired`) and
/// flushes run on tokio's blocking pool.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    pub(crate) records: Tree,
    pub(crate) expiry: Tree,
    namespace: Arc<str>,
    sync_writes: bool,
    flusher: Arc<GroupFlush>,
}

impl std::fmt::Debug for SledStore {
    /// The namespace and settings only: sled's own `Debug` prints every
    /// tree's contents, which would put session data in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("namespace", &self.namespace)
            .field("sync_writes", &self.sync_writes)
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

    /// A store on `namespace` of a database you opened yourself (its flush
    /// policy is then yours, see [`sled::Config::flush_every_ms`]). Opens
    /// the namespace's two trees, which touches the disk the first time:
    /// call it at startup, or from a blocking context.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid namespace; [`Error::Backend`] if sled
    /// cannot open the trees.
    pub fn new(db: &sled::Db, namespace: &str) -> Result<Self> {
        validate_namespace(namespace)?;
        let records = db
            .open_tree(format!("session_store/{namespace}/records"))
            .map_err(backend)?;
        let expiry = db
            .open_tree(format!("session_store/{namespace}/expiry"))
            .map_err(backend)?;
        Ok(Self {
            db: db.clone(),
            records,
            expiry,
            namespace: namespace.into(),
            sync_writes: false,
            flusher: GroupFlush::new(db.clone()),
        })
    }

    /// Another namespace of the same database.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    #[allow(
        clippy::unused_async,
        reason = "every store's open_namespace is async; sled opens trees without waiting"
    )]
    pub async fn open_namespace(&self, namespace: &str) -> Result<Self> {
        let store = Self::new(&self.db, namespace)?.with_sync_writes(self.sync_writes);
        // One flusher per database: namespaces share its group commits.
        Ok(Self {
            flusher: Arc::clone(&self.flusher),
            ..store
        })
    }

    /// Flush after every write before returning (see
    /// [`SledStoreBuilder::with_sync_writes`]).
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
        self.flusher.flush().await
    }

    /// The namespace this store works on.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The database.
    #[must_use]
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The records tree: key = the session key's 32 bytes, value = a 25-byte
    /// header (format tag 1; `expires_at` and `created_at` as big-endian
    /// `i64` milliseconds; `version` as big-endian `u64`) then the data as
    /// JSON. For inspection and tools: writing to it directly bypasses the
    /// expiry index.
    #[must_use]
    pub fn records_tree(&self) -> &Tree {
        &self.records
    }

    /// The expiry index tree: key = expiry (big-endian `i64` milliseconds
    /// with the sign bit flipped, so that byte order is time order) then the
    /// session key's 32 bytes; value empty.
    #[must_use]
    pub fn expiry_tree(&self) -> &Tree {
        &self.expiry
    }

    /// After a write: flush if configured to.
    async fn written(&self) -> Result<()> {
        if self.sync_writes {
            self.flush().await?;
        }
        Ok(())
    }

    /// The record stored under `key`, if any.
    pub(crate) fn get(&self, key: &SessionKey) -> Result<Option<IVec>> {
        self.records.get(key.as_bytes()).map_err(backend)
    }

    /// Replace the record `old` (what was read under `key`) with `new`,
    /// which expires at `expires_at`, keeping the index invariant (see the
    /// crate docs): some entry at or before a record's expiry always
    /// exists.
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
        let swapped = self
            .records
            .compare_and_swap(key.as_bytes(), old, Some(new))
            .map_err(backend)?;
        if let Err(raced) = swapped {
            return Ok(Err(raced.current));
        }
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

    /// The header of `old`, if a live record: `Ok(None)` when there is no
    /// record or it expired by `now`; a decode error for a corrupt one.
    fn live_header(key: &SessionKey, old: Option<&IVec>, now: i64) -> Result<Option<Header>> {
        match old {
            None => Ok(None),
            Some(old) => {
                let header = codec::VALUE.read(key, old)?;
                Ok(header.is_live_at(now).then_some(header))
            }
        }
    }
}

#[async_trait]
impl SessionStore for SledStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        let Some(value) = self.get(key)? else {
            return Ok(None);
        };
        if !codec::VALUE.read(key, &value)?.is_live_at(now()) {
            return Ok(None);
        }
        codec::VALUE.decode(key, &value).map(Some)
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        let header = Header::of(record);
        let value = IVec::from(codec::VALUE.encode(header, record)?);
        let now = now();
        // Session keys are fresh random values: guess that nothing is
        // stored, and save the read.
        let created = self.write_loop_from(key, None, |old| {
            // A corrupt record is reported, not silently replaced.
            if Self::live_header(key, old, now)?.is_some() {
                return Ok(Step::Done(false));
            }
            Ok(Step::Write(value.clone(), header.expires_at, true))
        })?;
        if created {
            self.written().await?;
        }
        Ok(created)
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
        let outcome = self.write_loop(key, |old| {
            let Some(old_header) = Self::live_header(key, old, now)? else {
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
        if outcome == UpdateOutcome::Updated {
            self.written().await?;
        }
        Ok(outcome)
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        let header = Header::of(record);
        if !header.is_live_at(now()) {
            // Not stored; whatever was there goes. Its index entry is left
            // for the reaper, which drops entries without a record.
            self.records.remove(key.as_bytes()).map_err(backend)?;
            return self.written().await;
        }
        let value = IVec::from(codec::VALUE.encode(header, record)?);
        // Unconditional: the loop only retries when another writer changed
        // the record between the read and the swap. A corrupt old record is
        // overwritten (its header is unreadable, so the new one is indexed).
        self.write_loop(key, |_| {
            Ok(Step::Write(value.clone(), header.expires_at, ()))
        })?;
        self.written().await
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let expires_at = expires_at.as_millis();
        let now = now();
        let touched = self.write_loop(key, |old| {
            let (Some(old), Some(_)) = (old, Self::live_header(key, old, now)?) else {
                return Ok(Step::Done(false));
            };
            let new = IVec::from(codec::VALUE.with_expiry(old, expires_at));
            Ok(Step::Write(new, expires_at, true))
        })?;
        if touched {
            self.written().await?;
        }
        Ok(touched)
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        // The record's index entry stays until its time comes: the reaper
        // drops entries whose record is gone. Finding the entry here would
        // need its position, which postponements do not record.
        let removed = self.records.remove(key.as_bytes()).map_err(backend)?;
        if removed.is_some() {
            self.written().await?;
        }
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        let (records, expiry) = (self.records.clone(), self.expiry.clone());
        session_core::run_blocking(BACKEND, move || {
            // Index first, records second: a record written during the
            // clear either goes with it or was swapped in after the index
            // was cleared, and then its writer finds its entry missing and
            // puts it back (see `swap`). The reverse order could remove the
            // entry of a record that stays.
            expiry.clear().map_err(backend)?;
            records.clear().map_err(backend)
        })
        .await?;
        self.written().await
    }

    async fn len(&self) -> Result<u64> {
        let records = self.records.clone();
        session_core::run_blocking(BACKEND, move || {
            let now = now();
            let mut count = 0u64;
            for entry in records.iter() {
                let (key, value) = entry.map_err(backend)?;
                let key = codec::session_key(&key)?;
                if codec::VALUE.read(&key, &value)?.is_live_at(now) {
                    count += 1;
                }
            }
            Ok(count)
        })
        .await
    }

    async fn all(&self) -> Result<Vec<(SessionKey, Record)>> {
        let records = self.records.clone();
        session_core::run_blocking(BACKEND, move || {
            let now = now();
            let mut out = Vec::new();
            for entry in records.iter() {
                let (key, value) = entry.map_err(backend)?;
                let key = codec::session_key(&key)?;
                if codec::VALUE.read(&key, &value)?.is_live_at(now) {
                    out.push((key, codec::VALUE.decode(&key, &value)?));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        let store = self.clone();
        let removed = session_core::run_blocking(BACKEND, move || store.reap_due(now())).await?;
        if removed > 0 {
            self.written().await?;
        }
        Ok(removed)
    }
}

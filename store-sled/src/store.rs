//! [`SledStore`] and its [`SessionStore`] implementation.

use std::path::Path;
use std::sync::Arc;

use session_core::{
    Error, Record, Result, SessionKey, SessionStore, Timestamp, UpdateOutcome, async_trait,
};
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};
use sled::{IVec, Transactional as _, Tree};

use crate::codec::{self, Header};
use crate::config::SledStoreBuilder;
use crate::{BACKEND, backend, blocking};

/// Index entries handled per transaction by `delete_expired`.
const REAP_BATCH: usize = 1000;

/// A [`SessionStore`] on one namespace (two trees) of a [`sled::Db`].
///
/// Cloning is cheap and shares the database. Point operations (`load`,
/// `create`, `update`, `save`, `touch`, `destroy`) run inline: each is one
/// sled read or one small transaction, a few microseconds, and sled does
/// its disk writes on its own background flusher (see the crate docs for
/// the measurements). Whole-namespace scans (`len`, `all`, `clear`,
/// `delete_expired`) and flushes run on tokio's blocking pool.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    records: Tree,
    expiry: Tree,
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

/// Run a transaction over (records, expiry), unwrapping sled's error layers:
/// an abort carries our own error, storage failures become backend errors.
fn transact<T>(
    records: &Tree,
    expiry: &Tree,
    f: impl Fn(&TransactionalTree, &TransactionalTree) -> ConflictableTransactionResult<T, Error>,
) -> Result<T> {
    (records, expiry)
        .transaction(|(r, e)| f(r, e))
        .map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => backend(e),
        })
}

/// Abort the running transaction with `error`.
fn abort(error: Error) -> ConflictableTransactionError<Error> {
    ConflictableTransactionError::Abort(error)
}

/// Remove the index entry of the value currently stored under `key`, if it
/// has a readable header.
fn unindex(
    expiry: &TransactionalTree,
    key: &SessionKey,
    old: Option<&IVec>,
) -> ConflictableTransactionResult<(), Error> {
    if let Some(header) = old.and_then(|v| Header::read(key, v).ok()) {
        expiry.remove(&codec::index_key(header.expires_at, key)[..])?;
    }
    Ok(())
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
        SledStoreBuilder::path(path.as_ref())
    }

    /// Configure a store on a fresh temporary database.
    pub fn builder_temporary() -> SledStoreBuilder {
        SledStoreBuilder::temporary()
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
        })
    }

    /// Another namespace of the same database.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn open_namespace(&self, namespace: &str) -> Result<Self> {
        Ok(Self::new(&self.db, namespace)?.with_sync_writes(self.sync_writes))
    }

    /// Flush after every write before returning (see
    /// [`SledStoreBuilder::with_sync_writes`]).
    #[must_use]
    pub fn with_sync_writes(mut self, sync: bool) -> Self {
        self.sync_writes = sync;
        self
    }

    /// Write and fsync everything written so far, on sled's thread pool.
    /// Returns the number of bytes flushed. After it returns, every earlier
    /// write survives a crash.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if the disk write fails.
    pub async fn flush(&self) -> Result<usize> {
        self.db.flush_async().await.map_err(backend)
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
}

#[async_trait]
impl SessionStore for SledStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        let Some(value) = self.records.get(key.as_bytes()).map_err(backend)? else {
            return Ok(None);
        };
        if !Header::read(key, &value)?.is_live_at(now()) {
            return Ok(None);
        }
        codec::decode(key, &value).map(Some)
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        let header = Header::of(record);
        let value = IVec::from(codec::encode(header, record)?);
        let index = codec::index_key(header.expires_at, key);
        let now = now();
        let created = transact(&self.records, &self.expiry, |r, e| {
            let old = r.get(key.as_bytes())?;
            if let Some(old) = &old {
                let old_header = Header::read(key, old).map_err(abort)?;
                if old_header.is_live_at(now) {
                    return Ok(false);
                }
            }
            unindex(e, key, old.as_ref())?;
            r.insert(&key.as_bytes()[..], value.clone())?;
            e.insert(&index[..], &[][..])?;
            Ok(true)
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
        let value = IVec::from(codec::encode(header, record)?);
        let index = codec::index_key(header.expires_at, key);
        let now = now();
        let outcome = transact(&self.records, &self.expiry, |r, e| {
            let Some(old) = r.get(key.as_bytes())? else {
                return Ok(UpdateOutcome::Missing);
            };
            let old_header = Header::read(key, &old).map_err(abort)?;
            if !old_header.is_live_at(now) {
                return Ok(UpdateOutcome::Missing);
            }
            if old_header.version != expected_version {
                return Ok(UpdateOutcome::Conflict);
            }
            e.remove(&codec::index_key(old_header.expires_at, key)[..])?;
            r.insert(&key.as_bytes()[..], value.clone())?;
            e.insert(&index[..], &[][..])?;
            Ok(UpdateOutcome::Updated)
        })?;
        if outcome == UpdateOutcome::Updated {
            self.written().await?;
        }
        Ok(outcome)
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        let header = Header::of(record);
        let live = header.is_live_at(now());
        let value = if live {
            Some(IVec::from(codec::encode(header, record)?))
        } else {
            None
        };
        let index = codec::index_key(header.expires_at, key);
        transact(&self.records, &self.expiry, |r, e| {
            let old = r.get(key.as_bytes())?;
            unindex(e, key, old.as_ref())?;
            match &value {
                Some(value) => {
                    r.insert(&key.as_bytes()[..], value.clone())?;
                    e.insert(&index[..], &[][..])?;
                }
                None => {
                    r.remove(&key.as_bytes()[..])?;
                }
            }
            Ok(())
        })?;
        self.written().await
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let expires_at = expires_at.as_millis();
        let index = codec::index_key(expires_at, key);
        let now = now();
        let touched = transact(&self.records, &self.expiry, |r, e| {
            let Some(old) = r.get(key.as_bytes())? else {
                return Ok(false);
            };
            let old_header = Header::read(key, &old).map_err(abort)?;
            if !old_header.is_live_at(now) {
                return Ok(false);
            }
            e.remove(&codec::index_key(old_header.expires_at, key)[..])?;
            r.insert(&key.as_bytes()[..], codec::with_expiry(&old, expires_at))?;
            e.insert(&index[..], &[][..])?;
            Ok(true)
        })?;
        if touched {
            self.written().await?;
        }
        Ok(touched)
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        let removed = transact(&self.records, &self.expiry, |r, e| {
            let old = r.remove(&key.as_bytes()[..])?;
            unindex(e, key, old.as_ref())?;
            Ok(old.is_some())
        })?;
        if removed {
            self.written().await?;
        }
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        let (records, expiry) = (self.records.clone(), self.expiry.clone());
        blocking(move || {
            // Index first, records second: a write racing with the clear can
            // at worst leave an index entry without a record (harmless: the
            // reaper drops it), never a record without its index entry.
            expiry.clear().map_err(backend)?;
            records.clear().map_err(backend)
        })
        .await?;
        self.written().await
    }

    async fn len(&self) -> Result<u64> {
        let records = self.records.clone();
        blocking(move || {
            let now = now();
            let mut count = 0u64;
            for entry in records.iter() {
                let (key, value) = entry.map_err(backend)?;
                let key = codec::session_key(&key)?;
                if Header::read(&key, &value)?.is_live_at(now) {
                    count += 1;
                }
            }
            Ok(count)
        })
        .await
    }

    async fn all(&self) -> Result<Vec<(SessionKey, Record)>> {
        let records = self.records.clone();
        blocking(move || {
            let now = now();
            let mut out = Vec::new();
            for entry in records.iter() {
                let (key, value) = entry.map_err(backend)?;
                let key = codec::session_key(&key)?;
                if Header::read(&key, &value)?.is_live_at(now) {
                    out.push((key, codec::decode(&key, &value)?));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        let (records, expiry) = (self.records.clone(), self.expiry.clone());
        let removed = blocking(move || {
            let cutoff = now();
            // Index keys below this bound are exactly the entries expiring
            // at or before the cut-off: the walk never sees a live entry.
            let bound = codec::sortable(cutoff.saturating_add(1));
            let mut removed = 0u64;
            loop {
                let batch = expiry
                    .range(..&bound[..])
                    .keys()
                    .take(REAP_BATCH)
                    .collect::<sled::Result<Vec<IVec>>>()
                    .map_err(backend)?;
                removed += transact(&records, &expiry, |r, e| {
                    let mut n = 0;
                    for index in &batch {
                        e.remove(index.clone())?;
                        let Some(Ok(key)) = index.get(8..).map(codec::session_key) else {
                            continue; // malformed entry: dropped
                        };
                        let Some(value) = r.get(key.as_bytes())? else {
                            continue; // already gone: a stale entry
                        };
                        // Only a record that is expired now goes; its own
                        // index entry is this one, or also in the range.
                        if Header::read(&key, &value).is_ok_and(|h| !h.is_live_at(cutoff)) {
                            r.remove(&key.as_bytes()[..])?;
                            n += 1;
                        }
                    }
                    Ok(n)
                })?;
                if batch.len() < REAP_BATCH {
                    return Ok(removed);
                }
            }
        })
        .await?;
        if removed > 0 {
            self.written().await?;
        }
        Ok(removed)
    }
}

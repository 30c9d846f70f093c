//! [`FileStore`]: the struct, its constructors and accessors, and the
//! [`SessionStore`] impl.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use session_core::{
    Cursor, Page, Principal, PrincipalIndex, Record, Result, SessionKey, SessionStore, Timestamp,
    UpdateOutcome, async_trait, run_blocking,
};

use crate::BACKEND;
use crate::builder::{Durability, FileStoreBuilder};
use crate::format::{self, Header};
use crate::layout::{SHARDS, shard_of};
use crate::shard::Dir;

/// A [`SessionStore`] and [`PrincipalIndex`] keeping one file per session
/// under a directory; see the [crate docs](crate) for the layout and how
/// expiry is enforced.
/// Cloning is cheap and shares the directory handle.
#[derive(Clone)]
pub struct FileStore {
    dir: Arc<Dir>,
    root: PathBuf,
    namespace: Arc<str>,
    durability: Durability,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("root", &self.root)
            .field("namespace", &self.namespace)
            .field("durability", &self.durability)
            .field("bucket_ms", &self.dir.bucket_ms)
            .finish()
    }
}

fn now() -> i64 {
    Timestamp::now().as_millis()
}

impl FileStore {
    /// Open (creating if needed) the root directory `root` with the default
    /// settings and namespace `sessions`.
    ///
    /// # Errors
    ///
    /// As [`FileStoreBuilder::build`].
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::builder(root).build().await
    }

    /// Configure a store under the root directory `root`.
    pub fn builder(root: impl AsRef<Path>) -> FileStoreBuilder {
        FileStoreBuilder::new(root.as_ref().to_owned())
    }

    pub(crate) fn from_dir(
        dir: Arc<Dir>,
        root: PathBuf,
        namespace: Arc<str>,
        durability: Durability,
    ) -> Self {
        Self {
            dir,
            root,
            namespace,
            durability,
        }
    }

    /// Another namespace (subdirectory) of the same root, with the same
    /// settings.
    ///
    /// # Errors
    ///
    /// As [`FileStoreBuilder::build`].
    pub async fn open_namespace(&self, namespace: &str) -> Result<Self> {
        Self::builder(&self.root)
            .with_namespace(namespace)
            .with_durability(self.durability)
            .with_bucket(std::time::Duration::from_millis(
                self.dir.bucket_ms.unsigned_abs(),
            ))
            .build()
            .await
    }

    /// The namespace this store works on.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The namespace's directory: `root/namespace`.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.layout.dir()
    }

    /// The file that holds (or would hold) the session of `key`:
    /// `dir/<first two hex digits>/<64 hex digits>`, built from the key's
    /// hex digits only. For inspection and tools.
    #[must_use]
    pub fn path_of(&self, key: &SessionKey) -> PathBuf {
        self.dir.layout.file(key)
    }

    /// The durability setting.
    #[must_use]
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Run `work` with the shard of `key` locked.
    async fn locked<T, F>(&self, key: &SessionKey, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Dir, &SessionKey) -> Result<T> + Send + 'static,
    {
        let key = *key;
        self.dir
            .locked(shard_of(&key), move |dir| work(dir, &key))
            .await
    }
}

#[async_trait]
impl SessionStore for FileStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        let (dir, key) = (Arc::clone(&self.dir), *key);
        run_blocking(BACKEND, move || dir.load(&key, now())).await
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        let header = Header::of(record);
        let bytes = format::FILE.encode(header, record)?;
        self.locked(key, move |dir, key| dir.create(key, header, &bytes, now()))
            .await
    }

    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<UpdateOutcome> {
        // Wrapping: a version is only compared for equality, and 2^64
        // updates of one session do not happen.
        let header = Header {
            version: expected_version.wrapping_add(1),
            ..Header::of(record)
        };
        let bytes = format::FILE.encode(header, record)?;
        self.locked(key, move |dir, key| {
            dir.update(key, expected_version, header, &bytes, now())
        })
        .await
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        let header = Header::of(record);
        let bytes = format::FILE.encode(header, record)?;
        self.locked(key, move |dir, key| dir.save(key, header, &bytes, now()))
            .await
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let expires_at = expires_at.as_millis();
        self.locked(key, move |dir, key| dir.touch(key, expires_at, now()))
            .await
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        self.locked(key, |dir, key| dir.destroy(key).map(drop))
            .await
    }

    async fn clear(&self) -> Result<()> {
        let dir = Arc::clone(&self.dir);
        run_blocking(BACKEND, move || dir.clear()).await
    }

    async fn len(&self) -> Result<u64> {
        let dir = Arc::clone(&self.dir);
        run_blocking(BACKEND, move || {
            let now = now();
            (0..SHARDS).try_fold(0, |count, shard| Ok(count + dir.count_shard(shard, now)?))
        })
        .await
    }

    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        let after = cursor.map(|c| c.key_after(BACKEND)).transpose()?;
        let dir = Arc::clone(&self.dir);
        run_blocking(BACKEND, move || {
            dir.list_after(after.as_ref(), limit, now())
        })
        .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        let dir = Arc::clone(&self.dir);
        run_blocking(BACKEND, move || dir.delete_expired(now())).await
    }
}

/// Markers in `.principals/`, kept under the shard locks by the same writes
/// that write the files: see the [crate documentation](crate#the-principal-index).
#[async_trait]
impl PrincipalIndex for FileStore {
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<(SessionKey, Record)>> {
        let (dir, principal) = (Arc::clone(&self.dir), principal.clone());
        run_blocking(BACKEND, move || dir.sessions_of(&principal, now())).await
    }

    async fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
    ) -> Result<u64> {
        let (dir, principal, except) = (Arc::clone(&self.dir), principal.clone(), except.copied());
        run_blocking(BACKEND, move || {
            dir.destroy_all_of(&principal, except.as_ref(), now())
        })
        .await
    }

    async fn index_len(&self, principal: &Principal) -> Result<u64> {
        let (dir, principal) = (Arc::clone(&self.dir), principal.clone());
        run_blocking(BACKEND, move || dir.marked_count(&principal)).await
    }
}

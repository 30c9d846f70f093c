//! The file system's limit for a file store: the same operations as
//! `session-store-file` (a read of the session's file; a write of a
//! temporary file in the same shard directory renamed over it; an unlink),
//! on the same 256-shard layout, with none of the store's work around them:
//! no shard lock, no version check, no expiry index, no async bridging (the
//! calls run inline on the calling task's thread). Durability: buffered, no
//! fsync, as the store's default `Durability::Buffered`.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use session_core::{SessionKey, Timestamp};

use crate::Result;
use crate::payload::Payload;
use crate::target::Target;

/// A directory of session files: `<dir>/<first two hex digits>/<64 hex
/// digits>`, each an 8-byte expiry then the data JSON.
#[derive(Debug)]
pub struct RawFile {
    dir: PathBuf,
    /// Makes each temporary file's name unique (there is no lock to make
    /// one name per shard safe).
    temp_seq: AtomicU64,
}

impl RawFile {
    /// Use `dir` (created, with its 256 shard directories).
    ///
    /// # Errors
    ///
    /// If a directory cannot be created.
    pub fn open(dir: &Path) -> Result<Self> {
        for shard in 0..256 {
            fs::create_dir_all(dir.join(format!("{shard:02x}")))?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            temp_seq: AtomicU64::new(0),
        })
    }

    fn shard(&self, key: &SessionKey) -> PathBuf {
        self.dir.join(&key.as_str()[..2])
    }

    fn path(&self, key: &SessionKey) -> PathBuf {
        self.shard(key).join(key.as_str())
    }

    /// The file's bytes, if there is one.
    fn read(&self, key: &SessionKey) -> Result<Option<Vec<u8>>> {
        match fs::read(self.path(key)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Write a temporary file in the shard and rename it over the session.
    fn replace(&self, key: &SessionKey, bytes: &[u8]) -> Result<()> {
        let n = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let temp = self.shard(key).join(format!(".tmp-{n}"));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        drop(file);
        fs::rename(&temp, self.path(key))?;
        Ok(())
    }
}

fn value(expires_at: i64, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&expires_at.to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn expiry(value: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    if let Some(head) = value.get(..8) {
        b.copy_from_slice(head);
    }
    i64::from_be_bytes(b)
}

#[async_trait]
impl Target for RawFile {
    async fn load(&self, key: &SessionKey) -> Result<bool> {
        let now = Timestamp::now().as_millis();
        Ok(self.read(key)?.is_some_and(|v| now < expiry(&v)))
    }

    async fn write(&self, key: &SessionKey, payload: &Payload, _expected: u64) -> Result<bool> {
        self.put(key, payload).await?;
        Ok(true)
    }

    async fn create(&self, key: &SessionKey, payload: &Payload) -> Result<bool> {
        let now = Timestamp::now().as_millis();
        if self.read(key)?.is_some_and(|v| now < expiry(&v)) {
            return Ok(false);
        }
        self.put(key, payload).await?;
        Ok(true)
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let now = Timestamp::now().as_millis();
        let Some(mut old) = self.read(key)?.filter(|v| now < expiry(v)) else {
            return Ok(false);
        };
        old[..8].copy_from_slice(&expires_at.as_millis().to_be_bytes());
        self.replace(key, &old)?;
        Ok(true)
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        match fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn put(&self, key: &SessionKey, payload: &Payload) -> Result<()> {
        let v = value(payload.expires_at.as_millis(), payload.data_json.as_bytes());
        self.replace(key, &v)
    }

    async fn clear(&self) -> Result<()> {
        for shard in fs::read_dir(&self.dir)? {
            for file in fs::read_dir(shard?.path())? {
                fs::remove_file(file?.path())?;
            }
        }
        Ok(())
    }
}

/// The file store and the raw directory, side by side in one temporary
/// folder. Both buffered (no fsync).
pub(crate) async fn open_pair(
    env: &crate::backends::Env,
    namespace: &str,
) -> Result<crate::backends::Opened> {
    use std::sync::Arc;
    let dir = env.temp_dir()?;
    let store = session_store_file::FileStore::builder(dir.path().join("store"))
        .with_namespace(namespace)
        .with_durability(session_store_file::Durability::Buffered)
        .build()
        .await?;
    let path = dir.path().join("raw");
    let raw = tokio::task::spawn_blocking(move || RawFile::open(&path)).await??;
    Ok(crate::backends::opened(
        Arc::new(store),
        Arc::new(raw),
        vec![Box::new(dir)],
    ))
}

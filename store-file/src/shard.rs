//! A namespace directory and its shards: locking a shard across tasks and
//! processes, reading session files, and writing them atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;

use session_core::{Result, SessionKey};
use tokio::sync::Mutex;

use crate::format::{self, HEAD_MAX, Head};
use crate::layout::{Layout, SHARDS, shard_of};
use crate::{BACKEND, io_error};

/// One namespace directory, shared by the clones of a store.
#[derive(Debug)]
pub(crate) struct Dir {
    pub(crate) layout: Layout,
    /// fsync files and directories before a write returns.
    pub(crate) sync: bool,
    /// Width of an expiry index bucket, in milliseconds (>= 1).
    pub(crate) bucket_ms: i64,
    /// One per shard: tasks of this process queue here, without holding a
    /// thread, before one of them takes the shard's file lock on the
    /// blocking pool.
    queues: Box<[Arc<Mutex<()>>]>,
}

/// A shard's file lock, held until dropped (closing the file releases it).
#[derive(Debug)]
pub(crate) struct ShardLock {
    _file: File,
}

impl Dir {
    pub(crate) fn new(layout: Layout, sync: bool, bucket_ms: i64) -> Self {
        Self {
            layout,
            sync,
            bucket_ms,
            queues: (0..SHARDS).map(|_| Arc::new(Mutex::new(()))).collect(),
        }
    }

    /// Run `work` on the blocking pool while holding `shard`'s lock: first
    /// this process's queue for the shard (async, no thread held while
    /// waiting), then the lock file (`flock`, exclusive), which excludes
    /// other processes. The queue's guard moves into the blocking task, so
    /// a caller that gives up waiting cannot let another task in while the
    /// work still runs.
    pub(crate) async fn locked<T, F>(self: &Arc<Self>, shard: usize, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Self) -> Result<T> + Send + 'static,
    {
        let guard = Arc::clone(&self.queues[shard % SHARDS]).lock_owned().await;
        let dir = Arc::clone(self);
        session_core::run_blocking(BACKEND, move || {
            let _queued = guard;
            let _lock = dir.lock_shard(shard)?;
            work(&dir)
        })
        .await
    }

    /// Take `shard`'s file lock, blocking this thread until it is free.
    /// The lock file is opened afresh each time: `flock` locks belong to an
    /// open file, so two opens in one process exclude each other too.
    pub(crate) fn lock_shard(&self, shard: usize) -> Result<ShardLock> {
        let path = self.layout.lock_file(shard);
        let open = || OpenOptions::new().create(true).append(true).open(&path);
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = self.layout.shard_dir(shard);
                fs::create_dir_all(&dir).map_err(|e| io_error("create", &dir, e))?;
                self.sync_parent(&dir)?;
                open()
            }
            other => other,
        }
        .map_err(|e| io_error("open", &path, e))?;
        file.lock().map_err(|e| io_error("lock", &path, e))?;
        Ok(ShardLock { _file: file })
    }

    /// The whole file of `key`, if there is one.
    pub(crate) fn read(&self, key: &SessionKey) -> Result<Option<Vec<u8>>> {
        let path = self.layout.file(key);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", &path, e)),
        }
    }

    /// The head (header and principal) of the file of `key`, if there is
    /// one, reading only its first [`HEAD_MAX`] bytes: one `read` for the
    /// header alone or with the principal, so anonymous sessions pay
    /// nothing for the principal's room.
    pub(crate) fn read_header(&self, key: &SessionKey) -> Result<Option<Head>> {
        let path = self.layout.file(key);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("open", &path, e)),
        };
        read_head(key, &path, file).map(Some)
    }

    /// Replace the file of `key` with `bytes` atomically: write the shard's
    /// temporary file (created with `O_EXCL`; only the lock holder writes
    /// it), fsync it if syncing, rename it over the session's file, fsync
    /// the shard directory if syncing. Readers see the old file or the new
    /// one, never a part. Call with the shard locked.
    pub(crate) fn write(&self, key: &SessionKey, bytes: &[u8]) -> Result<()> {
        let shard = shard_of(key);
        let temp = self.layout.temp_file(shard);
        let create = || OpenOptions::new().write(true).create_new(true).open(&temp);
        let mut file = match create() {
            // A leftover of a writer that died before its rename: only the
            // lock holder writes this file, so it is nobody's.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                remove_if_present(&temp)?;
                create()
            }
            other => other,
        }
        .map_err(|e| io_error("create", &temp, e))?;
        let written = file
            .write_all(bytes)
            .and_then(|()| if self.sync { file.sync_data() } else { Ok(()) });
        drop(file);
        let target = self.layout.file(key);
        let renamed = written
            .map_err(|e| io_error("write", &temp, e))
            .and_then(|()| fs::rename(&temp, &target).map_err(|e| io_error("rename", &target, e)));
        if let Err(e) = renamed {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        if self.sync {
            sync_dir(&self.layout.shard_dir(shard))?;
        }
        Ok(())
    }

    /// Remove the file of `key`; whether there was one. Call with the
    /// shard locked.
    pub(crate) fn remove(&self, key: &SessionKey) -> Result<bool> {
        let path = self.layout.file(key);
        let removed = remove_if_present(&path)?;
        if removed && self.sync {
            sync_dir(&self.layout.shard_dir(shard_of(key)))?;
        }
        Ok(removed)
    }

    /// fsync the directory holding `path`, if syncing (after creating
    /// `path`).
    pub(crate) fn sync_parent(&self, path: &Path) -> Result<()> {
        match path.parent() {
            Some(parent) if self.sync => sync_dir(parent),
            _ => Ok(()),
        }
    }
}

/// The head of the open session `file` of `key` (at `path`).
fn read_head(key: &SessionKey, path: &Path, mut file: File) -> Result<Head> {
    let mut head = [0u8; HEAD_MAX];
    let mut filled = 0;
    // Stop as soon as the head is in: one `read` for most files (the
    // first returns the whole head), not a second one to meet the end.
    while filled < format::head_len(&head[..filled]) {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("read", path, e)),
        }
    }
    format::read_head(key, &head[..filled])
}

/// Remove a file; whether it was there.
pub(crate) fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("remove", path, e)),
    }
}

/// fsync a directory, so the names created, renamed or removed in it last.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_error("sync", path, e))
}

//! The expiry index: which sessions may have expired by when, so that
//! `delete_expired` reads the files of those sessions and no others.
//!
//! Time is cut into buckets [`Dir::bucket_ms`] wide. The index file
//! `.expiry/<group>/<end>/<shard>` lists (one 64-hex key a line, appended)
//! keys of `shard` whose record expired before `end` when the line was
//! written. It keeps one invariant, under the shard's lock:
//!
//! > every session file expiring at `x` is listed in a bucket whose end is
//! > at most the end of `x`'s own bucket.
//!
//! So once a bucket has ended, every record it could hold has expired, and
//! `delete_expired` reads only ended buckets and the one `now` falls in
//! (whose expired records it reaps and whose live ones stay listed). A
//! line is a hint, the file is
//! the truth: a listed key may have been destroyed (nothing to do), or
//! postponed (its record is listed again in the bucket of its new expiry,
//! then this line goes). Writers add a line only when a key has no record
//! yet (or an unreadable one) or its expiry moves to an earlier bucket; a
//! postponement (a rolling `touch`, most `update`s) writes none.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use session_core::{Result, SessionKey};

use crate::io_error;
use crate::layout::{GROUP_MS, bucket_end, parse_shard, shard_name};
use crate::shard::{Dir, remove_if_present, sync_dir};

/// How many times an append retries after a reaper removed the (empty)
/// directory it was about to write into.
const APPEND_TRIES: usize = 8;

/// An ended bucket directory found by [`Dir::due_buckets`].
#[derive(Debug)]
pub(crate) struct Bucket {
    pub(crate) end: i64,
    pub(crate) path: PathBuf,
}

impl Dir {
    /// Keep the invariant for a record of `key` about to expire at
    /// `expires_at`, whose current file expires at `old` (`None`: no file,
    /// or an unreadable one). Call with the shard locked, before writing
    /// the file.
    pub(crate) fn index(&self, key: &SessionKey, old: Option<i64>, expires_at: i64) -> Result<()> {
        let end = bucket_end(expires_at, self.bucket_ms);
        match old {
            Some(old) if bucket_end(old, self.bucket_ms) <= end => Ok(()),
            _ => self.append(end, crate::layout::shard_of(key), &[*key]),
        }
    }

    /// Append `keys` (all of `shard`) to the bucket ending at `end`.
    pub(crate) fn append(&self, end: i64, shard: usize, keys: &[SessionKey]) -> Result<()> {
        let mut lines = Vec::with_capacity(keys.len() * 65);
        for key in keys {
            lines.extend_from_slice(key.as_str().as_bytes());
            lines.push(b'\n');
        }
        let path = self.layout.index_file(end, shard);
        let open = || OpenOptions::new().create(true).append(true).open(&path);
        let mut tries = 0;
        let mut file = loop {
            match open() {
                Ok(file) => break file,
                // The bucket or group directory does not exist yet, or a
                // reaper removed it (empty) meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < APPEND_TRIES => {
                    tries += 1;
                    let bucket = self.layout.bucket_dir(end);
                    fs::create_dir_all(&bucket).map_err(|e| io_error("create", &bucket, e))?;
                    if self.sync {
                        sync_dir(&self.layout.expiry_dir())?;
                        if let Some(group) = bucket.parent() {
                            sync_dir(group)?;
                        }
                    }
                }
                Err(e) => return Err(io_error("open", &path, e)),
            }
        };
        file.write_all(&lines)
            .and_then(|()| if self.sync { file.sync_data() } else { Ok(()) })
            .map_err(|e| io_error("append to", &path, e))?;
        if tries > 0 {
            self.sync_parent(&path)?;
        }
        Ok(())
    }

    /// The bucket directories that ended by `now` and the one `now` falls
    /// in (for this store's width), oldest first. Lists the index directory
    /// (groups) and the groups that began by then.
    pub(crate) fn due_buckets(&self, now: i64) -> Result<Vec<Bucket>> {
        let horizon = now.saturating_add(self.bucket_ms);
        let mut due = Vec::new();
        for (group, group_path) in numbered_entries(&self.layout.expiry_dir())? {
            if group.saturating_mul(GROUP_MS) > horizon {
                continue;
            }
            for (end, path) in numbered_entries(&group_path)? {
                if end <= horizon {
                    due.push(Bucket { end, path });
                }
            }
        }
        due.sort_by_key(|bucket| bucket.end);
        Ok(due)
    }

    /// Every index file, by shard: what `clear` removes.
    pub(crate) fn index_files(&self) -> Result<BTreeMap<usize, Vec<PathBuf>>> {
        let mut files: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
        for (_, group_path) in numbered_entries(&self.layout.expiry_dir())? {
            for (_, bucket_path) in numbered_entries(&group_path)? {
                for (shard, path) in shard_files(&bucket_path)? {
                    files.entry(shard).or_default().push(path);
                }
            }
        }
        Ok(files)
    }

    /// Reap one index file of the bucket ending at `end`: every listed key
    /// whose record has expired by `now` loses its file; a listed key whose
    /// record is live stays listed here if its expiry is still inside this
    /// bucket (the bucket `now` falls in), else it is listed again in its
    /// record's bucket (postponed since); destroyed keys are dropped. The
    /// index file is then removed, or replaced (temporary file and rename)
    /// by the lines that stay. Returns how many records were removed. Call
    /// with `shard` locked. A record whose file cannot be decoded is left
    /// for `load` to report (and `destroy`, `save` or `clear` to remove).
    pub(crate) fn reap_index_file(
        &self,
        shard: usize,
        end: i64,
        path: &Path,
        now: i64,
    ) -> Result<u64> {
        let text = match fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error("read", path, e)),
        };
        let mut keys: Vec<SessionKey> = text
            .split(|&b| b == b'\n')
            .filter_map(|line| std::str::from_utf8(line).ok())
            .filter_map(|line| SessionKey::parse(line).ok())
            .filter(|key| crate::layout::shard_of(key) == shard)
            .collect();
        let listed = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        keys.sort_unstable();
        keys.dedup();
        let mut removed = 0;
        let mut kept = Vec::new();
        let mut relist: BTreeMap<i64, Vec<SessionKey>> = BTreeMap::new();
        for key in keys {
            match self.read_header(&key) {
                Ok(None) | Err(session_core::Error::Decode { .. }) => {}
                Ok(Some(head)) if head.header.is_live_at(now) => {
                    let own = bucket_end(head.header.expires_at, self.bucket_ms);
                    if own <= end {
                        kept.push(key);
                    } else {
                        relist.entry(own).or_default().push(key);
                    }
                }
                Ok(Some(head)) => {
                    if remove_if_present(&self.layout.file(&key))? {
                        removed += 1;
                    }
                    // The marker after the file (see the `owners` module).
                    if !head.owner.is_empty() {
                        self.unlink(&head.owner, &key)?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        for (end, keys) in relist {
            self.append(end, shard, &keys)?;
        }
        if removed > 0 && self.sync {
            sync_dir(&self.layout.shard_dir(shard))?;
        }
        let leftover = path.extension().is_some();
        if kept.is_empty() {
            remove_if_present(path)?;
        } else if leftover {
            self.append(end, shard, &kept)?;
            remove_if_present(path)?;
        } else if kept.len() != listed {
            self.rewrite(path, &kept)?;
        }
        Ok(removed)
    }

    /// Replace the index file at `path` by `keys`, atomically.
    fn rewrite(&self, path: &Path, keys: &[SessionKey]) -> Result<()> {
        let mut lines = Vec::with_capacity(keys.len() * 65);
        for key in keys {
            lines.extend_from_slice(key.as_str().as_bytes());
            lines.push(b'\n');
        }
        let temp = path.with_extension("tmp");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(|e| io_error("create", &temp, e))?;
        file.write_all(&lines)
            .and_then(|()| if self.sync { file.sync_data() } else { Ok(()) })
            .and_then(|()| fs::rename(&temp, path))
            .map_err(|e| {
                let _ = fs::remove_file(&temp);
                io_error("rewrite", path, e)
            })?;
        self.sync_parent(path)
    }

    /// Remove the bucket directories and groups left empty, as far as
    /// they are (a writer may have added to one meanwhile: it stays).
    pub(crate) fn prune(&self, buckets: impl IntoIterator<Item = PathBuf>) {
        let mut groups = Vec::new();
        for bucket in buckets {
            let _ = fs::remove_dir(&bucket);
            if let Some(group) = bucket.parent() {
                groups.push(group.to_owned());
            }
        }
        groups.sort();
        groups.dedup();
        for group in groups {
            let _ = fs::remove_dir(&group);
        }
    }
}

/// The entries of `dir` whose names are decimal integers (index groups and
/// buckets); nothing if `dir` does not exist.
fn numbered_entries(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    named_entries(dir, |name| name.parse::<i64>().ok())
}

/// The index files of a bucket directory, by shard: `ab`, and `ab.tmp`
/// left by a reaper that died while replacing `ab` (its lines are as good
/// a hint as any).
pub(crate) fn shard_files(dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    named_entries(dir, |name| {
        let stem = name.strip_suffix(".tmp").unwrap_or(name);
        parse_shard(stem).filter(|&shard| shard_name(shard) == stem)
    })
}

fn named_entries<T>(dir: &Path, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<(T, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list", dir, e))?;
        if let Some(value) = entry.file_name().to_str().and_then(&parse) {
            out.push((value, entry.path()));
        }
    }
    Ok(out)
}

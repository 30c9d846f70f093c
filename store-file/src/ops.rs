//! The store operations' blocking bodies, run on the blocking pool with the
//! key's shard locked (writes) or without a lock (reads: a file is always
//! whole, the rename swaps it in at once).

use std::collections::BinaryHeap;
use std::fs;
use std::io;
use std::num::NonZeroUsize;

use session_core::{Page, Record, Result, SessionKey, UpdateOutcome};

use crate::format::{self, Head, Header};
use crate::io_error;
use crate::layout::{SHARDS, TEMP_FILE, shard_of};
use crate::shard::{Dir, remove_if_present};

impl Dir {
    /// The live record of `key`.
    pub(crate) fn load(&self, key: &SessionKey, now: i64) -> Result<Option<Record>> {
        let Some(bytes) = self.read(key)? else {
            return Ok(None);
        };
        if !format::read(key, &bytes)?.is_live_at(now) {
            return Ok(None);
        }
        format::decode(key, &bytes).map(Some)
    }

    /// `create`: write `bytes` (a record expiring at `header.expires_at`)
    /// unless a live record is there. A record already expired is not
    /// written (an expired one in its place goes): it would never be read.
    pub(crate) fn create(
        &self,
        key: &SessionKey,
        header: Header,
        bytes: &[u8],
        now: i64,
    ) -> Result<bool> {
        // An unreadable file is reported, not silently replaced.
        let old = self.read_header(key)?;
        if old.as_ref().is_some_and(|old| old.header.is_live_at(now)) {
            return Ok(false);
        }
        self.put(key, old.as_ref(), header, bytes, now)?;
        Ok(true)
    }

    /// `update`: replace a live record at `expected` version.
    pub(crate) fn update(
        &self,
        key: &SessionKey,
        expected: u64,
        header: Header,
        bytes: &[u8],
        now: i64,
    ) -> Result<UpdateOutcome> {
        let Some(old) = self
            .read_header(key)?
            .filter(|old| old.header.is_live_at(now))
        else {
            return Ok(UpdateOutcome::Missing);
        };
        if old.header.version != expected {
            return Ok(UpdateOutcome::Conflict);
        }
        self.put(key, Some(&old), header, bytes, now)?;
        Ok(UpdateOutcome::Updated)
    }

    /// `save`: write whatever is there (an unreadable file is replaced).
    pub(crate) fn save(
        &self,
        key: &SessionKey,
        header: Header,
        bytes: &[u8],
        now: i64,
    ) -> Result<()> {
        let old = self.read_header(key).ok().flatten();
        self.put(key, old.as_ref(), header, bytes, now)
    }

    /// `touch`: move the expiry of a live record, copying its data bytes.
    pub(crate) fn touch(&self, key: &SessionKey, expires_at: i64, now: i64) -> Result<bool> {
        let Some(bytes) = self.read(key)? else {
            return Ok(false);
        };
        let old = format::read_head(key, &bytes)?;
        if !old.header.is_live_at(now) {
            return Ok(false);
        }
        let header = Header {
            expires_at,
            ..old.header
        };
        // The same bytes but the expiry, so the same principal (or the same
        // format 1 file, without one).
        self.put(
            key,
            Some(&old),
            header,
            &format::FILE.with_expiry(&bytes, expires_at),
            now,
        )?;
        Ok(true)
    }

    /// Write `bytes` (expiring at `header.expires_at`) over the file of
    /// `key`, whose current head is `old` (`None`: no file, or an
    /// unreadable one); a record already expired is removed instead. Lists
    /// the key in the expiry index first when the invariant needs it;
    /// creates the marker of a new principal before the file and removes
    /// the old principal's after it (see the `owners` module). A write
    /// that keeps the principal (anonymous ones: none before, none after)
    /// touches no marker.
    fn put(
        &self,
        key: &SessionKey,
        old: Option<&Head>,
        header: Header,
        bytes: &[u8],
        now: i64,
    ) -> Result<()> {
        let old_owner = old.map_or(&[][..], |old| &old.owner[..]);
        if !header.is_live_at(now) {
            self.remove(key)?;
            if !old_owner.is_empty() {
                self.unlink(old_owner, key)?;
            }
            return Ok(());
        }
        let new_owner = format::owner(bytes);
        if !new_owner.is_empty() && new_owner != old_owner {
            self.link(new_owner, key)?;
        }
        self.index(key, old.map(|old| old.header.expires_at), header.expires_at)?;
        self.write(key, bytes)?;
        if !old_owner.is_empty() && old_owner != new_owner {
            self.unlink(old_owner, key)?;
        }
        Ok(())
    }

    /// The number of live records of one shard, unlocked.
    pub(crate) fn count_shard(&self, shard: usize, now: i64) -> Result<u64> {
        let mut count = 0;
        self.each_key(shard, |key| {
            // Gone since it was listed: destroyed meanwhile.
            if let Some(head) = self.read_header(&key)?
                && head.header.is_live_at(now)
            {
                count += 1;
            }
            Ok(())
        })?;
        Ok(count)
    }

    /// One page of `list`, unlocked: the session files are named by their
    /// keys' hex digits in shards by the first byte, so key order is shard
    /// order, then name order. Reads up to `limit` names after `after`
    /// (from its shard on; earlier shards are never listed nor opened),
    /// then the files of those names, returning the live records; the next
    /// page resumes after the last name read.
    pub(crate) fn list_after(
        &self,
        after: Option<&SessionKey>,
        limit: NonZeroUsize,
        now: i64,
    ) -> Result<Page> {
        let mut scanned = Vec::new();
        for shard in after.map_or(0, shard_of)..SHARDS {
            let want = limit.get() - scanned.len();
            scanned.extend(
                self.keys_after(shard, after, want)?
                    .into_iter()
                    .map(|k| (k, ())),
            );
            if scanned.len() >= limit.get() {
                break;
            }
        }
        // A file removed since its name was read loads as `None`: skipped.
        Page::from_key_ordered(scanned, limit, |key, ()| self.load(&key, now))
    }

    /// The `want` smallest keys of `shard` greater than `after`, in order.
    /// A bounded heap keeps memory at `want` keys however large the shard.
    fn keys_after(
        &self,
        shard: usize,
        after: Option<&SessionKey>,
        want: usize,
    ) -> Result<Vec<SessionKey>> {
        let mut smallest = BinaryHeap::new();
        self.each_key(shard, |key| {
            if after.is_none_or(|after| key > *after) {
                smallest.push(key);
                if smallest.len() > want {
                    smallest.pop();
                }
            }
            Ok(())
        })?;
        Ok(smallest.into_sorted_vec())
    }

    /// Call `each` with the key of every session file of `shard`, in
    /// directory order, unlocked. Only names that are a key of this shard
    /// count: the lock, a temporary file or anything else someone put here
    /// is not a session. A missing shard directory has none.
    fn each_key(&self, shard: usize, mut each: impl FnMut(SessionKey) -> Result<()>) -> Result<()> {
        let dir = self.layout.shard_dir(shard);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list", &dir, e))?;
            if let Some(key) = entry
                .file_name()
                .to_str()
                .and_then(|name| SessionKey::parse(name).ok())
                .filter(|key| shard_of(key) == shard)
            {
                each(key)?;
            }
        }
        Ok(())
    }

    /// `clear`: every session file, temporary file, index file and marker,
    /// shard by shard under each shard's lock (taken on this thread). The
    /// index files and markers are listed first: those a writer adds
    /// meanwhile stay, with the file they are for (or as a marker too
    /// many, if `clear` removed that file after the listing).
    pub(crate) fn clear(&self) -> Result<()> {
        let mut index_files = self.index_files()?;
        let mut markers = self.markers()?;
        let mut buckets = Vec::new();
        let mut principals = Vec::new();
        for shard in 0..SHARDS {
            let dir = self.layout.shard_dir(shard);
            let index = index_files.remove(&shard).unwrap_or_default();
            let marked = markers.remove(&shard).unwrap_or_default();
            if !dir.exists() && index.is_empty() && marked.is_empty() {
                continue;
            }
            let _lock = self.lock_shard(shard)?;
            let entries = fs::read_dir(&dir).map_err(|e| io_error("list", &dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io_error("list", &dir, e))?;
                let name = entry.file_name();
                if name == crate::layout::LOCK_FILE {
                    continue;
                }
                let is_session = name.to_str().is_some_and(|n| SessionKey::parse(n).is_ok());
                if is_session || name == TEMP_FILE {
                    remove_if_present(&entry.path())?;
                }
            }
            for path in index {
                remove_if_present(&path)?;
                if let Some(bucket) = path.parent() {
                    buckets.push(bucket.to_owned());
                }
            }
            for path in marked {
                remove_if_present(&path)?;
                if let Some(principal) = path.parent() {
                    principals.push(principal.to_owned());
                }
            }
            if self.sync {
                crate::shard::sync_dir(&dir)?;
            }
        }
        buckets.sort();
        buckets.dedup();
        self.prune(buckets);
        principals.sort();
        principals.dedup();
        for principal in principals {
            // Left unless empty (a writer may have added a marker).
            let _ = fs::remove_dir(principal);
        }
        Ok(())
    }

    /// `delete_expired`: reap every ended bucket and the current one, then
    /// remove temporary
    /// files left by writers that died before their rename. Takes each
    /// shard's lock in turn on this thread.
    pub(crate) fn delete_expired(&self, now: i64) -> Result<u64> {
        let mut removed = 0;
        let due = self.due_buckets(now)?;
        for bucket in &due {
            for (shard, path) in crate::index::shard_files(&bucket.path)? {
                let _lock = self.lock_shard(shard)?;
                removed += self.reap_index_file(shard, bucket.end, &path, now)?;
            }
        }
        self.prune(
            due.into_iter()
                .filter(|bucket| bucket.end <= now)
                .map(|bucket| bucket.path),
        );
        self.remove_leftovers()?;
        Ok(removed)
    }

    /// Remove the temporary files of writers that died before renaming
    /// them: a stat per shard, and the shard's lock only where there is
    /// one (under the lock, a temporary file is nobody's).
    fn remove_leftovers(&self) -> Result<()> {
        for shard in 0..SHARDS {
            let temp = self.layout.temp_file(shard);
            if fs::symlink_metadata(&temp).is_ok() {
                let _lock = self.lock_shard(shard)?;
                remove_if_present(&temp)?;
            }
        }
        Ok(())
    }
}

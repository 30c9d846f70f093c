//! The principal index: which sessions name which principal, so that
//! `sessions_of` and `destroy_all_of` read that principal's files and no
//! others.
//!
//! A principal has a directory `.principals/<sha256 hex>/` holding one
//! empty marker file per session, named by the key. It keeps one
//! invariant, under the key's shard lock (all writes of a key hold it):
//!
//! > every session file that names a principal has its marker.
//!
//! A write whose file names a principal its old file did not creates the
//! marker *before* renaming the file into place; a write that changes or
//! removes the principal, `destroy` and `delete_expired` remove the old
//! marker *after* the file. So a crash leaves at most a marker too many,
//! never one missing. A marker is a hint, the file is the truth:
//! `sessions_of` reads each marked file and returns it only if it names
//! the principal and is live, and drops (under the shard lock, after
//! checking again) a marker whose file is gone or names someone else.
//! Writes that keep the principal (every `touch`, most `update`s, all of
//! anonymous traffic) touch no marker.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io;

use session_core::{Principal, Record, Result, SessionKey};

use crate::format;
use crate::io_error;
use crate::layout::shard_of;
use crate::shard::{Dir, remove_if_present, sync_dir};

/// How many times creating a marker retries after a cleaner removed its
/// (empty) principal directory meanwhile.
const LINK_TRIES: usize = 8;

impl Dir {
    /// Create the marker of `key` under `owner` (a principal's bytes).
    /// Call with the shard locked, before renaming the file that names
    /// `owner` into place.
    pub(crate) fn link(&self, owner: &[u8], key: &SessionKey) -> Result<()> {
        let path = self.layout.marker(owner, key);
        // An existing marker (empty anyway) is kept as it is.
        let create = || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
        };
        let mut tries = 0;
        loop {
            match create() {
                Ok(_) => break,
                // The principal's directory does not exist yet, or a
                // cleaner removed it (empty) meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < LINK_TRIES => {
                    tries += 1;
                    let dir = self.layout.principal_dir(owner);
                    fs::create_dir_all(&dir).map_err(|e| io_error("create", &dir, e))?;
                    if self.sync {
                        sync_dir(&self.layout.principals_dir())?;
                        sync_dir(self.layout.dir())?;
                    }
                }
                Err(e) => return Err(io_error("create", &path, e)),
            }
        }
        // The marker must be on disk before the file that needs it.
        self.sync_parent(&path)
    }

    /// Remove the marker of `key` under `owner`, and the principal's
    /// directory if that was its last. Call with the shard locked, after
    /// the file stopped naming `owner`. Not synced: a marker that comes
    /// back after a crash is one too many, which `sessions_of` drops.
    pub(crate) fn unlink(&self, owner: &[u8], key: &SessionKey) -> Result<()> {
        if remove_if_present(&self.layout.marker(owner, key))? {
            // Fails (not empty) unless that was the last marker; a writer
            // creating a marker there meanwhile creates it again.
            let _ = fs::remove_dir(self.layout.principal_dir(owner));
        }
        Ok(())
    }

    /// `destroy`: remove the file of `key` and its marker; whether there
    /// was a file. Call with the shard locked. Reads the file's head first
    /// (one `open` and `read`), to know whose marker to remove; a file
    /// whose head cannot be read is removed all the same.
    pub(crate) fn destroy(&self, key: &SessionKey) -> Result<bool> {
        let old = self.read_header(key).ok().flatten();
        let removed = self.remove(key)?;
        if let Some(old) = old
            && !old.owner.is_empty()
        {
            self.unlink(&old.owner, key)?;
        }
        Ok(removed)
    }

    /// The keys marked under `principal`, by shard. A missing directory
    /// has none; names that are not keys are not markers.
    fn marked(&self, principal: &Principal) -> Result<BTreeMap<usize, Vec<SessionKey>>> {
        let dir = self.layout.principal_dir(principal.as_str().as_bytes());
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(io_error("list", &dir, e)),
        };
        let mut keys: BTreeMap<usize, Vec<SessionKey>> = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list", &dir, e))?;
            if let Some(key) = entry
                .file_name()
                .to_str()
                .and_then(|name| SessionKey::parse(name).ok())
            {
                keys.entry(shard_of(&key)).or_default().push(key);
            }
        }
        Ok(keys)
    }

    /// `index_len`: the markers of `principal`, stale ones included.
    pub(crate) fn marked_count(&self, principal: &Principal) -> Result<u64> {
        let count: usize = self.marked(principal)?.values().map(Vec::len).sum();
        Ok(count as u64)
    }

    /// `sessions_of`: read each marked file, unlocked (a rename swaps a
    /// whole file in); return those that name `principal` and are live at
    /// `now`. Markers whose file is gone or names someone else are dropped
    /// afterwards, each under its shard's lock after reading the file
    /// again (a writer may have given it to `principal` meanwhile).
    /// Expired files keep their markers until `delete_expired` removes
    /// both.
    pub(crate) fn sessions_of(
        &self,
        principal: &Principal,
        now: i64,
    ) -> Result<Vec<(SessionKey, Record)>> {
        let owner = principal.as_str().as_bytes();
        let mut found = Vec::new();
        let mut stale: BTreeMap<usize, Vec<SessionKey>> = BTreeMap::new();
        for (shard, keys) in self.marked(principal)? {
            for key in keys {
                let Some(bytes) = self.read(&key)? else {
                    stale.entry(shard).or_default().push(key);
                    continue;
                };
                if format::owner(&bytes) != owner {
                    stale.entry(shard).or_default().push(key);
                } else if format::read(&key, &bytes)?.is_live_at(now) {
                    found.push((key, format::decode(&key, &bytes)?));
                }
            }
        }
        for (shard, keys) in stale {
            let _lock = self.lock_shard(shard)?;
            for key in keys {
                if self.owner_now(&key)?.is_none_or(|now| now != owner) {
                    self.unlink(owner, &key)?;
                }
            }
        }
        Ok(found)
    }

    /// The principal's bytes in the file of `key` (empty for none), or
    /// `None` if there is no file or its head cannot be decoded: such a
    /// file is nobody's session (every read of it fails). Other errors
    /// (the disk) are errors: a marker is never dropped on a guess.
    fn owner_now(&self, key: &SessionKey) -> Result<Option<Vec<u8>>> {
        match self.read_header(key) {
            Ok(head) => Ok(head.map(|head| head.owner)),
            Err(session_core::Error::Decode { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `destroy_all_of`: shard by shard, under each shard's lock, remove
    /// every marked file that names `principal` (expired ones too) but
    /// `except`'s, and its marker; drop the markers of files gone or named
    /// otherwise. Returns how many live sessions it removed. A write of
    /// one of them either came first (and is removed) or finds no file
    /// (`update` is `Missing`).
    pub(crate) fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
        now: i64,
    ) -> Result<u64> {
        let owner = principal.as_str().as_bytes();
        let mut destroyed = 0;
        for (shard, keys) in self.marked(principal)? {
            let _lock = self.lock_shard(shard)?;
            let mut removed_any = false;
            for key in keys {
                let head = match self.read_header(&key) {
                    Ok(head) => head,
                    // Unreadable: nobody's session (every read of it fails),
                    // left in place as `delete_expired` leaves it; its
                    // marker goes.
                    Err(session_core::Error::Decode { .. }) => None,
                    Err(e) => return Err(e),
                };
                match head {
                    Some(head) if head.owner == owner => {
                        if except == Some(&key) {
                            continue;
                        }
                        if remove_if_present(&self.layout.file(&key))? {
                            removed_any = true;
                            destroyed += u64::from(head.header.is_live_at(now));
                        }
                        self.unlink(owner, &key)?;
                    }
                    _ => self.unlink(owner, &key)?,
                }
            }
            if removed_any && self.sync {
                sync_dir(&self.layout.shard_dir(shard))?;
            }
        }
        Ok(destroyed)
    }

    /// Every marker, by the shard of its key: what `clear` removes, each
    /// under its shard's lock.
    pub(crate) fn markers(&self) -> Result<BTreeMap<usize, Vec<std::path::PathBuf>>> {
        let root = self.layout.principals_dir();
        let mut markers: BTreeMap<usize, Vec<std::path::PathBuf>> = BTreeMap::new();
        let principals = match fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(markers),
            Err(e) => return Err(io_error("list", &root, e)),
        };
        for principal in principals {
            let dir = principal.map_err(|e| io_error("list", &root, e))?.path();
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                // Removed meanwhile (emptied), or not a directory.
                Err(_) => continue,
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_error("list", &dir, e))?;
                if let Some(key) = entry
                    .file_name()
                    .to_str()
                    .and_then(|name| SessionKey::parse(name).ok())
                {
                    markers
                        .entry(shard_of(&key))
                        .or_default()
                        .push(entry.path());
                }
            }
        }
        Ok(markers)
    }
}

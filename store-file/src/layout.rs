//! Where things live under a namespace directory.
//!
//! ```text
//! <root>/<namespace>/
//!   .format                      "session-store-file 2": what wrote this
//!   ab/                          one of 256 shards: the first byte of the key
//!     ab12…ef                    a session: the key's 64 hex characters
//!     .lock                      the shard's lock file (never removed)
//!     .tmp                       a file being written (only under the lock)
//!   .expiry/<group>/<end>/ab     the expiry index: keys of shard `ab` whose
//!                                records expired before <end> (ms) when
//!                                they were listed, one hex key a line
//!   .principals/<p>/ab12…ef      the principal index: an empty marker per
//!                                session whose file names the principal
//!                                whose SHA-256 is <p> (64 hex characters)
//! ```
//!
//! A session's path is built from the key's hex digits only, and a
//! principal's from the hex digits of its hash, so no input can name a path
//! outside the namespace.

use std::path::{Path, PathBuf};

use session_core::{Error, Result, SessionKey};
use sha2::{Digest, Sha256};

use crate::BACKEND;

/// Shards per namespace: one per value of the key's first byte.
pub(crate) const SHARDS: usize = 256;
/// The index directory inside a namespace.
pub(crate) const EXPIRY_DIR: &str = ".expiry";
/// The principal index directory inside a namespace.
pub(crate) const PRINCIPALS_DIR: &str = ".principals";
/// The shard lock file's name.
pub(crate) const LOCK_FILE: &str = ".lock";
/// The name of the file a writer fills before renaming it over a session.
pub(crate) const TEMP_FILE: &str = ".tmp";
/// The format marker's name and contents.
pub(crate) const FORMAT_FILE: &str = ".format";
/// What [`FORMAT_FILE`] holds.
pub(crate) const FORMAT_MARKER: &str = "session-store-file 2\n";
/// What [`FORMAT_FILE`] held before principals: this version reads such a
/// directory's files, and rewrites the marker when it opens one.
pub(crate) const FORMAT_MARKER_1: &str = "session-store-file 1\n";
/// Width of an index group directory, in milliseconds (about 17.5 minutes):
/// `delete_expired` lists only the groups that began in the past, so the
/// number of bucket directories it lists stays bounded however far ahead
/// sessions expire.
pub(crate) const GROUP_MS: i64 = 1 << 20;

/// The shard of `key`.
pub(crate) fn shard_of(key: &SessionKey) -> usize {
    usize::from(key.as_bytes()[0])
}

/// The directory name of a shard: two lower-case hex digits.
pub(crate) fn shard_name(shard: usize) -> String {
    format!("{shard:02x}")
}

/// The shard a file or directory name stands for, if it is one.
pub(crate) fn parse_shard(name: &str) -> Option<usize> {
    let valid = name.len() == 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    valid
        .then(|| usize::from_str_radix(name, 16).ok())
        .flatten()
}

/// The end (exclusive, ms) of the index bucket of an expiry `expires_at`
/// for buckets `width` ms wide: the first instant at which every record of
/// the bucket has expired.
pub(crate) fn bucket_end(expires_at: i64, width: i64) -> i64 {
    expires_at
        .div_euclid(width)
        .saturating_add(1)
        .saturating_mul(width)
}

/// The group of a bucket end.
pub(crate) fn group_of(end: i64) -> i64 {
    end.div_euclid(GROUP_MS)
}

/// Paths of one namespace.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn shard_dir(&self, shard: usize) -> PathBuf {
        self.dir.join(shard_name(shard))
    }

    pub(crate) fn file(&self, key: &SessionKey) -> PathBuf {
        let mut path = self.shard_dir(shard_of(key));
        path.push(key.as_str());
        path
    }

    pub(crate) fn lock_file(&self, shard: usize) -> PathBuf {
        self.shard_dir(shard).join(LOCK_FILE)
    }

    pub(crate) fn temp_file(&self, shard: usize) -> PathBuf {
        self.shard_dir(shard).join(TEMP_FILE)
    }

    pub(crate) fn expiry_dir(&self) -> PathBuf {
        self.dir.join(EXPIRY_DIR)
    }

    pub(crate) fn group_dir(&self, group: i64) -> PathBuf {
        self.expiry_dir().join(group.to_string())
    }

    pub(crate) fn bucket_dir(&self, end: i64) -> PathBuf {
        let mut path = self.group_dir(group_of(end));
        path.push(end.to_string());
        path
    }

    pub(crate) fn index_file(&self, end: i64, shard: usize) -> PathBuf {
        let mut path = self.bucket_dir(end);
        path.push(shard_name(shard));
        path
    }

    pub(crate) fn principals_dir(&self) -> PathBuf {
        self.dir.join(PRINCIPALS_DIR)
    }

    /// The marker directory of the principal whose bytes are `owner`:
    /// named by their SHA-256 in hex, so any name (any length, any
    /// character) makes one fixed-length, safe file name.
    pub(crate) fn principal_dir(&self, owner: &[u8]) -> PathBuf {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(owner);
        let mut name = String::with_capacity(64);
        for b in digest {
            name.push(char::from(HEX[usize::from(b >> 4)]));
            name.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        self.principals_dir().join(name)
    }

    /// The marker of `key` under the principal whose bytes are `owner`.
    pub(crate) fn marker(&self, owner: &[u8], key: &SessionKey) -> PathBuf {
        let mut path = self.principal_dir(owner);
        path.push(key.as_str());
        path
    }
}

/// Check a namespace: 1 to 128 characters among ASCII letters, digits, `_`,
/// `-` and `.`, not starting with `.` (so never `.`, `..` or a hidden name).
pub(crate) fn validate_namespace(namespace: &str) -> Result<()> {
    let ok = (1..=128).contains(&namespace.len())
        && !namespace.starts_with('.')
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
                 digits, '_', '-' and '.', not starting with '.'"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_end_after_every_expiry_they_hold() {
        assert_eq!(bucket_end(0, 1000), 1000);
        assert_eq!(bucket_end(999, 1000), 1000);
        assert_eq!(bucket_end(1000, 1000), 2000);
        assert_eq!(bucket_end(-1, 1000), 0);
        assert_eq!(bucket_end(i64::MAX, 1000), i64::MAX);
        for x in [-5_000, -1, 0, 1, 123_456_789] {
            assert!(bucket_end(x, 1000) > x);
            assert!(bucket_end(x, 1000) <= x + 1000);
        }
    }

    #[test]
    fn shards_and_names() {
        assert_eq!(parse_shard("ab"), Some(0xab));
        assert_eq!(parse_shard("AB"), None);
        assert_eq!(parse_shard(".lock"), None);
        assert_eq!(parse_shard(&shard_name(7)), Some(7));
        assert!(validate_namespace("a.b-c_d").is_ok());
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(validate_namespace(bad).is_err(), "{bad:?}");
        }
    }
}

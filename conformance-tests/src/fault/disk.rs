//! A full disk: a small tmpfs mounted for one test, and a ballast file to
//! fill it and free it again.

use std::path::{Path, PathBuf};
use std::process::Command;

use session_core::{Error, Record, SessionKey, SessionStore};

use crate::env;
use crate::fixtures::key;

/// A tmpfs of a few megabytes on a fresh temporary folder, for full-disk
/// tests; unmounted (lazily, so an open file does not keep it) and its
/// folder removed on drop, also when the test fails.
///
/// Mounting needs root (or `CAP_SYS_ADMIN`). A run that cannot mount fails
/// the test, saying so; it skips only when it opts out with
/// [`env::FULL_DISK_OPT_OUT`]`=1`.
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mount `bytes` of tmpfs, or `None` (printing why) if this run opted
    /// out of full-disk tests.
    ///
    /// # Panics
    ///
    /// If the tmpfs cannot be mounted: this is a test helper.
    #[must_use]
    pub fn mount(bytes: u64) -> Option<Self> {
        if env::opted_out(env::FULL_DISK_OPT_OUT) {
            eprintln!("skipped: {}=1", env::FULL_DISK_OPT_OUT);
            return None;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(Self { dir }),
            other => panic!(
                "cannot mount a tmpfs for the full-disk test ({other:?}): it needs root (or \
                 CAP_SYS_ADMIN); set {}=1 to skip it explicitly",
                env::FULL_DISK_OPT_OUT
            ),
        }
    }

    /// The mounted folder.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file of `bytes` into the tmpfs, to take that much space;
    /// returns its path, to remove when space should come back.
    ///
    /// # Panics
    ///
    /// If the file cannot be written: this is a test helper.
    #[must_use]
    pub fn ballast(&self, bytes: usize) -> PathBuf {
        let file = self.path().join("ballast");
        std::fs::write(&file, vec![7u8; bytes])
            .unwrap_or_else(|e| panic!("cannot write the ballast {}: {e}", file.display()));
        file
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Save fresh sessions of `record` into `store` until a save fails (at
/// most `most` of them); returns the keys of the saves acknowledged before
/// and the error. The failure must be [`Error::Backend`] naming `backend`,
/// with `needle` (e.g. "full") in its report.
///
/// # Panics
///
/// If no save fails, or the failure is not as described: this is a test
/// helper.
pub async fn fill_until_error<S: SessionStore + ?Sized>(
    store: &S,
    record: &Record,
    most: usize,
    backend: &str,
    needle: &str,
) -> (Vec<SessionKey>, Error) {
    let mut saved = Vec::new();
    for _ in 0..most {
        let k = key();
        match store.save(&k, record).await {
            Ok(()) => saved.push(k),
            Err(e) => {
                let report = session_core::report(&e);
                assert!(
                    matches!(&e, Error::Backend { backend: b, .. } if *b == backend),
                    "a full disk: expected Error::Backend from {backend}, got {e:?}"
                );
                assert!(report.contains(needle), "{needle:?} missing: {report}");
                eprintln!("{} saves acknowledged, then: {report}", saved.len());
                return (saved, e);
            }
        }
    }
    panic!("{most} saves fitted: the disk never filled up");
}

/// Every key in `keys` loads from `store` (`when` names the moment, for
/// the message).
///
/// # Panics
///
/// Counting the keys missing, or on a store error.
pub async fn assert_all_present<S: SessionStore + ?Sized>(
    store: &S,
    keys: &[SessionKey],
    when: &str,
) {
    let mut missing = 0;
    for k in keys {
        match store.load(k).await {
            Ok(Some(_)) => {}
            Ok(None) => missing += 1,
            Err(e) => panic!("{when}: load {k}: {e}"),
        }
    }
    assert_eq!(
        missing,
        0,
        "{when}: {missing} of {} acknowledged saves lost",
        keys.len()
    );
}

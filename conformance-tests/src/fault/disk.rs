//! A full disk: a small tmpfs mounted for one test, and a ballast file to
//! fill it and free it again.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env;

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

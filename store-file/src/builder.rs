//! Building a [`FileStore`]: where the files live, how hard they are
//! pushed to the disk, how coarse the expiry index is.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use session_core::{Error, Result};

use crate::layout::{FORMAT_FILE, FORMAT_MARKER, FORMAT_MARKER_1, Layout, validate_namespace};
use crate::shard::Dir;
use crate::{BACKEND, FileStore, io_error};

/// Default namespace (the subdirectory of the root).
pub const DEFAULT_NAMESPACE: &str = "sessions";
/// Default [`FileStoreBuilder::with_bucket`]: one second.
pub const DEFAULT_BUCKET: Duration = Duration::from_secs(1);

/// How far a write is pushed to the disk before it returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Written to the operating system, not fsynced: a write that returned
    /// survives the process crashing, not necessarily the machine losing
    /// power (the file system may lose the last seconds of writes, and a
    /// session file written just before may come back empty, which reads
    /// as [`Error::Decode`]). The default.
    #[default]
    Buffered,
    /// fsync the file before its rename and the directory after it (and
    /// the expiry index's appends): a write that returned survives a power
    /// loss. Several times slower per write.
    Synced,
}

/// Configures and opens a [`FileStore`]; every setting is checked by
/// [`build`](Self::build), which reports mistakes as
/// [`Error::Config`](session_core::Error::Config).
///
/// ```no_run
/// # async fn demo() -> session_core::Result<()> {
/// use std::time::Duration;
/// use session_store_file::{Durability, FileStore};
///
/// let store = FileStore::builder("/var/lib/myapp/sessions")
///     .with_namespace("web")
///     .with_durability(Durability::Synced)
///     .with_bucket(Duration::from_secs(10))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct FileStoreBuilder {
    root: PathBuf,
    namespace: String,
    durability: Durability,
    bucket: Duration,
}

impl FileStoreBuilder {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self {
            root,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            durability: Durability::default(),
            bucket: DEFAULT_BUCKET,
        }
    }

    /// The namespace: the subdirectory of the root holding this store's
    /// sessions. Default `sessions`. 1 to 128 characters among ASCII
    /// letters, digits, `_`, `-` and `.`, not starting with `.`.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Whether writes are fsynced before they return. Default
    /// [`Durability::Buffered`].
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The width of the expiry index's time buckets, in whole
    /// milliseconds, from 1 ms to one day. `delete_expired` reads the
    /// index lines of the buckets that ended and of the one `now` falls
    /// in: coarser buckets mean fewer index files and directories, and
    /// more lines of the current bucket read again by each call.
    /// Processes sharing a directory may use different widths. Default
    /// one second.
    pub fn with_bucket(mut self, width: Duration) -> Self {
        self.bucket = width;
        self
    }

    /// Check the settings and create the namespace directory (and the root)
    /// if missing, with its format marker.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad setting, a root that cannot be created
    /// or is not a writable directory, or a namespace directory written by
    /// another format; [`Error::Backend`] for other file system failures.
    pub async fn build(self) -> Result<FileStore> {
        validate_namespace(&self.namespace)?;
        let bucket_ms = i64::try_from(self.bucket.as_millis()).unwrap_or(i64::MAX);
        let day = 24 * 60 * 60 * 1000;
        if !self.bucket.subsec_nanos().is_multiple_of(1_000_000) || !(1..=day).contains(&bucket_ms)
        {
            return Err(Error::config(
                BACKEND,
                format!(
                    "expiry bucket {:?} must be whole milliseconds from 1 ms to one day",
                    self.bucket
                ),
            ));
        }
        let dir = self.root.join(&self.namespace);
        let sync = self.durability == Durability::Synced;
        let layout = Layout::new(dir.clone());
        session_core::run_blocking(BACKEND, move || prepare(&layout)).await?;
        Ok(FileStore::from_dir(
            Arc::new(Dir::new(Layout::new(dir), sync, bucket_ms)),
            self.root,
            self.namespace.into(),
            self.durability,
        ))
    }
}

/// Create the namespace directory and its index directory; write the
/// format marker, or check the one there. A directory of format 1 (before
/// principals) is this format without principals: its marker is rewritten,
/// so that an earlier version refuses the directory rather than failing on
/// each file this one writes.
fn prepare(layout: &Layout) -> Result<()> {
    let dir = layout.dir();
    if let Err(e) = std::fs::create_dir_all(layout.expiry_dir()) {
        return Err(Error::config(
            BACKEND,
            format!("cannot create the session directory {}: {e}", dir.display()),
        ));
    }
    let marker = dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&marker) {
        Ok(found) if found == FORMAT_MARKER => Ok(()),
        Ok(found) if found == FORMAT_MARKER_1 => write_marker(dir, &marker),
        Ok(found) => Err(Error::config(
            BACKEND,
            format!(
                "{} says {:?}: written by another format than {:?}",
                marker.display(),
                found.trim_end(),
                FORMAT_MARKER.trim_end()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_marker(dir, &marker),
        Err(e) => Err(io_error("read", &marker, e)),
    }
}

/// Write the format marker at `marker`, in `dir`: whole or not at all (a
/// temporary name, then a rename).
fn write_marker(dir: &std::path::Path, marker: &std::path::Path) -> Result<()> {
    let temp = dir.join(format!(".format.{}", std::process::id()));
    std::fs::write(&temp, FORMAT_MARKER)
        .and_then(|()| std::fs::rename(&temp, marker))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            Error::config(
                BACKEND,
                format!(
                    "cannot write in the session directory {}: {e}",
                    dir.display()
                ),
            )
        })
}

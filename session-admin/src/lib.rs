#![doc = include_str!("../README.md")]

use std::io::{BufRead, Write};
use std::num::NonZeroUsize;

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use session_core::{Cursor, Record, SessionKey, SessionStore, Timestamp};

/// What went wrong in an admin command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// A store call failed (unreachable server, corrupt record, ...).
    #[error(transparent)]
    Store(#[from] session_core::Error),
    /// Reading the input or writing the output failed.
    #[error("{what}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A line of an import is not a line [`export`] writes.
    #[error("line {line}: {reason}")]
    Line {
        /// The line's number, from 1.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The command cannot run on this store.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// `Result` with [`AdminError`].
pub type Result<T, E = AdminError> = std::result::Result<T, E>;

fn io(what: &str) -> impl FnOnce(std::io::Error) -> AdminError + '_ {
    move |source| AdminError::Io {
        what: what.to_owned(),
        source,
    }
}

/// Records read per page: the most any command holds in memory at once.
pub const PAGE: NonZeroUsize = match NonZeroUsize::new(500) {
    Some(n) => n,
    None => unreachable!(),
};

/// A store's live records, one page at a time ([`SessionStore::list`]
/// followed to its end), so that no command holds more than a page.
#[derive(Debug)]
pub struct Pages<'a> {
    store: &'a dyn SessionStore,
    cursor: Option<Cursor>,
    done: bool,
}

impl<'a> Pages<'a> {
    /// Start at the beginning of `store`'s namespace.
    #[must_use]
    pub fn new(store: &'a dyn SessionStore) -> Self {
        Self {
            store,
            cursor: None,
            done: false,
        }
    }

    /// The next page (possibly empty), or `None` at the end.
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn next(&mut self) -> Result<Option<Vec<(SessionKey, Record)>>> {
        if self.done {
            return Ok(None);
        }
        let page = self.store.list(self.cursor.as_ref(), PAGE).await?;
        self.done = page.next.is_none();
        self.cursor = page.next;
        Ok(Some(page.records))
    }
}

/// One session as `list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The session's key: the SHA-256 hash of its ID, never the ID (which
    /// no store holds).
    pub key: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    /// Its data's size, encoded, in bytes.
    pub bytes: usize,
    /// Its version (writes since it was created).
    pub version: u64,
    /// Who it belongs to, if anyone logged in with it.
    pub principal: Option<String>,
}

impl Row {
    /// The row of `(key, record)`.
    ///
    /// # Errors
    ///
    /// [`session_core::Error::Encode`] if the data cannot be encoded.
    pub fn of(key: &SessionKey, record: &Record) -> Result<Self> {
        Ok(Self {
            key: key.as_str().to_owned(),
            created_at: record.created_at,
            expires_at: record.expires_at,
            bytes: record.data.encoded()?.as_str().len(),
            version: record.version,
            principal: record.principal.as_ref().map(|p| p.as_str().to_owned()),
        })
    }
}

/// Write every live session of `store` to `out`, a row per line: a table
/// (key prefix, created, expires, bytes, version, principal) or, with `json`, one
/// JSON object per line with the full key. Stops after `max` rows if given.
/// Returns the rows written.
///
/// # Errors
///
/// The store's, or writing `out`'s.
pub async fn list(
    store: &dyn SessionStore,
    out: &mut (dyn Write + Send),
    json: bool,
    max: Option<u64>,
) -> Result<u64> {
    let mut written = 0u64;
    if !json {
        writeln!(
            out,
            "{:<16}  {:<24}  {:<24}  {:>9}  {:>7}  principal",
            "key", "created", "expires", "bytes", "version"
        )
        .map_err(io("writing the listing"))?;
    }
    let mut pages = Pages::new(store);
    while let Some(page) = pages.next().await? {
        for (key, record) in page {
            if max.is_some_and(|max| written >= max) {
                return Ok(written);
            }
            let row = Row::of(&key, &record)?;
            let line = if json {
                serde_json::to_string(&row).map_err(|e| AdminError::Io {
                    what: "encoding a row".to_owned(),
                    source: e.into(),
                })?
            } else {
                format!(
                    "{:<16}  {:<24}  {:<24}  {:>9}  {:>7}  {}",
                    &row.key[..16],
                    row.created_at.to_string(),
                    row.expires_at.to_string(),
                    row.bytes,
                    row.version,
                    row.principal.as_deref().unwrap_or("-")
                )
            };
            writeln!(out, "{line}").map_err(io("writing the listing"))?;
            written += 1;
        }
    }
    Ok(written)
}

/// One exported session: the key, the times in Unix milliseconds, the
/// version, the principal (absent for none) and the data as its exact JSON
/// text (a string, so integers up to `u64::MAX` and floats come back bit
/// for bit).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    key: String,
    created_at: i64,
    expires_at: i64,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    principal: Option<String>,
    data: String,
}

/// The export line of `(key, record)`, without the newline.
///
/// # Errors
///
/// [`session_core::Error::Encode`] if the data cannot be encoded.
pub fn export_line(key: &SessionKey, record: &Record) -> Result<String> {
    let line = Line {
        key: key.as_str().to_owned(),
        created_at: record.created_at.as_millis(),
        expires_at: record.expires_at.as_millis(),
        version: record.version,
        principal: record.principal.as_ref().map(|p| p.as_str().to_owned()),
        data: record.data.encoded()?.as_str().to_owned(),
    };
    serde_json::to_string(&line)
        .map_err(|e| AdminError::Store(session_core::Error::Encode { source: e.into() }))
}

/// Read back what [`export_line`] wrote: the record exactly, version and
/// times included.
///
/// # Errors
///
/// A message saying what is wrong with the line.
pub fn parse_line(text: &str) -> std::result::Result<(SessionKey, Record), String> {
    let line: Line = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let key = SessionKey::parse(&line.key).map_err(|e| e.to_string())?;
    let data = Record::decode_data(&key, line.data.as_bytes()).map_err(|e| e.to_string())?;
    let principal = line
        .principal
        .map(session_core::Principal::new)
        .transpose()
        .map_err(|e| e.to_string())?;
    let record = Record::with_times(
        data,
        Timestamp::from_millis(line.created_at),
        Timestamp::from_millis(line.expires_at),
    )
    .with_version(line.version)
    .with_principal(principal);
    Ok((key, record))
}

/// Write every live session of `store` to `out` as JSON lines
/// ([`export_line`]), advancing `progress` per session. Returns how many.
///
/// # Errors
///
/// The store's, or writing `out`'s.
pub async fn export(
    store: &dyn SessionStore,
    out: &mut (dyn Write + Send),
    progress: &ProgressBar,
) -> Result<u64> {
    let mut written = 0u64;
    let mut pages = Pages::new(store);
    while let Some(page) = pages.next().await? {
        for (key, record) in &page {
            writeln!(out, "{}", export_line(key, record)?).map_err(io("writing the export"))?;
            written += 1;
        }
        progress.inc(page.len() as u64);
    }
    out.flush().map_err(io("writing the export"))?;
    Ok(written)
}

/// What [`import`] and [`migrate`] do with a session that the target
/// already holds live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Keep it (`create`: the target's copy may be newer); it is counted
    /// as already there.
    Keep,
    /// Replace it (`save`).
    Replace,
}

/// What an [`import`] or a [`migrate`] did (or, dry, would do).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// Sessions read from the source.
    pub read: u64,
    /// Sessions written to the target (with `dry_run`: that would be).
    pub written: u64,
    /// Sessions the target already held live and kept ([`Existing::Keep`]).
    pub already_there: u64,
    /// Sessions that had expired before they could be written: nothing to
    /// copy.
    pub expired: u64,
}

/// Write one session to `target` per `how`, counting it in `copied`.
async fn put(
    target: &dyn SessionStore,
    key: &SessionKey,
    record: &Record,
    how: Existing,
    dry_run: bool,
    copied: &mut Copied,
) -> Result<()> {
    copied.read += 1;
    if !record.is_live() {
        copied.expired += 1;
        return Ok(());
    }
    if dry_run {
        copied.written += 1;
        return Ok(());
    }
    match how {
        Existing::Replace => {
            target.save(key, record).await?;
            copied.written += 1;
        }
        Existing::Keep => {
            if target.create(key, record).await? {
                copied.written += 1;
            } else {
                copied.already_there += 1;
            }
        }
    }
    Ok(())
}

/// Read JSON lines ([`export_line`]) from `input` and write each session
/// to `target`; with `dry_run`, check every line and write nothing.
///
/// # Errors
///
/// The first bad line ([`AdminError::Line`], nothing after it is read),
/// the store's, or reading `input`'s.
pub async fn import(
    target: &dyn SessionStore,
    input: &mut (dyn BufRead + Send),
    how: Existing,
    dry_run: bool,
    progress: &ProgressBar,
) -> Result<Copied> {
    let mut copied = Copied::default();
    let mut text = String::new();
    let mut number = 0u64;
    loop {
        text.clear();
        if input
            .read_line(&mut text)
            .map_err(io("reading the import"))?
            == 0
        {
            return Ok(copied);
        }
        number += 1;
        let line = text.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            continue;
        }
        let (key, record) = parse_line(line).map_err(|reason| AdminError::Line {
            line: number,
            reason,
        })?;
        put(target, &key, &record, how, dry_run, &mut copied).await?;
        progress.inc(1);
    }
}

/// Copy every live session of `from` to `to`, with its key, data, times
/// and version, a page at a time: the sessions' cookies keep working on
/// `to`. With `dry_run`, read `from` and write nothing.
///
/// # Errors
///
/// Either store's.
pub async fn migrate(
    from: &dyn SessionStore,
    to: &dyn SessionStore,
    how: Existing,
    dry_run: bool,
    progress: &ProgressBar,
) -> Result<Copied> {
    let mut copied = Copied::default();
    let mut pages = Pages::new(from);
    while let Some(page) = pages.next().await? {
        for (key, record) in &page {
            put(to, key, record, how, dry_run, &mut copied).await?;
        }
        progress.inc(page.len() as u64);
    }
    Ok(copied)
}

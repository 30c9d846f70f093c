//! Paged listing: [`Cursor`] and [`Page`], what [`SessionStore::list`]
//! (crate::SessionStore::list) takes and returns.

use std::fmt;
use std::num::NonZeroUsize;

use crate::{Error, Record, Result, SessionKey};

/// Where a listing resumes: handed out by a store in [`Page::next`] and
/// given back, unchanged, to the **same** store's
/// [`list`](crate::SessionStore::list).
///
/// Its text is the store's own business (a key to resume after, a server's
/// scan cursor, ...). It holds no secret (keys are hashes, never session
/// IDs), so a tool may print it and resume from it later. A store refuses a
/// cursor it cannot have made with [`Error::InvalidCursor`], never a panic.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

/// The prefix of cursors made by [`Cursor::after`].
const AFTER: &str = "after:";

impl Cursor {
    /// A cursor with the given text. Stores use it for their own formats.
    #[must_use]
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The cursor's text, to print or store and later give to
    /// [`Cursor::new`].
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A cursor that resumes after `key` in key order: the form of every
    /// store that lists in the order of its keys (SQL keyset pagination, an
    /// ordered tree, a sorted directory).
    #[must_use]
    pub fn after(key: &SessionKey) -> Self {
        Self(format!("{AFTER}{}", key.as_str()))
    }

    /// The key a cursor made by [`Cursor::after`] resumes after.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCursor`] naming `backend` if the cursor was not made
    /// by [`Cursor::after`].
    pub fn key_after(&self, backend: &'static str) -> Result<SessionKey> {
        let hex = self
            .0
            .strip_prefix(AFTER)
            .ok_or_else(|| Error::invalid_cursor(backend, "not a key cursor"))?;
        SessionKey::parse(hex).map_err(|_| Error::invalid_cursor(backend, "not a session key"))
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cursor").field(&self.0).finish()
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One page of a listing: up to `limit` live records, and where to resume.
#[derive(Clone, Debug, Default, PartialEq)]
#[must_use]
pub struct Page {
    /// Live `(key, record)` pairs, at most the `limit` asked for. May be
    /// empty while [`next`](Self::next) is `Some` (a scan that found
    /// nothing live in the part it visited).
    pub records: Vec<(SessionKey, Record)>,
    /// Where the next page starts; `None` when the listing is complete.
    pub next: Option<Cursor>,
}

impl Page {
    /// The page of a key-ordered listing: `scanned` holds, in key order,
    /// up to `limit` candidates read after the cursor (live or not), of
    /// which `keep` decides the ones to return. A full read means there may
    /// be more: the next page resumes after the last key *read*, so records
    /// that a filter dropped are never read twice; a short read ends the
    /// listing.
    pub fn from_key_ordered<T>(
        scanned: Vec<(SessionKey, T)>,
        limit: NonZeroUsize,
        mut keep: impl FnMut(SessionKey, T) -> Result<Option<Record>>,
    ) -> Result<Self> {
        let next = if scanned.len() >= limit.get() {
            scanned.last().map(|(key, _)| Cursor::after(key))
        } else {
            None
        };
        let mut records = Vec::with_capacity(scanned.len());
        for (key, value) in scanned {
            if let Some(record) = keep(key, value)? {
                records.push((key, record));
            }
        }
        Ok(Self { records, next })
    }
}

/// The page size [`SessionStore::all`](crate::SessionStore::all) lists
/// with: large enough that a round trip per page is cheap, small enough
/// that a page is a few MiB at most.
pub const ALL_PAGE: NonZeroUsize = match NonZeroUsize::new(1000) {
    Some(n) => n,
    None => unreachable!(),
};

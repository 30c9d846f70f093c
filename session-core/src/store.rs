//! The storage contract every backend implements.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use async_trait::async_trait;

use crate::list::ALL_PAGE;
use crate::{Cursor, Page, Record, Result, SessionKey, Timestamp};

/// What a versioned [`SessionStore::update`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub enum UpdateOutcome {
    /// The record was replaced; its stored version is now
    /// `expected_version + 1`.
    Updated,
    /// No live record exists under the key (never created, expired, or
    /// destroyed meanwhile). Nothing was written: the session was **not**
    /// resurrected.
    Missing,
    /// A live record exists but its version is not the expected one: someone
    /// else wrote first. Nothing was written.
    Conflict,
}

/// An async key–record store for sessions.
///
/// Keys are [`SessionKey`]s (hashes of the cookie secret, never the secret
/// itself); values are [`Record`]s. Every backend behaves identically, and the
/// `session-conformance` crate proves it: a store is correct when it passes
/// that suite.
///
/// # Contract
///
/// - **Liveness.** A record is live while `now < expires_at`, at millisecond
///   precision. Stores that compare in process use the process clock
///   ([`Timestamp::now`]); a server-side store may use its server's clock and
///   documents the skew that implies.
/// - **Expired means absent.** No method ever returns, counts, touches or
///   updates an expired record, whatever the backend's reaping state. An
///   expired record does not block [`create`](Self::create).
/// - **No resurrection.** [`touch`](Self::touch) and
///   [`update`](Self::update) never bring back a record that is absent,
///   expired or destroyed.
/// - **Exact data.** What was stored comes back equal: any JSON value,
///   integers from `i64::MIN` to `u64::MAX`, floats bit for bit, unicode,
///   nested and empty objects, records of several MiB.
/// - **Namespaces.** A store instance owns one namespace (key prefix, table,
///   collection, tree); [`clear`](Self::clear), [`len`](Self::len),
///   [`list`](Self::list), [`all`](Self::all) and
///   [`delete_expired`](Self::delete_expired) see that namespace and nothing
///   else.
/// - **Atomic versioned update.** [`update`](Self::update) is one atomic step
///   on the backend (a script, a conditional statement, a filtered update, a
///   compare-and-swap or a lock), never read-then-write from the client.
/// - **Errors, not panics.** A stored value that cannot be decoded is
///   [`Error::Decode`](crate::Error::Decode) naming the key; a driver failure
///   is [`Error::Backend`](crate::Error::Backend) with the driver's error as
///   its source.
///
/// # Implementing a store
///
/// The trait is object-safe (`Arc<dyn SessionStore>` works) and uses
/// [`async_trait`](macro@async_trait). A minimal, correct in-process store:
///
/// ```
#[doc = include_str!("../tests/common/tiny_store.rs")]
/// # let store: std::sync::Arc<dyn SessionStore> = std::sync::Arc::new(TinyStore::default());
/// ```
///
/// (Its `delete_expired` scans every record; a real store keeps an expiry
/// index so the cost follows the number of expired records.) Then prove it
/// with the conformance suite: the `session-conformance` crate runs every
/// rule above against a store with one macro call in its test file.
#[allow(
    clippy::len_without_is_empty,
    reason = "is_empty lives on SessionStoreExt, so the trait stays minimal"
)]
#[async_trait]
pub trait SessionStore: fmt::Debug + Send + Sync + 'static {
    /// The live record under `key`.
    ///
    /// Returns `None` if the key is absent **or expired**: never an expired
    /// record, whatever the backend's reaping state.
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>>;

    /// Insert `record` under `key` only if no live record exists there.
    ///
    /// Returns `false` on a collision and leaves the existing record
    /// untouched. An expired record under the key does not count as a
    /// collision: it is replaced. The record is stored as given, version
    /// included. A `record` whose `expires_at` is not in the future leaves
    /// nothing live under the key (and, if nothing live was there, the call
    /// returns `true`).
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool>;

    /// Replace the **live** record under `key` only if its version is still
    /// `expected_version`; the stored version becomes `expected_version + 1`,
    /// wrapping from `u64::MAX` to 0 (versions are only ever compared for
    /// equality; `record.version` is ignored).
    ///
    /// - [`UpdateOutcome::Updated`]: replaced (data, `created_at` and
    ///   `expires_at` all come from `record`). If `record.expires_at` is not
    ///   in the future the session is gone afterwards.
    /// - [`UpdateOutcome::Missing`]: absent, expired, or destroyed meanwhile.
    ///   Nothing is written; the session must **never** be resurrected.
    /// - [`UpdateOutcome::Conflict`]: the stored version differs. Nothing is
    ///   written.
    ///
    /// Must be one atomic step on the backend, never read-then-write from the
    /// client.
    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<UpdateOutcome>;

    /// Unconditional insert-or-replace (imports, admin tools), stored as
    /// given, version included.
    ///
    /// A `record` whose `expires_at` is not in the future is not stored, and
    /// an existing record under `key` is removed.
    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()>;

    /// Move the expiry of the **live** record under `key` to `expires_at`
    /// without rewriting its data or version.
    ///
    /// Returns `true` if it did. On an absent or expired key it returns
    /// `false` and must **never** resurrect anything. Touching a live record
    /// to a time that is not in the future expires it, and returns `true`.
    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool>;

    /// Remove the record under `key`. Idempotent; other keys are untouched.
    async fn destroy(&self, key: &SessionKey) -> Result<()>;

    /// Remove every session of this store's namespace, and nothing else.
    async fn clear(&self) -> Result<()>;

    /// The number of live sessions in the namespace. Expired records are
    /// never counted, reaped or not.
    async fn len(&self) -> Result<u64>;

    /// One page of the namespace's live records: up to `limit` of them,
    /// starting where `cursor` (from the previous page's
    /// [`next`](Page::next); `None` to start) left off.
    ///
    /// Following `next` until it is `None`:
    ///
    /// - lists every live record **exactly once** while nothing is written;
    /// - lists every record that stays live and unwritten through the whole
    ///   listing **at least once**, whatever is written meanwhile (records
    ///   written during the listing may or may not appear);
    /// - never returns an expired record, reaped or not;
    /// - holds at most `limit` records per page in memory, whatever the
    ///   namespace's size: a listing of millions of sessions is as cheap in
    ///   memory as one page.
    ///
    /// The order is the store's own. A page may be empty while `next` is
    /// `Some`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCursor`](crate::Error::InvalidCursor) for a cursor
    /// this store did not hand out; the backend's errors.
    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page>;

    /// Every live `(key, record)` of the namespace, in no particular order:
    /// [`list`](Self::list) followed to its end, so it holds the whole
    /// namespace in memory; prefer `list` where the namespace may be large.
    ///
    /// A record written during the call may be missing or, on a store whose
    /// listing can return a record twice under concurrent writes, appear
    /// twice; every record that stays live and unwritten is listed.
    async fn all(&self) -> Result<Vec<(SessionKey, Record)>> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.list(cursor.as_ref(), ALL_PAGE).await?;
            out.extend(page.records);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Remove expired records now and return how many were removed.
    ///
    /// Backends that expire natively may return 0, but `load`, `len` and
    /// `all` stay exact regardless. The cost must follow the number of
    /// expired records, not the number of live ones. Live records are never
    /// removed.
    async fn delete_expired(&self) -> Result<u64>;
}

/// The future every [`SessionStore`] method returns, as
/// [`async_trait`](macro@async_trait) writes it.
type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 'a>>;

/// Forwards every method to the inner store, so `Arc<S>`,
/// `Arc<dyn SessionStore>` and `Box<S>` are stores themselves.
///
/// Written out rather than with `#[async_trait]`: an `async fn` here would
/// box a second future around the inner store's on every call (an
/// allocation and some 250 instructions per operation, measured with
/// callgrind on the memory store); this hands the inner future back as is.
macro_rules! forward_store {
    ($ty:ty) => {
        impl<S: SessionStore + ?Sized> SessionStore for $ty {
            fn load<'s, 'k, 'f>(&'s self, key: &'k SessionKey) -> StoreFuture<'f, Option<Record>>
            where
                's: 'f,
                'k: 'f,
                Self: 'f,
            {
                (**self).load(key)
            }

            fn create<'s, 'k, 'r, 'f>(
                &'s self,
                key: &'k SessionKey,
                record: &'r Record,
            ) -> StoreFuture<'f, bool>
            where
                's: 'f,
                'k: 'f,
                'r: 'f,
                Self: 'f,
            {
                (**self).create(key, record)
            }

            fn update<'s, 'k, 'r, 'f>(
                &'s self,
                key: &'k SessionKey,
                record: &'r Record,
                expected_version: u64,
            ) -> StoreFuture<'f, UpdateOutcome>
            where
                's: 'f,
                'k: 'f,
                'r: 'f,
                Self: 'f,
            {
                (**self).update(key, record, expected_version)
            }

            fn save<'s, 'k, 'r, 'f>(
                &'s self,
                key: &'k SessionKey,
                record: &'r Record,
            ) -> StoreFuture<'f, ()>
            where
                's: 'f,
                'k: 'f,
                'r: 'f,
                Self: 'f,
            {
                (**self).save(key, record)
            }

            fn touch<'s, 'k, 'f>(
                &'s self,
                key: &'k SessionKey,
                expires_at: Timestamp,
            ) -> StoreFuture<'f, bool>
            where
                's: 'f,
                'k: 'f,
                Self: 'f,
            {
                (**self).touch(key, expires_at)
            }

            fn destroy<'s, 'k, 'f>(&'s self, key: &'k SessionKey) -> StoreFuture<'f, ()>
            where
                's: 'f,
                'k: 'f,
                Self: 'f,
            {
                (**self).destroy(key)
            }

            fn clear<'s, 'f>(&'s self) -> StoreFuture<'f, ()>
            where
                's: 'f,
                Self: 'f,
            {
                (**self).clear()
            }

            fn len<'s, 'f>(&'s self) -> StoreFuture<'f, u64>
            where
                's: 'f,
                Self: 'f,
            {
                (**self).len()
            }

            fn list<'s, 'c, 'f>(
                &'s self,
                cursor: Option<&'c Cursor>,
                limit: NonZeroUsize,
            ) -> StoreFuture<'f, Page>
            where
                's: 'f,
                'c: 'f,
                Self: 'f,
            {
                (**self).list(cursor, limit)
            }

            fn all<'s, 'f>(&'s self) -> StoreFuture<'f, Vec<(SessionKey, Record)>>
            where
                's: 'f,
                Self: 'f,
            {
                (**self).all()
            }

            fn delete_expired<'s, 'f>(&'s self) -> StoreFuture<'f, u64>
            where
                's: 'f,
                Self: 'f,
            {
                (**self).delete_expired()
            }
        }
    };
}

forward_store!(Arc<S>);
forward_store!(Box<S>);

/// Conveniences built only from [`SessionStore`]'s methods, for every store.
#[async_trait]
pub trait SessionStoreExt: SessionStore {
    /// Whether the namespace holds no live session.
    async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Whether a live record exists under `key`.
    async fn exists(&self, key: &SessionKey) -> Result<bool> {
        Ok(self.load(key).await?.is_some())
    }
}

impl<S: SessionStore + ?Sized> SessionStoreExt for S {}

//! [`SqliteStore`] and its [`SessionStore`] implementation.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Row, params};
use session_core::header::Header;
use session_core::sql::{Columns, version_from_signed, version_to_signed};
use session_core::{
    Cursor, Error, Page, Principal, Record, Result, SessionKey, SessionStore, Timestamp,
    UpdateOutcome, async_trait,
};

use crate::backend;
use crate::pool::Pool;
use crate::schema::{self, Statements};
use crate::{BACKEND, SqliteStoreBuilder};

/// A [`SessionStore`] on one table of a SQLite database.
///
/// Cloning is cheap and shares the connections. No SQLite call runs on an
/// async worker thread: each connection lives on a thread of its own, writes
/// on the database's single writer connection (committed in groups), reads
/// on a few read connections (WAL lets them run beside the writer). The
/// threads stop, and the connections close, when the last clone (and every
/// store from [`open_namespace`](Self::open_namespace)) is dropped; that drop waits
/// for them. See the crate docs for how expiry is enforced and what a group
/// commit means for durability.
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: Arc<Pool>,
    pub(crate) sql: Arc<Statements>,
    pub(crate) table: Arc<str>,
    pub(crate) reap_batch: usize,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table", &self.table)
            .field("reap_batch", &self.reap_batch)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (creating if needed) the database file at `path`, with the
    /// default settings and table `sessions`.
    ///
    /// # Errors
    ///
    /// As [`SqliteStoreBuilder::build`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).build().await
    }

    /// A fresh private in-memory database, with table `sessions`. It has a
    /// single connection (an in-memory database exists per connection) and
    /// is gone when the last store sharing it is dropped; add namespaces to
    /// it with [`open_namespace`](Self::open_namespace).
    ///
    /// # Errors
    ///
    /// As [`SqliteStoreBuilder::build`].
    pub async fn open_in_memory() -> Result<Self> {
        Self::builder_in_memory().build().await
    }

    /// Configure a store on the database file at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteStoreBuilder {
        SqliteStoreBuilder::new(Some(path.as_ref().to_owned()))
    }

    /// Configure a store on a fresh private in-memory database.
    pub fn builder_in_memory() -> SqliteStoreBuilder {
        SqliteStoreBuilder::new(None)
    }

    /// Another namespace in the same database, sharing this store's
    /// connections: the table `table` is created if missing. This is the way
    /// to have several namespaces in one in-memory database.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `table` is not a valid table name (see
    /// [`SqliteStoreBuilder::with_namespace`]); [`Error::Backend`] if SQLite
    /// fails.
    pub async fn open_namespace(&self, table: &str) -> Result<Self> {
        schema::NAMES.check("table", table)?;
        let name = table.to_owned();
        self.pool
            .write_alone(move |conn| schema::prepare(conn, &name))
            .await?;
        Ok(Self {
            pool: Arc::clone(&self.pool),
            sql: Arc::new(Statements::new(table)),
            table: table.into(),
            reap_batch: self.reap_batch,
        })
    }

    /// The namespace (table) this store works on.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.table
    }
}

/// Read `data, created_at, expires_at, version, principal` starting at
/// column `at`. Anything unreadable (a principal that is not text, or not a
/// valid principal, included) is a decode error naming `key`.
pub(crate) fn record_from_row(key: &SessionKey, row: &Row<'_>, at: usize) -> Result<Record> {
    let decode = |e: rusqlite::Error| Error::decode(key, e);
    let data = row.get_ref(at).map_err(decode)?;
    let data = data.as_bytes().map_err(|e| Error::decode(key, e))?;
    let header = Header {
        created_at: row.get(at + 1).map_err(decode)?,
        expires_at: row.get(at + 2).map_err(decode)?,
        version: version_from_signed(row.get(at + 3).map_err(decode)?),
    };
    let principal = match row.get_ref(at + 4).map_err(decode)? {
        rusqlite::types::ValueRef::Null => None,
        name => {
            let name = name.as_str().map_err(|e| Error::decode(key, e))?;
            Some(Principal::stored(key, name)?)
        }
    };
    Ok(header.record(key, data)?.with_principal(principal))
}

/// The principal column's value: its name, `NULL` for none.
pub(crate) fn principal_param(row: &Columns) -> Option<&str> {
    row.principal.as_ref().map(Principal::as_str)
}

/// A key read back from the table (column 0 of `list` and `sessions_of`).
pub(crate) fn key_from_row(row: &Row<'_>) -> Result<SessionKey> {
    let text = row.get_ref(0).map_err(backend)?;
    match text.as_str() {
        Ok(text) => SessionKey::parse(text),
        Err(_) => Err(Error::InvalidKey {
            key: format!("{:?}", text.data_type()),
            reason: "stored key is not text",
        }),
    }
}

pub(crate) fn now() -> i64 {
    Timestamp::now().as_millis()
}

/// Whether the row under `key` is live at `now` (`None`: no row), read
/// after a write changed nothing, to say why. A row whose `expires_at` or
/// `version` is not an integer is [`Error::Decode`] naming the key: the
/// write's condition could not be evaluated on it, and it must not pass
/// for a collision or an absent session.
fn row_live(
    conn: &rusqlite::Connection,
    sql: &Statements,
    key: &SessionKey,
    now: i64,
) -> Result<Option<bool>> {
    let mut stmt = conn.prepare_cached(&sql.row_state).map_err(backend)?;
    let mut rows = stmt.query([key.as_str()]).map_err(backend)?;
    let Some(row) = rows.next().map_err(backend)? else {
        return Ok(None);
    };
    let decode = |e: rusqlite::Error| Error::decode(key, e);
    let expires_at: i64 = row.get(0).map_err(decode)?;
    // Read only to check that it is one: a conflict is told by liveness.
    let _version: i64 = row.get(1).map_err(decode)?;
    Ok(Some(expires_at > now))
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        let (sql, key) = (Arc::clone(&self.sql), *key);
        self.pool
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&sql.load).map_err(backend)?;
                let mut rows = stmt.query(params![key.as_str(), now()]).map_err(backend)?;
                match rows.next().map_err(backend)? {
                    Some(row) => record_from_row(&key, row, 0).map(Some),
                    None => Ok(None),
                }
            })
            .await
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        let (sql, key, row) = (Arc::clone(&self.sql), *key, Columns::of(record)?);
        self.pool
            .write(move |conn| {
                // One statement: insert, or replace a row that is expired
                // now; a live row makes the upsert's WHERE false (0 changes).
                let now = now();
                let changed = conn
                    .prepare_cached(&sql.create)
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            key.as_str(),
                            row.data.as_str(),
                            row.created_at,
                            row.expires_at,
                            row.signed_version(),
                            now,
                            principal_param(&row)
                        ])
                    })
                    .map_err(backend)?;
                if changed == 1 {
                    return Ok(true);
                }
                // A collision, unless the row in the way is unreadable.
                row_live(conn, &sql, &key, now)?;
                Ok(false)
            })
            .await
    }

    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<UpdateOutcome> {
        let (sql, key, row) = (Arc::clone(&self.sql), *key, Columns::of(record)?);
        // Wrapping: a version is only compared for equality, and 2^64 updates
        // of one session do not happen.
        let next = version_to_signed(expected_version.wrapping_add(1));
        let expected = version_to_signed(expected_version);
        self.pool
            .write(move |conn| {
                let now = now();
                let changed = conn
                    .prepare_cached(&sql.update)
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            row.data.as_str(),
                            row.created_at,
                            row.expires_at,
                            next,
                            key.as_str(),
                            expected,
                            now,
                            principal_param(&row)
                        ])
                    })
                    .map_err(backend)?;
                if changed == 1 {
                    return Ok(UpdateOutcome::Updated);
                }
                // Refused: say why. Nothing is written from here on, so this
                // read cannot make the update non-atomic.
                Ok(match row_live(conn, &sql, &key, now)? {
                    Some(true) => UpdateOutcome::Conflict,
                    _ => UpdateOutcome::Missing,
                })
            })
            .await
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        let (sql, key, row) = (Arc::clone(&self.sql), *key, Columns::of(record)?);
        self.pool
            .write(move |conn| {
                if row.expires_at > now() {
                    let mut stmt = conn.prepare_cached(&sql.save).map_err(backend)?;
                    stmt.execute(params![
                        key.as_str(),
                        row.data.as_str(),
                        row.created_at,
                        row.expires_at,
                        row.signed_version(),
                        principal_param(&row)
                    ])
                    .map_err(backend)?;
                } else {
                    let mut stmt = conn.prepare_cached(&sql.destroy).map_err(backend)?;
                    stmt.execute([key.as_str()]).map_err(backend)?;
                }
                Ok(())
            })
            .await
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let (sql, key) = (Arc::clone(&self.sql), *key);
        self.pool
            .write(move |conn| {
                let now = now();
                let mut stmt = conn.prepare_cached(&sql.touch).map_err(backend)?;
                let changed = stmt
                    .execute(params![expires_at.as_millis(), key.as_str(), now])
                    .map_err(backend)?;
                if changed == 1 {
                    return Ok(true);
                }
                // Absent or expired, unless the row is unreadable.
                row_live(conn, &sql, &key, now)?;
                Ok(false)
            })
            .await
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        let (sql, key) = (Arc::clone(&self.sql), *key);
        self.pool
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(&sql.destroy).map_err(backend)?;
                stmt.execute([key.as_str()]).map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn clear(&self) -> Result<()> {
        let sql = Arc::clone(&self.sql);
        self.pool
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(&sql.clear).map_err(backend)?;
                stmt.execute([]).map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn len(&self) -> Result<u64> {
        let sql = Arc::clone(&self.sql);
        self.pool
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&sql.len).map_err(backend)?;
                let (count, corrupt): (i64, Option<String>) = stmt
                    .query_row([now()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(backend)?;
                if let Some(text) = corrupt {
                    // An expiry that is not a number cannot be proven live.
                    let key = SessionKey::parse(&text)?;
                    return Err(Error::decode(&key, "expires_at is not an integer"));
                }
                Ok(u64::try_from(count).unwrap_or(0))
            })
            .await
    }

    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        let after = cursor.map(|c| c.key_after(BACKEND)).transpose()?;
        let sql = Arc::clone(&self.sql);
        // A limit beyond i64 cannot be bound; no table holds that many rows.
        let max = i64::try_from(limit.get()).unwrap_or(i64::MAX);
        self.pool
            .read(move |conn| {
                let now = now();
                let statement = if after.is_some() {
                    &sql.list_after
                } else {
                    &sql.list_first
                };
                let mut stmt = conn.prepare_cached(statement).map_err(backend)?;
                let mut rows = match &after {
                    Some(after) => stmt.query(params![after.as_str(), now, max]),
                    None => stmt.query(params![now, max]),
                }
                .map_err(backend)?;
                let mut scanned = Vec::new();
                while let Some(row) = rows.next().map_err(backend)? {
                    let key = key_from_row(row)?;
                    scanned.push((key, record_from_row(&key, row, 1)?));
                }
                // The statement returned only live rows.
                Page::from_key_ordered(scanned, limit, |_, record| Ok(Some(record)))
            })
            .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        // One cut-off for the whole sweep, so that it ends. Each batch is its
        // own statement (committed, maybe with other writes, before the next
        // batch is queued): a large backlog never holds writers off for
        // longer than one batch.
        let cutoff = now();
        let batch = self.reap_batch;
        let mut removed = 0u64;
        loop {
            let sql = Arc::clone(&self.sql);
            let deleted = self
                .pool
                .write(move |conn| {
                    let mut stmt = conn.prepare_cached(&sql.delete_expired).map_err(backend)?;
                    let limit = i64::try_from(batch).unwrap_or(i64::MAX);
                    stmt.execute(params![cutoff, limit]).map_err(backend)
                })
                .await?;
            removed += deleted as u64;
            if deleted < batch {
                return Ok(removed);
            }
        }
    }
}

//! [`PostgresStore`] and its [`SessionStore`] implementation.

use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use session_core::header::Header;
use session_core::sql::{Columns, version_from_signed, version_to_signed};
use session_core::{
    Cursor, Error, Page, Principal, Record, Result, SessionKey, SessionStore, Timestamp,
    UpdateOutcome, async_trait,
};
use tokio_postgres::Row;

use crate::schema::{self, Statements};
use crate::{BACKEND, PostgresStoreBuilder, backend};

/// A [`SessionStore`] on one table of a PostgreSQL database.
///
/// Cloning is cheap and shares the connection pool. Every call is bounded by
/// the operation timeout
/// ([`with_operation_timeout`](PostgresStoreBuilder::with_operation_timeout)),
/// connecting and waiting for a pooled connection included. See the crate
/// docs for how expiry is enforced and whose clock decides.
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) pool: Pool,
    pub(crate) sql: Arc<Statements>,
    pub(crate) schema: Arc<str>,
    pub(crate) table: Arc<str>,
    /// Where the pool connects, without credentials.
    pub(crate) target: Arc<str>,
    pub(crate) operation_timeout: Duration,
    pub(crate) reap_batch: usize,
}

impl fmt::Debug for PostgresStore {
    /// Shows the server address without credentials, the schema and table.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("operation_timeout", &self.operation_timeout)
            .field("reap_batch", &self.reap_batch)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Configure a store.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::new()
    }

    /// Connect to `url` with the default settings (table `sessions` in
    /// schema `public`), creating the table if missing.
    ///
    /// # Errors
    ///
    /// As [`PostgresStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().connect(url).await
    }

    /// Another namespace (table, in the same schema) sharing this store's
    /// pool and settings; the table is created if missing.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `table` is not a valid table name (see
    /// [`PostgresStoreBuilder::with_namespace`]) or belongs to something
    /// else; [`Error::Backend`] or [`Error::Timeout`] if the server fails.
    pub async fn open_namespace(&self, table: &str) -> Result<Self> {
        schema::NAMES.check("table", table)?;
        let schema = Arc::clone(&self.schema);
        self.run("open_namespace", async {
            let mut client = self.pool.get().await.map_err(backend)?;
            schema::prepare(&mut client, &schema, table).await
        })
        .await?;
        Ok(Self {
            sql: Arc::new(Statements::new(&self.schema, table)),
            table: table.into(),
            ..self.clone()
        })
    }

    /// The namespace (table) this store works on.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.table
    }

    /// The PostgreSQL schema of the table.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection pool, e.g. to run your own statements on the same
    /// connections.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Run one store call under the operation deadline.
    pub(crate) async fn run<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        Error::within(BACKEND, operation, self.operation_timeout, call).await
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(backend)
    }
}

/// Read `data, created_at, expires_at, version, principal` starting at
/// column `at`. Anything unreadable (a principal that is not a valid one
/// included) is a decode error naming `key`.
pub(crate) fn record_from_row(key: &SessionKey, row: &Row, at: usize) -> Result<Record> {
    let decode = |e: tokio_postgres::Error| Error::decode(key, e);
    let data: &str = row.try_get(at).map_err(decode)?;
    let header = Header {
        created_at: row.try_get(at + 1).map_err(decode)?,
        expires_at: row.try_get(at + 2).map_err(decode)?,
        version: version_from_signed(row.try_get(at + 3).map_err(decode)?),
    };
    let principal = row
        .try_get::<_, Option<&str>>(at + 4)
        .map_err(decode)?
        .map(|name| Principal::stored(key, name))
        .transpose()?;
    Ok(header
        .record(key, data.as_bytes())?
        .with_principal(principal))
}

/// The principal column's value: its name, `NULL` for none.
fn principal_param(row: &Columns) -> Option<&str> {
    row.principal.as_ref().map(Principal::as_str)
}

/// A key read back from the table.
pub(crate) fn key_from_sql(bytes: &[u8]) -> Result<SessionKey> {
    let raw: [u8; 32] = bytes.try_into().map_err(|_| Error::InvalidKey {
        key: bytes.iter().map(|b| format!("{b:02x}")).collect(),
        reason: "stored key is not 32 bytes",
    })?;
    Ok(SessionKey::from_bytes(raw))
}

/// The outcome of the `update` statements' one row: the live row's version
/// before (NULL: no live row) and whether the write was applied.
fn update_outcome(row: &Row) -> Result<UpdateOutcome> {
    let before: Option<i64> = row.try_get(0).map_err(backend)?;
    let applied: bool = row.try_get(1).map_err(backend)?;
    Ok(match (applied, before) {
        (true, _) => UpdateOutcome::Updated,
        (false, Some(_)) => UpdateOutcome::Conflict,
        (false, None) => UpdateOutcome::Missing,
    })
}

pub(crate) fn now() -> i64 {
    Timestamp::now().as_millis()
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.run("load", async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&self.sql.load)
                .await
                .map_err(backend)?;
            let row = client
                .query_opt(&stmt, &[&key.as_bytes().as_slice(), &now()])
                .await
                .map_err(backend)?;
            row.map(|row| record_from_row(key, &row, 0)).transpose()
        })
        .await
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        let row = Columns::of(record)?;
        self.run("create", async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&self.sql.create)
                .await
                .map_err(backend)?;
            // One statement: insert, or replace a row expired now; a live
            // row makes the upsert's WHERE false (0 rows).
            let changed = client
                .execute(
                    &stmt,
                    &[
                        &key.as_bytes().as_slice(),
                        &row.data.as_str(),
                        &row.created_at,
                        &row.expires_at,
                        &row.signed_version(),
                        &now(),
                        &principal_param(&row),
                    ],
                )
                .await
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<UpdateOutcome> {
        let row = Columns::of(record)?;
        // Wrapping: a version is only compared for equality.
        let next = version_to_signed(expected_version.wrapping_add(1));
        let expected = version_to_signed(expected_version);
        self.run("update", async {
            let client = self.client().await?;
            let now = now();
            let k = key.as_bytes().as_slice();
            let result = if row.expires_at > now {
                let stmt = client
                    .prepare_cached(&self.sql.update)
                    .await
                    .map_err(backend)?;
                client
                    .query_one(
                        &stmt,
                        &[
                            &k,
                            &row.data.as_str(),
                            &row.created_at,
                            &row.expires_at,
                            &next,
                            &expected,
                            &now,
                            &principal_param(&row),
                        ],
                    )
                    .await
            } else {
                // Already expired: the applied update removes the row.
                let stmt = client
                    .prepare_cached(&self.sql.update_expired)
                    .await
                    .map_err(backend)?;
                client.query_one(&stmt, &[&k, &expected, &now]).await
            };
            update_outcome(&result.map_err(backend)?)
        })
        .await
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        let row = Columns::of(record)?;
        self.run("save", async {
            let client = self.client().await?;
            let k = key.as_bytes().as_slice();
            if row.expires_at > now() {
                let stmt = client
                    .prepare_cached(&self.sql.save)
                    .await
                    .map_err(backend)?;
                client
                    .execute(
                        &stmt,
                        &[
                            &k,
                            &row.data.as_str(),
                            &row.created_at,
                            &row.expires_at,
                            &row.signed_version(),
                            &principal_param(&row),
                        ],
                    )
                    .await
                    .map_err(backend)?;
            } else {
                let stmt = client
                    .prepare_cached(&self.sql.destroy)
                    .await
                    .map_err(backend)?;
                client.execute(&stmt, &[&k]).await.map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        self.run("touch", async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&self.sql.touch)
                .await
                .map_err(backend)?;
            let changed = client
                .execute(
                    &stmt,
                    &[&key.as_bytes().as_slice(), &expires_at.as_millis(), &now()],
                )
                .await
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        self.run("destroy", async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&self.sql.destroy)
                .await
                .map_err(backend)?;
            client
                .execute(&stmt, &[&key.as_bytes().as_slice()])
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn clear(&self) -> Result<()> {
        // TRUNCATE: instant at any size (a DELETE of a million rows takes
        // longer than the operation timeout). It needs the table to itself
        // for a moment; waiting for that is bounded by the same deadline on
        // the server (`lock_timeout`), so an abandoned clear never stays
        // queued ahead of other sessions' statements.
        let lock_ms = self
            .operation_timeout
            .as_millis()
            .clamp(1, i32::MAX as u128);
        self.run("clear", async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            tx.batch_execute(&format!(
                "SET LOCAL lock_timeout = {lock_ms}; {}",
                self.sql.clear
            ))
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)
        })
        .await
    }

    async fn len(&self) -> Result<u64> {
        self.run("len", async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&self.sql.len)
                .await
                .map_err(backend)?;
            let row = client.query_one(&stmt, &[&now()]).await.map_err(backend)?;
            let count: i64 = row.try_get(0).map_err(backend)?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        let after = cursor.map(|c| c.key_after(BACKEND)).transpose()?;
        // A limit beyond i64 cannot be bound; no table holds that many rows.
        let max = i64::try_from(limit.get()).unwrap_or(i64::MAX);
        self.run("list", async {
            let client = self.client().await?;
            let now = now();
            let rows = match &after {
                Some(after) => {
                    let stmt = client
                        .prepare_cached(&self.sql.list_after)
                        .await
                        .map_err(backend)?;
                    client
                        .query(&stmt, &[&after.as_bytes().as_slice(), &now, &max])
                        .await
                }
                None => {
                    let stmt = client
                        .prepare_cached(&self.sql.list_first)
                        .await
                        .map_err(backend)?;
                    client.query(&stmt, &[&now, &max]).await
                }
            }
            .map_err(backend)?;
            let scanned = rows
                .iter()
                .map(|row| {
                    let bytes: &[u8] = row.try_get(0).map_err(backend)?;
                    let key = key_from_sql(bytes)?;
                    Ok((key, record_from_row(&key, row, 1)?))
                })
                .collect::<Result<Vec<_>>>()?;
            // The statement returned only live rows.
            Page::from_key_ordered(scanned, limit, |_, record| Ok(Some(record)))
        })
        .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        // One cut-off for the whole sweep, so that it ends. Each batch is its
        // own transaction: a large backlog never holds row locks for longer
        // than one batch. Batches commit without waiting for the WAL flush
        // (`synchronous_commit = off`): a crash may forget the last
        // deletions, which only means those rows, invisible anyway, are
        // reaped again.
        let cutoff = now();
        let batch = i64::try_from(self.reap_batch).unwrap_or(i64::MAX);
        self.run("delete_expired", async {
            let mut client = self.client().await?;
            let stmt = client
                .prepare_cached(&self.sql.delete_expired)
                .await
                .map_err(backend)?;
            let mut removed = 0u64;
            loop {
                let tx = client.transaction().await.map_err(backend)?;
                tx.batch_execute("SET LOCAL synchronous_commit = off")
                    .await
                    .map_err(backend)?;
                let deleted = tx
                    .execute(&stmt, &[&cutoff, &batch])
                    .await
                    .map_err(backend)?;
                tx.commit().await.map_err(backend)?;
                removed += deleted;
                if deleted < u64::try_from(batch).unwrap_or(u64::MAX) {
                    return Ok(removed);
                }
            }
        })
        .await
    }
}

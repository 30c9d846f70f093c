//! [`MysqlStore`] and its [`SessionStore`] implementation.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Params, Pool, Row, Value};
use session_core::sql::Columns;
use session_core::{
    Cursor, EncodedData, Error, Page, Principal, Record, Result, SessionKey, SessionStore,
    Timestamp, UpdateOutcome, async_trait,
};

use crate::MysqlStoreBuilder;
use crate::retry::{self, Attempts};
use crate::row::{key_from_value, record_from_values};
use crate::schema::{self, Statements};
use crate::{BACKEND, backend};

/// `ER_TABLEACCESS_DENIED_ERROR`: the user may not run that command on the
/// table.
const TABLE_ACCESS_DENIED: u16 = 1142;

/// Room left in `max_allowed_packet` for the statement around a record's
/// data (the SQL text is prepared apart; the parameters are a few dozen
/// bytes).
const PACKET_OVERHEAD: u64 = 1024;

/// A session store on one InnoDB table of a MySQL or MariaDB database.
///
/// One row per session; every statement compares `expires_at` with the
/// process clock passed as a parameter, so expired rows are never seen,
/// whenever [`delete_expired`](SessionStore::delete_expired) runs. See the
/// crate documentation.
///
/// Cloning is cheap and shares the connection pool.
#[derive(Clone)]
pub struct MysqlStore {
    pool: Pool,
    pub(crate) sql: Arc<Statements>,
    table: Arc<str>,
    /// `mysql://host:port/database`, without credentials.
    target: Arc<str>,
    timeout: Duration,
    reap_batch: usize,
    max_packet: u64,
}

impl fmt::Debug for MysqlStore {
    /// Shows host, port, database and table; never credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlStore")
            .field("target", &self.target)
            .field("table", &self.table)
            .field("operation_timeout", &self.timeout)
            .field("reap_batch", &self.reap_batch)
            .finish_non_exhaustive()
    }
}

impl MysqlStore {
    /// A builder for every setting (table, pool size, deadline, reaping
    /// batch).
    pub fn builder() -> MysqlStoreBuilder {
        MysqlStoreBuilder::new()
    }

    /// Connect with the default settings (see [`MysqlStoreBuilder::connect`]).
    ///
    /// # Errors
    ///
    /// As [`MysqlStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().connect(url).await
    }

    pub(crate) fn from_parts(
        pool: Pool,
        target: String,
        table: &str,
        timeout: Duration,
        reap_batch: usize,
        max_packet: u64,
    ) -> Self {
        Self {
            pool,
            sql: Arc::new(Statements::new(table)),
            table: table.into(),
            target: target.into(),
            timeout,
            reap_batch,
            max_packet,
        }
    }

    /// Another namespace (table) in the same database, sharing this store's
    /// pool and settings; the table is created if missing.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid table name or a table of an unknown
    /// layout; [`Error::Backend`] if the server refuses; [`Error::Timeout`].
    pub async fn open_namespace(&self, table: &str) -> Result<Self> {
        schema::NAMES.check("table", table)?;
        let pool = self.pool.clone();
        let name = table.to_owned();
        Error::within(BACKEND, "open_namespace", self.timeout, async move {
            let mut conn = pool.get_conn().await.map_err(backend)?;
            schema::prepare(&mut conn, &name).await
        })
        .await?;
        Ok(Self {
            sql: Arc::new(Statements::new(table)),
            table: table.into(),
            ..self.clone()
        })
    }

    /// The namespace: the table's name.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.table
    }

    /// The connection pool, to run your own statements on the same server.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The server's `max_allowed_packet`, read when the store was built: a
    /// record whose data does not fit in it (less a little room for the
    /// statement) is refused with [`Error::TooLarge`] before anything is
    /// sent.
    #[must_use]
    pub fn max_allowed_packet(&self) -> u64 {
        self.max_packet
    }

    /// Close the pool's connections and wait until they are closed. Other
    /// clones (and stores from [`open_namespace`](Self::open_namespace))
    /// share the pool: they fail from then on.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if a connection could not be closed cleanly.
    pub async fn disconnect(self) -> Result<()> {
        self.pool.disconnect().await.map_err(backend)
    }

    /// Run one store call within the operation deadline, on a pooled
    /// connection, retrying a bounded number of times when the server
    /// rolled it back for a deadlock or a lock wait timeout.
    pub(crate) async fn call<T, F, Fut>(&self, operation: &'static str, attempt: F) -> Result<T>
    where
        F: FnMut(Conn) -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
        T: Send,
    {
        self.call_within(operation, self.timeout, attempt).await
    }

    /// [`call`](Self::call) with a deadline of its own.
    async fn call_within<T, F, Fut>(
        &self,
        operation: &'static str,
        deadline: Duration,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut(Conn) -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
        T: Send,
    {
        let pool = &self.pool;
        Error::within(BACKEND, operation, deadline, async move {
            let mut attempts = Attempts::new();
            loop {
                let conn = pool.get_conn().await.map_err(backend)?;
                match attempt(conn).await {
                    Err(e) if retry::is_transient(&e) && attempts.another().await => {}
                    done => return done,
                }
            }
        })
        .await
    }

    /// The columns of `record`, checked against `max_allowed_packet`.
    fn columns(&self, record: &Record) -> Result<Columns> {
        let columns = Columns::of(record)?;
        let bytes = columns.data.as_bytes().len();
        let limit = self.max_packet.saturating_sub(PACKET_OVERHEAD);
        if bytes as u64 > limit {
            return Err(Error::TooLarge {
                bytes,
                max_bytes: usize::try_from(limit).unwrap_or(usize::MAX),
            });
        }
        Ok(columns)
    }
}

/// The process clock, in milliseconds: the one clock every statement
/// compares with.
pub(crate) fn now() -> i64 {
    Timestamp::now().as_millis()
}

pub(crate) fn key_param(key: &SessionKey) -> Value {
    Value::Bytes(key.as_bytes().to_vec())
}

/// The principal column's value: the name's UTF-8 bytes, `NULL` for none.
pub(crate) fn principal_param(principal: Option<&Principal>) -> Value {
    principal.map_or(Value::NULL, |p| {
        Value::Bytes(p.as_str().as_bytes().to_vec())
    })
}

fn data_param(data: &EncodedData) -> Value {
    Value::Bytes(data.as_bytes().to_vec())
}

/// `expires_at, version` of the row under `key`, whatever they hold (`None`:
/// no row). A row whose columns do not read as integers is
/// [`Error::Decode`] naming the key.
async fn row_state(
    conn: &mut Conn,
    sql: &Statements,
    key: &SessionKey,
) -> Result<Option<(i64, u64)>> {
    let row: Option<Row> = conn
        .exec_first(
            sql.row_state.as_str(),
            Params::Positional(vec![key_param(key)]),
        )
        .await
        .map_err(backend)?;
    let Some(row) = row else { return Ok(None) };
    let mut values = row.unwrap().into_iter();
    let (Some(expires_at), Some(version)) = (values.next(), values.next()) else {
        return Err(Error::decode(key, "the row has too few columns"));
    };
    let expires_at =
        mysql_async::from_value_opt::<i64>(expires_at).map_err(|e| Error::decode(key, e))?;
    let version = mysql_async::from_value_opt::<u64>(version).map_err(|e| Error::decode(key, e))?;
    Ok(Some((expires_at, version)))
}

/// `key, data, created_at, expires_at, version, principal` rows as keys and
/// records.
pub(crate) fn keyed_records(rows: Vec<Row>) -> Result<Vec<(SessionKey, Record)>> {
    let mut found = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = row.unwrap();
        if values.is_empty() {
            return Err(Error::backend(BACKEND, "a row without columns"));
        }
        let key = key_from_value(values.remove(0))?;
        let record = record_from_values(&key, values)?;
        found.push((key, record));
    }
    Ok(found)
}

#[async_trait]
impl SessionStore for MysqlStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        let key = *key;
        self.call("load", |mut conn| {
            let sql = Arc::clone(&self.sql);
            async move {
                let row: Option<Row> = conn
                    .exec_first(
                        sql.load.as_str(),
                        Params::Positional(vec![key_param(&key), now().into()]),
                    )
                    .await
                    .map_err(backend)?;
                row.map(|row| record_from_values(&key, row.unwrap()))
                    .transpose()
            }
        })
        .await
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        let (key, row) = (*key, self.columns(record)?);
        self.call("create", |mut conn| {
            let (sql, row) = (Arc::clone(&self.sql), row.clone());
            async move {
                let now = now();
                if row.expires_at <= now {
                    // Nothing is stored; an expired row in the way goes.
                    conn.exec_drop(
                        sql.destroy_expired.as_str(),
                        Params::Positional(vec![key_param(&key), now.into()]),
                    )
                    .await
                    .map_err(backend)?;
                    let state = row_state(&mut conn, &sql, &key).await?;
                    return Ok(state.is_none_or(|(expires_at, _)| expires_at <= now));
                }
                conn.exec_drop(
                    sql.create.as_str(),
                    Params::Positional(vec![
                        key_param(&key),
                        data_param(&row.data),
                        row.created_at.into(),
                        row.expires_at.into(),
                        row.version.into(),
                        principal_param(row.principal.as_ref()),
                        now.into(),
                        now.into(),
                        now.into(),
                        now.into(),
                        now.into(),
                    ]),
                )
                .await
                .map_err(backend)?;
                // CLIENT_FOUND_ROWS is off: 1 = inserted, 2 = an expired row
                // replaced, 0 = a live row left as it was. A replaced row
                // always changes: its expiry was <= now < the new one.
                Ok(conn.affected_rows() != 0)
            }
        })
        .await
    }

    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<UpdateOutcome> {
        let (key, row) = (*key, self.columns(record)?);
        // Wrapping: versions are only compared for equality.
        let next = expected_version.wrapping_add(1);
        self.call("update", |mut conn| {
            let (sql, row) = (Arc::clone(&self.sql), row.clone());
            async move {
                // The conditional statement is the atomic step. When it
                // matches nothing, the read that follows says why, and is
                // itself a moment at which the answer is true: absent or
                // expired is Missing, live with another version is Conflict.
                // Live with the expected version (it came back meanwhile,
                // e.g. re-created) means the update could apply now: try
                // again, a bounded number of times.
                for _ in 0..retry::UPDATE_ROUNDS {
                    let now = now();
                    let params = if row.expires_at > now {
                        (
                            sql.update.as_str(),
                            vec![
                                data_param(&row.data),
                                row.created_at.into(),
                                row.expires_at.into(),
                                next.into(),
                                principal_param(row.principal.as_ref()),
                                key_param(&key),
                                expected_version.into(),
                                now.into(),
                            ],
                        )
                    } else {
                        // To an expiry not in the future: the session ends.
                        (
                            sql.update_gone.as_str(),
                            vec![key_param(&key), expected_version.into(), now.into()],
                        )
                    };
                    conn.exec_drop(params.0, Params::Positional(params.1))
                        .await
                        .map_err(backend)?;
                    if conn.affected_rows() == 1 {
                        return Ok(UpdateOutcome::Updated);
                    }
                    match row_state(&mut conn, &sql, &key).await? {
                        Some((expires_at, version)) if expires_at > self::now() => {
                            if version != expected_version {
                                return Ok(UpdateOutcome::Conflict);
                            }
                        }
                        _ => return Ok(UpdateOutcome::Missing),
                    }
                }
                Ok(UpdateOutcome::Conflict)
            }
        })
        .await
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        let (key, row) = (*key, self.columns(record)?);
        self.call("save", |mut conn| {
            let (sql, row) = (Arc::clone(&self.sql), row.clone());
            async move {
                if row.expires_at > now() {
                    conn.exec_drop(
                        sql.save.as_str(),
                        Params::Positional(vec![
                            key_param(&key),
                            data_param(&row.data),
                            row.created_at.into(),
                            row.expires_at.into(),
                            row.version.into(),
                            principal_param(row.principal.as_ref()),
                        ]),
                    )
                    .await
                    .map_err(backend)
                } else {
                    conn.exec_drop(
                        sql.destroy.as_str(),
                        Params::Positional(vec![key_param(&key)]),
                    )
                    .await
                    .map_err(backend)
                }
            }
        })
        .await
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let key = *key;
        let to = expires_at.as_millis();
        self.call("touch", |mut conn| {
            let sql = Arc::clone(&self.sql);
            async move {
                let now = now();
                conn.exec_drop(
                    sql.touch.as_str(),
                    Params::Positional(vec![to.into(), key_param(&key), now.into()]),
                )
                .await
                .map_err(backend)?;
                if conn.affected_rows() == 1 {
                    return Ok(true);
                }
                // Nothing changed: absent, expired, or live with exactly
                // that expiry already (a touch that is a no-op). The read
                // is a moment at which the answer is true.
                let state = row_state(&mut conn, &sql, &key).await?;
                Ok(state.is_some_and(|(at, _)| at == to && at > self::now()))
            }
        })
        .await
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        let key = *key;
        self.call("destroy", |mut conn| {
            let sql = Arc::clone(&self.sql);
            async move {
                conn.exec_drop(
                    sql.destroy.as_str(),
                    Params::Positional(vec![key_param(&key)]),
                )
                .await
                .map_err(backend)
            }
        })
        .await
    }

    async fn clear(&self) -> Result<()> {
        self.call("clear", |mut conn| {
            let sql = Arc::clone(&self.sql);
            async move {
                // TRUNCATE takes the same time for a million rows as for
                // ten, where DELETE takes seconds; a user without the DROP
                // privilege gets the DELETE.
                match conn.query_drop(sql.clear.as_str()).await {
                    Err(mysql_async::Error::Server(e)) if e.code == TABLE_ACCESS_DENIED => conn
                        .query_drop(sql.clear_rows.as_str())
                        .await
                        .map_err(backend),
                    done => done.map_err(backend),
                }
            }
        })
        .await
    }

    async fn len(&self) -> Result<u64> {
        self.call("len", |mut conn| {
            let sql = Arc::clone(&self.sql);
            async move {
                let count: Option<u64> = conn
                    .exec_first(sql.len.as_str(), Params::Positional(vec![now().into()]))
                    .await
                    .map_err(backend)?;
                Ok(count.unwrap_or(0))
            }
        })
        .await
    }

    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        let after = cursor.map(|c| c.key_after(BACKEND)).transpose()?;
        let max = u64::try_from(limit.get()).unwrap_or(u64::MAX);
        self.call("list", |mut conn| {
            let sql = Arc::clone(&self.sql);
            async move {
                let (statement, params) = match &after {
                    Some(after) => (
                        sql.list_after.as_str(),
                        vec![key_param(after), now().into(), max.into()],
                    ),
                    None => (sql.list_first.as_str(), vec![now().into(), max.into()]),
                };
                let rows: Vec<Row> = conn
                    .exec(statement, Params::Positional(params))
                    .await
                    .map_err(backend)?;
                let scanned = keyed_records(rows)?;
                // The statement returned only live rows.
                Page::from_key_ordered(scanned, limit, |_, record| Ok(Some(record)))
            }
        })
        .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        // One cut-off for the whole sweep, so that it ends. Each batch is its
        // own statement (autocommit), deleting through the expiry index: a
        // large backlog never holds its locks for longer than one batch.
        // The operation deadline bounds the whole sweep: when it passes
        // after some batches, the sweep stops there and reports what it
        // removed (the next sweep goes on); only a first batch that does not
        // finish in time is an Error::Timeout.
        let cutoff = now();
        let started = tokio::time::Instant::now();
        let batch = u64::try_from(self.reap_batch).unwrap_or(u64::MAX);
        let mut removed = 0u64;
        loop {
            let left = self.timeout.saturating_sub(started.elapsed());
            let sweep = self.call_within("delete_expired", left, |mut conn| {
                let sql = Arc::clone(&self.sql);
                async move {
                    conn.exec_drop(
                        sql.delete_expired.as_str(),
                        Params::Positional(vec![cutoff.into(), batch.into()]),
                    )
                    .await
                    .map_err(backend)?;
                    Ok(conn.affected_rows())
                }
            });
            let deleted = match sweep.await {
                Ok(deleted) => deleted,
                Err(Error::Timeout { .. }) if removed > 0 => return Ok(removed),
                Err(e) => return Err(e),
            };
            removed += deleted;
            if deleted < batch {
                return Ok(removed);
            }
        }
    }
}

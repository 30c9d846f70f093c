//! The MySQL/MariaDB engine's limit: `mysql_async` running the store's
//! statements on a table of the same layout (made by the store's own
//! builder), from a pool configured as the store's, with nothing around
//! them: no deadline, no retries, no explaining read after a refusal, and
//! the `save` phase a plain upsert.

use std::sync::Arc;

use async_trait::async_trait;
use mysql_async::prelude::Queryable as _;
use mysql_async::{Params, Pool, Row, Value};
use session_core::{SessionKey, SessionStore, Timestamp};
use session_store_mysql::MysqlStore;

use crate::Result;
use crate::backends::{Env, Opened, opened};
use crate::payload::Payload;
use crate::target::Target;

/// The statements of one table, as the store writes them.
#[derive(Debug)]
struct Sql {
    load: String,
    save: String,
    create: String,
    touch: String,
    destroy: String,
    clear: String,
}

impl Sql {
    fn new(table: &str) -> Self {
        let t = format!("`{table}`");
        let upsert = format!(
            "INSERT INTO {t} (`key`, data, created_at, expires_at, version, principal) \
             VALUES (?, ?, ?, ?, ?, NULL) ON DUPLICATE KEY UPDATE "
        );
        Self {
            load: format!(
                "SELECT data, created_at, expires_at, version, principal FROM {t} \
                 WHERE `key` = ? AND expires_at > ?"
            ),
            save: format!(
                "{upsert}data = VALUES(data), created_at = VALUES(created_at), \
                 expires_at = VALUES(expires_at), version = VALUES(version), \
                 principal = VALUES(principal)"
            ),
            create: format!(
                "{upsert}\
                 data = IF(expires_at <= ?, VALUES(data), data), \
                 created_at = IF(expires_at <= ?, VALUES(created_at), created_at), \
                 version = IF(expires_at <= ?, VALUES(version), version), \
                 principal = IF(expires_at <= ?, VALUES(principal), principal), \
                 expires_at = IF(expires_at <= ?, VALUES(expires_at), expires_at)"
            ),
            touch: format!("UPDATE {t} SET expires_at = ? WHERE `key` = ? AND expires_at > ?"),
            destroy: format!("DELETE FROM {t} WHERE `key` = ?"),
            clear: format!("DELETE FROM {t}"),
        }
    }
}

/// Plain `mysql_async` statements on a table of its own.
#[derive(Debug)]
pub struct RawMysql {
    pool: Pool,
    sql: Sql,
}

fn key_param(key: &SessionKey) -> Value {
    Value::Bytes(key.as_bytes().to_vec())
}

fn now() -> Value {
    Timestamp::now().as_millis().into()
}

impl RawMysql {
    async fn upsert(&self, key: &SessionKey, payload: &Payload) -> Result<()> {
        let mut conn = self.pool.get_conn().await?;
        conn.exec_drop(
            self.sql.save.as_str(),
            Params::Positional(vec![
                key_param(key),
                payload.data_json.as_str().into(),
                payload.created_at.as_millis().into(),
                payload.expires_at.as_millis().into(),
                0_u64.into(),
            ]),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Target for RawMysql {
    async fn load(&self, key: &SessionKey) -> Result<bool> {
        let mut conn = self.pool.get_conn().await?;
        let row: Option<Row> = conn
            .exec_first(
                self.sql.load.as_str(),
                Params::Positional(vec![key_param(key), now()]),
            )
            .await?;
        Ok(row.is_some())
    }

    async fn write(&self, key: &SessionKey, payload: &Payload, _expected: u64) -> Result<bool> {
        // Rows changed is 0 when the upsert writes what is there already
        // (the same payload again): still a completed write.
        self.upsert(key, payload).await?;
        Ok(true)
    }

    async fn create(&self, key: &SessionKey, payload: &Payload) -> Result<bool> {
        let mut conn = self.pool.get_conn().await?;
        let now = now();
        conn.exec_drop(
            self.sql.create.as_str(),
            Params::Positional(vec![
                key_param(key),
                payload.data_json.as_str().into(),
                payload.created_at.as_millis().into(),
                payload.expires_at.as_millis().into(),
                0_u64.into(),
                now.clone(),
                now.clone(),
                now.clone(),
                now.clone(),
                now,
            ]),
        )
        .await?;
        Ok(conn.affected_rows() != 0)
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let mut conn = self.pool.get_conn().await?;
        conn.exec_drop(
            self.sql.touch.as_str(),
            Params::Positional(vec![expires_at.as_millis().into(), key_param(key), now()]),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        let mut conn = self.pool.get_conn().await?;
        conn.exec_drop(
            self.sql.destroy.as_str(),
            Params::Positional(vec![key_param(key)]),
        )
        .await?;
        Ok(())
    }

    async fn put(&self, key: &SessionKey, payload: &Payload) -> Result<()> {
        self.upsert(key, payload).await?;
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        let mut conn = self.pool.get_conn().await?;
        conn.query_drop(self.sql.clear.as_str()).await?;
        Ok(())
    }
}

/// The store on table `{namespace}`, the raw baseline on `{namespace}_raw`
/// (created by a second store, so the layout is the same), each with its
/// own pool of the store's default size and options.
pub(crate) async fn open_pair(env: &Env, namespace: &str) -> Result<Opened> {
    let url = &env.mysql_url;
    let unreachable = |e: &dyn std::fmt::Display| {
        format!("cannot reach MySQL/MariaDB: {e} (start a server or set SESSION_MYSQL_URL)")
    };
    let store = MysqlStore::builder()
        .with_namespace(namespace)
        .connect(url)
        .await
        .map_err(|e| unreachable(&e))?;
    let raw_table = format!("{namespace}_raw");
    let raw_store = MysqlStore::builder()
        .with_namespace(&raw_table)
        .connect(url)
        .await
        .map_err(|e| unreachable(&e))?;
    let raw = RawMysql {
        pool: raw_store.pool().clone(),
        sql: Sql::new(&raw_table),
    };
    let store: Arc<dyn SessionStore> = Arc::new(store);
    Ok(opened(store, Arc::new(raw), vec![Box::new(raw_store)]))
}

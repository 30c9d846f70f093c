//! The PostgreSQL engine's limit: tokio-postgres, through a deadpool pool of
//! the store's size, running the store's statements on a table of the same
//! layout, with no conditions beyond the statements' own: the `save` phase
//! is a plain upsert, not the store's versioned update.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use session_conformance::fixtures::Cleanup;
use session_core::{SessionKey, SessionStore, Timestamp};
use session_store_postgres::{DEFAULT_POOL_SIZE, PostgresStore};

use crate::Result;
use crate::backends::{Env, Opened, opened};
use crate::payload::Payload;
use crate::target::Target;

/// The schema both tables of a run live in.
const SCHEMA: &str = "session_bench";

/// The store's statements, on `{table}` (`"schema"."name"`, quoted).
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
    fn new(t: &str) -> Self {
        let upsert = format!(
            "INSERT INTO {t} AS s (key, data, created_at, expires_at, version, principal) \
             VALUES ($1, $2, $3, $4, $5, NULL) \
             ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, \
             created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
             version = EXCLUDED.version, principal = EXCLUDED.principal"
        );
        Self {
            load: format!(
                "SELECT data, created_at, expires_at, version, principal FROM {t} \
                 WHERE key = $1 AND expires_at > $2"
            ),
            create: format!("{upsert} WHERE s.expires_at <= $6"),
            save: upsert,
            touch: format!("UPDATE {t} SET expires_at = $2 WHERE key = $1 AND expires_at > $3"),
            destroy: format!("DELETE FROM {t} WHERE key = $1"),
            clear: format!("TRUNCATE TABLE {t}"),
        }
    }
}

/// Plain tokio-postgres statements on a pooled connection.
#[derive(Debug)]
pub struct RawPostgres {
    pool: Pool,
    sql: Sql,
}

impl RawPostgres {
    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    async fn upsert(&self, key: &SessionKey, payload: &Payload) -> Result<()> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&self.sql.save).await?;
        client
            .execute(
                &stmt,
                &[
                    &key.as_bytes().as_slice(),
                    &payload.data_json.as_str(),
                    &payload.created_at.as_millis(),
                    &payload.expires_at.as_millis(),
                    &0_i64,
                ],
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Target for RawPostgres {
    async fn load(&self, key: &SessionKey) -> Result<bool> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&self.sql.load).await?;
        let row = client
            .query_opt(
                &stmt,
                &[&key.as_bytes().as_slice(), &Timestamp::now().as_millis()],
            )
            .await?;
        Ok(match row {
            Some(row) => {
                // Read the columns, as the store does.
                let _: (&str, i64, i64, i64) = (
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                );
                true
            }
            None => false,
        })
    }

    async fn write(&self, key: &SessionKey, payload: &Payload, _expected: u64) -> Result<bool> {
        self.upsert(key, payload).await?;
        Ok(true)
    }

    async fn create(&self, key: &SessionKey, payload: &Payload) -> Result<bool> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&self.sql.create).await?;
        let changed = client
            .execute(
                &stmt,
                &[
                    &key.as_bytes().as_slice(),
                    &payload.data_json.as_str(),
                    &payload.created_at.as_millis(),
                    &payload.expires_at.as_millis(),
                    &0_i64,
                    &Timestamp::now().as_millis(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&self.sql.touch).await?;
        let changed = client
            .execute(
                &stmt,
                &[
                    &key.as_bytes().as_slice(),
                    &expires_at.as_millis(),
                    &Timestamp::now().as_millis(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&self.sql.destroy).await?;
        client.execute(&stmt, &[&key.as_bytes().as_slice()]).await?;
        Ok(())
    }

    async fn put(&self, key: &SessionKey, payload: &Payload) -> Result<()> {
        self.upsert(key, payload).await
    }

    async fn clear(&self) -> Result<()> {
        self.client().await?.execute(&self.sql.clear, &[]).await?;
        Ok(())
    }
}

/// Drop the run's tables on the server at `url` when the bench is done
/// with them, for a [`Cleanup`]. Failures are ignored: a table left behind
/// is harmless.
async fn drop_tables(url: String, tables: Vec<String>) {
    let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
        return;
    };
    tokio::spawn(conn);
    for table in tables {
        let _ = client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS \"{SCHEMA}\".\"{table}\";
                 DELETE FROM \"{SCHEMA}\".session_store__registry
                     WHERE name = '{table}';"
            ))
            .await;
    }
}

/// The store on table `{namespace}`, the raw baseline on `{namespace}_raw`
/// (created by a second store, so with the same layout and index), both in
/// schema `session_bench`, each with its own pool of the store's default
/// size.
pub(crate) async fn open_pair(env: &Env, namespace: &str) -> Result<Opened> {
    let url = &env.postgres_url;
    let unreachable = |e: &dyn std::fmt::Display| {
        format!(
            "cannot reach PostgreSQL at {}: {e} (start a server or set SESSION_POSTGRES_URL)",
            session_core::redact_url(url)
        )
    };
    let raw_table = format!("{namespace}_raw");
    let store = PostgresStore::builder()
        .with_schema(SCHEMA)
        .with_namespace(namespace)
        .connect(url)
        .await
        .map_err(|e| unreachable(&session_core::report(&e)))?;
    // Creates the raw table with the store's layout, then is dropped.
    store.open_namespace(&raw_table).await?;
    let config: tokio_postgres::Config = url.parse()?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(DEFAULT_POOL_SIZE).build()?;
    let raw = RawPostgres {
        pool,
        sql: Sql::new(&format!("\"{SCHEMA}\".\"{raw_table}\"")),
    };
    let server = url.clone();
    let guard = Cleanup::new(move |tables| drop_tables(server.clone(), tables));
    guard.track(namespace);
    guard.track(&raw_table);
    let store: Arc<dyn SessionStore> = Arc::new(store);
    Ok(opened(store, Arc::new(raw), vec![Box::new(guard)]))
}

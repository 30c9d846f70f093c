//! The test factory; where the server is and what an unreachable one says
//! come from `session_conformance::env`.
#![allow(dead_code, unreachable_pub)]

use std::sync::Mutex;

use session_conformance::env::POSTGRES;
use session_conformance::{Capabilities, StoreFactory};
use session_core::async_trait;
use session_store_postgres::{PostgresStore, PostgresStoreBuilder};

/// The schema every test table lives in, so that test runs do not fill
/// `public`.
pub const TEST_SCHEMA: &str = "session_tests";

/// Where the tests look for PostgreSQL.
pub fn postgres_url() -> String {
    POSTGRES.url()
}

/// Skip reason (only `SESSION_SKIP_POSTGRES=1`).
pub fn skip() -> Option<String> {
    POSTGRES.skip_reason()
}

/// A builder for table `namespace` of [`TEST_SCHEMA`].
pub fn builder(namespace: &str) -> PostgresStoreBuilder {
    PostgresStore::builder()
        .with_schema(TEST_SCHEMA)
        .with_namespace(namespace)
}

/// A store on table `namespace` of [`TEST_SCHEMA`], or a failure that says
/// how to get a server.
pub async fn store(namespace: &str) -> PostgresStore {
    let url = postgres_url();
    builder(namespace)
        .with_pool_size(8)
        .connect(&url)
        .await
        .unwrap_or_else(|e| POSTGRES.unreachable(&url, &e))
}

/// A plain driver connection to the test server, for writing behind the
/// store's back.
pub async fn raw() -> tokio_postgres::Client {
    let url = postgres_url();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| POSTGRES.unreachable(&url, &e));
    tokio::spawn(conn);
    client
}

/// Drop the test tables `tables` (and their registry rows), on a runtime of
/// its own: called from `Drop`, where no runtime can be awaited. Failures
/// are ignored: a table left behind is harmless.
pub fn drop_tables(tables: Vec<String>) {
    if tables.is_empty() || skip().is_some() {
        return;
    }
    let cleanup = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let Ok((client, conn)) =
                tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await
            else {
                return;
            };
            tokio::spawn(conn);
            for table in tables {
                let _ = client
                    .batch_execute(&format!(
                        "DROP TABLE IF EXISTS \"{TEST_SCHEMA}\".\"{table}\";
                         DELETE FROM \"{TEST_SCHEMA}\".session_store__registry
                             WHERE name = '{table}';"
                    ))
                    .await;
            }
        });
    });
    let _ = cleanup.join();
}

/// The conformance factory: remembers the tables it opened and drops them
/// when the behaviour is over.
#[derive(Debug, Default)]
pub struct Postgres {
    tables: Mutex<Vec<String>>,
}

impl Postgres {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drop `table` too when this is dropped. Namespaces are `[a-z0-9_]`
    /// (the suite's promise), so they are safe to splice into the clean-up
    /// statements.
    pub fn track(&self, table: &str) {
        if let Ok(mut tables) = self.tables.lock()
            && !tables.iter().any(|t| t == table)
        {
            tables.push(table.to_owned());
        }
    }
}

/// For one test: a factory (which drops the test's tables when the test
/// ends, passed or failed), a fresh namespace and a store on it; `None`
/// when the run opts out of PostgreSQL.
pub async fn fresh() -> Option<(Postgres, String, PostgresStore)> {
    if skip().is_some() {
        return None;
    }
    let tables = Postgres::new();
    let ns = session_conformance::unique_namespace();
    let store = tables.open(&ns).await;
    Some((tables, ns, store))
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let tables = std::mem::take(self.tables.get_mut().unwrap_or_else(|e| e.into_inner()));
        drop_tables(tables);
    }
}

#[async_trait]
impl StoreFactory for Postgres {
    type Store = PostgresStore;

    async fn open(&self, namespace: &str) -> PostgresStore {
        self.track(namespace);
        store(namespace).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true)
    }

    fn skip_reason(&self) -> Option<String> {
        skip()
    }
}

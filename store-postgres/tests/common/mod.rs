//! The test factory; where the server is and what an unreachable one says
//! come from `session_conformance::env`.
#![allow(dead_code, unreachable_pub)]

use session_conformance::env::POSTGRES;
use session_conformance::fixtures::Cleanup;
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

/// Drop the test tables `tables` and their registry rows, for
/// [`Cleanup`]. Failures are ignored: a table left behind is harmless.
async fn drop_tables(tables: Vec<String>) {
    let Ok((client, conn)) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await
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
}

/// The conformance factory: drops the tables it opened (and any other it
/// is told of) when the behaviour or test is over. Namespaces are
/// `[a-z0-9_]` (the suite's promise), so they are safe to splice into the
/// clean-up statements.
#[derive(Debug)]
pub struct Postgres {
    pub cleanup: Cleanup,
}

impl Postgres {
    pub fn new() -> Self {
        Self {
            cleanup: Cleanup::new(drop_tables),
        }
    }
}

/// For one test: the factory (which drops the test's tables when the test
/// ends, passed or failed), a fresh namespace and a store on it; `None`
/// when the run opts out of PostgreSQL.
pub async fn fresh() -> Option<(Postgres, String, PostgresStore)> {
    session_conformance::fixtures::fresh(Postgres::new()).await
}

#[async_trait]
impl StoreFactory for Postgres {
    type Store = PostgresStore;

    async fn open(&self, namespace: &str) -> PostgresStore {
        self.cleanup.track(namespace);
        store(namespace).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true)
    }

    fn skip_reason(&self) -> Option<String> {
        skip()
    }
}

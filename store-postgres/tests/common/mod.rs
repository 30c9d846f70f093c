//! The test factory; where the server is and what an unreachable one says
//! come from `session_conformance::env`.
#![allow(dead_code, unreachable_pub)]

use session_conformance::env::POSTGRES;
use session_conformance::{Capabilities, StoreFactory};
use session_core::async_trait;
use session_store_postgres::PostgresStore;

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

/// A store on table `namespace` of [`TEST_SCHEMA`], or a failure that says
/// how to get a server.
pub async fn store(namespace: &str) -> PostgresStore {
    let url = postgres_url();
    PostgresStore::builder()
        .with_schema(TEST_SCHEMA)
        .with_namespace(namespace)
        .with_pool_size(8)
        .connect(&url)
        .await
        .unwrap_or_else(|e| POSTGRES.unreachable(&url, &e))
}

/// A plain driver connection to the test server, for writing behind the
/// store's back.
#[allow(clippy::unwrap_used, clippy::panic, reason = "test helper")]
pub async fn raw() -> tokio_postgres::Client {
    let url = postgres_url();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| POSTGRES.unreachable(&url, &e));
    tokio::spawn(conn);
    client
}

/// The conformance factory.
#[derive(Debug, Clone, Copy)]
pub struct Postgres;

#[async_trait]
impl StoreFactory for Postgres {
    type Store = PostgresStore;

    async fn open(&self, namespace: &str) -> PostgresStore {
        store(namespace).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true)
    }

    fn skip_reason(&self) -> Option<String> {
        skip()
    }
}

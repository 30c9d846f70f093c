//! The shared behaviour suite, on one temporary database file per factory:
//! every namespace the suite opens is a table of that file, and reopening a
//! namespace opens the file again with fresh connections.

#![allow(
    clippy::panic,
    reason = "the factory must fail the test, with a message, when it cannot open a store"
)]

use session_conformance::{Capabilities, StoreFactory, conformance_suite};
use session_core::async_trait;
use session_store_sqlite::SqliteStore;

/// A temporary directory, removed when the factory is dropped.
struct Factory {
    dir: tempfile::TempDir,
}

impl Factory {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        Self { dir }
    }
}

#[async_trait]
impl StoreFactory for Factory {
    type Store = SqliteStore;

    async fn open(&self, namespace: &str) -> SqliteStore {
        let path = self.dir.path().join("sessions.db");
        SqliteStore::builder(&path)
            .with_namespace(namespace)
            .with_read_connections(2)
            .build()
            .await
            .unwrap_or_else(|e| panic!("cannot open {} table {namespace}: {e}", path.display()))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true)
    }
}

conformance_suite!(Factory::new());

/// The same suite through `Arc<dyn SessionStore>`.
mod dyn_store {
    use super::Factory;
    session_conformance::conformance_suite!(session_conformance::Dyn(Factory::new()));
}

/// The `PrincipalIndex` suite (the principal column and its index).
mod principals {
    use super::Factory;
    session_conformance::principal_index_suite!(Factory::new());
}

/// The same suite through `Arc<dyn PrincipalIndex>`.
mod dyn_principals {
    use super::Factory;
    session_conformance::principal_index_suite!(session_conformance::DynIndex(Factory::new()));
}

//! The shared behaviour suite, on one temporary root directory per factory:
//! every namespace the suite opens is a subdirectory of it, and reopening a
//! namespace builds a new store on the same directory.

#![allow(
    clippy::panic,
    reason = "the factory must fail the test, with a message, when it cannot open a store"
)]

use session_conformance::{Capabilities, StoreFactory, conformance_suite};
use session_core::async_trait;
use session_store_file::FileStore;

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
    type Store = FileStore;

    async fn open(&self, namespace: &str) -> FileStore {
        FileStore::builder(self.dir.path())
            .with_namespace(namespace)
            .build()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot open {} namespace {namespace}: {e}",
                    self.dir.path().display()
                )
            })
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

/// The principal index behaviours, directly and through
/// `Arc<dyn PrincipalIndex>`.
mod principals {
    use super::Factory;
    session_conformance::principal_index_suite!(Factory::new());

    mod dyn_index {
        use super::Factory;
        session_conformance::principal_index_suite!(session_conformance::DynIndex(Factory::new()));
    }
}

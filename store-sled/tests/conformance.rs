//! The shared behaviour suite on one sled database per factory.
//!
//! sled locks its directory, so a process can open a path only once at a
//! time: every namespace the suite opens at the same time shares one
//! database (`open_namespace`). The factory keeps only `Weak`s to its
//! stores, so when the last one is dropped the database really closes, and
//! reopening a namespace opens the directory again from disk (a true
//! reopen, not a cached handle).

#![allow(
    clippy::panic,
    reason = "the factory must fail the test, with a message, when it cannot open a store"
)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use session_conformance::{Capabilities, StoreFactory, conformance_suite};
use session_core::async_trait;
use session_store_sled::SledStore;

struct Factory {
    /// Removed when the factory is dropped.
    _temp: tempfile::TempDir,
    dir: PathBuf,
    /// Every store handed out: while one lives, new namespaces share its
    /// database; once none does, the directory is opened again from disk.
    open: Mutex<Vec<Weak<SledStore>>>,
}

impl Factory {
    fn new() -> Self {
        let temp = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let dir = temp.path().join("db");
        Self {
            _temp: temp,
            dir,
            open: Mutex::new(Vec::new()),
        }
    }

    /// A store of this directory that is still open, if any.
    fn live(&self) -> Option<Arc<SledStore>> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|store| store.strong_count() > 0);
        open.iter().find_map(Weak::upgrade)
    }
}

#[async_trait]
impl StoreFactory for Factory {
    type Store = Arc<SledStore>;

    async fn open(&self, namespace: &str) -> Arc<SledStore> {
        let store = match self.live() {
            Some(live) => live.open_namespace(namespace).await,
            // The previous handle may still be closing: sled lets go of
            // the directory lock a little after the last one is dropped.
            None => {
                SledStore::builder(&self.dir)
                    .with_namespace(namespace)
                    .with_lock_wait(Duration::from_secs(10))
                    .build()
                    .await
            }
        };
        let store = Arc::new(store.unwrap_or_else(|e| {
            panic!(
                "cannot open namespace {namespace} in {}: {e}",
                self.dir.display()
            )
        }));
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&store));
        store
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

//! The shared conformance suite, run on `MemoryStore` directly and through
//! `Arc<dyn SessionStore>`, and the principal index suite both ways.

use session_conformance::{Capabilities, StoreFactory};
use session_core::async_trait;
use session_store_memory::MemoryStore;

/// Opens a fresh `MemoryStore` per namespace: each store is its own
/// namespace, so the name itself is not needed.
struct Factory;

#[async_trait]
impl StoreFactory for Factory {
    type Store = MemoryStore;

    async fn open(&self, _namespace: &str) -> MemoryStore {
        MemoryStore::new()
    }

    fn capabilities(&self) -> Capabilities {
        // Per process and lost on drop: no reopen check.
        Capabilities::new()
    }
}

mod direct {
    session_conformance::conformance_suite!(crate::Factory);
}

mod dynamic {
    session_conformance::conformance_suite!(session_conformance::Dyn(crate::Factory));
}

/// The principal index behaviours, directly and through
/// `Arc<dyn PrincipalIndex>`.
mod principals {
    session_conformance::principal_index_suite!(crate::Factory);

    mod dynamic {
        session_conformance::principal_index_suite!(session_conformance::DynIndex(crate::Factory));
    }
}

//! The shared behaviour suite on the test server: every namespace the suite
//! opens is a table of the test schema, and reopening a namespace opens a
//! new pool on the same table.

mod common;

session_conformance::conformance_suite!(common::Postgres::new());

/// The same suite through `Arc<dyn SessionStore>`.
mod dyn_store {
    session_conformance::conformance_suite!(session_conformance::Dyn(
        crate::common::Postgres::new()
    ));
}

/// The `PrincipalIndex` suite (the principal column and its partial index).
mod principals {
    session_conformance::principal_index_suite!(crate::common::Postgres::new());
}

/// The same suite through `Arc<dyn PrincipalIndex>`.
mod dyn_principals {
    session_conformance::principal_index_suite!(session_conformance::DynIndex(
        crate::common::Postgres::new()
    ));
}

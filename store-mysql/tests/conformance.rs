//! The whole conformance suite against MySQL/MariaDB, directly and through
//! `Arc<dyn SessionStore>`: every namespace is a fresh table of the test
//! database (SESSION_MYSQL_URL, default mysql://root@127.0.0.1:3306/test),
//! dropped again when the behaviour is done.

mod common;

session_conformance::conformance_suite!(common::Mysql::default());

/// The whole suite again through `Arc<dyn SessionStore>`.
mod dynamic {
    session_conformance::conformance_suite!(session_conformance::Dyn(
        crate::common::Mysql::default()
    ));
}

/// The `PrincipalIndex` suite (the principal column and its index).
mod principals {
    session_conformance::principal_index_suite!(crate::common::Mysql::default());
}

/// The same suite through `Arc<dyn PrincipalIndex>`.
mod dyn_principals {
    session_conformance::principal_index_suite!(session_conformance::DynIndex(
        crate::common::Mysql::default()
    ));
}

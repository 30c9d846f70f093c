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

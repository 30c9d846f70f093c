//! The whole conformance suite against MySQL/MariaDB, directly and through
//! `Arc<dyn SessionStore>`: every namespace is a fresh table of the test
//! database (SESSION_MYSQL_URL, default mysql://root@127.0.0.1:3306/test).

use session_conformance::env::MYSQL;
use session_conformance::{Capabilities, StoreFactory, conformance_suite};
use session_core::async_trait;
use session_store_mysql::MysqlStore;

struct Mysql;

#[async_trait]
impl StoreFactory for Mysql {
    type Store = MysqlStore;

    async fn open(&self, namespace: &str) -> MysqlStore {
        let url = MYSQL.url();
        MysqlStore::builder()
            .with_namespace(namespace)
            .with_pool_size(8)
            .connect(&url)
            .await
            .unwrap_or_else(|e| MYSQL.unreachable(&url, &e))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true)
    }

    fn skip_reason(&self) -> Option<String> {
        MYSQL.skip_reason()
    }
}

conformance_suite!(Mysql);

/// The whole suite again through `Arc<dyn SessionStore>`.
mod dynamic {
    session_conformance::conformance_suite!(session_conformance::Dyn(crate::Mysql));
}

//! The whole conformance suite against MySQL/MariaDB, directly and through
//! `Arc<dyn SessionStore>`: every namespace is a fresh table of the test
//! database (SESSION_MYSQL_URL, default mysql://root@127.0.0.1:3306/test),
//! dropped again when the behaviour is done.

use std::sync::Mutex;

use mysql_async::prelude::Queryable as _;
use session_conformance::env::MYSQL;
use session_conformance::{Capabilities, StoreFactory, conformance_suite};
use session_core::async_trait;
use session_store_mysql::{MysqlStore, REGISTRY};

/// One behaviour's factory: it remembers the tables it opened and drops
/// them (and their registry rows) when the behaviour is done, so that runs
/// do not fill a shared server's database.
#[derive(Default)]
struct Mysql {
    tables: Mutex<Vec<String>>,
}

#[async_trait]
impl StoreFactory for Mysql {
    type Store = MysqlStore;

    async fn open(&self, namespace: &str) -> MysqlStore {
        let url = MYSQL.url();
        let store = MysqlStore::builder()
            .with_namespace(namespace)
            .with_pool_size(8)
            .connect(&url)
            .await
            .unwrap_or_else(|e| MYSQL.unreachable(&url, &e));
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(namespace.to_owned());
        store
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true)
    }

    fn skip_reason(&self) -> Option<String> {
        MYSQL.skip_reason()
    }
}

impl Drop for Mysql {
    /// On a runtime of its own (no runtime can be awaited in `drop`);
    /// failures are ignored: a table left behind is harmless.
    fn drop(&mut self) {
        let mut tables = std::mem::take(
            self.tables
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        tables.sort();
        tables.dedup();
        if tables.is_empty() || MYSQL.skip_reason().is_some() {
            return;
        }
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(opts) = mysql_async::Opts::from_url(&MYSQL.url()) else {
                    return;
                };
                let Ok(mut conn) = mysql_async::Conn::new(opts).await else {
                    return;
                };
                for table in tables {
                    let _ = conn
                        .query_drop(format!("DROP TABLE IF EXISTS `{table}`"))
                        .await;
                    let _ = conn
                        .exec_drop(format!("DELETE FROM `{REGISTRY}` WHERE name = ?"), (table,))
                        .await;
                }
                let _ = conn.disconnect().await;
            });
        });
        let _ = cleanup.join();
    }
}

conformance_suite!(Mysql::default());

/// The whole suite again through `Arc<dyn SessionStore>`.
mod dynamic {
    session_conformance::conformance_suite!(session_conformance::Dyn(crate::Mysql::default()));
}

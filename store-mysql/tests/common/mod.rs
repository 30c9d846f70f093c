//! The test factory; where the server is and what an unreachable one says
//! come from `session_conformance::env`.
#![allow(dead_code, unreachable_pub)]

use mysql_async::prelude::Queryable as _;
use session_conformance::env::MYSQL;
use session_conformance::fixtures::Cleanup;
use session_conformance::{Capabilities, StoreFactory};
use session_core::async_trait;
use session_store_mysql::{MysqlStore, MysqlStoreBuilder, REGISTRY};

/// Skip reason (only `SESSION_SKIP_MYSQL=1`).
pub fn skip() -> Option<String> {
    MYSQL.skip_reason()
}

/// A builder for table `namespace`.
pub fn builder(namespace: &str) -> MysqlStoreBuilder {
    MysqlStore::builder().with_namespace(namespace)
}

/// A store on table `namespace`, or a failure that says how to get a
/// server.
pub async fn store(namespace: &str) -> MysqlStore {
    let url = MYSQL.url();
    builder(namespace)
        .with_pool_size(8)
        .connect(&url)
        .await
        .unwrap_or_else(|e| MYSQL.unreachable(&url, &e))
}

/// Drop the test tables `tables` and their registry rows, for
/// [`Cleanup`]. Failures are ignored: a table left behind is harmless.
async fn drop_tables(tables: Vec<String>) {
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
}

/// The conformance factory: drops the tables it opened (and any other it
/// is told of), and their registry rows, when the behaviour or test is
/// over, so that runs do not fill a shared server's database.
#[derive(Debug)]
pub struct Mysql {
    pub cleanup: Cleanup,
}

impl Default for Mysql {
    fn default() -> Self {
        Self {
            cleanup: Cleanup::new(drop_tables),
        }
    }
}

/// For one test: the factory (which drops the test's tables when the test
/// ends, passed or failed), a fresh namespace and a store on it; `None`
/// when the run opts out of MySQL.
pub async fn fresh() -> Option<(Mysql, String, MysqlStore)> {
    session_conformance::fixtures::fresh(Mysql::default()).await
}

#[async_trait]
impl StoreFactory for Mysql {
    type Store = MysqlStore;

    async fn open(&self, namespace: &str) -> MysqlStore {
        self.cleanup.track(namespace);
        store(namespace).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true)
    }

    fn skip_reason(&self) -> Option<String> {
        skip()
    }
}

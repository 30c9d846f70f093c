//! [`PrincipalIndex`] for [`MysqlStore`]: the `principal` column and its
//! index (see the crate docs, "Sessions of a principal").

use std::sync::Arc;

use mysql_async::prelude::Queryable as _;
use mysql_async::{Params, Row, Value};
use session_core::{Principal, PrincipalIndex, Record, Result, SessionKey, async_trait};

use crate::store::{key_param, keyed_records, now, principal_param};
use crate::{MysqlStore, backend};

#[async_trait]
impl PrincipalIndex for MysqlStore {
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<(SessionKey, Record)>> {
        self.call("sessions_of", |mut conn| {
            let sql = Arc::clone(&self.sql);
            let name = principal_param(Some(principal));
            async move {
                // One statement, one consistent read, the process clock as
                // everywhere.
                let rows: Vec<Row> = conn
                    .exec(
                        sql.sessions_of.as_str(),
                        Params::Positional(vec![name, now().into()]),
                    )
                    .await
                    .map_err(backend)?;
                keyed_records(rows)
            }
        })
        .await
    }

    async fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
    ) -> Result<u64> {
        self.call("destroy_all_of", |mut conn| {
            let sql = Arc::clone(&self.sql);
            let name = principal_param(Some(principal));
            let keep = except.map_or(Value::NULL, key_param);
            async move {
                // One DELETE (autocommit): it locks the rows it deletes, so
                // an update in flight commits first and its row is deleted
                // as it committed it, and an update that comes after finds
                // no row (Missing). Rolled back whole on a deadlock, and
                // retried by `call`.
                conn.exec_drop(
                    sql.destroy_all_of.as_str(),
                    Params::Positional(vec![name, now().into(), keep]),
                )
                .await
                .map_err(backend)?;
                Ok(conn.affected_rows())
            }
        })
        .await
    }

    async fn index_len(&self, principal: &Principal) -> Result<u64> {
        self.call("index_len", |mut conn| {
            let sql = Arc::clone(&self.sql);
            let name = principal_param(Some(principal));
            async move {
                let count: Option<u64> = conn
                    .exec_first(sql.index_len.as_str(), Params::Positional(vec![name]))
                    .await
                    .map_err(backend)?;
                Ok(count.unwrap_or(0))
            }
        })
        .await
    }
}

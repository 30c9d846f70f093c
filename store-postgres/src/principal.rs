//! [`PrincipalIndex`] for [`PostgresStore`]: the `principal` column and its
//! partial index (see the crate docs, "Sessions of a principal").

use session_core::{Principal, PrincipalIndex, Record, Result, SessionKey, async_trait};

use crate::store::{key_from_sql, now, record_from_row};
use crate::{PostgresStore, backend};

#[async_trait]
impl PrincipalIndex for PostgresStore {
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<(SessionKey, Record)>> {
        self.run("sessions_of", async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&self.sql.sessions_of)
                .await
                .map_err(backend)?;
            // One statement, one snapshot, the process clock as everywhere.
            let rows = client
                .query(&stmt, &[&principal.as_str(), &now()])
                .await
                .map_err(backend)?;
            rows.iter()
                .map(|row| {
                    let bytes: &[u8] = row.try_get(0).map_err(backend)?;
                    let key = key_from_sql(bytes)?;
                    Ok((key, record_from_row(&key, row, 1)?))
                })
                .collect()
        })
        .await
    }

    async fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
    ) -> Result<u64> {
        self.run("destroy_all_of", async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&self.sql.destroy_all_of)
                .await
                .map_err(backend)?;
            // One DELETE: it waits for the row lock of an update in flight
            // and re-checks the row it committed; an update that comes
            // after finds no live row (Missing).
            let keep = except.map(|k| k.as_bytes().as_slice());
            client
                .execute(&stmt, &[&principal.as_str(), &now(), &keep])
                .await
                .map_err(backend)
        })
        .await
    }

    async fn index_len(&self, principal: &Principal) -> Result<u64> {
        self.run("index_len", async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&self.sql.index_len)
                .await
                .map_err(backend)?;
            let row = client
                .query_one(&stmt, &[&principal.as_str()])
                .await
                .map_err(backend)?;
            let count: i64 = row.try_get(0).map_err(backend)?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }
}

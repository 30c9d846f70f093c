//! [`PrincipalIndex`] for [`SqliteStore`]: the `principal` column and its
//! partial index (see the crate docs, "Sessions of a principal").

use std::sync::Arc;

use rusqlite::params;
use session_core::{Principal, PrincipalIndex, Record, Result, SessionKey, async_trait};

use crate::SqliteStore;
use crate::backend;
use crate::store::{key_from_row, now, record_from_row};

#[async_trait]
impl PrincipalIndex for SqliteStore {
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<(SessionKey, Record)>> {
        let (sql, principal) = (Arc::clone(&self.sql), principal.clone());
        self.pool
            .read(move |conn| {
                // One statement, one snapshot: the rows that name the
                // principal and are live by this process's clock now.
                let mut stmt = conn.prepare_cached(&sql.sessions_of).map_err(backend)?;
                let mut rows = stmt
                    .query(params![principal.as_str(), now()])
                    .map_err(backend)?;
                let mut found = Vec::new();
                while let Some(row) = rows.next().map_err(backend)? {
                    let key = key_from_row(row)?;
                    found.push((key, record_from_row(&key, row, 1)?));
                }
                Ok(found)
            })
            .await
    }

    async fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
    ) -> Result<u64> {
        let (sql, principal, except) = (Arc::clone(&self.sql), principal.clone(), except.copied());
        self.pool
            .write(move |conn| {
                // One DELETE on the single writer: a versioned update that
                // comes after it finds no row (Missing), one that came
                // before it is deleted with the rest.
                let mut stmt = conn.prepare_cached(&sql.destroy_all_of).map_err(backend)?;
                let deleted = stmt
                    .execute(params![
                        principal.as_str(),
                        now(),
                        except.as_ref().map(SessionKey::as_str)
                    ])
                    .map_err(backend)?;
                Ok(deleted as u64)
            })
            .await
    }

    async fn index_len(&self, principal: &Principal) -> Result<u64> {
        let (sql, principal) = (Arc::clone(&self.sql), principal.clone());
        self.pool
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&sql.index_len).map_err(backend)?;
                let count: i64 = stmt
                    .query_row([principal.as_str()], |row| row.get(0))
                    .map_err(backend)?;
                Ok(u64::try_from(count).unwrap_or(0))
            })
            .await
    }
}

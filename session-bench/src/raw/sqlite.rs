//! The SQLite engine's limit: plain rusqlite running the store's statements
//! on a table of the same schema, directly on the calling thread.

use std::path::Path;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension as _, params};
use session_core::{SessionKey, Timestamp};

use crate::Result;
use crate::payload::Payload;
use crate::target::Target;

/// Read connections, as many as the store opens by default.
const READERS: usize = 4;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS sessions (
        key        TEXT    PRIMARY KEY NOT NULL,
        data       TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        version    INTEGER NOT NULL,
        principal  TEXT
    );
    CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions (expires_at);
    CREATE INDEX IF NOT EXISTS sessions_principal ON sessions (principal)
        WHERE principal IS NOT NULL;";

// The workload's sessions are anonymous: `principal` is bound as NULL, as
// the store does.
const LOAD: &str = "SELECT data, created_at, expires_at, version, principal FROM sessions \
     WHERE key = ?1 AND expires_at > ?2";
const SAVE: &str = "INSERT INTO sessions (key, data, created_at, expires_at, version, principal) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT (key) DO UPDATE SET data = excluded.data, \
     created_at = excluded.created_at, expires_at = excluded.expires_at, \
     version = excluded.version, principal = excluded.principal";
const CREATE: &str = "INSERT INTO sessions (key, data, created_at, expires_at, version, principal) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?7) \
     ON CONFLICT (key) DO UPDATE SET data = excluded.data, \
     created_at = excluded.created_at, expires_at = excluded.expires_at, \
     version = excluded.version, principal = excluded.principal \
     WHERE sessions.expires_at <= ?6";
const TOUCH: &str = "UPDATE sessions SET expires_at = ?1 WHERE key = ?2 AND expires_at > ?3";
const DESTROY: &str = "DELETE FROM sessions WHERE key = ?1";

/// One writer and `READERS` read connections (WAL, `synchronous=NORMAL`,
/// as the store), each behind a `parking_lot` mutex, used inline on the
/// calling task's thread: the engine's own speed, with none of the async
/// bridging a store needs.
#[derive(Debug)]
pub struct RawSqlite {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
}

impl RawSqlite {
    /// Open (creating) the database file at `path`.
    ///
    /// # Errors
    ///
    /// If SQLite fails.
    pub fn open(path: &Path) -> Result<Self> {
        let writer = Connection::open(path)?;
        writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        writer.execute_batch(SCHEMA)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open(path)?;
                reader.pragma_update(None, "query_only", true)?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
        })
    }

    fn upsert(&self, key: &SessionKey, payload: &Payload) -> Result<()> {
        let conn = self.writer.lock();
        conn.prepare_cached(SAVE)?.execute(params![
            key.as_str(),
            payload.data_json,
            payload.created_at.as_millis(),
            payload.expires_at.as_millis(),
            0_i64,
            None::<&str>,
        ])?;
        Ok(())
    }
}

#[async_trait]
impl Target for RawSqlite {
    async fn load(&self, key: &SessionKey) -> Result<bool> {
        let now = Timestamp::now().as_millis();
        // A free reader if there is one, else wait for the first.
        let conn = self
            .readers
            .iter()
            .find_map(|r| r.try_lock())
            .unwrap_or_else(|| self.readers[0].lock());
        let row = conn
            .prepare_cached(LOAD)?
            .query_row(params![key.as_str(), now], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            })
            .optional()?;
        Ok(row.is_some())
    }

    async fn write(&self, key: &SessionKey, payload: &Payload, _expected: u64) -> Result<bool> {
        self.upsert(key, payload)?;
        Ok(true)
    }

    async fn create(&self, key: &SessionKey, payload: &Payload) -> Result<bool> {
        let now = Timestamp::now().as_millis();
        let conn = self.writer.lock();
        let changed = conn.prepare_cached(CREATE)?.execute(params![
            key.as_str(),
            payload.data_json,
            payload.created_at.as_millis(),
            payload.expires_at.as_millis(),
            0_i64,
            now,
            None::<&str>,
        ])?;
        Ok(changed == 1)
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let now = Timestamp::now().as_millis();
        let conn = self.writer.lock();
        let changed = conn.prepare_cached(TOUCH)?.execute(params![
            expires_at.as_millis(),
            key.as_str(),
            now
        ])?;
        Ok(changed == 1)
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        let conn = self.writer.lock();
        conn.prepare_cached(DESTROY)?.execute([key.as_str()])?;
        Ok(())
    }

    async fn put(&self, key: &SessionKey, payload: &Payload) -> Result<()> {
        self.upsert(key, payload)
    }

    async fn clear(&self) -> Result<()> {
        self.writer.lock().execute("DELETE FROM sessions", [])?;
        Ok(())
    }
}

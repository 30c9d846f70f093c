#![doc = include_str!("../README.md")]

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use session_core::{Record, SessionKey, SessionStore, Timestamp, UpdateOutcome};
use sha2::{Digest, Sha256};
use tower_sessions_core::session::{Id, Record as TsRecord};
use tower_sessions_core::session_store::{self, ExpiredDeletion};

/// tower-sessions' core crate, re-exported so that the trait implemented
/// here is the one your `tower-sessions` uses (0.14, as axum-login 0.18).
pub use tower_sessions_core;

/// How many fresh IDs `create` tries before giving up (a collision of
/// 128-bit random IDs means something else is wrong).
const CREATE_ATTEMPTS: u32 = 8;

/// How many versioned writes `save` tries while concurrent requests keep
/// writing first.
const SAVE_ATTEMPTS: u32 = 8;

/// Any `session-core` store as a `tower_sessions::SessionStore`.
///
/// See the crate docs for how IDs, expiry and writes are mapped.
#[derive(Clone)]
pub struct TowerSessionsStore<S> {
    inner: S,
}

impl<S: fmt::Debug> fmt::Debug for TowerSessionsStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TowerSessionsStore")
            .field(&self.inner)
            .finish()
    }
}

impl<S: SessionStore> TowerSessionsStore<S> {
    /// Wrap `store` (any `SessionStore`, or an `Arc` of one).
    pub fn new(store: S) -> Self {
        Self { inner: store }
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped store, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The key our stores see for a tower-sessions ID: the SHA-256 of the ID's
/// text form, which is what travels in their cookie. As with our own
/// sessions, a leaked store cannot be replayed as cookies.
#[must_use]
pub fn key_of(id: &Id) -> SessionKey {
    SessionKey::from_bytes(Sha256::digest(id.to_string().as_bytes()).into())
}

fn backend_error(error: &session_core::Error) -> session_store::Error {
    // tower-sessions errors hold only a string: keep the whole chain in it.
    let text = session_core::report(error);
    match error {
        session_core::Error::Decode { .. } => session_store::Error::Decode(text),
        session_core::Error::Encode { .. } => session_store::Error::Encode(text),
        _ => session_store::Error::Backend(text),
    }
}

fn ours(record: &TsRecord, created_at: Timestamp) -> Record {
    let data: serde_json::Map<String, serde_json::Value> = record
        .data
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Record::with_times(data, created_at, Timestamp::from(record.expiry_date))
}

fn theirs(id: Id, key: &SessionKey, record: Record) -> session_store::Result<TsRecord> {
    let expiry_date = record.expires_at.to_offset_date_time().ok_or_else(|| {
        session_store::Error::Decode(format!(
            "stored session {key}: expiry {} is out of range",
            record.expires_at
        ))
    })?;
    let data: HashMap<String, serde_json::Value> = record.data.into_map().into_iter().collect();
    Ok(TsRecord {
        id,
        data,
        expiry_date,
    })
}

#[async_trait]
impl<S: SessionStore> tower_sessions_core::SessionStore for TowerSessionsStore<S> {
    /// A `create` of ours: only where no live session is, with a fresh ID
    /// on the (astronomically rare) collision.
    async fn create(&self, record: &mut TsRecord) -> session_store::Result<()> {
        let created_at = Timestamp::now();
        for _ in 0..CREATE_ATTEMPTS {
            let key = key_of(&record.id);
            if self
                .inner
                .create(&key, &ours(record, created_at))
                .await
                .map_err(|e| backend_error(&e))?
            {
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(session_store::Error::Backend(format!(
            "session id collided {CREATE_ATTEMPTS} times in a row"
        )))
    }

    /// A versioned `update` of the live record, keeping its creation time.
    /// A session that is gone (logged out or expired meanwhile) stays gone:
    /// nothing is written, where tower-sessions' own stores would write it
    /// back.
    async fn save(&self, record: &TsRecord) -> session_store::Result<()> {
        let key = key_of(&record.id);
        for _ in 0..SAVE_ATTEMPTS {
            let Some(current) = self.inner.load(&key).await.map_err(|e| backend_error(&e))? else {
                return Ok(());
            };
            let next = ours(record, current.created_at);
            match self
                .inner
                .update(&key, &next, current.version)
                .await
                .map_err(|e| backend_error(&e))?
            {
                UpdateOutcome::Updated | UpdateOutcome::Missing => return Ok(()),
                UpdateOutcome::Conflict => {}
            }
        }
        Err(session_store::Error::Backend(format!(
            "session update still conflicting after {SAVE_ATTEMPTS} attempts"
        )))
    }

    /// The live record only: never an expired one, whatever the reaping.
    async fn load(&self, session_id: &Id) -> session_store::Result<Option<TsRecord>> {
        let key = key_of(session_id);
        match self.inner.load(&key).await.map_err(|e| backend_error(&e))? {
            Some(record) => theirs(*session_id, &key, record).map(Some),
            None => Ok(None),
        }
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.inner
            .destroy(&key_of(session_id))
            .await
            .map_err(|e| backend_error(&e))
    }
}

#[async_trait]
impl<S: SessionStore> ExpiredDeletion for TowerSessionsStore<S> {
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.inner
            .delete_expired()
            .await
            .map(drop)
            .map_err(|e| backend_error(&e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;
    use std::time::Duration;

    use session_store_memory::MemoryStore;
    use tower_sessions_core::SessionStore as _;

    use super::*;

    fn store() -> TowerSessionsStore<Arc<MemoryStore>> {
        TowerSessionsStore::new(Arc::new(MemoryStore::new()))
    }

    fn record(minutes: i64) -> TsRecord {
        let mut data = HashMap::new();
        data.insert("user".to_owned(), serde_json::json!("ada"));
        TsRecord {
            id: Id::default(),
            data,
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes),
        }
    }

    #[tokio::test]
    async fn records_round_trip_under_the_hashed_id() {
        let store = store();
        let mut rec = record(30);
        store.create(&mut rec).await.unwrap();
        let loaded = store.load(&rec.id).await.unwrap().unwrap();
        assert_eq!(loaded.data, rec.data);
        assert_eq!(loaded.id, rec.id);
        // Millisecond precision, as every store of ours keeps.
        let diff = (loaded.expiry_date - rec.expiry_date).abs();
        assert!(diff < time::Duration::milliseconds(1), "{diff}");
        // Our store holds only the hash of the ID.
        let all = store.get_ref().all().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, key_of(&rec.id));
        assert!(!all[0].0.as_str().contains(&rec.id.to_string()));
    }

    #[tokio::test]
    async fn create_never_overwrites_a_live_session() {
        let store = store();
        let mut first = record(30);
        store.create(&mut first).await.unwrap();
        let mut second = record(30);
        second.id = first.id;
        second
            .data
            .insert("user".to_owned(), serde_json::json!("eve"));
        store.create(&mut second).await.unwrap();
        assert_ne!(second.id, first.id, "a fresh ID on collision");
        let kept = store.load(&first.id).await.unwrap().unwrap();
        assert_eq!(kept.data["user"], "ada");
    }

    #[tokio::test]
    async fn save_updates_and_keeps_the_creation_time() {
        let store = store();
        let mut rec = record(30);
        store.create(&mut rec).await.unwrap();
        let key = key_of(&rec.id);
        let created = store
            .get_ref()
            .load(&key)
            .await
            .unwrap()
            .unwrap()
            .created_at;
        tokio::time::sleep(Duration::from_millis(3)).await;
        rec.data.insert("views".to_owned(), serde_json::json!(2));
        store.save(&rec).await.unwrap();
        let stored = store.get_ref().load(&key).await.unwrap().unwrap();
        assert_eq!(stored.data["views"], 2);
        assert_eq!(stored.created_at, created);
        assert_eq!(stored.version, 1, "a versioned update");
    }

    #[tokio::test]
    async fn save_does_not_resurrect_a_deleted_session() {
        let store = store();
        let mut rec = record(30);
        store.create(&mut rec).await.unwrap();
        store.delete(&rec.id).await.unwrap();
        store.save(&rec).await.unwrap();
        assert!(store.load(&rec.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn expired_sessions_are_never_loaded_and_are_reaped() {
        let store = store();
        let mut rec = record(30);
        store.create(&mut rec).await.unwrap();
        let key = key_of(&rec.id);
        let past = Timestamp::now() - Duration::from_secs(60);
        assert!(store.get_ref().touch(&key, past).await.unwrap());
        assert!(store.load(&rec.id).await.unwrap().is_none());
        store.delete_expired().await.unwrap();
        assert_eq!(store.get_ref().len().await.unwrap(), 0);
        let mut dead = record(-1);
        store.create(&mut dead).await.unwrap();
        assert!(store.load(&dead.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn store_errors_keep_their_cause_in_the_text() {
        let err = backend_error(&session_core::Error::backend(
            "redis",
            std::io::Error::other("connection refused"),
        ));
        let text = err.to_string();
        assert!(
            text.contains("redis") && text.contains("connection refused"),
            "{text}"
        );
    }
}

//! The "store" of a cookie-only request: the one session its cookie
//! carried, kept for the length of the request.
//!
//! The core session handle runs unchanged on it (versioned update, touch
//! after `touch_after`, destroy, cycle ID, absolute lifetime), and what it
//! holds after the commit is sealed into the response's cookie. Liveness is
//! decided by this process's clock against the expiry sealed in the
//! cookie, exactly as an in-process store decides it.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use session_core::{
    Cursor, Error, Page, Record, Result, SessionKey, SessionStore, Timestamp, UpdateOutcome,
    async_trait,
};

use crate::sealed::check_size;

/// One request's session, before and after its commit.
#[derive(Debug)]
pub(crate) struct Jar {
    /// The cookie (or header) name, counted in the size limit.
    name: Arc<str>,
    /// The most a `name=value` may take.
    limit: usize,
    entry: Mutex<Option<(SessionKey, Record)>>,
}

impl Jar {
    /// A jar holding what the request presented (if anything).
    pub(crate) fn new(name: Arc<str>, limit: usize, entry: Option<(SessionKey, Record)>) -> Self {
        Self {
            name,
            limit,
            entry: Mutex::new(entry),
        }
    }

    /// The live record under `key`, if that is what the jar holds.
    pub(crate) fn get(&self, key: &SessionKey) -> Option<Record> {
        let entry = self.lock();
        match &*entry {
            Some((k, record)) if k == key && record.is_live() => Some(record.clone()),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(SessionKey, Record)>> {
        // Nothing here panics while holding the lock; a poisoned lock still
        // holds a whole entry.
        self.entry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Put `record` under `key` (or remove it if it is not live), after
    /// checking that it fits in a cookie.
    fn put(
        &self,
        entry: &mut Option<(SessionKey, Record)>,
        key: &SessionKey,
        record: Record,
    ) -> Result<()> {
        if record.is_live() {
            check_size(
                &self.name,
                &record.data,
                record.principal.as_ref(),
                self.limit,
            )?;
            *entry = Some((*key, record));
        } else if entry.as_ref().is_some_and(|(k, _)| k == key) {
            *entry = None;
        }
        Ok(())
    }
}

/// The live record of `entry` under `key`.
fn live<'a>(
    entry: &'a mut Option<(SessionKey, Record)>,
    key: &SessionKey,
) -> Option<&'a mut Record> {
    match entry {
        Some((k, record)) if k == key && record.is_live() => Some(record),
        _ => None,
    }
}

#[async_trait]
impl SessionStore for Jar {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        Ok(self.get(key))
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        let mut entry = self.lock();
        if live(&mut entry, key).is_some() {
            return Ok(false);
        }
        self.put(&mut entry, key, record.clone())?;
        Ok(true)
    }

    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<UpdateOutcome> {
        let mut entry = self.lock();
        match live(&mut entry, key) {
            None => Ok(UpdateOutcome::Missing),
            Some(stored) if stored.version != expected_version => Ok(UpdateOutcome::Conflict),
            Some(_) => {
                let next = record
                    .clone()
                    .with_version(expected_version.wrapping_add(1));
                self.put(&mut entry, key, next)?;
                Ok(UpdateOutcome::Updated)
            }
        }
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        let mut entry = self.lock();
        self.put(&mut entry, key, record.clone())
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let mut entry = self.lock();
        let Some(record) = live(&mut entry, key) else {
            return Ok(false);
        };
        record.expires_at = expires_at;
        if !record.is_live() {
            *entry = None;
        }
        Ok(true)
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        let mut entry = self.lock();
        if entry.as_ref().is_some_and(|(k, _)| k == key) {
            *entry = None;
        }
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        *self.lock() = None;
        Ok(())
    }

    async fn len(&self) -> Result<u64> {
        Ok(u64::from(
            self.lock().as_ref().is_some_and(|(_, r)| r.is_live()),
        ))
    }

    async fn list(&self, cursor: Option<&Cursor>, _limit: NonZeroUsize) -> Result<Page> {
        // At most one session: always one page, which never hands out a
        // cursor.
        if cursor.is_some() {
            return Err(Error::invalid_cursor("cookie", "a jar lists in one page"));
        }
        Ok(Page {
            records: self
                .lock()
                .iter()
                .filter(|(_, r)| r.is_live())
                .cloned()
                .collect(),
            next: None,
        })
    }

    async fn delete_expired(&self) -> Result<u64> {
        let mut entry = self.lock();
        if entry.as_ref().is_some_and(|(_, r)| !r.is_live()) {
            *entry = None;
            return Ok(1);
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use session_core::{Data, Error, SessionId};

    use super::*;

    fn jar(limit: usize) -> Jar {
        Jar::new("sid".into(), limit, None)
    }

    fn record(ttl_ms: u64) -> Record {
        let mut data = Data::new();
        data.insert("n".into(), 1.into());
        Record::new(data, Duration::from_millis(ttl_ms))
    }

    #[tokio::test]
    async fn it_keeps_one_session_with_the_store_rules() {
        let jar = jar(4096);
        let key = SessionId::generate().unwrap().key();
        assert!(jar.create(&key, &record(60_000)).await.unwrap());
        assert!(
            !jar.create(&key, &record(60_000)).await.unwrap(),
            "collision"
        );
        assert_eq!(
            jar.update(&key, &record(60_000), 1).await.unwrap(),
            UpdateOutcome::Conflict
        );
        assert_eq!(
            jar.update(&key, &record(60_000), 0).await.unwrap(),
            UpdateOutcome::Updated
        );
        assert_eq!(jar.load(&key).await.unwrap().unwrap().version, 1);
        // cycle_id: the new key is created, then the old one destroyed.
        let new = SessionId::generate().unwrap().key();
        assert!(jar.create(&new, &record(60_000)).await.unwrap());
        jar.destroy(&key).await.unwrap();
        assert!(jar.load(&new).await.unwrap().is_some());
        assert!(jar.load(&key).await.unwrap().is_none());
        assert_eq!(jar.len().await.unwrap(), 1);
        assert!(
            jar.touch(&new, Timestamp::now()).await.unwrap(),
            "expires it"
        );
        assert!(jar.load(&new).await.unwrap().is_none());
        assert!(
            !jar.touch(&new, Timestamp::now() + Duration::from_secs(9))
                .await
                .unwrap()
        );
        assert_eq!(
            jar.update(&new, &record(60_000), 1).await.unwrap(),
            UpdateOutcome::Missing
        );
    }

    #[tokio::test]
    async fn an_expired_session_is_not_there() {
        let key = SessionId::generate().unwrap().key();
        let mut expired = record(60_000);
        expired.expires_at = Timestamp::now();
        let jar = Jar::new("sid".into(), 4096, Some((key, expired)));
        assert!(jar.load(&key).await.unwrap().is_none());
        assert!(
            !jar.touch(&key, Timestamp::now() + Duration::from_secs(9))
                .await
                .unwrap()
        );
        assert_eq!(jar.delete_expired().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_session_too_large_for_a_cookie_is_refused_and_nothing_changes() {
        let jar = jar(300);
        let key = SessionId::generate().unwrap().key();
        assert!(jar.create(&key, &record(60_000)).await.unwrap());
        let mut big = record(60_000);
        big.data.insert("pad".into(), "x".repeat(300).into());
        let err = jar.update(&key, &big, 0).await.unwrap_err();
        assert!(matches!(err, Error::Encode { .. }), "{err:?}");
        let report = session_core::report(&err);
        assert!(report.contains("over the limit of 300 bytes"), "{report}");
        assert_eq!(jar.load(&key).await.unwrap().unwrap().version, 0);
    }
}

use session_core::{
    Cursor, Page, Record, Result, SessionKey, SessionStore, Timestamp, UpdateOutcome, async_trait,
};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct TinyStore(Mutex<HashMap<SessionKey, Record>>);

impl TinyStore {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Record>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl SessionStore for TinyStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        Ok(self.map().get(key).filter(|r| r.is_live()).cloned())
    }
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        let mut map = self.map();
        if map.get(key).is_some_and(Record::is_live) {
            return Ok(false);
        }
        map.insert(*key, record.clone());
        Ok(true)
    }
    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        let mut map = self.map();
        match map.get_mut(key).filter(|r| r.is_live()) {
            None => Ok(UpdateOutcome::Missing),
            Some(r) if r.version != expected => Ok(UpdateOutcome::Conflict),
            Some(r) => {
                *r = record.clone().with_version(expected.wrapping_add(1));
                Ok(UpdateOutcome::Updated)
            }
        }
    }
    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        let mut map = self.map();
        if record.is_live() {
            map.insert(*key, record.clone());
        } else {
            map.remove(key);
        }
        Ok(())
    }
    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        match self.map().get_mut(key).filter(|r| r.is_live()) {
            Some(r) => {
                r.expires_at = expires_at;
                Ok(true)
            }
            None => Ok(false),
        }
    }
    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        self.map().remove(key);
        Ok(())
    }
    async fn clear(&self) -> Result<()> {
        self.map().clear();
        Ok(())
    }
    async fn len(&self) -> Result<u64> {
        Ok(self.map().values().filter(|r| r.is_live()).count() as u64)
    }
    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        // Keyset pagination: the `limit` smallest keys after the cursor's.
        let after = cursor.map(|c| c.key_after("tiny")).transpose()?;
        let map = self.map();
        let mut next: Vec<_> = map
            .iter()
            .filter(|(k, _)| after.is_none_or(|a| **k > a))
            .map(|(k, r)| (*k, r.clone()))
            .collect();
        next.sort_unstable_by_key(|(k, _)| *k);
        next.truncate(limit.get());
        Page::from_key_ordered(next, limit, |_, r| Ok(r.is_live().then_some(r)))
    }
    async fn delete_expired(&self) -> Result<u64> {
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, r| r.is_live());
        Ok((before - map.len()) as u64)
    }
}

/// The index as a scan: fine for a few sessions.
#[async_trait]
impl session_core::PrincipalIndex for TinyStore {
    async fn sessions_of(
        &self,
        principal: &session_core::Principal,
    ) -> Result<Vec<(SessionKey, Record)>> {
        Ok(self
            .map()
            .iter()
            .filter(|(_, r)| r.is_live() && r.principal.as_ref() == Some(principal))
            .map(|(k, r)| (*k, r.clone()))
            .collect())
    }
    async fn destroy_all_of(
        &self,
        principal: &session_core::Principal,
        except: Option<&SessionKey>,
    ) -> Result<u64> {
        let mut map = self.map();
        let before = map.len();
        map.retain(|k, r| {
            !(r.is_live() && r.principal.as_ref() == Some(principal) && Some(k) != except)
        });
        Ok((before - map.len()) as u64)
    }
    async fn index_len(&self, principal: &session_core::Principal) -> Result<u64> {
        let map = self.map();
        Ok(map
            .values()
            .filter(|r| r.principal.as_ref() == Some(principal))
            .count() as u64)
    }
}

//! The memory engine's limit: a plain sharded `HashMap` of bytes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use session_core::{SessionKey, Timestamp};

use crate::Result;
use crate::payload::Payload;
use crate::target::Target;

/// Number of shards (a power of two).
const SHARDS: usize = 64;

/// Keys are SHA-256 digests, already uniformly random: hashing them again is
/// wasted work, so the baseline folds their bytes instead (the fastest a plain
/// map can be).
#[derive(Default, Clone, Copy, Debug)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(word);
    }
}

type Map = HashMap<[u8; 32], (Arc<[u8]>, i64), BuildHasherDefault<FoldHasher>>;

/// `SHARDS` × `parking_lot::Mutex<HashMap<[u8; 32], (bytes, expires_at ms)>>`,
/// doing the same operations as the memory store on the canonical record
/// bytes, with the same liveness rule (`now < expires_at`). The bytes are
/// shared (`Arc<[u8]>`), as the store shares its data text: a load or a
/// write copies a pointer, on both sides.
#[derive(Debug)]
pub struct RawMemory {
    shards: Vec<Mutex<Map>>,
}

impl Default for RawMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl RawMemory {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Map::default())).collect(),
        }
    }

    fn shard(&self, key: &[u8; 32]) -> &Mutex<Map> {
        // Byte 31 is independent of the first 8 bytes that pick the bucket.
        &self.shards[usize::from(key[31]) % SHARDS]
    }
}

#[async_trait]
impl Target for RawMemory {
    async fn load(&self, key: &SessionKey) -> Result<bool> {
        let now = Timestamp::now().as_millis();
        let k = key.as_bytes();
        let value = self
            .shard(k)
            .lock()
            .get(k)
            .filter(|(_, exp)| now < *exp)
            .map(|(bytes, _)| bytes.clone());
        Ok(value.is_some())
    }

    async fn write(&self, key: &SessionKey, payload: &Payload, _expected: u64) -> Result<bool> {
        self.put(key, payload).await?;
        Ok(true)
    }

    async fn create(&self, key: &SessionKey, payload: &Payload) -> Result<bool> {
        let now = Timestamp::now().as_millis();
        let k = key.as_bytes();
        let value = (payload.record_bytes.clone(), payload.expires_at.as_millis());
        let mut shard = self.shard(k).lock();
        match shard.get_mut(k) {
            Some((_, exp)) if now < *exp => Ok(false),
            Some(slot) => {
                *slot = value;
                Ok(true)
            }
            None => {
                shard.insert(*k, value);
                Ok(true)
            }
        }
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let now = Timestamp::now().as_millis();
        let k = key.as_bytes();
        let mut shard = self.shard(k).lock();
        match shard.get_mut(k) {
            Some((_, exp)) if now < *exp => {
                *exp = expires_at.as_millis();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        let k = key.as_bytes();
        let removed = self.shard(k).lock().remove(k);
        drop(removed);
        Ok(())
    }

    async fn put(&self, key: &SessionKey, payload: &Payload) -> Result<()> {
        let k = key.as_bytes();
        let value = (payload.record_bytes.clone(), payload.expires_at.as_millis());
        let old = self.shard(k).lock().insert(*k, value);
        drop(old);
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        for shard in &self.shards {
            shard.lock().clear();
        }
        Ok(())
    }
}

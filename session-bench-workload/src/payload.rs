//! The standard data: the ~200-byte, 8-field session payload, keys, and a
//! small fast random number generator for picking keys.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use session_core::{Data, Record, SessionKey, Timestamp};

use crate::Result;

/// Expiry of every benchmark session: 30 minutes ahead.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 60);

/// Seed of the preloaded keys: the same keys for a store, its raw engine
/// and its peers.
pub const KEY_SEED: u64 = 0x5e55_1011;

/// How many different payloads the writing phases rotate through, so that a
/// save really writes new data.
pub const VARIANTS: usize = 16;

/// The standard session data for variant `n`: a JSON object of 8 fields
/// (strings, numbers, a boolean, a nested object, an array) that serialises
/// to about 200 bytes.
#[must_use]
pub fn session_data(n: u64) -> Data {
    let value = json!({
        "user_id": 100_000 + n,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "roles": ["admin", "editor"],
        "cart": {"items": n % 7, "total": 19.99 + (n % 5) as f64, "currency": "EUR"},
        "csrf": format!("tok{:019}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        "authenticated": n.is_multiple_of(2),
        "last_seen": 1_700_000_000_000_u64 + n,
    });
    match value {
        serde_json::Value::Object(map) => map.into(),
        // `json!` of an object literal is always an object.
        _ => Data::new(),
    }
}

/// One payload, in every form a target writes it: the record a store
/// receives, the canonical record bytes and the data-only JSON text that raw
/// engines write instead (encoded once, outside the timed section).
#[derive(Clone, Debug)]
pub struct Payload {
    /// The variant `n` this payload was built from ([`session_data`]`(n)`),
    /// so that a target keeping the data in another form (the peers'
    /// tower-sessions records) can build that form once per variant.
    pub variant: u64,
    /// What a store receives (version 0).
    pub record: Record,
    /// `record.encode()`: the bytes a raw byte-oriented engine stores,
    /// shared as the memory store shares its data text.
    pub record_bytes: Arc<[u8]>,
    /// `Record::encode_data(&record.data)`: the bytes of a data column.
    pub data_json: String,
    /// `record.expires_at`, for raw engines that keep it beside the bytes.
    pub expires_at: Timestamp,
    /// `record.created_at`.
    pub created_at: Timestamp,
}

impl Payload {
    /// Payload variant `n`, created now and expiring at `expires_at`.
    ///
    /// # Errors
    ///
    /// If the record cannot be encoded (it always can).
    pub fn new(n: u64, expires_at: Timestamp) -> Result<Self> {
        let created_at = Timestamp::now();
        let record = Record::with_times(session_data(n), created_at, expires_at);
        Ok(Self {
            variant: n,
            record_bytes: record.encode()?.into(),
            data_json: Record::encode_data(&record.data)?.to_string(),
            expires_at,
            created_at,
            record,
        })
    }
}

/// The payload variants one phase writes, all expiring [`SESSION_TTL`] from
/// when they were built.
#[derive(Clone, Debug)]
pub struct Payloads {
    variants: Vec<Payload>,
}

impl Payloads {
    /// [`VARIANTS`] payloads expiring `ttl` from now.
    ///
    /// # Errors
    ///
    /// If a record cannot be encoded (it always can).
    pub fn new(ttl: Duration) -> Result<Self> {
        let expires_at = Timestamp::now() + ttl;
        let variants = (0..VARIANTS as u64)
            .map(|n| Payload::new(n, expires_at))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { variants })
    }

    /// Variant `n` (modulo the number of variants).
    #[must_use]
    pub fn get(&self, n: usize) -> &Payload {
        &self.variants[n % self.variants.len()]
    }
}

/// SplitMix64: a tiny, fast, well-distributed generator. Benchmark key
/// choice needs speed and spread, not secrecy.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`; 0 if `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        // Lemire's multiply-shift: no modulo bias worth measuring here.
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A fresh random key (as if hashed from a fresh session ID).
    pub fn key(&mut self) -> SessionKey {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        SessionKey::from_bytes(bytes)
    }
}

/// `n` distinct random keys from `seed`.
#[must_use]
pub fn keys(n: usize, seed: u64) -> Vec<SessionKey> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.key()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_about_200_bytes_and_8_fields() {
        for n in [0, 1, 7, 15, 1_000_000] {
            let data = session_data(n);
            assert_eq!(data.len(), 8);
            let len = serde_json::to_vec(&data).unwrap().len();
            assert!((180..=230).contains(&len), "payload {n} is {len} bytes");
        }
        let data = session_data(3);
        assert!(data["cart"].is_object());
        assert!(data["roles"].is_array());
        assert!(data["user_id"].is_number());
        assert!(data["name"].is_string());
    }

    #[test]
    fn payload_forms_agree() {
        let p = Payload::new(5, Timestamp::now() + SESSION_TTL).unwrap();
        let key = Rng::new(1).key();
        assert_eq!(Record::decode(&key, &p.record_bytes).unwrap(), p.record);
        assert_eq!(
            Record::decode_data(&key, p.data_json.as_bytes()).unwrap(),
            p.record.data
        );
    }

    #[test]
    fn rng_stays_in_range_and_keys_differ() {
        let mut rng = Rng::new(42);
        for _ in 0..10_000 {
            assert!(rng.below(10) < 10);
        }
        assert_eq!(rng.below(0), 0);
        let ks = keys(1000, 9);
        let set: std::collections::HashSet<_> = ks.iter().collect();
        assert_eq!(set.len(), 1000);
    }
}

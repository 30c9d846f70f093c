//! The key type of the shard maps and a cheap keyed hasher for it.
//!
//! Keys are SHA-256 digests of 192-bit CSPRNG session IDs, so their bytes are
//! already uniformly random; SipHash (std's default) would spend ~20 ns
//! mixing bits that need no mixing. Instead every 8-byte word of the key goes
//! through one folded 64×64→128-bit multiply with a per-store random seed
//! (the construction of `foldhash`/`ahash`'s fallback), a few nanoseconds in
//! all.
//!
//! Why this is safe: to degrade a hash table an attacker must make the store
//! *hold* many keys that collide. Stored keys are hashes of IDs the server
//! generated; a client only picks which key is *looked up*, and a lookup
//! probes one random group. Even a caller that stores keys of its own
//! choosing (`SessionKey::from_bytes`) cannot aim them at one bucket or one
//! shard without the store's seeds, which come from std's `RandomState` and
//! differ per store.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};

/// Bytes of a session key.
pub(crate) const KEY_BYTES: usize = 32;

/// Multiplier of the folded multiply: the first 64 fractional bits of π.
const PI: u64 = 0x243f_6a88_85a3_08d3;
/// A second odd constant (more digits of π), for the shard route.
const PI2: u64 = 0x1319_8a2e_0370_7345;

/// The 32 raw bytes of a session key, as stored in the maps and the index.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct Key(pub(crate) [u8; KEY_BYTES]);

impl Key {
    /// The largest key, to build inclusive upper bounds in the index.
    pub(crate) const MAX: Self = Self([u8::MAX; KEY_BYTES]);

    /// The `i`-th little-endian 64-bit word of the key (`i < 4`).
    fn word(&self, i: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.0[8 * i..8 * i + 8]);
        u64::from_le_bytes(w)
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for i in 0..KEY_BYTES / 8 {
            state.write_u64(self.word(i));
        }
    }
}

/// The 128-bit product of `a` and `b`, folded to 64 bits.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    // Truncations intended: low half xor high half.
    (full as u64) ^ ((full >> 64) as u64)
}

/// Per-store random seeds: one for the shard maps, one for shard routing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seeds {
    map: u64,
    route: u64,
}

impl Seeds {
    /// Fresh seeds from std's per-process random keys.
    pub(crate) fn random() -> Self {
        let state = RandomState::new();
        Self {
            map: state.hash_one(0x6d61_7073_u64),
            route: state.hash_one(0x726f_7574_u64),
        }
    }

    /// The hasher builder of the shard maps.
    pub(crate) fn map_hasher(self) -> KeyHashBuilder {
        KeyHashBuilder { seed: self.map }
    }

    /// Which of `mask + 1` shards (a power of two) holds `key`.
    pub(crate) fn route(self, key: &Key, mask: usize) -> usize {
        let h = folded_multiply(key.word(0) ^ self.route, PI2);
        // Truncation intended: only the low bits select the shard.
        (h as usize) & mask
    }
}

/// Builds [`KeyHasher`]s with one store's seed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHashBuilder {
    seed: u64,
}

impl BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { state: self.seed }
    }
}

/// Folds each 64-bit word written into the state with one multiply.
#[derive(Debug)]
pub(crate) struct KeyHasher {
    state: u64,
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `Key` is hashed, through `write_u64`; this handles any other
        // input correctly, if less quickly.
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.state = folded_multiply(self.state ^ word, PI);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

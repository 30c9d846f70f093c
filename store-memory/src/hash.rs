//! The key type of the shard maps, and the store's seeded hashers.
//!
//! Keys are SHA-256 digests of 192-bit CSPRNG session IDs, so their bytes are
//! already uniform; SipHash (std's default) would spend ~20 ns mixing bits
//! that need no mixing. The maps use `foldhash` (hashbrown's own default),
//! two folded multiplies per key here.
//!
//! Why this is safe: to degrade a hash table an attacker must make the store
//! *hold* many colliding keys. Stored keys are hashes of IDs the server
//! generated; a client only picks which key is *looked up*. Even a caller
//! that stores keys of its own choosing (`SessionKey::from_bytes`) cannot aim
//! them at one bucket or one shard without the store's seeds, which are
//! random per store.

use std::hash::{BuildHasher, Hash, Hasher};

use foldhash::fast::RandomState;

/// Bytes of a session key.
pub(crate) const KEY_BYTES: usize = 32;

/// The 32 raw bytes of a session key, as stored in the maps and the index.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct Key(pub(crate) [u8; KEY_BYTES]);

impl Hash for Key {
    /// Two 128-bit words: one folded multiply each in `foldhash`, no length
    /// prefix (all keys have the same length).
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (lo, hi) = self.0.split_at(KEY_BYTES / 2);
        for half in [lo, hi] {
            let mut word = [0u8; KEY_BYTES / 2];
            word.copy_from_slice(half);
            state.write_u128(u128::from_le_bytes(word));
        }
    }
}

/// The hasher builder of the shard maps.
pub(crate) type KeyHashBuilder = RandomState;

/// Per-store random hashers: one for the shard maps, one for shard routing.
///
/// Routing has its own seed because reusing the map's hash would correlate
/// a shard's keys: hashbrown takes bucket positions from the low bits and
/// its probe tags from the top 7, so either end would be constant within a
/// shard.
#[derive(Clone, Debug, Default)]
pub(crate) struct Seeds {
    map: RandomState,
    route: RandomState,
}

impl Seeds {
    /// Fresh random seeds.
    pub(crate) fn random() -> Self {
        Self::default()
    }

    /// The hasher builder of the shard maps.
    pub(crate) fn map_hasher(&self) -> KeyHashBuilder {
        self.map.clone()
    }

    /// Which of `mask + 1` shards (a power of two) holds `key`.
    pub(crate) fn route(&self, key: &Key, mask: usize) -> usize {
        // Truncation intended: only the low bits select the shard.
        (self.route.hash_one(key) as usize) & mask
    }
}

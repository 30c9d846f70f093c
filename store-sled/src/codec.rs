//! The byte layout of the two trees.
//!
//! Records tree: key = the [`SessionKey`]'s 32 raw bytes; value =
//!
//! | bytes | content |
//! |---|---|
//! | 0 | format tag, `2` (`1` was the layout before principals) |
//! | 1..9 | `expires_at`, milliseconds, `i64` big-endian |
//! | 9..17 | `created_at`, milliseconds, `i64` big-endian |
//! | 17..25 | `version`, `u64` big-endian |
//! | 25 | principal length, then the principal |
//! | .. | the data, as [`Record::encode_data`](session_core::Record::encode_data) JSON text |
//!
//! Bytes 1.. are [`session_core::header`]'s layout, which the file store
//! shares.
//!
//! Expiry index tree: key = [`sortable`]`(expires_at)` (8 bytes) ‖ the 32
//! key bytes; value empty. Keys sort by expiry, so the expired entries are
//! exactly a prefix range of the tree.

pub(crate) use session_core::header::Header;
use session_core::header::HeaderCodec;
use session_core::{Error, Result, SessionKey};

/// The layout of a records-tree value: the format tag this crate writes
/// (2), then the header.
pub(crate) const VALUE: HeaderCodec = HeaderCodec::new(&[2], "stored value");
/// Length of an expiry index key.
pub(crate) const INDEX_KEY: usize = 8 + 32;

/// An `i64` as 8 bytes whose unsigned big-endian order is the numeric
/// order: flip the sign bit.
pub(crate) fn sortable(millis: i64) -> [u8; 8] {
    (u64::from_ne_bytes(millis.to_ne_bytes()) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`sortable`].
#[cfg(test)]
pub(crate) fn from_sortable(bytes: [u8; 8]) -> i64 {
    i64::from_ne_bytes((u64::from_be_bytes(bytes) ^ (1 << 63)).to_ne_bytes())
}

/// The expiry index key of `key` expiring at `expires_at`.
pub(crate) fn index_key(expires_at: i64, key: &SessionKey) -> [u8; INDEX_KEY] {
    let mut out = [0u8; INDEX_KEY];
    out[..8].copy_from_slice(&sortable(expires_at));
    out[8..].copy_from_slice(key.as_bytes());
    out
}

/// The session key inside an index key or a records-tree key, if well formed.
pub(crate) fn session_key(bytes: &[u8]) -> Result<SessionKey> {
    match <[u8; 32]>::try_from(bytes) {
        Ok(raw) => Ok(SessionKey::from_bytes(raw)),
        Err(_) => Err(Error::InvalidKey {
            key: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            reason: "stored key is not 32 bytes",
        }),
    }
}

#[cfg(test)]
mod tests {
    use session_core::{Record, Timestamp};

    use super::*;

    #[test]
    fn sortable_preserves_order() {
        let values = [i64::MIN, -1_000, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for pair in values.windows(2) {
            assert!(sortable(pair[0]) < sortable(pair[1]), "{pair:?}");
        }
        for v in values {
            assert_eq!(from_sortable(sortable(v)), v);
        }
    }

    /// The bytes of a stored value, pinned: databases written by earlier
    /// versions of this crate must still read.
    #[test]
    fn the_value_layout_is_pinned_and_garbage_is_a_decode_error() {
        let key = SessionKey::from_bytes([7; 32]);
        let record = Record::with_times(
            session_core::Data::new(),
            Timestamp::from_millis(-5),
            Timestamp::from_millis(i64::MAX),
        )
        .with_version(u64::MAX);
        let bytes = VALUE.encode(Header::of(&record), &record).unwrap();
        let mut expected = vec![1, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb]);
        expected.extend_from_slice(&[0xff; 8]);
        expected.extend_from_slice(b"{}");
        assert_eq!(bytes, expected);
        assert_eq!(VALUE.header_len(), 25);
        assert_eq!(VALUE.decode(&key, &bytes).unwrap(), record);
        let moved = VALUE.with_expiry(&bytes, 42);
        assert_eq!(VALUE.read(&key, &moved).unwrap().expires_at, 42);
        for garbage in [&b""[..], b"short", &[9u8; 30]] {
            assert!(matches!(
                VALUE.decode(&key, garbage),
                Err(Error::Decode { .. })
            ));
        }
    }
}

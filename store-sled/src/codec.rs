//! The byte layout of the three trees.
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
//! shares. A value of format `1` (written before principals existed: the
//! data right after byte 25) still reads, as a record without principal;
//! every write stores format `2`.
//!
//! Expiry index tree: key = [`sortable`]`(expires_at)` (8 bytes) ‖ the 32
//! key bytes; value empty. Keys sort by expiry, so the expired entries are
//! exactly a prefix range of the tree.
//!
//! Principals tree: key = the principal's length (1 byte) ‖ its UTF-8
//! bytes ‖ the 32 key bytes; value empty. The length byte makes the
//! entries of one principal exactly the keys starting with
//! [`owner_prefix`], never those of a longer name sharing its start.

pub(crate) use session_core::header::Header;
use session_core::header::HeaderCodec;
use session_core::{Error, Principal, Record, Result, SessionKey};

/// The layout of a records-tree value: the format tag this crate writes
/// (2), then the header.
pub(crate) const VALUE: HeaderCodec = HeaderCodec::new(&[2], "stored value");
/// The layout before principals (format tag 1): the header, then the data.
const LEGACY: HeaderCodec = HeaderCodec::new(&[1], "stored value");
/// Length of an expiry index key.
pub(crate) const INDEX_KEY: usize = 8 + 32;

/// Whether `bytes` are of the layout before principals.
fn is_legacy(bytes: &[u8]) -> bool {
    bytes.first() == Some(&LEGACY.prefix()[0])
}

/// The header of a stored value of either format.
pub(crate) fn read(key: &SessionKey, bytes: &[u8]) -> Result<Header> {
    if is_legacy(bytes) {
        LEGACY.read(key, bytes)
    } else {
        VALUE.read(key, bytes)
    }
}

/// The record of a stored value of either format (format 1 has no
/// principal).
pub(crate) fn decode(key: &SessionKey, bytes: &[u8]) -> Result<Record> {
    if is_legacy(bytes) {
        let header = LEGACY.read(key, bytes)?;
        header.record(key, &bytes[LEGACY.header_len()..])
    } else {
        VALUE.decode(key, bytes)
    }
}

/// The principal's bytes in a stored value, not checked: empty for no
/// principal, a value of format 1, or one too short to hold it. What the
/// writers compare and index, without decoding or allocating (an anonymous
/// session costs one byte compare).
pub(crate) fn owner(bytes: &[u8]) -> &[u8] {
    let at = VALUE.header_len();
    if is_legacy(bytes) {
        return &[];
    }
    match bytes.get(at) {
        Some(&len) => bytes.get(at + 1..at + 1 + usize::from(len)).unwrap_or(&[]),
        None => &[],
    }
}

/// The principals-tree keys of `owner` start with this: its length byte
/// and its bytes. `owner` is at most 255 bytes (a [`Principal`], or what
/// a one-byte length says).
pub(crate) fn owner_prefix(owner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + owner.len() + 32);
    // At most 255: see above; a longer one could not have been stored.
    out.push(u8::try_from(owner.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(owner);
    out
}

/// The principals-tree key of `key` under `owner`.
pub(crate) fn owner_key(owner: &[u8], key: &SessionKey) -> Vec<u8> {
    let mut out = owner_prefix(owner);
    out.extend_from_slice(key.as_bytes());
    out
}

/// The principals-tree prefix of `principal`.
pub(crate) fn principal_prefix(principal: &Principal) -> Vec<u8> {
    owner_prefix(principal.as_str().as_bytes())
}

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
        let mut expected = vec![2, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb]);
        expected.extend_from_slice(&[0xff; 8]);
        expected.push(0);
        expected.extend_from_slice(b"{}");
        assert_eq!(bytes, expected);
        assert_eq!(VALUE.header_len(), 25);
        assert_eq!(decode(&key, &bytes).unwrap(), record);
        assert_eq!(owner(&bytes), b"");
        let moved = VALUE.with_expiry(&bytes, 42);
        assert_eq!(read(&key, &moved).unwrap().expires_at, 42);

        let owned = record.with_principal(Some(Principal::new("ada").unwrap()));
        let bytes = VALUE.encode(Header::of(&owned), &owned).unwrap();
        assert_eq!(bytes[25..29], *b"\x03ada");
        assert_eq!(bytes[29..], *b"{}");
        assert_eq!(decode(&key, &bytes).unwrap(), owned);
        assert_eq!(owner(&bytes), b"ada");
        assert_eq!(owner_key(owner(&bytes), &key)[..4], *b"\x03ada");
        assert_eq!(owner_key(owner(&bytes), &key)[4..], [7; 32]);
        let moved = VALUE.with_expiry(&bytes, 42);
        assert_eq!(owner(&moved), b"ada", "touch keeps the principal");

        for garbage in [&b""[..], b"short", &[9u8; 30], &[2u8; 25]] {
            assert!(matches!(decode(&key, garbage), Err(Error::Decode { .. })));
        }
    }

    /// A value of the layout before principals (format 1: the data right
    /// after the header) reads as a record without principal.
    #[test]
    fn a_value_of_format_1_reads_without_principal() {
        let key = SessionKey::from_bytes([7; 32]);
        let mut bytes = vec![1];
        bytes.extend_from_slice(&1_000_i64.to_be_bytes());
        bytes.extend_from_slice(&(-5_i64).to_be_bytes());
        bytes.extend_from_slice(&3_u64.to_be_bytes());
        bytes.extend_from_slice(b"{\"a\":1}");
        let record = decode(&key, &bytes).unwrap();
        assert_eq!(record.expires_at, Timestamp::from_millis(1_000));
        assert_eq!(record.created_at, Timestamp::from_millis(-5));
        assert_eq!(record.version, 3);
        assert_eq!(record.data["a"], 1);
        assert_eq!(record.principal, None);
        assert_eq!(owner(&bytes), b"");
        assert_eq!(read(&key, &bytes).unwrap().version, 3);
        assert!(matches!(
            decode(&key, &bytes[..20]),
            Err(Error::Decode { .. })
        ));
    }
}

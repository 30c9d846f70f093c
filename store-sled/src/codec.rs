//! The byte layout of the two trees.
//!
//! Records tree: key = the [`SessionKey`]'s 32 raw bytes; value =
//!
//! | bytes | content |
//! |---|---|
//! | 0 | format tag, [`FORMAT`] |
//! | 1..9 | `expires_at`, milliseconds, `i64` big-endian |
//! | 9..17 | `created_at`, milliseconds, `i64` big-endian |
//! | 17..25 | `version`, `u64` big-endian |
//! | 25.. | the data, as [`Record::encode_data`] JSON text |
//!
//! Expiry index tree: key = [`sortable`]`(expires_at)` (8 bytes) ‖ the 32
//! key bytes; value empty. Keys sort by expiry, so the expired entries are
//! exactly a prefix range of the tree.

use session_core::{Error, Record, Result, SessionKey, Timestamp};

/// The value format written by this version of the crate.
pub(crate) const FORMAT: u8 = 1;
/// Length of the fixed header before the data.
pub(crate) const HEADER: usize = 25;
/// Length of an expiry index key.
pub(crate) const INDEX_KEY: usize = 8 + 32;

/// The fixed-size part of a stored record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) expires_at: i64,
    pub(crate) created_at: i64,
    pub(crate) version: u64,
}

impl Header {
    pub(crate) fn of(record: &Record) -> Self {
        Self {
            expires_at: record.expires_at.as_millis(),
            created_at: record.created_at.as_millis(),
            version: record.version,
        }
    }

    /// Read the header of the value stored under `key`.
    pub(crate) fn read(key: &SessionKey, value: &[u8]) -> Result<Self> {
        let Some(head) = value.get(..HEADER) else {
            return Err(Error::decode(
                key,
                "stored value is shorter than its 25-byte header",
            ));
        };
        if head[0] != FORMAT {
            return Err(Error::decode(key, "stored value has an unknown format tag"));
        }
        Ok(Self {
            expires_at: i64::from_be_bytes(array(&head[1..9])),
            created_at: i64::from_be_bytes(array(&head[9..17])),
            version: u64::from_be_bytes(array(&head[17..25])),
        })
    }

    /// Whether the record is live at `now` (`now < expires_at`).
    pub(crate) fn is_live_at(self, now: i64) -> bool {
        now < self.expires_at
    }

    fn write(self, out: &mut [u8]) {
        out[0] = FORMAT;
        out[1..9].copy_from_slice(&self.expires_at.to_be_bytes());
        out[9..17].copy_from_slice(&self.created_at.to_be_bytes());
        out[17..25].copy_from_slice(&self.version.to_be_bytes());
    }
}

/// Copy an 8-byte slice into an array. Callers pass slices of exactly 8
/// bytes cut from a checked header, so the fallback never happens.
fn array(bytes: &[u8]) -> [u8; 8] {
    <[u8; 8]>::try_from(bytes).unwrap_or_default()
}

/// Encode a record's value with `header` (which may differ from the
/// record's own, e.g. a bumped version).
pub(crate) fn encode(header: Header, record: &Record) -> Result<Vec<u8>> {
    let data = Record::encode_data(&record.data)?;
    let mut out = vec![0u8; HEADER + data.len()];
    header.write(&mut out);
    out[HEADER..].copy_from_slice(data.as_bytes());
    Ok(out)
}

/// The same value with another `expires_at`: what `touch` writes. The data
/// bytes are copied as they are, never re-encoded.
pub(crate) fn with_expiry(value: &[u8], expires_at: i64) -> Vec<u8> {
    let mut out = value.to_vec();
    if let Some(slot) = out.get_mut(1..9) {
        slot.copy_from_slice(&expires_at.to_be_bytes());
    }
    out
}

/// Decode a whole stored value.
pub(crate) fn decode(key: &SessionKey, value: &[u8]) -> Result<Record> {
    let header = Header::read(key, value)?;
    let data = Record::decode_data(key, &value[HEADER..])?;
    Ok(Record::with_times(
        data,
        Timestamp::from_millis(header.created_at),
        Timestamp::from_millis(header.expires_at),
    )
    .with_version(header.version))
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

    #[test]
    fn header_round_trips_and_rejects_garbage() {
        let key = SessionKey::from_bytes([7; 32]);
        let record = Record::with_times(
            session_core::Data::new(),
            Timestamp::from_millis(-5),
            Timestamp::from_millis(i64::MAX),
        )
        .with_version(u64::MAX);
        let bytes = encode(Header::of(&record), &record).unwrap();
        assert_eq!(decode(&key, &bytes).unwrap(), record);
        let moved = with_expiry(&bytes, 42);
        assert_eq!(Header::read(&key, &moved).unwrap().expires_at, 42);
        for garbage in [&b""[..], b"short", &[9u8; 30]] {
            assert!(matches!(decode(&key, garbage), Err(Error::Decode { .. })));
        }
    }
}

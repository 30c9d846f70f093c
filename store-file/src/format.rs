//! The bytes of a session file.
//!
//! | bytes | content |
//! |---|---|
//! | 0..4 | magic, `b"sesf"` ([`MAGIC`]) |
//! | 4 | format version, [`FORMAT`] |
//! | 5..13 | `expires_at`, milliseconds since the Unix epoch, `i64` big-endian |
//! | 13..21 | `created_at`, milliseconds, `i64` big-endian |
//! | 21..29 | `version`, `u64` big-endian |
//! | 29.. | the data, as [`Record::encode_data`] JSON text |
//!
//! The times and version sit in a fixed header so that `delete_expired`,
//! `len` and the writers' checks read 29 bytes, not the whole file, and
//! `touch` patches the expiry without decoding the data.

use session_core::{Error, Record, Result, SessionKey, Timestamp};

/// The first four bytes of every session file.
pub(crate) const MAGIC: &[u8; 4] = b"sesf";
/// The file format written by this version of the crate.
pub(crate) const FORMAT: u8 = 1;
/// Length of the fixed header before the data.
pub(crate) const HEADER: usize = 29;

/// The fixed-size part of a session file.
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

    /// Read the header of the file of `key` from its first bytes (at least
    /// [`HEADER`] of them, unless the file is shorter).
    pub(crate) fn read(key: &SessionKey, bytes: &[u8]) -> Result<Self> {
        let Some(head) = bytes.get(..HEADER) else {
            return Err(Error::decode(
                key,
                format!(
                    "session file is {} bytes, shorter than its {HEADER}-byte header (truncated)",
                    bytes.len()
                ),
            ));
        };
        if &head[..4] != MAGIC {
            return Err(Error::decode(key, "not a session file (bad magic bytes)"));
        }
        if head[4] != FORMAT {
            return Err(Error::decode(
                key,
                format!(
                    "session file format {} is not {FORMAT}, the one this version reads",
                    head[4]
                ),
            ));
        }
        Ok(Self {
            expires_at: i64::from_be_bytes(array(&head[5..13])),
            created_at: i64::from_be_bytes(array(&head[13..21])),
            version: u64::from_be_bytes(array(&head[21..29])),
        })
    }

    /// Whether the record is live at `now` (`now < expires_at`).
    pub(crate) fn is_live_at(self, now: i64) -> bool {
        now < self.expires_at
    }

    fn write(self, out: &mut [u8]) {
        out[..4].copy_from_slice(MAGIC);
        out[4] = FORMAT;
        out[5..13].copy_from_slice(&self.expires_at.to_be_bytes());
        out[13..21].copy_from_slice(&self.created_at.to_be_bytes());
        out[21..29].copy_from_slice(&self.version.to_be_bytes());
    }
}

/// Copy an 8-byte slice into an array. Callers pass slices of exactly 8
/// bytes cut from a checked header, so the fallback never happens.
fn array(bytes: &[u8]) -> [u8; 8] {
    <[u8; 8]>::try_from(bytes).unwrap_or_default()
}

/// The file contents of `record` under `header` (which may differ from the
/// record's own, e.g. a bumped version).
pub(crate) fn encode(header: Header, record: &Record) -> Result<Vec<u8>> {
    let data = Record::encode_data(&record.data)?;
    let mut out = vec![0u8; HEADER + data.len()];
    header.write(&mut out);
    out[HEADER..].copy_from_slice(data.as_bytes());
    Ok(out)
}

/// The same file with another `expires_at`: what `touch` writes. The data
/// bytes are copied as they are, never re-encoded.
pub(crate) fn with_expiry(bytes: &[u8], expires_at: i64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if let Some(slot) = out.get_mut(5..13) {
        slot.copy_from_slice(&expires_at.to_be_bytes());
    }
    out
}

/// Decode a whole session file.
pub(crate) fn decode(key: &SessionKey, bytes: &[u8]) -> Result<Record> {
    let header = Header::read(key, bytes)?;
    let data = Record::decode_data(key, &bytes[HEADER..])?;
    Ok(Record::with_times(
        data,
        Timestamp::from_millis(header.created_at),
        Timestamp::from_millis(header.expires_at),
    )
    .with_version(header.version))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn key() -> SessionKey {
        SessionKey::from_bytes([7; 32])
    }

    #[test]
    fn round_trips_and_patches_the_expiry() {
        let mut data = session_core::Data::new();
        data.insert("a".into(), 1.into());
        let record = Record::with_times(
            data,
            Timestamp::from_millis(-5),
            Timestamp::from_millis(1_000),
        )
        .with_version(u64::MAX);
        let bytes = encode(Header::of(&record), &record).unwrap();
        assert_eq!(&bytes[..4], MAGIC);
        assert_eq!(decode(&key(), &bytes).unwrap(), record);
        let touched = decode(&key(), &with_expiry(&bytes, 2_000)).unwrap();
        assert_eq!(touched.expires_at, Timestamp::from_millis(2_000));
        assert_eq!(touched.data, record.data);
    }

    #[test]
    fn short_or_foreign_bytes_are_decode_errors() {
        for bad in [&b""[..], b"sesf", b"xxxx\x01aaaaaaaaaaaaaaaaaaaaaaaa{}"] {
            assert!(matches!(decode(&key(), bad), Err(Error::Decode { .. })));
        }
        let mut future = encode(
            Header {
                expires_at: 1,
                created_at: 0,
                version: 0,
            },
            &Record::with_times(
                session_core::Data::new(),
                Timestamp::UNIX_EPOCH,
                Timestamp::UNIX_EPOCH,
            ),
        )
        .unwrap();
        future[4] = 9;
        assert!(matches!(decode(&key(), &future), Err(Error::Decode { .. })));
    }
}

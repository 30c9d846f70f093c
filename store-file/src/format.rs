//! The bytes of a session file.
//!
//! | bytes | content |
//! |---|---|
//! | 0..4 | magic, `b"sesf"` |
//! | 4 | format version, `2` |
//! | 5..13 | `expires_at`, milliseconds since the Unix epoch, `i64` big-endian |
//! | 13..21 | `created_at`, milliseconds, `i64` big-endian |
//! | 21..29 | `version`, `u64` big-endian |
//! | 29 | the principal's length in bytes, 0 for none |
//! | 30..30+n | the principal, UTF-8 |
//! | 30+n.. | the data, as [`Record::encode_data`](session_core::Record::encode_data) JSON text |
//!
//! The times, version and principal sit in a head of at most 285 bytes so
//! that `delete_expired`, `len` and the writers' checks read that, not the
//! whole file, and `touch` patches the expiry without decoding the data.
//! Bytes 5.. are [`session_core::header`]'s layout, which the sled store
//! shares. Files of format version 1 (written before principals: the data
//! right after byte 29) still read, as sessions without principal.

pub(crate) use session_core::header::Header;
use session_core::header::HeaderCodec;
use session_core::{Principal, Record, Result, SessionKey};

/// The layout of a session file: the magic `sesf`, the format version
/// this crate writes (2), then the header.
pub(crate) const FILE: HeaderCodec = HeaderCodec::new(b"sesf\x02", "session file");
/// The layout before principals (format version 1): the header, then the
/// data.
const LEGACY: HeaderCodec = HeaderCodec::new(b"sesf\x01", "session file");
/// Length of the fixed header, where the principal's length byte is.
pub(crate) const HEADER: usize = FILE.header_len();
/// The most a file's head (header and principal) can take: what the
/// writers and the reaper read.
pub(crate) const HEAD_MAX: usize = HEADER + 1 + Principal::MAX_LEN;

/// What the writers and the reaper read of a file: its header and its
/// principal's bytes (empty for none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) header: Header,
    pub(crate) owner: Vec<u8>,
}

/// Whether `bytes` are of the layout before principals.
fn is_legacy(bytes: &[u8]) -> bool {
    bytes.starts_with(LEGACY.prefix())
}

/// The header of a file's first bytes (at least [`HEADER`] of them, unless
/// the file is shorter), of either format.
pub(crate) fn read(key: &SessionKey, bytes: &[u8]) -> Result<Header> {
    if is_legacy(bytes) {
        LEGACY.read(key, bytes)
    } else {
        FILE.read(key, bytes)
    }
}

/// The head of a file's first bytes (up to [`HEAD_MAX`] of them), of
/// either format.
pub(crate) fn read_head(key: &SessionKey, bytes: &[u8]) -> Result<Head> {
    Ok(Head {
        header: read(key, bytes)?,
        owner: owner(bytes).to_vec(),
    })
}

/// The record of a whole file, of either format (version 1 has no
/// principal).
pub(crate) fn decode(key: &SessionKey, bytes: &[u8]) -> Result<Record> {
    if is_legacy(bytes) {
        let header = LEGACY.read(key, bytes)?;
        header.record(key, &bytes[LEGACY.header_len()..])
    } else {
        FILE.decode(key, bytes)
    }
}

/// How many bytes the head of a file takes, as far as its first `bytes`
/// tell (at most [`HEAD_MAX`]).
pub(crate) fn head_len(bytes: &[u8]) -> usize {
    if is_legacy(bytes) {
        return LEGACY.header_len();
    }
    match bytes.get(HEADER) {
        Some(&len) => HEADER + 1 + usize::from(len),
        None => HEADER + 1,
    }
}

/// The principal's bytes in a file's first bytes, not checked: empty for
/// no principal, a file of format 1, or one too short to hold it. What the
/// writers compare and index, without decoding (an anonymous session costs
/// one byte compare).
pub(crate) fn owner(bytes: &[u8]) -> &[u8] {
    if is_legacy(bytes) {
        return &[];
    }
    match bytes.get(HEADER) {
        Some(&len) => bytes
            .get(HEADER + 1..HEADER + 1 + usize::from(len))
            .unwrap_or(&[]),
        None => &[],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use session_core::{Error, Record, SessionKey, Timestamp};

    use super::*;

    fn key() -> SessionKey {
        SessionKey::from_bytes([7; 32])
    }

    /// The bytes of a session file, pinned: files written by this version
    /// must read in later ones.
    #[test]
    fn the_file_layout_is_pinned() {
        let mut data = session_core::Data::new();
        data.insert("a".into(), 1.into());
        let record = Record::with_times(
            data,
            Timestamp::from_millis(-5),
            Timestamp::from_millis(1_000),
        )
        .with_version(u64::MAX);
        let bytes = FILE.encode(Header::of(&record), &record).unwrap();
        let mut expected = b"sesf\x02".to_vec();
        expected.extend_from_slice(&1_000_i64.to_be_bytes());
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb]);
        expected.extend_from_slice(&[0xff; 8]);
        expected.push(0);
        expected.extend_from_slice(b"{\"a\":1}");
        assert_eq!(bytes, expected);
        assert_eq!(HEADER, 29);
        assert_eq!(HEAD_MAX, 285);
        assert_eq!(decode(&key(), &bytes).unwrap(), record);
        assert_eq!(owner(&bytes), b"");
        let touched = decode(&key(), &FILE.with_expiry(&bytes, 2_000)).unwrap();
        assert_eq!(touched.expires_at, Timestamp::from_millis(2_000));
        assert_eq!(touched.data, record.data);

        let owned = record.with_principal(Some(Principal::new("ada").unwrap()));
        let bytes = FILE.encode(Header::of(&owned), &owned).unwrap();
        assert_eq!(bytes[29..33], *b"\x03ada");
        assert_eq!(bytes[33..], *b"{\"a\":1}");
        assert_eq!(decode(&key(), &bytes).unwrap(), owned);
        let head = read_head(&key(), &bytes[..31]).unwrap();
        assert_eq!(head.owner, b"", "a cut principal is not one");
        let head = read_head(&key(), &FILE.with_expiry(&bytes, 2_000)).unwrap();
        assert_eq!(
            (head.header.expires_at, &head.owner[..]),
            (2_000, &b"ada"[..]),
            "touch keeps the principal"
        );
    }

    /// A file of format 1 (before principals: the data right after the
    /// header) reads as a session without principal.
    #[test]
    fn a_file_of_format_1_reads_without_principal() {
        let mut bytes = b"sesf\x01".to_vec();
        bytes.extend_from_slice(&1_000_i64.to_be_bytes());
        bytes.extend_from_slice(&(-5_i64).to_be_bytes());
        bytes.extend_from_slice(&3_u64.to_be_bytes());
        bytes.extend_from_slice(b"{\"a\":1}");
        let record = decode(&key(), &bytes).unwrap();
        assert_eq!(
            (record.expires_at, record.created_at, record.version),
            (Timestamp::from_millis(1_000), Timestamp::from_millis(-5), 3)
        );
        assert_eq!(record.data["a"], 1);
        assert_eq!(record.principal, None);
        assert_eq!(read_head(&key(), &bytes).unwrap().owner, b"");
        assert!(matches!(
            decode(&key(), &bytes[..20]),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn short_or_foreign_bytes_are_decode_errors() {
        let empty = Record::with_times(
            session_core::Data::new(),
            Timestamp::UNIX_EPOCH,
            Timestamp::UNIX_EPOCH,
        );
        let mut future = FILE.encode(Header::of(&empty), &empty).unwrap();
        future[4] = 9;
        let no_principal_byte = &FILE.encode(Header::of(&empty), &empty).unwrap()[..HEADER];
        for bad in [
            &b""[..],
            b"sesf",
            b"xxxx\x01aaaaaaaaaaaaaaaaaaaaaaaa{}",
            &future,
            no_principal_byte,
        ] {
            assert!(matches!(decode(&key(), bad), Err(Error::Decode { .. })));
        }
    }
}

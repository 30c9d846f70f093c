//! The bytes of a session file.
//!
//! | bytes | content |
//! |---|---|
//! | 0..4 | magic, `b"sesf"` |
//! | 4 | format version, `1` |
//! | 5..13 | `expires_at`, milliseconds since the Unix epoch, `i64` big-endian |
//! | 13..21 | `created_at`, milliseconds, `i64` big-endian |
//! | 21..29 | `version`, `u64` big-endian |
//! | 29.. | the data, as [`Record::encode_data`](session_core::Record::encode_data) JSON text |
//!
//! The times and version sit in a fixed header so that `delete_expired`,
//! `len` and the writers' checks read 29 bytes, not the whole file, and
//! `touch` patches the expiry without decoding the data. Bytes 5.. are
//! [`session_core::header`]'s layout, which the sled store shares.

pub(crate) use session_core::header::Header;
use session_core::header::HeaderCodec;

/// The layout of a session file: the magic `sesf`, the format version
/// this crate writes (1), then the header.
pub(crate) const FILE: HeaderCodec = HeaderCodec::new(b"sesf\x02", "session file");
/// Length of the fixed header before the data.
pub(crate) const HEADER: usize = FILE.header_len();

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use session_core::{Error, Record, SessionKey, Timestamp};

    use super::*;

    fn key() -> SessionKey {
        SessionKey::from_bytes([7; 32])
    }

    /// The bytes of a session file, pinned: files written by earlier
    /// versions of this crate must still read.
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
        let mut expected = b"sesf\x01".to_vec();
        expected.extend_from_slice(&1_000_i64.to_be_bytes());
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb]);
        expected.extend_from_slice(&[0xff; 8]);
        expected.extend_from_slice(b"{\"a\":1}");
        assert_eq!(bytes, expected);
        assert_eq!(HEADER, 29);
        assert_eq!(FILE.decode(&key(), &bytes).unwrap(), record);
        let touched = FILE
            .decode(&key(), &FILE.with_expiry(&bytes, 2_000))
            .unwrap();
        assert_eq!(touched.expires_at, Timestamp::from_millis(2_000));
        assert_eq!(touched.data, record.data);
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
        for bad in [
            &b""[..],
            b"sesf",
            b"xxxx\x01aaaaaaaaaaaaaaaaaaaaaaaa{}",
            &future,
        ] {
            assert!(matches!(
                FILE.decode(&key(), bad),
                Err(Error::Decode { .. })
            ));
        }
    }
}

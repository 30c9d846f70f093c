//! A record's times and version without its data, and the fixed binary
//! header that byte-oriented stores put in front of the data.
//!
//! A store that keeps a record as one byte string (sled keeps a value, the
//! file store a file) writes its own prefix (a magic number, a format
//! byte), then this 24-byte header, then the data as
//! [`Record::encode_data`] JSON text:
//!
//! | bytes after the prefix | content |
//! |---|---|
//! | 0..8 | `expires_at`, milliseconds since the Unix epoch, `i64` big-endian |
//! | 8..16 | `created_at`, milliseconds, `i64` big-endian |
//! | 16..24 | `version`, `u64` big-endian |
//! | 24 | length of the principal in bytes, 0 for none |
//! | 25..25+n | the [`Principal`], UTF-8 |
//! | 25+n.. | the data |
//!
//! The times and version sit at fixed offsets so that liveness checks read
//! the header only, and `touch` patches the expiry without decoding the
//! data. SQL stores keep the same three numbers in columns and rebuild the
//! record with [`Header::record`].
//!
//! ```
//! use session_core::header::{Header, HeaderCodec};
//! use session_core::{Record, SessionKey, Timestamp};
//!
//! const VALUE: HeaderCodec = HeaderCodec::new(b"\x01", "stored value");
//! let key = SessionKey::from_bytes([7; 32]);
//! let record = Record::with_times(
//!     session_core::Data::new(),
//!     Timestamp::from_millis(1),
//!     Timestamp::from_millis(2),
//! );
//! let bytes = VALUE.encode(Header::of(&record), &record)?;
//! // prefix, header, no principal (one length byte), `{}`
//! assert_eq!(bytes.len(), VALUE.header_len() + 1 + 2);
//! assert_eq!(VALUE.decode(&key, &bytes)?, record);
//! let touched = VALUE.with_expiry(&bytes, 5);
//! assert_eq!(VALUE.read(&key, &touched)?.expires_at, 5);
//! # Ok::<(), session_core::Error>(())
//! ```

use crate::{Error, Principal, Record, Result, SessionKey, Timestamp};

/// A record's times (Unix milliseconds) and version: what a store reads to
/// tell whether a record is live, without its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The record is live while `now < expires_at`.
    pub expires_at: i64,
    /// When the session was first created.
    pub created_at: i64,
    /// The store-maintained version.
    pub version: u64,
}

impl Header {
    /// Length of the binary form, [`to_bytes`](Self::to_bytes).
    pub const LEN: usize = 24;

    /// The header of `record`.
    #[must_use]
    pub fn of(record: &Record) -> Self {
        Self {
            expires_at: record.expires_at.as_millis(),
            created_at: record.created_at.as_millis(),
            version: record.version,
        }
    }

    /// Whether the record is live at `now`, in milliseconds
    /// (`now < expires_at`).
    #[must_use]
    pub fn is_live_at(self, now: i64) -> bool {
        now < self.expires_at
    }

    /// The record of `key` with these times and version, and `data` (JSON
    /// text, as [`Record::encode_data`] wrote it).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] naming `key` if `data` is not a JSON object.
    pub fn record(self, key: &SessionKey, data: &[u8]) -> Result<Record> {
        Ok(Record::with_times(
            Record::decode_data(key, data)?,
            Timestamp::from_millis(self.created_at),
            Timestamp::from_millis(self.expires_at),
        )
        .with_version(self.version))
    }

    /// The binary form: `expires_at`, `created_at`, `version`, each 8 bytes
    /// big-endian.
    #[must_use]
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..8].copy_from_slice(&self.expires_at.to_be_bytes());
        out[8..16].copy_from_slice(&self.created_at.to_be_bytes());
        out[16..].copy_from_slice(&self.version.to_be_bytes());
        out
    }

    /// Read the binary form from the start of `bytes`; `None` if they are
    /// shorter than [`LEN`](Self::LEN).
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (expires_at, rest) = bytes.split_first_chunk::<8>()?;
        let (created_at, rest) = rest.split_first_chunk::<8>()?;
        let (version, _) = rest.split_first_chunk::<8>()?;
        Some(Self {
            expires_at: i64::from_be_bytes(*expires_at),
            created_at: i64::from_be_bytes(*created_at),
            version: u64::from_be_bytes(*version),
        })
    }
}

/// A store's byte layout of a record: its own `prefix`, the [`Header`],
/// then the data. See the [module](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderCodec {
    prefix: &'static [u8],
    what: &'static str,
}

impl HeaderCodec {
    /// A layout starting with `prefix` (a magic number, a format version:
    /// what tells this store's bytes from anything else). `what` names the
    /// bytes in decode errors (`"session file"`, `"stored value"`).
    #[must_use]
    pub const fn new(prefix: &'static [u8], what: &'static str) -> Self {
        Self { prefix, what }
    }

    /// The prefix every encoded record starts with.
    #[must_use]
    pub const fn prefix(&self) -> &'static [u8] {
        self.prefix
    }

    /// Length of the prefix and header: the fixed part, where the
    /// principal's length byte is.
    #[must_use]
    pub const fn header_len(&self) -> usize {
        self.prefix.len() + Header::LEN
    }

    /// Read the header of the bytes stored under `key` from their start (at
    /// least [`header_len`](Self::header_len) bytes of them, unless there are fewer).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] naming `key` if the bytes are shorter than the
    /// header or do not start with the prefix.
    pub fn read(&self, key: &SessionKey, bytes: &[u8]) -> Result<Header> {
        let header = bytes.strip_prefix(self.prefix).and_then(Header::from_bytes);
        match header {
            Some(header) => Ok(header),
            None if bytes.len() < self.header_len() => Err(Error::decode(
                key,
                format!(
                    "{} is {} bytes, shorter than its {}-byte header (truncated)",
                    self.what,
                    bytes.len(),
                    self.header_len()
                ),
            )),
            None => Err(Error::decode(
                key,
                format!(
                    "{} starts with {:02x?}, not {:02x?}: written by something else, or in a \
                     format this version does not read",
                    self.what,
                    &bytes[..self.prefix.len()],
                    self.prefix
                ),
            )),
        }
    }

    /// The bytes of `record` under `header` (which may differ from the
    /// record's own, e.g. a bumped version).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the data cannot be encoded.
    pub fn encode(&self, header: Header, record: &Record) -> Result<Vec<u8>> {
        let data = Record::encode_data(&record.data)?;
        let principal = record.principal.as_ref().map_or("", Principal::as_str);
        // `Principal` holds at most 255 bytes, so its length fits the byte.
        let len = u8::try_from(principal.len()).map_err(|e| Error::Encode { source: e.into() })?;
        let mut out =
            Vec::with_capacity(self.header_len() + 1 + principal.len() + data.as_bytes().len());
        out.extend_from_slice(self.prefix);
        out.extend_from_slice(&header.to_bytes());
        out.push(len);
        out.extend_from_slice(principal.as_bytes());
        out.extend_from_slice(data.as_bytes());
        Ok(out)
    }

    /// The same bytes with another `expires_at`: what `touch` writes. The
    /// data bytes are copied as they are, never re-encoded. Bytes too short
    /// to hold an expiry are copied unchanged.
    #[must_use]
    pub fn with_expiry(&self, bytes: &[u8], expires_at: i64) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let at = self.prefix.len();
        if let Some(slot) = out.get_mut(at..at + 8) {
            slot.copy_from_slice(&expires_at.to_be_bytes());
        }
        out
    }

    /// Decode the whole bytes stored under `key`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] naming `key` if the header or the data do not
    /// decode.
    pub fn decode(&self, key: &SessionKey, bytes: &[u8]) -> Result<Record> {
        let (header, principal, data) = self.split(key, bytes)?;
        Ok(header.record(key, data)?.with_principal(principal))
    }

    /// The header, the principal and the data bytes (not decoded) of the
    /// bytes stored under `key`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] naming `key` if the header or the principal do not
    /// decode.
    pub fn split<'b>(
        &self,
        key: &SessionKey,
        bytes: &'b [u8],
    ) -> Result<(Header, Option<Principal>, &'b [u8])> {
        let header = self.read(key, bytes)?;
        let rest = &bytes[self.header_len()..];
        let Some((&len, rest)) = rest.split_first() else {
            return Err(Error::decode(
                key,
                format!("{} ends before its principal (truncated)", self.what),
            ));
        };
        let Some((name, data)) = rest.split_at_checked(usize::from(len)) else {
            return Err(Error::decode(
                key,
                format!("{} ends inside its principal (truncated)", self.what),
            ));
        };
        let principal = match name {
            [] => None,
            name => {
                let name = std::str::from_utf8(name).map_err(|e| Error::decode(key, e))?;
                Some(Principal::stored(key, name)?)
            }
        };
        Ok((header, principal, data))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use super::*;

    const CODEC: HeaderCodec = HeaderCodec::new(b"ab\x01", "test value");

    fn key() -> SessionKey {
        SessionKey::from_bytes([7; 32])
    }

    /// The bytes are pinned: stores' existing files and databases must
    /// still read.
    #[test]
    fn the_layout_is_prefix_then_big_endian_times_and_version_then_json() {
        let mut data = crate::Data::new();
        data.insert("a".into(), 1.into());
        let record = Record::with_times(
            data,
            Timestamp::from_millis(-2),
            Timestamp::from_millis(0x0102_0304_0506_0708),
        )
        .with_version(u64::MAX - 1);
        let bytes = CODEC.encode(Header::of(&record), &record).unwrap();
        let mut expected = b"ab\x01".to_vec();
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        expected.push(0);
        expected.extend_from_slice(b"{\"a\":1}");
        assert_eq!(bytes, expected);
        assert_eq!(CODEC.header_len(), 27);
        assert_eq!(CODEC.decode(&key(), &bytes).unwrap(), record);

        let owned = record.with_principal(Some(Principal::new("ada").unwrap()));
        let bytes = CODEC.encode(Header::of(&owned), &owned).unwrap();
        assert_eq!(bytes[27..31], *b"\x03ada");
        assert_eq!(bytes[31..], *b"{\"a\":1}");
        assert_eq!(CODEC.decode(&key(), &bytes).unwrap(), owned);
    }

    #[test]
    fn with_expiry_patches_only_the_expiry() {
        let record = Record::with_times(
            crate::Data::new(),
            Timestamp::from_millis(5),
            Timestamp::from_millis(i64::MAX),
        )
        .with_version(3);
        let bytes = CODEC.encode(Header::of(&record), &record).unwrap();
        let touched = CODEC.with_expiry(&bytes, -42);
        let header = CODEC.read(&key(), &touched).unwrap();
        assert_eq!(
            header,
            Header {
                expires_at: -42,
                ..Header::of(&record)
            }
        );
        assert_eq!(touched[CODEC.header_len()..], bytes[CODEC.header_len()..]);
        assert_eq!(CODEC.with_expiry(b"ab\x01\x02", 1), b"ab\x01\x02");
    }

    #[test]
    fn short_foreign_or_broken_bytes_are_decode_errors() {
        let good = CODEC
            .encode(
                Header {
                    expires_at: 1,
                    created_at: 0,
                    version: 0,
                },
                &Record::with_times(
                    crate::Data::new(),
                    Timestamp::UNIX_EPOCH,
                    Timestamp::UNIX_EPOCH,
                ),
            )
            .unwrap();
        let mut other_prefix = good.clone();
        other_prefix[2] = 9;
        let cut = &good[..CODEC.header_len() - 1];
        let mut not_json = good[..=CODEC.header_len()].to_vec();
        not_json.extend_from_slice(b"{\"a\":");
        let no_principal_byte = &good[..CODEC.header_len()];
        let mut cut_principal = good[..CODEC.header_len()].to_vec();
        cut_principal.extend_from_slice(b"\x05ab");
        let mut bad_principal = good[..CODEC.header_len()].to_vec();
        bad_principal.extend_from_slice(b"\x02\xff\x00{}");
        let mut control_principal = good[..CODEC.header_len()].to_vec();
        control_principal.extend_from_slice(b"\x02a\n{}");
        for bad in [
            &b""[..],
            b"ab",
            cut,
            &other_prefix,
            &not_json,
            no_principal_byte,
            &cut_principal,
            &bad_principal,
            &control_principal,
        ] {
            assert!(
                matches!(CODEC.decode(&key(), bad), Err(Error::Decode { .. })),
                "{bad:?}"
            );
        }
        let Err(Error::Decode { source, .. }) = CODEC.read(&key(), cut) else {
            panic!("a cut header decodes");
        };
        assert!(source.to_string().contains("truncated"), "{source}");
        let Err(Error::Decode { source, .. }) = CODEC.read(&key(), &other_prefix) else {
            panic!("a foreign prefix decodes");
        };
        assert!(
            source.to_string().contains("test value starts with"),
            "{source}"
        );
    }

    #[test]
    fn liveness_is_now_before_expiry() {
        let header = Header {
            expires_at: 10,
            created_at: 0,
            version: 0,
        };
        assert!(header.is_live_at(9));
        assert!(!header.is_live_at(10));
    }
}

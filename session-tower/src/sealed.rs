//! Cookie-only sessions: the whole record sealed (encrypted and
//! authenticated) into the cookie value with XChaCha20-Poly1305.
//!
//! A sealed value is unpadded base64url of
//!
//! ```text
//! format (1 byte) | nonce (24) | ciphertext of the payload | tag (16)
//! payload = session ID (32 ASCII) | created_at (i64 BE, ms) | expires_at (i64 BE, ms)
//!           | version (u64 BE) | principal length (1 byte, 0: none) | principal (UTF-8)
//!           | data (the JSON text of Record::encode_data)
//! ```
//!
//! The associated data is the format byte and the cookie (or header) name,
//! so a value sealed for one cookie cannot be replayed as another's. Each
//! key of the ring gives its own cipher key through HKDF-SHA256, so the
//! raw signing key is never used by two algorithms.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use session_core::{Data, Error, Principal, Record, SessionId, SessionKey, Timestamp};
use sha2::Sha256;

use crate::ConfigError;

/// The first byte of every sealed value: the layout above.
/// (1 was the layout before principals: such cookies no longer open, and
/// their visitors start a new session.)
const FORMAT: u8 = 2;
const NONCE: usize = 24;
const TAG: usize = 16;
/// Characters of a session ID in the payload.
const ID: usize = 32;
/// Bytes of the payload before the principal and the data.
const HEADER: usize = ID + 8 + 8 + 8 + 1;

/// The most a cookie (`name=value`) may take: 4096 bytes, the size every
/// browser promises to keep (RFC 6265 §6.1); larger ones are dropped
/// silently by some.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// HKDF `info` for the sealing keys: changing it retires every cookie.
const KEY_INFO: &[u8] = b"session-tower cookie-only sealing v1";

/// The ciphers of a key ring, the first one sealing.
#[derive(Clone)]
pub(crate) struct Sealer {
    ciphers: Vec<XChaCha20Poly1305>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("keys", &self.ciphers.len())
            .finish_non_exhaustive()
    }
}

/// A session opened from a sealed value.
#[derive(Debug)]
pub(crate) struct Unsealed {
    pub(crate) id: SessionId,
    pub(crate) created_at: Timestamp,
    pub(crate) expires_at: Timestamp,
    pub(crate) version: u64,
    /// Who the session belongs to.
    pub(crate) principal: Option<Principal>,
    /// The data's JSON text, decoded only when the handler uses the
    /// session.
    pub(crate) data: Vec<u8>,
    /// Index of the key that opened it (0: the sealing key).
    pub(crate) key: usize,
}

impl Unsealed {
    /// The record, decoding the data (an error names `key`).
    pub(crate) fn record(&self, key: &SessionKey) -> session_core::Result<Record> {
        let data = Record::decode_data(key, &self.data)?;
        Ok(Record::with_times(data, self.created_at, self.expires_at)
            .with_version(self.version)
            .with_principal(self.principal.clone()))
    }
}

impl Sealer {
    /// Ciphers for `keys` (already checked by the key ring: at least one,
    /// each long enough, no duplicates).
    pub(crate) fn new(keys: &[Vec<u8>]) -> Result<Self, ConfigError> {
        let ciphers = keys
            .iter()
            .map(|key| {
                let mut derived = [0u8; 32];
                Hkdf::<Sha256>::new(None, key)
                    .expand(KEY_INFO, &mut derived)
                    .map_err(|_| ConfigError::new("HKDF refused to derive a sealing key"))?;
                Ok(XChaCha20Poly1305::new(&derived.into()))
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self { ciphers })
    }

    /// The length of the sealed value of a record whose principal and
    /// data's JSON text are `body_len` bytes long together: known before
    /// sealing, so the size limit is checked when the session is written,
    /// not after.
    pub(crate) const fn sealed_len(body_len: usize) -> usize {
        let raw = 1 + NONCE + HEADER + body_len + TAG;
        (raw * 4).div_ceil(3)
    }

    /// Seal `record` of session `id` with the first key, for the cookie or
    /// header `name`.
    pub(crate) fn seal(
        &self,
        name: &str,
        id: &str,
        record: &Record,
    ) -> session_core::Result<String> {
        let data = Record::encode_data(&record.data)?;
        let principal = record.principal.as_ref().map_or("", Principal::as_str);
        // A principal holds at most 255 bytes.
        let len = u8::try_from(principal.len()).map_err(|e| Error::Encode { source: e.into() })?;
        let mut payload = Vec::with_capacity(HEADER + principal.len() + data.as_bytes().len());
        payload.extend_from_slice(id.as_bytes());
        payload.extend_from_slice(&record.created_at.as_millis().to_be_bytes());
        payload.extend_from_slice(&record.expires_at.as_millis().to_be_bytes());
        payload.extend_from_slice(&record.version.to_be_bytes());
        payload.push(len);
        payload.extend_from_slice(principal.as_bytes());
        payload.extend_from_slice(data.as_bytes());
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|e| Error::Random {
            reason: e.to_string(),
        })?;
        let sealed = self.ciphers[0]
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &payload,
                    aad: &associated(name),
                },
            )
            .map_err(|_| Error::Encode {
                source: "the cipher refused to seal the session".into(),
            })?;
        let mut raw = Vec::with_capacity(1 + NONCE + sealed.len());
        raw.push(FORMAT);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(raw))
    }

    /// Open a presented value: `None` unless one of the keys authenticates
    /// it, for this `name`, and it holds a well-formed session.
    pub(crate) fn open(&self, name: &str, value: &str) -> Option<Unsealed> {
        if value.len() < Self::sealed_len(0) || value.len() > MAX_COOKIE_BYTES {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        let (&format, rest) = raw.split_first()?;
        if format != FORMAT || rest.len() < NONCE + TAG {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE);
        let aad = associated(name);
        let (key, payload) = self.ciphers.iter().enumerate().find_map(|(i, cipher)| {
            let payload = Payload {
                msg: sealed,
                aad: &aad,
            };
            cipher
                .decrypt(XNonce::from_slice(nonce), payload)
                .ok()
                .map(|p| (i, p))
        })?;
        if payload.len() < HEADER {
            return None;
        }
        let (header, rest) = payload.split_at(HEADER);
        let id = SessionId::parse(std::str::from_utf8(&header[..ID]).ok()?).ok()?;
        let int = |at: usize| -> Option<[u8; 8]> { header.get(at..at + 8)?.try_into().ok() };
        let (name, data) = rest.split_at_checked(usize::from(header[HEADER - 1]))?;
        let principal = match name {
            [] => None,
            name => Some(Principal::new(std::str::from_utf8(name).ok()?).ok()?),
        };
        Some(Unsealed {
            id,
            created_at: Timestamp::from_millis(i64::from_be_bytes(int(ID)?)),
            expires_at: Timestamp::from_millis(i64::from_be_bytes(int(ID + 8)?)),
            version: u64::from_be_bytes(int(ID + 16)?),
            principal,
            data: data.to_vec(),
            key,
        })
    }
}

/// The associated data: the format and the name the value travels under.
fn associated(name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + name.len());
    aad.push(FORMAT);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// A session too large to travel in a cookie: its data must shrink, or the
/// site needs a server-side store. The commit that met it fails (the
/// response becomes `500`), so the browser never gets a cookie it would
/// drop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the session would make a {needed}-byte cookie, over the limit of {limit} bytes \
     (cookie-only sessions keep their data in the cookie: keep it small, or use a store)"
)]
pub struct CookieTooLarge {
    /// Bytes the cookie (`name=value`) would take.
    pub needed: usize,
    /// The configured limit.
    pub limit: usize,
}

/// Whether `data` of `principal` sealed under `name` fits in `limit` bytes.
pub(crate) fn check_size(
    name: &str,
    data: &Data,
    principal: Option<&Principal>,
    limit: usize,
) -> session_core::Result<()> {
    let text = Record::encode_data(data)?;
    let body = text.as_bytes().len() + principal.map_or(0, |p| p.as_str().len());
    let needed = name.len() + 1 + Sealer::sealed_len(body);
    if needed > limit {
        return Err(Error::Encode {
            source: Box::new(CookieTooLarge { needed, limit }),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use super::*;

    fn sealer(keys: &[&[u8]]) -> Sealer {
        Sealer::new(&keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>()).unwrap()
    }

    fn record() -> Record {
        let mut data = Data::new();
        data.insert("user".into(), "ada".into());
        data.insert("n".into(), u64::MAX.into());
        Record::new(data, Duration::from_secs(60)).with_version(7)
    }

    #[test]
    fn what_is_sealed_opens_with_every_field() {
        let sealer = sealer(&[&[1; 32]]);
        let id = SessionId::generate().unwrap();
        for principal in [None, Some(Principal::new("ünï:42").unwrap())] {
            let record = record().with_principal(principal.clone());
            let value = sealer.seal("sid", id.expose(), &record).unwrap();
            let data_len = Record::encode_data(&record.data).unwrap().as_bytes().len();
            let principal_len = principal.as_ref().map_or(0, |p| p.as_str().len());
            assert_eq!(value.len(), Sealer::sealed_len(data_len + principal_len));
            let opened = sealer.open("sid", &value).unwrap();
            assert_eq!(opened.id, id);
            assert_eq!(opened.key, 0);
            assert_eq!(opened.record(&id.key()).unwrap(), record);
        }
    }

    #[test]
    fn a_previous_key_opens_and_an_unknown_one_does_not() {
        let old = sealer(&[&[2; 32]]);
        let ring = sealer(&[&[1; 32], &[2; 32]]);
        let id = SessionId::generate().unwrap();
        let value = old.seal("sid", id.expose(), &record()).unwrap();
        assert_eq!(ring.open("sid", &value).unwrap().key, 1);
        assert!(sealer(&[&[3; 32]]).open("sid", &value).is_none());
    }

    #[test]
    fn a_value_sealed_for_another_name_does_not_open() {
        let sealer = sealer(&[&[1; 32]]);
        let id = SessionId::generate().unwrap();
        let value = sealer.seal("sid", id.expose(), &record()).unwrap();
        assert!(sealer.open("admin_sid", &value).is_none());
    }

    #[test]
    fn every_altered_character_is_refused() {
        let sealer = sealer(&[&[1; 32]]);
        let id = SessionId::generate().unwrap();
        let value = sealer.seal("sid", id.expose(), &record()).unwrap();
        for i in 0..value.len() {
            let mut bytes = value.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            assert!(sealer.open("sid", &altered).is_none(), "character {i}");
        }
        assert!(sealer.open("sid", &value[..value.len() - 1]).is_none());
        assert!(sealer.open("sid", "").is_none());
        assert!(sealer.open("sid", &"A".repeat(200)).is_none());
    }

    proptest::proptest! {
        /// Fuzzing the sealed-cookie parser: no input panics or opens
        /// without the key.
        #[test]
        fn fuzz_nothing_forged_opens(
            value in proptest::prop_oneof![
                proptest::prelude::any::<String>(),
                "[A-Za-z0-9_-]{120,400}",
            ]
        ) {
            proptest::prop_assert!(sealer(&[&[1; 32]]).open("sid", &value).is_none());
        }

        /// A genuine sealed value with any one character changed does not
        /// open.
        #[test]
        fn fuzz_no_altered_seal_opens(
            at in proptest::prelude::any::<proptest::sample::Index>(),
            to in proptest::prelude::any::<char>(),
        ) {
            let sealer = sealer(&[&[1; 32]]);
            let id = SessionId::generate().unwrap();
            let value = sealer.seal("sid", id.expose(), &record()).unwrap();
            let mut chars: Vec<char> = value.chars().collect();
            let i = at.index(chars.len());
            // Always a change: a rejected case per equal draw would stop a
            // million-case run at proptest's limit of 1,024 rejects.
            chars[i] = if chars[i] == to { if to == 'A' { 'B' } else { 'A' } } else { to };
            let altered: String = chars.into_iter().collect();
            proptest::prop_assert!(sealer.open("sid", &altered).is_none());
        }
    }

    #[test]
    fn two_seals_of_one_session_differ() {
        let sealer = sealer(&[&[1; 32]]);
        let id = SessionId::generate().unwrap();
        let a = sealer.seal("sid", id.expose(), &record()).unwrap();
        let b = sealer.seal("sid", id.expose(), &record()).unwrap();
        assert_ne!(a, b, "a fresh nonce every time");
    }

    #[test]
    fn the_size_check_agrees_with_the_sealed_length() {
        let sealer = sealer(&[&[1; 32]]);
        let id = SessionId::generate().unwrap();
        let mut record = record().with_principal(Some(Principal::new("user:7").unwrap()));
        record.data.insert("pad".into(), "x".repeat(100).into());
        let value = sealer.seal("sid", id.expose(), &record).unwrap();
        let exact = "sid".len() + 1 + value.len();
        let principal = record.principal.as_ref();
        check_size("sid", &record.data, principal, exact).unwrap();
        let err = check_size("sid", &record.data, principal, exact - 1).unwrap_err();
        let Error::Encode { source } = &err else {
            panic!("{err:?}")
        };
        let too_large = source.downcast_ref::<CookieTooLarge>().unwrap();
        assert_eq!(
            *too_large,
            CookieTooLarge {
                needed: exact,
                limit: exact - 1
            }
        );
    }
}

//! Signing session IDs: HMAC-SHA256 with a key ring.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use session_core::SessionId;
use sha2::Sha256;

use crate::ConfigError;

type HmacSha256 = Hmac<Sha256>;

/// The shortest signing key accepted: 32 bytes (256 bits), the size of the
/// HMAC-SHA256 output. Use 64 random bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// Characters of a session ID (unpadded base64url of 24 bytes).
const ID_CHARS: usize = 32;
/// Characters of a signature (unpadded base64url of 32 bytes).
const SIG_CHARS: usize = 43;
/// A signed value: `<id>.<signature>`.
pub(crate) const SIGNED_CHARS: usize = ID_CHARS + 1 + SIG_CHARS;

/// The keys that sign and verify session cookies and tokens.
///
/// The first key signs; every key verifies. Rotating keys without logging
/// everyone out: put the new key first and keep the old one after it until
/// every cookie it signed has expired (a value verified by an old key is
/// re-signed with the first key on the next response that uses the
/// session), then drop it.
#[derive(Clone)]
pub(crate) struct KeyRing {
    /// Keyed HMAC states, cloned per use so the key is hashed only once.
    macs: Vec<HmacSha256>,
}

/// What a presented value turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verified {
    /// Signed by the key at `key` (0 is the signing key).
    Valid {
        /// The session ID it carries.
        id: SessionId,
        /// Index of the key that verified it.
        key: usize,
    },
    /// Unsigned, tampered, malformed or signed by an unknown key.
    Invalid,
}

impl KeyRing {
    /// A ring of `keys`, the first one signing.
    pub(crate) fn new(keys: &[Vec<u8>]) -> Result<Self, ConfigError> {
        if keys.is_empty() {
            return Err(ConfigError::new(
                "no signing key: call with_key with at least 32 random bytes",
            ));
        }
        let mut macs = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            if key.len() < MIN_KEY_BYTES {
                return Err(ConfigError::new(format!(
                    "signing key {i} is {} bytes; at least {MIN_KEY_BYTES} are required",
                    key.len()
                )));
            }
            if keys[..i].contains(key) {
                return Err(ConfigError::new(format!("signing key {i} is listed twice")));
            }
            let mac = HmacSha256::new_from_slice(key)
                .map_err(|_| ConfigError::new("HMAC refused the key"))?;
            macs.push(mac);
        }
        Ok(Self { macs })
    }

    /// The signature of `id` under key `index`.
    fn mac(&self, index: usize, id: &str) -> HmacSha256 {
        let mut mac = self.macs[index].clone();
        mac.update(id.as_bytes());
        mac
    }

    /// `<id>.<signature>`, signed with the first key.
    pub(crate) fn sign(&self, id: &str) -> String {
        let tag = self.mac(0, id).finalize().into_bytes();
        let mut out = String::with_capacity(SIGNED_CHARS);
        out.push_str(id);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut out);
        out
    }

    /// Check a presented value against every key, in constant time per key.
    pub(crate) fn verify(&self, value: &str) -> Verified {
        if value.len() != SIGNED_CHARS {
            return Verified::Invalid;
        }
        let (Some(id), Some(b'.'), Some(sig)) = (
            value.get(..ID_CHARS),
            value.as_bytes().get(ID_CHARS),
            value.get(ID_CHARS + 1..),
        ) else {
            return Verified::Invalid;
        };
        let mut tag = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(sig, &mut tag) {
            Ok(32) => {}
            _ => return Verified::Invalid,
        }
        let Some(key) = (0..self.macs.len()).find(|&i| self.mac(i, id).verify_slice(&tag).is_ok())
        else {
            return Verified::Invalid;
        };
        // Only IDs we generated are ever signed; parse anyway, so that a
        // leaked key cannot smuggle a malformed ID into a store.
        match SessionId::parse(id) {
            Ok(id) => Verified::Valid { id, key },
            Err(_) => Verified::Invalid,
        }
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.macs.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn ring(keys: &[&[u8]]) -> KeyRing {
        KeyRing::new(&keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn signs_and_verifies_with_the_first_key() {
        let ring = ring(&[&[1; 32], &[2; 32]]);
        let id = SessionId::generate().unwrap();
        let signed = ring.sign(id.expose());
        assert_eq!(signed.len(), SIGNED_CHARS);
        assert_eq!(ring.verify(&signed), Verified::Valid { id, key: 0 });
    }

    #[test]
    fn an_older_key_still_verifies() {
        let old = ring(&[&[2; 32]]);
        let new = ring(&[&[1; 32], &[2; 32]]);
        let id = SessionId::generate().unwrap();
        assert_eq!(
            new.verify(&old.sign(id.expose())),
            Verified::Valid { id, key: 1 }
        );
    }

    #[test]
    fn tampering_of_any_kind_is_invalid() {
        let ring = ring(&[&[1; 32]]);
        let other = self::ring(&[&[3; 32]]);
        let id = SessionId::generate().unwrap();
        let signed = ring.sign(id.expose());
        assert_eq!(ring.verify(id.expose()), Verified::Invalid, "unsigned");
        assert_eq!(ring.verify(&other.sign(id.expose())), Verified::Invalid);
        assert_eq!(ring.verify(""), Verified::Invalid);
        assert_eq!(ring.verify(&signed[1..]), Verified::Invalid);
        assert_eq!(ring.verify(&format!("{signed}A")), Verified::Invalid);
        // Flip each character in turn: no single change survives.
        for i in 0..signed.len() {
            let mut bytes = signed.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert_eq!(ring.verify(&tampered), Verified::Invalid, "byte {i}");
        }
        // A multi-byte character of the right byte length.
        let mut bytes = signed.into_bytes();
        bytes.truncate(SIGNED_CHARS - 2);
        let mut s = String::from_utf8(bytes).unwrap();
        s.push('é');
        assert_eq!(ring.verify(&s), Verified::Invalid);
    }

    proptest::proptest! {
        /// Fuzzing the signed-value parser (cookies and the token header):
        /// no input panics, and the only values accepted are exactly the
        /// ones the ring signs. `PROPTEST_CASES=1000000 cargo test
        /// --release -p session-tower fuzz_` for the long run.
        #[test]
        fn fuzz_only_what_the_ring_signed_verifies(
            value in proptest::prop_oneof![
                proptest::prelude::any::<String>(),
                "[A-Za-z0-9_-]{32}\\.[A-Za-z0-9_-]{43}",
                "[A-Za-z0-9_.=+/-]{70,80}",
            ]
        ) {
            let ring = ring(&[&[1; 32], &[2; 32]]);
            if let Verified::Valid { id, key } = ring.verify(&value) {
                let signer = self::ring(&[&[[1u8; 32], [2u8; 32]][key][..]]);
                proptest::prop_assert_eq!(signer.sign(id.expose()), value);
            }
        }

        /// A genuine signed value with any one character changed is
        /// refused.
        #[test]
        fn fuzz_no_altered_signed_value_verifies(
            at in proptest::prelude::any::<proptest::sample::Index>(),
            to in proptest::prelude::any::<char>(),
        ) {
            let ring = ring(&[&[1; 32]]);
            let id = SessionId::generate().unwrap();
            let signed = ring.sign(id.expose());
            let mut chars: Vec<char> = signed.chars().collect();
            let i = at.index(chars.len());
            // Always a change: a rejected case per equal draw would stop a
            // million-case run at proptest's limit of 1,024 rejects.
            chars[i] = if chars[i] == to { if to == 'A' { 'B' } else { 'A' } } else { to };
            let altered: String = chars.into_iter().collect();
            proptest::prop_assert_eq!(ring.verify(&altered), Verified::Invalid);
        }
    }

    #[test]
    fn short_empty_and_duplicate_keys_are_refused() {
        assert!(KeyRing::new(&[]).is_err());
        assert!(KeyRing::new(&[vec![0; 31]]).is_err());
        assert!(KeyRing::new(&[vec![0; 32], vec![0; 16]]).is_err());
        assert!(KeyRing::new(&[vec![0; 32], vec![0; 32]]).is_err());
        assert!(KeyRing::new(&[vec![0; 32]]).is_ok());
    }
}

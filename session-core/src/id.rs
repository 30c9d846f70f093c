//! Session IDs (the cookie secret) and session keys (what stores see).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::Error;

/// Random bytes in a session ID: 192 bits, as express-session uses.
const ID_BYTES: usize = 24;
/// Length of the encoded ID: 24 bytes in unpadded base64url are 32 characters.
const ID_CHARS: usize = 32;
/// Bytes of a session key (a SHA-256 digest).
const KEY_BYTES: usize = 32;
/// Length of a key's text form: lower-case hex.
const KEY_CHARS: usize = 2 * KEY_BYTES;

/// The secret that travels in the cookie.
///
/// 192 bits from the operating system's CSPRNG, encoded as 32 characters of
/// unpadded URL-safe base64 (`A–Z a–z 0–9 - _`). Stores never see it: they
/// receive the [`SessionKey`] derived from it.
///
/// `Debug` and `Display` are redacted so that logs never hold a usable ID;
/// the full value is available only through [`SessionId::expose`], for
/// writing the cookie.
///
/// ```
/// use session_core::SessionId;
///
/// let id = SessionId::generate()?;
/// let cookie = id.expose().to_owned();
/// assert_eq!(cookie.len(), 32);
/// assert_eq!(SessionId::parse(&cookie)?, id);
/// assert!(!format!("{id:?}").contains(&cookie));
/// assert!(SessionId::parse("not-a-session-id").is_err());
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// Generate a fresh ID from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] if the operating system cannot provide randomness.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::Random {
            reason: e.to_string(),
        })?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Accept exactly what [`generate`](Self::generate) produces: 32
    /// characters of unpadded base64url encoding 24 bytes. Anything else
    /// (wrong length, padding, another alphabet, non-canonical trailing
    /// bits) is rejected before any store is touched.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSessionId`] saying what was wrong (never echoing the
    /// input, which may be a secret).
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.len() != ID_CHARS {
            return Err(Error::InvalidSessionId {
                reason: "wrong length",
            });
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::InvalidSessionId {
                reason: "character outside the URL-safe base64 alphabet",
            });
        }
        // 32 characters always decode to 24 bytes; the decoder rejects
        // non-canonical encodings, so one ID has exactly one text form.
        match URL_SAFE_NO_PAD.decode(s) {
            Ok(bytes) if bytes.len() == ID_BYTES => Ok(Self(s.to_owned())),
            _ => Err(Error::InvalidSessionId {
                reason: "not a canonical base64url encoding",
            }),
        }
    }

    /// The full secret, for the cookie value. Do not log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The store key for this ID.
    #[must_use]
    pub fn key(&self) -> SessionKey {
        SessionKey::from_id(self)
    }

    /// A short, non-secret prefix for logs: 4 of the 32 characters
    /// (24 bits), which does not allow the cookie to be replayed.
    fn redacted(&self) -> &str {
        self.0.get(..4).unwrap_or("")
    }
}

impl FromStr for SessionId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", self.redacted())
    }
}

impl fmt::Display for SessionId {
    /// Redacted: the first 4 characters and an ellipsis.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", self.redacted())
    }
}

/// What stores see: the SHA-256 digest of a [`SessionId`].
///
/// A leaked database, log or backup holds only keys, and a key cannot be
/// turned back into the cookie that would open the session (the same reason
/// Rails stores hashed session IDs). A plain hash suffices because the ID has
/// 192 bits of entropy: there is nothing to brute-force.
///
/// The text form ([`as_str`](Self::as_str), `Display`) is 64 lower-case hex
/// characters; stores keep that and rebuild the key with
/// [`SessionKey::parse`] when they list what they hold.
///
/// ```
/// use session_core::{SessionId, SessionKey};
///
/// let id = SessionId::generate()?;
/// let key = SessionKey::from_id(&id);
/// assert_eq!(key.as_str().len(), 64);
/// assert_eq!(SessionKey::parse(key.as_str())?, key);
/// assert_ne!(key.as_str(), id.expose());
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    bytes: [u8; KEY_BYTES],
    hex: [u8; KEY_CHARS],
}

impl SessionKey {
    /// Derive the key of a session ID.
    #[must_use]
    pub fn from_id(id: &SessionId) -> Self {
        let digest: [u8; KEY_BYTES] = Sha256::digest(id.0.as_bytes()).into();
        Self::from_bytes(digest)
    }

    /// Build a key from its 32 raw bytes (e.g. read from a binary column).
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; KEY_CHARS];
        for (i, b) in bytes.iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        Self { bytes, hex }
    }

    /// Rebuild a key from its text form (64 lower-case hex characters), as a
    /// store does when it lists its sessions.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if `s` is not exactly that.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let text = s.as_bytes();
        if text.len() != KEY_CHARS {
            return Err(Error::InvalidKey {
                key: s.to_owned(),
                reason: "expected 64 lower-case hex characters",
            });
        }
        let mut bytes = [0u8; KEY_BYTES];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(hi), Some(lo)) => bytes[i] = (hi << 4) | lo,
                _ => {
                    return Err(Error::InvalidKey {
                        key: s.to_owned(),
                        reason: "expected 64 lower-case hex characters",
                    });
                }
            }
        }
        Ok(Self::from_bytes(bytes))
    }

    /// The 32 raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.bytes
    }

    /// The text form: 64 lower-case hex characters.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // The hex buffer only ever holds ASCII hex digits written by
        // `from_bytes`, so this conversion cannot fail.
        std::str::from_utf8(&self.hex).unwrap_or_default()
    }
}

/// Value of a lower-case hex digit; upper case is rejected so that every key
/// has exactly one text form.
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl FromStr for SessionKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({})", self.as_str())
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.expose()).unwrap(), a);
        assert_eq!(a.expose().len(), ID_CHARS);
    }

    #[test]
    fn parse_rejects_wrong_length_alphabet_and_padding() {
        let good = SessionId::generate().unwrap().expose().to_owned();
        assert!(SessionId::parse("").is_err());
        assert!(SessionId::parse(&good[..31]).is_err());
        assert!(SessionId::parse(&format!("{good}A")).is_err());
        let mut plus = good.clone();
        plus.replace_range(0..1, "+");
        assert!(SessionId::parse(&plus).is_err());
        let mut pad = good.clone();
        pad.replace_range(31..32, "=");
        assert!(SessionId::parse(&pad).is_err());
        let mut unicode = good[..30].to_owned();
        unicode.push('é');
        assert_eq!(unicode.len(), 32);
        assert!(SessionId::parse(&unicode).is_err());
    }

    #[test]
    fn debug_and_display_do_not_leak_the_secret() {
        let id = SessionId::generate().unwrap();
        let secret = id.expose();
        for shown in [format!("{id:?}"), id.to_string()] {
            assert!(!shown.contains(secret));
            assert!(!shown.contains(&secret[..8]));
        }
    }

    #[test]
    fn key_is_sha256_hex_and_round_trips() {
        let id = SessionId::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        let key = id.key();
        // sha256("AAAA…A" x32), computed independently.
        let expected = format!("{:x}", Sha256::digest(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
        assert_eq!(key.as_str(), expected);
        assert_eq!(SessionKey::parse(key.as_str()).unwrap(), key);
        assert_eq!(SessionKey::from_bytes(*key.as_bytes()), key);
    }

    #[test]
    fn key_parse_is_strict() {
        let key = SessionId::generate().unwrap().key();
        assert!(SessionKey::parse(&"ab".repeat(32)).is_ok());
        assert!(SessionKey::parse(&"AB".repeat(32)).is_err());
        assert!(SessionKey::parse(&key.as_str()[1..]).is_err());
        assert!(SessionKey::parse(&format!("{}0", key.as_str())).is_err());
        assert!(SessionKey::parse(&"g".repeat(64)).is_err());
    }
}

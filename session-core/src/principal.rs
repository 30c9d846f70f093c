//! Who a session belongs to, and the optional index from a principal to its
//! sessions ("log out everywhere", "your devices").

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Error, Record, Result, SessionKey, SessionStore, async_trait};

/// The user a session belongs to: a user id, an account name, any string
/// that names one person to the application. Attached at login with
/// [`Session::set_principal`](crate::Session::set_principal) and stored in
/// the record ([`Record::principal`]).
///
/// 1 to [`MAX_LEN`](Self::MAX_LEN) bytes of UTF-8 without control
/// characters, so every engine can index it (MySQL's index prefix, a Redis
/// key name, a file name never see anything else).
///
/// ```
/// use session_core::Principal;
/// let alice = Principal::new("user:42")?;
/// assert_eq!(alice.as_str(), "user:42");
/// assert!(Principal::new("").is_err());
/// assert!(Principal::new("a\nb").is_err());
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Principal(Box<str>);

impl Principal {
    /// The longest principal, in bytes.
    pub const MAX_LEN: usize = 255;

    /// A principal, checked.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPrincipal`] if `name` is empty, longer than
    /// [`MAX_LEN`](Self::MAX_LEN) bytes, or holds a control character.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let reason = if name.is_empty() {
            "it is empty"
        } else if name.len() > Self::MAX_LEN {
            "it is longer than 255 bytes"
        } else if name.chars().any(char::is_control) {
            "it holds a control character"
        } else {
            return Ok(Self(name.into_boxed_str()));
        };
        Err(Error::InvalidPrincipal { reason })
    }

    /// A principal read back from a store: like [`new`](Self::new), but a
    /// bad one is a [`Error::Decode`] naming the session it was stored
    /// with.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] naming `key` if the stored name is not a principal.
    pub fn stored(key: &SessionKey, name: impl Into<String>) -> Result<Self> {
        Self::new(name).map_err(|e| Error::decode(key, e))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Principal {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Principal {
    type Error = Error;

    fn try_from(name: &str) -> Result<Self> {
        Self::new(name)
    }
}

impl TryFrom<String> for Principal {
    type Error = Error;

    fn try_from(name: String) -> Result<Self> {
        Self::new(name)
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::new(name).map_err(serde::de::Error::custom)
    }
}

/// The sessions of a principal, kept by a store next to its records: what
/// "sign out everywhere" and a "your devices" page need.
///
/// A store that implements it keeps, per principal, an index of the keys
/// whose record names that principal ([`Record::principal`], written by
/// `create`, `update` and `save` like the rest of the record). The index is
/// **exact** where it answers:
///
/// - [`sessions_of`](Self::sessions_of) never returns an expired or
///   destroyed session, nor one whose record names another principal (or
///   none) by now, whatever the state of reaping; it returns every session
///   that is live under the principal and not written during the call;
/// - [`destroy_all_of`](Self::destroy_all_of) destroys every such session
///   (but the one it is told to keep); since `update` never writes a
///   destroyed record, a request of a destroyed session that commits
///   afterwards finds it missing: nothing comes back through the index;
/// - the index does not grow with sessions that ended: an entry whose
///   session expired, was destroyed or moved to another principal is removed
///   by [`delete_expired`](SessionStore::delete_expired) or by the next
///   `sessions_of`/`destroy_all_of` of that principal, whichever the store
///   does ([`index_len`](Self::index_len) shows it).
///
/// The `session-conformance` crate's `principal_index_suite!` proves a
/// store keeps these rules.
#[async_trait]
pub trait PrincipalIndex: SessionStore {
    /// The live sessions whose record names `principal`, in no particular
    /// order.
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<(SessionKey, Record)>>;

    /// Destroy every live session of `principal` except `except` (the
    /// session making the request, for "sign out all others"); returns how
    /// many were destroyed.
    async fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
    ) -> Result<u64>;

    /// How many entries the engine holds for `principal` right now,
    /// entries of ended sessions not yet removed included: what an operator
    /// (and the conformance suite) checks to see that the index does not
    /// leak.
    async fn index_len(&self, principal: &Principal) -> Result<u64>;
}

/// Forwards the index to the inner store, so `Arc<S>`, `Box<S>` and
/// `Arc<dyn PrincipalIndex>` index too.
macro_rules! forward_index {
    ($ty:ty) => {
        #[async_trait]
        impl<S: PrincipalIndex + ?Sized> PrincipalIndex for $ty {
            async fn sessions_of(
                &self,
                principal: &Principal,
            ) -> Result<Vec<(SessionKey, Record)>> {
                (**self).sessions_of(principal).await
            }
            async fn destroy_all_of(
                &self,
                principal: &Principal,
                except: Option<&SessionKey>,
            ) -> Result<u64> {
                (**self).destroy_all_of(principal, except).await
            }
            async fn index_len(&self, principal: &Principal) -> Result<u64> {
                (**self).index_len(principal).await
            }
        }
    };
}

forward_index!(Arc<S>);
forward_index!(Box<S>);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(Principal::new("ada").unwrap().as_str(), "ada");
        assert_eq!(Principal::new("é".repeat(127)).unwrap().as_str().len(), 254);
        assert!(Principal::new("x".repeat(255)).is_ok());
        for bad in ["", "a\u{0}b", "tab\there", "\u{7f}"] {
            assert!(
                matches!(Principal::new(bad), Err(Error::InvalidPrincipal { .. })),
                "{bad:?}"
            );
        }
        assert!(Principal::new("x".repeat(256)).is_err());
    }

    #[test]
    fn a_bad_stored_principal_is_a_decode_error_naming_the_key() {
        let key = SessionKey::from_bytes([3; 32]);
        let err = Principal::stored(&key, "").unwrap_err();
        assert!(matches!(&err, Error::Decode { key: k, .. } if k == key.as_str()));
    }

    #[test]
    fn serde_checks_on_the_way_in() {
        let alice: Principal = serde_json::from_str("\"alice\"").unwrap();
        assert_eq!(serde_json::to_string(&alice).unwrap(), "\"alice\"");
        assert!(serde_json::from_str::<Principal>("\"\"").is_err());
    }
}

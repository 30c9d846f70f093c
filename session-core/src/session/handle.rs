//! [`Session`]: one visitor's session during one request, in memory until
//! it is committed.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::SessionManager;
use crate::data;
use crate::{Data, Error, Principal, Result, SessionId, SessionKey, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Not in the store yet.
    New,
    /// Read from (or written to) the store at this version.
    Loaded {
        version: u64,
        created_at: Timestamp,
        expires_at: Timestamp,
    },
    /// Destroyed, or found missing on commit.
    Gone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pending {
    None,
    Destroy,
    /// New ID; `keep_data` false also starts from empty data.
    Cycle {
        keep_data: bool,
    },
}

/// This handle's own changes to the top-level keys, kept so they can be
/// re-applied onto fresher data when a versioned update conflicts.
#[derive(Clone, Debug, Default)]
pub(super) struct Changes {
    /// All keys were removed (before the changes below).
    pub(super) cleared: bool,
    /// `Some`: inserted with this value; `None`: removed.
    pub(super) keys: BTreeMap<String, Option<Value>>,
    /// `Some`: the principal was set (or, `Some(None)`, cleared).
    pub(super) principal: Option<Option<Principal>>,
}

impl Changes {
    pub(super) fn is_empty(&self) -> bool {
        !self.cleared && self.keys.is_empty() && self.principal.is_none()
    }

    pub(super) fn apply(&self, data: &mut Data) {
        if self.cleared {
            data.clear();
        }
        for (key, change) in &self.keys {
            match change {
                Some(value) => data.insert(key.clone(), value.clone()),
                None => data.remove(key),
            };
        }
    }
}

/// One visitor's session during one request.
///
/// Reads and writes are in memory; nothing reaches the store until
/// [`commit`](Self::commit), which decides what to write:
///
/// | state | write |
/// |---|---|
/// | new, modified (or `save_uninitialized`) | `create`; a fresh ID on the rare collision |
/// | new, unmodified | nothing, no cookie |
/// | loaded, modified | versioned `update`; on conflict reload, re-apply this handle's own changes, retry |
/// | loaded, unmodified, `rolling` | `touch`, unless it would move expiry less than `touch_after` |
/// | [`destroy`](Self::destroy) | `destroy`, removal cookie |
/// | [`cycle_id`](Self::cycle_id) / [`regenerate`](Self::regenerate) | `create` under a new ID, then `destroy` the old one |
///
/// A session destroyed or expired meanwhile is never written back.
pub struct Session {
    pub(super) manager: SessionManager,
    pub(super) id: SessionId,
    /// `id.key()`, kept so each commit hashes the ID once at most.
    pub(super) key: SessionKey,
    pub(super) state: State,
    pub(super) data: Data,
    pub(super) changes: Changes,
    pub(super) pending: Pending,
    pub(super) presented_cookie: bool,
    /// Who the session belongs to (as loaded, or as set by this handle).
    pub(super) principal: Option<Principal>,
    /// The request's `User-Agent`, kept in the device metadata of a
    /// logged-in session.
    pub(super) user_agent: Option<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("modified", &self.is_modified())
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session ID (redacted in `Debug`/`Display`).
    #[must_use]
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The session's key: the hash of its ID, what the store sees. Safe to
    /// show and log (it does not open the session).
    #[must_use]
    pub fn key(&self) -> &SessionKey {
        &self.key
    }

    /// Who the session belongs to, if someone logged in with it.
    #[must_use]
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// Log in: the session belongs to `principal` from now on, listed by
    /// [`SessionManager::sessions_of`] and ended by
    /// [`SessionManager::destroy_all_of`]. The ID is cycled on commit (as
    /// by [`cycle_id`](Self::cycle_id)), since the privilege level changes:
    /// an ID planted before login is worthless after it. The device
    /// metadata (user agent, last seen) starts now, and the manager's
    /// per-principal limit, if any, is applied once the session is stored.
    pub fn set_principal(&mut self, principal: Principal) {
        self.principal = Some(principal.clone());
        self.changes.principal = Some(Some(principal));
        self.cycle_id();
    }

    /// Log out but keep the session (a shopping cart, say): it belongs to
    /// no one from now on, and its ID is cycled on commit. Use
    /// [`destroy`](Self::destroy) to end it instead.
    pub fn clear_principal(&mut self) {
        if self.principal.is_none() && self.changes.principal.is_none() {
            return;
        }
        self.principal = None;
        self.changes.principal = Some(None);
        self.remove(super::DEVICE_FIELD);
        self.cycle_id();
    }

    /// The request's `User-Agent` (a web layer sets it on every request):
    /// recorded in a logged-in session's device metadata, truncated to 256
    /// characters. Never stored for a session without a principal.
    pub fn set_user_agent(&mut self, user_agent: &str) {
        self.user_agent = Some(super::device::truncated(user_agent));
    }

    /// Whether the session is not in the store yet.
    #[must_use]
    pub fn is_new(&self) -> bool {
        self.state == State::New
    }

    /// Whether this handle changed the data since it was loaded or last
    /// committed.
    #[must_use]
    pub fn is_modified(&self) -> bool {
        !self.changes.is_empty()
    }

    /// When the stored session expires, if it is stored.
    #[must_use]
    pub fn expires_at(&self) -> Option<Timestamp> {
        match self.state {
            State::Loaded { expires_at, .. } => Some(expires_at),
            State::New | State::Gone => None,
        }
    }

    /// The whole data, read-only.
    #[must_use]
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The value under `field`, deserialized as `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Value`] if the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>> {
        self.data
            .get(field)
            .map(|v| {
                T::deserialize(v).map_err(|source| Error::Value {
                    field: field.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// Store `value` under `field`. Setting a value equal to the current one
    /// is not a modification.
    ///
    /// # Errors
    ///
    /// [`Error::Value`] if `value` does not serialize to JSON;
    /// [`Error::TooDeep`] if it nests deeper than
    /// [`Data::MAX_DEPTH`] allows (checked before the value is built, so
    /// a value nested thousands deep is refused, not a stack overflow).
    /// Nothing changes then.
    pub fn insert<T: Serialize>(&mut self, field: &str, value: T) -> Result<()> {
        let value = Data::value_of(field, &value)?;
        self.insert_checked(field, value);
        Ok(())
    }

    /// Store a JSON `value` under `field`.
    ///
    /// # Errors
    ///
    /// [`Error::TooDeep`] if `value` nests deeper than [`Data::MAX_DEPTH`]
    /// allows; nothing changes then.
    pub fn insert_value(&mut self, field: &str, value: Value) -> Result<()> {
        let value = data::check_value(field, value)?;
        self.insert_checked(field, value);
        Ok(())
    }

    pub(super) fn insert_checked(&mut self, field: &str, value: Value) {
        if self.data.get(field) == Some(&value) {
            return;
        }
        self.data.insert(field.to_owned(), value.clone());
        self.changes.keys.insert(field.to_owned(), Some(value));
    }

    /// Remove `field`, returning its value.
    pub fn remove(&mut self, field: &str) -> Option<Value> {
        let old = self.data.remove(field)?;
        self.changes.keys.insert(field.to_owned(), None);
        Some(old)
    }

    /// Remove every field.
    pub fn clear(&mut self) {
        if self.data.is_empty() && self.changes.is_empty() {
            return;
        }
        self.data.clear();
        self.changes = Changes {
            cleared: true,
            keys: BTreeMap::new(),
            principal: self.changes.principal.take(),
        };
    }

    /// End the session: on commit it is destroyed in the store and the
    /// cookie removed (logout).
    pub fn destroy(&mut self) {
        self.pending = Pending::Destroy;
        self.data.clear();
        self.changes = Changes::default();
        self.principal = None;
    }

    /// Move the session to a new ID, keeping its data; on commit the new
    /// record is created before the old one is destroyed. Call it when the
    /// privilege level changes (login) to prevent session fixation.
    pub fn cycle_id(&mut self) {
        self.pending = Pending::Cycle { keep_data: true };
    }

    /// Like [`cycle_id`](Self::cycle_id), but start over with empty data
    /// and a new creation time (express-session's `regenerate`).
    pub fn regenerate(&mut self) {
        self.pending = Pending::Cycle { keep_data: false };
        self.clear();
    }
}

//! What a logged-in session records about its device, and how a "your
//! devices" page sees each session of a principal.

use serde_json::{Value, json};

use crate::{Data, Principal, Record, SessionKey, Timestamp};

/// The data field where the handle keeps a logged-in session's device
/// metadata (`{"ua": user agent, "seen": last seen, Unix ms}`). Reserved:
/// applications must not write it. Sessions without a principal never get
/// it.
pub const DEVICE_FIELD: &str = "__device";

/// The longest user agent kept, in characters: enough to tell browsers
/// apart, not enough to bloat a session.
pub(super) const MAX_USER_AGENT_CHARS: usize = 256;

/// One session of a principal, as a "your devices" page lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session's key (the hash of its ID: safe to show and to post
    /// back, useless as a cookie). Pass it to
    /// [`SessionManager::destroy_session_of`](crate::SessionManager::destroy_session_of)
    /// to sign that device out.
    pub key: SessionKey,
    /// Whose session it is.
    pub principal: Principal,
    /// When the session was created.
    pub created_at: Timestamp,
    /// When it expires unless used again.
    pub expires_at: Timestamp,
    /// When a request last used it, to within
    /// [`SessionConfig::with_last_seen_every`](crate::SessionConfig::with_last_seen_every);
    /// `None` if it was never recorded (a session written without the
    /// handle).
    pub last_seen: Option<Timestamp>,
    /// The `User-Agent` of the request that logged in (or of the latest
    /// request, if the browser's changed), truncated.
    pub user_agent: Option<String>,
}

impl SessionInfo {
    /// The info of a stored record of `principal`.
    pub(crate) fn of(key: SessionKey, principal: Principal, record: &Record) -> Self {
        let device = Device::read(&record.data);
        Self {
            key,
            principal,
            created_at: record.created_at,
            expires_at: record.expires_at,
            last_seen: device.seen.map(Timestamp::from_millis),
            user_agent: device.user_agent,
        }
    }
}

/// The device metadata kept in [`DEVICE_FIELD`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Device {
    pub(super) user_agent: Option<String>,
    pub(super) seen: Option<i64>,
}

impl Device {
    /// Read from `data`; anything malformed reads as absent (it is ours,
    /// and rewritten on the next request).
    pub(super) fn read(data: &Data) -> Self {
        let Some(Value::Object(device)) = data.get(DEVICE_FIELD) else {
            return Self::default();
        };
        Self {
            user_agent: device.get("ua").and_then(Value::as_str).map(str::to_owned),
            seen: device.get("seen").and_then(Value::as_i64),
        }
    }

    /// The JSON value to store.
    pub(super) fn value(&self) -> Value {
        json!({ "ua": self.user_agent, "seen": self.seen })
    }
}

/// `user_agent` cut to [`MAX_USER_AGENT_CHARS`] characters.
pub(super) fn truncated(user_agent: &str) -> String {
    user_agent.chars().take(MAX_USER_AGENT_CHARS).collect()
}

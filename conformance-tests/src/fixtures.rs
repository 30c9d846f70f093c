//! Small helpers for a backend's own tests, beside the suite: the same ones
//! the behaviours use.
//!
//! ```
//! use std::time::Duration;
//! use serde_json::json;
//! use session_conformance::fixtures::{expired, key, live, object};
//!
//! let k = key(); // a fresh random SessionKey
//! let data = object(json!({"user": "ada"}));
//! assert_eq!(data["user"], "ada");
//! assert!(live(data.clone(), Duration::from_secs(60)).is_live());
//! assert!(!expired(data).is_live());
//! # let _ = k;
//! ```

use std::time::Duration;

use serde_json::Value;
use session_core::{Data, Error, Record, SessionId, SessionKey, Timestamp};

/// A fresh random key.
///
/// # Panics
///
/// If the operating system provides no randomness.
#[must_use]
pub fn key() -> SessionKey {
    SessionId::generate()
        .unwrap_or_else(|e| panic!("cannot generate a session id: {e}"))
        .key()
}

/// Turn a `json!({...})` into session data.
///
/// # Panics
///
/// If `value` is not a JSON object.
#[must_use]
pub fn object(value: Value) -> Data {
    match value {
        Value::Object(map) => map.into(),
        other => panic!("test data must be a JSON object, got {other}"),
    }
}

/// Typical session data, with an integer beyond `i64` that engines storing
/// numbers as doubles or signed integers mangle: `{"user": "ada", "big":
/// u64::MAX}`.
#[must_use]
pub fn sample() -> Data {
    object(serde_json::json!({"user": "ada", "big": u64::MAX}))
}

/// A live record expiring `ttl` from now, created now, version 0.
#[must_use]
pub fn live(data: Data, ttl: Duration) -> Record {
    Record::new(data, ttl)
}

/// A record that expired a minute ago (created two minutes ago): expired
/// for every store, however its clock runs, without waiting.
#[must_use]
pub fn expired(data: Data) -> Record {
    let now = Timestamp::now();
    Record::with_times(
        data,
        now - Duration::from_secs(120),
        now - Duration::from_secs(60),
    )
}

/// Fail unless `result` is [`Error::Decode`] naming `key`, in its field and
/// its message: how a store must report a stored value it cannot decode.
///
/// # Panics
///
/// If it is anything else.
pub fn assert_decode_error<T: std::fmt::Debug>(result: session_core::Result<T>, key: &SessionKey) {
    match result {
        Err(err @ Error::Decode { .. }) => {
            let Error::Decode { key: named, .. } = &err else {
                unreachable!("matched as Decode above")
            };
            assert_eq!(named, key.as_str(), "decode error names the wrong key");
            assert!(
                err.to_string().contains(key.as_str()),
                "decode error message does not name the key: {err}"
            );
        }
        other => panic!("expected a decode error naming {key}, got {other:?}"),
    }
}

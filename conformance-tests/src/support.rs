//! Shared helpers for the behaviours: keys, records, sample data.

use std::time::Duration;

use serde_json::{Value, json};
use session_core::{Data, Record, SessionId, SessionKey, Timestamp};

use crate::StoreFactory;

/// A fresh random key.
pub(crate) fn key() -> SessionKey {
    SessionId::generate()
        .unwrap_or_else(|e| panic!("cannot generate a session id: {e}"))
        .key()
}

/// `{"n": n}`: small data that identifies a write.
pub(crate) fn data_n(n: i64) -> Data {
    object(json!({ "n": n }))
}

/// Turn a `json!({...})` into session data.
pub(crate) fn object(value: Value) -> Data {
    match value {
        Value::Object(map) => map,
        other => panic!("test data must be a JSON object, got {other}"),
    }
}

/// A live record expiring `ttl` from now, created now, version 0.
pub(crate) fn live(data: Data, ttl: Duration) -> Record {
    Record::new(data, ttl)
}

/// A live record with a long (30 minute) lifetime.
pub(crate) fn long_lived(data: Data) -> Record {
    live(data, Duration::from_secs(30 * 60))
}

/// A record that expired a minute ago.
pub(crate) fn expired(data: Data) -> Record {
    let now = Timestamp::now();
    Record::with_times(data, now - Duration::from_secs(120), now - Duration::from_secs(60))
}

/// Open a store on a fresh namespace.
pub(crate) async fn open<F: StoreFactory>(factory: &F) -> F::Store {
    factory.open(&crate::unique_namespace()).await
}

/// Unwrap a store result, failing with the operation's name and the error
/// chain.
pub(crate) fn ok<T>(what: &str, result: session_core::Result<T>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => {
            let mut message = format!("{what} failed: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(&format!(": {s}"));
                source = s.source();
            }
            panic!("{message}")
        }
    }
}

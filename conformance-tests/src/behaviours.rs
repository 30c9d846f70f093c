//! One `pub async fn` per rule of the store contract.

use std::time::Duration;

use serde_json::json;
use session_core::SessionStore;

use crate::StoreFactory;
use crate::support::{key, long_lived, object, ok, open};

/// `load` of a key that was never written returns `None`.
pub async fn load_absent_is_none<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    assert_eq!(ok("load", store.load(&key()).await), None, "load of an absent key");
}

/// Data round-trips exactly: nested objects, unicode, empty objects, `u64::MAX`,
/// `i64::MIN`, floats.
pub async fn round_trip_preserves_values<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let data = object(json!({
        "max": u64::MAX, "min": i64::MIN, "float": 0.1, "neg": -2.5e-300,
        "text": "ünïcødé ✓ 😀", "empty": {}, "list": [1, "two", null, true],
        "nested": {"a": {"b": {"c": [{"d": 1}]}}},
    }));
    let k = key();
    let record = long_lived(data).with_version(3);
    ok("save", store.save(&k, &record).await);
    assert_eq!(ok("load", store.load(&k).await), Some(record), "record read back after save");
    let _ = Duration::ZERO;
}

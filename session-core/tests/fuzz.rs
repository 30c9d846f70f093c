//! Property-based fuzzing of what reaches the core from outside: cookie
//! values (`SessionId::parse`), keys read back from stores
//! (`SessionKey::parse`) and stored bytes (`Record::decode`).
//!
//! Each property runs `PROPTEST_CASES` cases (proptest's default, 256, in
//! `./scripts/test`); the dedicated run sets a million:
//! `PROPTEST_CASES=1000000 cargo test --release -p session-core --test fuzz`.
#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use proptest::prelude::*;
use session_core::{Data, Record, SessionId, SessionKey, Timestamp};

/// Strings near the ID format: the right length or close, the base64url
/// alphabet or close.
fn id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{32}",
        "[A-Za-z0-9_+/=-]{30,34}",
        any::<String>(),
        "\\PC{32}",
    ]
}

/// Strings near the key format: 64 hex digits, either case, or close.
fn key_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{64}",
        "[0-9a-fA-F]{62,66}",
        any::<String>(),
        "\\PC{64}",
    ]
}

/// A JSON value of bounded depth and size, with the awkward scalars.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn record() -> impl Strategy<Value = Record> {
    (
        prop::collection::btree_map(any::<String>(), json(), 0..8),
        any::<i64>(),
        any::<i64>(),
        any::<u64>(),
    )
        .prop_map(|(data, created, expires, version)| {
            let data: Data = data.into_iter().collect();
            Record::with_times(
                data,
                Timestamp::from_millis(created),
                Timestamp::from_millis(expires),
            )
            .with_version(version)
        })
}

proptest! {
    /// A cookie value is accepted only in the exact form `generate`
    /// produces, and then means exactly itself; nothing panics.
    #[test]
    fn session_id_parse_accepts_only_canonical_ids(s in id_like()) {
        if let Ok(id) = SessionId::parse(&s) {
            prop_assert_eq!(id.expose(), s.as_str());
            prop_assert_eq!(s.len(), 32);
            prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }

    /// A stored key is accepted only as the 64 lowercase hex digits a key
    /// prints as, and then parses back to the same key.
    #[test]
    fn session_key_parse_accepts_only_canonical_keys(s in key_like()) {
        if let Ok(key) = SessionKey::parse(&s) {
            prop_assert_eq!(key.as_str(), s.as_str());
            prop_assert!(s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    }

    /// Any bytes given to the record decoder: a typed error naming the key,
    /// or a record that encodes and decodes back to itself.
    #[test]
    fn record_decode_never_panics_and_what_it_accepts_is_stable(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            "\\{\"data\":\"\\PC{0,40}\",\"created_at\":-?[0-9]{1,20},\"expires_at\":-?[0-9]{1,20},\"version\":-?[0-9]{1,21}\\}"
                .prop_map(String::into_bytes),
        ]
    ) {
        let key = SessionId::generate().unwrap().key();
        match Record::decode(&key, &bytes) {
            Ok(record) => {
                let again = Record::decode(&key, &record.encode().unwrap()).unwrap();
                prop_assert_eq!(again, record);
            }
            Err(session_core::Error::Decode { key: named, .. }) => {
                prop_assert_eq!(named, key.as_str());
            }
            Err(other) => prop_assert!(false, "not a decode error: {other:?}"),
        }
    }

    /// Every record round-trips exactly through the canonical encoding;
    /// an encoding with one bit flipped is an error or a record that is
    /// itself stable (JSON has no checksum: a flipped digit is another
    /// valid record, which is why stores that need integrity keep it
    /// elsewhere), never a panic.
    #[test]
    fn records_round_trip_and_damaged_encodings_are_errors_or_stable(
        record in record(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let key = SessionId::generate().unwrap().key();
        let bytes = record.encode().unwrap();
        prop_assert_eq!(Record::decode(&key, &bytes).unwrap(), record);
        let mut damaged = bytes.clone();
        let at = flip.index(damaged.len());
        damaged[at] ^= 1 << bit;
        if let Ok(read) = Record::decode(&key, &damaged) {
            let reread = Record::decode(&key, &read.encode().unwrap()).unwrap();
            prop_assert_eq!(reread, read);
        }
    }
}

//! The record a store keeps under a key.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Data, EncodedData, Error, Principal, Result, SessionKey, Timestamp};

/// What a store keeps under a [`SessionKey`].
///
/// ```
/// use std::time::Duration;
/// use session_core::{Record, Timestamp};
///
/// let mut data = session_core::Data::new();
/// data.insert("views".into(), 1.into());
/// let record = Record::new(data, Duration::from_secs(1800));
/// assert!(record.is_live_at(Timestamp::now()));
/// assert_eq!(record.version, 0);
///
/// // Byte-oriented stores can use the canonical encoding.
/// let key = session_core::SessionId::generate()?.key();
/// let bytes = record.encode()?;
/// assert_eq!(Record::decode(&key, &bytes)?, record);
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Record {
    /// The session's data.
    pub data: Data,
    /// When the session was first created (for an absolute lifetime limit).
    pub created_at: Timestamp,
    /// The record is live while `now < expires_at`.
    pub expires_at: Timestamp,
    /// Maintained by the store: [`SessionStore::update`](crate::SessionStore::update)
    /// stores `expected_version + 1`; `create`, `save` store it as given.
    pub version: u64,
    /// Who the session belongs to, if anyone has logged in with it: stored
    /// and returned like the rest of the record by every store, and indexed
    /// by stores that implement [`PrincipalIndex`](crate::PrincipalIndex).
    /// `touch` keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
}

impl Record {
    /// A record created now, expiring `ttl` from now, at version 0.
    #[must_use]
    pub fn new(data: impl Into<Data>, ttl: Duration) -> Self {
        let now = Timestamp::now();
        Self::with_times(data, now, now + ttl)
    }

    /// A record with explicit times, at version 0.
    #[inline] // called by every store on every decode: inline across crates
    #[must_use]
    pub fn with_times(data: impl Into<Data>, created_at: Timestamp, expires_at: Timestamp) -> Self {
        Self {
            data: data.into(),
            created_at,
            expires_at,
            version: 0,
            principal: None,
        }
    }

    /// The same record at another version.
    #[inline] // called by every store on every decode: inline across crates
    #[must_use]
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// The same record belonging to `principal` (or to no one).
    #[inline] // called by every store on every decode: inline across crates
    #[must_use]
    pub fn with_principal(mut self, principal: Option<Principal>) -> Self {
        self.principal = principal;
        self
    }

    /// Whether the record is live at `now` (`now < expires_at`).
    #[must_use]
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_after(now)
    }

    /// Whether the record is live by this process's clock.
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.is_live_at(Timestamp::now())
    }

    /// The canonical encoding, a JSON object, for stores that keep bytes:
    /// the times, the version, and the data as its JSON text (a string, so
    /// the envelope adds no nesting and data as deep as
    /// [`Data::MAX_DEPTH`] reads back).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the data nests deeper than [`Data::MAX_DEPTH`].
    pub fn encode(&self) -> Result<Vec<u8>> {
        let data = self.data.encoded()?;
        serde_json::to_vec(&Envelope {
            data: data.as_str().into(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            version: self.version,
            principal: self.principal.as_ref().map(|p| p.as_str().into()),
        })
        .map_err(|e| Error::Encode { source: e.into() })
    }

    /// Decode what [`encode`](Self::encode) produced.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] naming `key` if `bytes` are not a record.
    pub fn decode(key: &SessionKey, bytes: &[u8]) -> Result<Self> {
        let envelope: Envelope<'_> =
            serde_json::from_slice(bytes).map_err(|e| Error::decode(key, e))?;
        Ok(Self {
            data: Self::decode_data(key, envelope.data.as_bytes())?,
            created_at: envelope.created_at,
            expires_at: envelope.expires_at,
            version: envelope.version,
            principal: envelope
                .principal
                .map(|name| Principal::stored(key, name))
                .transpose()?,
        })
    }

    /// Encode only the data, as a JSON text, for stores that keep the times
    /// and version in their own columns or fields. The same as
    /// [`Data::encoded`]: data that was encoded before and not changed since
    /// is not encoded again.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the data nests deeper than [`Data::MAX_DEPTH`].
    pub fn encode_data(data: &Data) -> Result<EncodedData> {
        data.encoded()
    }

    /// Decode what [`encode_data`](Self::encode_data) produced, after it
    /// went through a backend: the text is checked here, so bad stored data
    /// is an error of the `load` that met it.
    ///
    /// Checked, not decoded: the returned [`Data`] keeps the text and builds
    /// its map when the application first reads it (a map costs several
    /// times the check), and a session saved back unchanged writes the same
    /// text without encoding it again.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] naming `key` if `text` is not a JSON object that
    /// [`Data`] can hold.
    pub fn decode_data(key: &SessionKey, text: &[u8]) -> Result<Data> {
        let text = std::str::from_utf8(text).map_err(|e| Error::decode(key, e))?;
        EncodedData::checked(text)
            .map(Data::from)
            .map_err(|e| Error::decode(key, e))
    }
}

/// The canonical encoding of a [`Record`]: the data as JSON text.
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: std::borrow::Cow<'a, str>,
    created_at: Timestamp,
    expires_at: Timestamp,
    version: u64,
    /// Absent when the session has no principal, so such records encode as
    /// they did before principals existed.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    principal: Option<std::borrow::Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionId;
    use serde_json::json;

    #[test]
    fn is_live_follows_the_process_clock() {
        let now = Timestamp::now();
        let later = Record::with_times(Data::new(), now, now + Duration::from_secs(60));
        let earlier = Record::with_times(Data::new(), now, now - Duration::from_secs(60));
        assert!(later.is_live());
        assert!(!earlier.is_live());
    }

    #[test]
    fn canonical_encoding_round_trips_extreme_values() {
        let data = json!({
            "max": u64::MAX, "min": i64::MIN, "float": 0.1_f64, "tiny": 5e-324_f64,
            "nested": {"a": [1, {"b": null}], "empty": {}}, "text": "ünïcødé ✓ \u{0}",
        });
        let serde_json::Value::Object(data) = data else {
            unreachable!()
        };
        let record = Record::with_times(data, Timestamp::from_millis(1), Timestamp::from_millis(2))
            .with_version(u64::MAX)
            .with_principal(Some(Principal::new("ünï:42").unwrap()));
        let key = SessionId::generate().unwrap().key();
        assert_eq!(
            Record::decode(&key, &record.encode().unwrap()).unwrap(),
            record
        );
        let text = Record::encode_data(&record.data).unwrap();
        assert_eq!(
            Record::decode_data(&key, text.as_bytes()).unwrap(),
            record.data
        );
    }

    #[test]
    fn data_as_deep_as_the_limit_round_trips_and_deeper_is_an_encode_error() {
        let nested = |depth: usize| {
            let mut value = json!({});
            for _ in 1..depth {
                value = json!({ "c": value });
            }
            let serde_json::Value::Object(map) = value else {
                unreachable!()
            };
            Record::new(map, std::time::Duration::from_secs(60))
        };
        let key = SessionId::generate().unwrap().key();
        let deepest = nested(Data::MAX_DEPTH);
        assert_eq!(
            Record::decode(&key, &deepest.encode().unwrap()).unwrap(),
            deepest
        );
        let too_deep = nested(Data::MAX_DEPTH + 1);
        assert!(matches!(too_deep.encode(), Err(Error::Encode { .. })));
        assert!(matches!(
            Record::encode_data(&too_deep.data),
            Err(Error::Encode { .. })
        ));
    }

    #[test]
    fn garbage_is_a_decode_error_naming_the_key() {
        let key = SessionId::generate().unwrap().key();
        let err = Record::decode(&key, b"\xff not json").unwrap_err();
        assert!(matches!(&err, Error::Decode { key: k, .. } if k == key.as_str()));
        assert!(err.to_string().contains(key.as_str()));
        assert!(Record::decode_data(&key, b"[1,2]").is_err());
        let bad_principal =
            br#"{"data":"{}","created_at":1,"expires_at":2,"version":0,"principal":""}"#;
        let err = Record::decode(&key, bad_principal).unwrap_err();
        assert!(matches!(&err, Error::Decode { key: k, .. } if k == key.as_str()));
    }

    #[test]
    fn a_record_without_principal_encodes_as_before() {
        let record = Record::with_times(
            Data::new(),
            Timestamp::from_millis(1),
            Timestamp::from_millis(2),
        );
        assert_eq!(
            record.encode().unwrap(),
            br#"{"data":"{}","created_at":1,"expires_at":2,"version":0}"#
        );
    }
}

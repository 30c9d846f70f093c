//! Reading rows back into keys and records; anything unreadable is
//! [`Error::Decode`] naming the key.

use mysql_async::{Value, from_value_opt};
use session_core::header::Header;
use session_core::{Error, Principal, Record, Result, SessionKey};

use crate::BACKEND;

/// The key stored in a `BINARY(32)` column.
pub(crate) fn key_from_value(value: Value) -> Result<SessionKey> {
    match value {
        Value::Bytes(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
            Ok(raw) => Ok(SessionKey::from_bytes(raw)),
            Err(_) => Err(Error::InvalidKey {
                key: format!("{} bytes", bytes.len()),
                reason: "a stored key is not 32 bytes",
            }),
        },
        other => Err(Error::backend(
            BACKEND,
            format!("a stored key is not bytes: {other:?}"),
        )),
    }
}

/// A record from `data, created_at, expires_at, version, principal`.
pub(crate) fn record_from_values(key: &SessionKey, values: Vec<Value>) -> Result<Record> {
    let mut values = values.into_iter();
    let (Some(data), Some(created_at), Some(expires_at), Some(version), Some(principal)) = (
        values.next(),
        values.next(),
        values.next(),
        values.next(),
        values.next(),
    ) else {
        return Err(Error::decode(key, "the row has too few columns"));
    };
    let data = match data {
        Value::Bytes(bytes) => bytes,
        other => return Err(Error::decode(key, format!("data is not text: {other:?}"))),
    };
    let int = |v: Value| from_value_opt::<i64>(v).map_err(|e| Error::decode(key, e));
    let header = Header {
        created_at: int(created_at)?,
        expires_at: int(expires_at)?,
        version: from_value_opt::<u64>(version).map_err(|e| Error::decode(key, e))?,
    };
    let principal = match principal {
        Value::NULL => None,
        Value::Bytes(bytes) => {
            let name = String::from_utf8(bytes).map_err(|e| Error::decode(key, e))?;
            Some(Principal::stored(key, name)?)
        }
        other => {
            return Err(Error::decode(
                key,
                format!("principal is not bytes: {other:?}"),
            ));
        }
    };
    Ok(header.record(key, &data)?.with_principal(principal))
}

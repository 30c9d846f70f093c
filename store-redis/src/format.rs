//! How a session is stored: one Redis string per session, a fixed-width text
//! header followed by the data as JSON text.
//!
//! ```text
//! s1 00000000000000000007 +0000001764500000000 +0000001764501800000 {"user":"ada"}
//! ^^ ^^^^^^^^^^^^^^^^^^^^ ^^^^^^^^^^^^^^^^^^^^ ^^^^^^^^^^^^^^^^^^^^ ^^^^^^^^^^^^^^
//! |  version (20 digits)  created_at (Unix ms, expires_at (Unix ms, data (JSON)
//! |                       sign + 19 digits)    sign + 19 digits)
//! format tag
//! ```
//!
//! Every field has a fixed width and place, separated by single spaces, so
//! that the scripts can read the version with `GETRANGE` and move
//! `expires_at` with `SETRANGE`, without touching the data. The key itself
//! carries a Redis expiry (`PXAT`/`PEXPIREAT`) at `expires_at - 1`, the
//! last millisecond the record is live.

use std::io::Write;
use std::ops::Range;

use session_core::{Data, Error, Record, Result, SessionKey, Timestamp};

/// The format tag the value starts with.
pub(crate) const TAG: &[u8] = b"s1 ";
/// Where the version is (20 decimal digits, zero-padded).
const VERSION: Range<usize> = 3..23;
/// Where `created_at` is (`+` or `-`, then 19 digits).
const CREATED: Range<usize> = 24..44;
/// Where `expires_at` is (`+` or `-`, then 19 digits): the scripts'
/// `SETRANGE` offset.
pub(crate) const EXPIRES: Range<usize> = 45..65;
/// Length of the header: the data starts here.
pub(crate) const HEADER_LEN: usize = 66;
/// Room reserved for a whole value when a command is built: a value that is
/// larger grows the buffer once.
pub(crate) const VALUE_ROOM: usize = HEADER_LEN + 448;
/// The tag and the version: what the update script compares.
pub(crate) const VERSION_PREFIX_LEN: usize = VERSION.end;

/// The header of a record with these fields.
pub(crate) fn header(
    version: u64,
    created_at: Timestamp,
    expires_at: Timestamp,
) -> [u8; HEADER_LEN] {
    let mut h = [b' '; HEADER_LEN];
    h[..TAG.len()].copy_from_slice(TAG);
    put_unsigned(&mut h[VERSION], version);
    put_signed(&mut h[CREATED], created_at.as_millis());
    put_signed(&mut h[EXPIRES], expires_at.as_millis());
    h
}

/// The tag and version `version` as they start the value: what the update
/// script compares with the stored value's first bytes.
pub(crate) fn version_prefix(version: u64) -> [u8; VERSION_PREFIX_LEN] {
    let mut p = [b' '; VERSION_PREFIX_LEN];
    p[..TAG.len()].copy_from_slice(TAG);
    put_unsigned(&mut p[VERSION], version);
    p
}

/// The `expires_at` field alone, as `touch` writes it over the header.
pub(crate) fn expires_field(expires_at: Timestamp) -> [u8; EXPIRES.end - EXPIRES.start] {
    let mut f = [0; EXPIRES.end - EXPIRES.start];
    put_signed(&mut f, expires_at.as_millis());
    f
}

/// Write the whole value of `record` stored at `version` to `out`.
pub(crate) fn write_value(out: &mut impl Write, version: u64, record: &Record) -> Result<()> {
    // Through `encode_data`: data saved back unchanged is not encoded
    // again, and data nested too deeply to be read back is refused.
    let json = Record::encode_data(&record.data)?;
    out.write_all(&header(version, record.created_at, record.expires_at))
        .map_err(encode_error)?;
    out.write_all(json.as_bytes()).map_err(encode_error)
}

fn encode_error(e: impl Into<session_core::BoxError>) -> Error {
    Error::Encode { source: e.into() }
}

/// Decode a stored value.
pub(crate) fn decode(key: &SessionKey, bytes: &[u8]) -> Result<Record> {
    let header = bytes
        .get(..HEADER_LEN)
        .filter(|h| h.starts_with(TAG))
        .ok_or_else(|| Error::decode(key, "not a session value (no `s1` header)"))?;
    let spaces_in_place = [VERSION.end, CREATED.end, EXPIRES.end]
        .iter()
        .all(|&i| header[i] == b' ');
    let fields = (
        get_unsigned(&header[VERSION]),
        get_signed(&header[CREATED]),
        get_signed(&header[EXPIRES]),
    );
    let (true, Some(version), Some(created_at), Some(expires_at)) =
        (spaces_in_place, fields.0, fields.1, fields.2)
    else {
        return Err(Error::decode(key, "malformed session header"));
    };
    let data: Data = Record::decode_data(key, &bytes[HEADER_LEN..])?;
    Ok(Record::with_times(
        data,
        Timestamp::from_millis(created_at),
        Timestamp::from_millis(expires_at),
    )
    .with_version(version))
}

/// Decode a stored value read in one transaction with its key's Redis
/// expiry (`PEXPIRETIME`, Unix ms; -1 if the key has none).
///
/// The store always writes both together (`SET ... PXAT`, or `SETRANGE`
/// and `PEXPIREAT` in one script), so a header whose `expires_at` is not the
/// key's expiry + 1 was written behind the store's back (or the key's TTL
/// was changed by hand): the stored value is wrong, and which of the two
/// times holds is unknown. It is an error naming the key, never a record:
/// returning it could hand out a session that expired by its own header,
/// and comparing with this process's clock instead would judge liveness by
/// a second clock (Redis's decides everywhere else).
pub(crate) fn decode_live(key: &SessionKey, bytes: &[u8], redis_expiry: i64) -> Result<Record> {
    let record = decode(key, bytes)?;
    if px_at(record.expires_at) == redis_expiry {
        Ok(record)
    } else {
        Err(Error::decode(
            key,
            format!(
                "the header's expires_at ({} ms) disagrees with the key's Redis expiry \
                 (PEXPIRETIME {redis_expiry} ms, expected expires_at - 1)",
                record.expires_at.as_millis()
            ),
        ))
    }
}

/// The Redis expiry (`PXAT`, `PEXPIREAT`) of a record expiring at
/// `expires_at`: the millisecond before it. Redis keeps a key readable
/// while its clock is *at or before* the key's expiry time (it expires a key
/// once `now > when`), while a record is live only while `now < expires_at`;
/// one millisecond earlier, the two rules agree. Redis refuses times before
/// 1 ms after the epoch, all of which are past anyway.
pub(crate) fn px_at(expires_at: Timestamp) -> i64 {
    expires_at.as_millis().saturating_sub(1).max(1)
}

/// Write `n` right-aligned, zero-padded, over all of `out` (20 bytes hold
/// every `u64`).
fn put_unsigned(out: &mut [u8], mut n: u64) {
    for b in out.iter_mut().rev() {
        // `n % 10` is a single digit.
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Write a sign and the zero-padded magnitude of `n` over all of `out`.
fn put_signed(out: &mut [u8], n: i64) {
    if let Some((sign, digits)) = out.split_first_mut() {
        *sign = if n < 0 { b'-' } else { b'+' };
        put_unsigned(digits, n.unsigned_abs());
    }
}

fn get_unsigned(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0_u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

fn get_signed(field: &[u8]) -> Option<i64> {
    let (&sign, digits) = field.split_first()?;
    let magnitude = get_unsigned(digits)?;
    match sign {
        b'+' => i64::try_from(magnitude).ok(),
        b'-' => 0_i64.checked_sub_unsigned(magnitude),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::SessionId;

    fn record(version: u64, created: i64, expires: i64) -> Record {
        let data =
            session_conformance::fixtures::object(serde_json::json!({"max": u64::MAX, "s": "ünï"}));
        Record::with_times(
            data,
            Timestamp::from_millis(created),
            Timestamp::from_millis(expires),
        )
        .with_version(version)
    }

    #[test]
    fn values_round_trip_at_the_extremes() {
        let key = SessionId::generate().unwrap().key();
        for (v, c, e) in [
            (0, 0, 1),
            (u64::MAX, i64::MIN, i64::MAX),
            (7, -1, 1_764_501_800_000),
        ] {
            let r = record(v, c, e);
            let mut bytes = Vec::new();
            write_value(&mut bytes, v, &r).unwrap();
            assert_eq!(&bytes[..VERSION_PREFIX_LEN], &version_prefix(v));
            assert_eq!(&bytes[EXPIRES], &expires_field(r.expires_at));
            assert_eq!(decode(&key, &bytes).unwrap(), r);
        }
    }

    #[test]
    fn the_header_is_readable_text() {
        let mut bytes = Vec::new();
        write_value(&mut bytes, 7, &record(7, 1_764_500_000_000, -5)).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("s1 00000000000000000007 +0000001764500000000 -0000000000000000005 {"),
            "{text}"
        );
    }

    #[test]
    fn malformed_values_are_decode_errors() {
        let key = SessionId::generate().unwrap().key();
        let mut good = Vec::new();
        write_value(&mut good, 1, &record(1, 2, 3)).unwrap();
        let mut overflow = good.clone();
        overflow[VERSION].copy_from_slice(b"99999999999999999999");
        let mut too_small = good.clone();
        too_small[CREATED].copy_from_slice(b"-9223372036854775809");
        let mut no_sign = good.clone();
        no_sign[CREATED.start] = b'0';
        let mut no_space = good.clone();
        no_space[EXPIRES.end] = b'x';
        let mut not_object = good[..HEADER_LEN].to_vec();
        not_object.extend_from_slice(b"[1]");
        for bad in [
            &b"not a session"[..],
            &good[..HEADER_LEN - 1],
            &overflow,
            &too_small,
            &no_sign,
            &no_space,
            &not_object,
            &b"s2"[..],
        ] {
            assert!(
                matches!(decode(&key, bad), Err(Error::Decode { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

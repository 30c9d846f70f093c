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
//! A session that names a principal is tagged `s2` instead, and its
//! principal comes between the header and the data, after its length in
//! bytes (three digits, 001 to 255) and a space:
//!
//! ```text
//! s2 00000000000000000007 +0000001764500000000 +0000001764501800000 007 user:42{"user":"ada"}
//! ```
//!
//! So a session without a principal is stored byte for byte as before
//! principals existed (`s1`), and values written before them read back as
//! sessions without a principal.
//!
//! Every field has a fixed width and place, separated by single spaces, so
//! that the scripts can read the version with `GETRANGE` and move
//! `expires_at` with `SETRANGE`, without touching the data (or the
//! principal). The key itself carries a Redis expiry (`PXAT`/`PEXPIREAT`)
//! at `expires_at - 1`, the last millisecond the record is live.

use std::io::Write;
use std::ops::Range;

use session_core::{Data, Error, Principal, Record, Result, SessionKey, Timestamp};

/// The format tag a session without a principal starts with.
pub(crate) const TAG: &[u8] = b"s1 ";
/// The format tag a session with a principal starts with.
pub(crate) const TAG_PRINCIPAL: &[u8] = b"s2 ";
/// Where the version is (20 decimal digits, zero-padded).
const VERSION: Range<usize> = 3..23;
/// Where `created_at` is (`+` or `-`, then 19 digits).
const CREATED: Range<usize> = 24..44;
/// Where `expires_at` is (`+` or `-`, then 19 digits): the scripts'
/// `SETRANGE` offset.
pub(crate) const EXPIRES: Range<usize> = 45..65;
/// Length of the header: the data (`s1`) or the principal's length (`s2`)
/// starts here.
pub(crate) const HEADER_LEN: usize = 66;
/// Where the principal's length is in an `s2` value (three digits), followed
/// by a space and the principal.
const PRINCIPAL_LEN: Range<usize> = 66..69;
/// Where the principal starts in an `s2` value.
pub(crate) const PRINCIPAL_START: usize = 70;
/// The longest head of a value that holds its header and principal: what
/// the store reads (`GETRANGE 0 HEAD_MAX-1`) when it needs to know whose a
/// session is and nothing else.
pub(crate) const HEAD_MAX: usize = PRINCIPAL_START + Principal::MAX_LEN;
/// Room reserved for a whole value when a command is built: a value that is
/// larger grows the buffer once.
pub(crate) const VALUE_ROOM: usize = HEADER_LEN + 448;
/// Length of the version field, what the update script compares.
pub(crate) const VERSION_LEN: usize = VERSION.end - VERSION.start;

/// The header of a record with these fields, tagged `s2` if it names a
/// principal.
pub(crate) fn header(
    version: u64,
    created_at: Timestamp,
    expires_at: Timestamp,
    with_principal: bool,
) -> [u8; HEADER_LEN] {
    let mut h = [b' '; HEADER_LEN];
    h[..TAG.len()].copy_from_slice(if with_principal { TAG_PRINCIPAL } else { TAG });
    put_unsigned(&mut h[VERSION], version);
    put_signed(&mut h[CREATED], created_at.as_millis());
    put_signed(&mut h[EXPIRES], expires_at.as_millis());
    h
}

/// The version field of `version` (20 digits): what the update script
/// compares with the stored value's (whichever its tag).
pub(crate) fn version_field(version: u64) -> [u8; VERSION_LEN] {
    let mut p = [b'0'; VERSION_LEN];
    put_unsigned(&mut p, version);
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
    let principal = record.principal.as_ref();
    out.write_all(&header(
        version,
        record.created_at,
        record.expires_at,
        principal.is_some(),
    ))
    .map_err(encode_error)?;
    if let Some(principal) = principal {
        // `Principal` holds 1 to 255 bytes: three digits always fit.
        write!(
            out,
            "{:03} {}",
            principal.as_str().len(),
            principal.as_str()
        )
        .map_err(encode_error)?;
    }
    out.write_all(json.as_bytes()).map_err(encode_error)
}

fn encode_error(e: impl Into<session_core::BoxError>) -> Error {
    Error::Encode { source: e.into() }
}

/// The principal's bytes in the first bytes of an `s2` value (at least its
/// header and principal; more is ignored), if they are framed as the format
/// says (the tag, a length of 1 to 255, a space, that many bytes); `None`
/// for an `s1` value or anything else. Whether they are a valid
/// [`Principal`] is [`decode`]'s business.
pub(crate) fn principal_bytes(head: &[u8]) -> Option<&[u8]> {
    if !head.starts_with(TAG_PRINCIPAL) || head.get(PRINCIPAL_LEN.end) != Some(&b' ') {
        return None;
    }
    let len = usize::try_from(get_unsigned(head.get(PRINCIPAL_LEN)?)?).ok()?;
    if !(1..=Principal::MAX_LEN).contains(&len) {
        return None;
    }
    head.get(PRINCIPAL_START..PRINCIPAL_START + len)
}

/// Decode a stored value.
pub(crate) fn decode(key: &SessionKey, bytes: &[u8]) -> Result<Record> {
    let header = bytes
        .get(..HEADER_LEN)
        .filter(|h| h.starts_with(TAG) || h.starts_with(TAG_PRINCIPAL))
        .ok_or_else(|| Error::decode(key, "not a session value (no `s1` or `s2` header)"))?;
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
    let (principal, data_start) = if header.starts_with(TAG) {
        (None, HEADER_LEN)
    } else {
        let name = principal_bytes(bytes)
            .ok_or_else(|| Error::decode(key, "malformed principal after an `s2` header"))?;
        let name = std::str::from_utf8(name)
            .map_err(|_| Error::decode(key, "the principal is not UTF-8"))?;
        (
            Some(Principal::stored(key, name)?),
            PRINCIPAL_START + name.len(),
        )
    };
    let data: Data = Record::decode_data(key, &bytes[data_start..])?;
    Ok(Record::with_times(
        data,
        Timestamp::from_millis(created_at),
        Timestamp::from_millis(expires_at),
    )
    .with_version(version)
    .with_principal(principal))
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

/// Whether the header of `bytes` (a stored value) names exactly the Redis
/// expiry `redis_expiry` (what [`decode_live`] requires), looked at without
/// decoding the rest. `false` for a value without a readable `expires_at`.
pub(crate) fn expiry_agrees(bytes: &[u8], redis_expiry: i64) -> bool {
    bytes
        .get(EXPIRES)
        .and_then(get_signed)
        .is_some_and(|expires_at| px_at(Timestamp::from_millis(expires_at)) == redis_expiry)
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
            assert_eq!(&bytes[VERSION], &version_field(v));
            assert_eq!(&bytes[EXPIRES], &expires_field(r.expires_at));
            assert_eq!(decode(&key, &bytes).unwrap(), r);
            assert_eq!(principal_bytes(&bytes), None);
            for name in ["a", "user:42 ünï", &"x".repeat(255)] {
                let r = r
                    .clone()
                    .with_principal(Some(Principal::new(name).unwrap()));
                let mut bytes = Vec::new();
                write_value(&mut bytes, v, &r).unwrap();
                assert_eq!(&bytes[..3], b"s2 ");
                assert_eq!(&bytes[VERSION], &version_field(v));
                assert_eq!(&bytes[EXPIRES], &expires_field(r.expires_at));
                assert_eq!(principal_bytes(&bytes), Some(name.as_bytes()));
                assert_eq!(
                    principal_bytes(&bytes[..HEAD_MAX.min(bytes.len())]),
                    Some(name.as_bytes())
                );
                assert_eq!(decode(&key, &bytes).unwrap(), r);
            }
        }
    }

    #[test]
    fn a_principal_sits_between_the_header_and_the_data() {
        let r = record(7, 1_764_500_000_000, 1_764_501_800_000)
            .with_principal(Some(Principal::new("user:42").unwrap()));
        let mut bytes = Vec::new();
        write_value(&mut bytes, 7, &r).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with(
                "s2 00000000000000000007 +0000001764500000000 +0000001764501800000 007 user:42{"
            ),
            "{text}"
        );
    }

    #[test]
    fn malformed_principals_are_decode_errors() {
        let key = SessionId::generate().unwrap().key();
        let r = record(1, 2, 3).with_principal(Some(Principal::new("ada").unwrap()));
        let mut good = Vec::new();
        write_value(&mut good, 1, &r).unwrap();
        let with = |at: usize, by: &[u8]| {
            let mut bad = good.clone();
            bad.splice(at..at + by.len(), by.iter().copied());
            bad
        };
        for bad in [
            with(66, b"000"),
            with(66, b"256"),
            with(66, b"00x"),
            with(66, b"004"),
            with(69, b"x"),
            with(70, b"\x01"),
            with(70, b"\xff"),
            good[..71].to_vec(),
        ] {
            assert!(
                matches!(decode(&key, &bad), Err(Error::Decode { .. })),
                "{}",
                String::from_utf8_lossy(&bad)
            );
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

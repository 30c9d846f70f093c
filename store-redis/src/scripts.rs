//! The Lua scripts of the two writes that must look before they write
//! (`update`, `touch`); every other write is one plain command.
//!
//! A session is a Redis string (see [`crate::format`]): a fixed-width header
//! `s1 {version} {created_at} {expires_at} ` and the data as JSON, under a key
//! whose Redis expiry is `expires_at - 1`. Every script touches exactly one
//! key, so it runs unchanged on Redis Cluster. Scripts compare versions as
//! text (Lua numbers are doubles and cannot hold every `u64`) and pass times
//! through to Redis untouched (the Redis expiry is computed by the caller:
//! `expires_at - 1`, see `format::px_at`). `PEXPIREAT` or `SET ... PXAT` with
//! a time that is not in the future deletes the key at once. A key holding
//! another type than a string fails the script with `WRONGTYPE`, which the
//! store reports as undecodable.
//!
//! Both scripts first check the header they read the way `load` does
//! ([`crate::format::decode`] and the key's `PEXPIRETIME`): a value that is
//! not a session, or whose header `expires_at` disagrees with the key's own
//! Redis expiry (written behind the store's back, or its TTL changed by
//! hand), is reported (3) and left alone, never updated or touched into
//! looking valid.

use std::sync::LazyLock;

use redis::Script;

/// The Lua prelude of both scripts: `head` is the stored header (the first
/// 66 bytes), `''` if no live key exists; `corrupt` is true if it is
/// not a well-formed header (the widths, signs and ranges that
/// [`crate::format::decode`] accepts) or if its `expires_at` is not the
/// key's Redis expiry + 1.
///
/// Lua numbers are doubles: the expiry comparison is exact up to 2^53 ms
/// (some 285,000 years after 1970) and within a double's rounding beyond
/// it; field ranges are compared as text (equal widths), so they are exact.
/// One `string.match` with captures checks the whole shape (measured with
/// `INFO commandstats` on a private server: cheaper than a pattern of 59
/// single-digit classes).
const HEAD: &str = r"
local head = redis.call('GETRANGE', KEYS[1], 0, 65)
local corrupt = false
if head ~= '' then
  local v, cs, c, es, e = string.match(head, '^s1 (%d+) ([+-])(%d+) ([+-])(%d+) $')
  corrupt = not v or #v ~= 20 or #c ~= 19 or #e ~= 19
    or v > '18446744073709551615'
    or c > (cs == '+' and '9223372036854775807' or '9223372036854775808')
    or e > (es == '+' and '9223372036854775807' or '9223372036854775808')
    or (es == '+' and tonumber(e) or -tonumber(e)) - 1 ~= redis.call('PEXPIRETIME', KEYS[1])
end
";

/// `update`: replace the live key only if its version is the expected one.
/// Returns 1 (updated), 0 (missing: nothing written), 2 (conflict: nothing
/// written) or 3 (the key holds a value that is not a valid session:
/// nothing written).
///
/// `ARGV`: the expected tag and version as the value starts with them
/// ([`crate::format::version_prefix`]), the new value, its expiry (Unix ms,
/// at least 1, the millisecond before the record's `expires_at`).
pub(crate) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HEAD}{}",
        r"
if head == '' then
  return 0
end
if corrupt then
  return 3
end
if string.sub(head, 1, 23) ~= ARGV[1] then
  return 2
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
"
    ))
});

/// `touch`: move the expiry of a live key, both the key's and the one in the
/// header that `load` returns, without rewriting the data. Returns 1 if it
/// did (also when the new time is past and the key is therefore gone), 0 if
/// no live key exists and 3 if it holds a value that is not a valid session
/// (nothing written either way).
///
/// The key is live once `GETRANGE` found it (a script sees one instant of
/// the server's clock), so `SETRANGE` rewrites the header of that value and
/// `PEXPIREAT` moves its expiry (deleting it if the new time is past).
///
/// `ARGV`: the Redis expiry (Unix ms, the millisecond before `expires_at`)
/// and the header's `expires_at` field ([`crate::format::expires_field`]).
pub(crate) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HEAD}{}",
        r"
if head == '' then
  return 0
end
if corrupt then
  return 3
end
redis.call('SETRANGE', KEYS[1], 45, ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
"
    ))
});

#[cfg(test)]
mod tests {
    use crate::format::{EXPIRES, HEADER_LEN, TAG, VERSION_PREFIX_LEN};

    /// The offsets written into the scripts are the format's.
    #[test]
    fn scripts_use_the_format_offsets() {
        assert_eq!(VERSION_PREFIX_LEN, 23);
        assert_eq!(TAG, b"s1 ");
        assert_eq!(EXPIRES.start, 45);
        assert_eq!(HEADER_LEN, 66);
    }
}

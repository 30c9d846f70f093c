//! The Lua scripts of the two writes that must look before they write
//! (`update`, `touch`); every other operation is one plain command.
//!
//! A session is a Redis string (see [`crate::format`]): a fixed-width header
//! `s1 {version} {created_at} {expires_at} ` and the data as JSON, under a key
//! whose Redis expiry is `expires_at`. Every script touches exactly one key,
//! so it runs unchanged on Redis Cluster, and makes as few `redis.call`s as it
//! can (each costs the server about as much as a command of its own). Scripts
//! compare versions as text (Lua numbers are doubles and cannot hold every
//! `u64`) and pass times through to Redis untouched (the Redis expiry is
//! computed by the caller: `expires_at - 1`, see `store::px_at`).
//! `PEXPIREAT` or `SET ... PXAT` with a time that is not in the future
//! deletes the key at once. A key holding another type than a string fails
//! the script with `WRONGTYPE`, which the store reports as undecodable.

use std::sync::LazyLock;

use redis::Script;

/// `update`: replace the live key only if its version is the expected one.
/// Returns 1 (updated), 0 (missing: nothing written), 2 (conflict: nothing
/// written) or 3 (the key holds a string that is not a session).
///
/// `ARGV`: the expected tag and version as the value starts with them
/// ([`crate::format::version_prefix`]), the new value, its expiry (Unix ms,
/// at least 1, the millisecond before the record's `expires_at`).
pub(crate) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local head = redis.call('GETRANGE', KEYS[1], 0, 22)
if head == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
  return 1
end
if head == '' then
  return 0
end
if #head ~= 23 or string.sub(head, 1, 3) ~= 's1 ' then
  return 3
end
return 2
",
    )
});

/// `touch`: move the expiry of a live key, both the key's and the one in the
/// header that `load` returns, without rewriting the data. Returns 1 if it
/// did (also when the new time is past and the key is therefore gone), 0 if
/// no live key exists (nothing written).
///
/// `PEXPIREAT` answers 0 on a missing or expired key, so a live key is found
/// and moved in one call. If the new time is past, `PEXPIREAT` has deleted
/// the key and `SETRANGE` creates a new 65-byte string: shorter than any
/// session (68 bytes at least), it gets the past expiry too and is gone
/// again before the script ends.
/// Checking that a live key holds a session would cost another call on every
/// touch: a string of another shape under a session key (which `load`
/// reports as undecodable) gets its bytes 45 to 64 overwritten instead.
///
/// `ARGV`: the Redis expiry (Unix ms, the millisecond before `expires_at`)
/// and the header's `expires_at` field ([`crate::format::expires_field`]).
pub(crate) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('PEXPIREAT', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local len = redis.call('SETRANGE', KEYS[1], 45, ARGV[2])
if len < 66 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[1])
end
return 1
",
    )
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

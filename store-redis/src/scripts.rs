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
//! deletes the key at once.
//!
//! Sessions written by earlier versions of this crate are hashes (fields `v`,
//! `c`, `e`, `d`); the scripts still update and touch those (their
//! `GETRANGE`/`SETRANGE` fail with `WRONGTYPE` on a hash, caught by
//! `redis.pcall`), and an update rewrites one as a string.

use std::sync::LazyLock;

use redis::Script;

/// `update`: replace the live key only if its version is the expected one.
/// Returns 1 (updated), 0 (missing: nothing written), 2 (conflict: nothing
/// written) or 3 (the key holds something that is not a session).
///
/// `ARGV`: the expected tag and version as the value starts with them
/// ([`crate::format::version_prefix`]), the new value, its expiry (Unix ms,
/// at least 1, the millisecond before the record's `expires_at`).
pub(crate) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local head = redis.pcall('GETRANGE', KEYS[1], 0, 22)
if head == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
  return 1
end
if head == '' then
  return 0
end
if type(head) == 'table' then
  -- Not a string: a hash written by an earlier version (HGET raises
  -- WRONGTYPE on anything else). Its v is the version without padding.
  local v = redis.call('HGET', KEYS[1], 'v')
  if not v then
    return 3
  end
  local expected = string.gsub(string.sub(ARGV[1], 4), '^0+(%d)', '%1')
  if v ~= expected then
    return 2
  end
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
  return 1
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
/// `ARGV`: the Redis expiry (Unix ms, the millisecond before `expires_at`),
/// the header's `expires_at` field ([`crate::format::expires_field`]), and
/// `expires_at` itself (Unix ms, for a hash's `e`).
pub(crate) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('PEXPIREAT', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local len = redis.pcall('SETRANGE', KEYS[1], 45, ARGV[2])
if type(len) == 'table' then
  -- A hash written by an earlier version (HSET raises WRONGTYPE on
  -- anything else).
  redis.call('HSET', KEYS[1], 'e', ARGV[3])
elseif len < 66 then
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

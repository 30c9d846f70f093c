//! The Lua scripts that make every write one atomic step on the server.
//!
//! A session is a Redis hash under one key, with the fields
//! `v` (version, decimal), `c` (`created_at`, Unix ms), `e` (`expires_at`,
//! Unix ms) and `d` (the data as JSON text), and a key expiry set with
//! `PEXPIREAT` to `e`. Every script touches exactly one key, so it runs
//! unchanged on Redis Cluster. Scripts compare versions as strings (Lua
//! numbers are doubles and cannot hold every `u64`) and pass times through to
//! `PEXPIREAT` untouched. `PEXPIREAT` with a time that is not in the future
//! deletes the key at once.

use std::sync::LazyLock;

use redis::Script;

/// `create`: write only if no live key exists (an expired key is invisible to
/// `EXISTS`, so it does not count). Returns 1 if written, 0 on a collision.
///
/// `ARGV`: version, created_at, expires_at, data.
pub(crate) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'c', ARGV[2], 'e', ARGV[3], 'd', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
",
    )
});

/// `save`: unconditional replace. Returns 1.
///
/// `ARGV`: version, created_at, expires_at, data.
pub(crate) static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'c', ARGV[2], 'e', ARGV[3], 'd', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
",
    )
});

/// `update`: replace the live key only if its version is `ARGV[1]`.
/// Returns 1 (updated), 0 (missing: nothing written), 2 (conflict: nothing
/// written) or 3 (the key holds a hash without a version: corrupt).
///
/// `ARGV`: expected version, new version, created_at, expires_at, data.
pub(crate) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local v = redis.call('HGET', KEYS[1], 'v')
if not v then
  return 3
end
if v ~= ARGV[1] then
  return 2
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'c', ARGV[3], 'e', ARGV[4], 'd', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return 1
",
    )
});

/// `touch`: move the expiry of a live key (both the key's TTL and the `e`
/// field that `load` returns). Returns 1 if it did, 0 if no live key exists.
///
/// `ARGV`: expires_at.
pub(crate) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'e', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
",
    )
});

//! The Lua scripts of the two writes that must look before they write
//! (`update`, `touch`), and of the principal index ([`crate::index`]);
//! every other write is one plain command.
//!
//! A session is a Redis string (see [`crate::format`]): a fixed-width header
//! `s1 {version} {created_at} {expires_at} ` and the data as JSON (`s2`, and
//! the principal between the two, if it names one), under a key whose Redis
//! expiry is `expires_at - 1`. Every script touches exactly one key, so it
//! runs unchanged on Redis Cluster. Scripts compare versions as
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

/// The Lua prelude of both scripts, with `FAST` (a Lua expression) in
/// place: `head` is the stored header (the first 66 bytes), `''` if no live
/// key exists; `corrupt` is true if it is not a well-formed header (the
/// widths, signs and ranges that [`crate::format::decode`] accepts), if its
/// `expires_at` is not the key's Redis expiry + 1, or (`s2`) if the
/// principal after it is not framed as the format says or holds a control
/// character; `principal` is the principal of an `s2` value (`false` for
/// `s1`). Only an `s2` value costs the two further `GETRANGE`s.
///
/// `FAST` (which may use `p`, the key's `PEXPIRETIME`) is a cheaper proof
/// that the header is well formed, by comparing it with strings of known
/// good form (a script that knows some of the fields: `update`). When it holds, the full check is skipped; when it
/// does not, the full check decides. So it must never hold for a header
/// the full check refuses; it may fail for a good one.
///
/// Lua numbers are doubles: the expiry comparison is exact up to 2^53 ms
/// (some 285,000 years after 1970) and within a double's rounding beyond
/// it; field ranges are compared as text (equal widths), so they are exact.
/// One `string.match` with captures checks the whole shape: Lua's pattern
/// matching costs some 10 to 30 ns a character on the server (measured
/// with a loop inside one `EVAL`: about 0.8 µs for this check, more for a
/// pattern of 59 single-digit classes), which is why `FAST` compares plain
/// strings instead.
fn head(fast: &str) -> String {
    format!(
        r"
local head = redis.call('GETRANGE', KEYS[1], 0, 65)
local corrupt = false
local principal = false
if head ~= '' then
  local p = redis.call('PEXPIRETIME', KEYS[1])
  if not ({fast}) then
    local t, v, cs, c, es, e = string.match(head, '^s([12]) (%d+) ([+-])(%d+) ([+-])(%d+) $')
    corrupt = not v or #v ~= 20 or #c ~= 19 or #e ~= 19
      or v > '18446744073709551615'
      or c > (cs == '+' and '9223372036854775807' or '9223372036854775808')
      or e > (es == '+' and '9223372036854775807' or '9223372036854775808')
      or (es == '+' and tonumber(e) or -tonumber(e)) - 1 ~= p
  end
end
if head ~= '' and not corrupt and string.byte(head, 2) == 50 then
  local n = tonumber(string.match(redis.call('GETRANGE', KEYS[1], 66, 69), '^(%d%d%d) $'))
  if n and n >= 1 and n <= 255 then
    principal = redis.call('GETRANGE', KEYS[1], 70, 69 + n)
  end
  corrupt = not principal or #principal ~= n
    or string.find(principal, '[%c\127]') ~= nil
    or string.find(principal, '\194[\128-\159]') ~= nil
end
"
    )
}

/// `update`'s `FAST` proof (see [`head`]): the tag is `s1 ` or `s2 `, the
/// version is the expected one (`ARGV[1]`, 20 digits), `created_at` and the
/// spaces around it are those of the new value (`ARGV[2]`, written by the
/// store: a session keeps its `created_at`), and `expires_at` and the space
/// after it are the key's Redis expiry + 1 as the store formats it (a
/// sign and 19 digits; only for expiries below 2^53 ms, where a double is
/// exact). Past the tag (a 4-character pattern), all comparisons are plain
/// `string.find`s at a fixed place. A header that differs in any of them (a
/// conflict, a `created_at` changed by the caller, corruption) gets the
/// full check.
const UPDATE_FAST: &str = r"string.find(head, '^s[12] ')
  and string.find(head, ARGV[1], 4, true) == 4
  and string.find(head, string.sub(ARGV[2], 24, 45), 24, true) == 24
  and p >= 1 and p < 9007199254740992
  and string.find(head, string.format('+%019d ', p + 1), 46, true) == 46";

/// `update`: replace the live key only if its version is the expected one.
/// Returns 1 (updated), 0 (missing: nothing written), 2 (conflict: nothing
/// written) or 3 (the key holds a value that is not a valid session:
/// nothing written).
///
/// `ARGV`: the expected version as the value holds it (20 digits,
/// [`crate::format::version_field`], compared whichever the tag), the new
/// value, its expiry (Unix ms, at least 1, the millisecond before the
/// record's `expires_at`).
pub(crate) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        head(UPDATE_FAST),
        r"
if head == '' then
  return 0
end
if corrupt then
  return 3
end
if string.find(head, ARGV[1], 4, true) ~= 4 then
  return 2
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
"
    ))
});

/// `touch`: move the expiry of a live key, both the key's and the one in the
/// header that `load` returns, without rewriting the data (nor the
/// principal). Returns 1 if it did (also when the new time is past and the
/// key is therefore gone) and the session has no principal, the principal
/// (a string) if it did and the session has one (the store then raises its
/// index entry), 0 if no live key exists and 3 if it holds a value that is
/// not a valid session (nothing written either way).
///
/// The key is live once `GETRANGE` found it (a script sees one instant of
/// the server's clock), so `SETRANGE` rewrites the header of that value and
/// `PEXPIREAT` moves its expiry (deleting it if the new time is past).
///
/// `ARGV`: the Redis expiry (Unix ms, the millisecond before `expires_at`)
/// and the header's `expires_at` field ([`crate::format::expires_field`]).
pub(crate) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        head("false"),
        r"
if head == '' then
  return 0
end
if corrupt then
  return 3
end
redis.call('SETRANGE', KEYS[1], 45, ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return principal or 1
"
    ))
});

/// Announce a session in its principal's index (`KEYS[1]`, a sorted set):
/// member `ARGV[2]` (the session key) gets the score `ARGV[1]` (the
/// `expires_at` of the write, Unix ms), or its current score + 1 if that is
/// not lower. So **every announcement changes the score**: a reader that
/// removes an entry only if its score is still the one it saw
/// ([`FORGET`]) never removes one a write announced meanwhile, even a write
/// of an earlier or equal expiry. The score is thereby at least the
/// highest `expires_at` ever announced for the member (a millisecond more
/// per announcement that did not raise it). Scores are formatted with 17
/// significant digits, exact for every double.
///
/// Sent as `EVAL` (the script's text) rather than `EVALSHA`: it may run in a
/// pipeline before the record's write, where a `NOSCRIPT` would let the write
/// through unannounced.
pub(crate) static ANNOUNCE: &str = r"
local e = tonumber(ARGV[1])
local s = redis.call('ZSCORE', KEYS[1], ARGV[2])
if s then
  s = tonumber(s)
  if e <= s then
    e = s + 1
  end
end
redis.call('ZADD', KEYS[1], string.format('%.17g', e), ARGV[2])
return 1
";

/// Remove entries from a principal's index (`KEYS[1]`) that a reader found
/// stale (their session missing, expired, or naming another principal or
/// none), each only if its score is still the one the reader saw: an entry
/// announced again since ([`ANNOUNCE`]) belongs to a write that may have
/// made it current and stays. `ARGV`: member, score, member, score, ...
/// Returns how many were removed. Redis deletes the sorted set with its
/// last member.
pub(crate) static FORGET: &str = r"
local n = 0
for i = 1, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[i + 1]) then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return n
";

/// `destroy_all_of` for one session (`KEYS[1]`): delete it if it is live
/// and names the principal `ARGV[1]`, in one step, so a session written
/// over by another principal meanwhile is left alone. Returns 1 if it
/// deleted it, 0 otherwise.
pub(crate) static DESTROY_IF_OWNED: &str = r"
local head = redis.call('GETRANGE', KEYS[1], 0, 69 + #ARGV[1])
if string.sub(head, 1, 3) == 's2 '
  and string.sub(head, 67, 70) == string.format('%03d ', #ARGV[1])
  and string.sub(head, 71) == ARGV[1] then
  redis.call('UNLINK', KEYS[1])
  return 1
end
return 0
";

#[cfg(test)]
mod tests {
    use crate::format::{EXPIRES, HEADER_LEN, PRINCIPAL_START, TAG, TAG_PRINCIPAL, VERSION_LEN};

    /// The offsets written into the scripts are the format's.
    #[test]
    fn scripts_use_the_format_offsets() {
        assert_eq!(VERSION_LEN, 20);
        assert_eq!(TAG, b"s1 ");
        assert_eq!(TAG_PRINCIPAL, b"s2 ");
        assert_eq!(EXPIRES.start, 45);
        assert_eq!(HEADER_LEN, 66);
        assert_eq!(PRINCIPAL_START, 70);
    }
}

//! The principal index ([`PrincipalIndex`]): per principal, a sorted set of
//! the keys of its sessions, kept next to the sessions in the namespace.
//!
//! **Where.** `{prefix}:principal:{sha256 of the principal, hex}:sessions`,
//! a sorted set whose members are session keys (64 hex digits) and whose
//! scores are at least the highest `expires_at` (Unix ms) any write
//! announced for that session. The name never ends in 64 hex digits, so it
//! is no session key of any namespace (`{ns}:{key}`, also not of a namespace
//! named `{prefix}:principal:…`), and no index of another namespace either;
//! `list`, `len` and `clear`'s session walk skip it. The principal is
//! hashed so that any principal makes a key of fixed length without glob
//! or hash-tag characters; on Cluster each principal's index lands in its
//! own slot, as its sessions land in theirs.
//!
//! **Kept a superset of the live sessions.** A session and its principal's
//! index live in different slots, so no script can write both. A write of a
//! record naming principal P (`create`, `update`, `save`) first announces
//! the session in P's index ([`scripts::ANNOUNCE`]), then writes the record,
//! then announces it again; `touch` of a session with a principal announces
//! it after moving its expiry (its script returns the principal). On a
//! standalone server (or behind Sentinel) the three commands go in one
//! pipeline, which Redis runs in order; on Cluster they are three round
//! trips, each awaited before the next. A crash or a failed conditional
//! write therefore leaves an extra entry, never a missing one. A write
//! without principal sends exactly what it sent before principals existed.
//!
//! **Read exactly.** Nothing is removed from an index without reading the
//! session: `sessions_of` reads every entry's session and returns those
//! live under P; entries whose session is missing, expired, or names
//! another principal or none are removed with [`scripts::FORGET`], each only
//! if its score is still the one read. Every announcement changes the
//! score, so an entry announced by a write that runs between the read of
//! the entry and its removal stays; the second announcement, after the
//! record's write, covers a write whose record the reader read before it
//! was written but whose first announcement it saw (the reader's removal
//! then comes before that second announcement, which adds the entry back,
//! or after it, and then fails on the score). `destroy_all_of` deletes
//! each session still naming P in one script ([`scripts::DESTROY_IF_OWNED`])
//! and forgets its entry the same way. `delete_expired` walks the
//! namespace's indexes (`SCAN`, on every primary on Cluster) and checks the
//! entries whose score has passed by this process's clock, which is what
//! empties the index of a principal that never comes back.

use redis::{Cmd, RedisError, Script, Value};
use session_core::{
    Error, Principal, PrincipalIndex, Record, Result, SessionKey, Timestamp, async_trait,
};
use sha2::{Digest as _, Sha256};

use crate::format;
use crate::scan::{self, Scan};
use crate::store::{backend, is_noscript, keyed};
use crate::{BACKEND, RedisConnection, RedisStore, scripts};

/// The middle and end of an index key's name.
const INDEX_INFIX: &str = ":principal:";
const INDEX_SUFFIX: &str = ":sessions";

/// How many sessions one round trip reads, deletes or checks, and how many
/// entries one [`scripts::FORGET`] removes: bounds a round trip's size
/// and the time the server spends on one script.
const BATCH: usize = 500;

/// The highest score announced, in ms (about the year 144,000): a double
/// holds every integer up to 2^53, so a score this high still grows by
/// one per announcement. A session expiring later is announced with this
/// score, which only makes `delete_expired` look at it early.
const MAX_SCORE: i64 = 1 << 52;

/// One entry of an index as read: the member and its score, as Redis
/// wrote them (the score is compared numerically by [`scripts::FORGET`]).
#[derive(Debug, Clone)]
struct Entry {
    member: String,
    score: String,
}

impl RedisStore {
    /// The Redis key of `principal`'s index in this namespace:
    /// `{prefix}:principal:{sha256(principal) in hex}:sessions`, a sorted set
    /// of session keys (see the crate documentation). For operators and
    /// tests; the store keeps it by itself.
    #[must_use]
    pub fn index_key(&self, principal: &Principal) -> String {
        let mut name = String::with_capacity(
            self.namespace().len() + INDEX_INFIX.len() + 64 + INDEX_SUFFIX.len(),
        );
        name.push_str(self.namespace());
        name.push_str(INDEX_INFIX);
        name.push_str(&hash(principal.as_str().as_bytes()));
        name.push_str(INDEX_SUFFIX);
        name
    }

    /// The principal's hash in the name of one of this namespace's index
    /// keys, or `None` if `name` is not one.
    pub(crate) fn index_hash<'a>(&self, name: &'a str) -> Option<&'a str> {
        let hex = name
            .strip_prefix(self.namespace())?
            .strip_prefix(INDEX_INFIX)?
            .strip_suffix(INDEX_SUFFIX)?;
        let is_hash = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        is_hash.then_some(hex)
    }
}

/// SHA-256 of `bytes`, in lower-case hex.
fn hash(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    Sha256::digest(bytes)
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

/// The `SCAN MATCH` pattern of `store`'s index keys (the names it returns
/// are checked again by [`RedisStore::index_hash`]).
pub(crate) fn pattern(store: &RedisStore) -> String {
    let mut pattern = scan::escape_glob(store.namespace());
    pattern.push_str(INDEX_INFIX);
    pattern.push('*');
    pattern.push_str(INDEX_SUFFIX);
    pattern
}

/// `EVAL` of `script` on `key` (never `NOSCRIPT`: see [`scripts::ANNOUNCE`]).
fn eval(script: &str, key: &str) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(1).arg(key);
    cmd
}

/// The command announcing `key`'s session, expiring at `expires_at`, in
/// `principal`'s index.
fn announce_cmd(
    store: &RedisStore,
    principal: &Principal,
    key: &SessionKey,
    expires_at: Timestamp,
) -> Cmd {
    let score = expires_at.as_millis().clamp(-MAX_SCORE, MAX_SCORE);
    let mut cmd = eval(scripts::ANNOUNCE, &store.index_key(principal));
    cmd.arg(score).arg(key.as_str());
    cmd
}

/// An answer about `principal`'s index that is an error: a `WRONGTYPE`
/// (something else than a sorted set was written under the index's name)
/// is reported as undecodable, naming the session being written.
fn index_error(key: &SessionKey, e: RedisError) -> Error {
    if e.code() == Some("WRONGTYPE") {
        Error::decode(
            key,
            "its principal's index holds another type than a sorted set",
        )
    } else {
        backend(e)
    }
}

/// Announce `key`'s session in `principal`'s index (after a `touch`).
pub(crate) async fn announce(
    store: &RedisStore,
    principal: &Principal,
    key: &SessionKey,
    expires_at: Timestamp,
) -> Result<()> {
    let _: Value = announce_cmd(store, principal, key, expires_at)
        .query_async(&mut store.conn())
        .await
        .map_err(|e| index_error(key, e))?;
    Ok(())
}

/// A write (`cmd`, on `key`; `script` is the script it runs if it is an
/// `EVALSHA`) of a record naming `principal`, announced before and after
/// (see the module documentation). Returns the write's reply.
pub(crate) async fn announced_write(
    store: &RedisStore,
    principal: &Principal,
    key: &SessionKey,
    expires_at: Timestamp,
    cmd: &Cmd,
    script: Option<&Script>,
) -> Result<Value> {
    let announce = announce_cmd(store, principal, key, expires_at);
    let mut conn = store.conn();
    if let RedisConnection::Cluster(_) = conn {
        // Different slots, maybe different nodes: each step is awaited, so
        // the next one starts only once the previous one is applied.
        let _: Value = announce
            .query_async(&mut conn)
            .await
            .map_err(|e| index_error(key, e))?;
        let reply = match script {
            Some(script) => store.run_script_value(script, cmd, key).await?,
            None => cmd
                .query_async(&mut conn)
                .await
                .map_err(|e| keyed(key, e))?,
        };
        let _: Value = announce
            .query_async(&mut conn)
            .await
            .map_err(|e| index_error(key, e))?;
        return Ok(reply);
    }
    // One connection: Redis runs a pipeline's commands in the order sent.
    let pipe = scan::pipeline([announce.clone(), cmd.clone(), announce], false);
    let mut answers: Vec<Value> = pipe.query_async(&mut conn).await.map_err(backend)?;
    if let (Some(script), Some(Value::ServerError(e))) = (script, answers.get(1))
        && is_noscript(&e.clone().into())
    {
        // The write did not run (the announcements did, harmlessly): load
        // its script and send all three again.
        script.load_async(&mut conn).await.map_err(backend)?;
        answers = pipe.query_async(&mut conn).await.map_err(backend)?;
    }
    let Ok([before, reply, after]) = <[Value; 3]>::try_from(answers) else {
        return Err(Error::backend(
            BACKEND,
            "a pipeline of 3 commands answered another number of replies",
        ));
    };
    for answer in [before, after] {
        if let Value::ServerError(e) = answer {
            return Err(index_error(key, e.into()));
        }
    }
    match reply {
        Value::ServerError(e) => Err(keyed(key, e.into())),
        reply => Ok(reply),
    }
}

/// Every entry of the index `name`, with its score.
async fn entries(store: &RedisStore, name: &str) -> Result<Vec<Entry>> {
    let reply: Value = redis::cmd("ZRANGE")
        .arg(name)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut store.conn())
        .await
        .map_err(backend)?;
    parse_entries(reply)
}

/// The entries of `name` whose score is at most `now` (ms), from the
/// `offset`-th on, at most [`BATCH`].
async fn due_entries(
    store: &RedisStore,
    name: &str,
    now: i64,
    offset: usize,
) -> Result<Vec<Entry>> {
    let reply: Value = redis::cmd("ZRANGE")
        .arg(name)
        .arg("-inf")
        .arg(now)
        .arg("BYSCORE")
        .arg("LIMIT")
        .arg(offset)
        .arg(BATCH)
        .arg("WITHSCORES")
        .query_async(&mut store.conn())
        .await
        .map_err(backend)?;
    parse_entries(reply)
}

/// A `ZRANGE … WITHSCORES` reply: a flat array of members and scores
/// (RESP2) or an array of pairs (RESP3).
fn parse_entries(reply: Value) -> Result<Vec<Entry>> {
    let bad = || Error::backend(BACKEND, "ZRANGE WITHSCORES answered something else");
    let text = |value: Value| -> Result<String> {
        match value {
            Value::BulkString(bytes) => String::from_utf8(bytes).map_err(|_| bad()),
            Value::SimpleString(s) => Ok(s),
            Value::Double(d) => Ok(d.to_string()),
            _ => Err(bad()),
        }
    };
    let Value::Array(items) = reply else {
        return Err(bad());
    };
    let mut entries = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let Some(item) = items.next() {
        let (member, score) = match item {
            Value::Array(pair) => {
                let Ok([member, score]) = <[Value; 2]>::try_from(pair) else {
                    return Err(bad());
                };
                (member, score)
            }
            member => (member, items.next().ok_or_else(bad)?),
        };
        entries.push(Entry {
            member: text(member)?,
            score: text(score)?,
        });
    }
    Ok(entries)
}

/// Remove `stale` entries from the index `name`, each only if its score is
/// still the one read ([`scripts::FORGET`]).
async fn forget(store: &RedisStore, name: &str, stale: &[Entry]) -> Result<()> {
    for chunk in stale.chunks(BATCH) {
        let mut cmd = eval(scripts::FORGET, name);
        for entry in chunk {
            cmd.arg(&entry.member).arg(&entry.score);
        }
        store
            .bounded("forget", async {
                let _: Value = cmd.query_async(&mut store.conn()).await.map_err(backend)?;
                Ok(())
            })
            .await?;
    }
    Ok(())
}

/// One command per key, sent together ([`scan::per_key`]): each key's
/// answers.
async fn per_key(
    store: &RedisStore,
    operation: &'static str,
    groups: Vec<Vec<Cmd>>,
    atomic: bool,
) -> Result<Vec<redis::RedisResult<Vec<Value>>>> {
    store
        .bounded(operation, scan::per_key(store, groups, atomic))
        .await
}

/// The first bytes of a session's value (its header and principal), `None`
/// if no live session is there or it holds no string.
fn head_of(answer: redis::RedisResult<Vec<Value>>) -> Option<Vec<u8>> {
    match answer.ok()?.into_iter().next()? {
        Value::BulkString(bytes) if !bytes.is_empty() => Some(bytes),
        _ => None,
    }
}

/// `GETRANGE` of what holds a session's principal.
fn head_cmd(store: &RedisStore, key: &SessionKey) -> Cmd {
    let mut cmd = store.key_cmd("GETRANGE", key, 2, 4);
    cmd.arg(0).arg(format::HEAD_MAX - 1);
    cmd
}

#[async_trait]
impl PrincipalIndex for RedisStore {
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<(SessionKey, Record)>> {
        let name = self.index_key(principal);
        let entries = self.bounded("sessions_of", entries(self, &name)).await?;
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for chunk in entries.chunks(BATCH) {
            let mut keys = Vec::with_capacity(chunk.len());
            for entry in chunk {
                match SessionKey::parse(&entry.member) {
                    Ok(key) => keys.push((key, entry)),
                    Err(_) => stale.push(entry.clone()),
                }
            }
            let reads = keys.iter().map(|(key, _)| self.read_cmds(key)).collect();
            let answers = per_key(self, "sessions_of", reads, true).await?;
            for ((key, entry), answer) in keys.into_iter().zip(answers) {
                match Self::decode_read(&key, answer)? {
                    Some(record) if record.principal.as_ref() == Some(principal) => {
                        live.push((key, record));
                    }
                    _ => stale.push(entry.clone()),
                }
            }
        }
        forget(self, &name, &stale).await?;
        Ok(live)
    }

    async fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
    ) -> Result<u64> {
        let name = self.index_key(principal);
        let entries = self.bounded("destroy_all_of", entries(self, &name)).await?;
        let mut destroyed = 0_u64;
        let mut ended = Vec::new();
        for chunk in entries.chunks(BATCH) {
            let mut keys = Vec::with_capacity(chunk.len());
            for entry in chunk {
                match SessionKey::parse(&entry.member) {
                    Ok(key) => keys.push((key, entry)),
                    Err(_) => ended.push(entry.clone()),
                }
            }
            // Each session is deleted only if it still names the principal
            // (one script on its key), so the count is of live sessions of
            // the principal, and one written over by another principal
            // meanwhile survives. The one to keep is only checked.
            let cmds = keys
                .iter()
                .map(|(key, _)| {
                    if Some(key) == except {
                        vec![head_cmd(self, key)]
                    } else {
                        let mut cmd = eval(scripts::DESTROY_IF_OWNED, &self.redis_key(key));
                        cmd.arg(principal.as_str());
                        vec![cmd]
                    }
                })
                .collect();
            let answers = per_key(self, "destroy_all_of", cmds, false).await?;
            for ((key, entry), answer) in keys.into_iter().zip(answers) {
                if Some(&key) == except {
                    let owned = head_of(answer).is_some_and(|head| {
                        format::principal_bytes(&head) == Some(principal.as_str().as_bytes())
                    });
                    if !owned {
                        ended.push(entry.clone());
                    }
                    continue;
                }
                match answer.map_err(backend)?.first() {
                    Some(Value::Int(1)) => destroyed += 1,
                    Some(Value::Int(_)) => {}
                    Some(Value::ServerError(e)) => return Err(keyed(&key, e.clone().into())),
                    _ => {
                        return Err(Error::backend(
                            BACKEND,
                            "the destroy script answered something else than 0 or 1",
                        ));
                    }
                }
                // Destroyed now, or not the principal's (any more).
                ended.push(entry.clone());
            }
        }
        forget(self, &name, &ended).await?;
        Ok(destroyed)
    }

    async fn index_len(&self, principal: &Principal) -> Result<u64> {
        self.bounded("index_len", async {
            redis::cmd("ZCARD")
                .arg(self.index_key(principal))
                .query_async(&mut self.conn())
                .await
                .map_err(backend)
        })
        .await
    }
}

/// `delete_expired`'s part: every index of the namespace, rid of the
/// entries whose session has ended. Only entries whose score (at least
/// the session's announced expiry) has passed by this process's clock are
/// checked; the others are live unless destroyed or moved to another
/// principal, which `sessions_of` and `destroy_all_of` clean.
///
/// Its cost: a `SCAN` of the whole keyspace for the index keys (per
/// primary on Cluster, like `len`), then per index one `ZRANGE` per batch of
/// due entries and one `GETRANGE` per due entry.
pub(crate) async fn reap(store: &RedisStore) -> Result<()> {
    let mut walk = store
        .bounded("delete_expired", Scan::indexes(store))
        .await?;
    while let Some(names) = store
        .bounded("delete_expired", walk.next_names(store))
        .await?
    {
        for name in names {
            reap_index(store, &name).await?;
        }
    }
    Ok(())
}

/// One index's part of [`reap`].
async fn reap_index(store: &RedisStore, name: &str) -> Result<()> {
    let Some(hash_in_name) = store.index_hash(name) else {
        return Ok(());
    };
    let now = Timestamp::now().as_millis();
    // Entries kept (their session lives on: touched without its
    // announcement yet, or a clock ahead of Redis's) stay before the next
    // batch in score order: skipped by the offset.
    let mut offset = 0;
    loop {
        let due = store
            .bounded("delete_expired", due_entries(store, name, now, offset))
            .await?;
        let mut keys = Vec::with_capacity(due.len());
        let mut stale = Vec::new();
        for entry in &due {
            match SessionKey::parse(&entry.member) {
                Ok(key) => keys.push((key, entry)),
                Err(_) => stale.push(entry.clone()),
            }
        }
        let heads = keys
            .iter()
            .map(|(key, _)| vec![head_cmd(store, key)])
            .collect();
        let answers = per_key(store, "delete_expired", heads, false).await?;
        for ((_, entry), answer) in keys.into_iter().zip(answers) {
            let owned = head_of(answer).is_some_and(|head| {
                format::principal_bytes(&head).is_some_and(|p| hash(p) == hash_in_name)
            });
            if !owned {
                stale.push(entry.clone());
            }
        }
        forget(store, name, &stale).await?;
        if due.len() < BATCH {
            return Ok(());
        }
        offset += due.len() - stale.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_lower_case_hex_sha256() {
        assert_eq!(
            hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn scores_in_both_protocols_are_parsed() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp2 = Value::Array(vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")]);
        let resp3 = Value::Array(vec![
            Value::Array(vec![bulk("a"), Value::Double(1.0)]),
            Value::Array(vec![bulk("b"), Value::Double(2.0)]),
        ]);
        for reply in [resp2, resp3] {
            let entries = parse_entries(reply).unwrap();
            let pairs: Vec<_> = entries
                .iter()
                .map(|e| (e.member.as_str(), e.score.as_str()))
                .collect();
            assert_eq!(pairs, [("a", "1"), ("b", "2")]);
        }
        assert!(parse_entries(Value::Array(vec![bulk("a")])).is_err());
        assert!(parse_entries(Value::Int(3)).is_err());
    }
}

//! Paged listing (`list`): a `SCAN` of the namespace resumed from a cursor
//! that says which node is being scanned, where its `SCAN` stands, and
//! which keys a `SCAN` already returned that no page has read yet.
//!
//! Cursor text: `redis:{node}:{scan}:{keys}`, where `node` is the index of
//! the node being scanned (always 0 on a standalone server or behind
//! Sentinel; on Cluster the index of the primary in the order of
//! [`scan::nodes`], or their number once all are scanned), `scan` that
//! node's `SCAN` cursor (0: not started), and `keys` the comma-separated
//! session keys (64 hex digits each) a `SCAN` returned beyond the page
//! size, read by the next pages. Carrying them keeps every page within its
//! `limit` without skipping what `SCAN COUNT` (a hint only) returned in
//! excess, and keeps a page's memory to one `SCAN` batch.

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::time::Instant;

use session_core::{Cursor, Error, Page, Result, SessionKey};

use crate::scan::{self, Node};
use crate::{BACKEND, RedisStore};

/// The prefix of this store's cursors.
const PREFIX: &str = "redis:";

/// The most keys one `SCAN` of `list` asks for, however large the page:
/// one `SCAN` holds the (single-threaded) server for its whole batch.
const MAX_SCAN_COUNT: u32 = 10_000;

/// The length of a session key's text.
const KEY_CHARS: usize = 64;

/// Where a listing stands.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    /// The index of the node being scanned; the number of nodes once every
    /// node has been scanned.
    node: usize,
    /// The `SCAN` cursor on that node; 0 before its first `SCAN`.
    scan: u64,
    /// Keys a `SCAN` returned that no page has read yet, in order.
    pending: VecDeque<SessionKey>,
}

impl Position {
    /// The start of a listing.
    fn start() -> Self {
        Self {
            node: 0,
            scan: 0,
            pending: VecDeque::new(),
        }
    }

    /// The position a cursor of [`encode`](Self::encode) holds, checked for
    /// form only (the node against the topology by [`check`](Self::check)):
    /// at most `max_pending` keys.
    fn parse(cursor: &Cursor, max_pending: usize) -> Result<Self> {
        let invalid = |reason| Error::invalid_cursor(BACKEND, reason);
        let rest = cursor
            .as_str()
            .strip_prefix(PREFIX)
            .ok_or_else(|| invalid("not a Redis store cursor"))?;
        let mut parts = rest.splitn(3, ':');
        let (Some(node), Some(scan), Some(keys)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a Redis store cursor"));
        };
        let node = decimal(node)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| invalid("the node is not a number"))?;
        let scan = decimal(scan).ok_or_else(|| invalid("the SCAN cursor is not a number"))?;
        let pending = if keys.is_empty() {
            VecDeque::new()
        } else {
            // Each key and its comma: checked before anything is allocated.
            if (keys.len() + 1) % (KEY_CHARS + 1) != 0 {
                return Err(invalid("the pending keys are not session keys"));
            }
            if (keys.len() + 1) / (KEY_CHARS + 1) > max_pending {
                return Err(invalid("more pending keys than a SCAN returns"));
            }
            keys.split(',')
                .map(|k| {
                    SessionKey::parse(k)
                        .map_err(|_| invalid("the pending keys are not session keys"))
                })
                .collect::<Result<_>>()?
        };
        Ok(Self {
            node,
            scan,
            pending,
        })
    }

    /// `InvalidCursor` unless the position can be one of a listing over
    /// `nodes` nodes.
    fn check(&self, nodes: usize) -> Result<()> {
        let invalid = |reason| Err(Error::invalid_cursor(BACKEND, reason));
        if self.node > nodes {
            return invalid("a node this store does not have");
        }
        // Past the last node, only keys left to read keep a listing going.
        if self.node == nodes && (self.scan != 0 || self.pending.is_empty()) {
            return invalid("a node this store does not have");
        }
        Ok(())
    }

    /// Whether the listing is complete: every node scanned, every key read.
    fn is_done(&self, nodes: usize) -> bool {
        self.node >= nodes && self.pending.is_empty()
    }

    /// The cursor text of this position.
    fn encode(&self) -> Cursor {
        let mut text =
            String::with_capacity(PREFIX.len() + 2 * 20 + 2 + self.pending.len() * (KEY_CHARS + 1));
        text.push_str(PREFIX);
        // Writing into a `String` cannot fail.
        let _ = write!(text, "{}:{}:", self.node, self.scan);
        for (i, key) in self.pending.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(key.as_str());
        }
        Cursor::new(text)
    }
}

/// A `u64` written in decimal the way Redis and [`Position::encode`] write
/// it: digits only, no leading zero.
fn decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.len() <= 20
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

/// What `list` asks each `SCAN` for: the page size, at least the store's
/// `scan_count` (a namespace may be a small part of a shared server, and a
/// `SCAN` visits the whole keyspace), at most [`MAX_SCAN_COUNT`] unless
/// `scan_count` says more.
fn scan_count(store: &RedisStore, limit: usize) -> u32 {
    let limit = u32::try_from(limit).unwrap_or(u32::MAX).min(MAX_SCAN_COUNT);
    store.scan_count.max(limit)
}

/// The most keys a cursor of `store` may carry: far above what one `SCAN`
/// returns (its `COUNT`, plus the rest of the last hash bucket it visited).
fn max_pending(store: &RedisStore) -> usize {
    let count = usize::try_from(store.scan_count.max(MAX_SCAN_COUNT)).unwrap_or(usize::MAX);
    count.saturating_mul(2).saturating_add(1_000)
}

/// One page of `store`'s listing (see the module documentation), within
/// the time the caller bounds it by (`operation_timeout`, of which the
/// `SCAN`s may use half before the page is read and returned, so a
/// namespace that is a sliver of a large shared keyspace still makes
/// progress one page at a time).
pub(crate) async fn page(
    store: &RedisStore,
    cursor: Option<&Cursor>,
    limit: NonZeroUsize,
) -> Result<Page> {
    let started = Instant::now();
    let budget = store.operation_timeout() / 2;
    let limit = limit.get();
    let max_pending = max_pending(store);
    let mut at = match cursor {
        None => Position::start(),
        Some(cursor) => Position::parse(cursor, max_pending)?,
    };
    let nodes = scan::nodes(store).await?;
    at.check(nodes.len())?;
    let count = scan_count(store, limit);

    // The keys this page reads, and every key taken or pending in this
    // call: a `SCAN` during a rehash may return a key twice.
    let mut keys: Vec<SessionKey> = Vec::new();
    let mut seen: HashSet<SessionKey> = at.pending.iter().copied().collect();
    let mut scans = 0_usize;
    loop {
        while keys.len() < limit {
            let Some(key) = at.pending.pop_front() else {
                break;
            };
            keys.push(key);
        }
        let out_of_time = scans > 0 && started.elapsed() >= budget;
        if keys.len() == limit || out_of_time {
            break;
        }
        let Some(node) = nodes.get(at.node) else {
            break;
        };
        let (next, batch) = scan_node(store, node, at.scan, count).await?;
        scans += 1;
        if next == 0 {
            at.node += 1;
        }
        at.scan = next;
        at.pending
            .extend(batch.into_iter().filter(|k| seen.insert(*k)));
        if at.pending.len() > max_pending {
            return Err(Error::backend(
                BACKEND,
                format!(
                    "SCAN COUNT {count} returned {} keys of this namespace",
                    at.pending.len()
                ),
            ));
        }
    }

    let reads = keys.iter().map(|k| store.read_cmds(k)).collect();
    let answers = scan::per_key(store, reads, true).await?;
    let mut records = Vec::with_capacity(keys.len());
    for (key, answer) in keys.iter().zip(answers) {
        // A key that expired or was destroyed since its SCAN reads back
        // empty and is skipped.
        if let Some(record) = RedisStore::decode_read(key, answer)? {
            records.push((*key, record));
        }
    }
    let next = (!at.is_done(nodes.len())).then(|| at.encode());
    Ok(Page { records, next })
}

/// One `SCAN` on `node` from `cursor`: the next cursor (0: the node is
/// done) and the namespace's keys in the batch.
async fn scan_node(
    store: &RedisStore,
    node: &Node,
    cursor: u64,
    count: u32,
) -> Result<(u64, Vec<SessionKey>)> {
    let (next, keys) = scan::scan_page(store, node, &cursor.to_string(), count).await?;
    let next = decimal(&next)
        .ok_or_else(|| Error::backend(BACKEND, format!("SCAN answered the cursor {next:?}")))?;
    Ok((next, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SessionKey {
        SessionKey::from_bytes([byte; 32])
    }

    fn parse(text: &str) -> Result<Position> {
        Position::parse(&Cursor::new(text), 4)
    }

    #[test]
    fn positions_round_trip_through_their_cursor() {
        for position in [
            Position::start(),
            Position {
                node: 2,
                scan: u64::MAX,
                pending: VecDeque::from([key(1)]),
            },
            Position {
                node: 3,
                scan: 0,
                pending: VecDeque::from([key(0xab), key(2), key(0xff)]),
            },
        ] {
            let cursor = position.encode();
            assert_eq!(parse(cursor.as_str()).unwrap(), position, "{cursor}");
        }
        assert_eq!(Position::start().encode().as_str(), "redis:0:0:");
    }

    #[test]
    fn malformed_cursors_are_refused() {
        // Letters among the digits, so that upper case differs.
        let k = key(0x7a);
        let k = k.as_str();
        let upper = k.to_uppercase();
        let texts = [
            String::new(),
            "garbage".to_owned(),
            "0".to_owned(),
            "after:".to_owned(),
            "redis:".to_owned(),
            "redis:0".to_owned(),
            "redis:0:0".to_owned(),
            "redis::0:".to_owned(),
            "redis:0::".to_owned(),
            "redis:+1:0:".to_owned(),
            "redis:-1:0:".to_owned(),
            "redis:01:0:".to_owned(),
            "redis:0:00:".to_owned(),
            "redis:0:x:".to_owned(),
            "redis:0:18446744073709551616:".to_owned(),
            "redis:99999999999999999999999:0:".to_owned(),
            format!("redis:0:0:{}", &k[1..]),
            format!("redis:0:0:{k}0"),
            format!("redis:0:0:{upper}"),
            format!("redis:0:0:{k},"),
            format!("redis:0:0:,{k}"),
            format!("redis:0:0:{k};{k}"),
            format!("redis:0:0:{}", [k; 5].join(",")),
            format!("REDIS:0:0:{k}"),
            "redis:0:0:\u{0}\u{fffd}".to_owned(),
            "x".repeat(10_000),
        ];
        for text in texts {
            assert!(
                matches!(parse(&text), Err(Error::InvalidCursor { .. })),
                "{text:?} parsed"
            );
        }
        assert_eq!(
            parse(&format!("redis:0:0:{}", [k; 4].join(",")))
                .unwrap()
                .pending
                .len(),
            4
        );
    }

    #[test]
    fn a_node_the_topology_does_not_have_is_refused() {
        let check = |text: &str, nodes| parse(text).and_then(|p| p.check(nodes));
        let k = key(3);
        assert!(check("redis:0:0:", 1).is_ok());
        assert!(check("redis:0:17:", 1).is_ok());
        assert!(check("redis:2:5:", 3).is_ok());
        assert!(check(&format!("redis:1:0:{}", k.as_str()), 1).is_ok());
        for (text, nodes) in [
            ("redis:1:0:".to_owned(), 1),
            ("redis:2:0:".to_owned(), 1),
            (format!("redis:1:5:{}", k.as_str()), 1),
            ("redis:3:0:".to_owned(), 3),
            (format!("redis:4:0:{}", k.as_str()), 3),
        ] {
            assert!(
                matches!(check(&text, nodes), Err(Error::InvalidCursor { .. })),
                "{text} on {nodes} nodes"
            );
        }
    }

    #[test]
    fn only_a_finished_scan_with_nothing_pending_is_done() {
        let mut at = Position::start();
        assert!(!at.is_done(1));
        at.node = 1;
        assert!(at.is_done(1));
        at.pending.push_back(key(1));
        assert!(!at.is_done(1));
    }
}

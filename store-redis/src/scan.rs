//! Walking a whole namespace (`clear`, `len`, and `list` through
//! [`crate::list`]): `SCAN` on the server or on every primary of a cluster,
//! and single-key commands for many keys at once, never a cross-slot
//! command.

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisResult, Value};
use session_core::{Error, Result, SessionKey};
use tokio::task::JoinSet;

use crate::store::backend;
use crate::{BACKEND, RedisConnection, RedisStore};

/// Where one `SCAN` goes.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// The standalone server behind the connection.
    Server,
    /// One primary of a cluster, by the address the cluster announces.
    Primary { host: String, port: u16 },
}

/// A full `SCAN` of one namespace, node after node: of its sessions, or of
/// its principals' indexes.
pub(crate) struct Scan {
    nodes: Vec<Node>,
    next_node: usize,
    /// The cursor on `nodes[next_node]`; `None` before its first call.
    cursor: Option<String>,
    /// The `MATCH` pattern.
    pattern: String,
}

impl Scan {
    /// A scan of `store`'s sessions. A key may appear more than once
    /// (`SCAN` guarantees at least once).
    pub(crate) async fn start(store: &RedisStore) -> Result<Self> {
        Ok(Self {
            nodes: nodes(store).await?,
            next_node: 0,
            cursor: None,
            pattern: pattern(store),
        })
    }

    /// A scan of `store`'s principal indexes (`{prefix}:principal:*:sessions`),
    /// which never returns a session key.
    pub(crate) async fn indexes(store: &RedisStore) -> Result<Self> {
        Ok(Self {
            nodes: nodes(store).await?,
            next_node: 0,
            cursor: None,
            pattern: crate::index::pattern(store),
        })
    }

    /// The next page of session keys, or `None` when every node has been
    /// scanned.
    pub(crate) async fn next_page(
        &mut self,
        store: &RedisStore,
    ) -> Result<Option<Vec<SessionKey>>> {
        Ok(self
            .next_raw(store)
            .await?
            .map(|names| names.iter().filter_map(|n| store.session_key(n)).collect()))
    }

    /// The next page of the names of index keys, or `None` when every node
    /// has been scanned.
    pub(crate) async fn next_names(&mut self, store: &RedisStore) -> Result<Option<Vec<String>>> {
        Ok(self.next_raw(store).await?.map(|mut names| {
            names.retain(|n| store.index_hash(n).is_some());
            names
        }))
    }

    /// The next page of the names of the sessions and of the principal
    /// indexes of `store`'s namespace (on a scan of its sessions' pattern,
    /// `{prefix}:*`, which matches both), or `None` when every node has been
    /// scanned.
    pub(crate) async fn next_owned(&mut self, store: &RedisStore) -> Result<Option<Vec<String>>> {
        Ok(self.next_raw(store).await?.map(|mut names| {
            names.retain(|n| store.session_key(n).is_some() || store.index_hash(n).is_some());
            names
        }))
    }

    /// The next page of names matching the pattern.
    async fn next_raw(&mut self, store: &RedisStore) -> Result<Option<Vec<String>>> {
        let Some(node) = self.nodes.get(self.next_node) else {
            return Ok(None);
        };
        let cursor = self.cursor.take().unwrap_or_else(|| "0".to_owned());
        let (next, names) = scan_raw(store, node, &cursor, store.scan_count, &self.pattern).await?;
        if next == "0" {
            self.next_node += 1;
        } else {
            self.cursor = Some(next);
        }
        Ok(Some(names))
    }
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
pub(crate) fn escape_glob(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

/// The `SCAN MATCH` pattern of this namespace, glob characters of the
/// prefix escaped.
fn pattern(store: &RedisStore) -> String {
    let mut pattern = escape_glob(store.namespace());
    pattern.push_str(":*");
    pattern
}

/// The nodes a full `SCAN` must visit: the server, or every primary of
/// the cluster (an unrouted `SCAN` on a cluster sees one node only), in a
/// stable order: `CLUSTER SLOTS` lists slot ranges in slot order, so the
/// primaries come in the order of the first slot each serves, whichever
/// node answers (and a replica promoted in a failover takes its primary's
/// place).
pub(crate) async fn nodes(store: &RedisStore) -> Result<Vec<Node>> {
    let RedisConnection::Cluster(conn) = store.conn() else {
        return Ok(vec![Node::Server]);
    };
    let mut conn = conn;
    let slots = conn
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
        )
        .await
        .map_err(backend)?;
    let primaries = parse_cluster_slots(slots)?;
    Ok(primaries
        .into_iter()
        .map(|(host, port)| Node::Primary { host, port })
        .collect())
}

/// One `SCAN cursor MATCH {prefix}:* COUNT count` call on `node`: the next
/// cursor and the session keys of this namespace in the page.
pub(crate) async fn scan_page(
    store: &RedisStore,
    node: &Node,
    cursor: &str,
    count: u32,
) -> Result<(String, Vec<SessionKey>)> {
    let (next, names) = scan_raw(store, node, cursor, count, &pattern(store)).await?;
    let keys = names.iter().filter_map(|n| store.session_key(n)).collect();
    Ok((next, keys))
}

/// One `SCAN cursor MATCH pattern COUNT count` call on `node`: the next
/// cursor and the names in the page.
async fn scan_raw(
    store: &RedisStore,
    node: &Node,
    cursor: &str,
    count: u32,
    pattern: &str,
) -> Result<(String, Vec<String>)> {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(count);
    let value = match (node, store.conn()) {
        (Node::Primary { host, port }, RedisConnection::Cluster(mut conn)) => {
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            });
            conn.route_command(cmd, routing).await.map_err(backend)?
        }
        (_, mut conn) => cmd.query_async::<Value>(&mut conn).await.map_err(backend)?,
    };
    redis::from_redis_value(value).map_err(|e| backend(e.into()))
}

/// A pipeline of `cmds`, a transaction (`MULTI`/`EXEC`: nothing else runs
/// between its commands) if `atomic`; a failing command gives its error as
/// its answer ([`Value::ServerError`]) instead of failing the others.
pub(crate) fn pipeline(cmds: impl IntoIterator<Item = Cmd>, atomic: bool) -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    if atomic {
        pipe.atomic();
    }
    for cmd in cmds {
        pipe.add_command(cmd);
    }
    pipe
}

/// Run a group of commands on one key for each of many keys, concurrently,
/// and return each group's answers in order (a failing command answers
/// [`Value::ServerError`]): one pipeline on a standalone server, one
/// request per group (each routed to its key's slot) on a cluster, never a
/// cross-slot command. With `atomic`, no other client's command runs
/// between the commands of a group (one transaction on a standalone server
/// holds every group; one per group on a cluster).
pub(crate) async fn per_key(
    store: &RedisStore,
    groups: Vec<Vec<Cmd>>,
    atomic: bool,
) -> Result<Vec<RedisResult<Vec<Value>>>> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    match store.conn() {
        RedisConnection::Cluster(conn) => {
            let count = groups.len();
            let mut tasks = JoinSet::new();
            for (i, group) in groups.into_iter().enumerate() {
                let mut conn = conn.clone();
                tasks.spawn(async move {
                    let answer = pipeline(group, atomic).query_async(&mut conn).await;
                    (i, answer)
                });
            }
            let mut answers: Vec<RedisResult<Vec<Value>>> =
                (0..count).map(|_| Ok(Vec::new())).collect();
            while let Some(joined) = tasks.join_next().await {
                let (i, answer) = joined.map_err(|e| Error::backend(BACKEND, e))?;
                if let Some(slot) = answers.get_mut(i) {
                    *slot = answer;
                }
            }
            Ok(answers)
        }
        mut conn => {
            let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
            let values: Vec<Value> = pipeline(groups.into_iter().flatten(), atomic)
                .query_async(&mut conn)
                .await
                .map_err(backend)?;
            let mut values = values.into_iter();
            Ok(sizes
                .into_iter()
                .map(|n| Ok(values.by_ref().take(n).collect()))
                .collect())
        }
    }
}

/// The primaries (host, port) in a `CLUSTER SLOTS` answer:
/// `[[start, end, [host, port, id, ...], replica...], ...]`.
fn parse_cluster_slots(value: Value) -> Result<Vec<(String, u16)>> {
    let ranges: Vec<Vec<Value>> = redis::from_redis_value(value).map_err(|e| backend(e.into()))?;
    let mut primaries = Vec::new();
    for range in ranges {
        let Some(primary) = range.into_iter().nth(2) else {
            continue;
        };
        let node: Vec<Value> = redis::from_redis_value(primary).map_err(|e| backend(e.into()))?;
        let mut node = node.into_iter();
        let (Some(host), Some(port)) = (node.next(), node.next()) else {
            continue;
        };
        let host: String = redis::from_redis_value(host).map_err(|e| backend(e.into()))?;
        let port: u16 = redis::from_redis_value(port).map_err(|e| backend(e.into()))?;
        if !primaries.contains(&(host.clone(), port)) {
            primaries.push((host, port));
        }
    }
    if primaries.is_empty() {
        return Err(Error::backend(
            BACKEND,
            "CLUSTER SLOTS names no primary: is the cluster up?",
        ));
    }
    Ok(primaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_slots_are_parsed_to_distinct_primaries() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let range = |a: i64, b: i64, p: i64| {
            Value::Array(vec![
                Value::Int(a),
                Value::Int(b),
                node("127.0.0.1", p),
                node("127.0.0.1", p + 1),
            ])
        };
        let slots = Value::Array(vec![
            range(0, 5, 7000),
            range(6, 9, 7002),
            range(10, 12, 7000),
        ]);
        let primaries = parse_cluster_slots(slots).unwrap();
        assert_eq!(
            primaries,
            vec![
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7002)
            ]
        );
    }
}

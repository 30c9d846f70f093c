//! [`RedisStore`]: the `SessionStore` implementation.

use std::collections::HashSet;
use std::fmt;
use std::io::Write as _;

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    Cmd, ErrorKind, RedisError, RedisResult, RedisWrite as _, Script, ServerErrorKind, Value,
};
use session_core::{
    Error, Record, Result, SessionKey, SessionStore, Timestamp, UpdateOutcome, async_trait,
};
use tokio::task::JoinSet;

use crate::builder::DEFAULT_SCAN_COUNT;
use crate::{BACKEND, RedisConnection, RedisStoreBuilder, format, scripts};

/// A session store on a standalone Redis server or a Redis Cluster.
///
/// Each session is a string under `{prefix}:{key}`: a fixed-width header
/// with its version and times, then the JSON data; the key has a Redis
/// expiry at the record's `expires_at`, so Redis alone decides when a
/// session is gone, by **its** clock. Every command and script works on one
/// key, so every method works on Cluster. See the crate documentation for
/// the details.
///
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConnection,
    prefix: String,
    target: String,
    scan_count: u32,
}

impl fmt::Debug for RedisStore {
    /// Shows the server address without credentials, and the prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .field("scan_count", &self.scan_count)
            .finish_non_exhaustive()
    }
}

/// Where one `SCAN` goes.
#[derive(Debug, Clone)]
enum Node {
    /// The standalone server behind the connection.
    Server,
    /// One primary of a cluster, by the address the cluster announces.
    Primary { host: String, port: u16 },
}

impl RedisStore {
    /// A builder for every setting (prefix, timeouts, `SCAN` batch size).
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::new()
    }

    /// Connect to a standalone server with the default settings
    /// (see [`RedisStoreBuilder::connect`]).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid URL, [`Error::Backend`] if the server
    /// cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().connect(url).await
    }

    /// Connect to a Redis Cluster with the default settings
    /// (see [`RedisStoreBuilder::connect_cluster`]).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid or empty node list,
    /// [`Error::Backend`] if the cluster cannot be reached.
    pub async fn connect_cluster<I, S>(nodes: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::builder().connect_cluster(nodes).await
    }

    /// A store with the default prefix on a connection you opened yourself.
    pub fn new(conn: impl Into<RedisConnection>) -> Self {
        let conn = conn.into();
        let target = if conn.is_cluster() {
            "redis-cluster (provided connection)"
        } else {
            "redis (provided connection)"
        };
        Self::from_parts(
            conn,
            crate::DEFAULT_PREFIX.to_owned(),
            target.to_owned(),
            DEFAULT_SCAN_COUNT,
        )
    }

    pub(crate) fn from_parts(
        conn: RedisConnection,
        prefix: String,
        target: String,
        scan_count: u32,
    ) -> Self {
        Self {
            conn,
            prefix,
            target,
            scan_count,
        }
    }

    /// The key prefix (the namespace).
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of a session: `{prefix}:{key}`.
    #[must_use]
    pub fn redis_key(&self, key: &SessionKey) -> String {
        format!("{}:{}", self.prefix, key.as_str())
    }

    /// The session key of a Redis key of this namespace, if it is one.
    fn session_key(&self, redis_key: &str) -> Option<SessionKey> {
        let rest = redis_key.strip_prefix(self.prefix.as_str())?;
        let hex = rest.strip_prefix(':')?;
        SessionKey::parse(hex).ok()
    }

    /// The `SCAN MATCH` pattern of this namespace, glob characters of the
    /// prefix escaped.
    fn pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 2);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(":*");
        pattern
    }

    /// A connection handle for one request (clones share the sockets).
    fn conn(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// The nodes a full `SCAN` must visit: the server, or every primary of
    /// the cluster (an unrouted `SCAN` on a cluster sees one node only).
    async fn nodes(&self) -> Result<Vec<Node>> {
        let RedisConnection::Cluster(conn) = &self.conn else {
            return Ok(vec![Node::Server]);
        };
        let mut conn = conn.clone();
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

    /// One `SCAN` call on `node`: the next cursor and the session keys of
    /// this namespace in the page.
    async fn scan_page(&self, node: &Node, cursor: &str) -> Result<(String, Vec<SessionKey>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(self.pattern())
            .arg("COUNT")
            .arg(self.scan_count);
        let value = match (node, self.conn()) {
            (Node::Primary { host, port }, RedisConnection::Cluster(mut conn)) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                conn.route_command(cmd, routing).await.map_err(backend)?
            }
            (_, mut conn) => cmd.query_async::<Value>(&mut conn).await.map_err(backend)?,
        };
        let (next, names): (String, Vec<String>) =
            redis::from_redis_value(value).map_err(|e| backend(e.into()))?;
        let keys = names.iter().filter_map(|n| self.session_key(n)).collect();
        Ok((next, keys))
    }

    /// Visit every page of session keys of this namespace on every node.
    /// A key may appear more than once (`SCAN` guarantees at least once).
    async fn scan(&self) -> Result<Scan> {
        Ok(Scan {
            nodes: self.nodes().await?,
            next_node: 0,
            cursor: None,
        })
    }

    /// Run one single-key command per key, concurrently, and return the
    /// answers in order: one pipeline on a standalone server, one request
    /// per key (each routed to its slot's node) on a cluster, never a
    /// cross-slot command.
    async fn per_key(&self, cmds: Vec<Cmd>) -> Result<Vec<RedisResult<Value>>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        match self.conn() {
            RedisConnection::Cluster(conn) => {
                let count = cmds.len();
                let mut tasks = JoinSet::new();
                for (i, cmd) in cmds.into_iter().enumerate() {
                    let mut conn = conn.clone();
                    tasks.spawn(async move { (i, cmd.query_async::<Value>(&mut conn).await) });
                }
                let mut answers: Vec<RedisResult<Value>> =
                    (0..count).map(|_| Ok(Value::Nil)).collect();
                while let Some(joined) = tasks.join_next().await {
                    let (i, answer) = joined.map_err(|e| Error::backend(BACKEND, e))?;
                    if let Some(slot) = answers.get_mut(i) {
                        *slot = answer;
                    }
                }
                Ok(answers)
            }
            mut conn => {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                let values = pipe
                    .query_async::<Vec<Value>>(&mut conn)
                    .await
                    .map_err(backend)?;
                Ok(values
                    .into_iter()
                    .map(|value| match value {
                        Value::ServerError(e) => Err(e.into()),
                        value => Ok(value),
                    })
                    .collect())
            }
        }
    }

    /// Write `{prefix}:{key}` (what [`redis_key`](Self::redis_key) returns)
    /// as the next argument of `cmd`, straight into its buffer.
    fn key_arg(&self, cmd: &mut Cmd, key: &SessionKey) {
        let mut arg = cmd.writer_for_next_arg();
        // Writing into the command's own buffer (a `Vec`) cannot fail.
        let _ = arg
            .write_all(self.prefix.as_bytes())
            .and_then(|()| arg.write_all(b":"))
            .and_then(|()| arg.write_all(key.as_str().as_bytes()));
    }

    /// The length of `{prefix}:{key}`.
    fn key_len(&self, key: &SessionKey) -> usize {
        self.prefix.len() + 1 + key.as_str().len()
    }

    /// `name {prefix}:{key}`, with room for `more_args` further arguments of
    /// about `more_bytes` bytes in all (one allocation per buffer when the
    /// estimate holds).
    fn key_cmd(&self, name: &str, key: &SessionKey, more_args: usize, more_bytes: usize) -> Cmd {
        let mut cmd =
            Cmd::with_capacity(2 + more_args, name.len() + self.key_len(key) + more_bytes);
        cmd.arg(name);
        self.key_arg(&mut cmd, key);
        cmd
    }

    /// `EVALSHA {script} 1 {prefix}:{key}`, with room for `more_args`
    /// arguments of about `more_bytes` bytes in all.
    fn script_cmd(
        &self,
        script: &Script,
        key: &SessionKey,
        more_args: usize,
        more_bytes: usize,
    ) -> Cmd {
        let hash = script.get_hash();
        let mut cmd = Cmd::with_capacity(
            4 + more_args,
            "EVALSHA".len() + hash.len() + 1 + self.key_len(key) + more_bytes,
        );
        cmd.arg("EVALSHA").arg(hash).arg(1);
        self.key_arg(&mut cmd, key);
        cmd
    }

    /// Run a script command built by [`script_cmd`](Self::script_cmd),
    /// loading the script first if the server does not know it yet, and
    /// return its integer reply.
    async fn run_script(&self, script: &Script, cmd: &Cmd, key: &SessionKey) -> Result<i64> {
        let mut conn = self.conn();
        let reply = match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                script.load_async(&mut conn).await.map_err(backend)?;
                cmd.query_async(&mut conn).await
            }
            reply => reply,
        };
        reply.map_err(|e| keyed(key, e))
    }

    /// `SET {prefix}:{key} {value} PXAT {expires_at - 1}`, plus `NX` if
    /// `only_new`: whether it was written (`NX` found no live key).
    async fn set(&self, key: &SessionKey, record: &Record, only_new: bool) -> Result<bool> {
        let mut cmd = self.key_cmd("SET", key, 4, format::VALUE_ROOM + 4 + 20 + 2);
        format::write_value(&mut cmd.writer_for_next_arg(), record.version, record)?;
        cmd.arg("PXAT").arg(px_at(record.expires_at));
        if only_new {
            cmd.arg("NX");
        }
        let reply: Value = cmd
            .query_async(&mut self.conn())
            .await
            .map_err(|e| keyed(key, e))?;
        Ok(reply != Value::Nil)
    }

    /// Read a session stored by an earlier version of this crate: a hash
    /// with the fields `v`, `c`, `e`, `d`.
    async fn load_hash(&self, key: &SessionKey) -> Result<Option<Record>> {
        let mut cmd = self.key_cmd("HMGET", key, 4, 4);
        cmd.arg("v").arg("c").arg("e").arg("d");
        let value: Value = cmd
            .query_async(&mut self.conn())
            .await
            .map_err(|e| keyed(key, e))?;
        decode_hash(key, value)
    }

    /// The record in the answer to `GET` on `key`: `None` if the key is
    /// absent (or expired: Redis hides expired keys from every command); a
    /// hash (written by an earlier version) is read with [`load_hash`](Self::load_hash).
    async fn decode_get(
        &self,
        key: &SessionKey,
        answer: RedisResult<Value>,
    ) -> Result<Option<Record>> {
        match answer {
            Ok(Value::BulkString(bytes)) => format::decode(key, &bytes).map(Some),
            Ok(Value::Nil) => Ok(None),
            Ok(_) => Err(Error::decode(
                key,
                "GET answered something else than a string",
            )),
            Err(e) if e.code() == Some("WRONGTYPE") => self.load_hash(key).await,
            Err(e) => Err(backend(e)),
        }
    }
}

/// A full `SCAN` of one namespace, node after node.
struct Scan {
    nodes: Vec<Node>,
    next_node: usize,
    /// The cursor on `nodes[next_node]`; `None` before its first call.
    cursor: Option<String>,
}

impl Scan {
    /// The next page, or `None` when every node has been scanned.
    async fn next_page(&mut self, store: &RedisStore) -> Result<Option<Vec<SessionKey>>> {
        let Some(node) = self.nodes.get(self.next_node) else {
            return Ok(None);
        };
        let cursor = self.cursor.take().unwrap_or_else(|| "0".to_owned());
        let (next, keys) = store.scan_page(node, &cursor).await?;
        if next == "0" {
            self.next_node += 1;
        } else {
            self.cursor = Some(next);
        }
        Ok(Some(keys))
    }
}

/// The Redis expiry (`PXAT`, `PEXPIREAT`) of a record expiring at
/// `expires_at`: the millisecond before it. Redis keeps a key readable
/// while its clock is *at or before* the key's expiry time (it expires a key
/// once `now > when`), while a record is live only while `now < expires_at`;
/// one millisecond earlier, the two rules agree. Redis refuses times before
/// 1 ms after the epoch, all of which are past anyway.
fn px_at(expires_at: Timestamp) -> i64 {
    expires_at.as_millis().saturating_sub(1).max(1)
}

fn backend(e: RedisError) -> Error {
    Error::backend(BACKEND, e)
}

/// A command on `key` failed: a key holding another type than a hash was
/// written by something else, and is reported as undecodable.
fn keyed(key: &SessionKey, e: RedisError) -> Error {
    if e.code() == Some("WRONGTYPE") {
        Error::decode(key, e)
    } else {
        backend(e)
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

/// Decode the `HMGET v c e d` answer for `key` (a session stored as a hash
/// by an earlier version of this crate): `None` if the key is absent.
fn decode_hash(key: &SessionKey, value: Value) -> Result<Option<Record>> {
    let fields: Vec<Option<Vec<u8>>> =
        redis::from_redis_value(value).map_err(|e| Error::decode(key, e))?;
    if fields.iter().all(Option::is_none) {
        return Ok(None);
    }
    let [Some(v), Some(c), Some(e), Some(d)] = <[Option<Vec<u8>>; 4]>::try_from(fields)
        .map_err(|_| Error::decode(key, "HMGET did not answer four fields"))?
    else {
        return Err(Error::decode(
            key,
            "the session hash lacks one of the fields v, c, e, d",
        ));
    };
    let number = |bytes: &[u8], what: &str| -> Result<String> {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::decode(key, format!("field {what} is not UTF-8")))
    };
    let version: u64 = number(&v, "v")?
        .parse()
        .map_err(|e| Error::decode(key, e))?;
    let created_at: i64 = number(&c, "c")?
        .parse()
        .map_err(|e| Error::decode(key, e))?;
    let expires_at: i64 = number(&e, "e")?
        .parse()
        .map_err(|e| Error::decode(key, e))?;
    let data = Record::decode_data(key, &d)?;
    Ok(Some(
        Record::with_times(
            data,
            Timestamp::from_millis(created_at),
            Timestamp::from_millis(expires_at),
        )
        .with_version(version),
    ))
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        let answer = self
            .key_cmd("GET", key, 0, 0)
            .query_async(&mut self.conn())
            .await;
        self.decode_get(key, answer).await
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        // NX: an expired key does not exist for Redis, so it never collides.
        self.set(key, record, true).await
    }

    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<UpdateOutcome> {
        // Versions wrap from u64::MAX to 0 (the contract: they are only
        // compared for equality).
        let next = expected_version.wrapping_add(1);
        let mut cmd = self.script_cmd(
            &scripts::UPDATE,
            key,
            3,
            format::VERSION_PREFIX_LEN + format::VALUE_ROOM + 20,
        );
        cmd.arg(&format::version_prefix(expected_version)[..]);
        format::write_value(&mut cmd.writer_for_next_arg(), next, record)?;
        cmd.arg(px_at(record.expires_at));
        match self.run_script(&scripts::UPDATE, &cmd, key).await? {
            1 => Ok(UpdateOutcome::Updated),
            0 => Ok(UpdateOutcome::Missing),
            2 => Ok(UpdateOutcome::Conflict),
            _ => Err(Error::decode(key, "the key holds no session version")),
        }
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        self.set(key, record, false).await?;
        Ok(())
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let mut cmd = self.script_cmd(&scripts::TOUCH, key, 3, 20 + 20 + 20);
        cmd.arg(px_at(expires_at))
            .arg(&format::expires_field(expires_at)[..])
            .arg(expires_at.as_millis());
        Ok(self.run_script(&scripts::TOUCH, &cmd, key).await? == 1)
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        let _: i64 = self
            .key_cmd("UNLINK", key, 0, 0)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        let mut scan = self.scan().await?;
        while let Some(keys) = scan.next_page(self).await? {
            let cmds = keys
                .iter()
                .map(|k| self.key_cmd("UNLINK", k, 0, 0))
                .collect();
            for answer in self.per_key(cmds).await? {
                answer.map_err(backend)?;
            }
        }
        Ok(())
    }

    async fn len(&self) -> Result<u64> {
        // SCAN never returns a key whose TTL has passed (Redis checks the
        // expiry of every key it returns), and may return a key twice.
        let mut seen = HashSet::new();
        let mut scan = self.scan().await?;
        while let Some(keys) = scan.next_page(self).await? {
            seen.extend(keys);
        }
        Ok(seen.len() as u64)
    }

    async fn all(&self) -> Result<Vec<(SessionKey, Record)>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut scan = self.scan().await?;
        while let Some(keys) = scan.next_page(self).await? {
            let fresh: Vec<SessionKey> = keys.into_iter().filter(|k| seen.insert(*k)).collect();
            let answers = self
                .per_key(fresh.iter().map(|k| self.key_cmd("GET", k, 0, 0)).collect())
                .await?;
            for (key, answer) in fresh.iter().zip(answers) {
                // A key that expired or was destroyed since the SCAN reads
                // back empty and is skipped.
                if let Some(record) = self.decode_get(key, answer).await? {
                    out.push((*key, record));
                }
            }
        }
        Ok(out)
    }

    async fn delete_expired(&self) -> Result<u64> {
        // Redis expires keys by itself (lazily on access, actively in the
        // background); an expired key is invisible to every command.
        Ok(0)
    }
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

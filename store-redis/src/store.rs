//! [`RedisStore`]: the `SessionStore` implementation.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::io::Write as _;
use std::num::NonZeroUsize;
use std::time::Duration;

use redis::{
    Cmd, ErrorKind, RedisError, RedisResult, RedisWrite as _, Script, ServerErrorKind, Value,
};
use session_core::{
    Cursor, Error, Page, Principal, Record, Result, SessionKey, SessionStore, Timestamp,
    UpdateOutcome, async_trait,
};

use crate::builder::{DEFAULT_OPERATION_TIMEOUT, DEFAULT_SCAN_COUNT};
use crate::scan::Scan;
use crate::{BACKEND, RedisConnection, RedisStoreBuilder, format, scripts};

/// A session store on a standalone Redis server or a Redis Cluster.
///
/// Each session is a string under `{prefix}:{key}`: a fixed-width header
/// with its version and times, then the JSON data; the key has a Redis
/// expiry at the record's `expires_at`, so Redis alone decides when a
/// session is gone, by **its** clock. Every command and script works on one
/// key, so every method works on Cluster. A session that names a principal
/// is also announced in that principal's index (a sorted set, see
/// [`index_key`](Self::index_key)), which makes the store a
/// [`PrincipalIndex`](session_core::PrincipalIndex). See the crate
/// documentation for the details.
///
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConnection,
    prefix: String,
    target: String,
    pub(crate) scan_count: u32,
    deadline: Duration,
}

impl fmt::Debug for RedisStore {
    /// Shows the server address without credentials, and the prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .field("scan_count", &self.scan_count)
            .field("operation_timeout", &self.deadline)
            .finish_non_exhaustive()
    }
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

    /// Connect to the primary of a service behind Redis Sentinel with the
    /// default settings (see [`RedisStoreBuilder::connect_sentinel`]).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid or empty sentinel list or service
    /// name, [`Error::Backend`] if no sentinel names a reachable primary.
    pub async fn connect_sentinel<I, S>(sentinels: I, service: &str) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::builder().connect_sentinel(sentinels, service).await
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
            crate::DEFAULT_NAMESPACE.to_owned(),
            target.to_owned(),
            DEFAULT_SCAN_COUNT,
            DEFAULT_OPERATION_TIMEOUT,
        )
    }

    pub(crate) fn from_parts(
        conn: RedisConnection,
        prefix: String,
        target: String,
        scan_count: u32,
        deadline: Duration,
    ) -> Self {
        Self {
            conn,
            prefix,
            target,
            scan_count,
            deadline,
        }
    }

    /// How long one call may take, end to end (reconnecting included),
    /// before it fails with [`Error::Timeout`]; see
    /// [`RedisStoreBuilder::with_operation_timeout`].
    #[must_use]
    pub fn operation_timeout(&self) -> Duration {
        self.deadline
    }

    /// `future` bounded by the operation deadline. The walks of the whole
    /// namespace (`clear`, `len`) bound each round trip instead, so a
    /// namespace of millions of keys can still be walked; `list` bounds each
    /// page.
    pub(crate) async fn bounded<T>(
        &self,
        operation: &'static str,
        future: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        Error::within(BACKEND, operation, self.deadline, future).await
    }

    /// The namespace (the key prefix).
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.prefix
    }

    /// Another namespace on the same connection.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `namespace` is empty or holds whitespace or
    /// control characters.
    #[allow(
        clippy::unused_async,
        reason = "every store's open_namespace is async; this one shares a connection"
    )]
    pub async fn open_namespace(&self, namespace: &str) -> Result<Self> {
        crate::builder::validate_namespace(namespace)?;
        Ok(Self {
            prefix: namespace.to_owned(),
            ..self.clone()
        })
    }

    /// The Redis key of a session: `{prefix}:{key}`.
    #[must_use]
    pub fn redis_key(&self, key: &SessionKey) -> String {
        format!("{}:{}", self.prefix, key.as_str())
    }

    /// The session key of a Redis key of this namespace, if it is one.
    pub(crate) fn session_key(&self, redis_key: &str) -> Option<SessionKey> {
        let rest = redis_key.strip_prefix(self.prefix.as_str())?;
        let hex = rest.strip_prefix(':')?;
        SessionKey::parse(hex).ok()
    }

    /// A connection handle for one request (clones share the sockets).
    pub(crate) fn conn(&self) -> RedisConnection {
        self.conn.clone()
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
    pub(crate) fn key_cmd(
        &self,
        name: &str,
        key: &SessionKey,
        more_args: usize,
        more_bytes: usize,
    ) -> Cmd {
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
    /// return its reply.
    pub(crate) async fn run_script_value(
        &self,
        script: &Script,
        cmd: &Cmd,
        key: &SessionKey,
    ) -> Result<Value> {
        let mut conn = self.conn();
        let reply = match cmd.query_async(&mut conn).await {
            Err(e) if is_noscript(&e) => {
                script.load_async(&mut conn).await.map_err(backend)?;
                cmd.query_async(&mut conn).await
            }
            reply => reply,
        };
        reply.map_err(|e| keyed(key, e))
    }

    /// Write a record: `cmd` (built by the caller; `script` is the script it
    /// runs, if it is an `EVALSHA`) alone if the record names no principal,
    /// which costs nothing more than before principals existed; otherwise
    /// announced in the principal's index first and again once written
    /// (see [`crate::index`]). Returns `cmd`'s reply.
    async fn write(
        &self,
        key: &SessionKey,
        record: &Record,
        cmd: &Cmd,
        script: Option<&Script>,
    ) -> Result<Value> {
        match &record.principal {
            None => match script {
                Some(script) => self.run_script_value(script, cmd, key).await,
                None => cmd
                    .query_async(&mut self.conn())
                    .await
                    .map_err(|e| keyed(key, e)),
            },
            Some(principal) => {
                crate::index::announced_write(self, principal, key, record.expires_at, cmd, script)
                    .await
            }
        }
    }

    /// `SET {prefix}:{key} {value} PXAT {expires_at - 1}`, plus `NX` if
    /// `only_new`: whether it was written (`NX` found no live key).
    async fn set(&self, key: &SessionKey, record: &Record, only_new: bool) -> Result<bool> {
        let mut cmd = self.key_cmd("SET", key, 4, format::VALUE_ROOM + 4 + 20 + 2);
        format::write_value(&mut cmd.writer_for_next_arg(), record.version, record)?;
        cmd.arg("PXAT").arg(format::px_at(record.expires_at));
        if only_new {
            cmd.arg("NX");
        }
        let reply = self.write(key, record, &cmd, None).await?;
        Ok(reply != Value::Nil)
    }

    /// The commands that read a session: its value and its key's Redis
    /// expiry. Run as one transaction (`MULTI`/`EXEC`), no write falls
    /// between them; run as a plain pipeline, a `touch` between the two
    /// would make a valid session look corrupt, so answers that disagree are
    /// read again in a transaction (see [`read_may_be_torn`](Self::read_may_be_torn)).
    pub(crate) fn read_cmds(&self, key: &SessionKey) -> Vec<Cmd> {
        vec![
            self.key_cmd("GET", key, 0, 0),
            self.key_cmd("PEXPIRETIME", key, 0, 0),
        ]
    }

    /// The record in the answers to [`read_cmds`](Self::read_cmds) on
    /// `key`: `None` if the key is absent (or expired: Redis hides expired
    /// keys from every command); `Error::Decode` naming the key if the value
    /// is not a session or its header disagrees with the key's expiry.
    pub(crate) fn decode_read(
        key: &SessionKey,
        answers: RedisResult<Vec<Value>>,
    ) -> Result<Option<Record>> {
        match answers.map_err(backend)?.as_slice() {
            [Value::Nil, _] => Ok(None),
            [Value::BulkString(bytes), Value::Int(expiry)] => {
                format::decode_live(key, bytes, *expiry).map(Some)
            }
            [Value::ServerError(e), _] | [_, Value::ServerError(e)] => {
                Err(keyed(key, e.clone().into()))
            }
            [_, _] => Err(Error::decode(
                key,
                "GET answered something else than a string",
            )),
            other => Err(Error::backend(
                BACKEND,
                format!("a read answered {} values instead of 2", other.len()),
            )),
        }
    }

    /// Whether answers to [`read_cmds`](Self::read_cmds) sent without a
    /// transaction may mix two states of the key: a value whose header does
    /// not name the key's expiry as read. Anything else (no key, another
    /// type, an error) is what a transaction would answer too.
    fn read_may_be_torn(answers: &RedisResult<Vec<Value>>) -> bool {
        match answers.as_deref() {
            Ok([Value::BulkString(bytes), Value::Int(expiry)]) => {
                !format::expiry_agrees(bytes, *expiry)
            }
            Ok([Value::BulkString(_), _]) => true,
            _ => false,
        }
    }
}

/// What the scripts' answer 3 means (see [`scripts`]).
const INVALID_HEADER: &str = "the key holds no valid session header, or its expires_at \
                              disagrees with the key's Redis expiry";

pub(crate) fn backend(e: RedisError) -> Error {
    Error::backend(BACKEND, e)
}

/// Whether the server did not know a script (`NOSCRIPT`): it is loaded and
/// the command sent again.
pub(crate) fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// A command on `key` failed: a key holding another type than a string was
/// written by something else, and is reported as undecodable.
pub(crate) fn keyed(key: &SessionKey, e: RedisError) -> Error {
    if e.code() == Some("WRONGTYPE") {
        Error::decode(key, e)
    } else {
        backend(e)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.bounded("load", async {
            // First as a plain pipeline: two commands for the server instead
            // of four (`MULTI`, `EXEC` and their replies cost about as much
            // as the read itself). Answers that agree prove the record: the
            // value was live when `GET` returned it, and the key's expiry,
            // read after it, is the one its header names. Only answers that
            // disagree (a `touch` or a write fell between the two commands,
            // the key ended meanwhile, or the value really is wrong) are read
            // again as one transaction, which decides. What the pipeline
            // cannot see: a value written behind the store's back with a
            // wrong key expiry, replaced between the two commands by a store
            // write whose expiry is exactly the bad value's header; that value
            // (live when `GET` returned it) is then returned once.
            let answers = crate::scan::pipeline(self.read_cmds(key), false)
                .query_async(&mut self.conn())
                .await;
            if !Self::read_may_be_torn(&answers) {
                return Self::decode_read(key, answers);
            }
            let answers = crate::scan::pipeline(self.read_cmds(key), true)
                .query_async(&mut self.conn())
                .await;
            Self::decode_read(key, answers)
        })
        .await
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        // NX: an expired key does not exist for Redis, so it never collides.
        self.bounded("create", self.set(key, record, true)).await
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
            format::VERSION_LEN + format::VALUE_ROOM + 20,
        );
        cmd.arg(&format::version_field(expected_version)[..]);
        format::write_value(&mut cmd.writer_for_next_arg(), next, record)?;
        cmd.arg(format::px_at(record.expires_at));
        let reply = self
            .bounded(
                "update",
                self.write(key, record, &cmd, Some(&scripts::UPDATE)),
            )
            .await?;
        let reply: i64 = redis::from_redis_value(reply).map_err(|e| keyed(key, e.into()))?;
        match reply {
            1 => Ok(UpdateOutcome::Updated),
            0 => Ok(UpdateOutcome::Missing),
            2 => Ok(UpdateOutcome::Conflict),
            _ => Err(Error::decode(key, INVALID_HEADER)),
        }
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        self.bounded("save", self.set(key, record, false)).await?;
        Ok(())
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let mut cmd = self.script_cmd(&scripts::TOUCH, key, 2, 20 + 20);
        cmd.arg(format::px_at(expires_at))
            .arg(&format::expires_field(expires_at)[..]);
        self.bounded("touch", async {
            match self.run_script_value(&scripts::TOUCH, &cmd, key).await? {
                Value::Int(1) => Ok(true),
                Value::Int(0) => Ok(false),
                // Touched, and the session names a principal: its index entry
                // is raised to the new expiry (a lagging entry is harmless,
                // nothing removes an entry without reading its session; it
                // only makes `delete_expired` look at it again).
                Value::BulkString(name) => {
                    let name = String::from_utf8(name)
                        .map_err(|_| Error::decode(key, "the principal is not UTF-8"))?;
                    let principal = Principal::stored(key, name)?;
                    crate::index::announce(self, &principal, key, expires_at).await?;
                    Ok(true)
                }
                _ => Err(Error::decode(key, INVALID_HEADER)),
            }
        })
        .await
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        self.bounded("destroy", async {
            let _: i64 = self
                .key_cmd("UNLINK", key, 0, 0)
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn clear(&self) -> Result<()> {
        // One walk of `{prefix}:*` finds both what to remove: the sessions
        // and the principals' indexes of the namespace (nothing else that
        // matches, such as a nested namespace's keys).
        let mut scan = self.bounded("clear", Scan::start(self)).await?;
        while let Some(names) = self.bounded("clear", scan.next_owned(self)).await? {
            let cmds = names
                .iter()
                .map(|name| vec![redis::cmd("UNLINK").arg(name).clone()])
                .collect();
            for answers in self
                .bounded("clear", crate::scan::per_key(self, cmds, false))
                .await?
            {
                for answer in answers.map_err(backend)? {
                    if let Value::ServerError(e) = answer {
                        return Err(backend(e.into()));
                    }
                }
            }
        }
        Ok(())
    }

    async fn len(&self) -> Result<u64> {
        // SCAN never returns a key whose TTL has passed (Redis checks the
        // expiry of every key it returns), and may return a key twice.
        let mut seen = HashSet::new();
        let mut scan = self.bounded("len", Scan::start(self)).await?;
        while let Some(keys) = self.bounded("len", scan.next_page(self)).await? {
            seen.extend(keys);
        }
        Ok(seen.len() as u64)
    }

    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        // The whole page (its SCANs and its reads) within the deadline, like
        // any other call: a page is bounded work, unlike a walk of the
        // namespace.
        self.bounded("list", crate::list::page(self, cursor, limit))
            .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        // Redis expires sessions by itself (lazily on access, actively in
        // the background); an expired key is invisible to every command.
        // What is left is the principals' index entries of sessions that
        // ended, which nothing else removes if their principal never comes
        // back.
        crate::index::reap(self).await?;
        Ok(0)
    }
}

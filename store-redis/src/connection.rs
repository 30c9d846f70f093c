//! The connections a [`RedisStore`](crate::RedisStore) can run on.

use std::fmt;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::SentinelConnection;

/// A ready connection to a standalone Redis server or to a Redis Cluster.
///
/// Every variant is a cheap-to-clone handle that multiplexes concurrent
/// requests over its sockets. Build one yourself when you need settings the
/// [`RedisStoreBuilder`](crate::RedisStoreBuilder) does not expose (TLS,
/// credentials providers, read routing) and pass it to
/// [`RedisStoreBuilder::build`](crate::RedisStoreBuilder::build); otherwise
/// let the builder connect.
#[derive(Clone)]
#[non_exhaustive]
pub enum RedisConnection {
    /// A standalone server through a [`ConnectionManager`], which reconnects
    /// by itself (recommended for a standalone server).
    Manager(ConnectionManager),
    /// A standalone server through a plain [`MultiplexedConnection`].
    Multiplexed(MultiplexedConnection),
    /// A Redis Cluster through the cluster-aware [`ClusterConnection`].
    Cluster(ClusterConnection),
    /// The primary of a service monitored by Redis Sentinel, followed
    /// across failovers.
    Sentinel(SentinelConnection),
}

impl RedisConnection {
    /// Whether this is a cluster connection.
    #[must_use]
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl fmt::Debug for RedisConnection {
    /// Names the kind of connection only: the drivers' own `Debug` may show
    /// connection details, so none of it is printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Manager(_) => "RedisConnection::Manager",
            Self::Multiplexed(_) => "RedisConnection::Multiplexed",
            Self::Cluster(_) => "RedisConnection::Cluster",
            Self::Sentinel(_) => "RedisConnection::Sentinel",
        })
    }
}

impl From<ConnectionManager> for RedisConnection {
    fn from(conn: ConnectionManager) -> Self {
        Self::Manager(conn)
    }
}

impl From<MultiplexedConnection> for RedisConnection {
    fn from(conn: MultiplexedConnection) -> Self {
        Self::Multiplexed(conn)
    }
}

impl From<SentinelConnection> for RedisConnection {
    fn from(conn: SentinelConnection) -> Self {
        Self::Sentinel(conn)
    }
}

impl From<ClusterConnection> for RedisConnection {
    fn from(conn: ClusterConnection) -> Self {
        Self::Cluster(conn)
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Manager(c) => c.req_packed_command(cmd),
            Self::Multiplexed(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Multiplexed(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Manager(c) => c.get_db(),
            Self::Multiplexed(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
        }
    }
}

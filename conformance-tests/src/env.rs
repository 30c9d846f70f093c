//! Where the test servers are: the one home of every server variable, its
//! loopback default, its opt-out and the failure that says how to start
//! the server.
//!
//! Every backend test in this workspace, the benchmark and the demo's
//! browser test read servers through these constants, and
//! `scripts/lib/servers.sh` (which starts the servers for `./scripts/test`)
//! exports the same variables. A third-party store can use them too, or
//! define its own [`Server`].
//!
//! ```
//! use session_conformance::env::REDIS;
//!
//! // SESSION_REDIS_URL if set (and not blank), else the loopback default.
//! let url = REDIS.url();
//! assert!(url.starts_with("redis://"));
//! // Tests skip only when the run opts out explicitly (SESSION_SKIP_REDIS=1).
//! if let Some(reason) = REDIS.skip_reason() {
//!     eprintln!("skipped: {reason}");
//! }
//! ```

use std::fmt;

/// A test server: the variable naming it, its default, the variables that
/// opt out of its tests, and how to get one running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Server {
    /// What it is, for messages (`"Redis"`).
    pub name: &'static str,
    /// The environment variable with its address (`SESSION_REDIS_URL`).
    pub var: &'static str,
    /// The address used when the variable is unset or blank.
    pub default: &'static str,
    /// Variables that, set to `1`, skip this server's tests.
    pub opt_outs: &'static [&'static str],
    /// How to get the server running, for the failure message.
    pub how_to_start: &'static str,
}

/// A standalone Redis.
pub const REDIS: Server = Server {
    name: "Redis",
    var: "SESSION_REDIS_URL",
    default: "redis://127.0.0.1:6379/",
    opt_outs: &["SESSION_SKIP_REDIS"],
    how_to_start: "run ./scripts/test (it reuses a Redis on 127.0.0.1:6379 or starts one), or \
                   start `redis-server` and set SESSION_REDIS_URL",
};

/// A Redis Cluster: comma-separated `redis://` URLs of any of its nodes.
pub const REDIS_CLUSTER: Server = Server {
    name: "a Redis Cluster",
    var: "SESSION_REDIS_CLUSTER_NODES",
    default: "redis://127.0.0.1:7000/",
    opt_outs: &["SESSION_SKIP_REDIS_CLUSTER", "SESSION_SKIP_REDIS"],
    how_to_start: "run ./scripts/test (it starts a 6-node cluster on loopback), or set \
                   SESSION_REDIS_CLUSTER_NODES to comma-separated redis:// URLs of a running \
                   cluster",
};

/// A MongoDB (or a server speaking its wire protocol).
pub const MONGO: Server = Server {
    name: "MongoDB",
    var: "SESSION_MONGO_URL",
    default: "mongodb://127.0.0.1:27017/",
    opt_outs: &["SESSION_SKIP_MONGO"],
    how_to_start: "run ./scripts/test (it installs and starts a test server, SecantusDB), or \
                   start a MongoDB server and set SESSION_MONGO_URL",
};

/// The MongoDB test server's program, for fault tests that start a private
/// server of their own so that they may kill it. [`Server::url`] is the
/// program (a path, or a name looked up on `PATH`).
pub const MONGO_SERVER_PROGRAM: Server = Server {
    name: "the MongoDB test server program",
    var: "SESSION_MONGO_SERVER_BIN",
    default: "secantusd-py",
    opt_outs: &["SESSION_SKIP_MONGO_FAULTS", "SESSION_SKIP_MONGO"],
    how_to_start: "run ./scripts/test (it installs SecantusDB into .venv-test and exports \
                   SESSION_MONGO_SERVER_BIN), or set SESSION_MONGO_SERVER_BIN to a \
                   `secantusd-py` (pip install SecantusDB==0.7.0b3)",
};

/// A PostgreSQL server (trust auth or credentials in the URL; the database
/// must exist).
pub const POSTGRES: Server = Server {
    name: "PostgreSQL",
    var: "SESSION_POSTGRES_URL",
    default: "postgres://postgres@127.0.0.1:5432/test",
    opt_outs: &["SESSION_SKIP_POSTGRES"],
    how_to_start: "run ./scripts/test (it reuses a PostgreSQL on 127.0.0.1:5432 or installs \
                   Debian's postgresql and starts a private cluster), or start PostgreSQL and \
                   set SESSION_POSTGRES_URL",
};

/// A MySQL or MariaDB server: a `mysql://` URL naming a database the tests
/// may create tables in.
pub const MYSQL: Server = Server {
    name: "MySQL/MariaDB",
    var: "SESSION_MYSQL_URL",
    default: "mysql://root@127.0.0.1:3306/test",
    opt_outs: &["SESSION_SKIP_MYSQL"],
    how_to_start: "run ./scripts/test (it reuses a server on 127.0.0.1:3306 or installs Debian's \
                   mariadb-server and starts a private one), or start MariaDB/MySQL and set \
                   SESSION_MYSQL_URL=mysql://USER:PASSWORD@HOST:PORT/DATABASE",
};

/// A WebDriver (chromedriver) for browser tests.
pub const WEBDRIVER: Server = Server {
    name: "a WebDriver",
    var: "SESSION_WEBDRIVER_URL",
    default: "http://127.0.0.1:9515",
    opt_outs: &["SESSION_SKIP_BROWSER"],
    how_to_start: "run ./scripts/test (it installs Debian's chromium and chromium-driver and \
                   starts chromedriver), or start `chromedriver --port=9515` and set \
                   SESSION_WEBDRIVER_URL",
};

/// Set to `1`, skips the full-disk tests (they mount a tmpfs, which needs
/// root): see [`fault::Tmpfs`](crate::fault::Tmpfs).
pub const FULL_DISK_OPT_OUT: &str = "SESSION_SKIP_FULL_DISK";

/// Whether the opt-out variable `var` is set to `1`.
#[must_use]
pub fn opted_out(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v.trim() == "1")
}

impl Server {
    /// The variable's value, trimmed, if it is set and not blank; else the
    /// default.
    #[must_use]
    pub fn url(&self) -> String {
        std::env::var(self.var)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.default.to_owned())
    }

    /// [`url`](Self::url) split at commas (blank parts dropped), for
    /// servers named by several addresses.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.url()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// `Some("SESSION_SKIP_REDIS=1")` if the run opted out of this server's
    /// tests, else `None`: tests never skip for any other reason.
    #[must_use]
    pub fn skip_reason(&self) -> Option<String> {
        self.opt_outs
            .iter()
            .find(|var| opted_out(var))
            .map(|var| format!("{var}=1"))
    }

    /// The failure message for a server that could not be reached at
    /// `tried`: what failed, and how to start it or opt out.
    #[must_use]
    pub fn unreachable_message(
        &self,
        tried: &str,
        error: &(dyn std::error::Error + 'static),
    ) -> String {
        let cause = session_core::report(error);
        let opt_out = self
            .opt_outs
            .first()
            .copied()
            .unwrap_or("the opt-out variable");
        format!(
            "cannot reach {} at {tried}: {cause}. To run these tests, {}; to skip them \
             explicitly, set {opt_out}=1",
            self.name, self.how_to_start
        )
    }

    /// Fail the test: `what` could not reach the server at `tried`.
    ///
    /// # Panics
    ///
    /// Always, with [`unreachable_message`](Self::unreachable_message).
    pub fn unreachable(&self, tried: &str, error: &(dyn std::error::Error + 'static)) -> ! {
        panic!("{}", self.unreachable_message(tried, error))
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}={})", self.name, self.var, self.url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_address_the_way_to_start_and_the_opt_out() {
        let error = std::io::Error::other("connection refused");
        let message = REDIS.unreachable_message("redis://127.0.0.1:1/", &error);
        for needle in [
            "Redis",
            "redis://127.0.0.1:1/",
            "connection refused",
            "./scripts/test",
            "SESSION_SKIP_REDIS=1",
        ] {
            assert!(message.contains(needle), "{needle:?} missing: {message}");
        }
    }
}

//! Private `redis-server` processes for the fault tests: each on a free
//! loopback port, in a folder of the test's temp dir, killed (by its own
//! pid, never by name) when the handle is dropped, also when the test fails.
//!
//! The shared servers of `session_conformance::env` are never used here: a
//! fault test kills, stops and restarts its server.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use session_conformance::fault::Stall;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a server may take to answer `PING` after it was started
/// (reading an append-only file included).
const READY_WITHIN: Duration = Duration::from_secs(20);

/// What a test that cannot start a program says.
fn not_installed(program: &str) -> String {
    format!(
        "cannot run `{program}`: it is not installed (or not on PATH). The Redis fault tests \
         start private servers of their own: install Debian's redis-server and redis-tools \
         (`apt-get install redis-server redis-tools`, or run ./scripts/test, which installs \
         them); to skip these tests explicitly, set SESSION_SKIP_REDIS=1"
    )
}

/// A loopback port that is free now, whose Redis Cluster bus port (+10000)
/// is free too.
#[allow(clippy::panic, reason = "test helper: no free port fails the test")]
fn free_port() -> u16 {
    for _ in 0..200 {
        let Ok(listener) = TcpListener::bind(("127.0.0.1", 0)) else {
            continue;
        };
        let Ok(addr) = listener.local_addr() else {
            continue;
        };
        let port = addr.port();
        if let Some(bus) = port.checked_add(10_000)
            && TcpListener::bind(("127.0.0.1", bus)).is_ok()
        {
            return port;
        }
    }
    panic!("no free loopback port (with a free port 10000 above it) in 200 tries")
}

/// Does a Redis answer `PING` with `PONG` on this port (not `LOADING`)?
async fn pong(port: u16) -> bool {
    let ask = async {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        conn.write_all(b"PING\r\n").await?;
        let mut reply = [0; 7];
        conn.read_exact(&mut reply).await?;
        std::io::Result::Ok(reply.starts_with(b"+PONG"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ask).await,
        Ok(Ok(true))
    )
}

/// One private `redis-server`.
#[derive(Debug)]
pub struct RedisProcess {
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisProcess {
    /// Start `redis-server` in `dir` (created if missing) on a free
    /// loopback port, with `extra` arguments after the store's own
    /// (`--save ""`, no append-only file unless `extra` asks for one), and
    /// wait until it answers `PING`. Tries five ports (another process may
    /// take a free port first).
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed, or it does not come up.
    pub async fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_with(dir, &[], extra).await
    }

    /// A Redis Sentinel in `dir` watching the primary on `primary_port` as
    /// `service` (quorum 2; down after `down_after` without an answer).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    #[allow(clippy::panic, reason = "test helper")]
    pub async fn start_sentinel(
        dir: &Path,
        service: &str,
        primary_port: u16,
        down_after: Duration,
    ) -> Self {
        if let Err(e) = std::fs::create_dir_all(dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        // Sentinel rewrites its configuration file: one per sentinel.
        let conf = dir.join("sentinel.conf");
        let text = format!(
            "sentinel monitor {service} 127.0.0.1 {primary_port} 2\n\
             sentinel down-after-milliseconds {service} {}\n\
             sentinel failover-timeout {service} 10000\n\
             sentinel parallel-syncs {service} 1\n",
            down_after.as_millis()
        );
        if let Err(e) = std::fs::write(&conf, text) {
            panic!("cannot write {}: {e}", conf.display());
        }
        let conf = conf.display().to_string();
        Self::start_with(dir, &[&conf, "--sentinel"], &[]).await
    }

    /// [`start`](Self::start) with `leading` arguments first (a
    /// configuration file must come first).
    #[allow(clippy::panic, reason = "test helper")]
    async fn start_with(dir: &Path, leading: &[&str], extra: &[&str]) -> Self {
        if let Err(e) = std::fs::create_dir_all(dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut args: Vec<String> = leading.iter().map(|s| (*s).to_owned()).collect();
            args.extend(
                [
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--dir",
                    &dir.display().to_string(),
                    "--logfile",
                    "redis.log",
                    "--save",
                    "",
                    "--daemonize",
                    "no",
                ]
                .iter()
                .map(|s| (*s).to_owned()),
            );
            args.extend(extra.iter().map(|s| (*s).to_owned()));
            let mut server = Self {
                port,
                dir: dir.to_owned(),
                args,
                child: None,
            };
            match server.launch().await {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!(
            "redis-server did not start in {} on 5 ports: {last}",
            dir.display()
        )
    }

    /// Run the server with this handle's port, folder and arguments and
    /// wait for `PONG`; on failure the process is killed and the log's end
    /// returned.
    #[allow(
        clippy::panic,
        reason = "test helper: a missing program fails the test"
    )]
    async fn launch(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                panic!("{}", not_installed("redis-server"))
            }
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        self.child = Some(child);
        let until = Instant::now() + READY_WITHIN;
        while Instant::now() < until {
            if pong(self.port).await {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("exited with {status}: {}", self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill().await;
        Err(format!(
            "no PONG on port {} within {READY_WITHIN:?}: {}",
            self.port,
            self.log_tail()
        ))
    }

    /// The last lines of the server's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The folder it runs in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `SIGKILL` the server (by its pid) and reap it; nothing if it is
    /// not running.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Errors: it has exited already, which is what was asked.
            let _ = child.kill().await;
        }
    }

    /// Start the server again on the same port, in the same folder, with
    /// the same arguments (an append-only file there is read back), and
    /// wait until it answers.
    ///
    /// # Panics
    ///
    /// If it does not come up.
    #[allow(clippy::panic, reason = "test helper")]
    pub async fn restart(&mut self) {
        self.kill().await;
        if let Err(e) = self.launch().await {
            panic!("redis-server did not restart on port {}: {e}", self.port);
        }
    }

    /// Send `signal` (`STOP`, `CONT`) to the server's pid with kill(1), and
    /// return once it took effect (a request sent right after `STOP` must
    /// find the server stopped), waiting at most 10 s.
    #[allow(clippy::panic, reason = "test helper")]
    fn signal(&self, signal: &str) {
        let Some(pid) = self.child.as_ref().and_then(Child::id) else {
            panic!("SIG{signal}: the server is not running");
        };
        if let Err(e) = session_conformance::fault::signal_and_wait(
            pid,
            signal == "STOP",
            std::time::Duration::from_secs(10),
        ) {
            panic!("kill -{signal} {pid}: {e}");
        }
    }
}

impl Stall for RedisProcess {
    /// `SIGSTOP`: the server holds every request (the kernel still
    /// accepts connections for it) until `SIGCONT`.
    fn stall(&self) {
        self.signal("STOP");
    }

    fn resume(&self) {
        self.signal("CONT");
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL ends a stopped process too; tokio reaps it.
            let _ = child.start_kill();
        }
    }
}

/// A private 6-node Redis Cluster (3 primaries, 3 replicas) on loopback,
/// created as `scripts/lib/servers.sh` creates the shared one, with a
/// short `cluster-node-timeout` so that a failover takes seconds.
#[derive(Debug)]
pub struct PrivateCluster {
    /// The six nodes, in the order given to `redis-cli --cluster create`.
    pub nodes: Vec<RedisProcess>,
}

impl PrivateCluster {
    /// Start six nodes in folders of `dir`, create the cluster, and wait
    /// until every node reports all 16384 slots served and every replica
    /// is linked to its primary.
    ///
    /// # Panics
    ///
    /// If `redis-server` or `redis-cli` is missing, or the cluster does not
    /// come up within a minute.
    #[allow(clippy::panic, reason = "test helper")]
    pub async fn start(dir: &Path, node_timeout: Duration) -> Self {
        let timeout = node_timeout.as_millis().to_string();
        let mut nodes = Vec::new();
        for i in 0..6 {
            let node = RedisProcess::start(
                &dir.join(format!("node-{i}")),
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &timeout,
                ],
            )
            .await;
            nodes.push(node);
        }
        let cluster = Self { nodes };
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let created = tokio::time::timeout(Duration::from_secs(60), create.output()).await;
        match created {
            Ok(Ok(out)) if out.status.success() => {}
            Ok(Ok(out)) => panic!(
                "redis-cli --cluster create failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Ok(Err(e)) if e.kind() == ErrorKind::NotFound => {
                panic!("{}", not_installed("redis-cli"))
            }
            Ok(Err(e)) => panic!("cannot run redis-cli: {e}"),
            Err(_) => panic!("redis-cli --cluster create did not finish within 60 s"),
        }
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let mut ready = 0;
            for node in &cluster.nodes {
                ready += usize::from(node_ready(node.port()).await);
            }
            if ready == cluster.nodes.len() {
                return cluster;
            }
            assert!(
                Instant::now() < until,
                "the private cluster in {} was not ready within 60 s ({ready} of 6 nodes)",
                dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisProcess::url).collect()
    }
}

/// A plain connection to one node, with bounded waits.
pub async fn node_connection(port: u16) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Is this cluster node done: all slots served, six nodes known, and (a
/// replica) its link to its primary up?
async fn node_ready(port: u16) -> bool {
    let Ok(mut conn) = node_connection(port).await else {
        return false;
    };
    let mut ask = async |name: &str, arg: &str| -> String {
        redis::cmd(name)
            .arg(arg)
            .query_async(&mut conn)
            .await
            .unwrap_or_default()
    };
    let cluster = ask("CLUSTER", "INFO").await;
    let replication = ask("INFO", "replication").await;
    [
        "cluster_state:ok",
        "cluster_slots_ok:16384",
        "cluster_known_nodes:6",
    ]
    .iter()
    .all(|needle| cluster.contains(needle))
        && (replication.contains("role:master") || replication.contains("master_link_status:up"))
}

//! Fault injection for stores' own tests: a loopback TCP proxy in front of
//! a real server that can be made to **stall** (accept and read, but pass
//! nothing on, as a server stopped with `SIGSTOP` or behind a dead network
//! path does) and to resume; a full disk ([`Tmpfs`]); a writer process
//! killed mid-stream ([`kill_mid_stream`]).
//!
//! A store's operation deadline is tested through it: build the store on
//! the proxy's address, stall, check that a call fails with
//! [`Error::Timeout`] instead of waiting, resume,
//! check that the same store works again.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use session_conformance::fault::StallProxy;
//! use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
//!
//! // An echo server standing in for a database.
//! let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let upstream = server.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((mut conn, _)) = server.accept().await {
//!         tokio::spawn(async move {
//!             let (mut r, mut w) = conn.split();
//!             let _ = tokio::io::copy(&mut r, &mut w).await;
//!         });
//!     }
//! });
//!
//! let proxy = StallProxy::start(upstream).await?;
//! let mut client = tokio::net::TcpStream::connect(proxy.addr()).await?;
//! client.write_all(b"ping").await?;
//! let mut answer = [0; 4];
//! client.read_exact(&mut answer).await?;
//! assert_eq!(&answer, b"ping");
//!
//! proxy.stall();
//! client.write_all(b"late").await?;
//! let waited = tokio::time::timeout(
//!     std::time::Duration::from_millis(200),
//!     client.read_exact(&mut answer),
//! )
//! .await;
//! assert!(waited.is_err(), "a stalled proxy passes nothing on");
//!
//! proxy.resume();
//! client.read_exact(&mut answer).await?;
//! assert_eq!(&answer, b"late");
//!
//! // In front of the server a URL names: the URL to build the store on.
//! let url = format!("echo://ada:pw@{upstream}/db?x=1");
//! let (proxy, proxied) = StallProxy::in_front_of(&url).await?;
//! assert_eq!(proxied, format!("echo://ada:pw@{}/db?x=1", proxy.addr()));
//! # Ok(()) }
//! ```

mod crash;
mod disk;

pub use crash::{
    ACKS_BEFORE_KILL, Acked, DEADLINE, WRITERS, ack, child_var, kill_mid_stream, write_until_killed,
};
pub use disk::{Tmpfs, assert_all_present, fill_until_error};

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use session_core::{Error, Record, SessionId, SessionStore};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A TCP proxy on `127.0.0.1` in front of one upstream address; see the
/// [module](self). Dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct StallProxy {
    addr: SocketAddr,
    stalled: watch::Sender<bool>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl StallProxy {
    /// Listen on a free loopback port and forward every connection to
    /// `upstream`. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// If no loopback port can be bound.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (stalled, watcher) = watch::channel(false);
        let acceptor = tokio::spawn(accept(listener, upstream, watcher));
        Ok(Self {
            addr,
            stalled,
            acceptor,
        })
    }

    /// A proxy in front of the server that `url`
    /// (`scheme://[user[:password]@]host:port[/...]`) names, and the same
    /// URL with the proxy's address in place of the server's: what to build
    /// the store on. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// If `url` has no `scheme://` and `host:port`, the host does not
    /// resolve, or no loopback port can be bound. The message never
    /// repeats the URL (it may hold a password).
    pub async fn in_front_of(url: &str) -> io::Result<(Self, String)> {
        let invalid = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the URL has no scheme://host:port",
            )
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let (user, host) = match authority.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, authority),
        };
        let upstream = tokio::net::lookup_host(host)
            .await?
            .next()
            .ok_or_else(invalid)?;
        let proxy = Self::start(upstream).await?;
        let user = user.map(|u| format!("{u}@")).unwrap_or_default();
        let proxied = format!("{scheme}://{user}{}{tail}", proxy.addr());
        Ok((proxy, proxied))
    }

    /// The address to give the store instead of the server's.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop passing bytes on, in both directions, on every connection (new
    /// ones are accepted and held too). Nothing is closed: a client sees a
    /// server that has stopped answering.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Pass bytes on again, including what arrived while stalled.
    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }
}

/// Send `SIGSTOP` (`stop`) or `SIGCONT` to the process `pid` (one the test
/// started) with kill(1), and wait, at most `bound`, until the signal took
/// effect: every thread of the process stopped, or none stopped.
///
/// kill(2) returns once the signal is queued, not once it is delivered: a
/// server busy on the other core can still answer a request sent right
/// after it, and a fault test that expects a stalled server then sees an
/// answer. On Linux this reads each thread's state in
/// `/proc/<pid>/task/*/stat`; elsewhere it returns after kill(1).
///
/// # Errors
///
/// If kill(1) cannot be run or fails, or the state is not reached within
/// `bound`.
pub fn signal_and_wait(pid: u32, stop: bool, bound: Duration) -> io::Result<()> {
    let name = if stop { "STOP" } else { "CONT" };
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!("kill -{name} {pid}: {status}")));
    }
    if !cfg!(target_os = "linux") {
        return Ok(());
    }
    let started = std::time::Instant::now();
    loop {
        let states = thread_states(pid)?;
        let stopped = |state: &u8| matches!(state, b'T' | b't');
        let reached = if stop {
            !states.is_empty() && states.iter().all(stopped)
        } else {
            !states.iter().any(stopped)
        };
        if reached {
            return Ok(());
        }
        if started.elapsed() >= bound {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "SIG{name} to {pid}: thread states {:?} after {bound:?}",
                    String::from_utf8_lossy(&states)
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The state letter of each thread of `pid` (Linux `/proc`).
fn thread_states(pid: u32) -> io::Result<Vec<u8>> {
    let mut states = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread may end between the listing and the read.
        let Ok(stat) = std::fs::read(task?.path().join("stat")) else {
            continue;
        };
        // `pid (comm) S ...`: the name may hold spaces and parentheses, so
        // the state follows the last `)`.
        if let Some(close) = stat.iter().rposition(|&b| b == b')')
            && let Some(&state) = stat.get(close + 2)
        {
            states.push(state);
        }
    }
    Ok(states)
}

/// Something that can make a server stop answering and answer again: a
/// [`StallProxy`], or a server process of the test's own stopped with
/// `SIGSTOP` and continued with `SIGCONT`. What
/// [`assert_deadline_bounds_a_stall`] drives.
pub trait Stall {
    /// Stop answering: requests are held (not refused, not closed).
    fn stall(&self);
    /// Answer again, including what was held.
    fn resume(&self);
}

impl Stall for StallProxy {
    fn stall(&self) {
        StallProxy::stall(self);
    }

    fn resume(&self) {
        StallProxy::resume(self);
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        // The acceptor owns the connections' tasks: aborting it drops them.
        self.acceptor.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, stalled: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, say: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let stalled = stalled.clone();
        connections.spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let up = forward(client_read, server_write, stalled.clone());
            let down = forward(server_read, client_write, stalled);
            // One side closing ends the connection, as a plain proxy does.
            tokio::select! {
                () = up => {}
                () = down => {}
            }
        });
        // Reap finished connections so a long test does not accumulate them.
        while connections.try_join_next().is_some() {}
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a stall are held until it ends.
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The operation deadline, end to end, on a `store` built on `proxy`'s
/// address (a [`StallProxy`], or any other [`Stall`], such as a server the
/// test stops with `SIGSTOP`) with an operation deadline of `deadline` (and
/// its bulk calls bounded by it too): a session saved; the proxy stalls; `load`, `update`,
/// `touch` and `len` each fail with [`Error::Timeout`] naming `backend` and
/// the call; the proxy resumes; the same store loads the session again
/// (within 40 deadlines: a driver may have marked the server down while it
/// stalled and needs a moment to find it again), as saved or as the
/// timed-out update left it: a deadline ends the wait, it cannot recall a
/// request already sent. Panics with a message on the first difference.
///
/// # Panics
///
/// When the store does not behave so: this is a test helper.
pub async fn assert_deadline_bounds_a_stall<S: SessionStore + ?Sized, P: Stall + Sync + ?Sized>(
    store: &S,
    proxy: &P,
    backend: &str,
    deadline: Duration,
) {
    let key = SessionId::generate()
        .unwrap_or_else(|e| panic!("no random source: {e}"))
        .key();
    let mut data = session_core::Data::new();
    data.insert("user".into(), "ada".into());
    let record = Record::new(data, Duration::from_secs(600));
    if let Err(e) = store.save(&key, &record).await {
        panic!("save through the proxy before the stall: {e}");
    }

    proxy.stall();
    let timed_out = |what, result| assert_timeout(result, backend, what, deadline);
    timed_out("load", store.load(&key).await.map(drop));
    timed_out("update", store.update(&key, &record, 0).await.map(drop));
    timed_out(
        "touch",
        store.touch(&key, record.expires_at).await.map(drop),
    );
    timed_out("len", store.len().await.map(drop));

    proxy.resume();
    let mut last = None;
    for _ in 0..40 {
        match store.load(&key).await {
            Ok(found) => {
                // A call that timed out may still be applied: its request
                // can reach the server after the caller stopped waiting (the
                // proxy passes on what it held). The update is the only
                // write above, so the session is as saved or as updated.
                let updated = record.clone().with_version(1);
                assert!(
                    found == Some(record.clone()) || found == Some(updated),
                    "the session after the stall: {found:?}"
                );
                if let Err(e) = store.destroy(&key).await {
                    panic!("destroy after the stall: {e}");
                }
                return;
            }
            Err(e @ (Error::Timeout { .. } | Error::Backend { .. })) => last = Some(e),
            Err(e) => panic!("load after the stall: {e:?}"),
        }
    }
    panic!("the store did not recover within 40 deadlines after the stall ended: {last:?}");
}

/// The operation deadline from the first connection on: `build` (which
/// builds a store on `proxy`'s address with an operation deadline of
/// `deadline`) fails with [`Error::Timeout`] naming `backend` and the
/// operation `"connect"` after `deadline` while the proxy stalls; once it resumes, the store `build`
/// gives passes [`assert_deadline_bounds_a_stall`].
///
/// # Panics
///
/// When the store does not behave so: this is a test helper.
pub async fn assert_deadline_bounds_building_and_a_stall<S, F, Fut>(
    proxy: &StallProxy,
    backend: &str,
    deadline: Duration,
    build: F,
) where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<S, Error>>,
{
    proxy.stall();
    assert_timeout(build().await.map(drop), backend, "connect", deadline);
    proxy.resume();
    let store = build()
        .await
        .unwrap_or_else(|e| panic!("building once the stall ended: {e:?}"));
    assert_deadline_bounds_a_stall(&store, proxy, backend, deadline).await;
}

/// Fail unless `result` is [`Error::Timeout`] naming `backend`, `operation`
/// and `deadline`: what a store call held up past its operation deadline
/// (by a stalled server, a lock held elsewhere) must return.
///
/// # Panics
///
/// If it is anything else, with a message naming what was expected.
pub fn assert_timeout<T: std::fmt::Debug>(
    result: Result<T, Error>,
    backend: &str,
    operation: &str,
    deadline: Duration,
) {
    match result {
        Err(Error::Timeout {
            backend: b,
            operation: o,
            after,
        }) if b == backend && o == operation && after == deadline => {}
        other => panic!(
            "{operation}: expected Error::Timeout {{ backend: {backend:?}, operation: \
             {operation:?}, after: {deadline:?} }}, got {other:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `signal_and_wait` returns with the process stopped, then running,
    /// as its own threads' states say.
    #[test]
    fn signal_and_wait_returns_once_the_signal_took_effect() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep(1) runs");
        let pid = child.id();
        let bound = Duration::from_secs(10);
        signal_and_wait(pid, true, bound).unwrap();
        assert!(thread_states(pid).unwrap().iter().all(|s| *s == b'T'));
        signal_and_wait(pid, false, bound).unwrap();
        assert!(!thread_states(pid).unwrap().contains(&b'T'));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(signal_and_wait(pid, true, bound).is_err(), "a reaped pid");
    }
}

//! Real faults on a private MongoDB test server that this file starts, and
//! may therefore kill: a SIGKILL and restart under a writer loop with the
//! default (journaled) write concern, and a SIGSTOP/SIGCONT.
//!
//! The server is the program named by `SESSION_MONGO_SERVER_BIN` (the test
//! command exports SecantusDB's `secantusd-py` from its venv); a real
//! `mongod` is not installable on the machines these tests were written on.
//! `SESSION_SKIP_MONGO_FAULTS=1` (or `SESSION_SKIP_MONGO=1`) skips them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use session_conformance::env::MONGO_SERVER_PROGRAM;
use session_conformance::fixtures::{key, live, object};
use session_core::{Error, SessionKey, SessionStore};
use session_store_mongo::MongoStore;

/// One call of the store, boxed so that several kinds fit in one list.
type Call<'a> = std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// Every call's deadline in these tests.
const DEADLINE: Duration = Duration::from_secs(2);
/// What a loaded two-core machine may add to a deadline before the call
/// returns: the timer fires on time, the task may be polled later.
const SLACK: Duration = Duration::from_secs(2);
/// Every other wait here is bounded by this.
const BOUND: Duration = Duration::from_secs(90);
const TTL: Duration = Duration::from_secs(3600);

/// A private test server: its process, port and storage. Killed (SIGCONT
/// first, in case it is stopped) and reaped on drop.
struct PrivateServer {
    program: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
}

impl PrivateServer {
    /// Start a server on a port it picks, or `None` if the run opted out.
    fn start() -> Option<Self> {
        if let Some(reason) = MONGO_SERVER_PROGRAM.skip_reason() {
            eprintln!("skipped: {reason}");
            return None;
        }
        let mut server = Self {
            program: MONGO_SERVER_PROGRAM.url(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            port: 0,
        };
        server.spawn();
        Some(server)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// Start the server on `self.port` (0 the first time: it picks one,
    /// which is then kept for restarts) with the same storage, and wait
    /// until it listens.
    fn spawn(&mut self) {
        let storage = self.dir.path().join("data");
        std::fs::create_dir_all(&storage).unwrap();
        let log = std::fs::File::create(self.log()).unwrap();
        // Started in its own folder, so that no ./secantusd.toml is read.
        let child = Command::new(&self.program)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(&storage)
            .args(["--standalone", "--log-level", "INFO"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                MONGO_SERVER_PROGRAM.unreachable(&self.program, &e);
            });
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(self.log()).unwrap_or_default();
            if let Some(port) = listening_port(&text) {
                self.port = port;
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return;
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && started.elapsed() < BOUND,
                "the test server did not start ({exited:?} after {:?}); its log:\n{text}",
                started.elapsed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL the server and reap it.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Send `signal` (`"STOP"`, `"CONT"`) to the server, by its pid.
    /// Returns once it took effect (see `signal_and_wait`): a request sent
    /// right after `STOP` must find the server stopped.
    fn signal(&self, signal: &str) {
        session_conformance::fault::signal_and_wait(self.pid(), signal == "STOP", BOUND)
            .unwrap_or_else(|e| panic!("kill -{signal}: {e}"));
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The port in the server's `secantus listening on 127.0.0.1:PORT` line.
fn listening_port(log: &str) -> Option<u16> {
    log.lines()
        .rev()
        .filter_map(|l| l.split("listening on 127.0.0.1:").nth(1))
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .next()
}

/// A store on the private server whose calls end within [`DEADLINE`]
/// (`len`, `all` and the other whole-collection calls too).
async fn connect(server: &PrivateServer, namespace: &str) -> MongoStore {
    let url = server.url();
    MongoStore::builder()
        .with_database("session_faults")
        .with_namespace(namespace)
        .with_operation_timeout(DEADLINE)
        .with_bulk_timeout(DEADLINE)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the private server at {url}: {e:?}"))
}

/// A failed call during a fault must be a typed error of this backend,
/// returned within the deadline.
fn check_failure(error: &Error, took: Duration) {
    assert!(
        took <= DEADLINE + SLACK,
        "a call took {took:?}, past the {DEADLINE:?} deadline: {error:?}"
    );
    assert!(
        matches!(
            error,
            Error::Timeout {
                backend: "mongodb",
                ..
            } | Error::Backend {
                backend: "mongodb",
                ..
            }
        ),
        "{error:?}"
    );
}

/// What the writers saw.
#[derive(Default)]
struct Tally {
    acknowledged: Vec<SessionKey>,
    failed: usize,
    /// When each acknowledgement came, to find the time without service.
    acked_at: Vec<Instant>,
}

/// Eight tasks saving fresh sessions until `stop`, each acknowledged key
/// recorded in `tally`; every call ends within the deadline.
fn writers(
    store: &MongoStore,
    tally: &Arc<Mutex<Tally>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..8)
        .map(|w| {
            let (store, tally, stop) = (store.clone(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                let record = live(object(serde_json::json!({"writer": w})), TTL);
                while !stop.load(Ordering::Relaxed) {
                    let k = key();
                    let started = Instant::now();
                    match store.save(&k, &record).await {
                        Ok(()) => {
                            let mut t = tally.lock().unwrap();
                            t.acknowledged.push(k);
                            t.acked_at.push(Instant::now());
                        }
                        Err(e) => {
                            check_failure(&e, started.elapsed());
                            tally.lock().unwrap().failed += 1;
                            // A refused connection fails at once: do not spin.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Wait (bounded) until the writers have `n` acknowledgements in all.
async fn wait_for_acks(tally: &Arc<Mutex<Tally>>, n: usize, what: &str) {
    let started = Instant::now();
    while tally.lock().unwrap().acknowledged.len() < n {
        assert!(
            started.elapsed() < BOUND,
            "{what}: only {} of {n} writes acknowledged after {BOUND:?}",
            tally.lock().unwrap().acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_no_acknowledged_write_and_the_same_store_recovers() {
    let Some(mut server) = PrivateServer::start() else {
        return;
    };
    let store = connect(&server, "killed").await;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = writers(&store, &tally, &stop);

    wait_for_acks(&tally, 200, "before the kill").await;
    server.kill();
    let killed_at = Instant::now();
    let acked_before_kill = tally.lock().unwrap().acknowledged.len();
    // Writers run into the dead server for a while, then it comes back on
    // the same port and storage.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let server = tokio::task::spawn_blocking(move || {
        server.spawn();
        server
    })
    .await
    .unwrap();
    let restarted_after = killed_at.elapsed();
    // The same store, not rebuilt, takes writes again.
    wait_for_acks(&tally, acked_before_kill + 200, "after the restart").await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    let first_after = tally
        .acked_at
        .iter()
        .find(|t| **t > killed_at)
        .map(|t| t.duration_since(killed_at))
        .expect("acknowledgements after the restart");
    let mut lost = 0;
    for k in &tally.acknowledged {
        if store.load(k).await.unwrap().is_none() {
            lost += 1;
        }
    }
    eprintln!(
        "mongo SIGKILL: {} writes acknowledged ({acked_before_kill} before the kill), {} failed, \
         {lost} lost; server back after {restarted_after:?}, first write after the kill \
         acknowledged {first_after:?} after it",
        tally.acknowledged.len(),
        tally.failed
    );
    assert_eq!(lost, 0, "acknowledged writes lost across the SIGKILL");
    assert!(tally.failed > 0, "no write ran into the dead server");
    store.collection().drop().await.unwrap();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_a_timeout_within_the_deadline_and_the_store_recovers() {
    let Some(server) = PrivateServer::start() else {
        return;
    };
    let store = connect(&server, "stopped").await;
    let saved = key();
    let record = live(object(serde_json::json!({"n": 1})), TTL);
    store.save(&saved, &record).await.unwrap();

    server.signal("STOP");
    let stopped = Instant::now();
    let other = key();
    let calls: [(&str, Call<'_>); 4] = [
        (
            "load",
            Box::pin(async { store.load(&saved).await.map(drop) }),
        ),
        (
            "save",
            Box::pin(async { store.save(&other, &record).await }),
        ),
        (
            "touch",
            Box::pin(async { store.touch(&saved, record.expires_at).await.map(drop) }),
        ),
        ("len", Box::pin(async { store.len().await.map(drop) })),
    ];
    for (name, call) in calls {
        let started = Instant::now();
        let result = call.await;
        let took = started.elapsed();
        let error = result.expect_err(name);
        assert!(
            matches!(
                error,
                Error::Timeout {
                    backend: "mongodb",
                    ..
                }
            ),
            "{name} on a stopped server: {error:?}"
        );
        check_failure(&error, took);
    }
    server.signal("CONT");
    let resumed = Instant::now();
    // The same store works again: the first call that succeeds, bounded.
    loop {
        match store.load(&saved).await {
            Ok(found) => {
                assert!(found.is_some(), "the session saved before the stop");
                break;
            }
            Err(e) => {
                assert!(
                    resumed.elapsed() < BOUND,
                    "no recovery {BOUND:?} after SIGCONT: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    store.save(&other, &record).await.unwrap();
    eprintln!(
        "mongo SIGSTOP: stopped {:?}, served again {:?} after SIGCONT",
        resumed.duration_since(stopped),
        resumed.elapsed()
    );
    store.collection().drop().await.unwrap();
}

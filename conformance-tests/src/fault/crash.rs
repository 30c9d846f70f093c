//! A writer process killed mid-stream: the child (the test binary run
//! again, as one of its ignored tests) writes with many tasks and prints
//! every write as soon as the store acknowledged it; the parent reads those
//! lines, kills the child with `SIGKILL`, and checks that the reopened
//! store kept every acknowledged write.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use session_core::{Record, SessionKey, SessionStore, UpdateOutcome};

use crate::fixtures::{key, live, object};

/// The expiry of the sessions the child writes: far beyond the test.
const TTL: Duration = Duration::from_secs(3600);
/// Concurrent writer tasks in the child.
pub const WRITERS: usize = 64;
/// How many acknowledged writes the parent waits for before the kill.
pub const ACKS_BEFORE_KILL: usize = 1_500;
/// Every wait of the parent is bounded by this.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The child's loop, until it is killed: [`WRITERS`] tasks, each saving a
/// fresh session then updating it once, printing each write as soon as the
/// store acknowledged it (see [`ack`]).
///
/// # Panics
///
/// On any store error: the child dies, and the parent fails for lack of
/// acknowledgements.
pub async fn write_until_killed<S>(store: S)
where
    S: SessionStore + Clone + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.spawn(async move {
            for n in 0u64.. {
                let k = key();
                let record = live(object(serde_json::json!({"w": writer, "n": n})), TTL);
                if let Err(e) = store.save(&k, &record).await {
                    panic!("save: {e}");
                }
                ack(&k, 0);
                match store.update(&k, &record, 0).await {
                    Ok(UpdateOutcome::Updated) => ack(&k, 1),
                    other => panic!("update of a session just saved: {other:?}"),
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            panic!("writer: {e}");
        }
    }
}

/// In the child: the value of `var`, which the parent sets (the database
/// to write to).
///
/// # Panics
///
/// If `var` is not set: the child was run by hand, not by its parent test.
#[must_use]
pub fn child_var(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: this ignored test is the child of a crash test, which runs it")
    })
}

/// Print `ACK <key> <version>` on a line of its own and flush it: the write
/// is acknowledged from here on.
///
/// # Panics
///
/// If stdout is closed (the parent is gone).
pub fn ack(k: &SessionKey, version: u64) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "\nACK {k} {version}").and_then(|()| out.flush()) {
        panic!("stdout: {e}");
    }
}

/// What the parent saw before and after the kill.
#[derive(Debug, Default)]
pub struct Acked {
    /// Acknowledged writes.
    pub writes: usize,
    /// For each session, the newest version acknowledged.
    pub latest: BTreeMap<String, u64>,
}

impl Acked {
    fn record(&mut self, line: &str) {
        let Some((k, version)) = line.strip_prefix("ACK ").and_then(|r| r.split_once(' ')) else {
            return;
        };
        let Ok(version) = version.trim().parse::<u64>() else {
            return;
        };
        let known = self.latest.entry(k.to_owned()).or_default();
        *known = (*known).max(version);
        self.writes += 1;
    }

    /// Check that `store` (the killed writer's database, reopened) has
    /// every acknowledged write, at the acknowledged version or later, and
    /// takes writes again; prints the figures.
    ///
    /// # Panics
    ///
    /// Listing the first writes lost, if any; on a store error.
    pub async fn assert_none_lost<S: SessionStore + ?Sized>(&self, store: &S) {
        let lost = self.lost(store).await;
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged sessions lost (or older) after the kill: {:?}",
            lost.len(),
            self.latest.len(),
            &lost[..lost.len().min(5)]
        );
        eprintln!(
            "{} acknowledged writes ({} sessions) before SIGKILL, 0 lost",
            self.writes,
            self.latest.len()
        );
        let k = key();
        let fresh = live(object(serde_json::json!({})), TTL);
        let found = match store.save(&k, &fresh).await {
            Ok(()) => store.load(&k).await,
            Err(e) => Err(e),
        };
        assert!(
            matches!(found, Ok(Some(_))),
            "the reopened store does not take writes again: {found:?}"
        );
    }

    /// The acknowledged writes `store` does not have (at the acknowledged
    /// version or later): `(key, version acknowledged, version found)`.
    async fn lost<S: SessionStore + ?Sized>(&self, store: &S) -> Vec<(String, u64, Option<u64>)> {
        let mut lost = Vec::new();
        for (k, version) in &self.latest {
            let key = SessionKey::parse(k).unwrap_or_else(|e| panic!("printed key {k}: {e}"));
            let found = store
                .load(&key)
                .await
                .unwrap_or_else(|e| panic!("load {k} after the kill: {e}"));
            match found {
                Some(Record { version: v, .. }) if v >= *version => {}
                other => lost.push((k.clone(), *version, other.map(|r| r.version))),
            }
        }
        lost
    }
}

/// The child process, killed (and waited for) on drop, also when the test
/// fails.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run this test binary's ignored test `child_test` with the environment
/// `env`, read the writes it acknowledges, `SIGKILL` it once
/// [`ACKS_BEFORE_KILL`] of them arrived, and return them all (including
/// those printed just before it died). Every wait is bounded by
/// [`DEADLINE`].
///
/// # Panics
///
/// If the child cannot start, ends by itself, or acknowledges fewer writes
/// within the deadline: this is a test helper.
#[must_use]
pub fn kill_mid_stream(child_test: &str, env: &[(&str, &std::ffi::OsStr)]) -> Acked {
    let (acks, deadline) = (ACKS_BEFORE_KILL, DEADLINE);
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let mut command = Command::new(exe);
    command
        .args([child_test, "--exact", "--ignored", "--nocapture"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (var, value) in env {
        command.env(var, value);
    }
    let mut child = Guard(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {child_test}: {e}")),
    );
    let Some(stdout) = child.0.stdout.take() else {
        panic!("the child's stdout is not piped");
    };
    // A thread reads, so that the waits below have a bound even when the
    // child prints nothing.
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut acked = Acked::default();
    while acked.writes < acks {
        let left = deadline.saturating_sub(started.elapsed());
        match received.recv_timeout(left) {
            Ok(line) => acked.record(&line),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "only {} writes acknowledged in {deadline:?}, {acks} wanted",
                acked.writes
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                "{child_test} ended by itself after {} acknowledged writes",
                acked.writes
            ),
        }
    }
    if let Err(e) = child.0.kill() {
        panic!("kill {child_test}: {e}");
    }
    // What it printed before dying counts too: read to the end of its
    // output (closed by the kill), bounded.
    let drained_by = Instant::now() + deadline;
    loop {
        match received.recv_timeout(drained_by.saturating_duration_since(Instant::now())) {
            Ok(line) => acked.record(&line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the output of the killed {child_test} did not end in {deadline:?}")
            }
        }
    }
    let _ = reader.join();
    drop(child);
    acked
}

//! Real faults on private Redis servers (issue 13, "Keep it proven"): a
//! server `SIGKILL`ed under writers and restarted from its append-only
//! file, a server stopped with `SIGSTOP`, a Redis Cluster primary
//! `SIGKILL`ed. Each test starts its own servers on free loopback ports in a
//! temp dir, signals only those (by pid) and kills them when it ends, also
//! when it fails. Figures are printed with `eprintln!` (`--nocapture` shows
//! them); the assertions are bounds, never speeds.
//!
//! They need `redis-server` and `redis-cli` installed (a missing one fails
//! with a message saying how to install it); `SESSION_SKIP_REDIS=1` skips
//! them, `SESSION_SKIP_REDIS_CLUSTER=1` the cluster one.
#![allow(
    clippy::panic,
    reason = "test binary: its helpers fail the test with a message"
)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::recovery::{
    DEADLINE, RECOVERY_BOUND, SLACK, builder, new_key, record, save_until_served,
};
use common::server::{PrivateCluster, RedisProcess, node_connection};
use session_conformance::env::{REDIS, REDIS_CLUSTER};
use session_core::{Error, Record, SessionKey, SessionStore};
use session_store_redis::RedisStore;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What the writers saw.
#[derive(Debug, Default)]
struct Tally {
    /// Every acknowledged save: the record and when the ack arrived.
    acked: HashMap<SessionKey, (Record, Instant)>,
    /// Calls that failed with `Error::Timeout`.
    timeouts: usize,
    /// Calls that failed with `Error::Backend` (a refused or broken
    /// connection).
    backend: usize,
    /// The longest any call took.
    longest: Duration,
    /// Calls that broke a rule: too slow, or an error of another kind.
    wrong: Vec<String>,
}

/// Tasks saving fresh sessions in a loop through one store, recording
/// each acknowledged key and checking that every call returns in time.
struct Writers {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    tasks: JoinSet<()>,
}

impl Writers {
    fn start(store: &RedisStore, count: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut tasks = JoinSet::new();
        for writer in 0..count {
            let (store, stop, tally) = (store.clone(), stop.clone(), tally.clone());
            tasks.spawn(async move {
                let mut i = writer << 32;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let (key, record) = (new_key(), record(i));
                    let started = Instant::now();
                    let saved = store.save(&key, &record).await;
                    let took = started.elapsed();
                    let failed = saved.is_err();
                    {
                        let mut t = tally.lock().unwrap_or_else(PoisonError::into_inner);
                        t.longest = t.longest.max(took);
                        if took > DEADLINE + SLACK {
                            t.wrong.push(format!("a save took {took:?}: {saved:?}"));
                        }
                        match saved {
                            Ok(()) => {
                                t.acked.insert(key, (record, Instant::now()));
                            }
                            Err(Error::Timeout { .. }) => t.timeouts += 1,
                            Err(Error::Backend { .. }) => t.backend += 1,
                            Err(e) => t.wrong.push(format!("a save failed with {e:?}")),
                        }
                    }
                    if failed {
                        // A dead server refuses at once: do not spin.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            });
        }
        Self { stop, tally, tasks }
    }

    /// How many saves were acknowledged so far, and the latest ack.
    fn acks(&self) -> (usize, Option<Instant>) {
        let t = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        (t.acked.len(), t.acked.values().map(|(_, at)| *at).max())
    }

    /// Wait until `n` saves in all were acknowledged (bounded).
    async fn wait_for_acks(&self, n: usize) {
        let until = Instant::now() + RECOVERY_BOUND;
        while self.acks().0 < n {
            assert!(
                Instant::now() < until,
                "fewer than {n} acked saves in {RECOVERY_BOUND:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait for the first save acknowledged after `since` (bounded by
    /// [`RECOVERY_BOUND`]) and return when it came.
    async fn first_ack_after(&self, since: Instant) -> Instant {
        loop {
            if let (_, Some(at)) = self.acks()
                && at > since
            {
                return at;
            }
            assert!(
                since.elapsed() < RECOVERY_BOUND,
                "no save was acknowledged within {RECOVERY_BOUND:?}: the store did not recover"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stop the writers and return what they saw.
    async fn finish(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined {
                panic!("a writer panicked: {e}");
            }
        }
        std::mem::take(&mut *self.tally.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The acknowledged sessions that do not load back as saved.
async fn lost(store: &RedisStore, tally: &Tally) -> Vec<SessionKey> {
    let mut lost = Vec::new();
    for (key, (record, _)) in &tally.acked {
        match store.load(key).await {
            Ok(Some(found)) if &found == record => {}
            Ok(_) => lost.push(*key),
            Err(e) => panic!("load of an acknowledged session after recovery: {e:?}"),
        }
    }
    lost
}

/// Redis with `appendonly yes` and `appendfsync always`, `SIGKILL`ed under
/// eight writers and restarted on the same port and folder: every call
/// returns (acknowledged or a typed error) within the deadline, the same
/// store object recovers by itself once the server is back, and no
/// acknowledged save is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_and_restarted_under_writers_loses_no_acknowledged_write() {
    if let Some(reason) = REDIS.skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let mut server = RedisProcess::start(
        &dir.path().join("aof"),
        &["--appendonly", "yes", "--appendfsync", "always"],
    )
    .await;
    let store = builder()
        .connect(&server.url())
        .await
        .unwrap_or_else(|e| panic!("connect to the private server: {e:?}"));

    let writers = Writers::start(&store, 8);
    writers.wait_for_acks(300).await;
    let killed = Instant::now();
    server.kill().await;
    // An outage longer than the deadline, which the writers keep calling
    // into.
    tokio::time::sleep(DEADLINE * 2).await;
    server.restart().await;
    let back = Instant::now();
    let first = writers.first_ack_after(back).await;
    let resumed_with = writers.acks().0;
    writers.wait_for_acks(resumed_with + 300).await;
    let tally = writers.finish().await;
    let lost = lost(&store, &tally).await;

    eprintln!(
        "redis SIGKILL + restart (appendfsync always, 8 writers, deadline {DEADLINE:?}): \
         {} acked, {} lost, {} calls timed out, {} failed with a backend error, longest call \
         {:?}, server down {:?}, first ack {:?} after the restart, time without service {:?}",
        tally.acked.len(),
        lost.len(),
        tally.timeouts,
        tally.backend,
        tally.longest,
        back - killed,
        first - back,
        first - killed,
    );
    assert!(tally.wrong.is_empty(), "{:?}", tally.wrong);
    assert!(
        tally.timeouts > 0,
        "no call timed out during an outage of twice the deadline"
    );
    assert!(lost.is_empty(), "acknowledged sessions lost: {lost:?}");
}

/// A server stopped with `SIGSTOP`: `load`, `update`, `touch` and `len` end
/// with `Error::Timeout` at the deadline; after `SIGCONT` the same store
/// works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_a_timeout_at_the_deadline_and_the_store_works_after_sigcont() {
    if let Some(reason) = REDIS.skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let server = RedisProcess::start(&dir.path().join("stop"), &[]).await;
    let store = builder()
        .connect(&server.url())
        .await
        .unwrap_or_else(|e| panic!("connect to the private server: {e:?}"));
    let started = Instant::now();
    session_conformance::fault::assert_deadline_bounds_a_stall(&store, &server, "redis", DEADLINE)
        .await;
    eprintln!(
        "redis SIGSTOP/SIGCONT (deadline {DEADLINE:?}): 4 calls timed out, recovered; {:?} in all",
        started.elapsed()
    );
}

/// The primary of a node, from its `CLUSTER NODES` line marked `myself`:
/// its slot ranges if it is a primary.
async fn own_slots(port: u16) -> Option<Vec<(u16, u16)>> {
    let mut conn = node_connection(port).await.ok()?;
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .ok()?;
    let line = nodes.lines().find(|l| l.contains("myself"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    if !fields.get(2)?.contains("master") {
        return None;
    }
    let ranges = fields
        .iter()
        .skip(8)
        .filter_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    Some(ranges)
}

/// The slot of a Redis key, asked of a node.
async fn slot(port: u16, redis_key: &str) -> u16 {
    let mut conn = node_connection(port)
        .await
        .unwrap_or_else(|e| panic!("node {port}: {e}"));
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(redis_key)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT on {port}: {e}"))
}

/// A private 6-node cluster (1 s node timeout): one primary `SIGKILL`ed
/// under writers. Every call returns within the deadline; the same store
/// serves the killed primary's slots again once its replica is promoted,
/// within a bound, without being rebuilt; no acknowledged save on the
/// other primaries is lost (on the killed one, a save acknowledged just
/// before the kill may not have reached the replica: Redis replicates
/// asynchronously; the count is printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_primary_killed_is_failed_over_and_the_same_store_serves_its_slots_again() {
    if let Some(reason) = REDIS_CLUSTER.skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let mut cluster = PrivateCluster::start(dir.path(), Duration::from_millis(1000)).await;
    let store = builder()
        .connect_cluster(cluster.urls())
        .await
        .unwrap_or_else(|e| panic!("connect to the private cluster: {e:?}"));

    // The victim: the first node that is a primary, and keys in its slots.
    let mut victim = None;
    for (i, node) in cluster.nodes.iter().enumerate() {
        if let Some(ranges) = own_slots(node.port()).await {
            victim = Some((i, ranges));
            break;
        }
    }
    let (victim, ranges) = victim.unwrap_or_else(|| panic!("no primary in the private cluster"));
    let other = cluster.nodes[(victim + 1) % cluster.nodes.len()].port();
    let in_victim = |s: u16| ranges.iter().any(|&(a, b)| a <= s && s <= b);
    let mut probes = Vec::new();
    while probes.len() < 10 {
        let key = new_key();
        if in_victim(slot(other, &store.redis_key(&key)).await) {
            probes.push(key);
        }
    }
    for key in &probes {
        store
            .save(key, &record(0))
            .await
            .unwrap_or_else(|e| panic!("save before the kill: {e:?}"));
    }

    let writers = Writers::start(&store, 4);
    writers.wait_for_acks(300).await;
    let killed = Instant::now();
    cluster.nodes[victim].kill().await;

    // Save to the killed primary's slots until it works again.
    let (recovered, attempts) = save_until_served(&store, &probes, killed).await;
    // Every slot of the killed primary moved with its replica.
    for (i, key) in probes.iter().enumerate() {
        let r = record(1_000 + i as u64);
        store
            .save(key, &r)
            .await
            .unwrap_or_else(|e| panic!("save after the failover: {e:?}"));
        assert_eq!(
            store.load(key).await.unwrap_or_else(|e| panic!("{e:?}")),
            Some(r)
        );
    }
    let resumed_with = writers.acks().0;
    writers.wait_for_acks(resumed_with + 300).await;
    let tally = writers.finish().await;
    let lost = lost(&store, &tally).await;
    let mut lost_elsewhere = Vec::new();
    for key in &lost {
        if !in_victim(slot(other, &store.redis_key(key)).await) {
            lost_elsewhere.push(*key);
        }
    }

    eprintln!(
        "redis-cluster primary SIGKILL (node timeout 1 s, deadline {DEADLINE:?}): time without \
         service on its slots {:?} ({attempts} attempts), writers: {} acked, {} lost ({} on the \
         killed primary's slots), {} calls timed out, {} failed with a backend error, longest call \
         {:?}",
        recovered - killed,
        tally.acked.len(),
        lost.len(),
        lost.len() - lost_elsewhere.len(),
        tally.timeouts,
        tally.backend,
        tally.longest,
    );
    assert!(tally.wrong.is_empty(), "{:?}", tally.wrong);
    assert!(
        lost_elsewhere.is_empty(),
        "acknowledged sessions lost on primaries that were not killed: {lost_elsewhere:?}"
    );
    store
        .clear()
        .await
        .unwrap_or_else(|e| panic!("clear: {e:?}"));
}

//! The timed phases: C tokio tasks sharing one target, each recording every
//! operation's latency in its own HDR histogram, merged at the end.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use session_core::{SessionKey, Timestamp};

use crate::Result;
use crate::payload::{Payloads, Rng, SESSION_TTL, keys};
use crate::target::Target;

/// Concurrency of untimed bulk work (preloading, cleaning up).
pub const BULK_TASKS: usize = 64;

/// Operations between two voluntary yields of a task, so that in-process
/// targets (which never wait) still interleave all C tasks.
const YIELD_EVERY: u64 = 16;

/// Highest latency the histograms track: 60 s, in nanoseconds.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// One phase of the standard workload.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Load a random preloaded key.
    Load,
    /// Overwrite a random preloaded key with new data: the store's versioned
    /// `update`, the raw engine's unconditional write.
    Save,
    /// Create a fresh key.
    Create,
    /// Move the expiry of a random preloaded key.
    Touch,
    /// Destroy keys created for that purpose.
    Delete,
    /// 80% load, 15% save, 5% create+destroy (timed as one operation).
    Mixed,
}

impl Phase {
    /// Every phase, in the order of the standard workload's table.
    pub const ALL: [Self; 6] = [
        Self::Load,
        Self::Save,
        Self::Create,
        Self::Touch,
        Self::Delete,
        Self::Mixed,
    ];

    /// The phase's name, as in BENCH.md.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Save => "save",
            Self::Create => "create",
            Self::Touch => "touch",
            Self::Delete => "delete",
            Self::Mixed => "mixed",
        }
    }

    /// The order phases are run in: `create` right before `delete`, so the
    /// keys it creates are the ones `delete` destroys and `load`, `save` and
    /// `touch` see exactly the preloaded sessions.
    #[must_use]
    pub fn run_order(selected: &[Self]) -> Vec<Self> {
        [
            Self::Load,
            Self::Save,
            Self::Touch,
            Self::Create,
            Self::Delete,
            Self::Mixed,
        ]
        .into_iter()
        .filter(|p| selected.contains(p))
        .collect()
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct PhaseStats {
    /// Operations completed.
    pub ops: u64,
    /// Operations that did not find what the workload expects (a load that
    /// found nothing, an update that was not applied...). Non-zero means a
    /// bug in the target or the bench.
    pub misses: u64,
    /// Wall time from the start until the last task stopped.
    pub elapsed: Duration,
    /// Latency of every operation, in nanoseconds.
    pub latency_ns: Histogram<u64>,
}

impl PhaseStats {
    /// Operations per second.
    #[must_use]
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }

    /// Latency at quantile `q` (0..=1), in microseconds.
    #[must_use]
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.latency_ns.value_at_quantile(q) as f64 / 1_000.0
    }

    /// Median latency, µs.
    #[must_use]
    pub fn p50_us(&self) -> f64 {
        self.quantile_us(0.50)
    }

    /// 99th percentile latency, µs.
    #[must_use]
    pub fn p99_us(&self) -> f64 {
        self.quantile_us(0.99)
    }
}

fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)?)
}

/// One target with its preloaded sessions, ready to run phases.
#[derive(Debug)]
pub struct Bench {
    target: Arc<dyn Target>,
    keys: Arc<Vec<SessionKey>>,
    /// The stored version of each preloaded key. Task `t` of C only ever
    /// writes keys `i` with `i % C == t`, so it knows the version to expect
    /// and a versioned update never conflicts.
    versions: Arc<Vec<AtomicU64>>,
    /// Keys created by `create`, destroyed by `delete`.
    pool: Mutex<Vec<SessionKey>>,
}

impl Bench {
    /// Preload `n` sessions (keys from `seed`, so two targets preloaded with
    /// the same seed hold the same keys) and return the bench.
    ///
    /// # Errors
    ///
    /// The first error of the target.
    pub async fn preload(target: Arc<dyn Target>, n: usize, seed: u64) -> Result<Self> {
        let keys = Arc::new(keys(n, seed));
        let payloads = Arc::new(Payloads::new(SESSION_TTL)?);
        let chunk = n.div_ceil(BULK_TASKS).max(1);
        let mut tasks = Vec::new();
        for t in 0..BULK_TASKS {
            let (target, keys, payloads) = (target.clone(), keys.clone(), payloads.clone());
            tasks.push(tokio::spawn(async move {
                let end = ((t + 1) * chunk).min(keys.len());
                for i in (t * chunk).min(end)..end {
                    target.put(&keys[i], payloads.get(i)).await?;
                }
                Ok::<_, crate::BoxError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let versions = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        Ok(Self {
            target,
            keys,
            versions,
            pool: Mutex::new(Vec::new()),
        })
    }

    /// The target.
    #[must_use]
    pub fn target(&self) -> &Arc<dyn Target> {
        &self.target
    }

    /// Run `phase` with `concurrency` tasks for `duration`.
    ///
    /// `create_cap` bounds the keys one `create` phase may add (an in-process
    /// engine creating millions per second would otherwise grow by gigabytes):
    /// `create` stops after that many, and `delete` stops when the keys
    /// created for it run out; ops/s is over the time actually run.
    ///
    /// # Errors
    ///
    /// The first error of a task.
    pub async fn run(
        &self,
        phase: Phase,
        concurrency: usize,
        duration: Duration,
        create_cap: usize,
        seed: u64,
    ) -> Result<PhaseStats> {
        let concurrency = concurrency.max(1);
        let mut chunks: Vec<Vec<SessionKey>> = vec![Vec::new(); concurrency];
        if phase == Phase::Delete {
            if self.pool.lock().is_empty() {
                // Nothing created for us yet: create untimed, as `create` would.
                let filler = self
                    .spawn_phase(
                        Phase::Create,
                        concurrency,
                        duration,
                        create_cap,
                        seed ^ 1,
                        chunks,
                    )
                    .await?;
                self.pool.lock().extend(filler.leftover);
                chunks = vec![Vec::new(); concurrency];
            }
            let pool = std::mem::take(&mut *self.pool.lock());
            let per_task = pool.len().div_ceil(concurrency).max(1);
            for (i, part) in pool.chunks(per_task).enumerate() {
                chunks[i] = part.to_vec();
            }
        }
        let out = self
            .spawn_phase(phase, concurrency, duration, create_cap, seed, chunks)
            .await?;
        self.pool.lock().extend(out.leftover);
        Ok(out.stats)
    }

    /// Destroy, untimed, whatever `create` left for a `delete` that did not
    /// run (so the next phases see only the preloaded sessions).
    ///
    /// # Errors
    ///
    /// The first error of the target.
    pub async fn drain_pool(&self) -> Result<()> {
        let pool = std::mem::take(&mut *self.pool.lock());
        if pool.is_empty() {
            return Ok(());
        }
        let pool = Arc::new(pool);
        let chunk = pool.len().div_ceil(BULK_TASKS);
        let mut tasks = Vec::new();
        for t in 0..BULK_TASKS {
            let (target, pool) = (self.target.clone(), pool.clone());
            tasks.push(tokio::spawn(async move {
                let end = ((t + 1) * chunk).min(pool.len());
                for key in &pool[(t * chunk).min(end)..end] {
                    target.destroy(key).await?;
                }
                Ok::<_, crate::BoxError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(())
    }

    async fn spawn_phase(
        &self,
        phase: Phase,
        concurrency: usize,
        duration: Duration,
        create_cap: usize,
        seed: u64,
        chunks: Vec<Vec<SessionKey>>,
    ) -> Result<PhaseOutput> {
        let payloads = Arc::new(Payloads::new(SESSION_TTL)?);
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = Vec::with_capacity(concurrency);
        for (task, chunk) in chunks.into_iter().enumerate() {
            let worker = Worker {
                target: self.target.clone(),
                keys: self.keys.clone(),
                versions: self.versions.clone(),
                payloads: payloads.clone(),
                phase,
                task,
                concurrency,
                deadline,
                create_cap: create_cap.div_ceil(concurrency),
                rng: Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(task as u64)),
                to_destroy: chunk,
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        let mut latency_ns = histogram()?;
        let (mut ops, mut misses, mut end) = (0, 0, start);
        let mut leftover = Vec::new();
        for task in tasks {
            let out = task.await??;
            latency_ns.add(&out.latency_ns)?;
            ops += out.ops;
            misses += out.misses;
            end = end.max(out.end);
            leftover.extend(out.keys);
        }
        Ok(PhaseOutput {
            stats: PhaseStats {
                ops,
                misses,
                elapsed: end.duration_since(start),
                latency_ns,
            },
            leftover,
        })
    }
}

struct PhaseOutput {
    stats: PhaseStats,
    leftover: Vec<SessionKey>,
}

struct TaskOutput {
    ops: u64,
    misses: u64,
    end: Instant,
    latency_ns: Histogram<u64>,
    /// Keys created and not destroyed (create), or not reached (delete).
    keys: Vec<SessionKey>,
}

struct Worker {
    target: Arc<dyn Target>,
    keys: Arc<Vec<SessionKey>>,
    versions: Arc<Vec<AtomicU64>>,
    payloads: Arc<Payloads>,
    phase: Phase,
    task: usize,
    concurrency: usize,
    deadline: Instant,
    create_cap: usize,
    rng: Rng,
    to_destroy: Vec<SessionKey>,
}

impl Worker {
    async fn run(mut self) -> Result<TaskOutput> {
        let mut latency_ns = histogram()?;
        let (mut ops, mut misses) = (0u64, 0u64);
        let mut created = Vec::new();
        let mut to_destroy = std::mem::take(&mut self.to_destroy);
        // Pop from the end; the order is random anyway.
        let owned = self
            .keys
            .len()
            .saturating_sub(self.task)
            .div_ceil(self.concurrency);
        let needs_owned = matches!(self.phase, Phase::Save | Phase::Mixed);
        let needs_keys = matches!(self.phase, Phase::Load | Phase::Touch) || needs_owned;
        if (needs_owned && owned == 0) || (needs_keys && self.keys.is_empty()) {
            return Ok(TaskOutput {
                ops,
                misses,
                end: Instant::now(),
                latency_ns,
                keys: created,
            });
        }
        loop {
            let begin = Instant::now();
            if begin >= self.deadline {
                break;
            }
            let hit = match self.phase {
                Phase::Load => self.load().await?,
                Phase::Save => self.save(owned).await?,
                Phase::Touch => self.touch().await?,
                Phase::Create => {
                    if created.len() >= self.create_cap {
                        break;
                    }
                    let key = self.rng.key();
                    let n = self.rng.below(usize::MAX);
                    let hit = self.target.create(&key, self.payloads.get(n)).await?;
                    created.push(key);
                    hit
                }
                Phase::Delete => {
                    let Some(key) = to_destroy.pop() else { break };
                    self.target.destroy(&key).await?;
                    true
                }
                Phase::Mixed => match self.rng.below(100) {
                    0..80 => self.load().await?,
                    80..95 => self.save(owned).await?,
                    _ => {
                        let key = self.rng.key();
                        let n = self.rng.below(usize::MAX);
                        let hit = self.target.create(&key, self.payloads.get(n)).await?;
                        self.target.destroy(&key).await?;
                        hit
                    }
                },
            };
            let ns = u64::try_from(begin.elapsed().as_nanos()).unwrap_or(u64::MAX);
            latency_ns.saturating_record(ns.max(1));
            ops += 1;
            misses += u64::from(!hit);
            if ops % YIELD_EVERY == 0 {
                tokio::task::yield_now().await;
            }
        }
        let end = Instant::now();
        created.extend(to_destroy);
        Ok(TaskOutput {
            ops,
            misses,
            end,
            latency_ns,
            keys: created,
        })
    }

    fn random_key(&mut self) -> &SessionKey {
        let i = self.rng.below(self.keys.len());
        &self.keys[i]
    }

    async fn load(&mut self) -> Result<bool> {
        let key = *self.random_key();
        self.target.load(&key).await
    }

    async fn touch(&mut self) -> Result<bool> {
        let key = *self.random_key();
        self.target
            .touch(&key, Timestamp::now() + SESSION_TTL)
            .await
    }

    /// A versioned write to a random key this task owns.
    async fn save(&mut self, owned: usize) -> Result<bool> {
        let i = self.task + self.concurrency * self.rng.below(owned);
        let key = self.keys[i];
        let version = self.versions[i].load(Ordering::Relaxed);
        let n = self.rng.below(usize::MAX);
        let applied = self
            .target
            .write(&key, self.payloads.get(n), version)
            .await?;
        if applied {
            self.versions[i].store(version + 1, Ordering::Relaxed);
        }
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use async_trait::async_trait;

    use super::*;
    use crate::payload::Payload;

    /// The simplest correct target: one locked map of key to expiry.
    #[derive(Debug, Default)]
    struct MapTarget(Mutex<HashMap<SessionKey, Timestamp>>);

    #[async_trait]
    impl Target for MapTarget {
        async fn load(&self, key: &SessionKey) -> Result<bool> {
            Ok(self.0.lock().contains_key(key))
        }
        async fn write(&self, key: &SessionKey, p: &Payload, _version: u64) -> Result<bool> {
            Ok(self.0.lock().insert(*key, p.expires_at).is_some())
        }
        async fn create(&self, key: &SessionKey, p: &Payload) -> Result<bool> {
            let mut map = self.0.lock();
            if map.contains_key(key) {
                return Ok(false);
            }
            map.insert(*key, p.expires_at);
            Ok(true)
        }
        async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
            Ok(self
                .0
                .lock()
                .get_mut(key)
                .map(|e| *e = expires_at)
                .is_some())
        }
        async fn destroy(&self, key: &SessionKey) -> Result<()> {
            self.0.lock().remove(key);
            Ok(())
        }
        async fn put(&self, key: &SessionKey, p: &Payload) -> Result<()> {
            self.0.lock().insert(*key, p.expires_at);
            Ok(())
        }
        async fn clear(&self) -> Result<()> {
            self.0.lock().clear();
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_phase_runs_without_misses_and_delete_eats_what_create_made() {
        let bench = Bench::preload(Arc::new(MapTarget::default()), 200, 7)
            .await
            .unwrap();
        let d = Duration::from_millis(30);
        for phase in Phase::run_order(&Phase::ALL) {
            let stats = bench.run(phase, 8, d, 500, 3).await.unwrap();
            assert!(stats.ops > 0, "{phase} did nothing");
            assert_eq!(stats.misses, 0, "{phase} missed");
            assert!(stats.ops_per_sec() > 0.0 && stats.p99_us() >= stats.p50_us());
            match phase {
                Phase::Create => {
                    assert!(stats.ops <= 500 + 8);
                    assert_eq!(bench.pool.lock().len() as u64, stats.ops);
                }
                Phase::Delete => assert!(bench.pool.lock().len() as u64 <= 500),
                _ => {}
            }
        }
        // Delete alone creates its own keys first.
        let stats = bench.run(Phase::Delete, 4, d, 100, 9).await.unwrap();
        assert!(stats.ops > 0);
        bench.drain_pool().await.unwrap();
        assert!(bench.pool.lock().is_empty());
    }
}

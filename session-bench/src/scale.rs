//! Scale: how long `delete_expired` takes as the live population grows, and
//! the memory store's footprint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{Record, SessionStore, Timestamp};

use crate::Result;
use crate::payload::{Rng, SESSION_TTL, session_data};
use crate::phase::BULK_TASKS;
use crate::report::{CodecLine, MemoryLine, ReapLine};

/// Save `n` fresh sessions concurrently. Each expires `ttl` after it is
/// saved (so even a short `ttl` stores every one of them). Returns the latest
/// expiry given.
///
/// # Errors
///
/// The first error of the store.
pub async fn fill(
    store: &Arc<dyn SessionStore>,
    n: u64,
    ttl: Duration,
    seed: u64,
) -> Result<Timestamp> {
    let per_task = n.div_ceil(BULK_TASKS as u64);
    let mut tasks = Vec::new();
    for t in 0..BULK_TASKS as u64 {
        let count = per_task.min(n.saturating_sub(t * per_task));
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed.wrapping_mul(7919).wrapping_add(t));
            let mut record = Record::new(session_data(t), ttl);
            let mut latest = record.expires_at;
            for _ in 0..count {
                record.expires_at = Timestamp::now() + ttl;
                latest = latest.max(record.expires_at);
                store.save(&rng.key(), &record).await?;
            }
            Ok::<_, crate::BoxError>(latest)
        }));
    }
    let mut latest = Timestamp::now();
    for task in tasks {
        latest = latest.max(task.await??);
    }
    Ok(latest)
}

/// Sleep until the process clock is past `t` (plus a small margin for a
/// server clock).
pub async fn sleep_past(t: Timestamp) {
    let margin = Duration::from_millis(50);
    let wait = t.duration_since(Timestamp::now()) + margin;
    tokio::time::sleep(wait).await;
}

/// The sizes of the reaping experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct ReapSizes {
    /// Live populations, ascending (each step adds sessions to the last).
    pub live: Vec<u64>,
    /// Expired populations timed at each live population.
    pub expired: Vec<u64>,
    /// TTL of the sessions that are to expire.
    pub expired_ttl: Duration,
    /// Sweeps timed per (live, expired) pair, each of freshly expired
    /// sessions: one sweep of a few milliseconds is at the mercy of a single
    /// fsync stall or checkpoint on a shared machine, so `render` reports
    /// the median.
    pub repeats: usize,
}

/// Time `sizes.repeats` sweeps (`delete_expired`) for every (live, expired)
/// pair of `sizes` on `store` (which should start empty; it is cleared at
/// the end), one line per sweep.
///
/// # Errors
///
/// The first error of the store.
pub async fn reap(
    name: &str,
    store: &Arc<dyn SessionStore>,
    sizes: &ReapSizes,
    mut progress: impl FnMut(&ReapLine),
) -> Result<Vec<ReapLine>> {
    let mut lines = Vec::new();
    let mut live = 0;
    let mut seed = 1_000;
    for &target in &sizes.live {
        if target > live {
            seed += 1;
            fill(store, target - live, SESSION_TTL, seed).await?;
            live = target;
        }
        let sweeps = sizes
            .expired
            .iter()
            .flat_map(|&expired| std::iter::repeat_n(expired, sizes.repeats.max(1)));
        for expired in sweeps {
            seed += 1;
            let latest = fill(store, expired, sizes.expired_ttl, seed).await?;
            sleep_past(latest).await;
            let start = Instant::now();
            let removed = store.delete_expired().await?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            let line = ReapLine {
                store: name.to_owned(),
                live,
                expired,
                removed,
                ms: crate::report::round(ms, 3),
            };
            progress(&line);
            lines.push(line);
        }
    }
    store.clear().await?;
    Ok(lines)
}

/// The resident set of this process and its peak, in KiB, from
/// `/proc/self/status` (`VmRSS`, `VmHWM`).
///
/// # Errors
///
/// If the file cannot be read (not Linux) or lacks the fields.
pub fn rss_kib() -> Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status (Linux only): {e}"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /proc/self/status").into())
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Fill `store` (empty, fresh, ideally in a fresh process) to each size of
/// `sessions` in turn, reading the resident set at each; then expire them
/// all, reap, and read it again.
///
/// The sessions are saved with a far expiry and expired afterwards by
/// touching each (its key regenerated from its seed) to now, so a slow
/// preload, on a busy machine or a debug build, never measures a
/// half-expired population.
///
/// # Errors
///
/// The first error of the store, or sessions left after reaping.
pub async fn memory_probe(
    name: &str,
    store: &Arc<dyn SessionStore>,
    sessions: &[u64],
) -> Result<Vec<MemoryLine>> {
    let (baseline, _) = rss_kib()?;
    let record = Arc::new(Record::with_times(
        session_data(1),
        Timestamp::now(),
        Timestamp::now() + PROBE_EXPIRY,
    ));
    let mut held = 0u64;
    let mut batches = Vec::new();
    let mut measured = Vec::new();
    for &n in sessions {
        if n > held {
            let (count, seed) = (n - held, n);
            let record = Arc::clone(&record);
            for_keys(store, count, seed, move |store, key| {
                // A copy of the data per session: `Data` shares its encoded
                // text between clones, and an in-process store keeps that
                // text, so saving one `Record` n times would store it once.
                let own = Record::with_times(
                    record.data.as_map().clone(),
                    record.created_at,
                    record.expires_at,
                );
                async move { store.save(&key, &own).await.map_err(Into::into) }
            })
            .await?;
            batches.push((count, seed));
            held = n;
        }
        let (rss, peak) = rss_kib()?;
        measured.push((n, rss, peak));
    }
    for (count, seed) in batches {
        for_keys(store, count, seed, |store, key| async move {
            if store.touch(&key, Timestamp::now()).await? {
                Ok(())
            } else {
                Err("a preloaded session was gone before it was expired".into())
            }
        })
        .await?;
    }
    let reaped = store.delete_expired().await?;
    let left = store.len().await?;
    if left != 0 {
        return Err(format!("{left} sessions left after reaping {reaped}").into());
    }
    let (after, _) = rss_kib()?;
    Ok(measured
        .into_iter()
        .map(|(n, rss, peak)| MemoryLine {
            store: name.to_owned(),
            sessions: n,
            baseline_kib: baseline,
            rss_kib: rss,
            peak_kib: peak,
            bytes_per_session: crate::report::round(
                rss.saturating_sub(baseline) as f64 * 1024.0 / n.max(1) as f64,
                1,
            ),
            after_reap_kib: after,
            after_reap_ratio: crate::report::round(after as f64 / baseline.max(1) as f64, 3),
        })
        .collect())
}

/// How far ahead the probe's sessions expire: past any preload.
const PROBE_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Run `per_key` on `n` fresh keys drawn from `seed`, spread over
/// [`BULK_TASKS`] tasks, with no per-key list (the keys would weigh in the
/// footprint): the same `(n, seed)` gives the same keys again.
async fn for_keys<F, Fut>(
    store: &Arc<dyn SessionStore>,
    n: u64,
    seed: u64,
    per_key: F,
) -> Result<()>
where
    F: Fn(Arc<dyn SessionStore>, session_core::SessionKey) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let per_task = n.div_ceil(BULK_TASKS as u64);
    let mut tasks = Vec::new();
    for t in 0..BULK_TASKS as u64 {
        let count = per_task.min(n.saturating_sub(t * per_task));
        let (store, per_key) = (store.clone(), per_key.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(t));
            for _ in 0..count {
                per_key(store.clone(), rng.key()).await?;
            }
            Ok::<_, crate::BoxError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Time `Record::encode_data` of changed data (`Data` remembers its text
/// until it changes, so this encodes a fresh copy each time, the copy not
/// timed), `Record::decode_data` (alone, and followed by a first read) and
/// `Record::clone` of the standard payload on this thread, each for about
/// `budget`.
///
/// # Errors
///
/// If the payload cannot be encoded or decoded (it always can).
pub fn codec(budget: Duration) -> Result<CodecLine> {
    let record = Record::new(session_data(3), SESSION_TTL);
    let key = Rng::new(5).key();
    let text = Record::encode_data(&record.data)?;
    let per_call = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < budget {
            for _ in 0..64 {
                f()?;
            }
            calls += 64;
        }
        Ok(crate::report::round(
            start.elapsed().as_secs_f64() * 1e9 / calls as f64,
            1,
        ))
    };
    let encode_data_ns = per_call(&mut || {
        // What `encode_data` does when the data is not already encoded.
        let fresh = std::hint::black_box(record.data.as_map());
        std::hint::black_box(serde_json::to_vec(fresh)?);
        Ok(())
    })?;
    let decode_data_ns = per_call(&mut || {
        std::hint::black_box(Record::decode_data(
            &key,
            std::hint::black_box(text.as_bytes()),
        )?);
        Ok(())
    })?;
    let decode_read_ns = per_call(&mut || {
        let data = Record::decode_data(&key, std::hint::black_box(text.as_bytes()))?;
        // The first read builds the map the check did not.
        std::hint::black_box(data.get("user_id"));
        Ok(())
    })?;
    let clone_record_ns = per_call(&mut || {
        std::hint::black_box(std::hint::black_box(&record).clone());
        Ok(())
    })?;
    Ok(CodecLine {
        data_bytes: text.len() as u64,
        encode_data_ns,
        decode_data_ns,
        decode_read_ns: Some(decode_read_ns),
        clone_record_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_costs_are_measured() {
        let c = codec(Duration::from_millis(5)).unwrap();
        assert!((180..=230).contains(&c.data_bytes));
        assert!(c.encode_data_ns > 0.0 && c.decode_data_ns > 0.0 && c.clone_record_ns > 0.0);
        assert!(c.decode_read_ns.is_some_and(|ns| ns > 0.0));
    }

    #[test]
    fn rss_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            let (rss, peak) = rss_kib().unwrap();
            assert!(rss > 0 && peak >= rss);
        }
    }
}

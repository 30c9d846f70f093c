//! Rough load/save throughput of `SledStore` next to plain sled doing the
//! same operations, plus the two figures behind running point operations
//! inline: what a `spawn_blocking` hop costs, and the latency tail of inline
//! writes while sled's flusher runs. Rough, single-process figures; the
//! standard workload beside the raw engine is `session-bench` (see the
//! repository's BENCHMARKS.md).
//!
//! ```text
//! cargo run --release -p session-store-sled --example sled_throughput
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{Data, Error, Record, Result, SessionKey, SessionStore};
use session_store_sled::{SledStore, sled};

const N: u64 = 50_000;
const TASKS: u64 = 16;

fn key(i: u64) -> SessionKey {
    let mut bytes = [0u8; 32];
    for (n, chunk) in bytes.chunks_mut(8).enumerate() {
        let x = (i ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .wrapping_mul(0xbf58_476d_1ce4_e5b9);
        chunk.copy_from_slice(&(x ^ (x >> 31)).to_be_bytes());
    }
    SessionKey::from_bytes(bytes)
}

fn data(i: u64) -> Data {
    let serde_json::Value::Object(map) = serde_json::json!({
        "user": format!("user-{i}"), "roles": ["reader", "writer"],
        "csrf": format!("{:032x}", u128::from(i).wrapping_mul(0x2545_f491_4f6c_dd1d)),
        "cart": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
        "theme": "dark", "visits": i,
    }) else {
        unreachable!()
    };
    map.into()
}

fn db(e: sled::Error) -> Error {
    Error::backend("sled", e)
}

fn rate(what: &str, n: u64, elapsed: Duration) {
    println!("{what:<56} {:>9.0} ops/s", n as f64 / elapsed.as_secs_f64());
}

/// Plain sled: encode the record as JSON and insert / get it in one tree.
/// (No sled transaction here: once one has run, every sled operation in the
/// process takes sled's global lock, which would slow the store's figures
/// below; the store itself uses none.)
fn raw(db_: &sled::Db) -> Result<()> {
    let tree = db_.open_tree("raw").map_err(db)?;
    let started = Instant::now();
    for i in 0..N {
        let value = Record::new(data(i), Duration::from_secs(3600)).encode()?;
        tree.insert(key(i).as_bytes(), value).map_err(db)?;
    }
    rate("raw sled save (encode + insert)", N, started.elapsed());
    let started = Instant::now();
    for i in 0..N {
        let k = key(i);
        let value = tree.get(k.as_bytes()).map_err(db)?;
        let _ = Record::decode(&k, &value.unwrap_or_default())?;
    }
    rate("raw sled load (get + decode)", N, started.elapsed());
    Ok(())
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{label:<56} p50 {:?} p99 {:?} p99.9 {:?} max {:?}",
        at(0.5),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1]
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("session-sled-tput-{}", std::process::id()));
    // Buffered writes (flushed every 500 ms, sled's default): this measures
    // the inline call itself, not the fsync synced writes add.
    let store = SledStore::builder(&dir)
        .with_sync_writes(false)
        .build()
        .await?;
    raw(&store.db()?)?;

    let mut save_latency = Vec::with_capacity(N as usize);
    let started = Instant::now();
    for i in 0..N {
        let t = Instant::now();
        store
            .save(&key(i), &Record::new(data(i), Duration::from_secs(3600)))
            .await?;
        save_latency.push(t.elapsed());
    }
    rate(
        "SledStore save, one at a time (inline)",
        N,
        started.elapsed(),
    );
    let mut load_latency = Vec::with_capacity(N as usize);
    let started = Instant::now();
    for i in 0..N {
        let t = Instant::now();
        store.load(&key(i)).await?;
        load_latency.push(t.elapsed());
    }
    rate(
        "SledStore load, one at a time (inline)",
        N,
        started.elapsed(),
    );

    let shared = Arc::new(store.clone());
    for save in [true, false] {
        let started = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let store = Arc::clone(&shared);
                tokio::spawn(async move {
                    let mut i = t;
                    while i < N {
                        if save {
                            store
                                .save(&key(i), &Record::new(data(i), Duration::from_secs(3600)))
                                .await?;
                        } else {
                            store.load(&key(i)).await?;
                        }
                        i += TASKS;
                    }
                    Ok::<_, Error>(())
                })
            })
            .collect();
        for task in tasks {
            task.await.map_err(|e| Error::backend("sled", e))??;
        }
        let op = if save { "save" } else { "load" };
        rate(
            &format!("SledStore {op}, {TASKS} tasks (inline)"),
            N,
            started.elapsed(),
        );
    }

    // What the same load costs behind a spawn_blocking hop.
    let started = Instant::now();
    for i in 0..N {
        let store = store.clone();
        tokio::task::spawn_blocking(move || block_on(store.load(&key(i))))
            .await
            .map_err(|e| Error::backend("sled", e))??;
    }
    rate(
        "SledStore load via spawn_blocking, one at a time",
        N,
        started.elapsed(),
    );

    percentiles("inline save latency (flusher running)", save_latency);
    percentiles("inline load latency", load_latency);
    let started = Instant::now();
    store.flush().await?;
    println!("explicit flush after the run: {:?}", started.elapsed());
    drop((store, shared));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Poll a future that never waits (SledStore::load completes on first poll)
/// to completion on the current (blocking) thread.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let handle = tokio::runtime::Handle::current();
    handle.block_on(future)
}

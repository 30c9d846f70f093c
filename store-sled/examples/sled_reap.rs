//! `delete_expired` cost follows the number of expired records, not live
//! ones: it walks only the expired prefix of the expiry index tree.
//!
//! Preloads N live + 10,000 expired sessions through the store (4 tasks in
//! parallel), then times one `delete_expired` and one empty sweep, for
//! N = 100,000 and N = 1,000,000; then adds 1,000 expired records to the
//! 1,000,000 and sweeps again:
//!
//! ```text
//! cargo run --release -p session-store-sled --example sled_reap
//! ```

use std::time::{Duration, Instant};

use session_core::{Data, Record, Result, SessionKey, SessionStore, Timestamp};
use session_store_sled::SledStore;

/// Distinct, well-spread keys without hashing cost.
fn key(i: u64) -> SessionKey {
    let mut bytes = [0u8; 32];
    for (n, chunk) in bytes.chunks_mut(8).enumerate() {
        let x = (i ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .wrapping_mul(0xbf58_476d_1ce4_e5b9);
        chunk.copy_from_slice(&(x ^ (x >> 31)).to_be_bytes());
    }
    SessionKey::from_bytes(bytes)
}

/// About 200 bytes of JSON, like a small real session.
fn data(i: u64) -> Data {
    let serde_json::Value::Object(map) = serde_json::json!({
        "user": format!("user-{i}"), "roles": ["reader", "writer"],
        "csrf": format!("{:032x}", u128::from(i).wrapping_mul(0x2545_f491_4f6c_dd1d)),
        "cart": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
        "theme": "dark", "visits": i,
    }) else {
        unreachable!()
    };
    map
}

/// Create keys `from..from + live + expired`, the expired ones spread evenly.
async fn preload(store: &SledStore, from: u64, live: u64, expired: u64) -> Result<()> {
    let now = Timestamp::now();
    let step = (live + expired) / expired.max(1);
    let tasks: Vec<_> = (0..4u64)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut n = t;
                while n < live + expired {
                    let i = from + n;
                    let expires = if n % step == 0 && n / step < expired {
                        now - Duration::from_secs(60)
                    } else {
                        now + Duration::from_secs(3600 + i % 1000)
                    };
                    let record =
                        Record::with_times(data(i), now - Duration::from_secs(120), expires);
                    store.create(&key(i), &record).await?;
                    n += 4;
                }
                Ok::<_, session_core::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| session_core::Error::backend("sled", e))??;
    }
    Ok(())
}

async fn sweep(store: &SledStore, live: u64, expired: u64, preload: Duration) -> Result<()> {
    let started = Instant::now();
    let removed = store.delete_expired().await?;
    let sweep = started.elapsed();
    let started = Instant::now();
    let again = store.delete_expired().await?;
    let empty = started.elapsed();
    assert_eq!((removed, again), (expired, 0));
    println!(
        "sled:   {live:>9} live + {expired:>6} expired (preload {:>4.1} s): delete_expired \
         {:>7.1} ms; empty sweep {:.3} ms",
        preload.as_secs_f64(),
        ms(sweep),
        ms(empty),
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    for live in [100_000u64, 1_000_000] {
        let dir = std::env::temp_dir().join(format!("session-sled-reap-{}", std::process::id()));
        let store = SledStore::open(&dir).await?;
        let started = Instant::now();
        preload(&store, 0, live, 10_000).await?;
        sweep(&store, live, 10_000, started.elapsed()).await?;
        if live == 1_000_000 {
            let started = Instant::now();
            preload(&store, 2 * live, 0, 1_000).await?;
            sweep(&store, live, 1_000, started.elapsed()).await?;
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

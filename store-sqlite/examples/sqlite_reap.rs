//! `delete_expired` cost follows the number of expired rows, not live ones.
//!
//! Preloads N live + 10,000 expired sessions (one bulk transaction straight
//! into the store's table, expired rows spread evenly through the table: the
//! worst case for locality), then times one `delete_expired` and one empty
//! sweep, for N = 100,000 and N = 1,000,000; then adds 1,000 expired rows to
//! the 1,000,000 and sweeps again:
//!
//! ```text
//! cargo run --release -p session-store-sqlite --example sqlite_reap
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use session_core::{Error, Result, SessionKey, SessionStore, Timestamp};
use session_store_sqlite::{SqliteStore, rusqlite};

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
fn data(i: u64) -> String {
    format!(
        r#"{{"user":"user-{i}","roles":["reader","writer"],"csrf":"{:032x}","cart":[{{"sku":"A-1","qty":2}},{{"sku":"B-7","qty":1}}],"theme":"dark","visits":{i}}}"#,
        u128::from(i).wrapping_mul(0x2545_f491_4f6c_dd1d)
    )
}

fn sql(e: rusqlite::Error) -> Error {
    Error::backend("sqlite", e)
}

/// Insert keys `from..from + live + expired`, the expired ones spread evenly.
fn preload(path: &Path, from: u64, live: u64, expired: u64) -> Result<()> {
    let now = Timestamp::now().as_millis();
    let mut conn = rusqlite::Connection::open(path).map_err(sql)?;
    let tx = conn.transaction().map_err(sql)?;
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO sessions (key, data, created_at, expires_at, version) \
                 VALUES (?1, ?2, ?3, ?4, 0)",
            )
            .map_err(sql)?;
        let step = (live + expired) / expired.max(1);
        for n in 0..live + expired {
            let i = from + n;
            let expires = if n % step == 0 && n / step < expired {
                now - 60_000
            } else {
                now + 3_600_000 + (i % 1000) as i64
            };
            insert
                .execute(rusqlite::params![
                    key(i).as_str(),
                    data(i),
                    now - 120_000,
                    expires
                ])
                .map_err(sql)?;
        }
    }
    tx.commit().map_err(sql)
}

async fn sweep(store: &SqliteStore, live: u64, expired: u64, preload: Duration) -> Result<()> {
    let started = Instant::now();
    let removed = store.delete_expired().await?;
    let sweep = started.elapsed();
    let started = Instant::now();
    let again = store.delete_expired().await?;
    let empty = started.elapsed();
    assert_eq!((removed, again), (expired, 0));
    println!(
        "sqlite: {live:>9} live + {expired:>6} expired (preload {:>4.1} s): delete_expired \
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
        let dir = std::env::temp_dir().join(format!("session-sqlite-reap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::backend("sqlite", e))?;
        let path = dir.join("sessions.db");
        let store = SqliteStore::open(&path).await?;

        let started = Instant::now();
        preload(&path, 0, live, 10_000)?;
        sweep(&store, live, 10_000, started.elapsed()).await?;
        if live == 1_000_000 {
            let started = Instant::now();
            preload(&path, 2 * live, 0, 1_000)?;
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

//! Rough load/save throughput of `SqliteStore` next to plain rusqlite doing
//! the same statements on the same layout, and how the read pool scales.
//! (Rough figures until the benchmark crate lands.)
//!
//! ```text
//! cargo run --release -p session-store-sqlite --example sqlite_throughput
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{Data, Error, Record, Result, SessionKey, SessionStore, Timestamp};
use session_store_sqlite::{SqliteStore, rusqlite};

const N: u64 = 20_000;
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

fn sql(e: rusqlite::Error) -> Error {
    Error::backend("sqlite", e)
}

fn rate(what: &str, n: u64, elapsed: Duration) {
    println!("{what:<52} {:>9.0} ops/s", n as f64 / elapsed.as_secs_f64());
}

/// Plain rusqlite on one thread: the same upsert and select, prepared and
/// cached, same pragmas (WAL, synchronous NORMAL), JSON encoded the same way.
fn raw(path: &std::path::Path) -> Result<()> {
    let conn = rusqlite::Connection::open(path).map_err(sql)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
        .map_err(sql)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql)?;
    conn.execute_batch(
        "CREATE TABLE raw (key TEXT PRIMARY KEY NOT NULL, data TEXT NOT NULL, \
         created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, version INTEGER NOT NULL);
         CREATE INDEX raw_expires_at ON raw (expires_at);",
    )
    .map_err(sql)?;
    let now = Timestamp::now().as_millis();
    let started = Instant::now();
    for i in 0..N {
        let data = Record::encode_data(&data(i))?;
        conn.prepare_cached(
            "INSERT INTO raw (key, data, created_at, expires_at, version) VALUES (?1, ?2, ?3, ?4, 0) \
             ON CONFLICT (key) DO UPDATE SET data = excluded.data, created_at = excluded.created_at, \
             expires_at = excluded.expires_at, version = excluded.version",
        )
        .and_then(|mut s| s.execute(rusqlite::params![key(i).as_str(), data.as_str(), now, now + 3_600_000]))
        .map_err(sql)?;
    }
    rate("raw rusqlite save (upsert, 1 thread)", N, started.elapsed());
    let started = Instant::now();
    for i in 0..N {
        let mut stmt = conn
            .prepare_cached(
                "SELECT data, created_at, expires_at, version FROM raw \
                 WHERE key = ?1 AND expires_at > ?2",
            )
            .map_err(sql)?;
        let text: String = stmt
            .query_row(rusqlite::params![key(i).as_str(), now], |r| r.get(0))
            .map_err(sql)?;
        let _ = Record::decode_data(&key(i), text.as_bytes())?;
    }
    rate(
        "raw rusqlite load (select + decode, 1 thread)",
        N,
        started.elapsed(),
    );
    Ok(())
}

async fn sequential(store: &SqliteStore, label: &str) -> Result<()> {
    let started = Instant::now();
    for i in 0..N {
        store
            .save(&key(i), &Record::new(data(i), Duration::from_secs(3600)))
            .await?;
    }
    rate(
        &format!("{label} save, one at a time"),
        N,
        started.elapsed(),
    );
    let started = Instant::now();
    for i in 0..N {
        store.load(&key(i)).await?;
    }
    rate(
        &format!("{label} load, one at a time"),
        N,
        started.elapsed(),
    );
    Ok(())
}

async fn concurrent(store: &SqliteStore, label: &str, save: bool) -> Result<()> {
    let store = Arc::new(store.clone());
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&store);
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
        task.await.map_err(|e| Error::backend("sqlite", e))??;
    }
    let op = if save { "save" } else { "load" };
    rate(
        &format!("{label} {op}, {TASKS} tasks"),
        N,
        started.elapsed(),
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("session-sqlite-tput-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::backend("sqlite", e))?;
    raw(&dir.join("raw.db"))?;

    let path = dir.join("sessions.db");
    let store = SqliteStore::open(&path).await?;
    sequential(&store, "SqliteStore").await?;
    concurrent(&store, "SqliteStore (4 readers)", true).await?;
    concurrent(&store, "SqliteStore (4 readers)", false).await?;
    let one = SqliteStore::builder(&path)
        .with_read_connections(1)
        .build()
        .await?;
    concurrent(&one, "SqliteStore (1 reader)", false).await?;
    let two = SqliteStore::builder(&path)
        .with_read_connections(2)
        .build()
        .await?;
    concurrent(&two, "SqliteStore (2 readers)", false).await?;
    drop((store, one, two));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

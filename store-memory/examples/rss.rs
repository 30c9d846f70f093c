//! Memory of `MemoryStore`: resident set size (RSS) at baseline, after
//! preloading 100,000 and then 1,000,000 sessions with the ~200-byte
//! BENCH.md payload, bytes per session, and after they have all expired and
//! been reaped with `delete_expired` (it must come back down: no leak).
//!
//! ```sh
//! cargo run -p session-store-memory --release --example rss
//! ```
//!
//! Linux only (reads `/proc/self/status`). Everything runs on the main
//! thread, so glibc serves it from its main arena.

use std::time::{Duration, Instant};

use serde_json::json;
use session_core::{Data, Record, SessionId, SessionStore, Timestamp};
use session_store_memory::MemoryStore;

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn rss() -> u64 {
    status_kib("VmRSS") * 1024
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The BENCH.md payload: 8 fields (strings, numbers, a nested object, an
/// array), about 200 bytes of JSON. `i` varies it per session.
fn payload(i: u64) -> Data {
    let value = json!({
        "user_id": 1_000_000 + i,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "role": "admin",
        "logged_in_at": 1_700_000_000_123_u64 + i,
        "cart": [101, 2002, 30003],
        "prefs": {"theme": "dark", "lang": "en-GB"},
        "csrf": "9f86d081884c7d65",
    });
    match value {
        serde_json::Value::Object(map) => map,
        _ => Data::new(),
    }
}

/// Preload `n` sessions expiring `ttl` from the start, report, wait until
/// they have all expired, reap them and report again. Returns how long the
/// preload took.
async fn round(store: &MemoryStore, n: u64, ttl: Duration, baseline: u64) -> Duration {
    let before = rss();
    let start = Timestamp::now();
    let expires_at = start + ttl;
    let began = Instant::now();
    for i in 0..n {
        let key = SessionId::generate().map(|id| id.key());
        let Ok(key) = key else {
            eprintln!("no randomness for session ids");
            return began.elapsed();
        };
        let record = Record::with_times(payload(i), start, expires_at);
        if let Err(e) = store.save(&key, &record).await {
            eprintln!("save failed: {e}");
            return began.elapsed();
        }
    }
    let loaded = began.elapsed();
    let live = store.len().await.unwrap_or(0);
    let after = rss();
    let over = after.saturating_sub(baseline);
    println!(
        "{n:>9} sessions: RSS {:>10}  (+{} over baseline = {} bytes/session; grew {} during preload; {live} live; preload {:.2?})",
        mib(after),
        mib(over),
        over / n.max(1),
        mib(after.saturating_sub(before)),
        loaded,
    );

    // Wait until every one of them has expired, then reap.
    let wait = expires_at.duration_since(Timestamp::now()) + Duration::from_millis(20);
    tokio::time::sleep(wait).await;
    let began = Instant::now();
    let reaped = store.delete_expired().await.unwrap_or(0);
    let took = began.elapsed();
    let after = rss();
    println!(
        "{:>9} reaped  : RSS {:>10}  ({:+.1}% vs baseline; delete_expired {took:.2?}; {} left)",
        reaped,
        mib(after),
        (after as f64 / baseline as f64 - 1.0) * 100.0,
        store.len().await.unwrap_or(0),
    );
    loaded
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let one = Record::encode_data(&payload(0))
        .map(|s| s.len())
        .unwrap_or(0);
    println!("payload: {one} bytes of JSON");
    let store = MemoryStore::new();
    println!("store: {} shards", store.shard_count());
    let baseline = rss();
    println!("baseline : RSS {:>10}", mib(baseline));

    let took = round(&store, 100_000, Duration::from_secs(3), baseline).await;
    // Long enough that all 1,000,000 are still live when measured, even on
    // a slow machine: twice the extrapolated preload time.
    let ttl = (took * 20).max(Duration::from_secs(5));
    round(&store, 1_000_000, ttl, baseline).await;
    // Memory freed by reaping is reused, not leaked: a new load does not
    // grow the process.
    println!("again, to show that freed memory is reused:");
    round(&store, 100_000, Duration::from_secs(3), baseline).await;

    println!(
        "peak     : RSS {:>10} (VmHWM)",
        mib(status_kib("VmHWM") * 1024)
    );
    if rss() > baseline + baseline / 10 {
        println!(
            "\nnote: glibc returns freed memory to the system only from the top of its heap; a \
             few chunks it keeps cached per thread (tcache) can pin that top. Run with \
             GLIBC_TUNABLES=glibc.malloc.tcache_count=0 to see the store's own behaviour, \
             or use an allocator that purges freed pages (jemalloc, mimalloc)."
        );
    }
}

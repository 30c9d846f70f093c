//! Memory of `MemoryStore`: resident set size (RSS) at baseline, after
//! preloading 100,000 and then 1,000,000 sessions with the ~200-byte
//! BENCH.md payload, bytes per session, and after they have all expired and
//! been reaped with `delete_expired` (it must come back down: no leak).
//!
//! ```sh
//! cargo run -p session-store-memory --release --example rss
//! ```
//!
//! It runs under the system allocator (glibc `malloc` on Linux) twice: as
//! is, then in a child process started with `GLIBC_TUNABLES=
//! glibc.malloc.tcache_count=0:glibc.malloc.trim_threshold=131072`, under
//! which glibc returns the freed memory (see the README, "Memory"). Set `GLIBC_TUNABLES` yourself to run one
//! configuration only. Linux only (reads `/proc/self/status`). Everything
//! runs on the main thread, so glibc serves it from its main arena.

use std::process::Command;
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

/// Resident set size, in bytes.
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
        serde_json::Value::Object(map) => map.into(),
        _ => Data::new(),
    }
}

/// What one round measured.
struct Round {
    preload: Duration,
    reaped_rss: u64,
}

/// Preload `n` sessions expiring `ttl` from the start, report, wait until
/// they have all expired, reap them and report again. `fresh`: everything
/// allocated so far has been returned (the first rounds).
async fn round(store: &MemoryStore, n: u64, ttl: Duration, baseline: u64, fresh: bool) -> Round {
    let before = rss();
    let start = Timestamp::now();
    let expires_at = start + ttl;
    let began = Instant::now();
    for i in 0..n {
        let Ok(key) = SessionId::generate().map(|id| id.key()) else {
            eprintln!("no randomness for session ids");
            break;
        };
        let record = Record::with_times(payload(i), start, expires_at);
        if let Err(e) = store.save(&key, &record).await {
            eprintln!("save failed: {e}");
            break;
        }
    }
    let preload = began.elapsed();
    let live = store.len().await.unwrap_or(0);
    let after = rss();
    let grew = after.saturating_sub(before);
    let over = after.saturating_sub(baseline);
    // Bytes per session only makes sense from an empty process: a later
    // round reuses memory the allocator kept.
    let per_session = if fresh {
        format!(" = {} bytes/session", over / n.max(1))
    } else {
        String::new()
    };
    println!(
        "{n:>9} sessions: RSS {:>9}  (+{} over baseline{per_session}; grew {} during preload; {live} live; preload {preload:.2?})",
        mib(after),
        mib(over),
        mib(grew),
    );

    // Wait until every one of them has expired, then reap.
    let wait = expires_at.duration_since(Timestamp::now()) + Duration::from_millis(20);
    tokio::time::sleep(wait).await;
    let began = Instant::now();
    let reaped = store.delete_expired().await.unwrap_or(0);
    let took = began.elapsed();
    let reaped_rss = rss();
    println!(
        "{reaped:>9} reaped  : RSS {:>9}  {:+.1}% vs baseline  (delete_expired {took:.2?}, {} left)",
        mib(reaped_rss),
        (reaped_rss as f64 / baseline as f64 - 1.0) * 100.0,
        store.len().await.unwrap_or(0),
    );
    Round {
        preload,
        reaped_rss,
    }
}

/// Run the measurement; `allocator` names the allocator in use.
async fn measure(allocator: &str) {
    println!("allocator: {allocator}");
    let one = Record::encode_data(&payload(0))
        .map(|s| s.len())
        .unwrap_or(0);
    println!("payload: {one} bytes of JSON");
    let store = MemoryStore::new();
    println!("store: {} shards", store.shard_count());
    let baseline = rss();
    println!("baseline : RSS {:>9}", mib(baseline));

    let first = round(&store, 100_000, Duration::from_secs(3), baseline, true).await;
    // Long enough that all 1,000,000 are still live when measured, even on
    // a slow machine: twice the extrapolated preload time.
    let ttl = (first.preload * 20).max(Duration::from_secs(5));
    let big = round(&store, 1_000_000, ttl, baseline, true).await;
    // Whatever the allocator kept is reused, not leaked: a new load does
    // not grow the process beyond what it already holds.
    println!("again, to show that freed memory is reused:");
    round(&store, 100_000, Duration::from_secs(3), baseline, false).await;

    println!(
        "peak     : RSS {:>9} (VmHWM)",
        mib(status_kib("VmHWM") * 1024)
    );
    let peak = status_kib("VmHWM") * 1024;
    let returned = peak.saturating_sub(big.reaped_rss) as f64
        / peak.saturating_sub(baseline).max(1) as f64
        * 100.0;
    println!(
        "after reaping 1,000,000: RSS {} = baseline {} {:+.1}%; {returned:.1}% of the growth returned to the system",
        mib(big.reaped_rss),
        mib(baseline),
        (big.reaped_rss as f64 / baseline as f64 - 1.0) * 100.0,
    );
}

/// glibc settings under which it returns freed memory here: no per-thread
/// cache (its chunks pin the top of the heap) and a fixed trim threshold
/// (the adaptive one grows to twice the largest freed map table).
const NO_TCACHE: &str = "glibc.malloc.tcache_count=0:glibc.malloc.trim_threshold=131072";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    match std::env::var("GLIBC_TUNABLES") {
        Ok(tunables) => {
            measure(&format!("system (glibc malloc), GLIBC_TUNABLES={tunables}")).await;
        }
        Err(_) => {
            measure("system (glibc malloc), default settings").await;
            println!("\n--- again in a child process with GLIBC_TUNABLES={NO_TCACHE} ---\n");
            let child = std::env::current_exe()
                .and_then(|exe| Command::new(exe).env("GLIBC_TUNABLES", NO_TCACHE).status());
            if let Err(e) = child {
                eprintln!("could not start the child process: {e}");
            }
        }
    }
}

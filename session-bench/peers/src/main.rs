//! `session-bench-peers`: the tower-sessions stores through session-bench's
//! standard workload (the same `session-bench-workload` source: payload,
//! keys, phases, histograms), printing the same JSON lines on stdout.
//!
//! `session-bench --peers` builds and runs it as a child process, right
//! after our store and the raw engine of the same engine, with the same
//! settings; it can also be run by hand:
//!
//! ```text
//! cargo run --release --manifest-path session-bench/peers/Cargo.toml -- \
//!     --peers memory-store,moka-store,redis-store,sqlx-store
//! ```

mod peer;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use session_bench_workload::payload::KEY_SEED;
use session_bench_workload::report::{Line, Measurement, PeerLine, RunInfo};
use session_bench_workload::{Bench, Phase, Result};

use crate::peer::Peer;

#[derive(Debug, Parser)]
#[command(
    name = "session-bench-peers",
    about = "The tower-sessions stores through session-bench's standard workload (JSON lines on stdout)"
)]
struct Cli {
    /// Peers to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    peers: Vec<Peer>,

    /// Seconds each phase runs [default: 3; 0.1 with --quick].
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,

    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,

    /// Phases, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    phases: Option<Vec<Phase>>,

    /// Sessions preloaded [default: 10000; 1000 with --quick].
    #[arg(long, value_name = "N")]
    preload: Option<usize>,

    /// Most keys one `create` phase may add [default: 1000000; 100000 with
    /// --quick].
    #[arg(long, value_name = "N")]
    create_cap: Option<usize>,

    /// The run id written into every line (session-bench passes its own).
    #[arg(long, default_value = "peers")]
    run: String,

    /// The commit written into every line.
    #[arg(long, default_value = "unknown")]
    commit: String,

    /// A smoke run: short phases, few sessions (not comparable).
    #[arg(long)]
    quick: bool,

    /// Redis for tower-sessions-redis-store.
    #[arg(
        long,
        env = "SESSION_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    redis_url: String,

    /// Folder for the SQLite file (a temporary folder inside it).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .map_err(Into::into)
        .and_then(|rt| rt.block_on(run(cli, cores)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut text = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("session-bench-peers: error: {text}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, cores: usize) -> Result<()> {
    let q = cli.quick;
    let secs = cli.duration.unwrap_or(if q { 0.1 } else { 3.0 });
    let duration = Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or("--duration must be a positive number of seconds")?;
    if cli.concurrency.is_empty() || cli.concurrency.contains(&0) {
        return Err("--concurrency needs levels of at least 1".into());
    }
    let phases = cli.phases.clone().unwrap_or_else(|| Phase::ALL.to_vec());
    let preload = cli.preload.unwrap_or(if q { 1_000 } else { 10_000 });
    let create_cap = cli
        .create_cap
        .unwrap_or(if q { 100_000 } else { 1_000_000 });
    let info = RunInfo {
        run: cli.run.clone(),
        commit: cli.commit.clone(),
        cores,
        quick: q,
        duration_s: duration.as_secs_f64(),
        preload,
    };
    for &peer in &cli.peers {
        let name = peer.crate_name();
        eprintln!("{name}: opening and preloading {preload} sessions");
        let opened = peer
            .open(preload, &cli.redis_url, cli.data_dir.as_deref())
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        let bench = Bench::preload(opened.target.clone(), preload, KEY_SEED).await?;
        // The same seeds, in the same order, as session-bench's run_phases.
        let mut seed = 1;
        let mut lines = Vec::new();
        for &c in &cli.concurrency {
            for phase in Phase::run_order(&phases) {
                seed += 1;
                let stats = bench
                    .run(phase, c, duration, create_cap, seed)
                    .await
                    .map_err(|e| format!("{name}, {phase} at C={c}: {e}"))?;
                let line = PeerLine::new(name, peer.engine(), phase, c, &stats);
                eprintln!(
                    "  {:<6} C={:<3} peer {:>11.0} ops/s p50 {:>8.2} µs p99 {:>8.2} µs{}",
                    phase.name(),
                    c,
                    line.ops_per_sec,
                    line.p50_us,
                    line.p99_us,
                    if line.misses > 0 {
                        format!("  (misses: {})", line.misses)
                    } else {
                        String::new()
                    }
                );
                lines.push(line);
            }
            bench.drain_pool().await?;
        }
        opened.target.clear().await?;
        lines.sort_by_key(|l| (l.concurrency, l.phase));
        for line in lines {
            let line = Line {
                info: info.clone(),
                measurement: Measurement::Peer(line),
            };
            println!("{}", line.to_json()?);
        }
    }
    Ok(())
}

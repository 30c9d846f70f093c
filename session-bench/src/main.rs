//! `session-bench`: run the standard workload on every store next to its raw
//! engine, or render `BENCHMARKS.md` from the results.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use session_bench::phase::Phase;
use session_bench::render::{self, Selection};
use session_bench::report::{self, Line, Measurement, PhaseLine, RunInfo};
use session_bench::scale::{self, ReapSizes};
use session_bench::{Backend, Bench, BoxError, Env, Result, StoreTarget, Target};

/// Default results file (inside `target/`, so runs never dirty the tree).
const DEFAULT_OUT: &str = "target/session-bench/results.jsonl";

use session_bench::payload::KEY_SEED;
use session_bench::peers::{self, PeerRun};

#[derive(Debug, Parser)]
#[command(
    name = "session-bench",
    version,
    about = "The standard session-store workload: every store next to its raw engine",
    long_about = "The standard session-store workload (BENCH.md): every store next to its raw \
engine.\n\n\
For each selected backend, a store and a raw baseline of its engine (a sharded HashMap; plain \
rusqlite statements; plain sled calls; the same Redis connection's GET/SET PX/PEXPIRE/DEL; the \
MongoDB driver; plain std::fs reads, temp-file writes renamed over and unlinks; the same tokio-postgres statements; the same mysql_async statements) are each preloaded with sessions carrying the standard ~200-byte, 8-field payload \
(expiry 30 min), then run the phases load, save (the store's versioned update, the raw engine's \
unconditional write), create, touch, delete and mixed (80% load, 15% save, 5% create+destroy) for \
a fixed time at each concurrency (tokio tasks sharing one store). Each phase reports ops/s and \
p50/p99 latency (HDR histogram) and the store's throughput as a ratio of its raw engine's, \
measured in the same run.\n\n\
The scale experiments then time delete_expired with 200,000 and 1,000,000 live plus 2,000 and \
10,000 expired sessions (three sweeps each, of freshly expired sessions; render takes the median), and measure the memory store's resident set at 100,000 and 1,000,000 \
sessions and after they all expired and were reaped (in a fresh child process).\n\n\
Results: a Markdown table on stdout, and one JSON object per line appended to --out. \
`session-bench render` turns the lines of several runs into BENCHMARKS.md (medians).\n\n\
Servers come from the environment, as for the tests: SESSION_REDIS_URL (default \
redis://127.0.0.1:6379/), SESSION_REDIS_CLUSTER_NODES (comma-separated, default \
redis://127.0.0.1:7000/), SESSION_MONGO_URL (default mongodb://127.0.0.1:27017/), \
SESSION_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test), \
SESSION_MYSQL_URL (default mysql://root@127.0.0.1:3306/test). A selected \
server that cannot be reached is an error naming the address.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Regenerate the tables of BENCHMARKS.md from the results file (the
    /// median of the latest runs per row); the prose around them is kept.
    Render(RenderArgs),
    /// The request-level measurement: the demo's counter route through
    /// session-tower and through tower-sessions, on memory and Redis, next
    /// to plain axum, interleaved round by round.
    #[cfg(feature = "http")]
    Http(HttpArgs),
    /// (internal) Measure the memory store's footprint in this fresh process
    /// and print JSON lines.
    #[command(hide = true)]
    MemoryProbe(ProbeArgs),
}

#[derive(Debug, Args)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "command-line flags are booleans"
)]
struct RunArgs {
    /// Backends to run, comma-separated: memory, sqlite, sled, file, redis,
    /// redis-cluster, mongo, postgres, mysql. Default: every backend compiled into this
    /// binary (see the crate's features).
    #[arg(long, value_enum, value_delimiter = ',')]
    stores: Option<Vec<Backend>>,

    /// Seconds each phase runs, per concurrency level and target
    /// [default: 3; 0.1 with --quick].
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,

    /// Concurrency levels (tokio tasks sharing one store), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,64",
        value_name = "C,..."
    )]
    concurrency: Vec<usize>,

    /// Phases to run, comma-separated [default: all]. `delete` destroys the
    /// keys `create` made (it creates some, untimed, if `create` is not run).
    #[arg(long, value_enum, value_delimiter = ',')]
    phases: Option<Vec<Phase>>,

    /// Sessions preloaded before the phases [default: 10000; 1000 with --quick].
    #[arg(long, value_name = "N")]
    preload: Option<usize>,

    /// Everything in well under a minute: 0.1 s phases, 1,000 preloaded
    /// sessions, small scale sizes. For smoke tests; `render` skips these
    /// results.
    #[arg(long)]
    quick: bool,

    /// Results file; one JSON object per line is appended per (store,
    /// phase, C), per delete_expired timing and per memory size.
    #[arg(long, default_value = DEFAULT_OUT, value_name = "PATH")]
    out: PathBuf,

    /// Run the scale experiments (delete_expired timings, memory footprint)
    /// after the phases [the default].
    #[arg(long, overrides_with = "no_scale")]
    scale: bool,

    /// Skip the scale experiments.
    #[arg(long, overrides_with = "scale")]
    no_scale: bool,

    /// Skip the timed phases (and the payload encoding timing): run only
    /// the scale experiments.
    #[arg(long)]
    no_phases: bool,

    /// Also run the tower-sessions stores on the same engines (memory:
    /// tower-sessions-memory-store and -moka-store; redis:
    /// tower-sessions-redis-store; sqlite: tower-sessions-sqlx-store),
    /// through the same phases, in the same run, right after our store and
    /// the raw engine; print ours, the peer, raw, ours ÷ peer and ours ÷ raw.
    /// They are built and run from their own Cargo workspace
    /// (session-bench/peers) as a child process: release, or debug with
    /// --quick. `--stores` defaults to memory,sqlite,redis.
    #[arg(long)]
    peers: bool,

    /// Repeat the whole run this many times (render takes medians).
    #[arg(long, default_value_t = 1, value_name = "N")]
    runs: usize,

    /// Most keys one `create` phase may add before it stops early (ops/s is
    /// over the time it ran): keeps in-process engines from growing by
    /// gigabytes [default: 1000000; 100000 with --quick].
    #[arg(long, value_name = "N")]
    create_cap: Option<usize>,

    /// Live populations for the delete_expired timings, comma-separated
    /// [default: 200000,1000000; 2000,10000 with --quick; a tenth of the
    /// default for mongo, whose test server writes ~2k sessions/s].
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    reap_live: Option<Vec<u64>>,

    /// Expired populations timed at each live population, comma-separated
    /// [default: 2000,10000; 100,500 with --quick].
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    reap_expired: Option<Vec<u64>>,

    /// Sweeps timed per (live, expired) pair, each of freshly expired
    /// sessions; BENCHMARKS.md shows their median [default: 3; 1 with
    /// --quick].
    #[arg(long, value_name = "N")]
    reap_repeats: Option<usize>,

    /// Memory-store sizes whose resident set is measured, comma-separated
    /// [default: 100000,1000000; 10000,50000 with --quick].
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    memory_sessions: Option<Vec<u64>>,

    /// Folder for the SQLite and sled files (a temporary folder is created
    /// and removed inside it) [default: the system's temporary folder].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[cfg(feature = "http")]
#[derive(Debug, Args)]
struct HttpArgs {
    /// Variants to run, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    variants: Option<Vec<session_bench::http::Variant>>,

    /// Seconds each (variant, C) is measured per round [default: 3; 0.2
    /// with --quick].
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,

    /// Clients (one keep-alive connection and one session each),
    /// comma-separated [default: 1,64; 1,8 with --quick].
    #[arg(long, value_delimiter = ',', value_name = "C,...")]
    concurrency: Option<Vec<usize>>,

    /// Rounds; every variant runs once per round, and the table reports
    /// medians [default: 5; 1 with --quick].
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,

    /// A smoke run in seconds (not comparable).
    #[arg(long)]
    quick: bool,

    /// Results file; one JSON object per (variant, C, round) is appended.
    #[arg(
        long,
        default_value = "target/session-bench/http.jsonl",
        value_name = "PATH"
    )]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct RenderArgs {
    /// Results file to read.
    #[arg(long, default_value = DEFAULT_OUT, value_name = "PATH")]
    input: PathBuf,

    /// Markdown file whose generated part (between the session-bench
    /// markers) is replaced; the markers and the part are appended if
    /// missing.
    #[arg(long, default_value = "BENCHMARKS.md", value_name = "PATH")]
    output: PathBuf,

    /// Summarise the latest N runs of each store (median per row).
    #[arg(long, default_value_t = 3, value_name = "N")]
    runs: usize,

    /// Also use --quick results (normally skipped: not comparable).
    #[arg(long)]
    include_quick: bool,

    /// Print the generated part instead of writing the file.
    #[arg(long)]
    stdout: bool,

    /// Render the peers comparison (ours, the tower-sessions peer, raw)
    /// into its own generated part (between the session-bench:peers
    /// markers) instead of the main tables.
    #[arg(long)]
    peers: bool,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// Store name written in the lines.
    #[arg(long, default_value = "memory")]
    label: String,
    /// Sizes to measure, ascending, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    sessions: Vec<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = runtime().and_then(|rt| match cli.command {
        Some(Command::Render(args)) => render_cmd(&args),
        Some(Command::MemoryProbe(args)) => rt.block_on(probe_cmd(&args)),
        #[cfg(feature = "http")]
        Some(Command::Http(args)) => rt.block_on(http_cmd(args)),
        None => rt.block_on(run_cmd(cli.run)),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("session-bench: error: {}", session_core::report(&*e));
            ExitCode::FAILURE
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .enable_all()
        .build()?)
}

/// `git rev-parse HEAD`, or `"unknown"`.
fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(feature = "http")]
async fn http_cmd(args: HttpArgs) -> Result<()> {
    use session_bench::http::{HttpBench, Variant, table};
    let env = Env::from_env();
    let mut variants = args.variants.unwrap_or_else(|| Variant::ALL.to_vec());
    if let Some(reason) = session_conformance::env::REDIS.skip_reason() {
        eprintln!("session-bench: {reason}: the Redis variants are skipped");
        variants.retain(|v| !v.uses_redis());
    }
    let concurrency = args
        .concurrency
        .unwrap_or_else(|| if args.quick { vec![1, 8] } else { vec![1, 64] });
    if concurrency.contains(&0) {
        return Err("--concurrency: every level must be at least 1".into());
    }
    let seconds = args.duration.unwrap_or(if args.quick { 0.2 } else { 3.0 });
    let duration = Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or("--duration must be a positive number of seconds")?;
    let bench = HttpBench {
        variants: variants.clone(),
        concurrency: concurrency.clone(),
        duration,
        rounds: args.rounds.unwrap_or(if args.quick { 1 } else { 5 }).max(1),
        env,
    };
    let lines = bench.run(&git_commit(), cores(), args.quick).await?;
    report::append_lines(&args.out, &lines)?;
    println!("{}", table(&lines, &variants, &concurrency));
    Ok(())
}

fn render_cmd(args: &RenderArgs) -> Result<()> {
    let lines = report::read_lines(&args.input)?;
    let selection = Selection {
        runs: args.runs,
        include_quick: args.include_quick,
    };
    let generated = if args.peers {
        render::generate_peers(&lines, &selection)?
    } else {
        render::generate(&lines, &selection)?
    };
    if args.stdout {
        println!("{generated}");
        return Ok(());
    }
    let document = match std::fs::read_to_string(&args.output) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", args.output.display()).into()),
    };
    let spliced = if args.peers {
        render::splice_between(
            &document,
            &generated,
            render::PEERS_BEGIN,
            render::PEERS_END,
        )
    } else {
        render::splice(&document, &generated)
    };
    std::fs::write(&args.output, spliced)
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    eprintln!(
        "session-bench: rendered {} lines of {} into {}",
        lines.len(),
        args.input.display(),
        args.output.display()
    );
    Ok(())
}

#[cfg(feature = "memory")]
async fn probe_cmd(args: &ProbeArgs) -> Result<()> {
    let store: Arc<dyn session_core::SessionStore> =
        Arc::new(session_store_memory::MemoryStore::new());
    let lines = scale::memory_probe(&args.label, &store, &args.sessions).await?;
    for line in lines {
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(())
}

#[cfg(not(feature = "memory"))]
async fn probe_cmd(_args: &ProbeArgs) -> Result<()> {
    Err("the memory backend is not compiled in".into())
}

/// The run's settings, with `--quick` defaults resolved.
struct Plan {
    stores: Vec<Backend>,
    duration: Duration,
    concurrency: Vec<usize>,
    phases: Vec<Phase>,
    preload: usize,
    create_cap: usize,
    scale: bool,
    phases_on: bool,
    reap: ReapSizes,
    /// The reaping sizes for MongoDB: a tenth of the live populations unless
    /// `--reap-live` was given (the test server manages ~2k writes/s).
    mongo_reap: ReapSizes,
    memory_sessions: Vec<u64>,
    peers: bool,
}

impl Plan {
    fn new(args: &RunArgs) -> Result<Self> {
        let q = args.quick;
        let stores = args.stores.clone().unwrap_or_else(|| {
            if args.peers {
                [Backend::Memory, Backend::Sqlite, Backend::Redis]
                    .into_iter()
                    .filter(|b| b.compiled())
                    .collect()
            } else {
                Backend::all_compiled()
            }
        });
        if stores.is_empty() {
            return Err(
                "no backend compiled in: build with `--features memory` (or others)".into(),
            );
        }
        if let Some(b) = stores.iter().find(|b| !b.compiled()) {
            return Err(format!(
                "the {b} backend is not compiled into this binary (compiled: {})",
                names(&Backend::all_compiled())
            )
            .into());
        }
        let secs = args.duration.unwrap_or(if q { 0.1 } else { 3.0 });
        if !(secs.is_finite() && secs > 0.0) {
            return Err(
                format!("--duration must be a positive number of seconds, got {secs}").into(),
            );
        }
        if args.concurrency.is_empty() || args.concurrency.contains(&0) {
            return Err("--concurrency needs levels of at least 1".into());
        }
        if args.reap_repeats == Some(0) {
            return Err("--reap-repeats needs at least 1 sweep".into());
        }
        let mut stores = stores;
        stores.dedup();
        let reap = ReapSizes {
            live: sorted(args.reap_live.clone().unwrap_or_else(|| {
                if q {
                    vec![2_000, 10_000]
                } else {
                    vec![200_000, 1_000_000]
                }
            })),
            expired: args.reap_expired.clone().unwrap_or_else(|| {
                if q {
                    vec![100, 500]
                } else {
                    vec![2_000, 10_000]
                }
            }),
            expired_ttl: Duration::from_millis(if q { 300 } else { 2_000 }),
            repeats: args.reap_repeats.unwrap_or(if q { 1 } else { 3 }),
        };
        let mongo_reap = if args.reap_live.is_some() {
            reap.clone()
        } else {
            ReapSizes {
                live: reap.live.iter().map(|n| n / 10).collect(),
                ..reap.clone()
            }
        };
        Ok(Self {
            stores,
            duration: Duration::from_secs_f64(secs),
            concurrency: args.concurrency.clone(),
            phases: args.phases.clone().unwrap_or_else(|| Phase::ALL.to_vec()),
            preload: args.preload.unwrap_or(if q { 1_000 } else { 10_000 }),
            create_cap: args
                .create_cap
                .unwrap_or(if q { 100_000 } else { 1_000_000 }),
            scale: !args.no_scale,
            phases_on: !args.no_phases,
            reap,
            mongo_reap,
            memory_sessions: sorted(args.memory_sessions.clone().unwrap_or_else(|| {
                if q {
                    vec![10_000, 50_000]
                } else {
                    vec![100_000, 1_000_000]
                }
            })),
            peers: args.peers,
        })
    }
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v.dedup();
    v
}

fn names(stores: &[Backend]) -> String {
    stores
        .iter()
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(",")
}

async fn run_cmd(args: RunArgs) -> Result<()> {
    let plan = Plan::new(&args)?;
    let env = Env {
        data_dir: args.data_dir.clone(),
        ..Env::from_env()
    };
    let started = session_core::Timestamp::now();
    let commit = git_commit();
    eprintln!(
        "session-bench: stores {}, {:?} per phase, C = {:?}, {} preloaded, {} core(s), commit {}",
        names(&plan.stores),
        plan.duration,
        plan.concurrency,
        plan.preload,
        cores(),
        commit.get(..10).unwrap_or(&commit),
    );
    if plan.peers {
        eprintln!(
            "session-bench: building the peers ({}, {})",
            peers::manifest().display(),
            if args.quick { "debug" } else { "release" }
        );
        let release = !args.quick;
        tokio::task::spawn_blocking(move || peers::build(release)).await??;
    }
    for i in 0..args.runs.max(1) {
        let info = RunInfo {
            run: format!("{started}/{i}"),
            commit: commit.clone(),
            cores: cores(),
            quick: args.quick,
            duration_s: plan.duration.as_secs_f64(),
            preload: plan.preload,
        };
        run_once(&plan, &env, &info, &args.out).await?;
    }
    eprintln!("session-bench: results appended to {}", args.out.display());
    Ok(())
}

async fn run_once(plan: &Plan, env: &Env, info: &RunInfo, out: &Path) -> Result<()> {
    if plan.phases_on {
        run_all_phases(plan, env, info, out).await?;
    }
    if plan.scale {
        run_scale(plan, env, info, out).await?;
    }
    Ok(())
}

async fn run_all_phases(plan: &Plan, env: &Env, info: &RunInfo, out: &Path) -> Result<()> {
    let mut phase_lines = Vec::new();
    let mut all = Vec::new();
    for &backend in &plan.stores {
        let lines = run_phases(plan, env, backend).await?;
        let wrapped: Vec<Line> = lines
            .iter()
            .map(|l| wrap(info, Measurement::Phase(l.clone())))
            .collect();
        report::append_lines(out, &wrapped)?;
        all.extend(wrapped);
        phase_lines.extend(lines);
        if plan.peers && !peers::peers_of(backend).is_empty() {
            let peer_lines = run_peers(plan, env, info, backend).await?;
            report::append_lines(out, &peer_lines)?;
            all.extend(peer_lines);
        }
    }
    println!(
        "\n## Phases (run {})\n\n{}",
        info.run,
        report::phase_table(&phase_lines)
    );
    if plan.peers {
        let refs: Vec<&Line> = all.iter().collect();
        println!(
            "## Peers (run {})\n\n{}",
            info.run,
            peers::table(&peers::rows(&refs))
        );
    }
    let codec = scale::codec(Duration::from_millis(if info.quick { 20 } else { 300 }))?;
    report::append_lines(out, &[wrap(info, Measurement::Codec(codec.clone()))])?;
    println!(
        "## Payload encoding (one core)\n\n{}",
        report::codec_table(&codec)
    );
    Ok(())
}

async fn run_scale(plan: &Plan, env: &Env, info: &RunInfo, out: &Path) -> Result<()> {
    let mut reap_lines = Vec::new();
    for &backend in &plan.stores {
        eprintln!("{backend}: delete_expired timings");
        let opened = backend
            .open_store(env)
            .await
            .map_err(|e| with_context(backend, e))?;
        let sizes = if backend == Backend::Mongo {
            &plan.mongo_reap
        } else {
            &plan.reap
        };
        let lines = scale::reap(backend.name(), &opened.store, sizes, |l| {
            eprintln!(
                "  {:>9} live {:>7} expired: {:>9.2} ms, removed {}",
                l.live, l.expired, l.ms, l.removed
            );
        })
        .await
        .map_err(|e| with_context(backend, e))?;
        let wrapped: Vec<Line> = lines
            .iter()
            .map(|l| wrap(info, Measurement::Reap(l.clone())))
            .collect();
        report::append_lines(out, &wrapped)?;
        reap_lines.extend(lines);
    }
    println!("## delete_expired\n\n{}", report::reap_table(&reap_lines));
    if plan.stores.contains(&Backend::Memory) {
        let mut all = Vec::new();
        for (label, tunables) in [("memory", None), ("memory+glibc-trim", Some(GLIBC_TRIM))] {
            eprintln!("{label}: footprint (child process)");
            let lines = memory_probe_child(plan, label, tunables)?;
            let wrapped: Vec<Line> = lines
                .iter()
                .map(|l| wrap(info, Measurement::Memory(l.clone())))
                .collect();
            report::append_lines(out, &wrapped)?;
            all.extend(lines);
        }
        println!("## Memory footprint\n\n{}", report::memory_table(&all));
    }
    Ok(())
}

/// Run the tower-sessions peers of `backend` in the peers binary, with the
/// same settings, and check that it measured what was asked.
async fn run_peers(plan: &Plan, env: &Env, info: &RunInfo, backend: Backend) -> Result<Vec<Line>> {
    let names = peers::peers_of(backend);
    eprintln!("{backend}: the peers {} (child process)", names.join(", "));
    let args = PeerRun {
        release: !info.quick,
        duration: plan.duration,
        concurrency: plan.concurrency.clone(),
        phases: plan.phases.clone(),
        preload: plan.preload,
        create_cap: plan.create_cap,
        run: info.run.clone(),
        commit: info.commit.clone(),
        quick: info.quick,
        redis_url: env.redis_url.clone(),
        data_dir: env.data_dir.clone(),
    };
    let lines = tokio::task::spawn_blocking(move || peers::run(names, &args))
        .await?
        .map_err(|e| with_context(backend, e))?;
    let measured = lines
        .iter()
        .filter(|l| matches!(&l.measurement, Measurement::Peer(p) if p.engine == backend.name()))
        .count();
    let expected = names.len() * plan.phases.len() * plan.concurrency.len();
    if measured != expected || lines.iter().any(|l| l.info.run != info.run) {
        return Err(format!(
            "{backend}: the peers printed {measured} lines of this run, expected {expected}"
        )
        .into());
    }
    Ok(lines)
}

fn wrap(info: &RunInfo, measurement: Measurement) -> Line {
    Line {
        info: info.clone(),
        measurement,
    }
}

fn with_context(backend: Backend, e: BoxError) -> BoxError {
    format!("{backend}: {e}").into()
}

/// Preload a store and its raw engine, run every phase at every
/// concurrency on both (raw first, then the store, phase by phase), clean up.
async fn run_phases(plan: &Plan, env: &Env, backend: Backend) -> Result<Vec<PhaseLine>> {
    eprintln!(
        "{backend}: opening and preloading {} sessions",
        plan.preload
    );
    let (opened, raw) = backend
        .open_with_raw(env)
        .await
        .map_err(|e| with_context(backend, e))?;
    let store: Arc<dyn Target> = Arc::new(StoreTarget::new(opened.store.clone()));
    let raw_bench = Bench::preload(raw.clone(), plan.preload, KEY_SEED).await?;
    let store_bench = Bench::preload(store.clone(), plan.preload, KEY_SEED).await?;
    let mut lines = Vec::new();
    let mut seed = 1;
    for &c in &plan.concurrency {
        for phase in Phase::run_order(&plan.phases) {
            seed += 1;
            let r = raw_bench
                .run(phase, c, plan.duration, plan.create_cap, seed)
                .await
                .map_err(|e| format!("{backend} raw, {phase} at C={c}: {e}"))?;
            let s = store_bench
                .run(phase, c, plan.duration, plan.create_cap, seed)
                .await
                .map_err(|e| format!("{backend} store, {phase} at C={c}: {e}"))?;
            let line = PhaseLine::new(backend.name(), phase, c, &s, &r);
            eprintln!(
                "  {:<6} C={:<3} store {:>11} ops/s p50 {:>7} µs p99 {:>7} µs | raw {:>11} ops/s p50 {:>7} µs | {}{}",
                phase.name(),
                c,
                report::thousands(line.ops_per_sec),
                report::micros(line.p50_us),
                report::micros(line.p99_us),
                report::thousands(line.raw_ops_per_sec),
                report::micros(line.raw_p50_us),
                report::times(line.ratio),
                if line.misses + line.raw_misses > 0 {
                    format!("  (misses: store {}, raw {})", line.misses, line.raw_misses)
                } else {
                    String::new()
                },
            );
            lines.push(line);
        }
        raw_bench.drain_pool().await?;
        store_bench.drain_pool().await?;
    }
    raw.clear().await?;
    opened.store.clear().await?;
    // Phases are listed in the standard order, whatever order they ran in.
    lines.sort_by_key(|l| (l.concurrency, l.phase));
    Ok(lines)
}

/// glibc settings under which freed memory goes back to the system promptly
/// (no per-thread cache, a fixed trim threshold): what an application that
/// wants its memory back after a mass expiry runs with. Without them glibc
/// keeps most of a freed heap mapped (see store-memory's README).
const GLIBC_TRIM: &str = "glibc.malloc.tcache_count=0:glibc.malloc.trim_threshold=131072";

/// Run the memory probe in a fresh child process (so the footprint is not
/// blurred by what the phases allocated), with `GLIBC_TUNABLES` if given,
/// and read its lines, labelled `label`.
fn memory_probe_child(
    plan: &Plan,
    label: &str,
    tunables: Option<&str>,
) -> Result<Vec<report::MemoryLine>> {
    let exe = std::env::current_exe()?;
    let sessions = plan
        .memory_sessions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut command = std::process::Command::new(exe);
    command
        .args(["memory-probe", "--label", label, "--sessions", &sessions])
        .stderr(std::process::Stdio::inherit());
    match tunables {
        Some(t) => command.env("GLIBC_TUNABLES", t),
        None => command.env_remove("GLIBC_TUNABLES"),
    };
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!("memory probe failed: {}", output.status).into());
    }
    let text = String::from_utf8(output.stdout)?;
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(BoxError::from))
        .collect::<Result<Vec<report::MemoryLine>>>()?;
    for l in &lines {
        eprintln!(
            "  {:>9} sessions: {:.1} MiB ({} B/session), after reap {:.2}× baseline",
            l.sessions,
            l.rss_kib as f64 / 1024.0,
            report::thousands(l.bytes_per_session),
            l.after_reap_ratio
        );
    }
    Ok(lines)
}

//! `--peers`: the tower-sessions stores that users pick today, run through
//! the same phases by the peers binary, and set beside our store and the raw
//! engine of the same run.
//!
//! The peers live in their own Cargo workspace (`session-bench/peers`, with
//! its own `Cargo.lock`): `tower-sessions-sqlx-store` links another
//! `libsqlite3-sys` than rusqlite, and Cargo allows one `links = "sqlite3"`
//! package per resolved workspace. Both sides run the same workload source
//! (`session-bench-workload`); the peers binary is a child process that
//! prints the same JSON lines ([`Line`] with [`Measurement::Peer`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;
use crate::backends::Backend;
use crate::phase::Phase;
use crate::render::median;
use crate::report::{self, Line, Measurement, PeerLine, PhaseLine};

/// How long building the peers binary may take before the run gives up (a
/// clean release build of sqlx, moka and fred on 2 cores takes minutes).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// The peers workspace's manifest.
#[must_use]
pub fn manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/Cargo.toml")
}

/// The peers of our store on `backend`, as the peers binary names them
/// (its `--peers` values); empty if that engine has none.
#[must_use]
pub fn peers_of(backend: Backend) -> &'static [&'static str] {
    match backend {
        Backend::Memory => &["memory-store", "moka-store"],
        Backend::Redis => &["redis-store"],
        Backend::Sqlite => &["sqlx-store"],
        _ => &[],
    }
}

/// What the peers binary runs: the same settings as our side of the run.
#[derive(Clone, Debug)]
pub struct PeerRun {
    /// Build and run the release profile (else the debug one: a smoke).
    pub release: bool,
    /// Seconds each phase runs.
    pub duration: Duration,
    /// Concurrency levels.
    pub concurrency: Vec<usize>,
    /// Phases.
    pub phases: Vec<Phase>,
    /// Sessions preloaded.
    pub preload: usize,
    /// Most keys one `create` phase may add.
    pub create_cap: usize,
    /// The run's id, commit and quickness, written into every line.
    pub run: String,
    /// The commit.
    pub commit: String,
    /// Whether this is a `--quick` run.
    pub quick: bool,
    /// Redis for `tower-sessions-redis-store`.
    pub redis_url: String,
    /// Folder for the SQLite file (a temporary folder inside it).
    pub data_dir: Option<PathBuf>,
}

fn cargo(release: bool, verb: &str) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .arg(verb)
        .arg("--locked")
        .arg("--manifest-path")
        .arg(manifest());
    if release {
        command.arg("--release");
    }
    command
}

/// Build the peers binary (if needed), waiting at most [`BUILD_TIMEOUT`].
///
/// # Errors
///
/// If cargo fails or takes too long.
pub fn build(release: bool) -> Result<()> {
    let mut command = cargo(release, "build");
    command.stdout(Stdio::null());
    wait_bounded(command, BUILD_TIMEOUT, "building the peers").map(drop)
}

/// Run `peers` (names from [`peers_of`]) through `args`'s phases in a child
/// process and return its lines. The wait is bounded by the phases' total
/// time plus a generous margin for preloading and cleaning up.
///
/// # Errors
///
/// If the child fails, takes too long, or prints a line that does not parse.
pub fn run(peers: &[&str], args: &PeerRun) -> Result<Vec<Line>> {
    let list = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(",");
    let mut command = cargo(args.release, "run");
    command
        .arg("--quiet")
        .arg("--")
        .args(["--peers", &peers.join(",")])
        .args(["--duration", &args.duration.as_secs_f64().to_string()])
        .args([
            "--concurrency",
            &list(&mut args.concurrency.iter().map(ToString::to_string)),
        ])
        .args([
            "--phases",
            &list(&mut args.phases.iter().map(|p| p.name().to_owned())),
        ])
        .args(["--preload", &args.preload.to_string()])
        .args(["--create-cap", &args.create_cap.to_string()])
        .args(["--run", &args.run, "--commit", &args.commit])
        .args(["--redis-url", &args.redis_url]);
    if args.quick {
        command.arg("--quick");
    }
    if let Some(dir) = &args.data_dir {
        command.arg("--data-dir").arg(dir);
    }
    // Each phase at each level, plus the `delete` filler; then a minute per
    // peer for opening, preloading and cleaning up, and one for cargo.
    let phases = (args.phases.len() + 1) * args.concurrency.len() * peers.len();
    let timeout = args.duration * u32::try_from(phases).unwrap_or(u32::MAX)
        + Duration::from_secs(60 * (peers.len() as u64 + 1));
    let stdout = wait_bounded(command, timeout, "the peers")?;
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Line::parse(l).map_err(|e| format!("peers printed {l:?}: {e}").into()))
        .collect()
}

/// Run `command` (stdout captured, stderr passed through), killing it after
/// `timeout`.
fn wait_bounded(mut command: Command, timeout: Duration, what: &str) -> Result<String> {
    let mut child = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: cannot start cargo: {e}"))?;
    let reader = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut text = String::new();
            out.read_to_string(&mut text).map(|_| text)
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what}: still running after {timeout:?}, stopped").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = match reader {
        Some(handle) => handle
            .join()
            .map_err(|_| format!("{what}: the output reader panicked"))??,
        None => String::new(),
    };
    if !status.success() {
        return Err(format!("{what}: {status}").into());
    }
    Ok(text)
}

/// One row of the comparison: our store on an engine, one of its peers and
/// the raw engine, for one (phase, C), in one run or as medians of runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Our backend (`memory`, `redis`, `sqlite`).
    pub engine: String,
    /// The peer's crate.
    pub peer: String,
    /// The phase.
    pub phase: Phase,
    /// Concurrent tasks.
    pub concurrency: usize,
    /// Our store, ops/s.
    pub ours: f64,
    /// Our store, p50 µs.
    pub ours_p50_us: f64,
    /// The peer, ops/s.
    pub peer_ops: f64,
    /// The peer, p50 µs.
    pub peer_p50_us: f64,
    /// The raw engine, ops/s.
    pub raw: f64,
    /// `ours / peer`.
    pub vs_peer: Option<f64>,
    /// `ours / raw`.
    pub vs_raw: Option<f64>,
    /// Misses of our store, the peer and the raw engine (should be 0).
    pub misses: u64,
    /// Runs the row summarises.
    pub runs: usize,
}

impl Row {
    fn new(ours: &PhaseLine, peer: &PeerLine) -> Self {
        Self {
            engine: ours.store.clone(),
            peer: peer.peer.clone(),
            phase: ours.phase,
            concurrency: ours.concurrency,
            ours: ours.ops_per_sec,
            ours_p50_us: ours.p50_us,
            peer_ops: peer.ops_per_sec,
            peer_p50_us: peer.p50_us,
            raw: ours.raw_ops_per_sec,
            vs_peer: report::ratio(ours.ops_per_sec, peer.ops_per_sec),
            vs_raw: ours.ratio,
            misses: ours.misses + ours.raw_misses + peer.misses,
            runs: 1,
        }
    }
}

/// Each peer line joined with our line of the same run, engine, phase and C;
/// then, per (engine, peer, phase, C), the median of each figure over the
/// runs (ratios: the median of the per-run ratios, each measured in one run).
#[must_use]
pub fn rows(lines: &[&Line]) -> Vec<Row> {
    let mut ours: BTreeMap<(&str, &str, Phase, usize), &PhaseLine> = BTreeMap::new();
    for l in lines {
        if let Measurement::Phase(p) = &l.measurement {
            ours.insert((&l.info.run, &p.store, p.phase, p.concurrency), p);
        }
    }
    let mut groups: BTreeMap<(String, String, Phase, usize), Vec<Row>> = BTreeMap::new();
    for l in lines {
        if let Measurement::Peer(peer) = &l.measurement
            && let Some(our) = ours.get(&(
                l.info.run.as_str(),
                peer.engine.as_str(),
                peer.phase,
                peer.concurrency,
            ))
        {
            let row = Row::new(our, peer);
            groups
                .entry((
                    row.engine.clone(),
                    row.peer.clone(),
                    row.phase,
                    row.concurrency,
                ))
                .or_default()
                .push(row);
        }
    }
    let order = |s: &str| {
        Backend::ALL
            .iter()
            .position(|b| b.name() == s)
            .unwrap_or(usize::MAX)
    };
    let mut out: Vec<Row> = groups
        .into_values()
        .filter_map(|g| {
            let med = |f: &dyn Fn(&Row) -> f64| {
                let mut v: Vec<f64> = g.iter().map(f).collect();
                median(&mut v).unwrap_or(f64::NAN)
            };
            let med_ratio = |f: &dyn Fn(&Row) -> Option<f64>| {
                let mut v: Vec<f64> = g.iter().filter_map(f).collect();
                median(&mut v)
            };
            Some(Row {
                ours: med(&|r| r.ours),
                ours_p50_us: med(&|r| r.ours_p50_us),
                peer_ops: med(&|r| r.peer_ops),
                peer_p50_us: med(&|r| r.peer_p50_us),
                raw: med(&|r| r.raw),
                vs_peer: med_ratio(&|r| r.vs_peer),
                vs_raw: med_ratio(&|r| r.vs_raw),
                misses: g.iter().map(|r| r.misses).sum(),
                runs: g.len(),
                ..g.first()?.clone()
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (order(&a.engine), &a.peer, a.concurrency, a.phase).cmp(&(
            order(&b.engine),
            &b.peer,
            b.concurrency,
            b.phase,
        ))
    });
    out
}

/// The Markdown table of [`rows`].
#[must_use]
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| ours | peer | phase | C | ours ops/s | peer ops/s | raw ops/s | ours ÷ peer | ours ÷ raw | ours p50 µs | peer p50 µs |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let miss = if r.misses > 0 {
            format!(" ⚠ {} misses", r.misses)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
            r.engine,
            r.peer,
            r.phase,
            r.concurrency,
            report::thousands(r.ours),
            report::thousands(r.peer_ops),
            report::thousands(r.raw),
            report::times(r.vs_peer),
            report::times(r.vs_raw),
            report::micros(r.ours_p50_us),
            report::micros(r.peer_p50_us),
            miss,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RunInfo;

    fn info(run: &str) -> RunInfo {
        RunInfo {
            run: run.into(),
            commit: "c".into(),
            cores: 2,
            quick: false,
            duration_s: 3.0,
            preload: 10_000,
        }
    }

    fn ours(run: &str, ops: f64, raw: f64) -> Line {
        Line {
            info: info(run),
            measurement: Measurement::Phase(PhaseLine {
                store: "memory".into(),
                phase: Phase::Load,
                concurrency: 64,
                ops_per_sec: ops,
                p50_us: 1.0,
                p99_us: 2.0,
                misses: 0,
                raw_ops_per_sec: raw,
                raw_p50_us: 1.0,
                raw_p99_us: 2.0,
                raw_misses: 0,
                ratio: report::ratio(ops, raw),
            }),
        }
    }

    fn peer(run: &str, engine: &str, ops: f64) -> Line {
        Line {
            info: info(run),
            measurement: Measurement::Peer(PeerLine {
                peer: "tower-sessions-moka-store".into(),
                engine: engine.into(),
                phase: Phase::Load,
                concurrency: 64,
                ops_per_sec: ops,
                p50_us: 3.0,
                p99_us: 9.0,
                misses: 0,
            }),
        }
    }

    #[test]
    fn peers_are_joined_within_a_run_and_ratios_are_medians_of_runs() {
        let lines = [
            ours("a", 200.0, 400.0),
            peer("a", "memory", 100.0),
            ours("b", 300.0, 300.0),
            peer("b", "memory", 100.0),
            ours("c", 100.0, 400.0),
            peer("c", "memory", 100.0),
            // Another engine, and a run without our line: never joined.
            peer("a", "redis", 50.0),
            peer("d", "memory", 1.0),
        ];
        let refs: Vec<&Line> = lines.iter().collect();
        let rows = rows(&refs);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.runs, r.engine.as_str()), (3, "memory"));
        assert_eq!(r.vs_peer, Some(2.0));
        assert_eq!(r.vs_raw, Some(0.5));
        assert_eq!((r.ours, r.peer_ops, r.raw), (200.0, 100.0, 400.0));
        let text = table(&rows);
        assert!(text.contains(
            "| memory | tower-sessions-moka-store | load | 64 | 200 | 100 | 400 | 2.00× | 0.50× |"
        ));
    }

    #[test]
    fn every_peer_engine_is_a_backend_of_ours() {
        assert_eq!(peers_of(Backend::Memory).len(), 2);
        assert!(!peers_of(Backend::Redis).is_empty());
        assert!(!peers_of(Backend::Sqlite).is_empty());
        assert!(peers_of(Backend::Sled).is_empty());
        assert!(manifest().ends_with("session-bench/peers/Cargo.toml"));
    }
}

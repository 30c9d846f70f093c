//! Results: one JSON object per line, and the Markdown tables printed on
//! stdout.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::phase::{Phase, PhaseStats};

/// What every line carries about the run that produced it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Identifies one run (all lines of one run share it).
    pub run: String,
    /// `git rev-parse HEAD` of the benchmarked tree, or `"unknown"`.
    pub commit: String,
    /// `std::thread::available_parallelism()`.
    pub cores: usize,
    /// Whether this was a `--quick` run (not comparable; `render` skips it).
    pub quick: bool,
    /// Seconds each phase ran for.
    pub duration_s: f64,
    /// Sessions preloaded before the phases.
    pub preload: usize,
}

/// One (store, phase, C) measurement with its raw-engine baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseLine {
    /// Backend name (`memory`, `sqlite`, `redis`...).
    pub store: String,
    /// The phase.
    pub phase: Phase,
    /// Concurrent tasks.
    pub concurrency: usize,
    /// Store: operations per second.
    pub ops_per_sec: f64,
    /// Store: median latency, µs.
    pub p50_us: f64,
    /// Store: 99th percentile latency, µs.
    pub p99_us: f64,
    /// Store: operations that missed (should be 0).
    pub misses: u64,
    /// Raw engine: operations per second.
    pub raw_ops_per_sec: f64,
    /// Raw engine: median latency, µs.
    pub raw_p50_us: f64,
    /// Raw engine: 99th percentile latency, µs.
    pub raw_p99_us: f64,
    /// Raw engine: operations that missed (should be 0).
    pub raw_misses: u64,
    /// `ops_per_sec / raw_ops_per_sec`, if the raw engine did anything.
    pub ratio: Option<f64>,
}

impl PhaseLine {
    /// The line for `store` measured next to `raw`.
    #[must_use]
    pub fn new(
        name: &str,
        phase: Phase,
        concurrency: usize,
        store: &PhaseStats,
        raw: &PhaseStats,
    ) -> Self {
        Self {
            store: name.to_owned(),
            phase,
            concurrency,
            ops_per_sec: round(store.ops_per_sec(), 1),
            p50_us: round(store.p50_us(), 2),
            p99_us: round(store.p99_us(), 2),
            misses: store.misses,
            raw_ops_per_sec: round(raw.ops_per_sec(), 1),
            raw_p50_us: round(raw.p50_us(), 2),
            raw_p99_us: round(raw.p99_us(), 2),
            raw_misses: raw.misses,
            ratio: ratio(store.ops_per_sec(), raw.ops_per_sec()).map(|r| round(r, 3)),
        }
    }
}

/// One (peer, phase, C) measurement: a tower-sessions store run through the
/// same phases by the peers binary (`session-bench/peers`), to be set beside
/// the [`PhaseLine`] of our store on the same engine in the same run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerLine {
    /// The peer's crate (`tower-sessions-moka-store`...).
    pub peer: String,
    /// The engine, named as our backend on it is (`memory`, `redis`,
    /// `sqlite`): the [`PhaseLine::store`] it is compared with.
    pub engine: String,
    /// The phase.
    pub phase: Phase,
    /// Concurrent tasks.
    pub concurrency: usize,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Operations that missed (should be 0).
    pub misses: u64,
}

impl PeerLine {
    /// The line for `peer` on `engine`.
    #[must_use]
    pub fn new(
        peer: &str,
        engine: &str,
        phase: Phase,
        concurrency: usize,
        stats: &PhaseStats,
    ) -> Self {
        Self {
            peer: peer.to_owned(),
            engine: engine.to_owned(),
            phase,
            concurrency,
            ops_per_sec: round(stats.ops_per_sec(), 1),
            p50_us: round(stats.p50_us(), 2),
            p99_us: round(stats.p99_us(), 2),
            misses: stats.misses,
        }
    }
}

/// One timed `delete_expired` with `live` live and `expired` expired records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReapLine {
    /// Backend name.
    pub store: String,
    /// Live sessions in the store.
    pub live: u64,
    /// Expired sessions in the store before the call.
    pub expired: u64,
    /// What `delete_expired` returned.
    pub removed: u64,
    /// How long the call took, ms.
    pub ms: f64,
}

/// The memory store's footprint at one size, measured in a fresh process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryLine {
    /// Backend name (`memory`, or `memory-raw` for the plain map).
    pub store: String,
    /// Sessions held.
    pub sessions: u64,
    /// Resident set before the first session was stored, KiB.
    pub baseline_kib: u64,
    /// Resident set holding `sessions`, KiB.
    pub rss_kib: u64,
    /// Peak resident set so far (VmHWM), KiB.
    pub peak_kib: u64,
    /// `(rss - baseline) / sessions`.
    pub bytes_per_session: f64,
    /// Resident set after every session expired and was reaped, KiB (the
    /// same value on every line of one probe).
    pub after_reap_kib: u64,
    /// `after_reap / baseline`.
    pub after_reap_ratio: f64,
}

/// What encoding and decoding the standard payload costs on one core: the
/// work a store does on every load or write that its raw engine, moving
/// bytes, does not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodecLine {
    /// Bytes of the data JSON.
    pub data_bytes: u64,
    /// `Record::encode_data`, ns per call.
    pub encode_data_ns: f64,
    /// `Record::decode_data`, ns per call: the check a `load` makes of
    /// stored data, which keeps the text and builds no map.
    pub decode_data_ns: f64,
    /// `Record::decode_data` and the first read of a field, which builds
    /// the map: what the data costs a request that reads it. Absent from
    /// lines written before `load` left the map to the first read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_read_ns: Option<f64>,
    /// `Record::clone`, ns per call.
    pub clone_record_ns: f64,
}

/// The measurement a line holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Measurement {
    /// A timed phase.
    Phase(PhaseLine),
    /// A timed `delete_expired`.
    Reap(ReapLine),
    /// The memory footprint.
    Memory(MemoryLine),
    /// The cost of the payload's JSON encoding.
    Codec(CodecLine),
    /// A timed phase of a tower-sessions peer.
    Peer(PeerLine),
}

/// One line of the results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// The run.
    #[serde(flatten)]
    pub info: RunInfo,
    /// What was measured.
    #[serde(flatten)]
    pub measurement: Measurement,
}

impl Line {
    /// Parse one line of a results file.
    ///
    /// # Errors
    ///
    /// If the text is not such a line.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(serde_json::from_str(text)?)
    }

    /// The line as one line of JSON (no trailing newline).
    ///
    /// # Errors
    ///
    /// If serialization fails (it does not for these types).
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }
}

/// Read every line of a results file (blank lines are skipped).
///
/// # Errors
///
/// If the file cannot be read or a line does not parse (naming the line).
pub fn read_lines(path: &Path) -> Result<Vec<Line>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            Line::parse(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1).into())
        })
        .collect()
}

/// Append `lines` to the results file at `path`, creating it (and its
/// folder) if needed.
///
/// # Errors
///
/// If the file cannot be written.
pub fn append_lines<T: Serialize>(path: &Path, lines: &[T]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut text = String::new();
    for line in lines {
        text.push_str(&serde_json::to_string(line)?);
        text.push('\n');
    }
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// `store / raw`, or `None` if the raw figure is not positive.
#[must_use]
pub fn ratio(store: f64, raw: f64) -> Option<f64> {
    (raw > 0.0 && store.is_finite() && raw.is_finite()).then(|| store / raw)
}

/// `x` rounded to `digits` decimals.
#[must_use]
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// `x` with thousands separators and no decimals (`1234567.8` → `1,234,568`).
#[must_use]
pub fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A latency in µs, with fewer decimals as it grows.
#[must_use]
pub fn micros(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        thousands(x)
    }
}

/// A duration in ms: three decimals below 1 ms, two below 100 ms, then none.
#[must_use]
pub fn millis(x: f64) -> String {
    if x < 1.0 {
        format!("{x:.3}")
    } else if x < 100.0 {
        format!("{x:.2}")
    } else {
        thousands(x)
    }
}

/// A ratio as `0.93×`, or `–`.
#[must_use]
pub fn times(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"))
}

/// The Markdown table of phase results.
#[must_use]
pub fn phase_table(lines: &[PhaseLine]) -> String {
    let mut out = String::from(
        "| store | phase | C | ops/s | p50 µs | p99 µs | raw ops/s | raw p50 µs | raw p99 µs | store/raw |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for l in lines {
        let miss = if l.misses + l.raw_misses > 0 {
            format!(" ⚠ {} / {} misses", l.misses, l.raw_misses)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
            l.store,
            l.phase,
            l.concurrency,
            thousands(l.ops_per_sec),
            micros(l.p50_us),
            micros(l.p99_us),
            thousands(l.raw_ops_per_sec),
            micros(l.raw_p50_us),
            micros(l.raw_p99_us),
            times(l.ratio),
            miss,
        );
    }
    out
}

/// The Markdown table of `delete_expired` timings.
#[must_use]
pub fn reap_table(lines: &[ReapLine]) -> String {
    let mut out = String::from(
        "| store | live | expired | removed | delete_expired ms |\n|---|---:|---:|---:|---:|\n",
    );
    for l in lines {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            l.store,
            thousands(l.live as f64),
            thousands(l.expired as f64),
            thousands(l.removed as f64),
            millis(l.ms)
        );
    }
    out
}

/// The share of the growth from the baseline to the largest resident set
/// `peak_kib` that was given back after reaping (1.0: all of it).
#[must_use]
pub fn returned(l: &MemoryLine, peak_kib: u64) -> Option<f64> {
    let grown = peak_kib.checked_sub(l.baseline_kib).filter(|g| *g > 0)?;
    let kept = l.after_reap_kib.saturating_sub(l.baseline_kib);
    Some(1.0 - kept as f64 / grown as f64)
}

/// The Markdown table of memory footprints.
#[must_use]
pub fn memory_table(lines: &[MemoryLine]) -> String {
    let mut out = String::from(
        "| store | sessions | baseline RSS MiB | RSS MiB | peak RSS MiB | bytes/session | RSS after reap MiB | after reap / baseline | growth returned after reap |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for l in lines {
        // The growth is measured up to the largest size of the same probe.
        let peak = lines
            .iter()
            .filter(|m| m.store == l.store && m.after_reap_kib == l.after_reap_kib)
            .map(|m| m.rss_kib)
            .max()
            .unwrap_or(l.rss_kib);
        let mib = |k: u64| k as f64 / 1024.0;
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.2} | {} |",
            l.store,
            thousands(l.sessions as f64),
            mib(l.baseline_kib),
            mib(l.rss_kib),
            mib(l.peak_kib),
            thousands(l.bytes_per_session),
            mib(l.after_reap_kib),
            l.after_reap_ratio,
            returned(l, peak).map_or_else(|| "–".to_owned(), |r| format!("{:.1}%", r * 100.0)),
        );
    }
    out
}

/// The Markdown table of the payload's encoding costs.
#[must_use]
pub fn codec_table(c: &CodecLine) -> String {
    format!(
        "| data bytes | `encode_data` of changed data ns | `decode_data` (check, on every `load`) ns | `decode_data` + first read ns | `Record::clone` ns |\n\
         |---:|---:|---:|---:|---:|\n\
         | {} | {:.0} | {:.0} | {} | {:.0} |\n",
        c.data_bytes,
        c.encode_data_ns,
        c.decode_data_ns,
        c.decode_read_ns
            .map_or_else(|| "–".to_owned(), |ns| format!("{ns:.0}")),
        c.clone_record_ns
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo {
            run: "r1".into(),
            commit: "abc".into(),
            cores: 2,
            quick: false,
            duration_s: 3.0,
            preload: 10_000,
        }
    }

    #[test]
    fn ratio_is_store_over_raw_and_undefined_without_raw() {
        assert_eq!(ratio(80.0, 100.0), Some(0.8));
        assert_eq!(ratio(5.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        assert_eq!(round(0.123_456, 3), 0.123);
    }

    #[test]
    fn json_lines_round_trip_and_carry_the_run() {
        let line = Line {
            info: info(),
            measurement: Measurement::Phase(PhaseLine {
                store: "memory".into(),
                phase: Phase::Touch,
                concurrency: 64,
                ops_per_sec: 1e6,
                p50_us: 1.5,
                p99_us: 9.0,
                misses: 0,
                raw_ops_per_sec: 2e6,
                raw_p50_us: 0.5,
                raw_p99_us: 3.0,
                raw_misses: 0,
                ratio: Some(0.5),
            }),
        };
        let text = line.to_json().unwrap();
        assert!(!text.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["kind"], "phase");
        assert_eq!(value["phase"], "touch");
        assert_eq!(value["cores"], 2);
        assert_eq!(value["commit"], "abc");
        assert_eq!(value["ratio"], 0.5);
        assert_eq!(Line::parse(&text).unwrap(), line);

        let reap = Line {
            info: info(),
            measurement: Measurement::Reap(ReapLine {
                store: "sqlite".into(),
                live: 200_000,
                expired: 2_000,
                removed: 2_000,
                ms: 3.5,
            }),
        };
        assert_eq!(Line::parse(&reap.to_json().unwrap()).unwrap(), reap);

        let peer = Line {
            info: info(),
            measurement: Measurement::Peer(PeerLine {
                peer: "tower-sessions-moka-store".into(),
                engine: "memory".into(),
                phase: Phase::Mixed,
                concurrency: 1,
                ops_per_sec: 5e5,
                p50_us: 2.0,
                p99_us: 8.0,
                misses: 0,
            }),
        };
        let text = peer.to_json().unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["kind"], "peer");
        assert_eq!(value["engine"], "memory");
        assert_eq!(Line::parse(&text).unwrap(), peer);
        assert!(Line::parse("{\"kind\":\"nope\"}").is_err());
    }

    #[test]
    fn numbers_are_formatted_for_tables() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(micros(1.234), "1.23");
        assert_eq!(micros(1234.0), "1,234");
        assert_eq!(times(Some(0.876)), "0.88×");
        assert_eq!(times(None), "–");
    }
}

//! The standard session-store workload (`BENCH.md`): every store next to the
//! raw engine it runs on.
//!
//! A [`Target`] is anything that can do the workload's operations: a
//! [`SessionStore`](session_core::SessionStore) through [`StoreTarget`], or a
//! raw baseline doing the same work directly on the engine (a sharded
//! `HashMap`, plain rusqlite statements, plain sled calls, the same Redis
//! connection's `GET`/`SET PX`/`PEXPIRE`/`DEL`, the MongoDB driver, the same
//! tokio-postgres statements). A
//! [`Bench`] preloads a target and runs each [`Phase`] for a fixed time with
//! C tokio tasks; each store's throughput is reported as a ratio of its raw
//! engine's, measured in the same run.
//!
//! The binary (`cargo run -p session-bench --release -- --help`) runs it and
//! writes JSON lines ([`report::Line`]); `session-bench render` turns the
//! lines of several runs into the tables of `BENCHMARKS.md` (medians).

pub mod backends;
#[cfg(feature = "http")]
pub mod http;
pub mod peers;
pub mod raw;
pub mod render;
pub mod scale;
pub mod target;

// The workload and its measurement are one source with the peers binary.
pub use session_bench_workload::{payload, phase, report};

pub use crate::backends::{Backend, Env, Opened};
pub use crate::phase::{Bench, Phase, PhaseStats};
pub use crate::target::{StoreTarget, Target};

pub use session_bench_workload::{BoxError, Result};

//! The standard session workload (`BENCH.md`) and its measurement: the
//! payload and keys, the [`Target`] trait, the phase runner with its HDR
//! histograms, and the JSON-line record format.
//!
//! It is one source for both sides of the comparison: `session-bench` (our
//! stores and the raw engines) and the separate peers workspace
//! (`session-bench/peers`: the tower-sessions stores), which cannot share a
//! Cargo workspace with us because its SQLite driver links another
//! `libsqlite3-sys`. This crate therefore depends on no storage engine.

pub mod payload;
pub mod phase;
pub mod report;
pub mod target;

pub use crate::phase::{Bench, Phase, PhaseStats};
pub use crate::target::Target;

/// Any error, with its source chain kept.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The workload's result type.
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

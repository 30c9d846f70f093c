//! The store under the tests: [`session_conformance::probe::Probe`] (calls
//! counted, faults on demand) around a small correct store.
//!
//! The store is `SessionStore`'s "implementing a store" doc example
//! (`tiny_store.rs`, included there and in the crate's other doc examples),
//! so session-core needs no store crate, not even as a dev-dependency.
#![allow(
    dead_code,
    unreachable_pub,
    unused_imports,
    reason = "shared by several test crates"
)]

mod tiny_store;
pub use session_conformance::probe::{Op, Probe, Trouble};
pub use tiny_store::TinyStore;

/// The tiny store behind a probe.
pub type Faulty = Probe<TinyStore>;

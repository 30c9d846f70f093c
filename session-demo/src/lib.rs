//! The README's main job: an axum server whose visitors get server-side
//! sessions on any store of this workspace, chosen by URL.
//!
//! `cargo run -p session-demo` serves the page on <http://127.0.0.1:3000>
//! with an embedded SQLite file in `.session-demo/`, so sessions survive a
//! restart; `--help` lists the rest. The library half is what the binary,
//! its tests and the benchmark share.

pub mod app;
pub mod keys;
/// The store URL scheme (`--store`), from `session-url`.
pub mod store {
    pub use session_url::*;
}

pub use app::{Info, counter, router};
pub use store::{Opened, StoreUrl};

//! Server-side sessions for Rust: the core.
//!
//! This crate holds what every backend shares:
//!
//! - [`SessionId`], the 192-bit secret that travels in the cookie, and
//!   [`SessionKey`], its SHA-256 hash, which is all a store ever sees;
//! - [`Record`], what is stored: JSON data, `created_at`, `expires_at`
//!   (millisecond [`Timestamp`]s) and a store-maintained `version`;
//! - the async [`SessionStore`] trait, with its contract spelled out per
//!   method and proven for each backend by the `session-conformance` suite;
//! - [`Error`], one typed error for every store;
//! - for store authors: [`header`], the binary header of times and version
//!   that byte-oriented stores (sled, files) put before the data, and
//!   [`sql`], what SQL stores share (name checks, the layout-version
//!   decision, a record's columns);
//! - [`Reaper`], a periodic `delete_expired` task for any store;
//! - [`SessionManager`] and [`Session`], the framework-agnostic per-request
//!   handle that decides whether to create, update (versioned, merging with
//!   concurrent writers), touch, destroy or cycle a session.
//!
//! ```
//! # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/tiny_store.rs"));
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> session_core::Result<()> {
//! use std::sync::Arc;
//! use session_core::{SessionConfig, SessionManager, Written};
//! // Any SessionStore: session_store_memory::MemoryStore, a Redis store, ...
//! let store = Arc::new(TinyStore::default());
//! let manager = SessionManager::new(store, SessionConfig::new())?;
//! let mut session = manager.load(None).await?; // no cookie yet
//! session.insert("user", "ada")?;
//! assert_eq!(session.commit().await?.written, Written::Created);
//! # Ok(())
//! # }
//! ```
//!
//! # Expiry
//!
//! A record is live while `now < expires_at`. Stores that compare in process
//! use this process's clock; stores that delegate expiry to a server (Redis)
//! use the server's clock, and say so. No store ever returns, counts, touches
//! or updates an expired record, whatever the state of its reaping.

mod blocking;
mod data;
mod error;
pub mod header;
mod id;
mod list;
mod principal;
mod reaper;
mod record;
mod session;
pub mod sql;
mod store;
mod time;

pub use crate::blocking::run_blocking;
pub use crate::data::{Data, EncodedData};
pub use crate::error::{BoxError, Error, Result, redact_url, report, scrub_password};
pub use crate::id::{SessionId, SessionKey};
pub use crate::list::{ALL_PAGE, Cursor, Page};
pub use crate::principal::{Principal, PrincipalIndex};
pub use crate::reaper::{Reaper, ReaperConfig};
pub use crate::record::Record;
pub use crate::session::{
    Commit, CookieAction, DEFAULT_MAX_DATA_BYTES, DEVICE_FIELD, Session, SessionConfig,
    SessionInfo, SessionManager, Written,
};
pub use crate::store::{SessionStore, SessionStoreExt, UpdateOutcome};
pub use crate::time::Timestamp;

/// Re-exported so that store implementations use the same `async_trait`.
pub use async_trait::async_trait;

//! The per-request session handle and its lifecycle policy.
//!
//! Framework-agnostic: a middleware calls [`SessionManager::load`] with the
//! cookie value it received, hands the [`Session`] to the request handler,
//! then calls [`Session::commit`] and applies the returned [`CookieAction`].

mod commit;
mod config;
mod device;
mod handle;
mod manager;

pub use commit::{Commit, CookieAction, Written};
pub use config::{DEFAULT_MAX_DATA_BYTES, SessionConfig};
pub use device::{DEVICE_FIELD, SessionInfo};
pub use handle::Session;
use handle::{Changes, Pending, State};
pub use manager::SessionManager;

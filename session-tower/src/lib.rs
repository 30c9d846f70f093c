#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod cookie;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod handle;
mod jar;
mod keys;
mod sealed;
mod service;
mod traced;

pub use crate::config::{DEFAULT_COOKIE_NAME, SessionLayerBuilder, StoreUnavailable};
pub use crate::error::{ConfigError, SessionError};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use crate::extract::MissingSessionLayer;
pub use crate::handle::Session;
pub use crate::keys::MIN_KEY_BYTES;
pub use crate::sealed::{CookieTooLarge, MAX_COOKIE_BYTES};
pub use crate::service::{ResponseFuture, SessionLayer, SessionService};

/// The `SameSite` values, from the `cookie` crate.
pub use ::cookie::SameSite;
/// The core crate, for [`SessionConfig`](session_core::SessionConfig) and
/// the stores' trait.
pub use session_core;

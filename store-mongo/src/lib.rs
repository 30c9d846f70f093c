#![doc = include_str!("../README.md")]

mod builder;
mod store;

pub use crate::builder::{
    DEFAULT_BULK_TIMEOUT, DEFAULT_DATABASE, DEFAULT_NAMESPACE, DEFAULT_OPERATION_TIMEOUT,
    DEFAULT_SERVER_SELECTION_TIMEOUT, MongoStoreBuilder, PRINCIPAL_INDEX_NAME, TTL_INDEX_NAME,
    durable_write_concern,
};
pub use crate::store::MongoStore;

/// The driver this store runs on, re-exported so that a client built by
/// hand uses the same version.
pub use mongodb;

/// The backend name in [`session_core::Error`]s from this crate.
pub const BACKEND: &str = "mongodb";

/// Field names of a stored session document.
pub mod fields {
    /// The session key (64 hex digits): the document's `_id`.
    pub const ID: &str = "_id";
    /// The session data as JSON text (BSON cannot hold every JSON number,
    /// e.g. `u64::MAX`, so the text is what round-trips exactly).
    pub const DATA: &str = "data";
    /// `created_at`, a BSON date (millisecond precision, as the record).
    pub const CREATED_AT: &str = "created_at";
    /// `expires_at`, a BSON date, covered by the TTL index.
    pub const EXPIRES_AT: &str = "expires_at";
    /// The version, the bits of the `u64` stored as an Int64.
    pub const VERSION: &str = "version";
    /// The principal (a string), absent when the session has none (a
    /// document written before principals existed has none either).
    pub const PRINCIPAL: &str = "principal";
}

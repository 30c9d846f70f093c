//! The one error type every store and the session handle return.

use std::error::Error as StdError;

/// A boxed error from a driver or codec, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a store or a session.
///
/// Variants are semantic; the driver's own error is kept as the `source`, so
/// the chain is never flattened to a string.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cookie value is not a session ID this library could have generated.
    /// The input itself is not echoed: it may be someone's secret.
    #[error("invalid session id: {reason}")]
    InvalidSessionId {
        /// What was wrong with it.
        reason: &'static str,
    },

    /// A stored key is not the text form of a [`SessionKey`](crate::SessionKey).
    #[error("invalid session key {key:?}: {reason}")]
    InvalidKey {
        /// The offending text.
        key: String,
        /// What was wrong with it.
        reason: &'static str,
    },

    /// A stored record could not be decoded. Never a panic, never a silent
    /// `None`: the store is corrupt or was written by something else.
    #[error("stored session {key} cannot be decoded")]
    Decode {
        /// The key (text form) whose record is broken.
        key: String,
        /// Why decoding failed.
        #[source]
        source: BoxError,
    },

    /// A record could not be encoded for storage.
    #[error("session record cannot be encoded")]
    Encode {
        /// Why encoding failed.
        #[source]
        source: BoxError,
    },

    /// A value put into or read out of a session does not (de)serialize as
    /// the requested type.
    #[error("session value {field:?} does not (de)serialize as requested")]
    Value {
        /// The top-level key of the session data.
        field: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A value put into a session nests deeper than
    /// [`Data::MAX_DEPTH`](crate::Data::MAX_DEPTH) allows: refused before it
    /// was built, copied or stored, so no recursion ever runs on it.
    #[error("session value {field:?} nests deeper than {max_depth} levels")]
    TooDeep {
        /// The top-level key of the session data.
        field: String,
        /// The deepest nesting a value under a field may have.
        max_depth: usize,
    },

    /// The session's data, encoded, is larger than the configured maximum
    /// ([`SessionConfig::with_max_data_bytes`](crate::SessionConfig::with_max_data_bytes)):
    /// nothing was written.
    #[error("session data is {bytes} bytes, over the limit of {max_bytes} bytes")]
    TooLarge {
        /// The size of the encoded data.
        bytes: usize,
        /// The configured maximum.
        max_bytes: usize,
    },

    /// A store was configured wrongly. Reported when the store is built,
    /// never on first use.
    #[error("invalid {backend} store configuration: {reason}")]
    Config {
        /// Which backend (e.g. `"sqlite"`).
        backend: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// A store call did not finish within the store's operation deadline
    /// (a stalled, unreachable or overloaded server): it was abandoned.
    /// A write that timed out may or may not have been applied.
    #[error("{backend} store: {operation} did not finish within {after:?}")]
    Timeout {
        /// Which backend (e.g. `"redis"`).
        backend: &'static str,
        /// The store method (`"load"`, `"update"`, ...).
        operation: &'static str,
        /// The deadline that passed.
        after: std::time::Duration,
    },

    /// A cursor given to [`SessionStore::list`](crate::SessionStore::list)
    /// is not one this store hands out (damaged, or from another backend).
    #[error("{backend} store: invalid listing cursor: {reason}")]
    InvalidCursor {
        /// Which backend (e.g. `"redis"`).
        backend: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A principal (the user a session belongs to) is not one a store can
    /// index: see [`Principal::new`](crate::Principal::new).
    #[error("invalid principal: {reason}")]
    InvalidPrincipal {
        /// What is wrong with it (the name itself is not echoed).
        reason: &'static str,
    },

    /// The operation needs a store that keeps a
    /// [`PrincipalIndex`](crate::PrincipalIndex), and this manager's store
    /// does not (see [`SessionManager::with_index`](crate::SessionManager::with_index)).
    #[error("{operation} needs a store with a principal index")]
    NoPrincipalIndex {
        /// What was asked (`"sessions_of"`, ...).
        operation: &'static str,
    },

    /// The backend failed (I/O, connection, server error, ...).
    #[error("{backend} store failed")]
    Backend {
        /// Which backend (e.g. `"redis"`).
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },

    /// The operating system could not provide randomness for a session ID.
    #[error("no randomness available for a session id: {reason}")]
    Random {
        /// The operating system's error.
        reason: String,
    },

    /// Freshly generated session IDs collided with live sessions several
    /// times in a row: the store keeps answering `false` to `create`, which
    /// a working store and a CSPRNG never do.
    #[error("session id collided {attempts} times in a row")]
    IdCollision {
        /// How many IDs were tried.
        attempts: u32,
    },

    /// Versioned updates kept conflicting with concurrent writers after the
    /// configured number of retries.
    #[error("session update still conflicting after {attempts} attempts")]
    Contention {
        /// How many updates were tried.
        attempts: u32,
    },
}

impl Error {
    /// Wrap a driver error as [`Error::Backend`].
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            backend,
            source: source.into(),
        }
    }

    /// An [`Error::InvalidCursor`] of `backend`.
    #[must_use]
    pub fn invalid_cursor(backend: &'static str, reason: &'static str) -> Self {
        Self::InvalidCursor { backend, reason }
    }

    /// Wrap a decoding failure of the record stored under `key`.
    pub fn decode(key: &crate::SessionKey, source: impl Into<BoxError>) -> Self {
        Self::Decode {
            key: key.as_str().to_owned(),
            source: source.into(),
        }
    }

    /// Run `future` (the store call `operation`) within `deadline`, or
    /// fail with [`Error::Timeout`]: one bound on a whole call, connecting
    /// and retrying included.
    ///
    /// # Errors
    ///
    /// The call's own error, or [`Error::Timeout`].
    pub async fn within<T>(
        backend: &'static str,
        operation: &'static str,
        deadline: std::time::Duration,
        future: impl std::future::Future<Output = crate::Result<T>>,
    ) -> crate::Result<T> {
        tokio::time::timeout(deadline, future)
            .await
            .unwrap_or(Err(Self::Timeout {
                backend,
                operation,
                after: deadline,
            }))
    }

    /// A configuration error, reported when a store is built.
    pub fn config(backend: &'static str, reason: impl Into<String>) -> Self {
        Self::Config {
            backend,
            reason: reason.into(),
        }
    }
}

/// `message` with the password of `url` (the `password` of
/// `scheme://user:password@host…`, as written in the URL) replaced by `***`,
/// so that an error or log line about a server never carries its
/// credentials. Server stores pass driver errors about a URL through it.
///
/// ```
/// let url = "mysql://ada:s3cr%40t@db.example:3306/app";
/// let shown = session_core::scrub_password("cannot parse s3cr%40t", url);
/// assert_eq!(shown, "cannot parse ***");
/// assert_eq!(session_core::scrub_password("fine", "mysql://ada@db.example/"), "fine");
/// ```
#[must_use]
pub fn scrub_password(message: &str, url: &str) -> String {
    match url_password(url) {
        Some(secret) if !secret.is_empty() => message.replace(secret, "***"),
        _ => message.to_owned(),
    }
}

/// `url` with its user information hidden, for logs and messages:
/// `scheme://user:secret@host/db` → `scheme://***@host/db`.
///
/// ```
/// assert_eq!(
///     session_core::redact_url("postgres://ada:hunter2@h/db"),
///     "postgres://***@h/db"
/// );
/// assert_eq!(session_core::redact_url("redis://h:6379/0"), "redis://h:6379/0");
/// ```
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// The password part of `scheme://user:password@host...`, if any.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.rsplit_once('@')?.0;
    Some(userinfo.split_once(':')?.1)
}

/// `error` and its causes on one line, `error: cause: cause`, for logs and
/// messages. A cause whose text is already in what came before is left
/// out: many errors repeat their source in their own message.
///
/// ```
/// let io = std::io::Error::other("connection refused");
/// let error = session_core::Error::backend("redis", io);
/// assert_eq!(session_core::report(&error), "redis store failed: connection refused");
/// ```
#[must_use]
pub fn report(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn within_bounds_a_call_and_names_it() {
        let stalled = std::future::pending::<crate::Result<u8>>();
        let err = Error::within("redis", "load", Duration::from_secs(2), stalled)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Timeout { backend: "redis", operation: "load", after } if after == Duration::from_secs(2)),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "redis store: load did not finish within 2s"
        );
        let quick = async { Ok(7) };
        assert_eq!(
            Error::within("redis", "load", Duration::from_secs(2), quick)
                .await
                .unwrap(),
            7
        );
    }
}

//! The layer's errors: building it, and using a session in a handler.

use std::sync::Arc;

/// A [`SessionLayer`](crate::SessionLayer) setting is wrong; reported by
/// [`build`](crate::SessionLayerBuilder::build), never on a request.
#[derive(Debug, thiserror::Error)]
#[error("invalid session layer configuration: {reason}")]
pub struct ConfigError {
    reason: String,
    #[source]
    source: Option<session_core::Error>,
}

impl ConfigError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            source: None,
        }
    }

    pub(crate) fn session(source: session_core::Error) -> Self {
        Self {
            reason: "the session policy is inconsistent".to_owned(),
            source: Some(source),
        }
    }

    /// What is wrong.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Using the session in a handler failed.
///
/// With the `axum` feature this is an `IntoResponse`: `503` when the store
/// is unavailable, `500` otherwise. Whatever the handler answers, a
/// request whose session could not be loaded is answered with the layer's
/// failure status (unless it runs in
/// [`StoreUnavailable::ContinueWithoutSession`](crate::StoreUnavailable)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed to load the session (already logged by the layer).
    #[error("the session store is unavailable")]
    Unavailable {
        /// The store's error.
        #[source]
        source: Arc<session_core::Error>,
    },
    /// A value did not (de)serialize as requested, or is over a limit
    /// (nested too deep).
    #[error(transparent)]
    Value(session_core::Error),
    /// The response was already produced and the session committed with
    /// it; later changes would be lost, so they are refused.
    #[error("the session was already committed with its response")]
    Committed,
    /// A call about the user's other sessions on a layer whose store keeps
    /// no principal index (build it with
    /// [`SessionLayer::indexed_builder`](crate::SessionLayer::indexed_builder)).
    #[error("the session store keeps no principal index")]
    NotIndexed,
}

impl SessionError {
    /// The error of a principal-index call.
    pub(crate) fn of_index(error: session_core::Error) -> Self {
        match error {
            session_core::Error::NoPrincipalIndex { .. } => Self::NotIndexed,
            error => Self::Unavailable {
                source: Arc::new(error),
            },
        }
    }

    /// Whether the store is at fault (rather than the handler).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

//! The axum extractor, and responses for session errors.

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::{Session, SessionError};

/// The request has no session: the handler is not behind a
/// [`SessionLayer`](crate::SessionLayer). A wiring mistake, answered with
/// `500` and logged.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("no session layer: add session_tower::SessionLayer around this route")]
pub struct MissingSessionLayer;

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, "session layer missing").into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(MissingSessionLayer)
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        let status = if self.is_unavailable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            tracing::error!(error = %self, "session error");
            StatusCode::INTERNAL_SERVER_ERROR
        };
        (
            status,
            [(http::header::CACHE_CONTROL, "no-store")],
            status.canonical_reason().unwrap_or(""),
        )
            .into_response()
    }
}

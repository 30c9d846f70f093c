//! The tower layer and service: verify what the request presents, hand the
//! handler a lazy session, commit it with the response.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{CACHE_CONTROL, EXPIRES, HeaderValue, SET_COOKIE};
use http::{HeaderMap, Request, Response};
use session_core::{CookieAction, SessionManager, SessionStore, Timestamp};
use tokio::sync::Mutex;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

use crate::Session;
use crate::config::{SessionLayerBuilder, Shared};
use crate::handle::{Presented, RequestSession, Slot, Via};
use crate::keys::Verified;

/// Server-side sessions for every request of the wrapped service.
///
/// Built with [`SessionLayer::builder`]; cheap to clone. See the crate docs
/// for what it does on a request.
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl SessionLayer {
    /// Start building a layer over `store` (any [`SessionStore`], including
    /// an `Arc<dyn SessionStore>`). A signing key is required:
    /// [`with_key`](SessionLayerBuilder::with_key).
    pub fn builder<S: SessionStore>(store: S) -> SessionLayerBuilder {
        SessionLayerBuilder::new(store)
    }

    pub(crate) fn from_shared(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The session manager requests use (its store is wrapped to trace
    /// every call), for work outside a request.
    #[must_use]
    pub fn manager(&self) -> &SessionManager {
        &self.shared.manager
    }

    /// Verify what a request presents and make its lazy session. No store
    /// call happens here.
    fn request_session(&self, headers: &HeaderMap) -> Arc<RequestSession> {
        let shared = &self.shared;
        let header = shared.header.as_ref().and_then(|name| headers.get(name));
        let (via, presented) = match (header, &shared.cookie) {
            (Some(value), _) => {
                let presented = match value.to_str() {
                    Ok("") => Presented::Nothing,
                    Ok(token) => self.verify(std::iter::once(token)),
                    Err(_) => Presented::Unusable,
                };
                (Via::Header, presented)
            }
            (None, Some(cookie)) => (Via::Cookie, self.verify(cookie.values(headers))),
            (None, None) => (Via::Header, Presented::Nothing),
        };
        Arc::new(RequestSession {
            shared: Arc::clone(shared),
            presented,
            via,
            slot: Mutex::new(Slot::Unloaded),
        })
    }

    /// The first presented value that verifies, or what was presented.
    fn verify<'a>(&self, values: impl Iterator<Item = &'a str>) -> Presented {
        let mut presented = Presented::Nothing;
        for value in values {
            match self.shared.keys.verify(value) {
                Verified::Valid { id, key } => {
                    return Presented::Signed {
                        id,
                        current_key: key == 0,
                        value: value.to_owned(),
                    };
                }
                Verified::Invalid => presented = Presented::Unusable,
            }
        }
        presented
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around another.
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    layer: SessionLayer,
}

impl<S: fmt::Debug> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let session = self.layer.request_session(request.headers());
        request
            .extensions_mut()
            .insert(Session(Arc::clone(&session)));
        ResponseFuture {
            inner: self.inner.call(request),
            session: Some(session),
            finishing: None,
        }
    }
}

type Finishing<B> = Pin<Box<dyn Future<Output = Response<B>> + Send>>;

pin_project_lite::pin_project! {
    /// The response future of [`SessionService`]: the inner response, then
    /// (only if the session was used) its commit.
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: F,
        session: Option<Arc<RequestSession>>,
        finishing: Option<Finishing<B>>,
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default + Send + 'static,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(finishing) = this.finishing {
            return finishing.as_mut().poll(cx).map(Ok);
        }
        let response = ready!(this.inner.poll(cx))?;
        let Some(session) = this.session.take() else {
            return Poll::Ready(Ok(response));
        };
        // The common case for routes that never use the session: nothing
        // to commit, no allocation, no store call.
        if let Ok(mut slot) = session.slot.try_lock()
            && matches!(*slot, Slot::Unloaded)
        {
            *slot = Slot::Done;
            return Poll::Ready(Ok(response));
        }
        let finishing = this.finishing.insert(Box::pin(finish(session, response)));
        finishing.as_mut().poll(cx).map(Ok)
    }
}

/// Commit the used session and put its cookie (or token) on the response.
async fn finish<B: Default>(
    session: Arc<RequestSession>,
    mut response: Response<B>,
) -> Response<B> {
    let shared = &session.shared;
    // Held to the end: a clone of the handle used after this point finds
    // `Done`, not a half-committed session.
    let mut slot = session.slot.lock().await;
    let core = match &mut *slot {
        Slot::Unloaded | Slot::Done => return response,
        Slot::Unavailable(_) => {
            *slot = Slot::Done;
            return failure(shared);
        }
        Slot::Degraded(_) => {
            *slot = Slot::Done;
            no_store(response.headers_mut());
            return response;
        }
        Slot::Ready(core) => core,
    };
    if response.status().is_server_error() {
        // The handler failed, perhaps halfway through its changes: store
        // none of them.
        *slot = Slot::Done;
        no_store(response.headers_mut());
        return response;
    }
    let span = tracing::debug_span!(
        "session.commit",
        backend = shared.backend,
        written = tracing::field::Empty
    );
    let commit = match core.commit().instrument(span.clone()).await {
        Ok(commit) => commit,
        Err(error) => {
            tracing::error!(parent: &span, backend = shared.backend, %error, "session commit failed");
            *slot = Slot::Done;
            return failure(shared);
        }
    };
    span.record("written", tracing::field::debug(commit.written));
    let presented = match &session.presented {
        Presented::Signed {
            id, current_key, ..
        } => Some((id, *current_key)),
        Presented::Nothing | Presented::Unusable => None,
    };
    let send = match &commit.cookie {
        CookieAction::Set { value, expires_at } => {
            // A browser-session cookie or a token that did not change need
            // not be sent again.
            let unchanged =
                presented.is_some_and(|(id, current)| current && id.expose() == value.as_str());
            let fixed =
                session.via == Via::Header || shared.cookie.as_ref().is_some_and(|c| !c.persistent);
            (!(unchanged && fixed)).then_some(Some((value.as_str(), *expires_at)))
        }
        CookieAction::Remove => Some(None),
        // Verified by a previous key: re-sign with the current one.
        _ => match (presented, core.expires_at()) {
            (Some((id, false)), Some(expires_at)) => Some(Some((id.expose(), expires_at))),
            _ => None,
        },
    };
    if let Some(send) = send {
        emit(&session, response.headers_mut(), send);
    }
    *slot = Slot::Done;
    no_store(response.headers_mut());
    response
}

/// Put the signed value (or its removal) in the transport that answers.
fn emit(session: &RequestSession, headers: &mut HeaderMap, send: Option<(&str, Timestamp)>) {
    let shared = &session.shared;
    let signed = send.map(|(id, expires_at)| {
        let value = match &session.presented {
            // The same ID, signed by the current key: no need to sign again.
            Presented::Signed {
                id: presented,
                current_key: true,
                value,
            } if presented.expose() == id => value.clone(),
            _ => shared.keys.sign(id),
        };
        (value, expires_at)
    });
    match (session.via, &shared.cookie, &shared.header) {
        (Via::Cookie, Some(cookie), _) => {
            let value = match signed {
                Some((value, expires_at)) => cookie.set(&value, expires_at),
                None => Some(cookie.removal()),
            };
            if let Some(value) = value {
                headers.append(SET_COOKIE, value);
            }
        }
        (_, _, Some(name)) => {
            let value = signed
                .and_then(|(value, _)| HeaderValue::try_from(value).ok())
                .unwrap_or_else(|| HeaderValue::from_static(""));
            headers.insert(name.clone(), value);
        }
        _ => {}
    }
}

/// `Cache-Control: no-store` unless the handler chose its own caching.
fn no_store(headers: &mut HeaderMap) {
    if !headers.contains_key(CACHE_CONTROL) && !headers.contains_key(EXPIRES) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// The response that replaces one whose session could not be loaded or
/// committed: nothing in it claims success.
fn failure<B: Default>(shared: &Shared) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = shared.failure_status;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

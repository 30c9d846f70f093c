//! The tower layer and service: verify what the request presents, hand the
//! handler a lazy session, commit it with the response.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use http::header::{CACHE_CONTROL, EXPIRES, HeaderValue, SET_COOKIE};
use http::{HeaderMap, Request, Response, StatusCode};
use session_core::{CookieAction, Error, SessionManager, SessionStore, Timestamp};
use tokio::sync::Mutex;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

use crate::Session;
use crate::config::{CookieOnly, SessionLayerBuilder, Shared};
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

    /// Start building a layer over a store that keeps a
    /// [`PrincipalIndex`](session_core::PrincipalIndex): handlers can then
    /// list the logged-in user's sessions ([`Session::devices`]), sign out
    /// the others ([`Session::sign_out_others`]) or one of them
    /// ([`Session::sign_out_device`]), and the
    /// [per-principal limit](session_core::SessionConfig::with_max_sessions_per_principal)
    /// can be set. Otherwise as [`builder`](Self::builder).
    pub fn indexed_builder<S: session_core::PrincipalIndex>(store: S) -> SessionLayerBuilder {
        SessionLayerBuilder::indexed(store)
    }

    /// Start building a layer that keeps each session **in its cookie**,
    /// sealed (encrypted and authenticated) with the key ring, and no
    /// server-side state at all. Handlers use the same [`Session`]; see
    /// the crate docs' "Cookie-only sessions" for what this mode cannot do
    /// (log out a copied cookie) and its size limit.
    pub fn cookie_only() -> SessionLayerBuilder {
        SessionLayerBuilder::cookie_only()
    }

    pub(crate) fn from_shared(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The session manager requests use (its store is wrapped to trace
    /// every call), for work outside a request; `None` for
    /// [cookie-only](Self::cookie_only) sessions, which the server does not
    /// keep.
    #[must_use]
    pub fn manager(&self) -> Option<&SessionManager> {
        self.shared
            .cookie_only
            .is_none()
            .then_some(&self.shared.manager)
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
        // Kept in a logged-in session's device list; never for anonymous ones.
        let user_agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Arc::new(RequestSession {
            shared: Arc::clone(shared),
            presented,
            user_agent,
            via,
            slot: Mutex::new(Slot::Unloaded),
            jar: OnceLock::new(),
        })
    }

    /// The first presented value that verifies (or opens), or what was
    /// presented.
    fn verify<'a>(&self, values: impl Iterator<Item = &'a str>) -> Presented {
        let mut presented = Presented::Nothing;
        for value in values {
            if let Some(cookie_only) = &self.shared.cookie_only {
                match cookie_only.sealer.open(&cookie_only.name, value) {
                    Some(sealed) => return Presented::Sealed(Box::new(sealed)),
                    None => presented = Presented::Unusable,
                }
                continue;
            }
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
            return failure(shared.failure_status);
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
            let report = session_core::report(&error);
            tracing::error!(parent: &span, backend = shared.backend, error = %report, "session commit failed");
            *slot = Slot::Done;
            // Data that cannot be stored (too deep, too large for a
            // cookie) is the application's fault, not the store's.
            return failure(match error {
                Error::Encode { .. } | Error::TooLarge { .. } | Error::TooDeep { .. } => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => shared.failure_status,
            });
        }
    };
    span.record("written", tracing::field::debug(commit.written));
    let send = match &shared.cookie_only {
        None => signed(&session, core, &commit.cookie),
        Some(cookie_only) => match sealed(&session, cookie_only, core, &commit.cookie) {
            Ok(send) => send,
            Err(error) => {
                let report = session_core::report(&error);
                tracing::error!(parent: &span, error = %report, "session could not be sealed into its cookie");
                *slot = Slot::Done;
                return failure(StatusCode::INTERNAL_SERVER_ERROR);
            }
        },
    };
    if let Some(send) = send {
        emit(&session, response.headers_mut(), send);
    }
    *slot = Slot::Done;
    no_store(response.headers_mut());
    response
}

/// What to send: `Some(Some((value, expiry)))` sets the cookie or token,
/// `Some(None)` removes it, `None` leaves it.
type Reply = Option<Option<(String, Timestamp)>>;

/// A server-side session: the signed ID, when the browser's copy must
/// change.
fn signed(session: &RequestSession, core: &session_core::Session, action: &CookieAction) -> Reply {
    let shared = &session.shared;
    let presented = session.presented.id();
    let (id, expires_at) = match action {
        CookieAction::Set { value, expires_at } => {
            // A browser-session cookie or a token that did not change need
            // not be sent again.
            let unchanged =
                presented.is_some_and(|(id, current)| current && id.expose() == value.as_str());
            let fixed =
                session.via == Via::Header || shared.cookie.as_ref().is_some_and(|c| !c.persistent);
            if unchanged && fixed {
                return None;
            }
            (value.as_str(), *expires_at)
        }
        CookieAction::Remove => return Some(None),
        // Verified by a previous key: re-sign with the current one.
        _ => match (presented, core.expires_at()) {
            (Some((id, false)), Some(expires_at)) => (id.expose(), expires_at),
            _ => return None,
        },
    };
    let value = match &session.presented {
        // The same ID, signed by the current key: no need to sign again.
        Presented::Signed {
            id: presented,
            current_key: true,
            value,
        } if presented.expose() == id => value.clone(),
        _ => shared.keys.sign(id),
    };
    Some(Some((value, expires_at)))
}

/// A cookie-only session: the record the commit left in the request's jar,
/// sealed again whenever it changed (its data, its expiry or its key).
fn sealed(
    session: &RequestSession,
    cookie_only: &CookieOnly,
    core: &session_core::Session,
    action: &CookieAction,
) -> session_core::Result<Reply> {
    let reseal = match action {
        CookieAction::Set { .. } => true,
        CookieAction::Remove => return Ok(Some(None)),
        // Opened by a previous key: seal with the current one.
        _ => session.presented.id().is_some_and(|(_, current)| !current),
    };
    let record = session.jar.get().and_then(|jar| jar.get(&core.id().key()));
    let (true, Some(record)) = (reseal, record) else {
        return Ok(None);
    };
    let value = cookie_only
        .sealer
        .seal(&cookie_only.name, core.id().expose(), &record)?;
    Ok(Some(Some((value, record.expires_at))))
}

/// Put the value (or its removal) in the transport that answers.
fn emit(session: &RequestSession, headers: &mut HeaderMap, send: Option<(String, Timestamp)>) {
    let shared = &session.shared;
    match (session.via, &shared.cookie, &shared.header) {
        (Via::Cookie, Some(cookie), _) => {
            let value = match send {
                Some((value, expires_at)) => cookie.set(&value, expires_at),
                None => Some(cookie.removal()),
            };
            if let Some(value) = value {
                headers.append(SET_COOKIE, value);
            }
        }
        (_, _, Some(name)) => {
            let value = send
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
fn failure<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

//! Shared pieces of the HTTP-level tests: a store that counts its calls and
//! fails on demand, a small app, and a client with a cookie jar that drives
//! the app as a browser would (the service called directly, no socket).
#![allow(
    dead_code,
    unreachable_pub,
    unused_imports,
    reason = "shared by several test files"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::routing::{get, post};
use cookie::Cookie;
use http_body_util::BodyExt as _;
pub use session_conformance::probe::{Op, Probe, Trouble};
use session_core::{Record, SessionId, SessionKey, SessionStore};
use session_store_memory::MemoryStore;
use session_tower::{Session, SessionError, SessionLayer, SessionLayerBuilder};
use tower::ServiceExt as _;

pub const KEY: [u8; 32] = [7; 32];
pub const OTHER_KEY: [u8; 32] = [9; 32];

/// The store under the tests: a memory store behind a probe that counts
/// every call and fails on demand.
pub type Counting = Probe<MemoryStore>;

/// A fresh [`Counting`] store.
pub fn counting() -> Arc<Counting> {
    Arc::new(Probe::new(MemoryStore::new()))
}

/// A layer over `store` with the test key and default settings.
pub fn builder(store: &Arc<Counting>) -> SessionLayerBuilder {
    SessionLayer::builder(Arc::clone(store)).with_key(KEY)
}

async fn counter(session: Session) -> Result<String, SessionError> {
    let views: u64 = session.get("views").await?.unwrap_or(0) + 1;
    session.insert("views", views).await?;
    Ok(views.to_string())
}

async fn peek(session: Session) -> Result<String, SessionError> {
    let views: Option<u64> = session.get("views").await?;
    Ok(views.map_or_else(|| "none".to_owned(), |v| v.to_string()))
}

async fn set(session: Session, Path((k, v)): Path<(String, String)>) -> Result<(), SessionError> {
    session.insert(&k, v).await
}

async fn get_value(session: Session, Path(k): Path<String>) -> Result<String, SessionError> {
    Ok(session
        .get::<String>(&k)
        .await?
        .unwrap_or_else(|| "none".to_owned()))
}

async fn login(session: Session, Path(user): Path<String>) -> Result<(), SessionError> {
    session.insert("user", user).await?;
    session.cycle_id().await
}

async fn logout(session: Session) -> Result<(), SessionError> {
    session.destroy().await
}

async fn cached(session: Session) -> Result<(HeaderMap, String), SessionError> {
    counter(session.clone()).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CACHE_CONTROL,
        "private, max-age=60"
            .parse()
            .unwrap_or_else(|_| unreachable!()),
    );
    Ok((headers, "cached".to_owned()))
}

async fn fails(session: Session) -> Result<StatusCode, SessionError> {
    session.insert("half", "done").await?;
    Ok(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The test app: every route under one layer.
pub fn app(layer: SessionLayer) -> Router {
    routes().layer(layer)
}

/// The routes, without a layer.
pub fn routes() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/counter", get(counter))
        .route("/peek", get(peek))
        .route("/set/{k}/{v}", post(set))
        .route("/get/{k}", get(get_value))
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/cached", get(cached))
        .route("/fails", post(fails))
}

/// One HTTP response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The `Set-Cookie` headers, parsed.
    pub fn set_cookies(&self) -> Vec<Cookie<'static>> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
            .collect()
    }

    /// The one `Set-Cookie`, if any (more than one is a failure).
    pub fn set_cookie(&self) -> Option<Cookie<'static>> {
        let mut all = self.set_cookies();
        assert!(all.len() <= 1, "more than one Set-Cookie: {all:?}");
        all.pop()
    }

    pub fn cache_control(&self) -> Option<&str> {
        self.headers
            .get(header::CACHE_CONTROL)
            .map(|v| v.to_str().unwrap())
    }
}

/// A browser: a cookie jar in front of the app.
#[derive(Clone, Debug)]
pub struct Browser {
    pub app: Router,
    pub jar: BTreeMap<String, String>,
}

impl Browser {
    pub fn new(app: Router) -> Self {
        Self {
            app,
            jar: BTreeMap::new(),
        }
    }

    pub fn cookie(&self) -> Option<&str> {
        self.jar.get("sid").map(String::as_str)
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send("GET", path).await
    }

    pub async fn post(&mut self, path: &str) -> Reply {
        self.send("POST", path).await
    }

    pub async fn send(&mut self, method: &str, path: &str) -> Reply {
        let reply = send(&self.app, request(method, path, &self.jar)).await;
        self.absorb(&reply);
        reply
    }

    /// Apply the response's cookies as a browser would.
    pub fn absorb(&mut self, reply: &Reply) {
        for cookie in reply.set_cookies() {
            let removed =
                cookie.max_age().is_some_and(|age| age.is_zero()) || cookie.value().is_empty();
            if removed {
                self.jar.remove(cookie.name());
            } else {
                self.jar
                    .insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
    }
}

/// A request carrying the cookies of `jar`.
pub fn request(method: &str, path: &str, jar: &BTreeMap<String, String>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if !jar.is_empty() {
        let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        builder = builder.header(header::COOKIE, cookies.join("; "));
    }
    builder.body(Body::empty()).unwrap()
}

/// Send one request to `app` and read the whole response.
pub async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

/// The store key behind a signed cookie value.
pub fn key_of(signed: &str) -> SessionKey {
    let (id, _) = signed.split_once('.').unwrap();
    SessionId::parse(id).unwrap().key()
}

/// The record behind a signed cookie value.
pub async fn record_of(store: &Counting, signed: &str) -> Option<Record> {
    store.inner().load(&key_of(signed)).await.unwrap()
}

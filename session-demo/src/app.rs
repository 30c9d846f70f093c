//! The demo's routes: the page, its forms, and the plain counter.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use session_core::Timestamp;
use session_tower::{Session, SessionError, SessionLayer};

/// Session keys the demo uses itself; user values live under
/// [`VALUE_PREFIX`] so each one merges on its own under concurrency.
const VIEWS: &str = "views";
const USER: &str = "user";
const PREVIOUS_ID: &str = "previous_id";
const VALUE_PREFIX: &str = "value:";

/// What the page says about the deployment.
#[derive(Debug, Clone)]
pub struct Info {
    /// The backend's name (`sqlite`, `redis`, …).
    pub backend: &'static str,
    /// The store URL, passwords hidden.
    pub store_url: String,
    /// The idle TTL, to show when the session expires.
    pub ttl: Duration,
}

/// The demo app: every route behind `sessions`.
pub fn router(sessions: SessionLayer, info: Info) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/counter", get(counter))
        .route("/values", post(set_value))
        .route("/values/delete", post(delete_value))
        .route("/values/{name}", get(get_value))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/health", get(|| async { "ok" }))
        .layer(sessions)
        .with_state(Arc::new(info))
}

/// express-session's classic: count this visitor's views.
///
/// # Errors
///
/// When the store fails (answered with `503`).
pub async fn counter(session: Session) -> Result<String, SessionError> {
    let views = bump_views(&session).await?;
    Ok(format!("views: {views}"))
}

async fn bump_views(session: &Session) -> Result<u64, SessionError> {
    let views: u64 = session.get(VIEWS).await?.unwrap_or(0) + 1;
    session.insert(VIEWS, views).await?;
    Ok(views)
}

#[derive(Template)]
#[template(path = "index.html")]
struct Page<'a> {
    backend: &'a str,
    /// Cookie-only sessions: nothing is kept on the server.
    cookie_only: bool,
    store_url: &'a str,
    views: u64,
    session_id: String,
    previous_id: Option<String>,
    stored: bool,
    expires: String,
    user: Option<String>,
    values: Vec<(String, String)>,
}

async fn page(State(info): State<Arc<Info>>, session: Session) -> Result<Response, SessionError> {
    let views = bump_views(&session).await?;
    let user: Option<String> = session.get(USER).await?;
    // Shown once, right after login.
    let previous_id = session
        .remove(PREVIOUS_ID)
        .await?
        .and_then(|v| v.as_str().map(str::to_owned));
    let (session_id, stored, values) = session
        .with(|s| {
            let values = s
                .data()
                .iter()
                .filter_map(|(k, v)| {
                    let name = k.strip_prefix(VALUE_PREFIX)?;
                    Some((name.to_owned(), v.as_str().unwrap_or_default().to_owned()))
                })
                .collect();
            (s.id().to_string(), !s.is_new(), values)
        })
        .await?;
    // This visit writes, so the session expires one TTL from now.
    let expires_at = Timestamp::now() + info.ttl;
    let expires = format!(
        "{expires_at} (in {} min: each visit moves it)",
        info.ttl.as_secs().div_ceil(60)
    );
    let page = Page {
        backend: info.backend,
        cookie_only: info.backend == "cookie",
        store_url: &info.store_url,
        views,
        session_id,
        previous_id,
        stored,
        expires,
        user,
        values,
    };
    Ok(match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "page did not render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    })
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
}

/// Log in: remember the user and move the session to a new ID (session
/// fixation), keeping its data.
async fn login(session: Session, Form(form): Form<LoginForm>) -> Result<Redirect, SessionError> {
    let user = form.user.trim();
    if !user.is_empty() {
        let old_id = session.with(|s| s.id().to_string()).await?;
        session.insert(USER, user).await?;
        session.insert(PREVIOUS_ID, old_id).await?;
        session.cycle_id().await?;
    }
    Ok(Redirect::to("/"))
}

/// Log out: destroy the session and remove the cookie.
async fn logout(session: Session) -> Result<Redirect, SessionError> {
    session.destroy().await?;
    Ok(Redirect::to("/"))
}

#[derive(Deserialize)]
struct ValueForm {
    name: String,
    #[serde(default)]
    value: String,
}

async fn set_value(
    session: Session,
    Form(form): Form<ValueForm>,
) -> Result<Redirect, SessionError> {
    let name = form.name.trim();
    if !name.is_empty() {
        session
            .insert(&format!("{VALUE_PREFIX}{name}"), form.value)
            .await?;
    }
    Ok(Redirect::to("/"))
}

async fn delete_value(
    session: Session,
    Form(form): Form<ValueForm>,
) -> Result<Redirect, SessionError> {
    session
        .remove(&format!("{VALUE_PREFIX}{}", form.name.trim()))
        .await?;
    Ok(Redirect::to("/"))
}

async fn get_value(session: Session, Path(name): Path<String>) -> Result<Response, SessionError> {
    let value: Option<String> = session.get(&format!("{VALUE_PREFIX}{name}")).await?;
    Ok(match value {
        Some(value) => value.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

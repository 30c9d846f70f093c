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
use session_core::{Principal, SessionKey, Timestamp};
use session_tower::{Session, SessionError, SessionLayer};

/// Session keys the demo uses itself; user values live under
/// [`VALUE_PREFIX`] so each one merges on its own under concurrency.
const VIEWS: &str = "views";
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
        .route("/devices/sign-out", post(sign_out_device))
        .route("/devices/sign-out-others", post(sign_out_others))
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
    /// The signed-in user's sessions ("your sessions"), this one included.
    devices: Vec<DeviceRow>,
}

/// One row of "your sessions".
struct DeviceRow {
    /// The session's key (its ID's hash), posted back to sign it out.
    key: String,
    /// The key's first characters, to tell rows apart.
    short: String,
    user_agent: String,
    created: String,
    last_seen: String,
    current: bool,
}

async fn page(State(info): State<Arc<Info>>, session: Session) -> Result<Response, SessionError> {
    let views = bump_views(&session).await?;
    let user = session.principal().await?.map(|p| p.to_string());
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
    // Cookie-only sessions have no server-side list to show.
    let devices = if user.is_some() && info.backend != "cookie" {
        let current = session.key().await?;
        session
            .devices()
            .await?
            .into_iter()
            .map(|d| {
                let key = d.key.to_string();
                DeviceRow {
                    short: key.chars().take(8).collect(),
                    key,
                    user_agent: d.user_agent.unwrap_or_else(|| "unknown browser".to_owned()),
                    created: short_time(d.created_at),
                    last_seen: d.last_seen.map_or_else(|| "never".to_owned(), short_time),
                    current: d.key == current,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
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
        devices,
    };
    Ok(match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "page did not render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    })
}

/// `2026-12-07 18:44:14` (UTC, as the list's heading says): to the second,
/// for the device list.
fn short_time(at: Timestamp) -> String {
    let text = at.to_string();
    let (date, time) = text.split_once('T').unwrap_or((&text, ""));
    format!("{date} {}", time.get(..8).unwrap_or(time))
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
}

/// Log in: the session belongs to the user from now on (listed under
/// "your sessions") and moves to a new ID (session fixation), keeping its
/// data. A name that is not a valid principal (control characters, over
/// 255 bytes) is ignored, like an empty one.
async fn login(session: Session, Form(form): Form<LoginForm>) -> Result<Redirect, SessionError> {
    if let Ok(user) = Principal::new(form.user.trim()) {
        let old_id = session.with(|s| s.id().to_string()).await?;
        session.insert(PREVIOUS_ID, old_id).await?;
        session.set_principal(user).await?;
    }
    Ok(Redirect::to("/"))
}

#[derive(Deserialize)]
struct DeviceForm {
    key: String,
}

/// "Sign out" on one row of "your sessions": only the user's own sessions
/// can be ended this way, whatever key is posted.
async fn sign_out_device(
    session: Session,
    Form(form): Form<DeviceForm>,
) -> Result<Redirect, SessionError> {
    if let Ok(key) = SessionKey::parse(&form.key) {
        session.sign_out_device(&key).await?;
    }
    Ok(Redirect::to("/"))
}

/// "Sign out all other devices".
async fn sign_out_others(session: Session) -> Result<Redirect, SessionError> {
    session.sign_out_others().await?;
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

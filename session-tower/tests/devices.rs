//! "Your devices": two browsers log in as one user through a layer over an
//! indexed store, list their sessions and sign each other out.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use common::{Browser, KEY, Reply, key_of, request, send};
use session_core::{Principal, PrincipalIndex, SessionKey, SessionStore};
use session_store_memory::MemoryStore;
use session_tower::{Session, SessionError, SessionLayer};

async fn login(session: Session, Path(user): Path<String>) -> Result<(), SessionError> {
    session.insert("cart", 1).await?;
    session
        .set_principal(Principal::new(user).map_err(SessionError::Value)?)
        .await
}

async fn whoami(session: Session) -> Result<String, SessionError> {
    Ok(session
        .principal()
        .await?
        .map_or_else(|| "anonymous".to_owned(), |p| p.to_string()))
}

/// One line per device: `<key> <user agent> [current]`.
async fn devices(session: Session) -> Result<String, SessionError> {
    let current = session.key().await?;
    let lines: Vec<String> = session
        .devices()
        .await?
        .into_iter()
        .map(|d| {
            let mark = if d.key == current { " current" } else { "" };
            format!("{} {}{mark}", d.key, d.user_agent.unwrap_or_default())
        })
        .collect();
    Ok(lines.join("\n"))
}

async fn sign_out_others(session: Session) -> Result<String, SessionError> {
    Ok(session.sign_out_others().await?.to_string())
}

async fn sign_out(session: Session, Path(key): Path<String>) -> Result<String, SessionError> {
    let key = SessionKey::parse(&key).map_err(SessionError::Value)?;
    Ok(session.sign_out_device(&key).await?.to_string())
}

fn routes() -> Router {
    Router::new()
        .route("/login/{user}", post(login))
        .route("/whoami", get(whoami))
        .route("/devices", get(devices))
        .route("/sign-out-others", post(sign_out_others))
        .route("/sign-out/{key}", post(sign_out))
}

/// A browser whose requests carry `user_agent`.
struct Device {
    browser: Browser,
    user_agent: &'static str,
}

impl Device {
    fn new(app: &Router, user_agent: &'static str) -> Self {
        Self {
            browser: Browser::new(app.clone()),
            user_agent,
        }
    }

    async fn send(&mut self, method: &str, path: &str) -> Reply {
        let mut req = request(method, path, &self.browser.jar);
        req.headers_mut()
            .insert(header::USER_AGENT, self.user_agent.parse().unwrap());
        let reply = send(&self.browser.app, req).await;
        self.browser.absorb(&reply);
        reply
    }

    fn key(&self) -> SessionKey {
        key_of(self.browser.cookie().unwrap())
    }
}

fn indexed_app(store: &Arc<MemoryStore>) -> Router {
    routes().layer(
        SessionLayer::indexed_builder(Arc::clone(store))
            .with_key(KEY)
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn two_devices_list_and_sign_each_other_out() {
    let store = Arc::new(MemoryStore::new());
    let app = indexed_app(&store);
    let mut phone = Device::new(&app, "Phone/1.0");
    let mut laptop = Device::new(&app, "Laptop/2.0");
    let mut bobs = Device::new(&app, "Bob/3.0");
    for (device, user) in [
        (&mut phone, "alice"),
        (&mut laptop, "alice"),
        (&mut bobs, "bob"),
    ] {
        assert_eq!(
            device.send("POST", &format!("/login/{user}")).await.status,
            StatusCode::OK
        );
        assert_eq!(device.send("GET", "/whoami").await.body, user);
    }

    let listed = laptop.send("GET", "/devices").await.body;
    let mut lines: Vec<&str> = listed.lines().collect();
    lines.sort_unstable();
    let mut want = vec![
        format!("{} Laptop/2.0 current", laptop.key()),
        format!("{} Phone/1.0", phone.key()),
    ];
    want.sort_unstable();
    assert_eq!(
        lines, want,
        "each device with its user agent, this one marked"
    );

    // Bob's key posted by alice ends nothing.
    let bob_key = bobs.key();
    assert_eq!(
        laptop
            .send("POST", &format!("/sign-out/{bob_key}"))
            .await
            .body,
        "false"
    );
    assert_eq!(bobs.send("GET", "/whoami").await.body, "bob");

    assert_eq!(laptop.send("POST", "/sign-out-others").await.body, "1");
    assert_eq!(phone.send("GET", "/whoami").await.body, "anonymous");
    assert_eq!(laptop.send("GET", "/whoami").await.body, "alice");
    let alice = Principal::new("alice").unwrap();
    assert_eq!(store.sessions_of(&alice).await.unwrap().len(), 1);

    // The phone logs in again; the laptop signs it out by key.
    phone.send("POST", "/login/alice").await;
    let phone_key = phone.key();
    assert_eq!(
        laptop
            .send("POST", &format!("/sign-out/{phone_key}"))
            .await
            .body,
        "true"
    );
    assert_eq!(store.load(&phone_key).await.unwrap(), None);
    assert_eq!(phone.send("GET", "/whoami").await.body, "anonymous");
}

#[tokio::test]
async fn a_layer_without_an_index_refuses_device_calls() {
    let app = routes().layer(
        SessionLayer::builder(MemoryStore::new())
            .with_key(KEY)
            .build()
            .unwrap(),
    );
    let mut device = Device::new(&app, "UA");
    device.send("POST", "/login/alice").await;
    let reply = device.send("GET", "/devices").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
}

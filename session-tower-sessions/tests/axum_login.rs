//! A small axum-login app (login, a protected route, logout) whose sessions
//! live in our memory store through the adapter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail by panicking"
)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum_login::{
    AuthManagerLayerBuilder, AuthSession, AuthUser, AuthnBackend, UserId, login_required,
};
use http_body_util::BodyExt as _;
use serde::Deserialize;
use session_core::SessionStore as _;
use session_store_memory::MemoryStore;
use session_tower_sessions::TowerSessionsStore;
use tower::ServiceExt as _;
use tower_sessions::SessionManagerLayer;

#[derive(Clone, Debug)]
struct User {
    id: u64,
    name: String,
    password: String,
}

impl AuthUser for User {
    type Id = u64;
    fn id(&self) -> u64 {
        self.id
    }
    fn session_auth_hash(&self) -> &[u8] {
        // A real app uses a hash of the password; changing it logs the
        // user out everywhere.
        self.password.as_bytes()
    }
}

#[derive(Clone, Deserialize)]
struct Credentials {
    name: String,
    password: String,
}

#[derive(Clone, Default)]
struct Users(Arc<HashMap<u64, User>>);

impl AuthnBackend for Users {
    type User = User;
    type Credentials = Credentials;
    type Error = Infallible;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<User>, Infallible> {
        Ok(self
            .0
            .values()
            .find(|u| u.name == creds.name && u.password == creds.password)
            .cloned())
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, Infallible> {
        Ok(self.0.get(id).cloned())
    }
}

type Auth = AuthSession<Users>;

async fn login(mut auth: Auth, Form(creds): Form<Credentials>) -> impl IntoResponse {
    match auth.authenticate(creds).await.unwrap() {
        Some(user) => {
            auth.login(&user).await.unwrap();
            StatusCode::OK
        }
        None => StatusCode::UNAUTHORIZED,
    }
}

async fn logout(mut auth: Auth) -> StatusCode {
    auth.logout().await.unwrap();
    StatusCode::OK
}

async fn me(auth: Auth) -> String {
    format!(
        "hello {}",
        auth.user.expect("login_required let us in").name
    )
}

fn app(store: Arc<MemoryStore>) -> Router {
    let users = Users(Arc::new(HashMap::from([(
        1,
        User {
            id: 1,
            name: "ada".to_owned(),
            password: "lovelace".to_owned(),
        },
    )])));
    let sessions = SessionManagerLayer::new(TowerSessionsStore::new(store)).with_secure(false);
    let auth = AuthManagerLayerBuilder::new(users, sessions).build();
    Router::new()
        .route("/me", get(me))
        .route_layer(login_required!(Users))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(auth)
}

struct Client {
    app: Router,
    cookie: Option<String>,
}

impl Client {
    async fn send(&mut self, method: &str, path: &str, form: Option<&str>) -> (StatusCode, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(cookie) = &self.cookie {
            req = req.header(header::COOKIE, cookie);
        }
        let body = match form {
            Some(form) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(form.to_owned())
            }
            None => Body::empty(),
        };
        let response = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        for value in response.headers().get_all(header::SET_COOKIE) {
            let cookie = cookie::Cookie::parse(value.to_str().unwrap().to_owned()).unwrap();
            let gone = cookie.max_age().is_some_and(|a| a.is_zero());
            self.cookie = (!gone).then(|| format!("{}={}", cookie.name(), cookie.value()));
        }
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }
}

#[tokio::test]
async fn axum_login_runs_on_our_store_through_the_adapter() {
    let store = Arc::new(MemoryStore::new());
    let mut client = Client {
        app: app(Arc::clone(&store)),
        cookie: None,
    };

    let (status, _) = client.send("GET", "/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "protected before login");

    let (status, _) = client
        .send("POST", "/login", Some("name=ada&password=wrong"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _) = client
        .send("POST", "/login", Some("name=ada&password=lovelace"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let logged_in = client.cookie.clone().expect("a session cookie after login");
    assert_eq!(
        store.len().await.unwrap(),
        1,
        "the session lives in our store"
    );

    let (status, body) = client.send("GET", "/me", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello ada"));

    let (status, _) = client.send("POST", "/logout", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(store.len().await.unwrap(), 0, "logout destroyed the record");
    let (status, _) = client.send("GET", "/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "protected after logout");

    // The cookie from before logout opens nothing any more.
    client.cookie = Some(logged_in);
    let (status, _) = client.send("GET", "/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

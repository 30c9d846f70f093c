//! The layer at the HTTP level: requests through an axum app, as a browser
//! (or an API client) would send them, against a memory store that counts
//! its calls.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use common::{
    Browser, Counting, KEY, OTHER_KEY, Op, Trouble, app, builder, counting, key_of, record_of,
    request, routes, send,
};
use cookie::SameSite;
use serde_json::json;
use session_core::{SessionConfig, SessionStore, Timestamp};
use session_tower::{Session, SessionError, SessionLayer, StoreUnavailable};
use tokio::sync::{Barrier, oneshot};

fn browser(store: &Arc<Counting>) -> Browser {
    Browser::new(app(builder(store).build().unwrap()))
}

// ---- cookies appear only when there is something to keep ----

#[tokio::test]
async fn no_cookie_until_something_is_stored() {
    let store = counting();
    let mut b = browser(&store);
    let reply = b.get("/peek").await;
    assert_eq!(reply.body, "none");
    assert!(
        reply.set_cookie().is_none(),
        "reading an empty session sets no cookie"
    );
    assert_eq!(store.total_calls(), 0, "a new session costs no store call");

    let reply = b.get("/counter").await;
    assert_eq!(reply.body, "1");
    assert!(
        reply.set_cookie().is_some(),
        "storing something sets the cookie"
    );
    assert_eq!(store.inner().len().await.unwrap(), 1);
}

#[tokio::test]
async fn the_counter_increments_across_requests() {
    let store = counting();
    let mut b = browser(&store);
    for expected in 1..=4 {
        assert_eq!(b.get("/counter").await.body, expected.to_string());
    }
    let record = record_of(&store, b.cookie().unwrap()).await.unwrap();
    assert_eq!(record.data["views"], json!(4));
    assert_eq!(
        store.inner().len().await.unwrap(),
        1,
        "one visitor, one session"
    );
}

#[tokio::test]
async fn default_cookie_attributes_are_the_safe_ones() {
    let store = counting();
    let mut b = browser(&store);
    let reply = b.get("/counter").await;
    let cookie = reply.set_cookie().unwrap();
    assert_eq!(cookie.name(), "sid");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.same_site(), Some(SameSite::Lax));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.domain(), None);
    // Max-Age and Expires follow the server-side expiry (30 min default).
    let max_age = cookie.max_age().unwrap().whole_seconds();
    assert!((29 * 60..=30 * 60).contains(&max_age), "Max-Age {max_age}");
    let record = record_of(&store, cookie.value()).await.unwrap();
    let expires = Timestamp::from(cookie.expires_datetime().unwrap());
    assert_eq!(
        expires.as_millis() / 1000,
        record.expires_at.as_millis() / 1000
    );
    // The value is `<id>.<signature>`: the ID alone is never the cookie.
    let (id, sig) = cookie.value().split_once('.').unwrap();
    assert_eq!((id.len(), sig.len()), (32, 43));
}

#[tokio::test]
async fn configured_attributes_are_sent() {
    let store = counting();
    let layer = builder(&store)
        .with_cookie_name("app")
        .with_secure(false)
        .with_same_site(Some(SameSite::Strict))
        .with_path("/app")
        .with_domain(Some("example.test".to_owned()))
        .build()
        .unwrap();
    let reply = send(&app(layer), request("GET", "/counter", &Default::default())).await;
    let cookie = reply.set_cookie().unwrap();
    assert_eq!(cookie.name(), "app");
    assert_eq!(cookie.secure(), None, "Secure turned off explicitly");
    assert_eq!(cookie.same_site(), Some(SameSite::Strict));
    assert_eq!(cookie.path(), Some("/app"));
    assert_eq!(cookie.domain(), Some("example.test"));
}

#[tokio::test]
async fn host_prefix_forces_secure_root_path_and_no_domain() {
    let store = counting();
    let layer = builder(&store).with_host_prefix(true).build().unwrap();
    let reply = send(&app(layer), request("GET", "/counter", &Default::default())).await;
    let cookie = reply.set_cookie().unwrap();
    assert_eq!(cookie.name(), "__Host-sid");
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.domain(), None);

    for conflicting in [
        builder(&store).with_host_prefix(true).with_secure(false),
        builder(&store)
            .with_host_prefix(true)
            .with_domain(Some("example.test".to_owned())),
        builder(&store).with_host_prefix(true).with_path("/app"),
    ] {
        let err = conflicting.build().unwrap_err();
        assert!(err.to_string().contains("__Host-"), "{err}");
    }
}

#[tokio::test]
async fn a_browser_session_cookie_has_no_max_age_but_the_server_ttl_applies() {
    let store = counting();
    let layer = builder(&store)
        .with_browser_session_cookie(true)
        .build()
        .unwrap();
    let mut b = Browser::new(app(layer));
    let reply = b.get("/counter").await;
    let cookie = reply.set_cookie().unwrap();
    assert_eq!(cookie.max_age(), None);
    assert_eq!(cookie.expires(), None);
    let record = record_of(&store, cookie.value()).await.unwrap();
    let ttl = record.expires_at.duration_since(Timestamp::now());
    assert!(ttl > Duration::from_secs(29 * 60), "server TTL still set");
    // The value does not change on later writes, so it is not re-sent.
    let reply = b.get("/counter").await;
    assert_eq!(reply.body, "2");
    assert!(
        reply.set_cookie().is_none(),
        "unchanged session cookie re-sent"
    );
}

#[tokio::test]
async fn rolling_refresh_resends_the_cookie_only_when_expiry_moved() {
    let store = counting();
    // Default touch_after (1 min): a read right after a write moves nothing.
    let mut b = browser(&store);
    b.get("/counter").await;
    let reply = b.get("/peek").await;
    assert_eq!(reply.body, "1");
    assert!(
        reply.set_cookie().is_none(),
        "expiry did not move: no cookie"
    );
    let writes = store.write_calls();
    assert_eq!(writes, 1, "no touch either");

    // touch_after zero: every read moves the expiry, and the cookie follows.
    let store = counting();
    let config = SessionConfig::new().with_touch_after(Duration::ZERO);
    let mut b = Browser::new(app(builder(&store).with_config(config).build().unwrap()));
    b.get("/counter").await;
    let before = record_of(&store, b.cookie().unwrap())
        .await
        .unwrap()
        .expires_at;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let reply = b.get("/peek").await;
    let cookie = reply.set_cookie().expect("expiry moved: cookie re-sent");
    let after = record_of(&store, cookie.value()).await.unwrap().expires_at;
    assert!(after.is_after(before), "touched: {before} -> {after}");
}

// ---- signatures ----

#[tokio::test]
async fn a_tampered_cookie_gets_a_fresh_session_and_no_store_call() {
    let store = counting();
    let mut b = browser(&store);
    b.get("/counter").await;
    b.get("/counter").await;
    let good = b.cookie().unwrap().to_owned();
    let (id, sig) = good.split_once('.').unwrap();
    let mut flipped = id.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let forged = [
        format!("{}.{sig}", String::from_utf8(flipped).unwrap()), // another ID, old signature
        id.to_owned(),                                            // unsigned
        format!("{id}.{}", &sig[1..]),                            // truncated signature
        format!("{id}.{}A", &sig[..42]),                          // altered signature
        "garbage".to_owned(),
    ];
    for value in forged {
        let calls = store.total_calls();
        let mut evil = b.clone();
        evil.jar.insert("sid".to_owned(), value.clone());
        let reply = evil.get("/peek").await;
        assert_eq!(reply.status, StatusCode::OK, "{value}: not an error page");
        assert_eq!(reply.body, "none", "{value}: a fresh session");
        assert_eq!(store.total_calls(), calls, "{value}: no store call");
        let removal = reply.set_cookie().expect("the bad cookie is removed");
        assert_eq!(removal.max_age().map(|a| a.whole_seconds()), Some(0));

        let reply = evil.get("/counter").await;
        assert_eq!(reply.body, "1", "{value}: writing starts a new session");
        assert_ne!(evil.cookie(), Some(good.as_str()));
        assert_eq!(store.calls(Op::Load), 1, "only the honest peek loaded");
    }
    assert_eq!(
        b.get("/counter").await.body,
        "3",
        "the real session is untouched"
    );
}

#[tokio::test]
async fn a_cookie_signed_by_a_previous_key_is_accepted_and_resigned() {
    let store = counting();
    let mut b = Browser::new(app(SessionLayer::builder(Arc::clone(&store))
        .with_key(OTHER_KEY)
        .build()
        .unwrap()));
    b.get("/counter").await;
    let old = b.cookie().unwrap().to_owned();

    // Rotate: the new key signs, the old one still verifies.
    let rotated = SessionLayer::builder(Arc::clone(&store))
        .with_key(OTHER_KEY)
        .with_key(KEY)
        .build()
        .unwrap();
    b.app = app(rotated);
    let reply = b.get("/peek").await;
    assert_eq!(reply.body, "1", "the old cookie still opens the session");
    let resigned = reply.set_cookie().expect("re-signed with the new key");
    assert_ne!(resigned.value(), old);
    assert_eq!(
        key_of(resigned.value()),
        key_of(&old),
        "same session, new signature"
    );
    assert_eq!(b.get("/counter").await.body, "2");

    // Once the old key is dropped, the re-signed cookie keeps working and
    // the old one does not.
    let new_only = app(builder(&store).build().unwrap());
    b.app = new_only.clone();
    assert_eq!(b.get("/counter").await.body, "3");
    let mut stale = Browser::new(new_only);
    stale.jar.insert("sid".to_owned(), old);
    assert_eq!(stale.get("/peek").await.body, "none");
}

#[tokio::test]
async fn keys_shorter_than_32_bytes_are_refused_when_built() {
    let store = counting();
    let err = SessionLayer::builder(Arc::clone(&store))
        .with_key([1u8; 31])
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("32"), "{err}");
    let err = builder(&store)
        .with_previous_key(b"short")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("32"), "{err}");
    let err = SessionLayer::builder(Arc::clone(&store))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("key"), "{err}");
}

// ---- login, logout, expiry ----

#[tokio::test]
async fn logout_removes_the_cookie_and_the_record() {
    let store = counting();
    let mut b = browser(&store);
    b.get("/counter").await;
    let cookie = b.cookie().unwrap().to_owned();
    let reply = b.post("/logout").await;
    let removal = reply.set_cookie().expect("a removal cookie");
    assert_eq!(removal.name(), "sid");
    assert_eq!(removal.value(), "");
    assert_eq!(removal.max_age().map(|a| a.whole_seconds()), Some(0));
    assert!(removal.expires_datetime().unwrap() < time::OffsetDateTime::now_utc());
    assert!(b.cookie().is_none());
    assert!(
        record_of(&store, &cookie).await.is_none(),
        "record destroyed"
    );
    assert_eq!(store.inner().len().await.unwrap(), 0);

    // Replaying the old cookie opens nothing.
    let mut replay = b.clone();
    replay.jar.insert("sid".to_owned(), cookie);
    assert_eq!(replay.get("/peek").await.body, "none");
}

#[tokio::test]
async fn login_changes_the_id_and_keeps_the_data() {
    let store = counting();
    let mut b = browser(&store);
    b.get("/counter").await;
    let before = b.cookie().unwrap().to_owned();
    let reply = b.post("/login/ada").await;
    assert_eq!(reply.status, StatusCode::OK);
    let after = b.cookie().unwrap().to_owned();
    assert_ne!(key_of(&after), key_of(&before), "a new ID at login");
    assert!(
        record_of(&store, &before).await.is_none(),
        "old ID destroyed"
    );
    let record = record_of(&store, &after).await.unwrap();
    assert_eq!(record.data["views"], json!(1), "data kept");
    assert_eq!(record.data["user"], json!("ada"));
    assert_eq!(b.get("/get/user").await.body, "ada");
    assert_eq!(b.get("/counter").await.body, "2");
}

#[tokio::test]
async fn an_expired_session_becomes_a_fresh_one() {
    let store = counting();
    let mut b = browser(&store);
    b.get("/counter").await;
    b.get("/counter").await;
    let old = b.cookie().unwrap().to_owned();
    // Expire it on the server (touched into the past: deterministic).
    assert!(
        store
            .inner()
            .touch(&key_of(&old), Timestamp::now() - Duration::from_secs(60))
            .await
            .unwrap()
    );
    let reply = b.get("/peek").await;
    assert_eq!(reply.body, "none");
    assert_eq!(
        reply.set_cookie().unwrap().value(),
        "",
        "the dead cookie is removed"
    );
    assert_eq!(b.get("/counter").await.body, "1");
    assert_ne!(key_of(b.cookie().unwrap()), key_of(&old));
}

#[tokio::test]
async fn an_absolute_lifetime_ends_an_active_session() {
    let store = counting();
    let config = SessionConfig::new().with_absolute_lifetime(Some(Duration::from_millis(300)));
    let mut b = Browser::new(app(builder(&store).with_config(config).build().unwrap()));
    let reply = b.get("/counter").await;
    let max_age = reply
        .set_cookie()
        .unwrap()
        .max_age()
        .unwrap()
        .whole_seconds();
    // Rounded up: a Max-Age of 0 would delete the cookie at once.
    assert_eq!(max_age, 1, "Max-Age follows the absolute lifetime");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        b.get("/counter").await.body,
        "1",
        "a new session after the lifetime"
    );
}

// ---- concurrency within one visitor ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_requests_changing_different_keys_both_persist() {
    let store = counting();
    let barrier = Arc::new(Barrier::new(2));
    let gate = Arc::clone(&barrier);
    let app = routes()
        .route(
            "/race/{k}",
            post(
                move |session: Session, axum::extract::Path(k): axum::extract::Path<String>| {
                    let gate = Arc::clone(&gate);
                    async move {
                        // Both requests load the same version before
                        // either commits, so one update must conflict.
                        session.get::<u64>("views").await?;
                        gate.wait().await;
                        session.insert(&k, true).await?;
                        Ok::<_, SessionError>(())
                    }
                },
            ),
        )
        .layer(builder(&store).build().unwrap());
    let mut b = Browser::new(app);
    b.get("/counter").await;
    let (left, right) = tokio::join!(
        send(&b.app, request("POST", "/race/left", &b.jar)),
        send(&b.app, request("POST", "/race/right", &b.jar)),
    );
    assert_eq!(
        (left.status, right.status),
        (StatusCode::OK, StatusCode::OK)
    );
    let record = record_of(&store, b.cookie().unwrap()).await.unwrap();
    assert_eq!(record.data["left"], json!(true), "{:?}", record.data);
    assert_eq!(record.data["right"], json!(true), "{:?}", record.data);
    assert_eq!(record.data["views"], json!(1));
    assert_eq!(record.version, 2, "two updates applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_during_logout_does_not_resurrect_the_session() {
    let store = counting();
    let (loaded_tx, loaded_rx) = oneshot::channel::<()>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let hooks = Arc::new(std::sync::Mutex::new(Some((loaded_tx, go_rx))));
    let app = routes()
        .route(
            "/slow",
            post(move |session: Session| {
                let hooks = hooks.lock().unwrap().take();
                async move {
                    session.get::<u64>("views").await?;
                    if let Some((loaded, go)) = hooks {
                        loaded.send(()).unwrap();
                        go.await.unwrap();
                    }
                    session.insert("late", "write").await?;
                    Ok::<_, SessionError>(())
                }
            }),
        )
        .layer(builder(&store).build().unwrap());
    let mut b = Browser::new(app);
    b.get("/counter").await;
    let cookie = b.cookie().unwrap().to_owned();

    let slow = tokio::spawn({
        let app = b.app.clone();
        let jar = b.jar.clone();
        async move { send(&app, request("POST", "/slow", &jar)).await }
    });
    loaded_rx.await.unwrap();
    let reply = b.post("/logout").await;
    assert_eq!(reply.set_cookie().unwrap().value(), "");
    go_tx.send(()).unwrap();
    let late = slow.await.unwrap();

    assert!(
        record_of(&store, &cookie).await.is_none(),
        "session resurrected"
    );
    assert_eq!(store.inner().len().await.unwrap(), 0);
    let removal = late
        .set_cookie()
        .expect("the late response removes the cookie too");
    assert_eq!(removal.value(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_use_within_one_request_is_safe() {
    let store = counting();
    let app = Router::new()
        .route(
            "/many",
            post(|session: Session| async move {
                let tasks: Vec<_> = (0..16)
                    .map(|i| {
                        let session = session.clone();
                        tokio::spawn(async move { session.insert(&format!("k{i}"), i).await })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap()?;
                }
                Ok::<_, SessionError>(())
            }),
        )
        .layer(builder(&store).build().unwrap());
    let mut b = Browser::new(app);
    b.post("/many").await;
    let record = record_of(&store, b.cookie().unwrap()).await.unwrap();
    assert_eq!(record.data.len(), 16);
    assert_eq!(
        store.calls(Op::Load),
        0,
        "new session: loaded once, from nothing"
    );
    assert_eq!(store.write_calls(), 1, "one create for all 16 changes");
}

#[tokio::test]
async fn changes_after_the_response_are_refused() {
    let store = counting();
    let (tx, rx) = oneshot::channel::<Session>();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let app = Router::new()
        .route(
            "/leak",
            get(move |session: Session| {
                let tx = tx.lock().unwrap().take();
                async move {
                    session.insert("a", 1).await?;
                    if let Some(tx) = tx {
                        tx.send(session).unwrap();
                    }
                    Ok::<_, SessionError>(())
                }
            }),
        )
        .layer(builder(&store).build().unwrap());
    let reply = send(&app, request("GET", "/leak", &Default::default())).await;
    assert!(reply.set_cookie().is_some());
    let leaked = rx.await.unwrap();
    let err = leaked.insert("b", 2).await.unwrap_err();
    assert!(matches!(err, SessionError::Committed), "{err}");
}

// ---- caching ----

#[tokio::test]
async fn responses_that_use_the_session_are_not_stored_by_caches() {
    let store = counting();
    let mut b = browser(&store);
    let reply = b.get("/counter").await;
    assert_eq!(reply.cache_control(), Some("no-store"), "sets a cookie");
    let reply = b.get("/peek").await;
    assert!(reply.set_cookie().is_none());
    assert_eq!(
        reply.cache_control(),
        Some("no-store"),
        "depends on the session"
    );
    let reply = b.get("/health").await;
    assert_eq!(reply.cache_control(), None, "the session was not used");
    let reply = b.get("/cached").await;
    assert_eq!(
        reply.cache_control(),
        Some("private, max-age=60"),
        "the handler's own caching is kept"
    );
}

// ---- header transport ----

#[tokio::test]
async fn the_header_transport_carries_the_signed_token() {
    let store = counting();
    let layer = builder(&store)
        .with_header("X-Session-Token")
        .build()
        .unwrap();
    let app = app(layer);
    let token_request = |path: &str, method: &str, token: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("x-session-token", token)
            .body(Body::empty())
            .unwrap()
    };
    // An empty header asks for a session by header.
    let reply = send(&app, token_request("/counter", "GET", "")).await;
    assert_eq!(reply.body, "1");
    assert!(reply.set_cookie().is_none(), "header clients get no cookie");
    let token = reply.headers["x-session-token"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(token.len(), 76, "signed like the cookie");
    assert_eq!(reply.cache_control(), Some("no-store"));

    let reply = send(&app, token_request("/counter", "GET", &token)).await;
    assert_eq!(reply.body, "2");
    assert!(
        reply.headers.get("x-session-token").is_none(),
        "an unchanged token is not sent again"
    );

    // Login: a new token.
    let reply = send(&app, token_request("/login/ada", "POST", &token)).await;
    let new_token = reply.headers["x-session-token"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_token, token);
    assert_eq!(
        send(&app, token_request("/counter", "GET", &new_token))
            .await
            .body,
        "3"
    );
    assert_eq!(
        send(&app, token_request("/counter", "GET", &token))
            .await
            .body,
        "1",
        "old token dead"
    );

    // A tampered token: a fresh session, no store call.
    let calls = store.total_calls();
    let tampered = format!("{}x", &new_token[..75]);
    assert_eq!(
        send(&app, token_request("/peek", "GET", &tampered))
            .await
            .body,
        "none"
    );
    assert_eq!(store.total_calls(), calls);

    // Logout: the header comes back empty and the record is gone.
    let reply = send(&app, token_request("/logout", "POST", &new_token)).await;
    assert_eq!(reply.headers["x-session-token"], "");
    assert!(record_of(&store, &new_token).await.is_none());

    // A cookie client of the same app still gets cookies.
    let mut b = Browser::new(app);
    assert!(b.get("/counter").await.set_cookie().is_some());
}

#[tokio::test]
async fn header_only_mode_never_sets_a_cookie() {
    let store = counting();
    let layer = builder(&store)
        .with_header("X-Session-Token")
        .without_cookie()
        .build()
        .unwrap();
    let app = app(layer);
    let reply = send(&app, request("GET", "/counter", &Default::default())).await;
    assert!(reply.set_cookie().is_none());
    let token = reply.headers["x-session-token"]
        .to_str()
        .unwrap()
        .to_owned();
    // A cookie holding a valid token is ignored in header-only mode.
    let mut jar = std::collections::BTreeMap::new();
    jar.insert("sid".to_owned(), token);
    assert_eq!(send(&app, request("GET", "/peek", &jar)).await.body, "none");

    let err = builder(&store).without_cookie().build().unwrap_err();
    assert!(err.to_string().contains("transport"), "{err}");
    let err = builder(&store)
        .with_header("Set-Cookie")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("cannot carry"), "{err}");
}

// ---- failures ----

#[tokio::test]
async fn a_failing_store_gives_503_by_default() {
    let store = counting();
    let mut b = browser(&store);
    b.get("/counter").await;
    store.set(&Op::ALL, Some(Trouble::Fail));
    let reply = b.get("/counter").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.set_cookie().is_none(), "no cookie change on failure");
    assert_eq!(reply.cache_control(), Some("no-store"));
    assert!(
        !reply.body.contains('1'),
        "nothing claims success: {}",
        reply.body
    );
    // Routes that do not use the session keep working.
    assert_eq!(b.get("/health").await.status, StatusCode::OK);
    store.heal();
    assert_eq!(
        b.get("/counter").await.body,
        "2",
        "the session survived the outage"
    );
}

#[tokio::test]
async fn a_handler_that_ignores_the_error_still_gets_503() {
    let store = counting();
    let app = Router::new()
        .route(
            "/ignore",
            get(|session: Session| async move {
                let _ = session.get::<u64>("views").await;
                "all good"
            }),
        )
        .layer(builder(&store).build().unwrap());
    let mut b = Browser::new(app);
    let mut jar = b.jar.clone();
    jar.insert("sid".to_owned(), {
        // A validly signed cookie, so the store is asked.
        let mut real = browser(&store);
        real.get("/counter").await;
        real.cookie().unwrap().to_owned()
    });
    b.jar = jar;
    store.set(&Op::ALL, Some(Trouble::Fail));
    let reply = b.get("/ignore").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "");
}

#[tokio::test]
async fn a_failing_commit_replaces_the_response() {
    let store = counting();
    let mut b = browser(&store);
    b.get("/counter").await;
    store.set(&Op::WRITES, Some(Trouble::Fail));
    let reply = b.get("/counter").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.set_cookie().is_none());
    assert_eq!(reply.body, "", "the handler's \"2\" is not sent");
    store.heal();
    assert_eq!(b.get("/counter").await.body, "2", "nothing half-written");
}

#[tokio::test]
async fn degraded_mode_serves_without_a_session() {
    let store = counting();
    let layer = builder(&store)
        .with_on_unavailable(StoreUnavailable::ContinueWithoutSession)
        .build()
        .unwrap();
    let mut b = Browser::new(app(layer));
    b.get("/counter").await;
    let cookie = b.cookie().unwrap().to_owned();
    store.set(&Op::ALL, Some(Trouble::Fail));
    let calls = store.total_calls();
    let reply = b.get("/counter").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "1", "an empty, session-less response");
    assert!(reply.set_cookie().is_none(), "the cookie is left alone");
    assert_eq!(reply.cache_control(), Some("no-store"));
    assert_eq!(
        store.total_calls(),
        calls + 1,
        "one failed load, no write attempted"
    );
    store.heal();
    assert_eq!(b.cookie(), Some(cookie.as_str()));
    assert_eq!(b.get("/counter").await.body, "2", "back once the store is");
}

#[tokio::test]
async fn an_undecodable_record_is_replaced_by_a_fresh_session() {
    let store = counting();
    let mut b = browser(&store);
    b.get("/counter").await;
    let old = b.cookie().unwrap().to_owned();
    store.set(&[Op::Load], Some(Trouble::Corrupt));
    let reply = b.get("/counter").await;
    store.heal();
    assert_eq!(reply.status, StatusCode::OK, "not an error page");
    assert_eq!(reply.body, "1", "a fresh session");
    let new = b.cookie().unwrap().to_owned();
    assert_ne!(key_of(&new), key_of(&old));
    assert!(
        record_of(&store, &old).await.is_none(),
        "the broken record is removed"
    );
}

#[tokio::test]
async fn a_server_error_from_the_handler_commits_nothing() {
    let store = counting();
    let mut b = browser(&store);
    b.get("/counter").await;
    let writes = store.write_calls();
    let reply = b.post("/fails").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookie().is_none());
    assert_eq!(store.write_calls(), writes);
    assert_eq!(b.get("/get/half").await.body, "none");
}

#[tokio::test]
async fn a_route_that_never_uses_the_session_makes_no_store_call() {
    let store = counting();
    let mut b = browser(&store);
    b.get("/counter").await;
    let calls = store.total_calls();
    for _ in 0..5 {
        let reply = b.get("/health").await;
        assert_eq!(reply.body, "ok");
        assert!(reply.set_cookie().is_none());
    }
    assert_eq!(
        store.total_calls(),
        calls,
        "health checks touched the store"
    );
}

#[tokio::test]
async fn a_handler_outside_the_layer_gets_500_not_a_panic() {
    let app = Router::new().route(
        "/counter",
        get(|s: Session| async move { s.is_new().await.map(|n| n.to_string()) }),
    );
    let reply = send(&app, request("GET", "/counter", &Default::default())).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_failure_status_must_be_a_server_error() {
    let store = counting();
    let err = builder(&store)
        .with_failure_status(StatusCode::OK)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("5xx"), "{err}");
    let layer = builder(&store)
        .with_failure_status(StatusCode::INTERNAL_SERVER_ERROR)
        .build()
        .unwrap();
    let mut b = Browser::new(app(layer));
    b.get("/counter").await;
    store.set(&Op::ALL, Some(Trouble::Fail));
    assert_eq!(
        b.get("/counter").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn the_layer_works_with_any_tower_service() {
    // No axum in the handler: a plain tower service reads the session from
    // the request's extensions.
    use tower::{ServiceBuilder, ServiceExt as _};
    let store = counting();
    let service = ServiceBuilder::new()
        .layer(builder(&store).build().unwrap())
        .service_fn(|req: Request<Body>| async move {
            let session = req.extensions().get::<Session>().cloned().unwrap();
            session.insert("plain", true).await.unwrap();
            Ok::<_, std::convert::Infallible>(axum::http::Response::new(Body::empty()))
        });
    let response = service
        .oneshot(request("GET", "/", &Default::default()))
        .await
        .unwrap();
    assert!(response.headers().contains_key(header::SET_COOKIE));
    assert_eq!(store.inner().len().await.unwrap(), 1);
}

// ---- tracing ----

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn store_calls_are_traced_with_backend_and_duration_never_the_id() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let store = counting();
    let mut b = Browser::new(app(builder(&store)
        .with_backend_name("counting")
        .build()
        .unwrap()));
    b.get("/counter").await;
    b.get("/counter").await;
    b.post("/login/ada").await;
    store.set(&Op::ALL, Some(Trouble::Fail));
    b.get("/counter").await;
    let signed = b.cookie().unwrap().to_owned();
    let (id, signature) = signed.split_once('.').unwrap();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for needle in [
        "session.load",
        "session.commit",
        "backend=\"counting\"",
        "op=\"load\"",
        "op=\"create\"",
        "op=\"update\"",
        "op=\"destroy\"",
        "micros=",
        "store call failed",
        "session store unavailable",
    ] {
        assert!(log.contains(needle), "no {needle:?} in the log:\n{log}");
    }
    assert!(!log.contains(id), "the session ID was logged:\n{log}");
    assert!(!log.contains(signature), "the cookie was logged:\n{log}");
}

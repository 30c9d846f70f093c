//! Cookie-only sessions at the HTTP level: the whole session sealed in the
//! cookie, with the same handlers as the server-side tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Browser, KEY, OTHER_KEY, app, builder, counting, send};
use cookie::SameSite;
use session_core::SessionConfig;
use session_tower::{MAX_COOKIE_BYTES, SessionLayer, SessionLayerBuilder};

fn cookie_only() -> SessionLayerBuilder {
    SessionLayer::cookie_only().with_key(KEY)
}

fn browser() -> Browser {
    Browser::new(app(cookie_only().build().unwrap()))
}

#[tokio::test]
async fn the_session_travels_in_the_cookie_sealed_with_the_safe_attributes() {
    let layer = cookie_only().build().unwrap();
    assert!(layer.manager().is_none(), "no server-side state to manage");
    let mut b = Browser::new(app(layer));
    assert_eq!(
        b.get("/peek").await.set_cookie(),
        None,
        "nothing to keep yet"
    );
    b.post("/set/user/ada-lovelace").await;
    assert_eq!(b.get("/counter").await.body, "1");
    let reply = b.get("/counter").await;
    assert_eq!(reply.body, "2");
    let cookie = reply.set_cookie().unwrap();
    assert_eq!(cookie.name(), "sid");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.same_site(), Some(SameSite::Lax));
    assert_eq!(cookie.path(), Some("/"));
    assert!(cookie.max_age().unwrap().whole_seconds() > 1700);
    assert!(
        !cookie.value().contains("ada") && !cookie.value().contains("views"),
        "the data is encrypted, not just signed"
    );
    assert_eq!(reply.cache_control(), Some("no-store"));
    assert_eq!(b.get("/get/user").await.body, "ada-lovelace");
}

#[tokio::test]
async fn every_change_is_sealed_afresh_and_a_read_only_request_sends_nothing() {
    let mut b = browser();
    b.get("/counter").await;
    let first = b.cookie().unwrap().to_owned();
    let reply = b.get("/peek").await;
    assert_eq!(reply.body, "1");
    assert_eq!(
        reply.set_cookie(),
        None,
        "within touch_after: no new cookie"
    );
    b.get("/counter").await;
    assert_ne!(b.cookie().unwrap(), first, "a change is sealed again");
}

#[tokio::test]
async fn a_tampered_or_foreign_cookie_is_no_session_and_is_removed() {
    let mut b = browser();
    b.get("/counter").await;
    b.get("/counter").await;
    let sealed = b.cookie().unwrap().to_owned();
    let mut forgeries = vec![
        sealed[..sealed.len() - 1].to_owned(),
        format!("{sealed}A"),
        "A".repeat(sealed.len()),
        String::new(),
    ];
    for at in [0, 1, 30, sealed.len() / 2, sealed.len() - 2] {
        let mut bytes = sealed.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        forgeries.push(String::from_utf8(bytes).unwrap());
    }
    // Sealed by another key, and a signed server-side cookie.
    let mut other = Browser::new(app(SessionLayer::cookie_only()
        .with_key(OTHER_KEY)
        .build()
        .unwrap()));
    other.get("/counter").await;
    forgeries.push(other.cookie().unwrap().to_owned());
    let mut server_side = Browser::new(app(builder(&counting()).build().unwrap()));
    server_side.get("/counter").await;
    forgeries.push(server_side.cookie().unwrap().to_owned());

    for forged in forgeries {
        let mut b = browser();
        b.jar.insert("sid".to_owned(), forged.clone());
        let reply = b.get("/peek").await;
        assert_eq!(reply.body, "none", "{forged:?} was accepted");
        if !forged.is_empty() {
            assert_eq!(
                reply.set_cookie().unwrap().value(),
                "",
                "the unusable cookie is removed"
            );
        }
        assert_eq!(b.get("/counter").await.body, "1");
    }
}

#[tokio::test]
async fn a_value_sealed_for_one_cookie_name_is_refused_under_another() {
    let mut b = browser();
    b.get("/counter").await;
    let sealed = b.cookie().unwrap().to_owned();
    let layer = cookie_only().with_cookie_name("admin").build().unwrap();
    let mut admin = Browser::new(app(layer));
    admin.jar.insert("admin".to_owned(), sealed);
    assert_eq!(admin.get("/peek").await.body, "none");
}

#[tokio::test]
async fn a_cookie_sealed_by_a_previous_key_opens_and_is_resealed() {
    let mut b = Browser::new(app(SessionLayer::cookie_only()
        .with_key(OTHER_KEY)
        .build()
        .unwrap()));
    b.get("/counter").await;
    let old = b.cookie().unwrap().to_owned();

    // Rotation: the new key seals, the old one still opens.
    b.app = app(cookie_only().with_previous_key(OTHER_KEY).build().unwrap());
    let reply = b.get("/peek").await;
    assert_eq!(reply.body, "1", "the session survives the rotation");
    let resealed = reply
        .set_cookie()
        .expect("a read re-seals under the new key")
        .value()
        .to_owned();
    assert_ne!(resealed, old);

    // Once the old key is dropped, the re-sealed cookie still opens and
    // the old one does not.
    b.app = app(cookie_only().build().unwrap());
    assert_eq!(b.get("/counter").await.body, "2");
    let mut stale = browser();
    stale.jar.insert("sid".to_owned(), old);
    assert_eq!(stale.get("/peek").await.body, "none");
}

#[tokio::test]
async fn a_copied_cookie_stops_working_at_its_sealed_expiry() {
    let config = SessionConfig::new()
        .with_ttl(Duration::from_millis(400))
        .with_touch_after(Duration::from_millis(100));
    let layer = cookie_only().with_config(config).build().unwrap();
    let mut b = Browser::new(app(layer));
    b.get("/counter").await;
    let copied = b.cookie().unwrap().to_owned();
    assert_eq!(b.get("/counter").await.body, "2");

    // The copy works until the expiry sealed inside it...
    let mut thief = b.clone();
    thief.jar.insert("sid".to_owned(), copied.clone());
    assert_eq!(thief.get("/peek").await.body, "1");
    // ... and not after it, whatever the browser does with Max-Age.
    tokio::time::sleep(Duration::from_millis(500)).await;
    thief.jar.insert("sid".to_owned(), copied);
    let reply = thief.get("/peek").await;
    assert_eq!(reply.body, "none");
    assert_eq!(reply.set_cookie().unwrap().value(), "", "and is removed");
}

#[tokio::test]
async fn logout_removes_the_cookie_but_cannot_revoke_a_copy() {
    let mut b = browser();
    b.get("/counter").await;
    let copied = b.cookie().unwrap().to_owned();
    let reply = b.post("/logout").await;
    assert_eq!(reply.set_cookie().unwrap().value(), "");
    assert_eq!(b.get("/peek").await.body, "none");
    // The documented limit of the mode: the server keeps nothing to
    // revoke, so a copy taken before logout lives until its expiry. A
    // short TTL bounds that window.
    let mut thief = browser();
    thief.jar.insert("sid".to_owned(), copied);
    assert_eq!(thief.get("/peek").await.body, "1");
}

#[tokio::test]
async fn login_moves_the_session_to_a_new_id_and_keeps_the_data() {
    let mut b = browser();
    b.get("/counter").await;
    let before = b.cookie().unwrap().to_owned();
    let reply = b.post("/login/ada").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_ne!(b.cookie().unwrap(), before);
    assert_eq!(b.get("/get/user").await.body, "ada");
    assert_eq!(b.get("/counter").await.body, "2");
}

#[tokio::test]
async fn a_session_too_large_for_a_cookie_fails_the_request_and_keeps_the_old_cookie() {
    let mut b = browser();
    b.get("/counter").await;
    let before = b.cookie().unwrap().to_owned();
    let big = "x".repeat(MAX_COOKIE_BYTES);
    let reply = b.post(&format!("/set/big/{big}")).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.set_cookie(), None, "no cookie the browser would drop");
    assert_eq!(reply.cache_control(), Some("no-store"));
    assert_eq!(b.cookie().unwrap(), before);
    assert_eq!(b.get("/counter").await.body, "2", "the old session goes on");

    // Just under the limit fits; every cookie sent stays within it.
    let mut small = Browser::new(app(cookie_only()
        .with_max_cookie_bytes(1000)
        .build()
        .unwrap()));
    let mut fitted = 0;
    for len in (600..1000).step_by(20) {
        let reply = small.post(&format!("/set/v/{}", "y".repeat(len))).await;
        if reply.status == StatusCode::OK {
            let cookie = reply.set_cookie().unwrap();
            assert!(cookie.name().len() + 1 + cookie.value().len() <= 1000);
            fitted = len;
        } else {
            assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
    assert!(
        (600..1000).contains(&fitted),
        "some fit, larger ones fail: {fitted}"
    );
}

#[tokio::test]
async fn the_size_limit_is_checked_when_the_layer_is_built() {
    for bytes in [0, 255, MAX_COOKIE_BYTES + 1, 1 << 20] {
        let err = cookie_only()
            .with_max_cookie_bytes(bytes)
            .build()
            .unwrap_err();
        assert!(err.reason().contains("max_cookie_bytes"), "{err}");
    }
    assert!(
        SessionLayer::cookie_only().build().is_err(),
        "a key is required"
    );
}

#[tokio::test]
async fn the_header_transport_carries_the_sealed_session() {
    let layer = cookie_only()
        .with_header("X-Session-Token")
        .without_cookie()
        .build()
        .unwrap();
    let app = app(layer);
    let call = |path: &str, token: &str| {
        Request::builder()
            .uri(path)
            .header("x-session-token", token)
            .body(Body::empty())
            .unwrap()
    };
    let reply = send(&app, call("/counter", "")).await;
    assert_eq!(reply.body, "1");
    assert_eq!(reply.set_cookie(), None);
    let token = reply.headers["x-session-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let reply = send(&app, call("/counter", &token)).await;
    assert_eq!(reply.body, "2");
}

//! The demo in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) clicks through the counter, login and logout, and reads
//! the cookie jar, attributes included.
//!
//! Needs a chromedriver: `SESSION_WEBDRIVER_URL` (default
//! `http://127.0.0.1:9515`), which `./scripts/test` starts. The browser is
//! `SESSION_CHROMIUM` (default `/usr/bin/chromium`). Without a driver the
//! test fails and says how to start one; `SESSION_SKIP_BROWSER=1` skips it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::time::Duration;

use common::{STEP, start_demo};
use cookie::{Cookie, SameSite};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use session_conformance::env::WEBDRIVER;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

async fn connect(webdriver: &str, profile: &std::path::Path) -> Client {
    let chromium = env_or("SESSION_CHROMIUM", "/usr/bin/chromium");
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".to_owned(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1000,1100",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connecting = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(webdriver)
        .await;
    connecting.unwrap_or_else(|e| WEBDRIVER.unreachable(webdriver, &e))
}

async fn text(client: &Client, id: &str) -> String {
    client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id} on the page: {e}"))
        .text()
        .await
        .unwrap()
}

/// Click a form's submit button and wait until the browser has left the
/// page (its old root element is gone), so nothing reads the old page.
async fn submit(client: &Client, id: &str) {
    let old_root = client.find(Locator::Css("html")).await.unwrap();
    client
        .find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let left = async {
        loop {
            match old_root.tag_name().await {
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
                {
                    return;
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    };
    tokio::time::timeout(STEP, left)
        .await
        .unwrap_or_else(|_| panic!("clicking #{id} did not load a new page"));
}

async fn session_cookie(client: &Client) -> Option<Cookie<'static>> {
    let cookies = client.get_all_cookies().await.unwrap();
    cookies.into_iter().find(|c| c.name() == "sid")
}

/// How the demo keeps sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// In a store; the cookie is `<id>.<signature>`.
    Signed,
    /// Sealed in the cookie (`--store cookie`): the value changes with
    /// every write, the ID is inside.
    Sealed,
}

/// The session's ID as the test can see it: the cookie's ID part, or
/// (sealed) the start of it that the page shows.
async fn session_id(client: &Client, mode: Mode) -> String {
    match mode {
        Mode::Signed => {
            let cookie = session_cookie(client).await.expect("a session cookie");
            cookie.value().split('.').next().unwrap().to_owned()
        }
        Mode::Sealed => text(client, "session-id")
            .await
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned(),
    }
}

async fn scenario(client: &Client, url: &str, mode: Mode) {
    client.goto(url).await.unwrap();
    assert_eq!(text(client, "views").await, "1");
    assert_eq!(text(client, "user").await, "nobody");
    let cookie = session_cookie(client)
        .await
        .expect("a session cookie after the first visit");
    assert_eq!(cookie.http_only(), Some(true), "HttpOnly: {cookie:?}");
    assert_eq!(cookie.secure(), Some(true), "Secure: {cookie:?}");
    assert_eq!(
        cookie.same_site(),
        Some(SameSite::Lax),
        "SameSite: {cookie:?}"
    );
    assert_eq!(cookie.path(), Some("/"));
    assert!(
        cookie.expires().is_some(),
        "a persistent cookie: {cookie:?}"
    );
    // Scripts cannot see it (HttpOnly), though the browser holds it.
    let visible = client
        .execute("return document.cookie", vec![])
        .await
        .unwrap();
    assert_eq!(
        visible,
        json!(""),
        "document.cookie shows the session cookie"
    );

    let first_id = session_id(client, mode).await;
    client.refresh().await.unwrap();
    client.refresh().await.unwrap();
    assert_eq!(text(client, "views").await, "3");
    assert_eq!(session_id(client, mode).await, first_id);

    // A value, set through the form.
    client
        .find(Locator::Id("value-name"))
        .await
        .unwrap()
        .send_keys("colour")
        .await
        .unwrap();
    client
        .find(Locator::Id("value-value"))
        .await
        .unwrap()
        .send_keys("teal")
        .await
        .unwrap();
    submit(client, "set-value").await;
    assert!(text(client, "values").await.contains("colour teal"));

    if mode == Mode::Sealed {
        let value = session_cookie(client).await.unwrap().value().to_owned();
        assert!(
            !value.contains("teal") && !value.contains("colour"),
            "the sealed cookie shows its data: {value}"
        );
        assert!(text(client, "stored").await.contains("in your cookie"));
    }

    // Login: a new ID, the same data.
    let before_login = session_id(client, mode).await;
    client
        .find(Locator::Id("login-user"))
        .await
        .unwrap()
        .send_keys("ada")
        .await
        .unwrap();
    submit(client, "login").await;
    assert_eq!(text(client, "user").await, "ada");
    assert!(text(client, "id-changed").await.contains("new ID"));
    let after_login = session_cookie(client).await.expect("a cookie after login");
    let id_after_login = session_id(client, mode).await;
    assert_ne!(id_after_login, before_login, "the ID changes at login");
    assert_eq!(
        text(client, "views").await,
        "5",
        "the views survived the login"
    );
    assert!(text(client, "values").await.contains("colour teal"));
    assert_eq!(after_login.http_only(), Some(true));

    let shot = client.screenshot().await.unwrap();
    let name = match mode {
        Mode::Signed => "session-demo.png",
        Mode::Sealed => "session-demo-cookie.png",
    };
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, shot).unwrap();
    eprintln!("screenshot: {}", path.display());

    // Logout: the session is gone; the page starts a new one.
    submit(client, "logout").await;
    assert_eq!(text(client, "user").await, "nobody");
    assert_eq!(
        text(client, "views").await,
        "1",
        "a fresh session after logout"
    );
    session_cookie(client)
        .await
        .expect("the new session's cookie");
    assert_ne!(session_id(client, mode).await, id_after_login);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_works_in_headless_chromium() {
    in_chromium(&[], Mode::Signed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_only_sessions_work_in_headless_chromium() {
    in_chromium(&["--store", "cookie"], Mode::Sealed).await;
}

/// Run the scenario on the demo started with `args`, in a fresh browser.
async fn in_chromium(args: &[&str], mode: Mode) {
    if let Some(reason) = WEBDRIVER.skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let webdriver = WEBDRIVER.url();
    let data = tempfile::tempdir().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let (url, _demo) = start_demo(data.path(), args).await;
    let client = tokio::time::timeout(STEP, connect(&webdriver, profile.path()))
        .await
        .unwrap_or_else(|_| {
            panic!("the WebDriver at {webdriver} did not start a browser in {STEP:?}")
        });
    let running = tokio::spawn({
        let client = client.clone();
        async move { scenario(&client, &url, mode).await }
    });
    let outcome = tokio::time::timeout(4 * STEP, running).await;
    // Close the browser whatever happened, then report.
    let _ = client.close().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(failed)) => std::panic::resume_unwind(failed.into_panic()),
        Err(_) => panic!("the browser scenario did not finish in {:?}", 4 * STEP),
    }
}

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

async fn connect(webdriver: &str, profile: &std::path::Path, user_agent: Option<&str>) -> Client {
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
    if let Some(user_agent) = user_agent
        && let Some(args) = caps["goog:chromeOptions"]["args"].as_array_mut()
    {
        args.push(json!(format!("--user-agent={user_agent}")));
    }
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
    let client = tokio::time::timeout(STEP, connect(&webdriver, profile.path(), None))
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

/// Log in as `user` through the page's form.
async fn log_in(client: &Client, url: &str, user: &str) {
    client.goto(url).await.unwrap();
    client
        .find(Locator::Id("login-user"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    submit(client, "login").await;
    assert_eq!(text(client, "user").await, user);
}

/// The rows of "your sessions": (user agent, whether it is this device).
async fn device_rows(client: &Client) -> Vec<(String, bool)> {
    let mut rows = Vec::new();
    for row in client.find_all(Locator::Css("tr.device")).await.unwrap() {
        let class = row.attr("class").await.unwrap().unwrap_or_default();
        let user_agent = row
            .find(Locator::Css("td.user-agent"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        rows.push((user_agent, class.split_whitespace().any(|c| c == "current")));
    }
    rows.sort();
    rows
}

const PHONE: &str = "SessionDemo Phone";
const LAPTOP: &str = "SessionDemo Laptop";

/// Two browsers (two profiles) sign in as one user: each lists both
/// devices, the laptop signs the phone out by its row, then the phone,
/// signed in again, signs out every other device.
async fn devices_scenario(phone: &Client, laptop: &Client, url: &str) {
    log_in(phone, url, "ada").await;
    log_in(laptop, url, "ada").await;
    laptop.refresh().await.unwrap();
    assert_eq!(
        device_rows(laptop).await,
        [(LAPTOP.to_owned(), true), (PHONE.to_owned(), false)],
        "the laptop lists both devices, itself marked"
    );
    let shot = laptop.screenshot().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("session-demo-devices.png");
    std::fs::write(&path, shot).unwrap();
    eprintln!("screenshot: {}", path.display());

    // "Sign out" on the phone's row.
    let button = laptop
        .find(Locator::Css("tr.device:not(.current) button.sign-out"))
        .await
        .unwrap();
    let id = button
        .attr("id")
        .await
        .unwrap()
        .expect("the button has an id");
    submit(laptop, &id).await;
    assert_eq!(device_rows(laptop).await, [(LAPTOP.to_owned(), true)]);
    phone.refresh().await.unwrap();
    assert_eq!(
        text(phone, "user").await,
        "nobody",
        "the phone was signed out"
    );

    // The phone signs in again and signs out every other device.
    log_in(phone, url, "ada").await;
    assert_eq!(device_rows(phone).await.len(), 2);
    submit(phone, "sign-out-others").await;
    assert_eq!(device_rows(phone).await, [(PHONE.to_owned(), true)]);
    assert_eq!(text(phone, "user").await, "ada");
    laptop.refresh().await.unwrap();
    assert_eq!(
        text(laptop, "user").await,
        "nobody",
        "the laptop was signed out"
    );
    assert!(
        laptop.find(Locator::Id("devices")).await.is_err(),
        "no device list when signed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn your_sessions_signs_out_other_devices_in_two_browser_profiles() {
    if let Some(reason) = WEBDRIVER.skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let webdriver = WEBDRIVER.url();
    let data = tempfile::tempdir().unwrap();
    let (phone_profile, laptop_profile) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (url, _demo) = start_demo(data.path(), &[]).await;
    let open = |profile: std::path::PathBuf, user_agent: &'static str| {
        let webdriver = webdriver.clone();
        async move {
            tokio::time::timeout(STEP, connect(&webdriver, &profile, Some(user_agent)))
                .await
                .unwrap_or_else(|_| {
                    panic!("the WebDriver at {webdriver} did not start a browser in {STEP:?}")
                })
        }
    };
    let phone = open(phone_profile.path().to_owned(), PHONE).await;
    let laptop = open(laptop_profile.path().to_owned(), LAPTOP).await;
    let running = tokio::spawn({
        let (phone, laptop) = (phone.clone(), laptop.clone());
        async move { devices_scenario(&phone, &laptop, &url).await }
    });
    let outcome = tokio::time::timeout(4 * STEP, running).await;
    let _ = phone.close().await;
    let _ = laptop.close().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(failed)) => std::panic::resume_unwind(failed.into_panic()),
        Err(_) => panic!("the browser scenario did not finish in {:?}", 4 * STEP),
    }
}

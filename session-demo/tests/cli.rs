//! The demo as a user runs it: sessions survive a restart on the default
//! store, and a bad `--store` or an unreachable server ends it with one
//! line naming what was tried.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::{STEP, demo, get, start_demo};

#[tokio::test]
async fn sessions_survive_a_restart_on_the_default_store() {
    let data = tempfile::tempdir().unwrap();
    let (url, demo_process) = start_demo(data.path(), &[]).await;
    let counter = format!("{url}counter");
    let first = get(&counter, None).await;
    assert_eq!((first.status, first.body.as_str()), (200, "views: 1"));
    let cookie = first.cookie.expect("a session cookie");
    assert_eq!(get(&counter, Some(&cookie)).await.body, "views: 2");
    drop(demo_process); // killed: nothing is flushed on the way out

    // Same data folder: the same SQLite file and the same generated key.
    let (url, _demo) = start_demo(data.path(), &[]).await;
    let counter = format!("{url}counter");
    assert_eq!(get(&counter, Some(&cookie)).await.body, "views: 3");
    assert!(data.path().join("sessions.db").exists());
    assert!(data.path().join("signing-key").exists());
}

#[tokio::test]
async fn cookie_sessions_survive_a_restart_with_the_same_key_and_nothing_on_disk() {
    let data = tempfile::tempdir().unwrap();
    let (url, demo_process) = start_demo(data.path(), &["--store", "cookie"]).await;
    let counter = format!("{url}counter");
    let first = get(&counter, None).await;
    let cookie = first.cookie.expect("a session cookie");
    let second = get(&counter, Some(&cookie)).await;
    assert_eq!(second.body, "views: 2");
    let cookie = second.cookie.expect("a change is sealed into a new cookie");
    drop(demo_process);

    let (url, _demo) = start_demo(data.path(), &["--store", "cookie"]).await;
    assert_eq!(
        get(&format!("{url}counter"), Some(&cookie)).await.body,
        "views: 3"
    );
    let files: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["signing-key"], "only the key is kept on the server");
}

#[tokio::test]
async fn every_embedded_store_serves_the_counter() {
    let data = tempfile::tempdir().unwrap();
    let sled = format!("sled://{}", data.path().join("sled").display());
    let file = format!("file://{}", data.path().join("files").display());
    for store in ["memory", "cookie", sled.as_str(), file.as_str()] {
        let (url, _demo) = start_demo(data.path(), &["--store", store]).await;
        let first = get(&format!("{url}counter"), None).await;
        assert_eq!(first.body, "views: 1", "{store}");
        let again = get(&format!("{url}counter"), first.cookie.as_deref()).await;
        assert_eq!(again.body, "views: 2", "{store}");
        let page = get(&url, again.cookie.as_deref().or(first.cookie.as_deref())).await;
        assert!(page.body.contains("views\">3<"), "{store}: {}", page.body);
        let backend = store.split("://").next().unwrap();
        assert!(
            page.body.contains(&format!("id=\"backend\">{backend}<")),
            "{store}"
        );
    }
}

/// Run the demo to its exit; its status and stderr.
async fn fails_with(args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let output = tokio::time::timeout(STEP, demo(data.path(), args).output())
        .await
        .expect("the demo gave up in time")
        .unwrap();
    assert!(!output.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cannot") || l.contains("unknown"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line for {args:?}:\n{stderr}");
    errors[0].to_owned()
}

#[tokio::test]
async fn a_bad_store_url_is_one_line_naming_it() {
    let line = fails_with(&["--store", "postgress://db"]).await;
    assert!(
        line.contains("postgress://db") && line.contains("expected one of"),
        "{line}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_one_line_naming_it() {
    // A port nothing listens on: bind one, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let line = fails_with(&["--store", &url]).await;
    assert!(
        line.contains(&url) && line.contains("cannot open store"),
        "{line}"
    );
}

#[tokio::test]
async fn an_unreachable_postgres_is_one_line_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://ada:hunter2@127.0.0.1:{port}/test");
    let line = fails_with(&["--store", &url]).await;
    // Named with its credentials hidden.
    let shown = format!("postgres://***@127.0.0.1:{port}/test");
    assert!(
        line.contains(&shown) && line.contains("cannot open store") && !line.contains("hunter2"),
        "{line}"
    );
}

#[tokio::test]
async fn a_mysql_store_serves_the_counter_by_either_scheme() {
    use session_conformance::env::MYSQL;
    if MYSQL.skip_reason().is_some() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let mysql = MYSQL.url();
    let mariadb = mysql.replacen("mysql://", "mariadb://", 1);
    for store in [mysql.as_str(), mariadb.as_str()] {
        let (url, _demo) = start_demo(data.path(), &["--store", store]).await;
        let first = get(&format!("{url}counter"), None).await;
        assert_eq!(first.body, "views: 1", "{store}");
        let again = get(&format!("{url}counter"), first.cookie.as_deref()).await;
        assert_eq!(again.body, "views: 2", "{store}");
        let page = get(&url, again.cookie.as_deref().or(first.cookie.as_deref())).await;
        assert!(page.body.contains("id=\"backend\">mysql<"), "{store}");
    }
}

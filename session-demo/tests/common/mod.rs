//! Starting the demo binary for the tests, and a small HTTP client.
#![allow(dead_code, unreachable_pub, reason = "shared by several test files")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Every wait in these tests is bounded by this.
pub const STEP: Duration = Duration::from_secs(60);

/// The demo binary, with no key from the environment.
pub fn demo(data_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_session-demo"));
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_remove("SESSION_DEMO_KEY")
        .kill_on_drop(true);
    command
}

/// Start the demo on a free port; its URL and the process (killed on drop).
pub async fn start_demo(data_dir: &Path, args: &[&str]) -> (String, Child) {
    let mut child = demo(data_dir, args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the demo binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(STEP, lines.next_line())
        .await
        .expect("the demo printed its address in time")
        .unwrap()
        .expect("the demo printed its address");
    let url = line
        .split("listening on ")
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim()
        .to_owned();
    (url, child)
}

/// A reply: status, the session cookie's `name=value` if one was set, body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub cookie: Option<String>,
    pub body: String,
}

/// `GET url` with `cookie` (`name=value`), bounded by [`STEP`].
pub async fn get(url: &str, cookie: Option<&str>) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = hyper::Request::get(url);
    if let Some(cookie) = cookie {
        request = request.header(hyper::header::COOKIE, cookie);
    }
    let response = tokio::time::timeout(STEP, client.request(request.body(Empty::new()).unwrap()))
        .await
        .expect("the demo answered in time")
        .unwrap();
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get(hyper::header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        cookie,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

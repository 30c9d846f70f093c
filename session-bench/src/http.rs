//! The request-level measurement: the demo's counter route (read the views,
//! write them back plus one) through a session layer, next to the same
//! axum route with no session layer, in one run.
//!
//! Variants: plain axum (no sessions); `session-tower` on our memory and
//! Redis stores; `tower-sessions` 0.14 (the generation axum-login uses) on
//! its own memory store and on `tower-sessions-redis-store` (fred). Every
//! variant serves on a loopback port of this process; C clients, each with
//! its own keep-alive HTTP/1.1 connection (hyper) and its own session
//! cookie, send `GET /counter` back to back for a fixed time. Variants are
//! interleaved round by round, so slow drifts of a shared machine hit them
//! all alike; the table reports medians over the rounds.
//!
//! A layer's *overhead* is the time per request it adds over plain axum:
//! `1/throughput - 1/throughput(plain)` (at C=1 that is the difference of
//! the mean latencies; p50s are whole microseconds, too coarse for it).

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper::header::{COOKIE, HOST, SET_COOKIE};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use session_core::SessionStore as _;
use tokio::net::TcpStream;
use tokio::sync::{Barrier, oneshot};

use crate::{Env, Result};

/// One way of serving the counter route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Variant {
    /// axum with no session layer: the baseline.
    Plain,
    /// `session-tower` on `session-store-memory`.
    OursMemory,
    /// `session-tower` on `session-store-redis`.
    OursRedis,
    /// `tower-sessions` on its own `MemoryStore`.
    TowerSessionsMemory,
    /// `tower-sessions` on `tower-sessions-redis-store`.
    TowerSessionsRedis,
}

impl Variant {
    /// Every variant, in table order.
    pub const ALL: [Self; 5] = [
        Self::Plain,
        Self::OursMemory,
        Self::TowerSessionsMemory,
        Self::OursRedis,
        Self::TowerSessionsRedis,
    ];

    /// Its name in the results.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "axum, no sessions",
            Self::OursMemory => "session-tower + memory",
            Self::OursRedis => "session-tower + redis",
            Self::TowerSessionsMemory => "tower-sessions + memory",
            Self::TowerSessionsRedis => "tower-sessions + redis",
        }
    }

    /// Whether it needs the Redis server.
    #[must_use]
    pub fn uses_redis(self) -> bool {
        matches!(self, Self::OursRedis | Self::TowerSessionsRedis)
    }

    /// The variant it is compared with: the other layer on the same engine.
    #[must_use]
    pub fn peer(self) -> Option<Self> {
        match self {
            Self::OursMemory => Some(Self::TowerSessionsMemory),
            Self::OursRedis => Some(Self::TowerSessionsRedis),
            _ => None,
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct HttpBench {
    /// Variants, in the order they run each round.
    pub variants: Vec<Variant>,
    /// Client counts (one connection and one session each).
    pub concurrency: Vec<usize>,
    /// How long each (variant, C) is measured per round.
    pub duration: Duration,
    /// Rounds; the table reports medians over them.
    pub rounds: usize,
    /// Where Redis is.
    pub env: Env,
}

/// One (variant, C, round) measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpLine {
    /// `http`.
    pub kind: String,
    /// The benchmarked tree's commit.
    pub commit: String,
    /// Cores of the machine.
    pub cores: usize,
    /// Whether this was a `--quick` run.
    pub quick: bool,
    /// Which variant.
    pub variant: String,
    /// Clients.
    pub concurrency: usize,
    /// Round number, from 0.
    pub round: usize,
    /// Requests completed in the timed window.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
}

/// A running server and how to stop it.
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    /// Removes what the variant wrote to a shared server.
    cleanup: Option<Cleanup>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// Given the session cookie values the clients ended with.
type Cleanup = Box<dyn FnOnce(Vec<String>) -> BoxFuture + Send>;

fn random_key() -> Result<Vec<u8>> {
    let mut key = vec![0u8; 64];
    getrandom::fill(&mut key).map_err(|e| format!("no randomness: {e}"))?;
    Ok(key)
}

/// A fresh key prefix on the shared Redis, for our store.
fn prefix() -> Result<String> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("bench_http_{hex}:"))
}

async fn tower_sessions_counter(
    session: tower_sessions::Session,
) -> std::result::Result<String, axum::http::StatusCode> {
    let failed = |_| axum::http::StatusCode::SERVICE_UNAVAILABLE;
    let views: u64 = session.get("views").await.map_err(failed)?.unwrap_or(0) + 1;
    session.insert("views", views).await.map_err(failed)?;
    Ok(format!("views: {views}"))
}

fn ours(store: impl session_core::SessionStore) -> Result<Router> {
    let layer = session_tower::SessionLayer::builder(store)
        .with_key(random_key()?)
        .build()?;
    Ok(Router::new()
        .route("/counter", get(session_demo::counter))
        .layer(layer))
}

async fn app(variant: Variant, env: &Env) -> Result<(Router, Option<Cleanup>)> {
    Ok(match variant {
        Variant::Plain => (
            Router::new().route("/counter", get(|| async { "views: 1" })),
            None,
        ),
        Variant::OursMemory => (ours(session_store_memory::MemoryStore::new())?, None),
        Variant::OursRedis => {
            let store = session_store_redis::RedisStoreBuilder::new()
                .with_namespace(prefix()?)
                .connect(&env.redis_url)
                .await
                .map_err(|e| format!("Redis at {}: {e}", env.redis_url))?;
            let store = Arc::new(store);
            let cleanup: Cleanup = {
                let store = Arc::clone(&store);
                Box::new(move |_| Box::pin(async move { Ok(store.clear().await?) }))
            };
            (ours(store)?, Some(cleanup))
        }
        Variant::TowerSessionsMemory => {
            let layer =
                tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default());
            (
                Router::new()
                    .route("/counter", get(tower_sessions_counter))
                    .layer(layer),
                None,
            )
        }
        Variant::TowerSessionsRedis => {
            use tower_sessions_redis_store::fred::prelude::{ClientLike as _, Config, Pool};
            let config = Config::from_url(&env.redis_url)?;
            // The pool size of tower-sessions-redis-store's own example.
            let pool = Pool::new(config, None, None, None, 6)?;
            let _connection = pool.connect();
            tokio::time::timeout(Duration::from_secs(10), pool.wait_for_connect())
                .await
                .map_err(|_| format!("Redis at {}: no connection in 10 s", env.redis_url))??;
            let store = tower_sessions_redis_store::RedisStore::new(pool.clone());
            let layer = tower_sessions::SessionManagerLayer::new(store);
            // Its keys are the bare session IDs (the cookie values): delete
            // exactly those the clients were given.
            let cleanup: Cleanup = Box::new(move |ids: Vec<String>| {
                Box::pin(async move {
                    use tower_sessions_redis_store::fred::prelude::KeysInterface as _;
                    for chunk in ids.chunks(500) {
                        let _: i64 = pool.del(chunk.to_vec()).await?;
                    }
                    Ok(())
                })
            });
            (
                Router::new()
                    .route("/counter", get(tower_sessions_counter))
                    .layer(layer),
                Some(cleanup),
            )
        }
    })
}

async fn serve(variant: Variant, env: &Env) -> Result<Server> {
    let (router, cleanup) = app(variant, env).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(Server {
        addr,
        stop,
        task,
        cleanup,
    })
}

/// What one client saw.
struct ClientRun {
    hist: Histogram<u64>,
    requests: u64,
    /// The session cookie's value it ended with.
    cookie_value: Option<String>,
}

/// `name=value` of the first `Set-Cookie`, if any.
fn set_cookie(headers: &hyper::HeaderMap) -> Option<String> {
    let value = headers.get(SET_COOKIE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_owned())
}

async fn client(addr: SocketAddr, start: Arc<Barrier>, duration: Duration) -> Result<ClientRun> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut cookie: Option<String> = None;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut requests = 0u64;
    // One untimed request starts the session; then all clients start
    // together and run until the deadline.
    let mut timed = false;
    let mut deadline = Instant::now();
    loop {
        let mut request = Request::get("/counter").header(HOST, "bench");
        if let Some(cookie) = &cookie {
            request = request.header(COOKIE, cookie.as_str());
        }
        let request = request.body(Empty::<Bytes>::new())?;
        sender.ready().await?;
        let sent = Instant::now();
        let response = sender.send_request(request).await?;
        if !response.status().is_success() {
            return Err(format!("GET /counter answered {}", response.status()).into());
        }
        if let Some(set) = set_cookie(response.headers()) {
            cookie = Some(set);
        }
        let body = response.into_body().collect().await?.to_bytes();
        if !body.starts_with(b"views: ") {
            return Err(format!("unexpected body {:?}", String::from_utf8_lossy(&body)).into());
        }
        let now = Instant::now();
        if timed {
            hist.saturating_record(u64::try_from((now - sent).as_micros()).unwrap_or(u64::MAX));
            requests += 1;
            if now >= deadline {
                break;
            }
        } else {
            start.wait().await;
            timed = true;
            deadline = Instant::now() + duration;
        }
    }
    let cookie_value = cookie.and_then(|c| c.split_once('=').map(|(_, v)| v.to_owned()));
    Ok(ClientRun {
        hist,
        requests,
        cookie_value,
    })
}

/// Run `clients` clients against `addr` for `duration`.
async fn measure(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
) -> Result<(f64, Histogram<u64>, u64, Vec<String>)> {
    let start = Arc::new(Barrier::new(clients + 1));
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client(addr, Arc::clone(&start), duration)))
        .collect();
    start.wait().await;
    let began = Instant::now();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut requests = 0;
    let mut cookies = Vec::new();
    for task in tasks {
        let run = task.await??;
        hist.add(&run.hist)?;
        requests += run.requests;
        cookies.extend(run.cookie_value);
    }
    let seconds = began.elapsed().as_secs_f64();
    #[allow(
        clippy::cast_precision_loss,
        reason = "request counts are far below 2^52"
    )]
    let rps = requests as f64 / seconds;
    Ok((rps, hist, requests, cookies))
}

#[allow(
    clippy::cast_precision_loss,
    reason = "latencies in µs are far below 2^52"
)]
fn quantile(hist: &Histogram<u64>, q: f64) -> f64 {
    hist.value_at_quantile(q) as f64
}

impl HttpBench {
    /// Run every round and return its lines (also printed as they come).
    ///
    /// # Errors
    ///
    /// A server that cannot be reached (naming its address), a request
    /// that fails or answers anything but the counter.
    pub async fn run(&self, commit: &str, cores: usize, quick: bool) -> Result<Vec<HttpLine>> {
        let mut lines = Vec::new();
        for round in 0..self.rounds {
            for &variant in &self.variants {
                let server = serve(variant, &self.env).await?;
                let mut cookies = Vec::new();
                for &clients in &self.concurrency {
                    let (rps, hist, requests, seen) =
                        measure(server.addr, clients, self.duration).await?;
                    cookies.extend(seen);
                    let line = HttpLine {
                        kind: "http".to_owned(),
                        commit: commit.to_owned(),
                        cores,
                        quick,
                        variant: variant.name().to_owned(),
                        concurrency: clients,
                        round,
                        requests,
                        rps,
                        p50_us: quantile(&hist, 0.5),
                        p99_us: quantile(&hist, 0.99),
                    };
                    eprintln!(
                        "  round {round}: {:<24} C={clients:<3} {:>9.0} req/s  p50 {:>6} µs  p99 {:>6} µs",
                        variant.name(),
                        line.rps,
                        line.p50_us,
                        line.p99_us
                    );
                    lines.push(line);
                }
                let _ = server.stop.send(());
                let _ = server.task.await;
                if let Some(cleanup) = server.cleanup {
                    cleanup(cookies).await?;
                }
            }
        }
        Ok(lines)
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => f64::midpoint(xs[n / 2 - 1], xs[n / 2]),
    }
}

/// Medians over rounds of one (variant, C).
#[derive(Clone, Copy, Debug)]
struct Summary {
    rps: f64,
    p50: f64,
    p99: f64,
}

fn summary(lines: &[HttpLine], variant: &str, clients: usize) -> Option<Summary> {
    let of = |f: fn(&HttpLine) -> f64| {
        let xs: Vec<f64> = lines
            .iter()
            .filter(|l| l.variant == variant && l.concurrency == clients)
            .map(f)
            .collect();
        (!xs.is_empty()).then(|| median(xs))
    };
    Some(Summary {
        rps: of(|l| l.rps)?,
        p50: of(|l| l.p50_us)?,
        p99: of(|l| l.p99_us)?,
    })
}

/// The Markdown table of `lines` (medians over rounds), with each layer's
/// overhead over plain axum and the ratio of ours to tower-sessions'.
#[must_use]
pub fn table(lines: &[HttpLine], variants: &[Variant], concurrency: &[usize]) -> String {
    let mut out = String::new();
    let rounds = lines.iter().map(|l| l.round).max().map_or(0, |r| r + 1);
    let _ = writeln!(
        out,
        "Median of {rounds} round(s). Overhead: time per request added over plain axum \
         (1/throughput - 1/throughput of plain axum).\n"
    );
    let _ = writeln!(
        out,
        "| variant | C | req/s | p50 µs | p99 µs | overhead µs/req |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let overhead = |v: Variant, c: usize| -> Option<f64> {
        let plain = summary(lines, Variant::Plain.name(), c)?;
        let this = summary(lines, v.name(), c)?;
        Some(1e6 / this.rps - 1e6 / plain.rps)
    };
    for &c in concurrency {
        for &v in variants {
            let Some(s) = summary(lines, v.name(), c) else {
                continue;
            };
            let over = if v == Variant::Plain {
                "—".to_owned()
            } else {
                overhead(v, c).map_or_else(|| "?".to_owned(), |o| format!("{o:.1}"))
            };
            let _ = writeln!(
                out,
                "| {} | {c} | {:.0} | {:.0} | {:.0} | {over} |",
                v.name(),
                s.rps,
                s.p50,
                s.p99
            );
        }
    }
    let mut ratios = String::new();
    for &v in variants {
        let Some(peer) = v.peer() else { continue };
        for &c in concurrency {
            if let (Some(ours), Some(theirs)) = (overhead(v, c), overhead(peer, c)) {
                let _ = writeln!(
                    ratios,
                    "- {} vs {}, C={c}: our overhead is {:.0}% of theirs ({ours:.1} vs {theirs:.1} µs/req)",
                    v.name(),
                    peer.name(),
                    100.0 * ours / theirs
                );
            }
        }
    }
    if !ratios.is_empty() {
        out.push('\n');
        out.push_str(&ratios);
    }
    out
}

//! `session-demo`: the views counter, values, login and logout on a real
//! server, on the store named by `--store`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use session_core::{Reaper, ReaperConfig, SessionConfig};
use session_demo::keys::{self, KeyOrigin};
use session_demo::{Info, StoreUrl};
use session_tower::SessionLayer;

/// A small web app with server-side sessions: a views counter, values you
/// set and delete, login and logout (the session ID changes at login).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:3000", value_name = "ADDR")]
    listen: SocketAddr,

    /// Where sessions are kept: memory, sqlite://PATH, sled://PATH,
    /// redis://HOST:PORT[/DB], a Redis Cluster (redis+cluster://HOST:PORT,HOST:PORT,…),
    /// mongodb://HOST:PORT, file://PATH (a directory), postgres://USER@HOST:PORT/DB (or postgresql://), mysql://USER@HOST:PORT/DB (or mariadb://…), or cookie (no store: each session sealed,
    /// encrypted, in its own cookie). Default: sqlite://DATA_DIR/sessions.db.
    #[arg(long, value_name = "URL")]
    store: Option<String>,

    /// Folder for the default SQLite store and the generated signing key.
    #[arg(long, default_value = ".session-demo", value_name = "DIR")]
    data_dir: PathBuf,

    /// File with the signing keys, one base64 key (32+ bytes) per line;
    /// the first signs, all verify. Without it, $SESSION_DEMO_KEY
    /// (comma-separated), else DATA_DIR/signing-key, generated on first
    /// start.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,

    /// Idle lifetime of a session, in seconds.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    ttl: u64,

    /// Send the cookie without `Secure`. Browsers already accept Secure
    /// cookies on http://localhost and 127.0.0.1; use this only to serve
    /// plain HTTP on another address, where anyone on the path can read it.
    #[arg(long)]
    insecure_cookie: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("session-demo: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let url: StoreUrl = match &args.store {
        Some(given) => given.parse().map_err(|e| session_core::report(&e))?,
        None => StoreUrl::Sqlite(args.data_dir.join("sessions.db")),
    };
    let env_key = std::env::var(keys::KEY_ENV).ok();
    let (keys, origin) = keys::load(env_key.as_deref(), args.key_file.as_deref(), &args.data_dir)?;
    match &origin {
        KeyOrigin::Generated(path) => eprintln!(
            "session-demo: no signing key given; generated one into {} (keep it secret; \
             set ${} or --key-file to use your own)",
            path.display(),
            keys::KEY_ENV
        ),
        KeyOrigin::File(path) => eprintln!("session-demo: signing key from {}", path.display()),
        KeyOrigin::Environment => eprintln!("session-demo: signing key from ${}", keys::KEY_ENV),
    }

    let opened = url
        .open()
        .await
        .map_err(|e| format!("cannot open store {url}: {}", session_core::report(&e)))?;
    let _reaper = match &opened.store {
        Some(store) if opened.needs_reaper => Some(Reaper::spawn(
            store.clone(),
            ReaperConfig::new(Duration::from_secs(60)),
        )),
        _ => None,
    };

    if args.ttl == 0 {
        return Err("--ttl must be at least 1 second".to_owned());
    }
    let ttl = Duration::from_secs(args.ttl);
    // Read-only visits touch at most once a minute (less for short TTLs).
    let touch_after = (ttl / 4).min(Duration::from_secs(60));
    // Every server-side store keeps a principal index: the "your sessions"
    // list and "sign out all other devices" use it.
    let sessions = match opened.store {
        Some(store) => SessionLayer::indexed_builder(store),
        None => SessionLayer::cookie_only(),
    };
    let mut sessions = sessions
        .with_backend_name(opened.backend)
        .with_config(
            SessionConfig::new()
                .with_ttl(ttl)
                .with_touch_after(touch_after),
        )
        .with_secure(!args.insecure_cookie);
    let mut keys = keys.into_iter();
    if let Some(first) = keys.next() {
        sessions = sessions.with_key(first);
    }
    for previous in keys {
        sessions = sessions.with_previous_key(previous);
    }
    let sessions = sessions.build().map_err(|e| session_core::report(&e))?;
    let app = session_demo::router(
        sessions,
        Info {
            backend: opened.backend,
            store_url: url.to_string(),
            ttl,
        },
    );

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    eprintln!("session-demo: store {url}");
    // Tests and scripts read this line to find the port.
    println!("session-demo: listening on http://{addr}/");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("server failed: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;
    use session_demo::store::STORE_FORMS;

    use super::*;

    #[test]
    fn the_help_names_every_store_form() {
        Args::command().debug_assert();
        let help = Args::command().render_long_help().to_string();
        for form in STORE_FORMS.split(", ") {
            let scheme = form.split("://").next().unwrap_or(form);
            assert!(help.contains(scheme), "--help does not mention {scheme}");
        }
    }
}

//! `session-admin`: the command line over the library half (see the crate
//! README).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use session_admin::{AdminError, Copied, Existing, Result};
use session_core::{Principal, PrincipalIndex, SessionKey, SessionStoreExt};
use session_url::StoreUrl;

/// Operate a session store: count, list, purge, export, import, migrate.
#[derive(Debug, Parser)]
#[command(name = "session-admin", version, about, long_about = None)]
struct Cli {
    /// The store: memory, sqlite://PATH, sled://PATH, file://PATH,
    /// redis://HOST:PORT[/DB], redis+cluster://HOST:PORT,...,
    /// mongodb://HOST:PORT, postgres://USER@HOST:PORT/DB,
    /// mysql://USER@HOST:PORT/DB (the demo's --store forms).
    // Parsed after clap, which would echo a bad value, password included.
    #[arg(long, value_name = "URL", env = "SESSION_ADMIN_STORE")]
    store: String,
    /// The namespace (table, key prefix, collection, tree, directory) to
    /// operate on; default: the store's own default, as the demo uses.
    #[arg(long, value_name = "NAME", env = "SESSION_ADMIN_NAMESPACE")]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the number of live sessions.
    Count,
    /// List live sessions: key (hash prefix), created, expires, size in
    /// bytes, version, principal.
    List {
        /// One JSON object per line, with the full key.
        #[arg(long)]
        json: bool,
        /// Stop after this many sessions.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// Remove expired sessions now and print how many were removed.
    PurgeExpired,
    /// Destroy sessions by key (the 64-hex hash `list --json` prints), or
    /// every session of a user ("sign out everywhere").
    Destroy {
        /// A session key; repeat for several.
        #[arg(
            long = "key",
            value_name = "KEY",
            required_unless_present = "principal"
        )]
        keys: Vec<String>,
        /// Every live session of this principal (user id).
        #[arg(long, value_name = "ID", conflicts_with = "keys")]
        principal: Option<String>,
        /// Say what would be destroyed; destroy nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write every live session as JSON lines (exact: data, times,
    /// version).
    Export {
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Read JSON lines written by `export` and store each session.
    Import {
        /// Read from here instead of standard input.
        #[arg(long = "in", value_name = "FILE")]
        input: Option<PathBuf>,
        /// Replace sessions the store already holds (default: keep them).
        #[arg(long)]
        overwrite: bool,
        /// Check every line and count; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy every live session to another store, with its expiry, so that
    /// every cookie keeps working there.
    Migrate {
        /// The target store (same forms as --store).
        #[arg(long, value_name = "URL")]
        to: String,
        /// The target's namespace (default: --namespace).
        #[arg(long, value_name = "NAME")]
        to_namespace: Option<String>,
        /// Replace sessions the target already holds (default: keep them).
        #[arg(long)]
        overwrite: bool,
        /// Read the source and count; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `text` as a store URL, or a usage error (exit 2) that hides any
/// password in it.
fn store_url(text: &str) -> StoreUrl {
    text.parse().unwrap_or_else(|e: session_url::BadStoreUrl| {
        Cli::command()
            .error(ErrorKind::ValueValidation, e.to_string())
            .exit()
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("session-admin: {}", session_core::report(&e));
            ExitCode::FAILURE
        }
    }
}

/// Open the store `url` names on `namespace`; cookie-only sessions have
/// none.
async fn open(url: &StoreUrl, namespace: Option<&str>) -> Result<Arc<dyn PrincipalIndex>> {
    let opened = url.open_in(namespace).await?;
    opened.store.ok_or(AdminError::Unsupported(
        "cookie-only sessions live in the visitors' browsers: there is no store to operate on",
    ))
}

/// A progress bar on standard error for `total` sessions, drawn only on a
/// terminal.
fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// What to do with sessions the target already holds.
fn existing(overwrite: bool) -> Existing {
    if overwrite {
        Existing::Replace
    } else {
        Existing::Keep
    }
}

/// Print what an import or a migration did.
fn summary(copied: &Copied, dry_run: bool) {
    let verb = if dry_run { "would write" } else { "wrote" };
    println!(
        "read {}, {verb} {}, already there {}, expired {}",
        copied.read, copied.written, copied.already_there, copied.expired
    );
}

async fn run(cli: Cli) -> Result<()> {
    let target = match &cli.command {
        Command::Migrate { to, .. } => Some(store_url(to)),
        _ => None,
    };
    let namespace = cli.namespace.as_deref();
    let indexed = open(&store_url(&cli.store), namespace).await?;
    let store = indexed.as_ref();
    match cli.command {
        Command::Count => println!("{}", store.len().await?),
        Command::List { json, limit } => {
            let mut out = BufWriter::new(std::io::stdout());
            session_admin::list(store, &mut out, json, limit).await?;
            out.flush().map_err(|source| AdminError::Io {
                what: "writing the listing".to_owned(),
                source,
            })?;
        }
        Command::PurgeExpired => println!("{}", store.delete_expired().await?),
        Command::Destroy {
            principal: Some(principal),
            dry_run,
            ..
        } => {
            let principal = Principal::new(principal)?;
            let destroyed = if dry_run {
                store.sessions_of(&principal).await?.len() as u64
            } else {
                store.destroy_all_of(&principal, None).await?
            };
            let verb = if dry_run {
                "would destroy"
            } else {
                "destroyed"
            };
            println!("{verb} {destroyed} live session(s) of {principal}");
        }
        Command::Destroy {
            keys,
            principal: None,
            dry_run,
        } => {
            let keys = keys
                .iter()
                .map(|k| SessionKey::parse(k))
                .collect::<session_core::Result<Vec<_>>>()?;
            let mut live = 0u64;
            for key in &keys {
                if store.exists(key).await? {
                    live += 1;
                }
                if !dry_run {
                    store.destroy(key).await?;
                }
            }
            let verb = if dry_run {
                "would destroy"
            } else {
                "destroyed"
            };
            println!("{verb} {live} live session(s) of {} key(s)", keys.len());
        }
        Command::Export { out } => {
            let bar = progress(store.len().await?, "export");
            let written = match out {
                Some(path) => {
                    let file = File::create(&path).map_err(|source| AdminError::Io {
                        what: format!("creating {}", path.display()),
                        source,
                    })?;
                    session_admin::export(store, &mut BufWriter::new(file), &bar).await?
                }
                None => {
                    let mut out = BufWriter::new(std::io::stdout());
                    session_admin::export(store, &mut out, &bar).await?
                }
            };
            bar.finish_and_clear();
            eprintln!("exported {written} session(s)");
        }
        Command::Import {
            input,
            overwrite,
            dry_run,
        } => {
            let how = existing(overwrite);
            let bar = ProgressBar::new_spinner();
            let copied = match input {
                Some(path) => {
                    let file = File::open(&path).map_err(|source| AdminError::Io {
                        what: format!("opening {}", path.display()),
                        source,
                    })?;
                    session_admin::import(store, &mut BufReader::new(file), how, dry_run, &bar)
                        .await?
                }
                None => {
                    let mut input = BufReader::new(std::io::stdin());
                    session_admin::import(store, &mut input, how, dry_run, &bar).await?
                }
            };
            bar.finish_and_clear();
            summary(&copied, dry_run);
        }
        Command::Migrate {
            overwrite,
            dry_run,
            to_namespace,
            ..
        } => {
            let Some(target) = target else {
                return Ok(());
            };
            let target = open(&target, to_namespace.as_deref().or(namespace)).await?;
            let how = existing(overwrite);
            let bar = progress(store.len().await?, "migrate");
            let copied = session_admin::migrate(store, target.as_ref(), how, dry_run, &bar).await?;
            bar.finish_and_clear();
            summary(&copied, dry_run);
        }
    }
    Ok(())
}

//! express-session's classic "views" counter, without a web framework: each
//! "request" carries the cookie the previous response set, exactly as a
//! browser would.
//!
//! Run: `cargo run -p session-core --example views`

use std::sync::Arc;

use session_core::{CookieAction, SessionConfig, SessionManager};
use session_store_memory::MemoryStore;

/// A browser's cookie jar, holding at most our one session cookie.
#[derive(Default)]
struct Browser {
    cookie: Option<String>,
}

impl Browser {
    fn apply(&mut self, action: CookieAction) {
        match action {
            CookieAction::Set { value, .. } => self.cookie = Some(value),
            CookieAction::Remove => self.cookie = None,
            _ => {}
        }
    }
}

/// The handler: `req.session.views = (req.session.views || 0) + 1`.
async fn handle(manager: &SessionManager, browser: &mut Browser) -> session_core::Result<String> {
    let mut session = manager.load(browser.cookie.as_deref()).await?;
    let views = session.get::<u64>("views")?.unwrap_or(0) + 1;
    session.insert("views", views)?;
    let body = if views == 1 {
        "welcome to the session demo. refresh!".to_owned()
    } else {
        format!("views: {views}")
    };
    let commit = session.commit().await?;
    browser.apply(commit.cookie);
    Ok(format!("{body}   [{:?}]", commit.written))
}

/// Logout: destroy the session and remove the cookie.
async fn logout(manager: &SessionManager, browser: &mut Browser) -> session_core::Result<()> {
    let mut session = manager.load(browser.cookie.as_deref()).await?;
    session.destroy();
    let commit = session.commit().await?;
    browser.apply(commit.cookie);
    println!("GET /logout      -> bye   [{:?}]", commit.written);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> session_core::Result<()> {
    let store = Arc::new(MemoryStore::new());
    let manager = SessionManager::new(store.clone(), SessionConfig::new())?;

    let mut alice = Browser::default();
    let mut bob = Browser::default();
    for _ in 0..3 {
        println!(
            "GET / (alice)    -> {}",
            handle(&manager, &mut alice).await?
        );
    }
    println!("GET / (bob)      -> {}", handle(&manager, &mut bob).await?);
    println!(
        "GET / (alice)    -> {}",
        handle(&manager, &mut alice).await?
    );
    logout(&manager, &mut alice).await?;
    println!(
        "GET / (alice)    -> {}",
        handle(&manager, &mut alice).await?
    );

    println!(
        "\nsessions in the store: {} (keys are SHA-256 hashes; the cookie secret is never stored)",
        session_core::SessionStore::len(&*store).await?
    );
    Ok(())
}

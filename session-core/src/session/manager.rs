//! [`SessionManager`]: opens sessions from a store under one policy.

use std::fmt;
use std::sync::Arc;

use super::{Changes, Pending, Session, SessionConfig, State};
use crate::{Data, Result, SessionId, SessionStore, Timestamp};

/// Loads sessions from one store under one [`SessionConfig`]. Cheap to clone.
///
/// ```
/// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/tiny_store.rs"));
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// use std::sync::Arc;
/// use session_core::{CookieAction, SessionConfig, SessionManager};
/// let store = Arc::new(TinyStore::default()); // any SessionStore
/// let manager = SessionManager::new(store, SessionConfig::new())?;
///
/// // First request: no cookie.
/// let mut session = manager.load(None).await?;
/// session.insert("views", 1)?;
/// let CookieAction::Set { value, .. } = session.commit().await?.cookie else { unreachable!() };
///
/// // Second request: the browser sends the cookie back.
/// let mut session = manager.load(Some(&value)).await?;
/// let views: u32 = session.get("views")?.unwrap_or(0);
/// session.insert("views", views + 1)?;
/// session.commit().await?;
/// assert_eq!(manager.load(Some(&value)).await?.get::<u32>("views")?, Some(2));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SessionManager {
    pub(super) store: Arc<dyn SessionStore>,
    pub(super) config: Arc<SessionConfig>,
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish()
    }
}

impl SessionManager {
    /// A manager over `store`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) if the policy is inconsistent (zero TTL,
    /// `touch_after` not shorter than `ttl`, zero attempt limits).
    pub fn new(store: Arc<dyn SessionStore>, config: SessionConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            store,
            config: Arc::new(config),
        })
    }

    /// The same policy over another store, without checking the policy
    /// again: for a web layer that keeps each request's session in a store
    /// of its own (a session sealed in the cookie, say).
    #[must_use]
    pub fn with_store(&self, store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            config: Arc::clone(&self.config),
        }
    }

    /// The store sessions are kept in.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The policy.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The session for a request that sent `cookie` (the cookie's value, if
    /// any).
    ///
    /// A missing, malformed, unknown or expired cookie yields a **new**
    /// session with a freshly generated ID: a client-chosen ID is never
    /// adopted (session fixation). A malformed value never reaches the store.
    /// A session past its absolute lifetime is destroyed and replaced by a
    /// new one.
    ///
    /// # Errors
    ///
    /// Store failures, and [`Error::Random`](crate::Error::Random) if no ID can be generated.
    pub async fn load(&self, cookie: Option<&str>) -> Result<Session> {
        match cookie.map(SessionId::parse) {
            None => self.fresh(false),
            Some(Ok(id)) => self.load_id(id).await,
            Some(Err(_)) => self.fresh(true),
        }
    }

    /// The session of an ID the caller has already checked (a web layer
    /// that verified the cookie's signature, say); the request is taken to
    /// have presented it.
    ///
    /// An unknown or expired ID yields a new session with a fresh ID, whose
    /// commit removes the cookie if nothing is stored (see
    /// [`load`](Self::load)).
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub async fn load_id(&self, id: SessionId) -> Result<Session> {
        let key = id.key();
        if let Some(record) = self.store.load(&key).await? {
            if self
                .config
                .within_lifetime(record.created_at, Timestamp::now())
            {
                return Ok(Session {
                    manager: self.clone(),
                    id,
                    key,
                    state: State::Loaded {
                        version: record.version,
                        created_at: record.created_at,
                        expires_at: record.expires_at,
                    },
                    data: record.data,
                    changes: Changes::default(),
                    pending: Pending::None,
                    presented_cookie: true,
                });
            }
            self.store.destroy(&key).await?;
        }
        self.fresh(true)
    }

    /// A new, empty session with a fresh ID, without touching the store:
    /// for a request that sent no usable cookie. `replaces_cookie` says the
    /// request did send one (unusable: tampered, unknown, undecodable), so
    /// that a commit with nothing to store removes it from the browser.
    ///
    /// # Errors
    ///
    /// [`Error::Random`](crate::Error::Random) if no ID can be generated.
    pub fn fresh(&self, replaces_cookie: bool) -> Result<Session> {
        let id = SessionId::generate()?;
        Ok(Session {
            manager: self.clone(),
            key: id.key(),
            id,
            state: State::New,
            data: Data::new(),
            changes: Changes::default(),
            pending: Pending::None,
            presented_cookie: replaces_cookie,
        })
    }
}

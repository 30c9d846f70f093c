//! [`SessionManager`]: opens sessions from a store under one policy.

use std::fmt;
use std::sync::Arc;

use super::{Changes, Pending, Session, SessionConfig, SessionInfo, State};
use crate::{
    Data, Error, Principal, PrincipalIndex, Result, SessionId, SessionKey, SessionStore, Timestamp,
};

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
    /// The same store, when it keeps a principal index.
    pub(super) index: Option<Arc<dyn PrincipalIndex>>,
    pub(super) config: Arc<SessionConfig>,
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.store)
            .field("indexed", &self.index.is_some())
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
        if config.max_sessions_per_principal.is_some() {
            return Err(Error::config(
                "session",
                "a per-principal session limit needs a store with a principal index: \
                 build the manager with SessionManager::with_index",
            ));
        }
        Ok(Self {
            store,
            index: None,
            config: Arc::new(config),
        })
    }

    /// A manager over a store that keeps a [`PrincipalIndex`]: what
    /// [`sessions_of`](Self::sessions_of),
    /// [`destroy_all_of`](Self::destroy_all_of) and a per-principal limit
    /// need.
    ///
    /// ```
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/tiny_store.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> session_core::Result<()> {
    /// use std::sync::Arc;
    /// use session_core::{Principal, SessionConfig, SessionManager};
    /// // Any store that implements PrincipalIndex.
    /// let store = Arc::new(TinyStore::default());
    /// let manager = SessionManager::with_index(store, SessionConfig::new())?;
    /// let alice = Principal::new("alice")?;
    /// for _ in 0..2 {
    ///     // Two devices log in.
    ///     let mut session = manager.load(None).await?;
    ///     session.set_principal(alice.clone());
    ///     session.commit().await?;
    /// }
    /// assert_eq!(manager.sessions_of(&alice).await?.len(), 2);
    /// assert_eq!(manager.destroy_all_of(&alice, None).await?, 2); // sign out everywhere
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), without the limit's.
    pub fn with_index(store: Arc<dyn PrincipalIndex>, config: SessionConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            store: Arc::clone(&store) as Arc<dyn SessionStore>,
            index: Some(store),
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
            index: None,
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

    /// The store's principal index, if the manager was built
    /// [`with_index`](Self::with_index).
    #[must_use]
    pub fn index(&self) -> Option<&Arc<dyn PrincipalIndex>> {
        self.index.as_ref()
    }

    fn require_index(&self, operation: &'static str) -> Result<&Arc<dyn PrincipalIndex>> {
        self.index
            .as_ref()
            .ok_or(Error::NoPrincipalIndex { operation })
    }

    /// The live sessions of `principal` ("your devices"), most recently
    /// seen first.
    ///
    /// # Errors
    ///
    /// [`Error::NoPrincipalIndex`] without an index; store failures.
    pub async fn sessions_of(&self, principal: &Principal) -> Result<Vec<SessionInfo>> {
        let index = self.require_index("sessions_of")?;
        let mut sessions: Vec<SessionInfo> = index
            .sessions_of(principal)
            .await?
            .into_iter()
            .map(|(key, record)| SessionInfo::of(key, principal.clone(), &record))
            .collect();
        sessions.sort_by(|a, b| {
            (b.last_seen, b.created_at, b.key).cmp(&(a.last_seen, a.created_at, a.key))
        });
        Ok(sessions)
    }

    /// Sign `principal` out everywhere: destroy every live session of
    /// theirs except `except` (the current one, for "sign out all other
    /// devices"). A request of a destroyed session that is still running
    /// cannot bring it back: its commit finds it missing. Returns how many
    /// were destroyed.
    ///
    /// # Errors
    ///
    /// [`Error::NoPrincipalIndex`] without an index; store failures.
    pub async fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
    ) -> Result<u64> {
        self.require_index("destroy_all_of")?
            .destroy_all_of(principal, except)
            .await
    }

    /// Sign one device of `principal` out: destroy the session under `key`
    /// if it is live and belongs to `principal` (so a key posted back by a
    /// "your devices" page cannot end someone else's session). Returns
    /// whether it did.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn destroy_session_of(
        &self,
        principal: &Principal,
        key: &SessionKey,
    ) -> Result<bool> {
        match self.store.load(key).await? {
            Some(record) if record.principal.as_ref() == Some(principal) => {
                self.store.destroy(key).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// After a login of `principal` stored `current`: end the oldest
    /// other sessions while the principal has more than the limit.
    pub(super) async fn enforce_limit(
        &self,
        principal: &Principal,
        current: &SessionKey,
    ) -> Result<()> {
        let Some(max) = self.config.max_sessions_per_principal else {
            return Ok(());
        };
        let index = self.require_index("the per-principal session limit")?;
        let mut others: Vec<(Timestamp, SessionKey)> = index
            .sessions_of(principal)
            .await?
            .into_iter()
            .filter(|(key, _)| key != current)
            .map(|(key, record)| (record.created_at, key))
            .collect();
        // The current session counts as one of the `max`.
        let excess = (others.len() + 1).saturating_sub(max.get());
        others.sort();
        for (_, key) in others.into_iter().take(excess) {
            self.store.destroy(&key).await?;
        }
        Ok(())
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
                    principal: record.principal,
                    user_agent: None,
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
            principal: None,
            user_agent: None,
        })
    }
}

//! The per-request session handle that handlers use: loaded from the store
//! on first use, never before.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use session_core::{Error, Principal, SessionId, SessionInfo, SessionKey, Timestamp};
use tokio::sync::Mutex;
use tracing::Instrument as _;

use crate::SessionError;
use crate::config::{CookieOnly, Shared, StoreUnavailable};
use crate::jar::Jar;
use crate::sealed::Unsealed;

/// How the request presented its session.
#[derive(Debug)]
pub(crate) enum Presented {
    /// No cookie or token at all.
    Nothing,
    /// One that failed verification (unsigned, tampered, unknown key).
    Unusable,
    /// A correctly signed ID; `current_key` says the signing key verified
    /// it (else a previous key did, and the value is re-signed). `value`
    /// is what was presented, sent back as is while the ID stays.
    Signed {
        id: SessionId,
        current_key: bool,
        value: String,
    },
    /// Cookie-only mode: a sealed session that opened.
    Sealed(Box<Unsealed>),
}

impl Presented {
    /// The presented session ID, and whether the current key vouched for
    /// it (else the response re-signs or re-seals it).
    pub(crate) fn id(&self) -> Option<(&SessionId, bool)> {
        match self {
            Self::Signed {
                id, current_key, ..
            } => Some((id, *current_key)),
            Self::Sealed(sealed) => Some((&sealed.id, sealed.key == 0)),
            Self::Nothing | Self::Unusable => None,
        }
    }
}

/// Which transport answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    Cookie,
    Header,
}

/// The session's state within the request.
pub(crate) enum Slot {
    /// Nobody asked for it: no store call has been made.
    Unloaded,
    /// Loaded (or new), to be committed with the response.
    Ready(session_core::Session),
    /// The store failed and the layer continues without a session: never
    /// committed.
    Degraded(session_core::Session),
    /// The store failed and the layer fails closed.
    Unavailable(Arc<Error>),
    /// The response has been produced.
    Done,
}

/// What the layer knows of one request's session.
pub(crate) struct RequestSession {
    pub(crate) shared: Arc<Shared>,
    pub(crate) presented: Presented,
    /// The request's `User-Agent`, for the device list of a logged-in
    /// session.
    pub(crate) user_agent: Option<String>,
    pub(crate) via: Via,
    pub(crate) slot: Mutex<Slot>,
    /// Cookie-only mode: the request's session, from its load on (what the
    /// commit leaves in it is sealed into the response).
    pub(crate) jar: OnceLock<Arc<Jar>>,
}

impl RequestSession {
    /// Load the session: a store call only for a correctly signed ID.
    async fn load(&self) -> Slot {
        let manager = &self.shared.manager;
        let backend = self.shared.backend;
        let loaded = match (&self.presented, &self.shared.cookie_only) {
            (presented, Some(cookie_only)) => self.load_sealed(presented, cookie_only).await,
            (Presented::Nothing, None) => manager.fresh(false),
            (Presented::Unusable | Presented::Sealed(_), None) => manager.fresh(true),
            (Presented::Signed { id, .. }, None) => {
                let span = tracing::debug_span!("session.load", backend);
                match manager.load_id(id.clone()).instrument(span).await {
                    Err(Error::Decode { key, source }) => {
                        // Stored garbage must not lock the visitor out: log
                        // the key (a hash, never the ID) and start over.
                        tracing::warn!(backend, %key, error = %source, "undecodable session record replaced by a new session");
                        if let Err(error) = manager.store().destroy(&id.key()).await {
                            tracing::warn!(backend, %key, %error, "could not remove the undecodable record");
                        }
                        manager.fresh(true)
                    }
                    other => other,
                }
            }
        };
        self.slot_of(loaded)
    }

    /// Cookie-only mode: the session the cookie carried, in a jar of its
    /// own that the core handle uses as its store.
    async fn load_sealed(
        &self,
        presented: &Presented,
        cookie_only: &CookieOnly,
    ) -> session_core::Result<session_core::Session> {
        let (id, entry) = match presented {
            Presented::Sealed(sealed) => {
                let key = sealed.id.key();
                match sealed.record(&key) {
                    Ok(record) => (Some(sealed.id.clone()), Some((key, record))),
                    Err(error) => {
                        // Only a holder of the key can seal: a bug, or a
                        // leaked key. Start over rather than lock them out.
                        tracing::warn!(%key, %error, "undecodable sealed session replaced by a new session");
                        (None, None)
                    }
                }
            }
            _ => (None, None),
        };
        let jar = Arc::new(Jar::new(
            Arc::clone(&cookie_only.name),
            cookie_only.limit,
            entry,
        ));
        let manager = self.shared.manager.with_store(Arc::clone(&jar) as _);
        // Loaded at most once per request: the slot is locked around this.
        let _ = self.jar.set(jar);
        match id {
            Some(id) => manager.load_id(id).await,
            None => manager.fresh(!matches!(presented, Presented::Nothing)),
        }
    }

    fn slot_of(&self, loaded: session_core::Result<session_core::Session>) -> Slot {
        let manager = &self.shared.manager;
        let backend = self.shared.backend;
        match loaded {
            Ok(mut session) => {
                if let Some(user_agent) = &self.user_agent {
                    session.set_user_agent(user_agent);
                }
                Slot::Ready(session)
            }
            Err(error) => {
                tracing::error!(backend, %error, "session store unavailable");
                match self.shared.on_unavailable {
                    StoreUnavailable::ContinueWithoutSession => match manager.fresh(false) {
                        Ok(session) => Slot::Degraded(session),
                        Err(_) => Slot::Unavailable(Arc::new(error)),
                    },
                    _ => Slot::Unavailable(Arc::new(error)),
                }
            }
        }
    }
}

/// One request's session, for handlers: the axum extractor (feature
/// `axum`), or `request.extensions().get::<Session>()` in any tower service
/// behind a [`SessionLayer`](crate::SessionLayer).
///
/// Cheap to clone; clones share the session, and concurrent use within the
/// request is safe (calls take turns). The store is read on the first call
/// that needs the session, never before, so a handler that does not use it
/// costs no store call. Changes are written once, when the response is
/// produced (see the crate docs for what is written when).
///
/// ```
/// # async fn handler(session: session_tower::Session) -> Result<String, session_tower::SessionError> {
/// let views: u64 = session.get("views").await?.unwrap_or(0) + 1;
/// session.insert("views", views).await?;
/// Ok(format!("{views} views"))
/// # }
/// ```
#[derive(Clone)]
pub struct Session(pub(crate) Arc<RequestSession>);

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("presented", &self.0.presented)
            .field("via", &self.0.via)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Run `f` on the core session handle (loading it first if needed):
    /// the general form of every other method.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`] if the store failed to load it,
    /// [`SessionError::Committed`] after the response was produced.
    pub async fn with<R>(
        &self,
        f: impl FnOnce(&mut session_core::Session) -> R,
    ) -> Result<R, SessionError> {
        let mut slot = self.0.slot.lock().await;
        if matches!(*slot, Slot::Unloaded) {
            *slot = self.0.load().await;
        }
        match &mut *slot {
            Slot::Ready(session) | Slot::Degraded(session) => Ok(f(session)),
            Slot::Unavailable(source) => Err(SessionError::Unavailable {
                source: Arc::clone(source),
            }),
            Slot::Done | Slot::Unloaded => Err(SessionError::Committed),
        }
    }

    /// The value under `field`, deserialized as `T`.
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with), and [`SessionError::Value`] if the stored
    /// value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>, SessionError> {
        self.with(|s| s.get(field))
            .await?
            .map_err(SessionError::Value)
    }

    /// Store `value` under `field`.
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with), and [`SessionError::Value`] if `value` does
    /// not serialize to JSON or nests too deep
    /// ([`Error::TooDeep`](session_core::Error::TooDeep), found before
    /// anything recursive runs on it).
    pub async fn insert<T: Serialize>(&self, field: &str, value: T) -> Result<(), SessionError> {
        let value = session_core::Data::value_of(field, &value).map_err(SessionError::Value)?;
        self.with(|s| s.insert_value(field, value))
            .await?
            .map_err(SessionError::Value)
    }

    /// Remove `field`, returning its value.
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with).
    pub async fn remove(&self, field: &str) -> Result<Option<Value>, SessionError> {
        self.with(|s| s.remove(field)).await
    }

    /// Remove every field (the session itself stays).
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with).
    pub async fn clear(&self) -> Result<(), SessionError> {
        self.with(session_core::Session::clear).await
    }

    /// Log out: the session is destroyed in the store and the cookie
    /// removed when the response is produced.
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with).
    pub async fn destroy(&self) -> Result<(), SessionError> {
        self.with(session_core::Session::destroy).await
    }

    /// Log in: move the session to a new ID, keeping its data, so an ID
    /// planted before login is worthless after it (session fixation). The
    /// new record is created before the old one is destroyed.
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with).
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        self.with(session_core::Session::cycle_id).await
    }

    /// Start over under a new ID with empty data (express-session's
    /// `regenerate`).
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with).
    pub async fn regenerate(&self) -> Result<(), SessionError> {
        self.with(session_core::Session::regenerate).await
    }

    /// When the stored session expires (`None` while it is not stored).
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with).
    pub async fn expires_at(&self) -> Result<Option<Timestamp>, SessionError> {
        self.with(|s| s.expires_at()).await
    }

    /// Whether the session is not stored yet.
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with).
    pub async fn is_new(&self) -> Result<bool, SessionError> {
        self.with(|s| s.is_new()).await
    }

    /// Who the session belongs to, if someone logged in with it.
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with).
    pub async fn principal(&self) -> Result<Option<Principal>, SessionError> {
        self.with(|s| s.principal().cloned()).await
    }

    /// Log in as `principal`: the session belongs to them from now on, and
    /// moves to a new ID when the response is produced (session fixation);
    /// its device (user agent, last seen) is recorded for
    /// [`devices`](Self::devices). See
    /// [`session_core::Session::set_principal`].
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with).
    pub async fn set_principal(&self, principal: Principal) -> Result<(), SessionError> {
        self.with(|s| s.set_principal(principal)).await
    }

    /// Log out but keep the session's data (under a new ID).
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with).
    pub async fn clear_principal(&self) -> Result<(), SessionError> {
        self.with(session_core::Session::clear_principal).await
    }

    /// The session's key (the hash of its ID, safe to show): compare it
    /// with [`SessionInfo::key`] to mark "this device".
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with).
    pub async fn key(&self) -> Result<SessionKey, SessionError> {
        self.with(|s| *s.key()).await
    }

    /// The logged-in user's sessions, most recently seen first ("your
    /// devices"); empty for an anonymous session.
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with); [`SessionError::NotIndexed`] unless the
    /// layer was built with [`SessionLayer::indexed_builder`](crate::SessionLayer::indexed_builder);
    /// [`SessionError::Unavailable`] if the store fails.
    pub async fn devices(&self) -> Result<Vec<SessionInfo>, SessionError> {
        let Some(principal) = self.principal().await? else {
            return Ok(Vec::new());
        };
        self.0
            .shared
            .manager
            .sessions_of(&principal)
            .await
            .map_err(SessionError::of_index)
    }

    /// Sign the logged-in user out of every other device; returns how many
    /// sessions ended (0 for an anonymous session). Their requests still
    /// in flight cannot bring them back.
    ///
    /// # Errors
    ///
    /// As [`devices`](Self::devices).
    pub async fn sign_out_others(&self) -> Result<u64, SessionError> {
        let (principal, key) = self.with(|s| (s.principal().cloned(), *s.key())).await?;
        let Some(principal) = principal else {
            return Ok(0);
        };
        self.0
            .shared
            .manager
            .destroy_all_of(&principal, Some(&key))
            .await
            .map_err(SessionError::of_index)
    }

    /// Sign the logged-in user out of the device whose session has `key`
    /// (from [`devices`](Self::devices)); only their own sessions can be
    /// ended this way. Returns whether one was.
    ///
    /// # Errors
    ///
    /// As [`with`](Self::with); [`SessionError::Unavailable`] if the store
    /// fails.
    pub async fn sign_out_device(&self, key: &SessionKey) -> Result<bool, SessionError> {
        let Some(principal) = self.principal().await? else {
            return Ok(false);
        };
        self.0
            .shared
            .manager
            .destroy_session_of(&principal, key)
            .await
            .map_err(SessionError::of_index)
    }
}

//! The per-request session handle and its lifecycle policy.
//!
//! Framework-agnostic: a middleware calls [`SessionManager::load`] with the
//! cookie value it received, hands the [`Session`] to the request handler,
//! then calls [`Session::commit`] and applies the returned [`CookieAction`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    Data, Error, Record, Result, SessionId, SessionKey, SessionStore, Timestamp, UpdateOutcome,
};

/// Lifecycle policy shared by all sessions of a [`SessionManager`].
///
/// Defaults: idle `ttl` 30 minutes, no absolute lifetime, `rolling` on,
/// `touch_after` 1 minute, `save_uninitialized` off, 5 update attempts on
/// conflict, 3 ID attempts on collision.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct SessionConfig {
    ttl: Duration,
    absolute_lifetime: Option<Duration>,
    rolling: bool,
    touch_after: Duration,
    save_uninitialized: bool,
    update_attempts: u32,
    id_attempts: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30 * 60),
            absolute_lifetime: None,
            rolling: true,
            touch_after: Duration::from_secs(60),
            save_uninitialized: false,
            update_attempts: 5,
            id_attempts: 3,
        }
    }
}

impl SessionConfig {
    /// The default policy (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Idle lifetime: a session expires `ttl` after its last write or touch.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Absolute lifetime: a session ends this long after it was created,
    /// however active it is. Expiry is never extended past it.
    pub fn with_absolute_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.absolute_lifetime = lifetime;
        self
    }

    /// Whether a request that only reads the session extends its expiry
    /// (with a [`touch`](SessionStore::touch)).
    pub fn with_rolling(mut self, rolling: bool) -> Self {
        self.rolling = rolling;
        self
    }

    /// With `rolling`, skip the touch unless it would move the expiry at
    /// least this much, so read-only requests do not write on every hit
    /// (express-session touches on every one). Must be shorter than `ttl`.
    pub fn with_touch_after(mut self, touch_after: Duration) -> Self {
        self.touch_after = touch_after;
        self
    }

    /// Whether a new session that was never modified is stored (and gets a
    /// cookie). Off by default: no cookie until there is something to keep.
    pub fn with_save_uninitialized(mut self, save: bool) -> Self {
        self.save_uninitialized = save;
        self
    }

    /// How many versioned updates [`Session::commit`] tries when concurrent
    /// writers keep winning (at least 1).
    pub fn with_update_attempts(mut self, attempts: u32) -> Self {
        self.update_attempts = attempts;
        self
    }

    /// The idle lifetime.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn validate(&self) -> Result<()> {
        let fail = |reason: &str| Err(Error::config("session", reason));
        if self.ttl < Duration::from_millis(1) {
            return fail("ttl must be at least 1 ms");
        }
        if self.touch_after >= self.ttl {
            return fail(
                "touch_after must be shorter than ttl, or rolling sessions expire while in use",
            );
        }
        if self
            .absolute_lifetime
            .is_some_and(|l| l < Duration::from_millis(1))
        {
            return fail("absolute_lifetime must be at least 1 ms");
        }
        if self.update_attempts == 0 || self.id_attempts == 0 {
            return fail("attempt limits must be at least 1");
        }
        Ok(())
    }

    /// The expiry of a session created at `created_at`, written at `now`.
    fn expiry(&self, created_at: Timestamp, now: Timestamp) -> Timestamp {
        let idle = now + self.ttl;
        match self.absolute_lifetime {
            Some(lifetime) => idle.min(created_at + lifetime),
            None => idle,
        }
    }

    fn within_lifetime(&self, created_at: Timestamp, now: Timestamp) -> bool {
        self.absolute_lifetime
            .is_none_or(|lifetime| (created_at + lifetime).is_after(now))
    }
}

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
    store: Arc<dyn SessionStore>,
    config: Arc<SessionConfig>,
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
    /// [`Error::Config`] if the policy is inconsistent (zero TTL,
    /// `touch_after` not shorter than `ttl`, zero attempt limits).
    pub fn new(store: Arc<dyn SessionStore>, config: SessionConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            store,
            config: Arc::new(config),
        })
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
    /// Store failures, and [`Error::Random`] if no ID can be generated.
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
    /// [`Error::Random`] if no ID can be generated.
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

/// What the middleware must do with the session cookie after
/// [`Session::commit`].
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CookieAction {
    /// Leave the browser's cookie as it is (or send none).
    Unchanged,
    /// Set the cookie to `value`, expiring at `expires_at`.
    Set {
        /// The session ID, in full: the cookie value. Do not log it.
        value: String,
        /// When the session expires on the server.
        expires_at: Timestamp,
    },
    /// Remove the cookie: the session is gone.
    Remove,
}

impl fmt::Debug for CookieAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unchanged => f.write_str("Unchanged"),
            Self::Set { value, expires_at } => f
                .debug_struct("Set")
                .field("value", &format_args!("{}…", value.get(..4).unwrap_or("")))
                .field("expires_at", expires_at)
                .finish(),
            Self::Remove => f.write_str("Remove"),
        }
    }
}

/// What [`Session::commit`] wrote to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Written {
    /// Nothing needed writing.
    Nothing,
    /// A new session was created.
    Created,
    /// The loaded session was updated (after `attempts` versioned updates;
    /// more than 1 means concurrent writers were merged with).
    Updated {
        /// Versioned updates tried, including the one that applied.
        attempts: u32,
    },
    /// The expiry of the unmodified session was extended.
    Touched,
    /// The session was destroyed.
    Destroyed,
    /// The data moved to a new ID and the old one was destroyed.
    Cycled,
    /// The session had been destroyed or had expired meanwhile (e.g. a
    /// concurrent logout): nothing was written, nothing was resurrected.
    Missing,
}

/// The result of [`Session::commit`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Commit {
    /// What to do with the cookie.
    pub cookie: CookieAction,
    /// What was written.
    pub written: Written,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not in the store yet.
    New,
    /// Read from (or written to) the store at this version.
    Loaded {
        version: u64,
        created_at: Timestamp,
        expires_at: Timestamp,
    },
    /// Destroyed, or found missing on commit.
    Gone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    Destroy,
    /// New ID; `keep_data` false also starts from empty data.
    Cycle {
        keep_data: bool,
    },
}

/// This handle's own changes to the top-level keys, kept so they can be
/// re-applied onto fresher data when a versioned update conflicts.
#[derive(Clone, Debug, Default)]
struct Changes {
    /// All keys were removed (before the changes below).
    cleared: bool,
    /// `Some`: inserted with this value; `None`: removed.
    keys: BTreeMap<String, Option<Value>>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        !self.cleared && self.keys.is_empty()
    }

    fn apply(&self, data: &mut Data) {
        if self.cleared {
            data.clear();
        }
        for (key, change) in &self.keys {
            match change {
                Some(value) => data.insert(key.clone(), value.clone()),
                None => data.remove(key),
            };
        }
    }
}

/// One visitor's session during one request.
///
/// Reads and writes are in memory; nothing reaches the store until
/// [`commit`](Self::commit), which decides what to write:
///
/// | state | write |
/// |---|---|
/// | new, modified (or `save_uninitialized`) | `create`; a fresh ID on the rare collision |
/// | new, unmodified | nothing, no cookie |
/// | loaded, modified | versioned `update`; on conflict reload, re-apply this handle's own changes, retry |
/// | loaded, unmodified, `rolling` | `touch`, unless it would move expiry less than `touch_after` |
/// | [`destroy`](Self::destroy) | `destroy`, removal cookie |
/// | [`cycle_id`](Self::cycle_id) / [`regenerate`](Self::regenerate) | `create` under a new ID, then `destroy` the old one |
///
/// A session destroyed or expired meanwhile is never written back.
pub struct Session {
    manager: SessionManager,
    id: SessionId,
    /// `id.key()`, kept so each commit hashes the ID once at most.
    key: SessionKey,
    state: State,
    data: Data,
    changes: Changes,
    pending: Pending,
    presented_cookie: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("modified", &self.is_modified())
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session ID (redacted in `Debug`/`Display`).
    #[must_use]
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// Whether the session is not in the store yet.
    #[must_use]
    pub fn is_new(&self) -> bool {
        self.state == State::New
    }

    /// Whether this handle changed the data since it was loaded or last
    /// committed.
    #[must_use]
    pub fn is_modified(&self) -> bool {
        !self.changes.is_empty()
    }

    /// When the stored session expires, if it is stored.
    #[must_use]
    pub fn expires_at(&self) -> Option<Timestamp> {
        match self.state {
            State::Loaded { expires_at, .. } => Some(expires_at),
            State::New | State::Gone => None,
        }
    }

    /// The whole data, read-only.
    #[must_use]
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The value under `field`, deserialized as `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Value`] if the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>> {
        self.data
            .get(field)
            .map(|v| {
                T::deserialize(v).map_err(|source| Error::Value {
                    field: field.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// Store `value` under `field`. Setting a value equal to the current one
    /// is not a modification.
    ///
    /// # Errors
    ///
    /// [`Error::Value`] if `value` does not serialize to JSON.
    pub fn insert<T: Serialize>(&mut self, field: &str, value: T) -> Result<()> {
        let value = serde_json::to_value(value).map_err(|source| Error::Value {
            field: field.to_owned(),
            source,
        })?;
        self.insert_value(field, value);
        Ok(())
    }

    /// Store a JSON `value` under `field`.
    pub fn insert_value(&mut self, field: &str, value: Value) {
        if self.data.get(field) == Some(&value) {
            return;
        }
        self.data.insert(field.to_owned(), value.clone());
        self.changes.keys.insert(field.to_owned(), Some(value));
    }

    /// Remove `field`, returning its value.
    pub fn remove(&mut self, field: &str) -> Option<Value> {
        let old = self.data.remove(field)?;
        self.changes.keys.insert(field.to_owned(), None);
        Some(old)
    }

    /// Remove every field.
    pub fn clear(&mut self) {
        if self.data.is_empty() && self.changes.is_empty() {
            return;
        }
        self.data.clear();
        self.changes = Changes {
            cleared: true,
            keys: BTreeMap::new(),
        };
    }

    /// End the session: on commit it is destroyed in the store and the
    /// cookie removed (logout).
    pub fn destroy(&mut self) {
        self.pending = Pending::Destroy;
        self.data.clear();
        self.changes = Changes::default();
    }

    /// Move the session to a new ID, keeping its data; on commit the new
    /// record is created before the old one is destroyed. Call it when the
    /// privilege level changes (login) to prevent session fixation.
    pub fn cycle_id(&mut self) {
        self.pending = Pending::Cycle { keep_data: true };
    }

    /// Like [`cycle_id`](Self::cycle_id), but start over with empty data
    /// and a new creation time (express-session's `regenerate`).
    pub fn regenerate(&mut self) {
        self.pending = Pending::Cycle { keep_data: false };
        self.clear();
    }

    /// Write what the request did to the store, following the policy in the
    /// type's docs, and say what to do with the cookie.
    ///
    /// # Errors
    ///
    /// Store failures; [`Error::Contention`] if concurrent writers kept
    /// winning for all configured attempts; [`Error::IdCollision`] if fresh
    /// IDs kept colliding. After an error in [`cycle_id`](Self::cycle_id)'s
    /// second step (destroying the old record), the new record exists but
    /// the cookie still names the old one, which still exists: the visitor
    /// stays logged in under one of the two, never under none.
    pub async fn commit(&mut self) -> Result<Commit> {
        let now = Timestamp::now();
        match (self.pending, self.state) {
            (Pending::Destroy, _) => self.commit_destroy().await,
            (_, State::Gone) => Ok(self.gone(Written::Nothing)),
            (Pending::Cycle { keep_data }, _) => self.commit_cycle(keep_data, now).await,
            (Pending::None, State::New) => {
                if self.changes.is_empty() && !self.manager.config.save_uninitialized {
                    let cookie = if self.presented_cookie {
                        CookieAction::Remove
                    } else {
                        CookieAction::Unchanged
                    };
                    return Ok(Commit {
                        cookie,
                        written: Written::Nothing,
                    });
                }
                self.create_fresh(now, now).await?;
                Ok(self.set_cookie(Written::Created))
            }
            (Pending::None, State::Loaded { .. }) if self.is_modified() => {
                self.commit_update(now).await
            }
            (
                Pending::None,
                State::Loaded {
                    version,
                    created_at,
                    expires_at,
                },
            ) => {
                let config = &self.manager.config;
                let next = config.expiry(created_at, now);
                if !config.rolling || next.duration_since(expires_at) < config.touch_after {
                    return Ok(Commit {
                        cookie: CookieAction::Unchanged,
                        written: Written::Nothing,
                    });
                }
                if self.manager.store.touch(&self.key, next).await? {
                    self.state = State::Loaded {
                        version,
                        created_at,
                        expires_at: next,
                    };
                    Ok(self.set_cookie(Written::Touched))
                } else {
                    Ok(self.gone(Written::Missing))
                }
            }
        }
    }

    async fn commit_destroy(&mut self) -> Result<Commit> {
        let stored = matches!(self.state, State::Loaded { .. });
        if stored {
            self.manager.store.destroy(&self.key).await?;
        }
        self.pending = Pending::None;
        let cookie_may_exist = stored || self.presented_cookie;
        let mut commit = self.gone(if stored {
            Written::Destroyed
        } else {
            Written::Nothing
        });
        if !cookie_may_exist {
            commit.cookie = CookieAction::Unchanged;
        }
        Ok(commit)
    }

    async fn commit_cycle(&mut self, keep_data: bool, now: Timestamp) -> Result<Commit> {
        let old = match self.state {
            State::Loaded { created_at, .. } => Some((self.key, created_at)),
            State::New | State::Gone => None,
        };
        let created_at = match old {
            Some((_, created_at)) if keep_data => created_at,
            _ => now,
        };
        if old.is_none() && self.changes.is_empty() && !self.manager.config.save_uninitialized {
            // Nothing stored and nothing to store: a fresh ID is all it takes.
            self.set_id(SessionId::generate()?);
            self.pending = Pending::None;
            return Ok(Commit {
                cookie: CookieAction::Unchanged,
                written: Written::Nothing,
            });
        }
        // Create first, destroy second: a failure in between leaves the
        // visitor with one valid session, never none.
        self.set_id(SessionId::generate()?);
        self.create_fresh(created_at, now).await?;
        self.pending = Pending::None;
        if let Some((old_key, _)) = old {
            self.manager.store.destroy(&old_key).await?;
        }
        Ok(self.set_cookie(Written::Cycled))
    }

    /// `create` under the current ID, with fresh IDs on collision.
    async fn create_fresh(&mut self, created_at: Timestamp, now: Timestamp) -> Result<()> {
        let expires_at = self.manager.config.expiry(created_at, now);
        let record = Record::with_times(self.data.clone(), created_at, expires_at);
        let attempts = self.manager.config.id_attempts;
        for attempt in 1..=attempts {
            if self.manager.store.create(&self.key, &record).await? {
                self.state = State::Loaded {
                    version: record.version,
                    created_at,
                    expires_at,
                };
                self.changes = Changes::default();
                return Ok(());
            }
            if attempt < attempts {
                self.set_id(SessionId::generate()?);
            }
        }
        Err(Error::IdCollision { attempts })
    }

    async fn commit_update(&mut self, now: Timestamp) -> Result<Commit> {
        let State::Loaded {
            mut version,
            mut created_at,
            ..
        } = self.state
        else {
            return Ok(self.gone(Written::Missing));
        };
        let key = self.key;
        let store = Arc::clone(&self.manager.store);
        let attempts = self.manager.config.update_attempts;
        for attempt in 1..=attempts {
            let expires_at = self.manager.config.expiry(created_at, now);
            let record = Record::with_times(self.data.clone(), created_at, expires_at);
            match store.update(&key, &record, version).await? {
                UpdateOutcome::Updated => {
                    self.state = State::Loaded {
                        version: version.wrapping_add(1),
                        created_at,
                        expires_at,
                    };
                    self.changes = Changes::default();
                    return Ok(self.set_cookie(Written::Updated { attempts: attempt }));
                }
                UpdateOutcome::Missing => return Ok(self.gone(Written::Missing)),
                UpdateOutcome::Conflict => {
                    // Someone else wrote first: take their data and put our
                    // own changes on top, so both survive.
                    let Some(fresh) = store.load(&key).await? else {
                        return Ok(self.gone(Written::Missing));
                    };
                    self.data = fresh.data;
                    self.changes.apply(&mut self.data);
                    version = fresh.version;
                    created_at = fresh.created_at;
                }
            }
        }
        Err(Error::Contention { attempts })
    }

    fn set_id(&mut self, id: SessionId) {
        self.key = id.key();
        self.id = id;
    }

    fn set_cookie(&self, written: Written) -> Commit {
        let expires_at = self.expires_at().unwrap_or(Timestamp::UNIX_EPOCH);
        Commit {
            cookie: CookieAction::Set {
                value: self.id.expose().to_owned(),
                expires_at,
            },
            written,
        }
    }

    fn gone(&mut self, written: Written) -> Commit {
        self.state = State::Gone;
        self.data.clear();
        self.changes = Changes::default();
        Commit {
            cookie: CookieAction::Remove,
            written,
        }
    }
}

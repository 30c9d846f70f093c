//! What [`Session::commit`] decides and writes, and what it reports.

use std::fmt;
use std::sync::Arc;

use super::device::Device;
use super::{Changes, DEVICE_FIELD, Pending, Session, State};
use crate::{Error, Record, Result, SessionId, Timestamp, UpdateOutcome};

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

impl Session {
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
        // A login in this request: the limit applies once it is stored.
        let login = self.changes.principal.clone().flatten();
        self.refresh_device(now);
        let commit = self.commit_at(now).await?;
        if let Some(principal) = login
            && matches!(
                commit.written,
                Written::Created | Written::Cycled | Written::Updated { .. }
            )
        {
            self.manager.enforce_limit(&principal, &self.key).await?;
        }
        Ok(commit)
    }

    /// A logged-in session's device metadata: the user agent when it
    /// changed, the last-seen time when it is older than the policy's
    /// interval (or at login). A change is an ordinary change of the data,
    /// so it merges with concurrent writers like any other.
    fn refresh_device(&mut self, now: Timestamp) {
        if self.principal.is_none() || self.pending == Pending::Destroy || self.state == State::Gone
        {
            return;
        }
        let stored = Device::read(&self.data);
        let login = matches!(self.changes.principal, Some(Some(_)));
        let every =
            i64::try_from(self.manager.config.last_seen_every.as_millis()).unwrap_or(i64::MAX);
        let stale = stored
            .seen
            .is_none_or(|seen| now.as_millis().saturating_sub(seen) >= every);
        let wanted = Device {
            user_agent: self
                .user_agent
                .clone()
                .or_else(|| stored.user_agent.clone()),
            seen: if login || stale {
                Some(now.as_millis())
            } else {
                stored.seen
            },
        };
        if wanted != stored {
            self.insert_checked(DEVICE_FIELD, wanted.value());
        }
    }

    async fn commit_at(&mut self, now: Timestamp) -> Result<Commit> {
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
        self.check_size()?;
        let expires_at = self.manager.config.expiry(created_at, now);
        let record = Record::with_times(self.data.clone(), created_at, expires_at)
            .with_principal(self.principal.clone());
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
        let config = Arc::clone(&self.manager.config);
        // tokio's clock, the one its sleeps follow.
        let started = tokio::time::Instant::now();
        let mut attempts = 0;
        for attempt in 1..=config.update_attempts {
            attempts = attempt;
            self.check_size()?;
            let expires_at = config.expiry(created_at, now);
            let record = Record::with_times(self.data.clone(), created_at, expires_at)
                .with_principal(self.principal.clone());
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
                    if attempt == config.update_attempts {
                        break;
                    }
                    // Spread out from the writers we collided with, within
                    // the time budget.
                    let pause = config.backoff(attempt);
                    if started.elapsed() + pause > config.update_budget {
                        break;
                    }
                    tokio::time::sleep(pause).await;
                    // Someone else wrote first: take their data and put our
                    // own changes on top, so both survive.
                    let Some(fresh) = store.load(&key).await? else {
                        return Ok(self.gone(Written::Missing));
                    };
                    self.data = fresh.data;
                    self.changes.apply(&mut self.data);
                    self.principal = match &self.changes.principal {
                        Some(ours) => ours.clone(),
                        None => fresh.principal,
                    };
                    version = fresh.version;
                    created_at = fresh.created_at;
                }
            }
        }
        Err(Error::Contention { attempts })
    }

    /// [`Error::TooLarge`] if the data, encoded, is over the limit. The text
    /// is kept in the data, so the store does not encode it again.
    fn check_size(&self) -> Result<()> {
        let bytes = self.data.encoded()?.as_bytes().len();
        let max_bytes = self.manager.config.max_data_bytes;
        if bytes > max_bytes {
            return Err(Error::TooLarge { bytes, max_bytes });
        }
        Ok(())
    }

    pub(super) fn set_id(&mut self, id: SessionId) {
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
        self.principal = None;
        Commit {
            cookie: CookieAction::Remove,
            written,
        }
    }
}

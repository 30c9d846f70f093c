//! [`SessionConfig`]: the lifecycle policy of every session of a manager.

use std::time::Duration;

use crate::{Error, Result, Timestamp};

/// Lifecycle policy shared by all sessions of a [`SessionManager`](crate::SessionManager).
///
/// Defaults: idle `ttl` 30 minutes, no absolute lifetime, `rolling` on,
/// `touch_after` 1 minute, `save_uninitialized` off, 5 update attempts on
/// conflict, 3 ID attempts on collision.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct SessionConfig {
    pub(super) ttl: Duration,
    pub(super) absolute_lifetime: Option<Duration>,
    pub(super) rolling: bool,
    pub(super) touch_after: Duration,
    pub(super) save_uninitialized: bool,
    pub(super) update_attempts: u32,
    pub(super) id_attempts: u32,
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
    /// (with a [`touch`](crate::SessionStore::touch)).
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

    /// How many versioned updates [`Session::commit`](crate::Session::commit) tries when concurrent
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

    pub(super) fn validate(&self) -> Result<()> {
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
    pub(super) fn expiry(&self, created_at: Timestamp, now: Timestamp) -> Timestamp {
        let idle = now + self.ttl;
        match self.absolute_lifetime {
            Some(lifetime) => idle.min(created_at + lifetime),
            None => idle,
        }
    }

    pub(super) fn within_lifetime(&self, created_at: Timestamp, now: Timestamp) -> bool {
        self.absolute_lifetime
            .is_none_or(|lifetime| (created_at + lifetime).is_after(now))
    }
}

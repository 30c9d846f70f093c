//! [`SessionConfig`]: the lifecycle policy of every session of a manager.

use std::time::Duration;

use crate::{Error, Result, Timestamp};

/// Lifecycle policy shared by all sessions of a [`SessionManager`](crate::SessionManager).
///
/// Defaults: idle `ttl` 30 minutes, no absolute lifetime, `rolling` on,
/// `touch_after` 1 minute, `save_uninitialized` off, data up to 1 MiB
/// encoded, versioned updates retried on conflict up to 64 times within
/// 5 seconds with jittered backoff (1 ms doubling to 100 ms), 3 ID attempts
/// on collision.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct SessionConfig {
    pub(super) ttl: Duration,
    pub(super) absolute_lifetime: Option<Duration>,
    pub(super) rolling: bool,
    pub(super) touch_after: Duration,
    pub(super) save_uninitialized: bool,
    pub(super) update_attempts: u32,
    pub(super) update_budget: Duration,
    pub(super) backoff_base: Duration,
    pub(super) backoff_cap: Duration,
    pub(super) id_attempts: u32,
    pub(super) max_data_bytes: usize,
    pub(super) max_sessions_per_principal: Option<std::num::NonZeroUsize>,
    pub(super) last_seen_every: Duration,
}

/// Default [`SessionConfig::with_max_data_bytes`]: 1 MiB.
pub const DEFAULT_MAX_DATA_BYTES: usize = 1 << 20;

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30 * 60),
            absolute_lifetime: None,
            rolling: true,
            touch_after: Duration::from_secs(60),
            save_uninitialized: false,
            update_attempts: 64,
            update_budget: Duration::from_secs(5),
            backoff_base: Duration::from_millis(1),
            backoff_cap: Duration::from_millis(100),
            id_attempts: 3,
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            max_sessions_per_principal: None,
            last_seen_every: Duration::from_secs(5 * 60),
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
    /// writers keep winning (at least 1; default 64). See
    /// [`with_update_budget`](Self::with_update_budget) for the time bound.
    pub fn with_update_attempts(mut self, attempts: u32) -> Self {
        self.update_attempts = attempts;
        self
    }

    /// How long a commit may keep retrying a conflicting update (default
    /// 5 s): no retry starts once its backoff would end past this time
    /// since the commit began, and the commit fails with
    /// [`Error::Contention`]. Together with the attempt count it bounds a
    /// commit under contention both ways.
    pub fn with_update_budget(mut self, budget: Duration) -> Self {
        self.update_budget = budget;
        self
    }

    /// The backoff between conflicting attempts: before retry `n` (1, 2,
    /// …) the commit sleeps a random time between zero and
    /// `min(cap, base × 2ⁿ⁻¹)` ("full jitter"), so that the requests of one
    /// visitor that collided spread out instead of colliding again.
    /// Default 1 ms and 100 ms. `base` zero retries at once.
    pub fn with_update_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_cap = cap;
        self
    }

    /// The largest a session's data may be, encoded as JSON text (default
    /// [`DEFAULT_MAX_DATA_BYTES`], 1 MiB). A commit that would store more
    /// fails with [`Error::TooLarge`] before the store is called: a session
    /// is not a file store, and every request of the visitor reads it.
    pub fn with_max_data_bytes(mut self, bytes: usize) -> Self {
        self.max_data_bytes = bytes;
        self
    }

    /// At most `max` live sessions per principal (`None`, the default: no
    /// limit). When a login ([`Session::set_principal`](crate::Session::set_principal))
    /// makes a principal's sessions exceed it, the **oldest** (by creation
    /// time) of its other sessions are destroyed until `max` remain, after
    /// the new session is stored. Two logins at the same instant may both
    /// count before either destroys, so the limit can be exceeded by
    /// concurrent logins until the next one; it is never undercut. Needs a
    /// store with a [`PrincipalIndex`](crate::PrincipalIndex)
    /// ([`SessionManager::with_index`](crate::SessionManager::with_index)).
    pub fn with_max_sessions_per_principal(mut self, max: Option<std::num::NonZeroUsize>) -> Self {
        self.max_sessions_per_principal = max;
        self
    }

    /// How stale a logged-in session's "last seen" time may get (default 5
    /// minutes): a request of a session with a principal whose last-seen
    /// time is older writes the new time (an `update` where the request
    /// would otherwise write nothing or only `touch`). Anonymous sessions
    /// keep no such time and pay nothing.
    pub fn with_last_seen_every(mut self, every: Duration) -> Self {
        self.last_seen_every = every;
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
        if self.backoff_cap < self.backoff_base {
            return fail("the backoff cap must not be below its base");
        }
        if self.max_data_bytes < 2 {
            return fail("max_data_bytes must leave room for at least `{}`");
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

    /// The sleep before retry `retry` (1, 2, …) of a conflicting update:
    /// uniform in `[0, min(cap, base × 2^(retry-1))]`.
    pub(super) fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(1 << retry.saturating_sub(1).min(20))
            .min(self.backoff_cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        // Jitter needs no secret; a failing OS source just means no jitter.
        let random = getrandom::u64().unwrap_or(nanos / 2);
        Duration::from_nanos(random % (nanos + 1))
    }

    pub(super) fn within_lifetime(&self, created_at: Timestamp, now: Timestamp) -> bool {
        self.absolute_lifetime
            .is_none_or(|lifetime| (created_at + lifetime).is_after(now))
    }
}

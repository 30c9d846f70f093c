//! Which failures are retried, and how often.

use std::time::Duration;

use session_core::Error;

/// How many times one store call is attempted when the server keeps rolling
/// it back for a deadlock or a lock wait timeout.
pub(crate) const ATTEMPTS: u32 = 5;

/// How many times `update` runs its conditional statement when the read
/// that follows a refusal finds the expected version live again.
pub(crate) const UPDATE_ROUNDS: u32 = 3;

/// `ER_LOCK_DEADLOCK`: the server rolled the statement back to break a
/// deadlock.
const LOCK_DEADLOCK: u16 = 1213;

/// `ER_LOCK_WAIT_TIMEOUT`: the statement waited too long for a row lock and
/// was rolled back.
const LOCK_WAIT_TIMEOUT: u16 = 1205;

/// Whether `error` is a server's refusal that left nothing written and may
/// succeed when tried again (a deadlock victim, a lock wait timeout).
pub(crate) fn is_transient(error: &Error) -> bool {
    let Error::Backend { source, .. } = error else {
        return false;
    };
    matches!(
        source.downcast_ref::<mysql_async::Error>(),
        Some(mysql_async::Error::Server(server))
            if server.code == LOCK_DEADLOCK || server.code == LOCK_WAIT_TIMEOUT
    )
}

/// The retry budget of one call.
#[derive(Debug)]
pub(crate) struct Attempts {
    made: u32,
}

impl Attempts {
    pub(crate) fn new() -> Self {
        Self { made: 1 }
    }

    /// Whether another attempt may be made; if so, waits a short, growing
    /// pause first (the operation deadline bounds the whole call anyway).
    pub(crate) async fn another(&mut self) -> bool {
        if self.made >= ATTEMPTS {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2u64 << self.made)).await;
        self.made += 1;
        true
    }
}

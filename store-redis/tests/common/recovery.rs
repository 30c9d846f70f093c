//! What the fault tests share: the deadline they give their stores, the
//! bounds they hold calls and recovery to, and the loop that waits for a
//! failed-over server to take writes again.

use std::time::Duration;

use session_core::{Error, Record, SessionId, SessionKey, SessionStore};
use session_store_redis::RedisStore;
use tokio::time::Instant;

/// The operation deadline of every store in a fault test: short, so that
/// an outage shows in seconds.
pub const DEADLINE: Duration = Duration::from_secs(1);

/// How much later than [`DEADLINE`] a call may return: the timer firing
/// and the task being polled again on a busy, shared 2-core machine. Far
/// below what an unbounded call waited (the driver's reconnect budget,
/// ~9.5 s).
pub const SLACK: Duration = Duration::from_secs(2);

/// How long a killed server's clients may go without service before the
/// test fails: a restart from an append-only file, or a failover with a
/// 1 s node timeout, takes a few seconds here.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(30);

/// A store builder with a fresh namespace and [`DEADLINE`].
pub fn builder() -> session_store_redis::RedisStoreBuilder {
    RedisStore::builder()
        .with_namespace(session_conformance::unique_namespace())
        .with_operation_timeout(DEADLINE)
}

/// A small session numbered `i`, live for ten minutes.
pub fn record(i: u64) -> Record {
    let mut data = session_core::Data::new();
    data.insert("user".into(), "ada".into());
    data.insert("i".into(), i.into());
    Record::new(data, Duration::from_secs(600))
}

/// A fresh session key.
#[allow(clippy::panic, reason = "test helper")]
pub fn new_key() -> SessionKey {
    SessionId::generate()
        .unwrap_or_else(|e| panic!("no random source: {e}"))
        .key()
}

/// Save to `keys` in turn (through the same `store`) until a save is
/// acknowledged, checking that every attempt returns within the deadline
/// (plus [`SLACK`]) with a typed error at worst; fails the test if
/// [`RECOVERY_BOUND`] has passed since `since`. Returns when the
/// acknowledgement came and how many attempts it took.
///
/// # Panics
///
/// On a slow call, an untyped error, or no recovery in time.
#[allow(clippy::panic, reason = "test helper")]
pub async fn save_until_served(
    store: &RedisStore,
    keys: &[SessionKey],
    since: Instant,
) -> (Instant, usize) {
    let mut attempts = 0;
    loop {
        let key = &keys[attempts % keys.len()];
        attempts += 1;
        let started = Instant::now();
        let saved = store.save(key, &record(attempts as u64)).await;
        let took = started.elapsed();
        assert!(took < DEADLINE + SLACK, "a save took {took:?}: {saved:?}");
        match saved {
            Ok(()) => return (Instant::now(), attempts),
            Err(Error::Timeout { .. } | Error::Backend { .. }) => {}
            Err(e) => panic!("a save during the outage: {e:?}"),
        }
        assert!(
            since.elapsed() < RECOVERY_BOUND,
            "saves were not served again within {RECOVERY_BOUND:?}"
        );
        // A refused connection fails at once: do not spin.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

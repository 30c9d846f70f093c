//! Small helpers for a backend's own tests, beside the suite: the same ones
//! the behaviours use.
//!
//! ```
//! use std::time::Duration;
//! use serde_json::json;
//! use session_conformance::fixtures::{expired, key, live, object};
//!
//! let k = key(); // a fresh random SessionKey
//! let data = object(json!({"user": "ada"}));
//! assert_eq!(data["user"], "ada");
//! assert!(live(data.clone(), Duration::from_secs(60)).is_live());
//! assert!(!expired(data).is_live());
//! # let _ = k;
//! ```

use std::time::Duration;

use serde_json::Value;
use session_core::{Data, Error, Record, SessionId, SessionKey, Timestamp};

/// A fresh random key.
///
/// # Panics
///
/// If the operating system provides no randomness.
#[must_use]
pub fn key() -> SessionKey {
    SessionId::generate()
        .unwrap_or_else(|e| panic!("cannot generate a session id: {e}"))
        .key()
}

/// Turn a `json!({...})` into session data.
///
/// # Panics
///
/// If `value` is not a JSON object.
#[must_use]
pub fn object(value: Value) -> Data {
    match value {
        Value::Object(map) => map.into(),
        other => panic!("test data must be a JSON object, got {other}"),
    }
}

/// Typical session data, with an integer beyond `i64` that engines storing
/// numbers as doubles or signed integers mangle: `{"user": "ada", "big":
/// u64::MAX}`.
#[must_use]
pub fn sample() -> Data {
    object(serde_json::json!({"user": "ada", "big": u64::MAX}))
}

/// A live record expiring `ttl` from now, created now, version 0.
#[must_use]
pub fn live(data: Data, ttl: Duration) -> Record {
    Record::new(data, ttl)
}

/// A record that expired a minute ago (created two minutes ago): expired
/// for every store, however its clock runs, without waiting.
#[must_use]
pub fn expired(data: Data) -> Record {
    let now = Timestamp::now();
    Record::with_times(
        data,
        now - Duration::from_secs(120),
        now - Duration::from_secs(60),
    )
}

/// Fail unless `result` is [`Error::Decode`] naming `key`, in its field and
/// its message: how a store must report a stored value it cannot decode.
///
/// # Panics
///
/// If it is anything else.
pub fn assert_decode_error<T: std::fmt::Debug>(result: session_core::Result<T>, key: &SessionKey) {
    match result {
        Err(err @ Error::Decode { .. }) => {
            let Error::Decode { key: named, .. } = &err else {
                unreachable!("matched as Decode above")
            };
            assert_eq!(named, key.as_str(), "decode error names the wrong key");
            assert!(
                err.to_string().contains(key.as_str()),
                "decode error message does not name the key: {err}"
            );
        }
        other => panic!("expected a decode error naming {key}, got {other:?}"),
    }
}

/// Names of what tests made on a shared server (tables, collections),
/// removed when this is dropped: at the end of a behaviour or test, passed
/// or failed. Keep one in a store factory, [`track`](Self::track) each
/// namespace it opens.
///
/// The removal is async but `Drop` cannot await: it runs on a runtime of
/// its own, on a thread of its own, and is waited for. Its failures are
/// the removal's to ignore (a table left behind is harmless).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use session_conformance::fixtures::Cleanup;
///
/// let removed = Arc::new(Mutex::new(Vec::new()));
/// let seen = Arc::clone(&removed);
/// let cleanup = Cleanup::new(move |names| {
///     let seen = Arc::clone(&seen);
///     async move { seen.lock().unwrap().extend(names) }
/// });
/// cleanup.track("a");
/// cleanup.track("b");
/// cleanup.track("a");
/// drop(cleanup);
/// assert_eq!(*removed.lock().unwrap(), ["a", "b"]);
/// ```
pub struct Cleanup {
    names: std::sync::Mutex<Vec<String>>,
    remove: Box<dyn Fn(Vec<String>) -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
}

impl Cleanup {
    /// Remove the tracked names with `remove` (called once, only if any
    /// name was tracked).
    pub fn new<F, Fut>(remove: F) -> Self
    where
        F: Fn(Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        Self {
            names: std::sync::Mutex::default(),
            remove: Box::new(move |names| Box::pin(remove(names))),
        }
    }

    /// A fresh namespace ([`unique_namespace`](crate::unique_namespace)),
    /// removed with the others.
    #[must_use]
    pub fn unique_namespace(&self) -> String {
        let name = crate::unique_namespace();
        self.track(&name);
        name
    }

    /// Remove `name` too (once, however often it is tracked).
    pub fn track(&self, name: &str) {
        let mut names = self
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
}

impl std::fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cleanup")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let names = std::mem::take(
            self.names
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if names.is_empty() {
            return;
        }
        let removal = (self.remove)(names);
        let thread = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(removal);
            }
        });
        let _ = thread.join();
    }
}

/// For one test of a server store: `factory`, a fresh namespace and a store
/// opened on it by the factory; `None` when the run opts out of the
/// factory's server ([`StoreFactory::skip_reason`](crate::StoreFactory::skip_reason)).
/// Keep the factory to the end of the test: a factory that cleans up (see
/// [`Cleanup`]) removes the namespace when it is dropped.
pub async fn fresh<F: crate::StoreFactory>(factory: F) -> Option<(F, String, F::Store)> {
    if factory.skip_reason().is_some() {
        return None;
    }
    let namespace = crate::unique_namespace();
    let store = factory.open(&namespace).await;
    Some((factory, namespace, store))
}

/// Race every write and index call over a few `keys` and `people`: four
/// tasks of 200 operations each (create, save, versioned update, destroy,
/// `sessions_of`, `destroy_all_of` keeping one key; records live for 30
/// minutes or already expired, belonging to one of `people` or to no one)
/// and a fifth running `delete_expired` 50 times. What is left is for the
/// caller to check: the suite compares the index with the records, a
/// backend's own test can look at its engine.
///
/// # Panics
///
/// If a store call fails (with its error), or a task panics.
pub async fn race_principal_writes<S>(
    store: std::sync::Arc<S>,
    keys: &[SessionKey],
    people: &[session_core::Principal],
) where
    S: session_core::PrincipalIndex,
{
    let ok = |what: &str, result: session_core::Result<()>| {
        if let Err(e) = result {
            panic!(
                "{what} failed during the race: {}",
                session_core::report(&e)
            );
        }
    };
    let record = {
        let people = people.to_vec();
        move |n: usize| {
            let record = if n.is_multiple_of(5) {
                expired(sample())
            } else {
                live(sample(), Duration::from_secs(30 * 60))
            };
            record.with_principal(people.get(n % (people.len() + 1)).cloned())
        }
    };
    let mut tasks = Vec::new();
    for writer in 0..4usize {
        let (store, keys, people, record) = (
            std::sync::Arc::clone(&store),
            keys.to_vec(),
            people.to_vec(),
            record.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..200usize {
                let n = i.wrapping_mul(31).wrapping_add(writer * 7);
                let k = &keys[n % keys.len()];
                let person = &people[n % people.len()];
                match n % 7 {
                    0 => ok("create", store.create(k, &record(n / 7)).await.map(drop)),
                    1 | 2 => ok("save", store.save(k, &record(n / 7)).await),
                    3 => match store.load(k).await {
                        Ok(Some(current)) => ok(
                            "update",
                            store
                                .update(k, &record(n / 7), current.version)
                                .await
                                .map(drop),
                        ),
                        other => ok("load", other.map(drop)),
                    },
                    4 => ok("destroy", store.destroy(k).await),
                    5 => ok("sessions_of", store.sessions_of(person).await.map(drop)),
                    _ => ok(
                        "destroy_all_of",
                        store.destroy_all_of(person, Some(k)).await.map(drop),
                    ),
                }
            }
        }));
    }
    let reaper = std::sync::Arc::clone(&store);
    tasks.push(tokio::spawn(async move {
        for _ in 0..50 {
            ok("delete_expired", reaper.delete_expired().await.map(drop));
        }
    }));
    for task in tasks {
        if let Err(e) = task.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("a racing task did not finish: {e}");
        }
    }
}

/// Create `count` sessions of `principal`, each live for `ttl` from its own
/// creation, with up to `concurrency` creates in flight (a store's 10,000
/// sessions test writes them this way). Returns their keys and the latest
/// expiry: once the clock passes it, every one of them has expired.
///
/// # Panics
///
/// If a create fails or finds its (fresh, random) key taken.
pub async fn create_sessions_of<S>(
    store: &S,
    principal: &session_core::Principal,
    count: usize,
    ttl: Duration,
    concurrency: usize,
) -> (Vec<SessionKey>, Timestamp)
where
    S: session_core::SessionStore + ?Sized,
{
    use futures::StreamExt as _;

    let keys: Vec<SessionKey> = (0..count).map(|_| key()).collect();
    let expiries: Vec<Timestamp> = futures::stream::iter(&keys)
        .map(|k| async move {
            let record = live(sample(), ttl).with_principal(Some(principal.clone()));
            match store.create(k, &record).await {
                Ok(true) => record.expires_at,
                Ok(false) => panic!("create of the fresh key {k} found it taken"),
                Err(e) => panic!("create failed: {}", session_core::report(&e)),
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let last = expiries.into_iter().max().unwrap_or(Timestamp::UNIX_EPOCH);
    (keys, last)
}

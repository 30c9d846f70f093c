//! Shared helpers for the behaviours: keys, records, sample data, clocks.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use session_core::{Data, Record, SessionKey, SessionStore, SessionStoreExt, Timestamp};
use tokio::task::JoinHandle;

use crate::StoreFactory;

pub(crate) use crate::fixtures::{expired, key, live, object};

/// `count` fresh random keys.
pub(crate) fn keys(count: usize) -> Vec<SessionKey> {
    (0..count).map(|_| key()).collect()
}

/// `{"n": n}`: small data that identifies a write.
pub(crate) fn data_n(n: i64) -> Data {
    object(json!({ "n": n }))
}

/// A live record with a long (30 minute) lifetime.
pub(crate) fn long_lived(data: Data) -> Record {
    live(data, Duration::from_secs(30 * 60))
}

/// A minute ago: the expiry used to expire a live record deterministically.
pub(crate) fn a_minute_ago() -> Timestamp {
    Timestamp::now() - Duration::from_secs(60)
}

/// Open a store on a fresh namespace.
pub(crate) async fn open<F: StoreFactory>(factory: &F) -> F::Store {
    factory.open(&crate::unique_namespace()).await
}

/// Unwrap a store result, failing with the operation's name and the error
/// chain.
pub(crate) fn ok<T>(what: &str, result: session_core::Result<T>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {}", session_core::report(&e)),
    }
}

/// The standard way to get an expired record under a key, deterministically:
/// save a live record, then touch it to a minute ago (the contract: "touching
/// to a time that is not in the future expires the record").
pub(crate) async fn save_then_expire<S: SessionStore + ?Sized>(
    store: &S,
    key: &SessionKey,
    record: &Record,
) {
    ok("save", store.save(key, record).await);
    assert!(
        ok("touch", store.touch(key, a_minute_ago()).await),
        "touch of a freshly saved live record (to a minute ago) must return true"
    );
}

/// Every live `(key, record)` of the store, sorted by key, checking that no
/// key is listed twice.
pub(crate) async fn all_sorted<S: SessionStore + ?Sized>(store: &S) -> Vec<(SessionKey, Record)> {
    let mut listed = ok("all", store.all().await);
    listed.sort_by_key(|(k, _)| *k);
    let before = listed.len();
    let mut seen = listed.clone();
    seen.dedup_by(|a, b| a.0 == b.0);
    assert_eq!(
        seen.len(),
        before,
        "all listed a key more than once: {:?}",
        listed.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    listed
}

/// `pairs` sorted by key, to compare with [`all_sorted`].
pub(crate) fn sorted(mut pairs: Vec<(SessionKey, Record)>) -> Vec<(SessionKey, Record)> {
    pairs.sort_by_key(|(k, _)| *k);
    pairs
}

/// The set of keys `all` lists.
pub(crate) async fn listed_keys<S: SessionStore + ?Sized>(store: &S) -> BTreeSet<SessionKey> {
    all_sorted(store)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Assert that nothing live is under `key`: `load` is `None` and `all` does
/// not list it.
pub(crate) async fn assert_gone<S: SessionStore + ?Sized>(store: &S, key: &SessionKey, why: &str) {
    assert_eq!(
        ok("load", store.load(key).await),
        None,
        "load must return None: {why}"
    );
    assert!(
        !ok("exists", store.exists(key).await),
        "exists must be false: {why}"
    );
    assert!(
        !listed_keys(store).await.contains(key),
        "all must not list the key: {why}"
    );
}

/// Remove everything this behaviour wrote (a shared server is cleaned up,
/// never wiped: `clear` only touches the behaviour's own namespace).
pub(crate) async fn finish<S: SessionStore + ?Sized>(store: &S) {
    ok("clear", store.clear().await);
}

/// Sleep until this process's clock reads at least `deadline`.
pub(crate) async fn sleep_until(deadline: Timestamp) {
    loop {
        let now = Timestamp::now();
        if now >= deadline {
            return;
        }
        tokio::time::sleep(deadline.duration_since(now) + Duration::from_millis(1)).await;
    }
}

/// Await spawned tasks, re-raising a task's panic (with its message) in the
/// behaviour, and return their outputs in order.
pub(crate) async fn join_tasks<T>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(v) => outputs.push(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a spawned task did not finish: {e}"),
        }
    }
    outputs
}

/// Whether two JSON values are identical: equal, and every number of the
/// same kind (unsigned, signed, float) with floats equal bit for bit (so
/// `-0.0` is not `0.0` and `1.0` is not `1`).
pub(crate) fn identical(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                x.is_f64()
                    && y.is_f64()
                    && x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits)
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| identical(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| identical(v, w)))
        }
        _ => a == b,
    }
}

/// Load `key` and assert it holds exactly `expected` (data identical bit for
/// bit, times and version equal).
pub(crate) async fn assert_loads<S: SessionStore + ?Sized>(
    store: &S,
    key: &SessionKey,
    expected: &Record,
    why: &str,
) {
    match ok("load", store.load(key).await) {
        None => panic!("load returned None, expected the record: {why}"),
        Some(got) => {
            assert!(
                ok("exists", store.exists(key).await),
                "exists must be true for a record that loads: {why}"
            );
            assert_eq!(&got, expected, "load returned another record: {why}");
            assert!(
                identical(
                    &Value::Object(got.data.as_map().clone()),
                    &Value::Object(expected.data.as_map().clone())
                ),
                "data came back equal but not identical (number kinds or float bits differ): {why}\n got: {:?}\nwant: {:?}",
                got.data,
                expected.data
            );
        }
    }
}

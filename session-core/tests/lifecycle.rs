//! The session handle's lifecycle policy, against a real store (the memory
//! store), plus a fault-injecting wrapper for the failure paths.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Faulty, Op, TinyStore, Trouble};
use serde_json::json;
use session_core::{
    CookieAction, Error, Session, SessionConfig, SessionId, SessionKey, SessionManager,
    SessionStore, Timestamp, Written,
};

fn manager_with(config: SessionConfig) -> (Arc<Faulty>, SessionManager) {
    let store = Arc::new(Faulty::default());
    let manager = SessionManager::new(store.clone(), config).unwrap();
    (store, manager)
}

fn manager() -> (Arc<Faulty>, SessionManager) {
    manager_with(SessionConfig::new())
}

/// Create a session holding `{"user": "ada"}` and return its cookie value.
async fn logged_in(manager: &SessionManager) -> String {
    let mut session = manager.load(None).await.unwrap();
    session.insert("user", "ada").unwrap();
    cookie_value(&session.commit().await.unwrap().cookie)
}

fn cookie_value(cookie: &CookieAction) -> String {
    match cookie {
        CookieAction::Set { value, .. } => value.clone(),
        other => panic!("expected a cookie to be set, got {other:?}"),
    }
}

fn key_of(cookie: &str) -> SessionKey {
    SessionId::parse(cookie).unwrap().key()
}

async fn load(manager: &SessionManager, cookie: &str) -> Session {
    let session = manager.load(Some(cookie)).await.unwrap();
    assert!(!session.is_new(), "session behind the cookie should exist");
    session
}

#[tokio::test]
async fn new_unmodified_session_writes_nothing_and_sets_no_cookie() {
    let (store, manager) = manager();
    let mut session = manager.load(None).await.unwrap();
    let commit = session.commit().await.unwrap();
    assert_eq!(commit.written, Written::Nothing);
    assert_eq!(commit.cookie, CookieAction::Unchanged);
    assert_eq!(store.len().await.unwrap(), 0);
    assert_eq!(store.calls(Op::Create), 0);
}

#[tokio::test]
async fn save_uninitialized_stores_an_empty_new_session() {
    let (store, manager) = manager_with(SessionConfig::new().with_save_uninitialized(true));
    let mut session = manager.load(None).await.unwrap();
    let commit = session.commit().await.unwrap();
    assert_eq!(commit.written, Written::Created);
    let cookie = cookie_value(&commit.cookie);
    let record = store.load(&key_of(&cookie)).await.unwrap().unwrap();
    assert!(record.data.is_empty());
}

#[tokio::test]
async fn new_modified_session_is_created_under_the_hashed_key() {
    let (store, manager) = manager();
    let mut session = manager.load(None).await.unwrap();
    session.insert("cart", json!(["apple"])).unwrap();
    let commit = session.commit().await.unwrap();
    assert_eq!(commit.written, Written::Created);
    let cookie = cookie_value(&commit.cookie);
    assert_eq!(cookie.len(), 32);
    let (key, record) = store.all().await.unwrap().pop().unwrap();
    assert_eq!(key, key_of(&cookie));
    assert_ne!(key.as_str(), cookie, "the store must never see the raw id");
    assert_eq!(record.data.get("cart"), Some(&json!(["apple"])));
    assert_eq!(record.version, 0);
}

#[tokio::test]
async fn loaded_and_modified_session_is_updated_with_its_version() {
    let (store, manager) = manager();
    let cookie = logged_in(&manager).await;
    let mut session = load(&manager, &cookie).await;
    assert_eq!(
        session.get::<String>("user").unwrap().as_deref(),
        Some("ada")
    );
    session.insert("views", 1).unwrap();
    let commit = session.commit().await.unwrap();
    assert_eq!(commit.written, Written::Updated { attempts: 1 });
    assert_eq!(cookie_value(&commit.cookie), cookie);
    let record = store.load(&key_of(&cookie)).await.unwrap().unwrap();
    assert_eq!(record.version, 1);
    assert_eq!(record.data.get("views"), Some(&json!(1)));
    assert_eq!(record.data.get("user"), Some(&json!("ada")));

    // The handle keeps working after its commit: a second change updates again.
    session.insert("views", 2).unwrap();
    assert_eq!(
        session.commit().await.unwrap().written,
        Written::Updated { attempts: 1 }
    );
    assert_eq!(
        store.load(&key_of(&cookie)).await.unwrap().unwrap().version,
        2
    );
}

#[tokio::test]
async fn two_handles_changing_different_keys_both_survive() {
    let (store, manager) = manager();
    let cookie = logged_in(&manager).await;
    let mut a = load(&manager, &cookie).await;
    let mut b = load(&manager, &cookie).await;
    a.insert("theme", "dark").unwrap();
    b.insert("cart", json!([1, 2])).unwrap();
    b.remove("user");

    assert_eq!(
        a.commit().await.unwrap().written,
        Written::Updated { attempts: 1 }
    );
    // b loaded version 0, a moved it to 1: b must merge, not overwrite.
    assert_eq!(
        b.commit().await.unwrap().written,
        Written::Updated { attempts: 2 }
    );

    let record = store.load(&key_of(&cookie)).await.unwrap().unwrap();
    assert_eq!(record.version, 2);
    assert_eq!(
        record.data.get("theme"),
        Some(&json!("dark")),
        "a's change was lost"
    );
    assert_eq!(
        record.data.get("cart"),
        Some(&json!([1, 2])),
        "b's change was lost"
    );
    assert_eq!(record.data.get("user"), None, "b's removal was lost");
    assert_eq!(b.data(), &record.data, "b sees the merged data");
}

#[tokio::test]
async fn many_concurrent_handles_each_keep_their_own_key() {
    let (store, manager) = manager_with(SessionConfig::new().with_update_attempts(64));
    let cookie = logged_in(&manager).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let manager = manager.clone();
        let cookie = cookie.clone();
        tasks.push(tokio::spawn(async move {
            let mut session = manager.load(Some(&cookie)).await.unwrap();
            session.insert(&format!("k{i}"), i).unwrap();
            session.commit().await.unwrap().written
        }));
    }
    for task in tasks {
        assert!(matches!(task.await.unwrap(), Written::Updated { .. }));
    }
    let record = store.load(&key_of(&cookie)).await.unwrap().unwrap();
    assert_eq!(record.version, 16);
    for i in 0..16 {
        assert_eq!(record.data.get(&format!("k{i}")), Some(&json!(i)));
    }
}

#[tokio::test]
async fn a_handle_that_outlives_a_concurrent_destroy_writes_nothing() {
    let (store, manager) = manager();
    let cookie = logged_in(&manager).await;
    let mut slow = load(&manager, &cookie).await;
    let mut logout = load(&manager, &cookie).await;
    logout.destroy();
    let commit = logout.commit().await.unwrap();
    assert_eq!(commit.written, Written::Destroyed);
    assert_eq!(commit.cookie, CookieAction::Remove);

    slow.insert("cart", json!(["late"])).unwrap();
    let commit = slow.commit().await.unwrap();
    assert_eq!(commit.written, Written::Missing);
    assert_eq!(commit.cookie, CookieAction::Remove);
    assert_eq!(
        store.load(&key_of(&cookie)).await.unwrap(),
        None,
        "resurrected"
    );
    assert_eq!(store.len().await.unwrap(), 0);
}

#[tokio::test]
async fn a_read_only_handle_that_outlives_a_destroy_does_not_touch_it_back() {
    let (store, manager) = manager_with(
        SessionConfig::new()
            .with_ttl(Duration::from_secs(3600))
            .with_touch_after(Duration::from_millis(1)),
    );
    let cookie = logged_in(&manager).await;
    let key = key_of(&cookie);
    // Age the record so a touch is due.
    let mut record = store.load(&key).await.unwrap().unwrap();
    record.expires_at = Timestamp::now() + Duration::from_secs(60);
    store.save(&key, &record).await.unwrap();

    let mut reader = load(&manager, &cookie).await;
    store.destroy(&key).await.unwrap();
    let commit = reader.commit().await.unwrap();
    assert_eq!(commit.written, Written::Missing);
    assert_eq!(commit.cookie, CookieAction::Remove);
    assert_eq!(
        store.load(&key).await.unwrap(),
        None,
        "resurrected by touch"
    );
}

#[tokio::test]
async fn rolling_touch_happens_only_when_due() {
    let ttl = Duration::from_secs(3600);
    let (store, manager) = manager_with(
        SessionConfig::new()
            .with_ttl(ttl)
            .with_touch_after(Duration::from_secs(300)),
    );
    let cookie = logged_in(&manager).await;
    let key = key_of(&cookie);

    // Just written: a touch would move expiry by less than touch_after.
    let mut fresh = load(&manager, &cookie).await;
    let commit = fresh.commit().await.unwrap();
    assert_eq!(commit.written, Written::Nothing);
    assert_eq!(commit.cookie, CookieAction::Unchanged);

    // Last written 10 minutes ago: due.
    let mut record = store.load(&key).await.unwrap().unwrap();
    let old_expiry = Timestamp::now() + ttl - Duration::from_secs(600);
    record.expires_at = old_expiry;
    store.save(&key, &record).await.unwrap();
    let mut stale = load(&manager, &cookie).await;
    let commit = stale.commit().await.unwrap();
    assert_eq!(commit.written, Written::Touched);
    let stored = store.load(&key).await.unwrap().unwrap();
    assert!(stored.expires_at >= old_expiry + Duration::from_secs(600));
    assert_eq!(
        stored.version, record.version,
        "touch must not bump the version"
    );
    assert_eq!(stored.data, record.data);
    assert!(
        matches!(commit.cookie, CookieAction::Set { expires_at, .. } if expires_at == stored.expires_at)
    );
}

#[tokio::test]
async fn without_rolling_a_read_only_request_writes_nothing() {
    let ttl = Duration::from_secs(3600);
    let (store, manager) = manager_with(SessionConfig::new().with_ttl(ttl).with_rolling(false));
    let cookie = logged_in(&manager).await;
    let key = key_of(&cookie);
    let mut record = store.load(&key).await.unwrap().unwrap();
    record.expires_at = Timestamp::now() + Duration::from_secs(60);
    store.save(&key, &record).await.unwrap();
    let mut session = load(&manager, &cookie).await;
    assert_eq!(session.commit().await.unwrap().written, Written::Nothing);
    assert_eq!(
        store.load(&key).await.unwrap().unwrap().expires_at,
        record.expires_at
    );
}

#[tokio::test]
async fn malformed_cookie_never_reaches_the_store_and_is_removed() {
    let (store, manager) = manager();
    for bad in [
        "",
        "short",
        "../../etc/passwd",
        &"A".repeat(33),
        &"+".repeat(32),
    ] {
        let mut session = manager.load(Some(bad)).await.unwrap();
        assert!(session.is_new());
        let commit = session.commit().await.unwrap();
        assert_eq!(
            commit.cookie,
            CookieAction::Remove,
            "stale cookie {bad:?} kept"
        );
    }
    assert_eq!(store.calls(Op::Load), 0);
}

#[tokio::test]
async fn unknown_cookie_gets_a_fresh_id_never_the_clients() {
    let (_store, manager) = manager();
    let planted = SessionId::generate().unwrap();
    let mut session = manager.load(Some(planted.expose())).await.unwrap();
    assert!(session.is_new());
    assert_ne!(
        session.id(),
        &planted,
        "session fixation: adopted the client's id"
    );
    session.insert("user", "mallory").unwrap();
    let cookie = cookie_value(&session.commit().await.unwrap().cookie);
    assert_ne!(cookie, planted.expose());
}

#[tokio::test]
async fn destroy_removes_the_session_and_the_cookie() {
    let (store, manager) = manager();
    let cookie = logged_in(&manager).await;
    let mut session = load(&manager, &cookie).await;
    session.destroy();
    let commit = session.commit().await.unwrap();
    assert_eq!(commit.written, Written::Destroyed);
    assert_eq!(commit.cookie, CookieAction::Remove);
    assert_eq!(store.len().await.unwrap(), 0);
    assert!(manager.load(Some(&cookie)).await.unwrap().is_new());
}

#[tokio::test]
async fn cycle_id_moves_the_data_to_a_new_id_and_destroys_the_old() {
    let (store, manager) = manager();
    let cookie = logged_in(&manager).await;
    let created_at = store
        .load(&key_of(&cookie))
        .await
        .unwrap()
        .unwrap()
        .created_at;
    let mut session = load(&manager, &cookie).await;
    session.insert("role", "admin").unwrap();
    session.cycle_id();
    let commit = session.commit().await.unwrap();
    assert_eq!(commit.written, Written::Cycled);
    let new_cookie = cookie_value(&commit.cookie);
    assert_ne!(new_cookie, cookie);
    assert_eq!(
        store.load(&key_of(&cookie)).await.unwrap(),
        None,
        "old id still valid"
    );
    let record = store.load(&key_of(&new_cookie)).await.unwrap().unwrap();
    assert_eq!(record.data.get("user"), Some(&json!("ada")));
    assert_eq!(record.data.get("role"), Some(&json!("admin")));
    assert_eq!(
        record.created_at, created_at,
        "cycling keeps the session's age"
    );
    assert_eq!(store.len().await.unwrap(), 1);
}

#[tokio::test]
async fn regenerate_starts_over_with_empty_data_under_a_new_id() {
    let (store, manager) = manager_with(SessionConfig::new().with_save_uninitialized(true));
    let cookie = logged_in(&manager).await;
    let mut session = load(&manager, &cookie).await;
    session.regenerate();
    let commit = session.commit().await.unwrap();
    let new_cookie = cookie_value(&commit.cookie);
    assert_ne!(new_cookie, cookie);
    assert_eq!(store.load(&key_of(&cookie)).await.unwrap(), None);
    assert!(
        store
            .load(&key_of(&new_cookie))
            .await
            .unwrap()
            .unwrap()
            .data
            .is_empty()
    );
}

#[tokio::test]
async fn cycle_id_failing_to_destroy_leaves_the_visitor_logged_in() {
    let (store, manager) = manager();
    let cookie = logged_in(&manager).await;
    let mut session = load(&manager, &cookie).await;
    session.cycle_id();
    store.set(&[Op::Destroy], Some(Trouble::Fail));
    assert!(session.commit().await.is_err());
    // The cookie the browser still holds works; the new record exists too.
    assert!(store.load(&key_of(&cookie)).await.unwrap().is_some());
    assert_eq!(store.len().await.unwrap(), 2);
}

#[tokio::test]
async fn cycle_id_failing_to_create_keeps_the_old_session() {
    let (store, manager) = manager();
    let cookie = logged_in(&manager).await;
    let mut session = load(&manager, &cookie).await;
    session.cycle_id();
    store.set(&[Op::Create], Some(Trouble::Fail));
    assert!(session.commit().await.is_err());
    assert!(store.load(&key_of(&cookie)).await.unwrap().is_some());
    assert_eq!(store.len().await.unwrap(), 1);
}

#[tokio::test]
async fn absolute_lifetime_ends_an_active_session() {
    let lifetime = Duration::from_secs(3600);
    let (store, manager) =
        manager_with(SessionConfig::new().with_absolute_lifetime(Some(lifetime)));
    let cookie = logged_in(&manager).await;
    let key = key_of(&cookie);
    let record = store.load(&key).await.unwrap().unwrap();
    assert!(record.expires_at <= record.created_at + lifetime);

    // Created two hours ago, still idle-live: the lifetime is over.
    let mut old = record.clone();
    old.created_at = Timestamp::now() - Duration::from_secs(7200);
    store.save(&key, &old).await.unwrap();
    let session = manager.load(Some(&cookie)).await.unwrap();
    assert!(session.is_new());
    assert_eq!(
        store.load(&key).await.unwrap(),
        None,
        "expired session kept"
    );
}

#[tokio::test]
async fn expiry_is_never_extended_past_the_absolute_lifetime() {
    let lifetime = Duration::from_secs(600);
    let (store, manager) = manager_with(
        SessionConfig::new()
            .with_ttl(Duration::from_secs(3600))
            .with_absolute_lifetime(Some(lifetime)),
    );
    let cookie = logged_in(&manager).await;
    let key = key_of(&cookie);
    let mut session = load(&manager, &cookie).await;
    session.insert("views", 1).unwrap();
    session.commit().await.unwrap();
    let record = store.load(&key).await.unwrap().unwrap();
    assert_eq!(record.expires_at, record.created_at + lifetime);
}

#[tokio::test]
async fn persistent_conflicts_end_in_a_contention_error() {
    let (store, manager) = manager_with(SessionConfig::new().with_update_attempts(3));
    let cookie = logged_in(&manager).await;
    let mut session = load(&manager, &cookie).await;
    session.insert("x", 1).unwrap();
    store.set(&[Op::Update], Some(Trouble::Conflict));
    let err = session.commit().await.unwrap_err();
    assert!(matches!(err, Error::Contention { attempts: 3 }), "{err:?}");
    assert_eq!(store.calls(Op::Update), 3);
}

#[tokio::test]
async fn repeated_id_collisions_end_in_an_error() {
    let (store, manager) = manager();
    store.set(&[Op::Create], Some(Trouble::Collide));
    let mut session = manager.load(None).await.unwrap();
    session.insert("x", 1).unwrap();
    let err = session.commit().await.unwrap_err();
    assert!(matches!(err, Error::IdCollision { attempts: 3 }), "{err:?}");
    assert_eq!(store.calls(Op::Create), 3);
}

#[tokio::test]
async fn typed_values_and_change_tracking() {
    let (_store, manager) = manager();
    let cookie = logged_in(&manager).await;
    let mut session = load(&manager, &cookie).await;
    assert!(!session.is_modified());
    session.insert("user", "ada").unwrap();
    assert!(
        !session.is_modified(),
        "setting an equal value is not a change"
    );
    let err = session.get::<u32>("user").unwrap_err();
    assert!(matches!(err, Error::Value { ref field, .. } if field == "user"));
    assert_eq!(session.get::<u32>("absent").unwrap(), None);
    assert_eq!(session.remove("absent"), None);
    assert!(
        !session.is_modified(),
        "removing an absent key is not a change"
    );
    session.clear();
    assert!(session.is_modified());
    assert!(session.data().is_empty());
}

#[test]
fn inconsistent_config_is_rejected_when_the_manager_is_built() {
    let store: Arc<dyn SessionStore> = Arc::new(TinyStore::default());
    for config in [
        SessionConfig::new().with_ttl(Duration::ZERO),
        SessionConfig::new()
            .with_ttl(Duration::from_secs(60))
            .with_touch_after(Duration::from_secs(60)),
        SessionConfig::new().with_absolute_lifetime(Some(Duration::ZERO)),
        SessionConfig::new().with_update_attempts(0),
    ] {
        let err = SessionManager::new(store.clone(), config).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn fresh_sessions_touch_no_store_and_remove_only_a_presented_cookie() {
    let (store, manager) = manager();
    let mut session = manager.fresh(false).unwrap();
    assert!(session.is_new());
    assert_eq!(
        session.commit().await.unwrap().cookie,
        CookieAction::Unchanged
    );
    let mut replacing = manager.fresh(true).unwrap();
    assert_eq!(
        replacing.commit().await.unwrap().cookie,
        CookieAction::Remove
    );
    assert_eq!(store.calls(Op::Load), 0);
    assert_eq!(store.calls(Op::Create), 0);
}

#[tokio::test]
async fn load_id_opens_a_known_id_and_replaces_an_unknown_one() {
    let (store, manager) = manager();
    let cookie = logged_in(&manager).await;
    let id = SessionId::parse(&cookie).unwrap();
    let session = manager.load_id(id.clone()).await.unwrap();
    assert!(!session.is_new());
    assert_eq!(session.id(), &id);
    assert_eq!(
        session.get::<String>("user").unwrap().as_deref(),
        Some("ada")
    );

    let unknown = SessionId::generate().unwrap();
    let mut session = manager.load_id(unknown.clone()).await.unwrap();
    assert!(session.is_new());
    assert_ne!(session.id(), &unknown, "an unknown ID is never adopted");
    assert_eq!(
        session.commit().await.unwrap().cookie,
        CookieAction::Remove,
        "the unknown cookie is removed"
    );
    assert_eq!(store.calls(Op::Load), 2);
}

#[tokio::test(start_paused = true)]
async fn conflicts_back_off_with_jitter_and_stop_at_the_time_budget() {
    let config = SessionConfig::new()
        .with_update_attempts(1000)
        .with_update_budget(Duration::from_secs(2))
        .with_update_backoff(Duration::from_millis(10), Duration::from_millis(200));
    let (store, manager) = manager_with(config);
    let cookie = logged_in(&manager).await;
    let mut session = load(&manager, &cookie).await;
    session.insert("x", 1).unwrap();
    store.set(&[Op::Update], Some(Trouble::Conflict));
    let started = tokio::time::Instant::now();
    let err = session.commit().await.unwrap_err();
    let waited = started.elapsed();
    let Error::Contention { attempts } = err else {
        panic!("{err:?}")
    };
    assert_eq!(store.calls(Op::Update), attempts);
    // The budget, not the count, ended it: 1000 immediate retries would
    // take no (paused) time at all, and the waits never pass the budget.
    assert!(attempts < 1000, "{attempts} attempts");
    assert!(waited <= Duration::from_secs(2), "waited {waited:?}");
    // Each wait is at most min(cap, base·2ⁿ); with a 200 ms cap, spending
    // most of 2 s takes at least 10 attempts.
    assert!(attempts >= 10, "{attempts} attempts in {waited:?}");
    assert!(
        waited >= Duration::from_millis(500),
        "waited only {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_of_one_visitor_all_commit() {
    // The store answers each call after a pause, so the requests overlap
    // and conflict for real.
    let (store, manager) = manager();
    store.set_delay(Duration::from_millis(1));
    let cookie = logged_in(&manager).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let manager = manager.clone();
        let cookie = cookie.clone();
        tasks.push(tokio::spawn(async move {
            let mut session = manager.load(Some(&cookie)).await.unwrap();
            session.insert(&format!("k{i}"), i).unwrap();
            session.commit().await.map(|c| c.written)
        }));
    }
    let mut retried = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Written::Updated { attempts }) => retried += u32::from(attempts > 1),
            other => panic!("a commit failed under contention: {other:?}"),
        }
    }
    let record = store.load(&key_of(&cookie)).await.unwrap().unwrap();
    for i in 0..64 {
        assert_eq!(record.data.get(&format!("k{i}")), Some(&json!(i)), "k{i}");
    }
    assert_eq!(record.version, 64);
    assert!(
        retried > 0,
        "the requests never conflicted: nothing was tested"
    );
}

#[tokio::test]
async fn data_over_the_size_limit_is_refused_before_the_store_is_called() {
    let (store, manager) = manager_with(SessionConfig::new().with_max_data_bytes(64));
    let mut session = manager.load(None).await.unwrap();
    session.insert("note", "x".repeat(100)).unwrap();
    let err = session.commit().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                bytes: 111,
                max_bytes: 64
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.calls(Op::Create), 0);

    let cookie = logged_in(&manager).await;
    let mut session = load(&manager, &cookie).await;
    session.insert("note", "y".repeat(100)).unwrap();
    assert!(matches!(
        session.commit().await,
        Err(Error::TooLarge { .. })
    ));
    assert_eq!(store.calls(Op::Update), 0);
    let stored = store.load(&key_of(&cookie)).await.unwrap().unwrap();
    assert_eq!(stored.data.get("note"), None, "nothing was written");
}

/// A JSON value nested `depth` arrays deep, built without recursion.
fn nested(depth: usize) -> serde_json::Value {
    let mut value = json!(1);
    for _ in 0..depth {
        value = serde_json::Value::Array(vec![value]);
    }
    value
}

#[test]
fn values_nested_thousands_deep_are_refused_without_recursing() {
    let deepest = nested(session_core::Data::MAX_DEPTH - 1);
    let too_deep = nested(session_core::Data::MAX_DEPTH);
    let thousands = nested(10_000);
    // A small stack, like a busy worker's: a recursion through 10,000
    // levels (serializing, cloning, comparing or dropping the value)
    // would overflow it and abort the test binary.
    let worker = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let (_store, manager) = manager();
            let mut session = runtime.block_on(manager.load(None)).unwrap();
            session.insert("ok", &deepest).unwrap();
            for (what, result) in [
                ("insert", session.insert("deep", &thousands)),
                ("insert of the limit + 1", session.insert("deep", &too_deep)),
                ("insert_value", session.insert_value("deep", too_deep)),
            ] {
                assert!(
                    matches!(&result, Err(Error::TooDeep { field, max_depth: 126 }) if field == "deep"),
                    "{what}: {result:?}"
                );
            }
            let err = session.insert_value("deep", thousands).unwrap_err();
            assert!(matches!(err, Error::TooDeep { .. }), "{err:?}");
            assert!(session.data().get("deep").is_none());
            assert_eq!(session.data().get("ok"), Some(&deepest));
            assert!(runtime.block_on(session.commit()).is_ok());
        })
        .unwrap();
    worker.join().unwrap();
}

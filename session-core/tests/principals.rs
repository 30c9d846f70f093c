//! Logging in with a principal: the handle's `set_principal`, device
//! metadata, "your devices", sign-out everywhere and the per-principal
//! limit, through the manager over an indexed store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use common::TinyStore;
use serde_json::json;
use session_core::{
    CookieAction, DEVICE_FIELD, Error, Principal, Record, SessionConfig, SessionId, SessionManager,
    SessionStore, Timestamp, Written,
};

fn indexed(config: SessionConfig) -> (Arc<TinyStore>, SessionManager) {
    let store = Arc::new(TinyStore::default());
    let manager = SessionManager::with_index(store.clone(), config).unwrap();
    (store, manager)
}

fn alice() -> Principal {
    Principal::new("alice").unwrap()
}

fn cookie_of(cookie: &CookieAction) -> String {
    match cookie {
        CookieAction::Set { value, .. } => value.clone(),
        other => panic!("expected a cookie, got {other:?}"),
    }
}

/// Log `principal` in from a new device with `user_agent`; the cookie.
async fn log_in(manager: &SessionManager, principal: &Principal, user_agent: &str) -> String {
    let mut session = manager.load(None).await.unwrap();
    session.set_user_agent(user_agent);
    session.insert("cart", 1).unwrap();
    session.set_principal(principal.clone());
    cookie_of(&session.commit().await.unwrap().cookie)
}

fn key_of(cookie: &str) -> session_core::SessionKey {
    SessionId::parse(cookie).unwrap().key()
}

#[tokio::test]
async fn login_cycles_the_id_and_stores_principal_and_device() {
    let (store, manager) = indexed(SessionConfig::new());
    let mut session = manager.load(None).await.unwrap();
    session.insert("cart", 1).unwrap();
    let anonymous = cookie_of(&session.commit().await.unwrap().cookie);
    assert!(
        store
            .load(&key_of(&anonymous))
            .await
            .unwrap()
            .unwrap()
            .data
            .get(DEVICE_FIELD)
            .is_none(),
        "an anonymous session keeps no device metadata"
    );

    let mut session = manager.load(Some(&anonymous)).await.unwrap();
    session.set_user_agent("Firefox/140");
    session.set_principal(alice());
    assert_eq!(session.principal(), Some(&alice()));
    let before = Timestamp::now();
    let commit = session.commit().await.unwrap();
    assert_eq!(
        commit.written,
        Written::Cycled,
        "login moves the session to a new ID"
    );
    let cookie = cookie_of(&commit.cookie);
    assert_ne!(cookie, anonymous);
    assert_eq!(store.load(&key_of(&anonymous)).await.unwrap(), None);

    let record = store.load(&key_of(&cookie)).await.unwrap().unwrap();
    assert_eq!(record.principal, Some(alice()));
    assert_eq!(
        record.data.get("cart"),
        Some(&json!(1)),
        "login keeps the data"
    );
    let devices = manager.sessions_of(&alice()).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].key, key_of(&cookie));
    assert_eq!(devices[0].user_agent.as_deref(), Some("Firefox/140"));
    assert!(devices[0].last_seen.is_some_and(|t| t >= before));

    // The next request sees the principal.
    let session = manager.load(Some(&cookie)).await.unwrap();
    assert_eq!(session.principal(), Some(&alice()));
}

#[tokio::test]
async fn last_seen_is_written_only_when_stale() {
    let (store, manager) = indexed(SessionConfig::new());
    let cookie = log_in(&manager, &alice(), "Safari").await;
    // A request soon after: nothing to write (the default interval is 5 min).
    let mut session = manager.load(Some(&cookie)).await.unwrap();
    session.set_user_agent("Safari");
    assert_eq!(session.commit().await.unwrap().written, Written::Nothing);

    // Age the stored last-seen time by 10 minutes.
    let key = key_of(&cookie);
    let mut record = store.load(&key).await.unwrap().unwrap();
    let old = Timestamp::now() - Duration::from_secs(600);
    record.data.insert(
        DEVICE_FIELD.into(),
        json!({"ua": "Safari", "seen": old.as_millis()}),
    );
    store.save(&key, &record).await.unwrap();
    let mut session = manager.load(Some(&cookie)).await.unwrap();
    session.set_user_agent("Safari");
    assert!(matches!(
        session.commit().await.unwrap().written,
        Written::Updated { .. }
    ));
    let seen = manager.sessions_of(&alice()).await.unwrap()[0]
        .last_seen
        .unwrap();
    assert!(seen > old + Duration::from_secs(500));

    // A new user agent is recorded at once.
    let mut session = manager.load(Some(&cookie)).await.unwrap();
    session.set_user_agent(&"Chrome ".repeat(100));
    assert!(matches!(
        session.commit().await.unwrap().written,
        Written::Updated { .. }
    ));
    let ua = manager.sessions_of(&alice()).await.unwrap()[0]
        .user_agent
        .clone()
        .unwrap();
    assert_eq!(ua.chars().count(), 256, "the user agent is truncated");
}

#[tokio::test]
async fn sign_out_everywhere_else_keeps_only_the_current_device() {
    let (store, manager) = indexed(SessionConfig::new());
    let bob = Principal::new("bob").unwrap();
    let phone = log_in(&manager, &alice(), "phone").await;
    let laptop = log_in(&manager, &alice(), "laptop").await;
    let tablet = log_in(&manager, &alice(), "tablet").await;
    let bobs = log_in(&manager, &bob, "bob's").await;
    let devices = manager.sessions_of(&alice()).await.unwrap();
    assert_eq!(devices.len(), 3);

    // A request of the phone is in flight while the laptop signs out the others.
    let mut in_flight = manager.load(Some(&phone)).await.unwrap();
    in_flight.insert("cart", 2).unwrap();
    let destroyed = manager
        .destroy_all_of(&alice(), Some(&key_of(&laptop)))
        .await
        .unwrap();
    assert_eq!(destroyed, 2);
    assert_eq!(in_flight.commit().await.unwrap().written, Written::Missing);
    assert_eq!(
        store.load(&key_of(&phone)).await.unwrap(),
        None,
        "not resurrected"
    );
    assert_eq!(store.load(&key_of(&tablet)).await.unwrap(), None);
    let left: Vec<_> = manager
        .sessions_of(&alice())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(left, [key_of(&laptop)]);
    assert_eq!(manager.sessions_of(&bob).await.unwrap().len(), 1);

    // One device by key: only the principal's own.
    assert!(
        !manager
            .destroy_session_of(&alice(), &key_of(&bobs))
            .await
            .unwrap()
    );
    assert!(store.load(&key_of(&bobs)).await.unwrap().is_some());
    assert!(
        manager
            .destroy_session_of(&bob, &key_of(&bobs))
            .await
            .unwrap()
    );
    assert_eq!(store.load(&key_of(&bobs)).await.unwrap(), None);
}

#[tokio::test]
async fn the_per_principal_limit_ends_the_oldest_sessions() {
    let config = SessionConfig::new().with_max_sessions_per_principal(NonZeroUsize::new(2));
    let (store, manager) = indexed(config);
    let first = log_in(&manager, &alice(), "1").await;
    let second = log_in(&manager, &alice(), "2").await;
    // Distinct creation times (logins within one millisecond tie).
    for (cookie, minutes) in [(&first, 20), (&second, 10)] {
        let key = key_of(cookie);
        let mut record = store.load(&key).await.unwrap().unwrap();
        record.created_at = Timestamp::now() - Duration::from_secs(60 * minutes);
        store.save(&key, &record).await.unwrap();
    }
    assert_eq!(manager.sessions_of(&alice()).await.unwrap().len(), 2);
    let third = log_in(&manager, &alice(), "3").await;
    assert_eq!(
        store.load(&key_of(&first)).await.unwrap(),
        None,
        "the oldest is ended"
    );
    assert!(store.load(&key_of(&second)).await.unwrap().is_some());
    assert!(store.load(&key_of(&third)).await.unwrap().is_some());
    let other = log_in(&manager, &Principal::new("bob").unwrap(), "b").await;
    assert!(
        store.load(&key_of(&other)).await.unwrap().is_some(),
        "per principal"
    );
    assert_eq!(manager.sessions_of(&alice()).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_limit_or_an_index_call_without_an_index_is_an_error() {
    let store = Arc::new(TinyStore::default());
    let limited = SessionConfig::new().with_max_sessions_per_principal(NonZeroUsize::new(3));
    assert!(matches!(
        SessionManager::new(store.clone(), limited),
        Err(Error::Config { .. })
    ));
    let plain = SessionManager::new(store, SessionConfig::new()).unwrap();
    assert!(matches!(
        plain.sessions_of(&alice()).await,
        Err(Error::NoPrincipalIndex { .. })
    ));
    assert!(matches!(
        plain.destroy_all_of(&alice(), None).await,
        Err(Error::NoPrincipalIndex { .. })
    ));
}

#[tokio::test]
async fn clearing_the_principal_keeps_the_data_under_a_new_id() {
    let (store, manager) = indexed(SessionConfig::new());
    let cookie = log_in(&manager, &alice(), "ua").await;
    let mut session = manager.load(Some(&cookie)).await.unwrap();
    session.clear_principal();
    let commit = session.commit().await.unwrap();
    assert_eq!(commit.written, Written::Cycled);
    let record = store
        .load(&key_of(&cookie_of(&commit.cookie)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.principal, None);
    assert_eq!(record.data.get("cart"), Some(&json!(1)));
    assert!(record.data.get(DEVICE_FIELD).is_none());
    assert!(manager.sessions_of(&alice()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_concurrent_writer_keeps_the_login() {
    let (store, manager) = indexed(SessionConfig::new());
    let cookie = log_in(&manager, &alice(), "ua").await;
    let key = key_of(&cookie);
    // Two requests of the session: one changes the cart, the other the
    // principal's data; both load version N.
    let mut first = manager.load(Some(&cookie)).await.unwrap();
    let mut second = manager.load(Some(&cookie)).await.unwrap();
    first.insert("cart", 5).unwrap();
    first.commit().await.unwrap();
    second.insert("theme", "dark").unwrap();
    assert!(matches!(
        second.commit().await.unwrap().written,
        Written::Updated { attempts: 2 }
    ));
    let record: Record = store.load(&key).await.unwrap().unwrap();
    assert_eq!(
        record.principal,
        Some(alice()),
        "the merge keeps the principal"
    );
    assert_eq!(record.data.get("cart"), Some(&json!(5)));
    assert_eq!(record.data.get("theme"), Some(&json!("dark")));
}

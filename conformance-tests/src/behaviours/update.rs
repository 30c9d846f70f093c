//! The versioned `update`: applied, `Missing`, `Conflict`.

use std::time::Duration;

use serde_json::json;
use session_core::{Record, SessionStore, Timestamp, UpdateOutcome};

use crate::StoreFactory;
use crate::support::{
    a_minute_ago, assert_gone, assert_loads, data_n, finish, key, long_lived, object, ok, open,
    save_then_expire,
};

/// "`update`: the stored version becomes `expected_version + 1`": an update
/// with the current version is applied, replaces data, `created_at` and
/// `expires_at` from the record, and ignores `record.version`.
pub async fn update_applies_and_bumps_version<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    let original = long_lived(object(json!({"a": 1, "keep": "old"}))).with_version(4);
    ok("save", store.save(&k, &original).await);
    let now = Timestamp::now();
    let replacement = Record::with_times(
        object(json!({"b": 2, "keep": "new"})),
        now - Duration::from_secs(77),
        now + Duration::from_secs(5400),
    )
    .with_version(99);
    assert_eq!(
        ok("update", store.update(&k, &replacement, 4).await),
        UpdateOutcome::Updated,
        "update with the stored version must be applied"
    );
    let expected = replacement.clone().with_version(5);
    assert_loads(
        &store,
        &k,
        &expected,
        "after update: data, created_at and expires_at from the record, version expected + 1",
    )
    .await;
    assert_eq!(
        ok("len", store.len().await),
        1,
        "an update does not add a session"
    );
    finish(&store).await;
}

/// "`Missing` (absent ...): nothing is written": update of a key that never
/// existed is `Missing` and creates nothing.
pub async fn update_absent_is_missing<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    for expected in [0, 1, u64::MAX - 1] {
        assert_eq!(
            ok(
                "update",
                store.update(&k, &long_lived(data_n(1)), expected).await
            ),
            UpdateOutcome::Missing,
            "update of an absent key (expected version {expected})"
        );
    }
    assert_gone(&store, &k, "update of an absent key must not create it").await;
    assert_eq!(ok("len", store.len().await), 0, "update of an absent key");
    finish(&store).await;
}

/// "`Conflict` (someone else wrote first: nothing is written)": an update
/// with a stale or a future version conflicts and leaves the record as it
/// was.
pub async fn update_wrong_version_conflicts<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    let original = long_lived(object(json!({"state": "original"}))).with_version(4);
    ok("save", store.save(&k, &original).await);
    for expected in [0, 3, 5, u64::MAX - 1] {
        let attempt = long_lived(object(
            json!({"state": "overwritten", "expected": expected}),
        ));
        assert_eq!(
            ok("update", store.update(&k, &attempt, expected).await),
            UpdateOutcome::Conflict,
            "update with expected version {expected} while the stored version is 4"
        );
        assert_loads(&store, &k, &original, "a conflicting update writes nothing").await;
    }
    finish(&store).await;
}

/// "Update after destroy ... the session is **not** resurrected": an update
/// with the version loaded before a destroy is `Missing` and writes nothing.
pub async fn update_after_destroy_is_missing<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    let original = long_lived(data_n(1)).with_version(6);
    ok("save", store.save(&k, &original).await);
    let loaded = ok("load", store.load(&k).await);
    assert_eq!(loaded.as_ref(), Some(&original), "load before destroy");
    ok("destroy", store.destroy(&k).await);
    assert_eq!(
        ok("update", store.update(&k, &long_lived(data_n(2)), 6).await),
        UpdateOutcome::Missing,
        "update of a destroyed session with the version it had"
    );
    assert_gone(
        &store,
        &k,
        "an update after destroy must not resurrect the session",
    )
    .await;
    assert_eq!(ok("len", store.len().await), 0, "nothing after destroy");
    finish(&store).await;
}

/// "Update after expiry": updating an expired record with its own version
/// is `Missing` and does not resurrect it, even with a future `expires_at`.
pub async fn update_after_expiry_is_missing<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    save_then_expire(&store, &k, &long_lived(data_n(1)).with_version(8)).await;
    assert_eq!(
        ok("update", store.update(&k, &long_lived(data_n(2)), 8).await),
        UpdateOutcome::Missing,
        "update of an expired record with the version it had"
    );
    assert_gone(
        &store,
        &k,
        "an update after expiry must not resurrect the session",
    )
    .await;
    assert_eq!(ok("len", store.len().await), 0, "nothing live after expiry");
    finish(&store).await;
}

/// "`Missing` (absent, expired or destroyed meanwhile)" **whatever**
/// `expected_version` is: an expired record gives `Missing`, never
/// `Conflict`, for its own version and for any other, and nothing is
/// written (a store that compares versions before liveness answers
/// `Conflict`).
pub async fn update_of_expired_is_missing_for_any_version<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let touched = key();
    save_then_expire(&store, &touched, &long_lived(data_n(1)).with_version(41)).await;
    let updated = key();
    ok(
        "save",
        store
            .save(&updated, &long_lived(data_n(2)).with_version(7))
            .await,
    );
    let now = Timestamp::now();
    let past = Record::with_times(data_n(3), now - Duration::from_secs(60), a_minute_ago());
    assert_eq!(
        ok("update", store.update(&updated, &past, 7).await),
        UpdateOutcome::Updated,
        "update to a past expiry"
    );
    for (k, own) in [(touched, 41), (updated, 8)] {
        for expected in [own, own + 1, own - 1, 0, u64::MAX] {
            assert_eq!(
                ok(
                    "update",
                    store.update(&k, &long_lived(data_n(4)), expected).await
                ),
                UpdateOutcome::Missing,
                "update of an expired record (version {own}) expecting version {expected}"
            );
        }
        assert_gone(&store, &k, "no update of an expired record writes").await;
    }
    assert_eq!(ok("len", store.len().await), 0, "nothing live");
    finish(&store).await;
}

/// "The stored version becomes `expected_version + 1`", every time: ten
/// updates in a row end at version 10, and the stale versions conflict.
pub async fn update_sequence_counts_versions<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    ok("save", store.save(&k, &long_lived(data_n(0))).await);
    for version in 0..10_u64 {
        let next = long_lived(data_n(version as i64 + 1));
        assert_eq!(
            ok("update", store.update(&k, &next, version).await),
            UpdateOutcome::Updated,
            "update number {} with expected version {version}",
            version + 1
        );
        assert_loads(
            &store,
            &k,
            &next.with_version(version + 1),
            "after an update",
        )
        .await;
    }
    assert_eq!(
        ok("update", store.update(&k, &long_lived(data_n(99)), 9).await),
        UpdateOutcome::Conflict,
        "update with a version that was current one update ago"
    );
    let current = ok("load", store.load(&k).await).map(|r| (r.version, r.data));
    assert_eq!(current, Some((10, data_n(10))), "after the stale update");
    finish(&store).await;
}

/// "`version: u64`": versions go up to `u64::MAX` (stored as given, then
/// updated from `u64::MAX - 1` to `u64::MAX`) without loss.
pub async fn update_reaches_u64_max<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    let high = long_lived(data_n(1)).with_version(u64::MAX - 1);
    ok("save", store.save(&k, &high).await);
    assert_loads(&store, &k, &high, "version u64::MAX - 1 stored as given").await;
    assert_eq!(
        ok(
            "update",
            store.update(&k, &long_lived(data_n(2)), u64::MAX - 2).await
        ),
        UpdateOutcome::Conflict,
        "expected u64::MAX - 2 while the version is u64::MAX - 1"
    );
    let next = long_lived(data_n(2));
    assert_eq!(
        ok("update", store.update(&k, &next, u64::MAX - 1).await),
        UpdateOutcome::Updated,
        "update with expected version u64::MAX - 1"
    );
    assert_loads(
        &store,
        &k,
        &next.with_version(u64::MAX),
        "version u64::MAX after update",
    )
    .await;
    finish(&store).await;
}

/// "If `record.expires_at` is not in the future the session is gone
/// afterwards": an update to a past expiry is applied and expires the
/// session, which later updates and touches cannot bring back.
pub async fn update_to_past_expiry_removes<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    let neighbour = long_lived(data_n(0));
    let neighbour_key = key();
    ok("save", store.save(&neighbour_key, &neighbour).await);
    ok(
        "save",
        store.save(&k, &long_lived(data_n(1)).with_version(2)).await,
    );
    let now = Timestamp::now();
    let past = Record::with_times(data_n(2), now - Duration::from_secs(60), a_minute_ago());
    assert_eq!(
        ok("update", store.update(&k, &past, 2).await),
        UpdateOutcome::Updated,
        "update of a live record to a past expiry"
    );
    assert_gone(&store, &k, "after an update to a past expiry").await;
    assert_eq!(
        ok("len", store.len().await),
        1,
        "only the neighbour is live"
    );
    assert_eq!(
        ok("update", store.update(&k, &long_lived(data_n(3)), 3).await),
        UpdateOutcome::Missing,
        "update after an update to a past expiry"
    );
    let touched = ok(
        "touch",
        store
            .touch(&k, Timestamp::now() + Duration::from_secs(600))
            .await,
    );
    assert!(
        !touched,
        "touch after an update to a past expiry must return false"
    );
    assert_gone(&store, &k, "nothing may resurrect it").await;
    assert_loads(&store, &neighbour_key, &neighbour, "the neighbour").await;
    finish(&store).await;
}

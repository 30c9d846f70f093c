//! `len`, `all`, `clear`, namespaces and reopening a durable store.

use std::collections::BTreeSet;
use std::time::Duration;

use session_core::{Record, SessionStore, SessionStoreExt, Timestamp, UpdateOutcome};

use crate::support::{
    a_minute_ago, all_sorted, assert_gone, assert_loads, data_n, expired, finish, key, keys,
    listed_keys, long_lived, ok, open, save_then_expire, sorted,
};
use crate::{StoreFactory, unique_namespace};

/// "`len()`: the number of live sessions in the namespace": a fresh namespace
/// is empty (`len` 0, `all` empty, nothing to delete) even while another
/// namespace of the same backend holds sessions.
pub async fn empty_namespace_is_empty<F: StoreFactory>(factory: &F) {
    let other = open(factory).await;
    ok("save", other.save(&key(), &long_lived(data_n(1))).await);
    let store = open(factory).await;
    assert_eq!(ok("len", store.len().await), 0, "len of a fresh namespace");
    assert!(
        ok("is_empty", store.is_empty().await),
        "is_empty of a fresh namespace"
    );
    assert_eq!(all_sorted(&store).await, vec![], "all of a fresh namespace");
    assert_eq!(
        ok("delete_expired", store.delete_expired().await),
        0,
        "delete_expired of a fresh namespace"
    );
    ok("clear", store.clear().await);
    assert_eq!(
        ok("len", store.len().await),
        0,
        "len after clearing an empty namespace"
    );
    assert_eq!(ok("len", other.len().await), 1, "the other namespace");
    finish(&store).await;
    finish(&other).await;
}

/// "`len()`: the number of live sessions" and "expired records are never
/// counted, reaped or not": len follows destroy, touch and update to the
/// past, and never counts expired or expired-on-write records.
pub async fn len_counts_only_live<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let live_keys = keys(5);
    for (i, k) in live_keys.iter().enumerate() {
        ok("save", store.save(k, &long_lived(data_n(i as i64))).await);
    }
    for k in keys(3) {
        save_then_expire(&store, &k, &long_lived(data_n(-1))).await;
    }
    for k in keys(2) {
        ok("save", store.save(&k, &expired(data_n(-2))).await);
    }
    let _ = ok("create", store.create(&key(), &expired(data_n(-3))).await);
    assert_eq!(
        ok("len", store.len().await),
        5,
        "five live among expired records"
    );
    assert!(
        !ok("is_empty", store.is_empty().await),
        "is_empty with five live records"
    );

    ok("destroy", store.destroy(&live_keys[0]).await);
    assert_eq!(ok("len", store.len().await), 4, "after destroying one");
    assert!(
        ok("touch", store.touch(&live_keys[1], a_minute_ago()).await),
        "touch to the past"
    );
    assert_eq!(
        ok("len", store.len().await),
        3,
        "after touching one to the past"
    );
    let now = Timestamp::now();
    let past = Record::with_times(data_n(9), now - Duration::from_secs(60), a_minute_ago());
    assert_eq!(
        ok("update", store.update(&live_keys[2], &past, 0).await),
        UpdateOutcome::Updated,
        "update to a past expiry"
    );
    assert_eq!(
        ok("len", store.len().await),
        2,
        "after updating one to the past"
    );
    let _ = ok("delete_expired", store.delete_expired().await);
    assert_eq!(ok("len", store.len().await), 2, "after delete_expired");
    finish(&store).await;
}

/// "`all()`: every live `(key, record)` of the namespace": exactly the live
/// records as last written (by create, save, update and touch), under the
/// keys they were written with, each once, and no expired one.
pub async fn all_lists_exactly_live_records<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let ks = keys(4);
    let created = long_lived(data_n(0)).with_version(3);
    assert!(ok("create", store.create(&ks[0], &created).await), "create");
    let saved = long_lived(data_n(1)).with_version(u64::MAX);
    ok("save", store.save(&ks[1], &saved).await);
    ok("save", store.save(&ks[2], &long_lived(data_n(2))).await);
    let updated = long_lived(data_n(22));
    assert_eq!(
        ok("update", store.update(&ks[2], &updated, 0).await),
        UpdateOutcome::Updated,
        "update"
    );
    let mut touched = long_lived(data_n(3)).with_version(8);
    ok("save", store.save(&ks[3], &touched).await);
    touched.expires_at = Timestamp::now() + Duration::from_secs(7200);
    assert!(
        ok("touch", store.touch(&ks[3], touched.expires_at).await),
        "touch"
    );
    for k in keys(3) {
        save_then_expire(&store, &k, &long_lived(data_n(-1))).await;
    }
    ok("save", store.save(&key(), &expired(data_n(-2))).await);

    let expected = sorted(vec![
        (ks[0], created),
        (ks[1], saved),
        (ks[2], updated.with_version(1)),
        (ks[3], touched),
    ]);
    assert_eq!(
        all_sorted(&store).await,
        expected,
        "all lists exactly the live records"
    );
    finish(&store).await;
}

/// "`all()`: every live `(key, record)`", at scale: 500 sessions are each
/// listed exactly once, under the key they were written with.
pub async fn all_lists_many_keys<F: StoreFactory>(factory: &F) {
    const COUNT: usize = 500;
    let store = open(factory).await;
    let written: Vec<_> = keys(COUNT)
        .into_iter()
        .enumerate()
        .map(|(i, k)| (k, long_lived(data_n(i as i64)).with_version(i as u64)))
        .collect();
    for chunk in written.chunks(16) {
        let saves = chunk.iter().map(|(k, record)| store.save(k, record));
        for result in futures::future::join_all(saves).await {
            ok("save", result);
        }
    }
    assert_eq!(
        ok("len", store.len().await),
        COUNT as u64,
        "len of {COUNT} sessions"
    );
    let listed = all_sorted(&store).await;
    let listed_set: BTreeSet<_> = listed.iter().map(|(k, _)| *k).collect();
    let written_set: BTreeSet<_> = written.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        listed_set.difference(&written_set).count() + written_set.difference(&listed_set).count(),
        0,
        "all must list exactly the {COUNT} keys written (listed {})",
        listed.len()
    );
    assert_eq!(
        listed,
        sorted(written),
        "all must return every record exactly"
    );
    finish(&store).await;
}

/// "`clear()`: remove every session of this store's namespace", at scale:
/// after 1,200 sessions (more than one batch, one `SCAN` page or one
/// `DELETE … LIMIT` of any backend here) and one `clear`, nothing is left:
/// `len` is 0, `all` is empty and not one key loads.
pub async fn clear_removes_every_session_at_scale<F: StoreFactory>(factory: &F) {
    const COUNT: usize = 1200;
    let store = open(factory).await;
    let written = keys(COUNT);
    for (n, chunk) in written.chunks(16).enumerate() {
        let record = long_lived(data_n(n as i64));
        let saves = chunk.iter().map(|k| store.save(k, &record));
        for result in futures::future::join_all(saves).await {
            ok("save", result);
        }
    }
    assert_eq!(
        ok("len", store.len().await),
        COUNT as u64,
        "len before clear"
    );
    ok("clear", store.clear().await);
    assert_eq!(
        ok("len", store.len().await),
        0,
        "len after clearing {COUNT}"
    );
    assert_eq!(
        all_sorted(&store).await,
        vec![],
        "all after clearing {COUNT}"
    );
    let mut left = 0;
    for chunk in written.chunks(32) {
        let loads = chunk.iter().map(|k| store.load(k));
        for result in futures::future::join_all(loads).await {
            left += usize::from(ok("load", result).is_some());
        }
    }
    assert_eq!(left, 0, "{left} of {COUNT} sessions still load after clear");
    finish(&store).await;
}

/// "`clear()`: remove every session of this store's namespace": live and
/// expired records are gone and the keys can be created again.
pub async fn clear_empties_namespace<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let live_keys = keys(10);
    for (i, k) in live_keys.iter().enumerate() {
        ok("save", store.save(k, &long_lived(data_n(i as i64))).await);
    }
    let expired_key = key();
    save_then_expire(&store, &expired_key, &long_lived(data_n(-1))).await;
    ok("clear", store.clear().await);
    assert_eq!(ok("len", store.len().await), 0, "len after clear");
    assert_eq!(all_sorted(&store).await, vec![], "all after clear");
    for k in live_keys.iter().chain([&expired_key]) {
        assert_eq!(ok("load", store.load(k).await), None, "load after clear");
    }
    assert!(
        ok(
            "create",
            store.create(&live_keys[0], &long_lived(data_n(0))).await
        ),
        "create after clear"
    );
    ok("clear", store.clear().await);
    ok("clear", store.clear().await);
    assert_eq!(ok("len", store.len().await), 0, "len after clearing twice");
}

/// "`clear()`: remove every session of this store's namespace ... and
/// nothing else": clearing one of two side-by-side namespaces leaves the
/// other intact, even under the same keys.
pub async fn clear_respects_namespaces<F: StoreFactory>(factory: &F) {
    let a = open(factory).await;
    let b = open(factory).await;
    let shared = key();
    ok("save", a.save(&shared, &long_lived(data_n(1))).await);
    for k in keys(3) {
        ok("save", a.save(&k, &long_lived(data_n(2))).await);
    }
    let mut in_b = vec![(shared, long_lived(data_n(10)).with_version(10))];
    for (i, k) in keys(3).into_iter().enumerate() {
        in_b.push((k, long_lived(data_n(11 + i as i64))));
    }
    for (k, record) in &in_b {
        ok("save", b.save(k, record).await);
    }
    ok("clear", a.clear().await);
    assert_eq!(ok("len", a.len().await), 0, "the cleared namespace");
    assert_eq!(
        ok("len", b.len().await),
        4,
        "the other namespace after clearing the first"
    );
    assert_eq!(
        all_sorted(&b).await,
        sorted(in_b.clone()),
        "the other namespace's records"
    );
    assert_loads(
        &b,
        &shared,
        &in_b[0].1,
        "the same key in the other namespace",
    )
    .await;
    finish(&a).await;
    finish(&b).await;
}

/// "A store instance owns one namespace; `clear`, `len`, `all` and
/// `delete_expired` see that namespace and nothing else": the same key in two
/// namespaces holds two independent sessions for every method.
pub async fn namespaces_are_isolated<F: StoreFactory>(factory: &F) {
    let a = open(factory).await;
    let b = open(factory).await;
    let k = key();
    let in_a = long_lived(data_n(1)).with_version(1);
    let in_b = long_lived(data_n(2)).with_version(7);
    ok("save", a.save(&k, &in_a).await);
    assert!(
        ok("create", b.create(&k, &in_b).await),
        "create of a key that only the other namespace holds"
    );
    assert_loads(&a, &k, &in_a, "namespace a").await;
    assert_loads(&b, &k, &in_b, "namespace b").await;
    assert_eq!(
        all_sorted(&a).await,
        vec![(k, in_a.clone())],
        "all of namespace a"
    );

    assert_eq!(
        ok("update", a.update(&k, &long_lived(data_n(3)), 7).await),
        UpdateOutcome::Conflict,
        "update in a with b's version"
    );
    let updated = long_lived(data_n(4));
    assert_eq!(
        ok("update", b.update(&k, &updated, 7).await),
        UpdateOutcome::Updated,
        "update in b with b's version"
    );
    let in_b = updated.with_version(8);
    assert_loads(&a, &k, &in_a, "namespace a after an update in b").await;

    assert!(
        ok("touch", a.touch(&k, a_minute_ago()).await),
        "touch to the past in a"
    );
    assert_gone(&a, &k, "expired in a").await;
    assert_loads(&b, &k, &in_b, "namespace b after expiring the key in a").await;
    let _ = ok("delete_expired", a.delete_expired().await);
    assert!(
        ok("create", a.create(&k, &in_a).await),
        "create in a over its expired record"
    );
    ok("destroy", a.destroy(&k).await);
    assert_loads(&b, &k, &in_b, "namespace b after destroying the key in a").await;
    assert_eq!(ok("len", a.len().await), 0, "len of namespace a");
    assert_eq!(ok("len", b.len().await), 1, "len of namespace b");
    assert!(listed_keys(&b).await.contains(&k), "all of namespace b");
    finish(&a).await;
    finish(&b).await;
}

/// "`clear`, `len`, `all` and `delete_expired` see that namespace and
/// nothing else", also when one namespace's name is a prefix of another's
/// (`n`, `nx` and `n_x`): a backend that matches its keys, tables or trees
/// by prefix mixes them up.
pub async fn namespaces_that_prefix_each_other_are_isolated<F: StoreFactory>(factory: &F) {
    let base = unique_namespace();
    let mut stores = Vec::new();
    for name in [base.clone(), format!("{base}x"), format!("{base}_x")] {
        stores.push(factory.open(&name).await);
    }
    let mut records = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let (k, record) = (key(), long_lived(data_n(i as i64)).with_version(i as u64));
        ok("save", store.save(&k, &record).await);
        save_then_expire(store, &key(), &long_lived(data_n(-1))).await;
        records.push((k, record));
    }
    for (i, store) in stores.iter().enumerate() {
        assert_eq!(ok("len", store.len().await), 1, "len of namespace {i}");
        assert_eq!(
            all_sorted(store).await,
            vec![records[i].clone()],
            "all of namespace {i}"
        );
    }
    let removed = ok("delete_expired", stores[0].delete_expired().await);
    assert!(
        removed <= 1,
        "delete_expired of the shortest namespace removed {removed} records: it holds one expired"
    );
    ok("clear", stores[0].clear().await);
    assert_eq!(ok("len", stores[0].len().await), 0, "len after clear");
    for (i, store) in stores.iter().enumerate().skip(1) {
        let (k, record) = &records[i];
        assert_loads(
            store,
            k,
            record,
            "a longer namespace after clearing a prefix of it",
        )
        .await;
        assert_eq!(
            ok("len", store.len().await),
            1,
            "len of namespace {i} after clearing a prefix of it"
        );
    }
    ok("clear", stores[1].clear().await);
    let (k, record) = &records[2];
    assert_loads(
        &stores[2],
        k,
        record,
        "a namespace after clearing a sibling",
    )
    .await;
    for store in &stores {
        finish(store).await;
    }
}

/// "Reopening a durable store" (only if the factory declares
/// [`durable`](crate::Capabilities::durable)): a namespace opened again after
/// its store was dropped holds the same live records, versions included,
/// and still hides expired and destroyed ones.
pub async fn reopen_durable_store<F: StoreFactory>(factory: &F) {
    if !factory.capabilities().durable {
        return;
    }
    let namespace = unique_namespace();
    let store = factory.open(&namespace).await;
    let mut written = Vec::new();
    for (i, k) in keys(3).into_iter().enumerate() {
        let record = long_lived(data_n(i as i64)).with_version(i as u64 + 5);
        ok("save", store.save(&k, &record).await);
        written.push((k, record));
    }
    let (expired_key, destroyed_key) = (key(), key());
    save_then_expire(&store, &expired_key, &long_lived(data_n(-1))).await;
    ok(
        "save",
        store.save(&destroyed_key, &long_lived(data_n(-2))).await,
    );
    ok("destroy", store.destroy(&destroyed_key).await);
    drop(store);

    let again = factory.open(&namespace).await;
    for (k, record) in &written {
        assert_loads(&again, k, record, "after reopening the namespace").await;
    }
    assert_eq!(ok("len", again.len().await), 3, "len after reopening");
    assert_eq!(
        all_sorted(&again).await,
        sorted(written.clone()),
        "all after reopening"
    );
    assert_gone(&again, &expired_key, "an expired record after reopening").await;
    assert_gone(&again, &destroyed_key, "a destroyed record after reopening").await;
    let (k, record) = &written[0];
    let next = long_lived(data_n(100));
    assert_eq!(
        ok("update", again.update(k, &next, record.version).await),
        UpdateOutcome::Updated,
        "update with the version written before reopening"
    );
    assert_loads(
        &again,
        k,
        &next.with_version(record.version + 1),
        "updated after reopening",
    )
    .await;
    finish(&again).await;
}

//! [`PrincipalIndex`]: the sessions of a user, exactly.
//!
//! These run through [`principal_index_suite!`](crate::principal_index_suite)
//! for stores that implement the trait.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use session_core::{
    Principal, PrincipalIndex, Record, SessionKey, SessionStore, Timestamp, UpdateOutcome,
};

use crate::StoreFactory;
use crate::support::{
    a_minute_ago, data_n, finish, join_tasks, key, keys, live, long_lived, ok, open,
    save_then_expire, sleep_until,
};

/// A principal of the suite's (always valid).
fn principal(name: &str) -> Principal {
    Principal::new(name).unwrap_or_else(|e| panic!("the suite's principal {name:?}: {e}"))
}

/// A live record of `principal`.
fn owned(n: i64, principal: &Principal) -> Record {
    long_lived(data_n(n)).with_principal(Some(principal.clone()))
}

/// The keys `sessions_of` lists, checking that none is listed twice, that
/// each listed record names the principal and is live, and that it is the
/// record `load` returns.
async fn sessions<S: PrincipalIndex + ?Sized>(
    store: &S,
    principal: &Principal,
) -> BTreeSet<SessionKey> {
    let started = Timestamp::now();
    let listed = ok("sessions_of", store.sessions_of(principal).await);
    let mut keys = BTreeSet::new();
    for (key, record) in &listed {
        assert!(
            keys.insert(*key),
            "sessions_of({principal:?}) listed {key} twice"
        );
        assert_eq!(
            record.principal.as_ref(),
            Some(principal),
            "sessions_of({principal:?}) listed {key}, whose record names {:?}",
            record.principal
        );
        assert!(
            record.expires_at.is_after(started),
            "sessions_of({principal:?}) listed {key}, which had expired when the call began"
        );
    }
    keys
}

/// The keys `sessions_of` lists must be exactly `expected`.
async fn assert_sessions<S: PrincipalIndex + ?Sized>(
    store: &S,
    principal: &Principal,
    expected: &[SessionKey],
    why: &str,
) {
    let want: BTreeSet<_> = expected.iter().copied().collect();
    let got = sessions(store, principal).await;
    let extra: Vec<_> = got.difference(&want).collect();
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "sessions_of({principal:?}) is not exact: {why}\n  listed but ended or not theirs: {extra:?}\n  live but not listed: {missing:?}"
    );
}

/// "`sessions_of` returns exactly the live sessions of a principal": each
/// principal's own, none without one, the records as `load` returns them.
pub async fn principal_sessions_of_lists_exactly_their_live_sessions<F>(factory: &F)
where
    F: StoreFactory,
    F::Store: PrincipalIndex,
{
    let store = open(factory).await;
    let (alice, bob) = (principal("alice"), principal("bob"));
    let alices = keys(3);
    let bobs = keys(2);
    for (i, k) in alices.iter().enumerate() {
        assert!(ok(
            "create",
            store.create(k, &owned(i as i64, &alice)).await
        ));
    }
    for (i, k) in bobs.iter().enumerate() {
        ok("save", store.save(k, &owned(i as i64, &bob)).await);
    }
    ok("save", store.save(&key(), &long_lived(data_n(9))).await);
    assert_sessions(&store, &alice, &alices, "three sessions of alice").await;
    assert_sessions(&store, &bob, &bobs, "two sessions of bob").await;
    assert_sessions(&store, &principal("carol"), &[], "no session of carol").await;
    let listed = ok("sessions_of", store.sessions_of(&alice).await);
    for (k, record) in listed {
        assert_eq!(
            ok("load", store.load(&k).await).as_ref(),
            Some(&record),
            "sessions_of must return the record load returns"
        );
    }
    finish(&store).await;
}

/// "`sessions_of` never returns an expired session, whatever the state of
/// reaping": records expired by `touch` to the past and by time are not
/// listed, before `delete_expired` runs and after.
pub async fn principal_sessions_of_never_lists_an_expired_session<F>(factory: &F)
where
    F: StoreFactory,
    F::Store: PrincipalIndex,
{
    let store = open(factory).await;
    let alice = principal("alice");
    let kept = keys(2);
    for k in &kept {
        ok("save", store.save(k, &owned(0, &alice)).await);
    }
    let touched_away = key();
    save_then_expire(&store, &touched_away, &owned(1, &alice)).await;
    let short = live(data_n(2), Duration::from_millis(700)).with_principal(Some(alice.clone()));
    let by_time = keys(3);
    for k in &by_time {
        assert!(ok("create", store.create(k, &short).await));
    }
    assert_sessions(
        &store,
        &alice,
        &[kept.clone(), by_time.clone()].concat(),
        "before anything expires by time",
    )
    .await;
    sleep_until(short.expires_at).await;
    assert_sessions(&store, &alice, &kept, "expired, not reaped").await;
    ok("delete_expired", store.delete_expired().await);
    assert_sessions(&store, &alice, &kept, "expired and reaped").await;
    finish(&store).await;
}

/// "`sessions_of` never returns a destroyed session, nor one whose record
/// now names another principal or none": destroy, an update to another
/// principal, an update and a save without one; the moved session is
/// listed under its new principal.
pub async fn principal_sessions_of_never_lists_an_ended_or_moved_session<F>(factory: &F)
where
    F: StoreFactory,
    F::Store: PrincipalIndex,
{
    let store = open(factory).await;
    let (alice, bob) = (principal("alice"), principal("bob"));
    let ks = keys(5);
    for k in &ks {
        assert!(ok("create", store.create(k, &owned(0, &alice)).await));
    }
    ok("destroy", store.destroy(&ks[0]).await);
    assert_eq!(
        ok("update", store.update(&ks[1], &owned(1, &bob), 0).await),
        UpdateOutcome::Updated,
        "update to another principal"
    );
    assert_eq!(
        ok(
            "update",
            store.update(&ks[2], &long_lived(data_n(2)), 0).await
        ),
        UpdateOutcome::Updated,
        "update without a principal"
    );
    ok("save", store.save(&ks[3], &long_lived(data_n(3))).await);
    assert_sessions(
        &store,
        &alice,
        &ks[4..],
        "destroyed, moved to bob, principal removed by update and by save",
    )
    .await;
    assert_sessions(&store, &bob, &ks[1..2], "moved to bob by update").await;
    // And back: the index follows every write, not only the first.
    assert_eq!(
        ok("update", store.update(&ks[1], &owned(4, &alice), 1).await),
        UpdateOutcome::Updated,
        "update back to alice"
    );
    assert_sessions(&store, &bob, &[], "moved back to alice").await;
    assert_sessions(&store, &alice, &[ks[1], ks[4]], "moved back to alice").await;
    finish(&store).await;
}

/// "`touch` keeps a session listed": a session touched past its original
/// expiry is still listed once that original expiry has passed (an index
/// that remembers only the expiry of the last full write drops it).
pub async fn principal_sessions_of_follows_touch<F>(factory: &F)
where
    F: StoreFactory,
    F::Store: PrincipalIndex,
{
    let store = open(factory).await;
    let alice = principal("alice");
    let short = live(data_n(0), Duration::from_millis(800)).with_principal(Some(alice.clone()));
    let (touched, untouched) = (key(), key());
    assert!(ok("create", store.create(&touched, &short).await));
    assert!(ok("create", store.create(&untouched, &short).await));
    let later = Timestamp::now() + Duration::from_secs(30 * 60);
    assert!(ok("touch", store.touch(&touched, later).await));
    sleep_until(short.expires_at).await;
    ok("delete_expired", store.delete_expired().await);
    assert_sessions(
        &store,
        &alice,
        &[touched],
        "touched past its original expiry",
    )
    .await;
    let listed = ok("sessions_of", store.sessions_of(&alice).await);
    assert_eq!(
        listed.first().map(|(_, r)| r.expires_at),
        Some(later),
        "sessions_of must return the touched expiry"
    );
    finish(&store).await;
}

/// "`destroy_all_of` destroys every live session of the principal but the
/// one it keeps, and returns how many it destroyed": others' sessions and
/// anonymous ones stay.
pub async fn principal_destroy_all_of_ends_every_session_but_the_kept_one<F>(factory: &F)
where
    F: StoreFactory,
    F::Store: PrincipalIndex,
{
    let store = open(factory).await;
    let (alice, bob) = (principal("alice"), principal("bob"));
    let alices = keys(4);
    for (i, k) in alices.iter().enumerate() {
        assert!(ok(
            "create",
            store.create(k, &owned(i as i64, &alice)).await
        ));
    }
    save_then_expire(&store, &key(), &owned(9, &alice)).await;
    let bobs = keys(2);
    for k in &bobs {
        ok("save", store.save(k, &owned(0, &bob)).await);
    }
    let anonymous = key();
    ok("save", store.save(&anonymous, &long_lived(data_n(0))).await);

    assert_eq!(
        ok(
            "destroy_all_of",
            store.destroy_all_of(&alice, Some(&alices[0])).await
        ),
        3,
        "destroy_all_of(alice, except one) must destroy the other three live sessions (not the expired one)"
    );
    for k in &alices[1..] {
        assert_eq!(
            ok("load", store.load(k).await),
            None,
            "destroyed by destroy_all_of"
        );
    }
    assert!(
        ok("load", store.load(&alices[0]).await).is_some(),
        "the kept session must stay"
    );
    assert_sessions(
        &store,
        &alice,
        &alices[..1],
        "all but the kept one destroyed",
    )
    .await;
    assert_sessions(&store, &bob, &bobs, "bob's sessions stay").await;
    assert!(
        ok("load", store.load(&anonymous).await).is_some(),
        "anonymous stays"
    );

    assert_eq!(
        ok("destroy_all_of", store.destroy_all_of(&alice, None).await),
        1,
        "destroy_all_of(alice) must destroy the last one"
    );
    assert_eq!(ok("load", store.load(&alices[0]).await), None);
    assert_sessions(&store, &alice, &[], "all destroyed").await;
    assert_eq!(
        ok("destroy_all_of", store.destroy_all_of(&alice, None).await),
        0,
        "nothing left to destroy"
    );
    assert_eq!(
        ok(
            "destroy_all_of",
            store
                .destroy_all_of(&principal("nobody"), Some(&bobs[0]))
                .await
        ),
        0
    );
    assert_sessions(&store, &bob, &bobs, "bob's sessions still stay").await;
    finish(&store).await;
}

/// "Nothing comes back through the index": requests of the principal's
/// sessions keep committing versioned updates while `destroy_all_of` runs;
/// afterwards every one of those sessions is gone for good (their next
/// update is `Missing`) and `sessions_of` lists none.
pub async fn principal_destroy_all_of_is_not_undone_by_concurrent_commits<F>(factory: &F)
where
    F: StoreFactory,
    F::Store: PrincipalIndex,
{
    let store = Arc::new(open(factory).await);
    let alice = principal("alice");
    let ks = keys(12);
    for k in &ks {
        assert!(ok("create", store.create(k, &owned(0, &alice)).await));
    }
    let started = Arc::new(AtomicUsize::new(0));
    let deadline = Timestamp::now() + Duration::from_secs(20);
    let writers = ks
        .iter()
        .map(|k| {
            let (store, k, alice, started) =
                (Arc::clone(&store), *k, alice.clone(), Arc::clone(&started));
            tokio::spawn(async move {
                let mut version = 0u64;
                let mut first = true;
                loop {
                    let record = owned(version as i64 + 1, &alice);
                    match ok("update", store.update(&k, &record, version).await) {
                        UpdateOutcome::Updated => version += 1,
                        UpdateOutcome::Missing => return version,
                        UpdateOutcome::Conflict => {
                            panic!("update of {k} conflicted with no other writer of it")
                        }
                    }
                    if first {
                        started.fetch_add(1, Ordering::SeqCst);
                        first = false;
                    }
                    assert!(
                        Timestamp::now() < deadline,
                        "the session {k} was still being updated 20 s after destroy_all_of began"
                    );
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect::<Vec<_>>();
    // Destroy once every writer has committed at least once.
    while started.load(Ordering::SeqCst) < ks.len() {
        assert!(Timestamp::now() < deadline, "the writers did not start");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let destroyed = ok("destroy_all_of", store.destroy_all_of(&alice, None).await);
    assert_eq!(
        destroyed,
        ks.len() as u64,
        "destroy_all_of must destroy every session being updated"
    );
    let versions = join_tasks(writers).await;
    for (k, version) in ks.iter().zip(versions) {
        assert_eq!(
            ok("load", store.load(k).await),
            None,
            "{k} came back after destroy_all_of"
        );
        assert_eq!(
            ok("update", store.update(k, &owned(0, &alice), version).await),
            UpdateOutcome::Missing,
            "an update of a session destroy_all_of ended must be Missing"
        );
    }
    assert_sessions(
        &*store,
        &alice,
        &[],
        "after destroy_all_of and the concurrent commits",
    )
    .await;
    finish(&*store).await;
}

/// "The index does not grow with sessions that ended": after a
/// principal's sessions expired (by time and by touch), were destroyed,
/// moved to another principal or lost theirs, `delete_expired` and one
/// `sessions_of` leave no entry for them (`index_len` is 0); while they were
/// live the index held at least one entry each.
pub async fn principal_index_does_not_grow_as_sessions_end<F>(factory: &F)
where
    F: StoreFactory,
    F::Store: PrincipalIndex,
{
    let store = open(factory).await;
    let (alice, bob) = (principal("alice"), principal("bob"));
    let short = live(data_n(0), Duration::from_millis(900)).with_principal(Some(alice.clone()));
    let by_time = keys(20);
    for k in &by_time {
        assert!(ok("create", store.create(k, &short).await));
    }
    let others = keys(40);
    for k in &others {
        assert!(ok("create", store.create(k, &owned(0, &alice)).await));
    }
    let held = ok("index_len", store.index_len(&alice).await);
    assert!(
        held >= 60,
        "index_len(alice) is {held} with 60 live sessions of alice: an index holds at least one entry per live session"
    );
    for k in &others[..10] {
        ok("destroy", store.destroy(k).await);
    }
    for k in &others[10..20] {
        assert!(ok("touch", store.touch(k, a_minute_ago()).await));
    }
    for k in &others[20..30] {
        assert_eq!(
            ok("update", store.update(k, &owned(1, &bob), 0).await),
            UpdateOutcome::Updated
        );
    }
    for k in &others[30..] {
        ok("save", store.save(k, &long_lived(data_n(2))).await);
    }
    sleep_until(short.expires_at).await;
    ok("delete_expired", store.delete_expired().await);
    assert_sessions(&store, &alice, &[], "every session of alice ended").await;
    assert_eq!(
        ok("index_len", store.index_len(&alice).await),
        0,
        "the index still holds entries for alice's ended sessions after delete_expired and sessions_of: it leaks"
    );
    assert_sessions(&store, &bob, &others[20..30], "moved to bob").await;
    assert!(ok("index_len", store.index_len(&bob).await) >= 10);
    assert_eq!(
        ok("destroy_all_of", store.destroy_all_of(&bob, None).await),
        10
    );
    ok("delete_expired", store.delete_expired().await);
    assert_sessions(&store, &bob, &[], "bob's sessions destroyed").await;
    assert_eq!(
        ok("index_len", store.index_len(&bob).await),
        0,
        "destroy_all_of left entries for bob"
    );
    finish(&store).await;
}

/// "`create` over an expired record of another principal moves the key":
/// the old principal does not list it, the new one does.
pub async fn principal_create_over_an_expired_record_moves_it<F>(factory: &F)
where
    F: StoreFactory,
    F::Store: PrincipalIndex,
{
    let store = open(factory).await;
    let (alice, bob) = (principal("alice"), principal("bob"));
    let k = key();
    save_then_expire(&store, &k, &owned(0, &bob)).await;
    assert!(
        ok("create", store.create(&k, &owned(1, &alice)).await),
        "create over an expired record"
    );
    assert_sessions(&store, &bob, &[], "bob's record expired and was replaced").await;
    assert_sessions(&store, &alice, &[k], "created for alice").await;
    finish(&store).await;
}

/// "`clear` removes the namespace's index; namespaces keep their indexes
/// apart": the same principal in two namespaces lists, destroys and clears
/// each namespace's sessions only.
pub async fn principal_indexes_are_per_namespace<F>(factory: &F)
where
    F: StoreFactory,
    F::Store: PrincipalIndex,
{
    let (one, two) = (open(factory).await, open(factory).await);
    let alice = principal("alice");
    let (ones, twos) = (keys(2), keys(3));
    for k in &ones {
        ok("save", one.save(k, &owned(1, &alice)).await);
    }
    for k in &twos {
        ok("save", two.save(k, &owned(2, &alice)).await);
    }
    assert_sessions(&one, &alice, &ones, "namespace one").await;
    assert_sessions(&two, &alice, &twos, "namespace two").await;
    assert_eq!(
        ok("destroy_all_of", one.destroy_all_of(&alice, None).await),
        2
    );
    assert_sessions(&two, &alice, &twos, "destroy_all_of in another namespace").await;
    ok("clear", two.clear().await);
    assert_sessions(&two, &alice, &[], "cleared").await;
    assert_eq!(
        ok("index_len", two.index_len(&alice).await),
        0,
        "clear must remove the namespace's index entries"
    );
    finish(&one).await;
}

/// "Every session of a principal is listed, however many": 300 sessions of
/// one principal, written concurrently, are listed once each.
pub async fn principal_sessions_of_lists_many_sessions<F>(factory: &F)
where
    F: StoreFactory,
    F::Store: PrincipalIndex,
{
    let store = Arc::new(open(factory).await);
    let alice = principal("alice");
    let ks = keys(300);
    let writers = ks
        .chunks(15)
        .map(|chunk| {
            let (store, chunk, alice) = (Arc::clone(&store), chunk.to_vec(), alice.clone());
            tokio::spawn(async move {
                for k in chunk {
                    assert!(ok("create", store.create(&k, &owned(0, &alice)).await));
                }
            })
        })
        .collect();
    join_tasks(writers).await;
    assert_sessions(&*store, &alice, &ks, "300 sessions of one principal").await;
    assert_eq!(
        ok("destroy_all_of", store.destroy_all_of(&alice, None).await),
        300
    );
    assert_sessions(&*store, &alice, &[], "all 300 destroyed").await;
    finish(&*store).await;
}

/// "Principals are compared exactly, byte for byte": no case folding, no
/// trailing-space padding (MySQL's `utf8mb4_bin` pads), no Unicode
/// normalisation (precomposed and decomposed "é" are two principals).
pub async fn principal_names_are_compared_exactly<F>(factory: &F)
where
    F: StoreFactory,
    F::Store: PrincipalIndex,
{
    let store = open(factory).await;
    let names = [
        "alice",
        "alice ",
        "Alice",
        "ALICE",
        "al\u{e9}",
        "ale\u{301}",
    ];
    let ks = keys(names.len());
    for (name, k) in names.iter().zip(&ks) {
        assert!(ok(
            "create",
            store.create(k, &owned(0, &principal(name))).await
        ));
    }
    for (name, k) in names.iter().zip(&ks) {
        assert_sessions(
            &store,
            &principal(name),
            &[*k],
            "each name is its own principal",
        )
        .await;
        assert!(
            ok("index_len", store.index_len(&principal(name)).await) >= 1,
            "index_len({name:?})"
        );
    }
    assert_eq!(
        ok(
            "destroy_all_of",
            store.destroy_all_of(&principal("alice"), None).await
        ),
        1,
        "destroy_all_of(\"alice\") must end alice's session only"
    );
    assert_eq!(ok("len", store.len().await), names.len() as u64 - 1);
    finish(&store).await;
}

/// "The index stays exact under racing writers": after every write and
/// index call raced over a few keys and two principals (with reaping
/// running), `sessions_of` lists exactly the live records that name each
/// principal, and once ended entries are cleaned (`delete_expired`, then
/// one `sessions_of`), `index_len` counts exactly those records.
pub async fn principal_index_stays_exact_under_racing_writers<F>(factory: &F)
where
    F: StoreFactory,
    F::Store: PrincipalIndex,
{
    let store = Arc::new(open(factory).await);
    let people = [principal("ada"), principal("bob")];
    let ks = keys(6);
    crate::fixtures::race_principal_writes(Arc::clone(&store), &ks, &people).await;
    let records = ok("all", store.all().await);
    ok("delete_expired", store.delete_expired().await);
    for person in &people {
        let truth: Vec<SessionKey> = records
            .iter()
            .filter(|(_, r)| r.principal.as_ref() == Some(person))
            .map(|(k, _)| *k)
            .collect();
        assert_sessions(&*store, person, &truth, "after the race").await;
        assert_eq!(
            ok("index_len", store.index_len(person).await),
            truth.len() as u64,
            "index_len({person:?}) after the race, delete_expired and sessions_of: the index holds entries of ended sessions"
        );
    }
    finish(&*store).await;
}

//! Expiry: save in the past, `touch`, the clock boundary, `delete_expired`.
//!
//! Only the `expiry_*` behaviours and `delete_expired_spares_records_about_to_expire`
//! wait on the clock; every other expiry rule is checked deterministically
//! with records already expired.

use std::time::Duration;

use serde_json::json;
use session_core::{Record, SessionStore, Timestamp, UpdateOutcome};

use crate::StoreFactory;
use crate::support::{
    a_minute_ago, all_sorted, assert_gone, assert_loads, data_n, expired, finish, key, keys, live,
    long_lived, object, ok, open, save_then_expire, sleep_until, sorted,
};

/// The short lifetime of the boundary checks.
const SHORT_TTL: Duration = Duration::from_secs(1);
/// "Live" is checked only if the check finished at least this long before
/// the expiry (a stalled process retries instead of failing).
const LIVE_MARGIN: Duration = Duration::from_millis(400);
/// "Gone" is checked this long after the expiry.
const GONE_GRACE: Duration = Duration::from_millis(600);
/// Attempts before a too-slow machine fails the boundary behaviours.
const ATTEMPTS: u32 = 5;

/// "A record whose `expires_at` is not in the future is not stored": saving
/// an expired record (or one expiring exactly now) leaves nothing, so
/// `delete_expired` finds nothing to remove either.
pub async fn save_expired_stores_nothing<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let (k1, k2) = (key(), key());
    ok("save", store.save(&k1, &expired(data_n(1))).await);
    let now = Timestamp::now();
    let expiring_now = Record::with_times(data_n(2), now - Duration::from_secs(1), now);
    ok("save", store.save(&k2, &expiring_now).await);
    assert_gone(&store, &k1, "a record saved with a past expiry").await;
    assert_gone(&store, &k2, "a record saved expiring now").await;
    assert_eq!(ok("len", store.len().await), 0, "nothing was stored");
    assert!(
        !ok(
            "touch",
            store
                .touch(&k1, Timestamp::now() + Duration::from_secs(600))
                .await
        ),
        "touch of a record saved expired"
    );
    assert_eq!(
        ok("delete_expired", store.delete_expired().await),
        0,
        "save of an expired record must store nothing, so there is nothing expired to delete"
    );
    finish(&store).await;
}

/// "An existing one under that key is removed": saving an expired record
/// over a live one removes it.
pub async fn save_expired_removes_existing<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let (k1, k2, neighbour) = (key(), key(), key());
    let kept = long_lived(data_n(0));
    ok("save", store.save(&neighbour, &kept).await);
    ok("save", store.save(&k1, &long_lived(data_n(1))).await);
    ok("save", store.save(&k2, &long_lived(data_n(2))).await);
    ok("save", store.save(&k1, &expired(data_n(3))).await);
    let now = Timestamp::now();
    ok(
        "save",
        store
            .save(&k2, &Record::with_times(data_n(4), now, now))
            .await,
    );
    assert_gone(&store, &k1, "a live record overwritten by an expired save").await;
    assert_gone(
        &store,
        &k2,
        "a live record overwritten by a save expiring now",
    )
    .await;
    assert_eq!(
        ok("len", store.len().await),
        1,
        "only the neighbour is live"
    );
    assert_loads(&store, &neighbour, &kept, "the neighbour").await;
    let fresh = long_lived(data_n(5));
    assert!(
        ok("create", store.create(&k1, &fresh).await),
        "create after the record was removed by an expired save"
    );
    finish(&store).await;
}

/// "On a missing key `touch` returns `false` and must not resurrect
/// anything."
pub async fn touch_absent_returns_false<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    let later = Timestamp::now() + Duration::from_secs(600);
    assert!(
        !ok("touch", store.touch(&k, later).await),
        "touch of an absent key must return false"
    );
    assert_gone(&store, &k, "touch of an absent key must not create it").await;
    assert_eq!(
        ok("len", store.len().await),
        0,
        "after touch of an absent key"
    );
    finish(&store).await;
}

/// "`touch(key, expires_at)`: move the expiry of a live record without
/// rewriting its data" or version: longer and shorter, returning `true`.
pub async fn touch_extends_and_keeps_data_and_version<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    let now = Timestamp::now();
    let record = Record::with_times(
        object(json!({"user": "ada", "cart": [1, 2, 3]})),
        now - Duration::from_secs(300),
        now + Duration::from_secs(1800),
    )
    .with_version(9);
    ok("save", store.save(&k, &record).await);
    for expires_at in [
        now + Duration::from_secs(7200) + Duration::from_millis(3),
        now + Duration::from_secs(600) + Duration::from_millis(11),
    ] {
        assert!(
            ok("touch", store.touch(&k, expires_at).await),
            "touch of a live record must return true"
        );
        let mut expected = record.clone();
        expected.expires_at = expires_at;
        assert_loads(&store, &k, &expected, "touch changes expires_at only").await;
    }
    assert_eq!(
        ok("len", store.len().await),
        1,
        "touch does not add a session"
    );
    finish(&store).await;
}

/// "Touch never resurrects" a destroyed record: `touch` after `destroy`
/// returns `false` and the key stays absent.
pub async fn touch_after_destroy_returns_false<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    ok("save", store.save(&k, &long_lived(data_n(1))).await);
    ok("destroy", store.destroy(&k).await);
    let later = Timestamp::now() + Duration::from_secs(600);
    assert!(
        !ok("touch", store.touch(&k, later).await),
        "touch after destroy must return false"
    );
    assert_gone(&store, &k, "touch after destroy must not resurrect").await;
    assert_eq!(
        ok("len", store.len().await),
        0,
        "after touch of a destroyed key"
    );
    finish(&store).await;
}

/// "On an expired key `touch` returns `false` and must not resurrect
/// anything", even when the expired record is still stored.
pub async fn touch_expired_does_not_resurrect<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    save_then_expire(&store, &k, &long_lived(data_n(1)).with_version(3)).await;
    let later = Timestamp::now() + Duration::from_secs(600);
    assert!(
        !ok("touch", store.touch(&k, later).await),
        "touch of an expired record must return false"
    );
    assert_gone(
        &store,
        &k,
        "touch of an expired record must not resurrect it",
    )
    .await;
    assert_eq!(
        ok("len", store.len().await),
        0,
        "after touch of an expired key"
    );
    assert_eq!(
        ok("update", store.update(&k, &long_lived(data_n(2)), 3).await),
        UpdateOutcome::Missing,
        "update after a refused touch"
    );
    finish(&store).await;
}

/// "Touching to a time that is not in the future expires the record": after
/// a touch to the past (or to now) the record is invisible everywhere.
pub async fn touch_to_past_expires<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let (k1, k2, neighbour) = (key(), key(), key());
    let kept = long_lived(data_n(0));
    ok("save", store.save(&neighbour, &kept).await);
    save_then_expire(&store, &k1, &long_lived(data_n(1))).await;
    ok("save", store.save(&k2, &long_lived(data_n(2))).await);
    let _ = ok("touch", store.touch(&k2, Timestamp::now()).await);
    assert_gone(&store, &k1, "touched to a minute ago").await;
    assert_gone(&store, &k2, "touched to now").await;
    assert_eq!(
        ok("len", store.len().await),
        1,
        "only the neighbour is live"
    );
    assert_loads(&store, &neighbour, &kept, "the neighbour").await;
    let later = Timestamp::now() + Duration::from_secs(600);
    assert!(
        !ok("touch", store.touch(&k1, later).await),
        "touch of a record touched to the past"
    );
    assert_gone(&store, &k1, "a second touch must not bring it back").await;
    finish(&store).await;
}

/// "Expiry at the boundary": a record with a 1 s lifetime is live when
/// checked well before its expiry and gone (load, len, all, touch, update,
/// create) once the expiry has passed.
pub async fn expiry_boundary_live_before_gone_after<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    for attempt in 1..=ATTEMPTS {
        let k = key();
        let record = live(data_n(i64::from(attempt)), SHORT_TTL).with_version(1);
        ok("save", store.save(&k, &record).await);
        let loaded = ok("load", store.load(&k).await);
        let len = ok("len", store.len().await);
        let listed = all_sorted(&store).await;
        if Timestamp::now() + LIVE_MARGIN >= record.expires_at {
            // Stalled: the checks may have run too close to the expiry.
            ok("destroy", store.destroy(&k).await);
            continue;
        }
        assert_eq!(
            loaded.as_ref(),
            Some(&record),
            "load well before the expiry"
        );
        assert_eq!(len, 1, "len well before the expiry");
        assert_eq!(
            listed,
            vec![(k, record.clone())],
            "all well before the expiry"
        );

        sleep_until(record.expires_at + GONE_GRACE).await;
        assert_gone(&store, &k, "after the expiry has passed").await;
        assert_eq!(ok("len", store.len().await), 0, "len after the expiry");
        let later = Timestamp::now() + Duration::from_secs(600);
        assert!(
            !ok("touch", store.touch(&k, later).await),
            "touch after the expiry"
        );
        assert_eq!(
            ok("update", store.update(&k, &long_lived(data_n(0)), 1).await),
            UpdateOutcome::Missing,
            "update after the expiry"
        );
        assert_gone(&store, &k, "after touch and update past the expiry").await;
        let fresh = long_lived(data_n(0));
        assert!(
            ok("create", store.create(&k, &fresh).await),
            "create after the expiry"
        );
        assert_loads(&store, &k, &fresh, "created after the expiry").await;
        finish(&store).await;
        return;
    }
    panic!(
        "the machine stalled in each of {ATTEMPTS} attempts: could not check liveness {LIVE_MARGIN:?} before a {SHORT_TTL:?} expiry"
    );
}

/// How many rounds of millisecond probes run. A store's own clock read can
/// land a millisecond after the probe's (a preempted thread on a loaded
/// machine), and then a store that counts `now == expires_at` as live
/// passes that probe: more rounds, more chances to catch it.
const BOUNDARY_ROUNDS: u32 = 4;

/// How many tries the rounds get (a try whose saves stalled is not a round).
const BOUNDARY_ATTEMPTS: u32 = 8;

/// How far apart the expiries of the millisecond probes are.
const PROBE_GAP: Duration = Duration::from_millis(40);

/// Wait until this process's clock has just entered millisecond `at`:
/// sleep to shortly before it, then spin, so that the next store call
/// starts at the very beginning of that millisecond.
async fn start_of(at: Timestamp) {
    sleep_until(at - Duration::from_millis(3)).await;
    while Timestamp::now() < at {
        std::hint::spin_loop();
    }
}

/// "A record is live while `now < expires_at`", to the millisecond, on a
/// store of any latency: each check is issued at the very start of the
/// millisecond its record expires in (this process's clock is read until it
/// shows that millisecond), so the store decides at `now == expires_at` or
/// later, never earlier, and must find the record gone: `load` `None`,
/// `touch` `false`, `update` `Missing`, `create` over it succeeds, `len` 0,
/// `all` empty. A store that counts `now == expires_at` as live is caught
/// here even when its calls take several milliseconds (and same-millisecond
/// checks never see it). Stores on a server's clock need that clock in step
/// with this process's (the same machine, or NTP). The probes run in
/// several rounds, since on a loaded machine the store may read its clock a
/// millisecond late.
pub async fn expiry_boundary_is_exact_to_the_millisecond<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let counted = open(factory).await;
    let listed = open(factory).await;
    let mut rounds = 0;
    for _ in 0..BOUNDARY_ATTEMPTS {
        let [k_load, k_touch, k_update, k_create, k_len, k_all] =
            [key(), key(), key(), key(), key(), key()];
        let first = Timestamp::now() + Duration::from_millis(300);
        let at = |i: u32| first + PROBE_GAP * i;
        let record = |i: u32| Record::with_times(data_n(i64::from(i)), Timestamp::now(), at(i));
        for (i, (target, k)) in [
            (&store, &k_load),
            (&store, &k_touch),
            (&store, &k_update),
            (&store, &k_create),
            (&counted, &k_len),
            (&listed, &k_all),
        ]
        .into_iter()
        .enumerate()
        {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            ok("save", target.save(k, &record(i).with_version(5)).await);
        }
        if Timestamp::now() + Duration::from_millis(50) >= first {
            // Stalled while saving: the first probe's time may have passed.
            for s in [&store, &counted, &listed] {
                finish(s).await;
            }
            continue;
        }
        start_of(at(0)).await;
        assert_eq!(
            ok("load", store.load(&k_load).await),
            None,
            "load at the start of the millisecond the record expires in"
        );
        start_of(at(1)).await;
        assert!(
            !ok(
                "touch",
                store
                    .touch(&k_touch, at(1) + Duration::from_secs(600))
                    .await
            ),
            "touch at the start of the millisecond the record expires in"
        );
        start_of(at(2)).await;
        assert_eq!(
            ok(
                "update",
                store.update(&k_update, &long_lived(data_n(9)), 5).await
            ),
            UpdateOutcome::Missing,
            "update at the start of the millisecond the record expires in"
        );
        start_of(at(3)).await;
        let fresh = long_lived(data_n(10));
        assert!(
            ok("create", store.create(&k_create, &fresh).await),
            "create over a record at the start of the millisecond it expires in"
        );
        start_of(at(4)).await;
        assert_eq!(
            ok("len", counted.len().await),
            0,
            "len at the start of the millisecond the only record expires in"
        );
        start_of(at(5)).await;
        assert_eq!(
            ok("all", listed.all().await).len(),
            0,
            "all at the start of the millisecond the only record expires in"
        );
        assert_gone(
            &store,
            &k_touch,
            "a touch at the boundary must not resurrect",
        )
        .await;
        assert_gone(
            &store,
            &k_update,
            "an update at the boundary must not resurrect",
        )
        .await;
        assert_loads(&store, &k_create, &fresh, "created at the boundary").await;
        for s in [&store, &counted, &listed] {
            finish(s).await;
        }
        rounds += 1;
        if rounds == BOUNDARY_ROUNDS {
            return;
        }
    }
    if rounds > 0 {
        return;
    }
    panic!(
        "the machine stalled in each of {BOUNDARY_ATTEMPTS} attempts: could not save six records within 250 ms"
    );
}

/// "Touch extends" and update moves the expiry on the backend's own clock:
/// a short-lived record touched or updated to a later expiry outlives its
/// first expiry, and a long-lived one touched, updated or saved to a short
/// expiry is gone after it.
pub async fn expiry_follows_touch_and_update<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    for _ in 0..ATTEMPTS {
        let [
            touch_longer,
            update_longer,
            touch_shorter,
            update_shorter,
            save_shorter,
        ] = [key(), key(), key(), key(), key()];
        let short = live(data_n(1), SHORT_TTL);
        ok("save", store.save(&touch_longer, &short).await);
        ok("save", store.save(&update_longer, &short).await);
        for k in [touch_shorter, update_shorter, save_shorter] {
            ok("save", store.save(&k, &long_lived(data_n(2))).await);
        }
        let far = Timestamp::now() + Duration::from_secs(3600);
        let soon = Timestamp::now() + SHORT_TTL;
        let touched = ok("touch", store.touch(&touch_longer, far).await);
        let longer = long_lived(data_n(3));
        let updated = ok("update", store.update(&update_longer, &longer, 0).await);
        assert!(
            ok("touch", store.touch(&touch_shorter, soon).await),
            "touch of a long-lived record"
        );
        let shorter = live(data_n(4), SHORT_TTL);
        assert_eq!(
            ok("update", store.update(&update_shorter, &shorter, 0).await),
            UpdateOutcome::Updated,
            "update of a long-lived record"
        );
        ok(
            "save",
            store.save(&save_shorter, &live(data_n(5), SHORT_TTL)).await,
        );
        if Timestamp::now() + LIVE_MARGIN >= short.expires_at {
            // Stalled: the short-lived records may legitimately have expired
            // before they were touched or updated.
            ok("clear", store.clear().await);
            continue;
        }
        assert!(touched, "touch of a record live for {LIVE_MARGIN:?} more");
        assert_eq!(
            updated,
            UpdateOutcome::Updated,
            "update of a record live for {LIVE_MARGIN:?} more"
        );

        let last_expiry = [short.expires_at, soon, shorter.expires_at]
            .into_iter()
            .max()
            .unwrap_or(soon);
        sleep_until(last_expiry + GONE_GRACE).await;
        let mut touched_record = short.clone();
        touched_record.expires_at = far;
        assert_loads(
            &store,
            &touch_longer,
            &touched_record,
            "touched to a later expiry, past its first expiry",
        )
        .await;
        assert_loads(
            &store,
            &update_longer,
            &longer.clone().with_version(1),
            "updated to a later expiry, past its first expiry",
        )
        .await;
        assert_gone(
            &store,
            &touch_shorter,
            "touched to a short expiry, after it",
        )
        .await;
        assert_gone(
            &store,
            &update_shorter,
            "updated to a short expiry, after it",
        )
        .await;
        assert_gone(
            &store,
            &save_shorter,
            "saved again with a short expiry, after it",
        )
        .await;
        assert_eq!(
            ok("len", store.len().await),
            2,
            "only the two extended records are live"
        );
        finish(&store).await;
        return;
    }
    panic!(
        "the machine stalled in each of {ATTEMPTS} attempts: could not touch a {SHORT_TTL:?} record {LIVE_MARGIN:?} before its expiry"
    );
}

/// "`delete_expired()`: remove expired records now" and "live records are
/// never removed", also those about to expire: records expiring within the
/// next second survive a `delete_expired` that runs before they expire, and
/// it counts at most the records that had expired.
pub async fn delete_expired_spares_records_about_to_expire<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    for _ in 0..ATTEMPTS {
        let soon: Vec<_> = [300_u64, 600, 900]
            .into_iter()
            .map(|ms| {
                (
                    key(),
                    live(data_n(ms as i64), Duration::from_millis(ms)).with_version(ms),
                )
            })
            .collect();
        for (k, record) in &soon {
            ok("save", store.save(k, record).await);
        }
        for k in keys(2) {
            save_then_expire(&store, &k, &long_lived(data_n(-1))).await;
        }
        let removed = ok("delete_expired", store.delete_expired().await);
        let mut loaded = Vec::new();
        for (k, _) in &soon {
            loaded.push(ok("load", store.load(k).await));
        }
        let len = ok("len", store.len().await);
        if Timestamp::now() + Duration::from_millis(50) >= soon[0].1.expires_at {
            // Stalled: the soonest record may really have expired.
            finish(&store).await;
            continue;
        }
        assert!(
            removed <= 2,
            "delete_expired removed {removed} records but only 2 had expired"
        );
        for ((_, record), got) in soon.iter().zip(&loaded) {
            assert_eq!(
                got.as_ref(),
                Some(record),
                "a record {} ms from its expiry must survive delete_expired",
                record.version
            );
        }
        assert_eq!(len, 3, "len after delete_expired");
        finish(&store).await;
        return;
    }
    panic!(
        "the machine stalled in each of {ATTEMPTS} attempts: could not save and reap within 250 ms"
    );
}

/// How long the short records of the reaping behaviours below live.
const REAP_TTL: Duration = Duration::from_millis(500);
/// How long past that expiry the reaping behaviours wait: seconds, so the
/// expiries are in the past by more than a coarse time bucket of an
/// expiry index (the memory store's are about a second), whose older
/// buckets a store reaps by another path than the current one.
const REAP_GRACE: Duration = Duration::from_millis(2_500);

/// "`delete_expired()`: remove expired records now; returns how many" on a
/// backend that keeps expired records until then (unless the factory
/// declares [`expires_natively`](crate::Capabilities::expires_natively)):
/// records that expired with time, untouched since they were written, are
/// all removed and counted, and a second call finds nothing. A store whose
/// `delete_expired` removes nothing keeps every expired session forever
/// (express-session's leaking MemoryStore).
pub async fn delete_expired_removes_what_expired_by_time<F: StoreFactory>(factory: &F) {
    if factory.capabilities().expires_natively {
        return;
    }
    let store = open(factory).await;
    let short: Vec<_> = keys(5);
    for (i, k) in short.iter().enumerate() {
        ok(
            "save",
            store.save(k, &live(data_n(i as i64), REAP_TTL)).await,
        );
    }
    let (kept, kept_record) = (key(), long_lived(data_n(9)));
    ok("save", store.save(&kept, &kept_record).await);
    sleep_until(Timestamp::now() + REAP_TTL + REAP_GRACE).await;
    assert_eq!(
        ok("delete_expired", store.delete_expired().await),
        5,
        "delete_expired of 5 records that expired with time"
    );
    assert_eq!(
        ok("delete_expired", store.delete_expired().await),
        0,
        "a second delete_expired"
    );
    assert_loads(&store, &kept, &kept_record, "the live record").await;
    assert_eq!(ok("len", store.len().await), 1, "len after reaping");
    finish(&store).await;
}

/// "`delete_expired()`: remove expired records **now**" on a backend that
/// keeps expired records until then (unless the factory declares
/// [`expires_natively`](crate::Capabilities::expires_natively)): records
/// that expired a few milliseconds ago are removed and counted too, not
/// only ones long past (a store sweeping with a lagging bound, or an index
/// whose current time bucket is never walked, leaves them to a later sweep
/// and miscounts this one).
pub async fn delete_expired_removes_what_has_just_expired<F: StoreFactory>(factory: &F) {
    if factory.capabilities().expires_natively {
        return;
    }
    let store = open(factory).await;
    let expiry = Timestamp::now() + JUST_EXPIRED_TTL;
    for (i, k) in keys(5).iter().enumerate() {
        let record = Record::with_times(data_n(i as i64), Timestamp::now(), expiry);
        ok("save", store.save(k, &record).await);
    }
    let (kept, kept_record) = (key(), long_lived(data_n(9)));
    ok("save", store.save(&kept, &kept_record).await);
    sleep_until(expiry + Duration::from_millis(30)).await;
    assert_eq!(
        ok("delete_expired", store.delete_expired().await),
        5,
        "delete_expired right after 5 records expired"
    );
    assert_eq!(
        ok("delete_expired", store.delete_expired().await),
        0,
        "a second delete_expired"
    );
    assert_loads(&store, &kept, &kept_record, "the live record").await;
    finish(&store).await;
}

/// The lifetime of the records of
/// [`delete_expired_removes_what_has_just_expired`]: enough for six writes
/// on a slow server.
const JUST_EXPIRED_TTL: Duration = Duration::from_millis(600);

/// Records of the churn behaviour, all written to expire at one instant.
const CHURN_KEYS: usize = 42;
/// Their lifetime: long enough for ~130 writes on a slow server.
const CHURN_TTL: Duration = Duration::from_secs(5);
/// How much earlier than that instant some of them are moved.
const CHURN_EARLIER: Duration = Duration::from_millis(1_200);
/// How much later others are moved.
const CHURN_LATER: Duration = Duration::from_millis(400);
/// Records created at the same instant after the churn.
const CHURN_REFILL: usize = 24;

/// "`delete_expired()`: remove expired records now; returns how many" after
/// churn, on a backend that keeps expired records until then (unless the
/// factory declares [`expires_natively`](crate::Capabilities::expires_natively)):
/// many records written to expire at **one instant** (what an expiry index
/// keeps side by side in one bucket), then some destroyed, some touched to
/// an earlier or a later expiry, some updated, some saved again to expire
/// earlier, some moved earlier and then destroyed; then new records are
/// created at the same instant and the records still at it are destroyed,
/// last written first.
/// Once all have expired,
/// one `delete_expired` removes and counts every remaining record exactly
/// once, and a second finds nothing. An index that loses or misplaces a
/// neighbour's entry when a key leaves its bucket keeps that session
/// forever; one that counts a record per entry counts a moved one twice.
pub async fn delete_expired_counts_each_record_once_after_churn<F: StoreFactory>(factory: &F) {
    if factory.capabilities().expires_natively {
        return;
    }
    let store = open(factory).await;
    for _ in 0..ATTEMPTS {
        let now = Timestamp::now();
        let at = now + CHURN_TTL;
        let (earlier, later) = (at - CHURN_EARLIER, at + CHURN_LATER);
        let churned = keys(CHURN_KEYS);
        for (i, k) in churned.iter().enumerate() {
            let record = Record::with_times(data_n(i as i64), now, at);
            ok("save", store.save(k, &record).await);
        }
        let mut remaining = 0u64;
        let mut answers = Vec::new();
        for (i, k) in churned.iter().enumerate() {
            match i % 7 {
                0 => ok("destroy", store.destroy(k).await),
                1 => answers.push((
                    "touch to an earlier expiry",
                    ok("touch", store.touch(k, earlier).await),
                )),
                2 => answers.push((
                    "touch to a later expiry",
                    ok("touch", store.touch(k, later).await),
                )),
                3 => {
                    let record = Record::with_times(data_n(-1), now, at);
                    let outcome = ok("update", store.update(k, &record, 0).await);
                    answers.push(("update", outcome == UpdateOutcome::Updated));
                }
                4 => {
                    let record = Record::with_times(data_n(-2), now, earlier);
                    ok("save", store.save(k, &record).await);
                }
                5 => {
                    answers.push((
                        "touch to an earlier expiry",
                        ok("touch", store.touch(k, earlier).await),
                    ));
                    ok("destroy", store.destroy(k).await);
                }
                _ => {}
            }
            if !matches!(i % 7, 0 | 5) {
                remaining += 1;
            }
        }
        // Fill the instant again, then destroy the records that stayed at
        // it: an index that leaves a neighbour's position stale when a key
        // leaves its bucket now removes a newcomer's entry instead of theirs.
        for i in 0..CHURN_REFILL {
            let record = Record::with_times(data_n(1_000 + i as i64), now, at);
            assert!(
                ok("create", store.create(&key(), &record).await),
                "create of a fresh key"
            );
            remaining += 1;
        }
        // Last written first: those are the neighbours an index moves
        // into the places its first removals left.
        for (i, k) in churned.iter().enumerate().rev() {
            if matches!(i % 7, 2 | 3 | 6) {
                ok("destroy", store.destroy(k).await);
                remaining -= 1;
            }
        }
        if Timestamp::now() + Duration::from_millis(200) >= earlier {
            // Stalled: some writes may have come after the records expired.
            finish(&store).await;
            continue;
        }
        for (what, done) in answers {
            assert!(done, "{what} of a live record");
        }
        sleep_until(later + REAP_GRACE).await;
        assert_eq!(
            ok("delete_expired", store.delete_expired().await),
            remaining,
            "delete_expired of {remaining} records that expired after churn (each counted once)"
        );
        assert_eq!(
            ok("delete_expired", store.delete_expired().await),
            0,
            "a second delete_expired after churn"
        );
        assert_eq!(ok("len", store.len().await), 0, "len after reaping");
        finish(&store).await;
        return;
    }
    panic!(
        "the machine stalled in each of {ATTEMPTS} attempts: could not write {CHURN_KEYS} records \
         and churn them within {:?}",
        CHURN_TTL - CHURN_EARLIER
    );
}

/// "Live records are never removed" by `delete_expired`, also those whose
/// expiry was **postponed** after a first, short one: records written to
/// expire soon, then touched, updated or saved to expire much later, all
/// survive a `delete_expired` after their first expiry has passed (a store
/// that indexes expiries lazily must check the record, not the index).
pub async fn delete_expired_spares_postponed_records<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    for _ in 0..ATTEMPTS {
        let [touched, updated, saved] = [key(), key(), key()];
        let short = live(data_n(1), REAP_TTL);
        for k in [&touched, &updated, &saved] {
            ok("save", store.save(k, &short).await);
        }
        let later = Timestamp::now() + Duration::from_secs(30 * 60);
        let was_touched = ok("touch", store.touch(&touched, later).await);
        let updated_record = long_lived(data_n(2));
        let update = ok("update", store.update(&updated, &updated_record, 0).await);
        let saved_record = long_lived(data_n(3)).with_version(4);
        ok("save", store.save(&saved, &saved_record).await);
        if Timestamp::now() + Duration::from_millis(200) >= short.expires_at {
            // Stalled: the postponements may have come after the first
            // expiry.
            finish(&store).await;
            continue;
        }
        assert!(was_touched, "touch of a live record to a later expiry");
        assert_eq!(update, UpdateOutcome::Updated, "update to a later expiry");
        sleep_until(short.expires_at + REAP_GRACE).await;
        let removed = ok("delete_expired", store.delete_expired().await);
        assert_eq!(
            removed, 0,
            "delete_expired removed {removed} postponed records"
        );
        assert!(
            ok("load", store.load(&touched).await).is_some(),
            "a record touched to a later expiry survives delete_expired"
        );
        assert_loads(
            &store,
            &updated,
            &updated_record.with_version(1),
            "an updated record",
        )
        .await;
        assert_loads(&store, &saved, &saved_record, "a record saved again").await;
        assert_eq!(ok("len", store.len().await), 3, "len after delete_expired");
        finish(&store).await;
        return;
    }
    panic!(
        "the machine stalled in each of {ATTEMPTS} attempts: could not postpone three records within 300 ms"
    );
}

/// "`delete_expired()`: remove expired records now; returns how many" and
/// "live records are never removed": afterwards every live record loads
/// intact, `len`/`all` are exact, and the count is at most the number
/// expired.
pub async fn delete_expired_removes_only_expired<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let mut live_records = Vec::new();
    for (i, k) in keys(6).into_iter().enumerate() {
        let record = live(data_n(i as i64), Duration::from_secs(1800 + 600 * i as u64))
            .with_version(i as u64 * 10);
        ok("save", store.save(&k, &record).await);
        live_records.push((k, record));
    }
    let expired_keys = keys(5);
    for k in &expired_keys[..4] {
        save_then_expire(&store, k, &long_lived(data_n(-1))).await;
    }
    ok(
        "save",
        store.save(&expired_keys[4], &long_lived(data_n(-2))).await,
    );
    let now = Timestamp::now();
    let past = Record::with_times(data_n(-3), now - Duration::from_secs(60), a_minute_ago());
    assert_eq!(
        ok("update", store.update(&expired_keys[4], &past, 0).await),
        UpdateOutcome::Updated,
        "update to a past expiry"
    );
    let live_records = sorted(live_records);

    assert_eq!(ok("len", store.len().await), 6, "len before delete_expired");
    assert_eq!(
        all_sorted(&store).await,
        live_records,
        "all before delete_expired"
    );
    let first = ok("delete_expired", store.delete_expired().await);
    assert!(
        first <= 5,
        "delete_expired removed {first} records but only 5 were expired"
    );
    for (k, record) in &live_records {
        assert_loads(&store, k, record, "a live record after delete_expired").await;
    }
    assert_eq!(ok("len", store.len().await), 6, "len after delete_expired");
    assert_eq!(
        all_sorted(&store).await,
        live_records,
        "all after delete_expired"
    );
    for k in &expired_keys {
        assert_gone(&store, k, "an expired record after delete_expired").await;
    }
    let second = ok("delete_expired", store.delete_expired().await);
    assert!(
        first + second <= 5,
        "delete_expired removed {first} then {second} records but only 5 were expired"
    );
    assert_eq!(
        all_sorted(&store).await,
        live_records,
        "all after a second delete_expired"
    );
    for k in &expired_keys {
        let fresh = long_lived(data_n(7));
        assert!(
            ok("create", store.create(k, &fresh).await),
            "create over a reaped key"
        );
    }
    assert_eq!(
        ok("len", store.len().await),
        11,
        "live records plus the recreated ones"
    );
    finish(&store).await;
}

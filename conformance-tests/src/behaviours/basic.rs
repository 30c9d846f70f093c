//! Round trips, absent keys, `save`, `create` and `destroy`.

use std::time::Duration;

use serde_json::{Value, json};
use session_core::{Data, Record, SessionStore, Timestamp};

use crate::StoreFactory;
use crate::support::{
    all_sorted, assert_gone, assert_loads, data_n, expired, finish, key, keys, live, long_lived,
    object, ok, open, save_then_expire, sleep_until, sorted,
};

/// Save `data` under a fresh key and require it to load back identical.
async fn round_trip<S: SessionStore + ?Sized>(store: &S, data: Data, why: &str) {
    let k = key();
    let record = long_lived(data).with_version(3);
    ok("save", store.save(&k, &record).await);
    assert_loads(store, &k, &record, why).await;
    let listed = all_sorted(store).await;
    let from_all = listed.iter().find(|(lk, _)| *lk == k).map(|(_, r)| r);
    assert_eq!(
        from_all,
        Some(&record),
        "all must list the record exactly as saved: {why}"
    );
}

/// "`load(key)`: the live record, or `None` if absent": a key that was never
/// written loads as `None`.
pub async fn load_absent_is_none<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    assert_eq!(
        ok("load", store.load(&key()).await),
        None,
        "load of an absent key"
    );
    finish(&store).await;
}

/// "Data round-trips exactly": a mix of nested objects, unicode, empty
/// objects, `u64::MAX`, `i64::MIN` and floats comes back equal.
pub async fn round_trip_preserves_values<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let data = object(json!({
        "max": u64::MAX, "min": i64::MIN, "float": 0.1, "neg": -2.5e-300,
        "text": "ünïcødé ✓ 😀", "empty": {}, "list": [1, "two", null, true],
        "nested": {"a": {"b": {"c": [{"d": 1}]}}},
    }));
    round_trip(&store, data, "mixed values").await;
    finish(&store).await;
}

/// "Integers up to `u64::MAX` and down to `i64::MIN`" round-trip exactly, as
/// integers of the same kind, at the top level and nested.
pub async fn round_trip_integer_extremes<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let above_i64 = i64::MAX as u64 + 1;
    let data = object(json!({
        "u64_max": u64::MAX, "u64_max_minus_1": u64::MAX - 1, "above_i64": above_i64,
        "i64_max": i64::MAX, "i64_min": i64::MIN, "i64_min_plus_1": i64::MIN + 1,
        "zero": 0, "minus_one": -1, "two_pow_53_plus_1": 9_007_199_254_740_993_u64,
        "minus_two_pow_53_minus_1": -9_007_199_254_740_993_i64,
        "u32_max": u32::MAX, "i32_min": i32::MIN,
        "in_array": [u64::MAX, i64::MIN, 0, above_i64],
        "in_object": {"max": u64::MAX, "min": i64::MIN},
    }));
    round_trip(&store, data, "integer extremes").await;
    finish(&store).await;
}

/// "Floats bit for bit": tricky doubles (0.1, 1e308, subnormals, `-0.0`,
/// integral floats such as 1.0) come back as the same floats.
pub async fn round_trip_floats_bit_exact<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let data = object(json!({
        "tenth": 0.1, "third": 1.0 / 3.0, "big": 1e308, "max": f64::MAX, "lowest": f64::MIN,
        "min_positive": f64::MIN_POSITIVE, "smallest_subnormal": 5e-324,
        "negative_zero": -0.0, "one_point_zero": 1.0, "minus_one_and_half": -1.5,
        "two_pow_53": 9_007_199_254_740_992.0, "many_digits": 123_456_789.123_456_79,
        "small": 1e-7, "pi": std::f64::consts::PI,
        "in_array": [0.1, -0.0, 1.0, 1e308, 5e-324],
        "in_object": {"e": std::f64::consts::E, "zero": 0.0},
    }));
    round_trip(&store, data, "floats").await;
    finish(&store).await;
}

/// "Unicode" round-trips exactly, in values and in data keys, including NUL,
/// control characters, quotes, emoji sequences and keys such as `$set`,
/// `a.b`, `_id` and the empty string.
pub async fn round_trip_unicode_and_awkward_keys<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let data = object(json!({
        "ascii": "plain", "accents": "ünïcødé", "cjk": "会话存储", "emoji": "😀👩‍👩‍👧‍👦",
        "rtl": "مرحبا", "combining": "e\u{301}", "nul": "a\u{0}b",
        "controls": "\t\n\r\u{1}\u{1f}\u{7f}", "quotes": "\"'\\/`",
        "json_like": "{\"a\":1}", "sql_like": "'; DROP TABLE sessions; --",
        "bom": "\u{feff}x", "max_char": "\u{10ffff}", "separators": "\u{2028}\u{2029}",
        "empty_string": "",
        "ключ": "значение", "😀": "emoji key", "": "empty key", "$set": {"$inc": 1},
        "a.b": {"c.d": "dotted"}, "_id": "not an id", "key with spaces": true,
        "nul\u{0}key": 1, "__proto__": {"polluted": false},
        "strings": ["ü", "😀", "\u{0}", ""],
    }));
    round_trip(&store, data, "unicode and awkward keys").await;
    finish(&store).await;
}

/// "Nested objects, empty objects": deep nesting, empty objects and arrays,
/// `null` and booleans round-trip exactly.
pub async fn round_trip_deep_nesting_and_empties<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let mut deep_object = json!({"leaf": [{}, [], null]});
    let mut deep_array = json!([1]);
    for level in 0..40 {
        deep_object = json!({ "level": level, "child": deep_object });
        deep_array = json!([deep_array, {}]);
    }
    let data = object(json!({
        "empty_object": {}, "empty_array": [], "null": null, "true": true, "false": false,
        "nested_empties": {"a": {}, "b": [[], [{}]], "c": {"d": {"e": {}}}},
        "deep_object": deep_object, "deep_array": deep_array,
        "mixed": [null, true, false, 0, -1, 1.5, "s", [], {}],
    }));
    round_trip(&store, data, "nesting and empties").await;
    finish(&store).await;
}

/// Data nesting `depth` objects deep, the top-level one included.
fn nested(depth: usize) -> Data {
    let mut value = json!({});
    for _ in 1..depth {
        value = json!({ "c": value });
    }
    object(value)
}

/// "Data round-trips exactly", as deep as [`Data::MAX_DEPTH`] levels, and
/// "a record could not be encoded for storage" is a typed error: data
/// nesting deeper (which no JSON parser here reads back) is refused by
/// `save`, `create` and `update` with `Error::Encode`, and nothing is
/// written (an existing record stays as it was).
pub async fn data_deeper_than_the_limit_is_refused<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    round_trip(&store, nested(Data::MAX_DEPTH), "data at the depth limit").await;
    let too_deep = || Record::new(nested(Data::MAX_DEPTH + 1), Duration::from_secs(600));
    let fresh = key();
    let refused = |what: &str, result: session_core::Result<()>| match result {
        Err(session_core::Error::Encode { .. }) => {}
        other => panic!(
            "{what} of data nesting deeper than Data::MAX_DEPTH: expected Error::Encode, got {other:?}"
        ),
    };
    refused("save", store.save(&fresh, &too_deep()).await);
    refused("create", store.create(&fresh, &too_deep()).await.map(drop));
    assert_gone(&store, &fresh, "refused writes store nothing").await;
    let existing = key();
    let record = long_lived(data_n(1)).with_version(2);
    ok("save", store.save(&existing, &record).await);
    refused(
        "update",
        store.update(&existing, &too_deep(), 2).await.map(drop),
    );
    assert_loads(
        &store,
        &existing,
        &record,
        "a refused update leaves the record",
    )
    .await;
    finish(&store).await;
}

/// "Empty objects": a record with an empty data map round-trips (it is not
/// dropped, and does not come back as `None`).
pub async fn round_trip_empty_data<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    round_trip(&store, Data::new(), "empty data").await;
    assert_eq!(
        ok("len", store.len().await),
        1,
        "an empty session is a session"
    );
    finish(&store).await;
}

/// "`expires_at` is kept at millisecond precision everywhere" and "create,
/// save store it as given, version included": `created_at`, `expires_at` and
/// `version` (up to `u64::MAX`) come back exactly.
pub async fn round_trip_times_and_version_exact<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let far = (Timestamp::now() + Duration::from_secs(400 * 24 * 3600)).as_millis();
    let expires_at = Timestamp::from_millis(far - far.rem_euclid(1000) + 7);
    let cases = [
        (
            Timestamp::from_millis(1_000_000_000_123),
            0xDEAD_BEEF_CAFE_u64,
        ),
        (Timestamp::from_millis(1), u64::MAX),
        (
            Timestamp::now() - Duration::from_millis(999),
            i64::MAX as u64 + 1,
        ),
        (Timestamp::now(), 0),
    ];
    let mut written = Vec::new();
    for (i, (created_at, version)) in cases.into_iter().enumerate() {
        let k = key();
        let record = Record::with_times(
            data_n(i as i64),
            created_at,
            expires_at + Duration::from_millis(i as u64 * 111),
        )
        .with_version(version);
        if i % 2 == 0 {
            assert!(
                ok("create", store.create(&k, &record).await),
                "create on a fresh key"
            );
        } else {
            ok("save", store.save(&k, &record).await);
        }
        assert_loads(&store, &k, &record, "times and version stored as given").await;
        written.push((k, record));
    }
    assert_eq!(
        all_sorted(&store).await,
        sorted(written),
        "all must return times and versions exactly"
    );
    finish(&store).await;
}

/// "Records of several MiB" round-trip: a 1.5 MiB string, a 20 000-element
/// array and a 2 000-key object in one record.
pub async fn large_record_round_trips<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let pattern = "session-store large value ü 😀 0123456789 ";
    let big_string: String = pattern.repeat((3 << 19) / pattern.len() + 1);
    let big_array: Vec<Value> = (0..20_000_u64)
        .map(|i| json!(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    let mut many_keys = Data::new();
    for i in 0..2_000 {
        many_keys.insert(
            format!("field_{i:04}"),
            json!({ "i": i, "s": format!("{i:x}") }),
        );
    }
    let data = object(json!({
        "big_string": big_string, "big_array": big_array, "many_keys": many_keys,
    }));
    round_trip(&store, data, "a record of about 2 MiB").await;
    finish(&store).await;
}

/// "`save(key, record)`: unconditional insert-or-replace": a second save
/// replaces the whole record (data, times, version, even a lower version).
pub async fn save_replaces_existing<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    let first = long_lived(object(json!({"a": 1, "b": 2}))).with_version(5);
    ok("save", store.save(&k, &first).await);
    let now = Timestamp::now();
    let second = Record::with_times(
        object(json!({"c": 3})),
        now - Duration::from_secs(10),
        now + Duration::from_secs(3600),
    )
    .with_version(2);
    ok("save", store.save(&k, &second).await);
    assert_loads(
        &store,
        &k,
        &second,
        "the second save replaces the first entirely",
    )
    .await;
    assert_eq!(
        ok("len", store.len().await),
        1,
        "a replaced record counts once"
    );
    finish(&store).await;
}

/// "`create(key, record)`: insert only if no live record exists" and "the
/// record is stored as given, version included".
pub async fn create_inserts_as_given<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    let now = Timestamp::now();
    let record = Record::with_times(
        object(json!({"user": "ada"})),
        now - Duration::from_secs(3600),
        now + Duration::from_secs(1800),
    )
    .with_version(42);
    assert!(
        ok("create", store.create(&k, &record).await),
        "create on an absent key must return true"
    );
    assert_loads(&store, &k, &record, "create stores the record as given").await;
    assert_eq!(ok("len", store.len().await), 1, "one created session");
    finish(&store).await;
}

/// "`create` returns `false` on a collision and leaves the existing record
/// untouched."
pub async fn create_collision_leaves_existing<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    let first = long_lived(object(json!({"owner": "first"}))).with_version(7);
    assert!(ok("create", store.create(&k, &first).await), "first create");
    let second = long_lived(object(json!({"owner": "second"}))).with_version(0);
    assert!(
        !ok("create", store.create(&k, &second).await),
        "create over a live record must return false"
    );
    assert_loads(
        &store,
        &k,
        &first,
        "a refused create leaves the existing record untouched",
    )
    .await;
    // Also when the live record was written by save, not create.
    let saved = long_lived(object(json!({"owner": "saved"}))).with_version(9);
    ok("save", store.save(&k, &saved).await);
    assert!(
        !ok("create", store.create(&k, &second).await),
        "create over a saved live record must return false"
    );
    assert_loads(
        &store,
        &k,
        &saved,
        "a refused create leaves the saved record untouched",
    )
    .await;
    assert_eq!(ok("len", store.len().await), 1, "still one session");
    finish(&store).await;
}

/// "An expired record under the key does not count as a collision": create
/// over an expired record succeeds and stores the new record.
pub async fn create_over_expired_succeeds<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    save_then_expire(
        &store,
        &k,
        &long_lived(object(json!({"old": true}))).with_version(4),
    )
    .await;
    let fresh = long_lived(object(json!({"new": true}))).with_version(1);
    assert!(
        ok("create", store.create(&k, &fresh).await),
        "create over an expired record must return true"
    );
    assert_loads(
        &store,
        &k,
        &fresh,
        "create over an expired record stores the new one",
    )
    .await;
    assert_eq!(ok("len", store.len().await), 1, "one live session");
    // And over a destroyed one.
    ok("destroy", store.destroy(&k).await);
    assert!(
        ok("create", store.create(&k, &fresh).await),
        "create after destroy must return true"
    );
    assert_loads(&store, &k, &fresh, "create after destroy").await;
    finish(&store).await;
}

/// "A `record` whose `expires_at` is not in the future leaves nothing live
/// under the key" (create), and does not block a later create.
pub async fn create_expired_leaves_nothing_live<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    let _ = ok("create", store.create(&k, &expired(data_n(1))).await);
    assert_gone(&store, &k, "an expired record was created").await;
    assert_eq!(
        ok("len", store.len().await),
        0,
        "an expired create is not counted"
    );
    let fresh = long_lived(data_n(2));
    assert!(
        ok("create", store.create(&k, &fresh).await),
        "an expired create must not block a live one"
    );
    assert_loads(&store, &k, &fresh, "create after an expired create").await;
    finish(&store).await;
}

/// "`create`: returns `false` on a collision and leaves the existing record
/// untouched" also when the record to create is already expired, and "if
/// nothing live was there, the call returns `true`": creating an expired
/// record over a live one is a collision (`false`, the live one untouched);
/// over nothing, or over an expired record (touched to the past, or expired
/// with time and not reaped), it returns `true` and leaves nothing live.
pub async fn create_expired_follows_the_collision_rule<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let [over_live, over_nothing, over_expired, over_timed_out] = [key(), key(), key(), key()];
    let short = live(data_n(5), Duration::from_millis(200));
    ok("save", store.save(&over_timed_out, &short).await);
    let live_record = long_lived(data_n(1)).with_version(3);
    ok("save", store.save(&over_live, &live_record).await);
    save_then_expire(&store, &over_expired, &long_lived(data_n(2))).await;
    sleep_until(short.expires_at + Duration::from_millis(300)).await;
    assert!(
        !ok(
            "create",
            store.create(&over_live, &expired(data_n(3))).await
        ),
        "create of an expired record over a live one is a collision"
    );
    assert_loads(
        &store,
        &over_live,
        &live_record,
        "the live record a collision left",
    )
    .await;
    for (k, what) in [
        (over_nothing, "nothing"),
        (over_expired, "an expired record"),
        (over_timed_out, "a record that expired with time"),
    ] {
        assert!(
            ok("create", store.create(&k, &expired(data_n(4))).await),
            "create of an expired record over {what} returns true"
        );
        assert_gone(&store, &k, "an expired record was created").await;
    }
    assert_eq!(ok("len", store.len().await), 1, "only the live record");
    finish(&store).await;
}

/// "`destroy(key)`: remove; idempotent": the record is gone, a second destroy
/// and a destroy of a never-written key succeed.
pub async fn destroy_removes_and_is_idempotent<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let k = key();
    ok("save", store.save(&k, &long_lived(data_n(1))).await);
    ok("destroy", store.destroy(&k).await);
    assert_gone(&store, &k, "after destroy").await;
    assert_eq!(ok("len", store.len().await), 0, "after destroy");
    ok("destroy", store.destroy(&k).await);
    ok("destroy", store.destroy(&key()).await);
    assert_gone(&store, &k, "after a second destroy").await;
    assert_eq!(ok("len", store.len().await), 0, "after a second destroy");
    finish(&store).await;
}

/// "`destroy(key)`: other keys are untouched": destroying one key (and an
/// absent one) leaves every neighbour loadable and listed.
pub async fn destroy_leaves_neighbours<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let mut ks = keys(6);
    ks.sort();
    let mut written = Vec::new();
    for (i, k) in ks.iter().enumerate() {
        let record = long_lived(data_n(i as i64)).with_version(i as u64);
        ok("save", store.save(k, &record).await);
        written.push((*k, record));
    }
    let victim = written.remove(2);
    ok("destroy", store.destroy(&victim.0).await);
    ok("destroy", store.destroy(&key()).await);
    assert_gone(&store, &victim.0, "the destroyed key").await;
    for (k, record) in &written {
        assert_loads(&store, k, record, "a neighbour of a destroyed key").await;
    }
    assert_eq!(ok("len", store.len().await), 5, "five neighbours remain");
    assert_eq!(
        all_sorted(&store).await,
        written,
        "all lists exactly the neighbours"
    );
    finish(&store).await;
}

/// "A record's principal is stored and returned like the rest of it, by
/// every store": `create`, `save` and `update` write it (an `update` or
/// `save` without one removes it), `touch` keeps it, `load` and `list`
/// return it. Principals of every shape a [`Principal`] allows round-trip:
/// unicode, 255 bytes, punctuation.
///
/// [`Principal`]: session_core::Principal
pub async fn round_trip_principal<F: StoreFactory>(factory: &F) {
    use session_core::{Principal, UpdateOutcome};

    let store = open(factory).await;
    let names = [
        "ada".to_owned(),
        "user:42/ünïcødé ✓ 😀 \"quoted\" 'single' %_*?[]{}\\".to_owned(),
        "é".repeat(127) + "x",
    ];
    let principal = |i: usize| {
        Principal::new(names[i].clone())
            .unwrap_or_else(|e| panic!("the suite's principal {i} must be valid: {e}"))
    };
    assert_eq!(names[2].len(), Principal::MAX_LEN, "the longest principal");
    let mut written = Vec::new();
    for i in 0..names.len() {
        let k = key();
        let record = long_lived(data_n(i as i64)).with_principal(Some(principal(i)));
        if i % 2 == 0 {
            assert!(
                ok("create", store.create(&k, &record).await),
                "create on a fresh key"
            );
        } else {
            ok("save", store.save(&k, &record).await);
        }
        assert_loads(&store, &k, &record, "a record written with a principal").await;
        written.push((k, record));
    }
    assert_eq!(
        all_sorted(&store).await,
        sorted(written.clone()),
        "all (list) must return each record's principal"
    );

    // touch keeps the principal.
    let (k, record) = written[0].clone();
    let later = record.expires_at + Duration::from_secs(60);
    assert!(
        ok("touch", store.touch(&k, later).await),
        "touch of a live record"
    );
    let mut touched = record.clone();
    touched.expires_at = later;
    assert_loads(&store, &k, &touched, "touch must keep the principal").await;

    // update moves it to another principal, then removes it.
    let moved = long_lived(data_n(10)).with_principal(Some(principal(1)));
    assert_eq!(
        ok("update", store.update(&k, &moved, touched.version).await),
        UpdateOutcome::Updated
    );
    let moved = moved.with_version(touched.version + 1);
    assert_loads(&store, &k, &moved, "update writes the new principal").await;
    let anonymous = long_lived(data_n(11));
    assert_eq!(
        ok("update", store.update(&k, &anonymous, moved.version).await),
        UpdateOutcome::Updated
    );
    let anonymous = anonymous.with_version(moved.version + 1);
    assert_loads(
        &store,
        &k,
        &anonymous,
        "an update without a principal removes it",
    )
    .await;

    // save replaces it too.
    let (k, _) = written[1].clone();
    let saved = long_lived(data_n(12));
    ok("save", store.save(&k, &saved).await);
    assert_loads(&store, &k, &saved, "a save without a principal removes it").await;
    finish(&store).await;
}

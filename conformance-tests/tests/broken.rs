//! The suite catches broken stores.
//!
//! Each fault below wraps the correct reference store and breaks exactly one
//! rule of the contract; each test runs the whole suite on it and requires
//! that it fails, and that the behaviours written for that rule are among
//! the failures.

mod common;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use common::fault::{Fault, FaultyFactory};
use common::{RefFactory, RefStore, canonical, key_ordered_page};
use session_conformance::{Capabilities, StoreFactory, run_all, unique_namespace};
use session_core::{
    Cursor, Data, Page, Record, Result, SessionKey, SessionStore, Timestamp, UpdateOutcome,
    async_trait,
};

/// Run the suite on `factory` and return the failed behaviours.
async fn failures<F: StoreFactory>(factory: F) -> BTreeMap<&'static str, String> {
    run_all(Arc::new(factory))
        .await
        .into_iter()
        .filter_map(|o| o.failure.map(|f| (o.name, f)))
        .collect()
}

/// Require the suite to fail on `factory`, at least in every behaviour of
/// `must_fail`.
async fn assert_caught<F: StoreFactory>(what: &str, factory: F, must_fail: &[&str]) {
    let failed = failures(factory).await;
    eprintln!("{what} caught by {} behaviour(s):", failed.len());
    for (name, message) in &failed {
        eprintln!("  {name}: {}", message.lines().next().unwrap_or(""));
    }
    assert!(
        !failed.is_empty(),
        "the suite passed a broken store: {what}"
    );
    for name in must_fail {
        assert!(
            session_conformance::BEHAVIOURS.contains(name),
            "{name} is not a behaviour"
        );
        assert!(
            failed.contains_key(name),
            "{name} should have caught {what}; it failed only: {:?}",
            failed.keys().collect::<Vec<_>>()
        );
    }
}

/// Run the suite on the reference store with fault `B`.
async fn assert_fault_caught<B: Fault>(must_fail: &[&str]) {
    let name = std::any::type_name::<B>()
        .rsplit("::")
        .next()
        .unwrap_or("?");
    assert_caught(name, FaultyFactory::<B>::default(), must_fail).await;
}

/// Whether `record` is live now.
fn live(record: &Record) -> bool {
    record.is_live_at(Timestamp::now())
}

// ---------------------------------------------------------------- principal

/// The principal is not stored: records come back without it.
#[derive(Debug, Default)]
struct DropsPrincipal;

#[async_trait]
impl Fault for DropsPrincipal {
    fn written<'a>(&self, record: &'a Record) -> Cow<'a, Record> {
        Cow::Owned(record.clone().with_principal(None))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_the_principal_not_stored() {
    assert_fault_caught::<DropsPrincipal>(&["round_trip_principal"]).await;
}

/// `touch` writes the record back without its principal.
#[derive(Debug, Default)]
struct TouchDropsPrincipal;

#[async_trait]
impl Fault for TouchDropsPrincipal {
    async fn touch(&self, s: &RefStore, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let touched = s.touch(key, expires_at).await?;
        s.with_map(|m| {
            if let Some(record) = m.get_mut(key) {
                record.principal = None;
            }
        });
        Ok(touched)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_touch_dropping_the_principal() {
    assert_fault_caught::<TouchDropsPrincipal>(&["round_trip_principal"]).await;
}

// ---------------------------------------------------------------- expiry

/// `load` returns expired records (trusts reaping to have removed them).
#[derive(Debug, Default)]
struct LoadReturnsExpired;

#[async_trait]
impl Fault for LoadReturnsExpired {
    async fn load(&self, s: &RefStore, key: &SessionKey) -> Result<Option<Record>> {
        Ok(s.with_map(|m| m.get(key).cloned()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_load_returning_expired_records() {
    assert_fault_caught::<LoadReturnsExpired>(&[
        "touch_to_past_expires",
        "update_after_expiry_is_missing",
        "touch_expired_does_not_resurrect",
        "update_to_past_expiry_removes",
        "expiry_boundary_live_before_gone_after",
    ])
    .await;
}

/// `len` counts expired records too.
#[derive(Debug, Default)]
struct LenCountsExpired;

#[async_trait]
impl Fault for LenCountsExpired {
    async fn len(&self, s: &RefStore) -> Result<u64> {
        Ok(s.with_map(|m| m.len() as u64))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_len_counting_expired_records() {
    assert_fault_caught::<LenCountsExpired>(&[
        "len_counts_only_live",
        "touch_to_past_expires",
        "delete_expired_removes_only_expired",
    ])
    .await;
}

/// `list` (and so `all`) lists expired records too.
#[derive(Debug, Default)]
struct AllIncludesExpired;

#[async_trait]
impl Fault for AllIncludesExpired {
    async fn list(
        &self,
        s: &RefStore,
        cursor: Option<&Cursor>,
        limit: NonZeroUsize,
    ) -> Result<Page> {
        s.list_at(cursor, limit, Timestamp::now(), |_, _| true)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_all_listing_expired_records() {
    assert_fault_caught::<AllIncludesExpired>(&[
        "all_lists_exactly_live_records",
        "list_pages_cover_every_live_record_once",
        "list_never_returns_records_that_expire_during_the_listing",
        "touch_to_past_expires",
        "delete_expired_removes_only_expired",
    ])
    .await;
}

/// `save` of a past-expiry record is ignored, keeping the existing record.
#[derive(Debug, Default)]
struct SaveIgnoresPastExpiry;

#[async_trait]
impl Fault for SaveIgnoresPastExpiry {
    async fn save(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<()> {
        if live(record) {
            s.save(key, record).await
        } else {
            Ok(())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_save_keeping_the_record_a_past_expiry_should_remove() {
    assert_fault_caught::<SaveIgnoresPastExpiry>(&["save_expired_removes_existing"]).await;
}

/// `save` stores a past-expiry record as given (invisible to readers, but
/// stored: `delete_expired` finds it).
#[derive(Debug, Default)]
struct SaveStoresPastExpiry;

#[async_trait]
impl Fault for SaveStoresPastExpiry {
    async fn save(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<()> {
        let record = canonical(key, record)?;
        s.with_map(|m| m.insert(*key, record));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_save_storing_a_past_expiry_record() {
    assert_fault_caught::<SaveStoresPastExpiry>(&["save_expired_stores_nothing"]).await;
}

/// `delete_expired` confuses `created_at` with `expires_at` and removes
/// live records.
#[derive(Debug, Default)]
struct DeleteExpiredRemovesLive;

#[async_trait]
impl Fault for DeleteExpiredRemovesLive {
    async fn delete_expired(&self, s: &RefStore) -> Result<u64> {
        let now = Timestamp::now();
        Ok(s.with_map(|m| {
            let before = m.len();
            m.retain(|_, r| r.created_at > now);
            (before - m.len()) as u64
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_delete_expired_removing_live_records() {
    assert_fault_caught::<DeleteExpiredRemovesLive>(&["delete_expired_removes_only_expired"]).await;
}

/// Times are stored truncated to whole seconds.
#[derive(Debug, Default)]
struct TruncatesToSeconds;

fn to_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_millis(t.as_millis() - t.as_millis().rem_euclid(1000))
}

fn truncated(record: &Record) -> Record {
    let mut record = record.clone();
    record.created_at = to_seconds(record.created_at);
    record.expires_at = to_seconds(record.expires_at);
    record
}

#[async_trait]
impl Fault for TruncatesToSeconds {
    fn written<'a>(&self, record: &'a Record) -> Cow<'a, Record> {
        Cow::Owned(truncated(record))
    }
    async fn touch(&self, s: &RefStore, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        s.touch(key, to_seconds(expires_at)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_timestamps_truncated_to_seconds() {
    assert_fault_caught::<TruncatesToSeconds>(&[
        "round_trip_times_and_version_exact",
        "touch_extends_and_keeps_data_and_version",
    ])
    .await;
}

// ---------------------------------------------------------------- touch

/// `touch` ignores liveness: it re-lives expired records and creates an
/// empty one on a missing key.
#[derive(Debug, Default)]
struct TouchResurrects;

#[async_trait]
impl Fault for TouchResurrects {
    async fn touch(&self, s: &RefStore, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        Ok(s.with_map(|m| {
            let record = m
                .entry(*key)
                .or_insert_with(|| Record::with_times(Data::new(), Timestamp::now(), expires_at));
            record.expires_at = expires_at;
            true
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_touch_resurrecting() {
    assert_fault_caught::<TouchResurrects>(&[
        "touch_absent_returns_false",
        "touch_after_destroy_returns_false",
        "touch_expired_does_not_resurrect",
    ])
    .await;
}

/// `touch` bumps the version (rewrites the record instead of moving expiry).
#[derive(Debug, Default)]
struct TouchBumpsVersion;

#[async_trait]
impl Fault for TouchBumpsVersion {
    async fn touch(&self, s: &RefStore, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        Ok(s.with_map(|m| match m.get_mut(key).filter(|r| live(r)) {
            Some(record) => {
                record.expires_at = expires_at;
                record.version += 1;
                true
            }
            None => false,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_touch_bumping_the_version() {
    assert_fault_caught::<TouchBumpsVersion>(&[
        "touch_extends_and_keeps_data_and_version",
        "all_lists_exactly_live_records",
    ])
    .await;
}

/// `touch` rewrites the record with empty data.
#[derive(Debug, Default)]
struct TouchClearsData;

#[async_trait]
impl Fault for TouchClearsData {
    async fn touch(&self, s: &RefStore, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        Ok(s.with_map(|m| match m.get_mut(key).filter(|r| live(r)) {
            Some(record) => {
                record.expires_at = expires_at;
                record.data = Data::new();
                true
            }
            None => false,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_touch_clearing_data() {
    assert_fault_caught::<TouchClearsData>(&[
        "touch_extends_and_keeps_data_and_version",
        "all_lists_exactly_live_records",
        "expiry_follows_touch_and_update",
    ])
    .await;
}

// ---------------------------------------------------------------- create

/// `create` overwrites a live record.
#[derive(Debug, Default)]
struct CreateOverwrites;

#[async_trait]
impl Fault for CreateOverwrites {
    async fn create(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<bool> {
        s.save(key, record).await?;
        Ok(true)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_create_overwriting_a_live_record() {
    assert_fault_caught::<CreateOverwrites>(&[
        "create_collision_leaves_existing",
        "concurrent_create_has_one_winner",
    ])
    .await;
}

/// `create` stores version 0 instead of the record's version.
#[derive(Debug, Default)]
struct CreateResetsVersion;

#[async_trait]
impl Fault for CreateResetsVersion {
    async fn create(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<bool> {
        s.create(key, &record.clone().with_version(0)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_create_resetting_the_version() {
    assert_fault_caught::<CreateResetsVersion>(&[
        "create_inserts_as_given",
        "round_trip_times_and_version_exact",
    ])
    .await;
}

// ---------------------------------------------------------------- update

/// `update` ignores the expected version (last writer wins).
#[derive(Debug, Default)]
struct UpdateIgnoresVersion;

#[async_trait]
impl Fault for UpdateIgnoresVersion {
    async fn update(
        &self,
        s: &RefStore,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        let record = canonical(key, record)?;
        Ok(s.with_map(|m| match m.get(key).filter(|r| live(r)) {
            None => UpdateOutcome::Missing,
            Some(_) => {
                m.insert(*key, record.with_version(expected.wrapping_add(1)));
                UpdateOutcome::Updated
            }
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_update_ignoring_the_version() {
    assert_fault_caught::<UpdateIgnoresVersion>(&[
        "update_wrong_version_conflicts",
        "concurrent_updates_are_atomic",
    ])
    .await;
}

/// `update` treats a missing or expired record as an insert (upsert).
#[derive(Debug, Default)]
struct UpdateUpserts;

#[async_trait]
impl Fault for UpdateUpserts {
    async fn update(
        &self,
        s: &RefStore,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        let record = canonical(key, record)?;
        Ok(s.with_map(|m| match m.get(key).filter(|r| live(r)) {
            Some(current) if current.version != expected => UpdateOutcome::Conflict,
            _ => {
                m.insert(*key, record.with_version(expected + 1));
                UpdateOutcome::Updated
            }
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_update_resurrecting_a_destroyed_record() {
    assert_fault_caught::<UpdateUpserts>(&[
        "update_absent_is_missing",
        "update_after_destroy_is_missing",
        "update_after_expiry_is_missing",
        "concurrent_destroy_never_resurrected",
    ])
    .await;
}

/// `update` checks the version, then yields before writing: read-then-write
/// instead of one atomic step.
#[derive(Debug, Default)]
struct UpdateNotAtomic;

#[async_trait]
impl Fault for UpdateNotAtomic {
    async fn update(
        &self,
        s: &RefStore,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        let record = canonical(key, record)?;
        let checked = s.with_map(|m| match m.get(key).filter(|r| live(r)) {
            None => UpdateOutcome::Missing,
            Some(current) if current.version != expected => UpdateOutcome::Conflict,
            Some(_) => UpdateOutcome::Updated,
        });
        if checked == UpdateOutcome::Updated {
            tokio::task::yield_now().await;
            s.with_map(|m| m.insert(*key, record.with_version(expected + 1)));
        }
        Ok(checked)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_update_that_is_not_atomic() {
    assert_fault_caught::<UpdateNotAtomic>(&["concurrent_updates_are_atomic"]).await;
}

/// `update` merges the new data into the old instead of replacing it.
#[derive(Debug, Default)]
struct UpdateMergesData;

#[async_trait]
impl Fault for UpdateMergesData {
    async fn update(
        &self,
        s: &RefStore,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        let mut merged = record.clone();
        if let Some(current) = s.load(key).await? {
            merged.data = current.data;
            merged.data.extend(record.data.clone());
        }
        s.update(key, &merged, expected).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_update_merging_data() {
    assert_fault_caught::<UpdateMergesData>(&["update_applies_and_bumps_version"]).await;
}

/// `update` replaces the data but keeps the old times.
#[derive(Debug, Default)]
struct UpdateKeepsTimes;

#[async_trait]
impl Fault for UpdateKeepsTimes {
    async fn update(
        &self,
        s: &RefStore,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        let mut kept = record.clone();
        if let Some(current) = s.load(key).await? {
            kept.created_at = current.created_at;
            kept.expires_at = current.expires_at;
        }
        s.update(key, &kept, expected).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_update_keeping_old_times() {
    assert_fault_caught::<UpdateKeepsTimes>(&[
        "update_applies_and_bumps_version",
        "update_to_past_expiry_removes",
    ])
    .await;
}

/// Versions are stored as `i64`, saturating: `u64::MAX` is lost.
#[derive(Debug, Default)]
struct VersionAsI64;

fn saturated(record: &Record) -> Record {
    let version = record.version.min(i64::MAX as u64);
    record.clone().with_version(version)
}

#[async_trait]
impl Fault for VersionAsI64 {
    fn written<'a>(&self, record: &'a Record) -> Cow<'a, Record> {
        Cow::Owned(saturated(record))
    }
    // `update` ignores `record.version`: the stored `expected + 1` is what
    // gets saturated.
    async fn update(
        &self,
        s: &RefStore,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        let outcome = s.update(key, record, expected).await?;
        if outcome == UpdateOutcome::Updated {
            s.with_map(|m| {
                if let Some(r) = m.get_mut(key) {
                    r.version = r.version.min(i64::MAX as u64);
                }
            });
        }
        Ok(outcome)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_versions_truncated_to_i64() {
    assert_fault_caught::<VersionAsI64>(&[
        "update_reaches_u64_max",
        "round_trip_times_and_version_exact",
    ])
    .await;
}

// ---------------------------------------------------------------- data

/// Integers above `i64::MAX` are stored as floats.
#[derive(Debug, Default)]
struct LosesBigIntegers;

fn lossy_value(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.as_u64().is_some_and(|u| u > i64::MAX as u64) => {
            serde_json::json!(n.as_f64().unwrap_or(0.0))
        }
        Value::Array(items) => Value::Array(items.iter().map(lossy_value).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), lossy_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn lossy(record: &Record) -> Record {
    let mut record = record.clone();
    record.data = record
        .data
        .iter()
        .map(|(k, v)| (k.clone(), lossy_value(v)))
        .collect();
    record
}

#[async_trait]
impl Fault for LosesBigIntegers {
    fn written<'a>(&self, record: &'a Record) -> Cow<'a, Record> {
        Cow::Owned(lossy(record))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_data_losing_u64_max() {
    assert_fault_caught::<LosesBigIntegers>(&[
        "round_trip_integer_extremes",
        "round_trip_preserves_values",
    ])
    .await;
}

/// `save` writes the data, yields, then the times and version: two
/// concurrent saves to one key can leave a mix of both.
#[derive(Debug, Default)]
struct TornSave;

#[async_trait]
impl Fault for TornSave {
    async fn save(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<()> {
        if !live(record) {
            return s.save(key, record).await;
        }
        let record = canonical(key, record)?;
        let existed = s.with_map(|m| match m.get_mut(key) {
            Some(current) => {
                current.data = record.data.clone();
                true
            }
            None => false,
        });
        if !existed {
            return s.save(key, &record).await;
        }
        tokio::task::yield_now().await;
        s.with_map(|m| {
            if let Some(current) = m.get_mut(key) {
                current.created_at = record.created_at;
                current.expires_at = record.expires_at;
                current.version = record.version;
            }
        });
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_torn_concurrent_saves() {
    assert_fault_caught::<TornSave>(&["concurrent_writers_same_key_no_torn_records"]).await;
}

// ---------------------------------------------------------------- destroy

/// `destroy` also removes another key of the namespace.
#[derive(Debug, Default)]
struct DestroyRemovesNeighbour;

#[async_trait]
impl Fault for DestroyRemovesNeighbour {
    async fn destroy(&self, s: &RefStore, key: &SessionKey) -> Result<()> {
        s.with_map(|m| {
            m.remove(key);
            if let Some(other) = m.keys().min().copied() {
                m.remove(&other);
            }
        });
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_destroy_removing_a_neighbour() {
    assert_fault_caught::<DestroyRemovesNeighbour>(&["destroy_leaves_neighbours"]).await;
}

// ---------------------------------------------------------------- namespaces

/// `clear` clears every namespace of the backend.
#[derive(Debug, Default)]
struct ClearCrossesNamespaces;

#[async_trait]
impl Fault for ClearCrossesNamespaces {
    async fn clear(&self, s: &RefStore) -> Result<()> {
        s.with_universe(std::collections::HashMap::clear);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_clear_crossing_namespaces() {
    assert_fault_caught::<ClearCrossesNamespaces>(&[
        "clear_respects_namespaces",
        "empty_namespace_is_empty",
    ])
    .await;
}

/// A factory whose stores ignore the namespace: every store shares one.
#[derive(Debug, Default)]
struct IgnoresNamespace(RefFactory);

#[async_trait]
impl StoreFactory for IgnoresNamespace {
    type Store = RefStore;

    async fn open(&self, _namespace: &str) -> RefStore {
        self.0.open("shared").await
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_stores_sharing_one_namespace() {
    assert_caught(
        "IgnoresNamespace",
        IgnoresNamespace::default(),
        &[
            "empty_namespace_is_empty",
            "clear_respects_namespaces",
            "namespaces_are_isolated",
        ],
    )
    .await;
}

/// A factory that claims to be durable but opens an empty namespace every
/// time.
#[derive(Debug, Default)]
struct ForgetsOnReopen(RefFactory);

#[async_trait]
impl StoreFactory for ForgetsOnReopen {
    type Store = RefStore;

    async fn open(&self, _namespace: &str) -> RefStore {
        self.0.open(&unique_namespace()).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_durable_store_that_forgets_on_reopen() {
    assert_caught(
        "ForgetsOnReopen",
        ForgetsOnReopen::default(),
        &["reopen_durable_store"],
    )
    .await;
}

// ------------------------------------------ rules checked since issue 11

/// `clear` deletes one batch of 1,000 and stops (a `DELETE … LIMIT` or one
/// `SCAN` page that is never repeated).
#[derive(Debug, Default)]
struct ClearsOneBatch;

#[async_trait]
impl Fault for ClearsOneBatch {
    async fn clear(&self, s: &RefStore) -> Result<()> {
        s.with_map(|m| {
            let batch: Vec<SessionKey> = m.keys().take(1000).copied().collect();
            for key in batch {
                m.remove(&key);
            }
        });
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_clear_that_stops_after_one_batch() {
    assert_fault_caught::<ClearsOneBatch>(&["clear_removes_every_session_at_scale"]).await;
}

/// Liveness off by one (`now <= expires_at`) in a store whose every call
/// takes 2 ms after it read the clock, as a network round trip would: no
/// check within one millisecond can see it.
#[derive(Debug, Default)]
struct OffByOneAndSlow;

/// The off-by-one rule: still live in the millisecond it expires in.
fn live_inclusive(record: &Record, now: Timestamp) -> bool {
    record.expires_at.as_millis() >= now.as_millis()
}

/// Read the clock, then take 2 ms.
async fn slow_now() -> Timestamp {
    let now = Timestamp::now();
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    now
}

#[async_trait]
impl Fault for OffByOneAndSlow {
    async fn load(&self, s: &RefStore, key: &SessionKey) -> Result<Option<Record>> {
        Ok(s.load_at(key, slow_now().await, live_inclusive))
    }
    async fn create(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<bool> {
        s.create_at(key, record, slow_now().await, live_inclusive)
    }
    async fn update(
        &self,
        s: &RefStore,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        s.update_at(key, record, expected, slow_now().await, live_inclusive)
    }
    async fn touch(&self, s: &RefStore, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        Ok(s.touch_at(key, expires_at, slow_now().await, live_inclusive))
    }
    async fn len(&self, s: &RefStore) -> Result<u64> {
        Ok(s.len_at(slow_now().await, live_inclusive))
    }
    async fn list(
        &self,
        s: &RefStore,
        cursor: Option<&Cursor>,
        limit: NonZeroUsize,
    ) -> Result<Page> {
        s.list_at(cursor, limit, slow_now().await, live_inclusive)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_an_off_by_one_boundary_on_a_slow_store() {
    assert_fault_caught::<OffByOneAndSlow>(&["expiry_boundary_is_exact_to_the_millisecond"]).await;
}

/// `clear`, `len`, `all` and `delete_expired` take every namespace whose
/// name starts with this one's (a key-prefix match without a separator).
#[derive(Debug, Default)]
struct MatchesNamespacesByPrefix;

impl MatchesNamespacesByPrefix {
    fn matching<R>(s: &RefStore, mut f: impl FnMut(&mut common::Sessions) -> R) -> Vec<R> {
        let own = s.namespace().to_owned();
        s.with_universe(|universe| {
            universe
                .iter_mut()
                .filter(|(name, _)| name.starts_with(&own))
                .map(|(_, sessions)| f(sessions))
                .collect()
        })
    }
}

#[async_trait]
impl Fault for MatchesNamespacesByPrefix {
    async fn clear(&self, s: &RefStore) -> Result<()> {
        Self::matching(s, std::collections::HashMap::clear);
        Ok(())
    }
    async fn len(&self, s: &RefStore) -> Result<u64> {
        Ok(
            Self::matching(s, |m| m.values().filter(|r| live(r)).count() as u64)
                .into_iter()
                .sum(),
        )
    }
    async fn list(
        &self,
        s: &RefStore,
        cursor: Option<&Cursor>,
        limit: NonZeroUsize,
    ) -> Result<Page> {
        let entries = Self::matching(s, |m| {
            m.iter().map(|(k, r)| (*k, r.clone())).collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect();
        key_ordered_page(entries, cursor, limit, live)
    }
    async fn delete_expired(&self, s: &RefStore) -> Result<u64> {
        Ok(Self::matching(s, |m| {
            let before = m.len();
            m.retain(|_, r| live(r));
            (before - m.len()) as u64
        })
        .into_iter()
        .sum())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_namespaces_matched_by_prefix() {
    assert_fault_caught::<MatchesNamespacesByPrefix>(&[
        "namespaces_that_prefix_each_other_are_isolated",
    ])
    .await;
}

/// `delete_expired` also removes what expires within the next second (a
/// cut-off rounded up to the second).
#[derive(Debug, Default)]
struct ReapsWhatExpiresSoon;

#[async_trait]
impl Fault for ReapsWhatExpiresSoon {
    async fn delete_expired(&self, s: &RefStore) -> Result<u64> {
        let cutoff = Timestamp::now() + std::time::Duration::from_secs(1);
        Ok(s.with_map(|m| {
            let before = m.len();
            m.retain(|_, r| r.is_live_at(cutoff));
            (before - m.len()) as u64
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_delete_expired_removing_what_is_about_to_expire() {
    assert_fault_caught::<ReapsWhatExpiresSoon>(&["delete_expired_spares_records_about_to_expire"])
        .await;
}

/// `update` compares versions before liveness: an expired record with
/// another version answers `Conflict`.
#[derive(Debug, Default)]
struct VersionBeforeLiveness;

#[async_trait]
impl Fault for VersionBeforeLiveness {
    async fn update(
        &self,
        s: &RefStore,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        let conflict = s.with_map(|m| m.get(key).is_some_and(|r| r.version != expected));
        if conflict {
            return Ok(UpdateOutcome::Conflict);
        }
        s.update(key, record, expected).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_update_comparing_the_version_before_liveness() {
    assert_fault_caught::<VersionBeforeLiveness>(&["update_of_expired_is_missing_for_any_version"])
        .await;
}

/// `create` of an already-expired record removes whatever is there and
/// answers `true`, also over a live record.
#[derive(Debug, Default)]
struct ExpiredCreateOverwrites;

#[async_trait]
impl Fault for ExpiredCreateOverwrites {
    async fn create(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<bool> {
        if !live(record) {
            s.destroy(key).await?;
            return Ok(true);
        }
        s.create(key, record).await
    }
}

/// `create` of an already-expired record answers `false` whenever a
/// record, even an expired one, is stored under the key.
#[derive(Debug, Default)]
struct ExpiredCreateCollidesWithExpired;

#[async_trait]
impl Fault for ExpiredCreateCollidesWithExpired {
    async fn create(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<bool> {
        if !live(record) && s.with_map(|m| m.contains_key(key)) {
            return Ok(false);
        }
        s.create(key, record).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_an_expired_create_that_ignores_the_collision_rule() {
    assert_fault_caught::<ExpiredCreateOverwrites>(&["create_expired_follows_the_collision_rule"])
        .await;
    assert_fault_caught::<ExpiredCreateCollidesWithExpired>(&[
        "create_expired_follows_the_collision_rule",
    ])
    .await;
}

/// `delete_expired` removes nothing (and says so): every expired session
/// is kept forever.
#[derive(Debug, Default)]
struct NeverReaps;

#[async_trait]
impl Fault for NeverReaps {
    async fn delete_expired(&self, _s: &RefStore) -> Result<u64> {
        Ok(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_delete_expired_that_never_reaps() {
    assert_fault_caught::<NeverReaps>(&["delete_expired_removes_what_expired_by_time"]).await;
}

/// `delete_expired` sweeps with a bound a second behind the clock (a
/// lagging sweep, or an index whose current bucket is never walked):
/// records that have only just expired are left for a later sweep.
#[derive(Debug, Default)]
struct ReapsOnlyLongExpired;

#[async_trait]
impl Fault for ReapsOnlyLongExpired {
    async fn delete_expired(&self, s: &RefStore) -> Result<u64> {
        let bound = Timestamp::now() - std::time::Duration::from_secs(1);
        Ok(s.with_map(|m| {
            let before = m.len();
            m.retain(|_, r| r.expires_at.is_after(bound));
            (before - m.len()) as u64
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_delete_expired_that_lags_behind_the_clock() {
    assert_fault_caught::<ReapsOnlyLongExpired>(&["delete_expired_removes_what_has_just_expired"])
        .await;
}

/// An expiry index with one slot per expiry instant: the last key written
/// to expire at a given millisecond takes the slot, and `delete_expired`
/// reaps only the keys its index holds. Records that shared an instant
/// with a later write are never reaped (hidden from reads, kept forever).
#[derive(Debug, Default)]
struct OneKeyPerExpiryInstant {
    index: std::sync::Mutex<BTreeMap<Timestamp, SessionKey>>,
}

impl OneKeyPerExpiryInstant {
    fn note(&self, key: &SessionKey, expires_at: Timestamp) {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(expires_at, *key);
    }
}

#[async_trait]
impl Fault for OneKeyPerExpiryInstant {
    async fn create(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<bool> {
        self.note(key, record.expires_at);
        s.create(key, record).await
    }
    async fn update(
        &self,
        s: &RefStore,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        self.note(key, record.expires_at);
        s.update(key, record, expected).await
    }
    async fn save(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<()> {
        self.note(key, record.expires_at);
        s.save(key, record).await
    }
    async fn touch(&self, s: &RefStore, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        self.note(key, expires_at);
        s.touch(key, expires_at).await
    }
    async fn delete_expired(&self, s: &RefStore) -> Result<u64> {
        let indexed: Vec<SessionKey> = self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .copied()
            .collect();
        Ok(s.with_map(|m| {
            let mut removed = 0;
            for k in &indexed {
                if m.get(k).is_some_and(|r| !live(r)) {
                    m.remove(k);
                    removed += 1;
                }
            }
            removed
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_an_expiry_index_that_loses_neighbours() {
    assert_fault_caught::<OneKeyPerExpiryInstant>(&[
        "delete_expired_counts_each_record_once_after_churn",
    ])
    .await;
}

/// `delete_expired` counts a record once per index entry it meets: a
/// record moved to an earlier expiry (two entries) is counted twice.
#[derive(Debug, Default)]
struct CountsMovedRecordsTwice {
    /// Keys whose expiry was moved earlier than first written.
    moved: std::sync::Mutex<std::collections::BTreeSet<SessionKey>>,
}

#[async_trait]
impl Fault for CountsMovedRecordsTwice {
    async fn touch(&self, s: &RefStore, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        if s.with_map(|m| m.get(key).is_some_and(|r| expires_at < r.expires_at)) {
            self.moved
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(*key);
        }
        s.touch(key, expires_at).await
    }
    async fn delete_expired(&self, s: &RefStore) -> Result<u64> {
        let moved = std::mem::take(
            &mut *self
                .moved
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Ok(s.with_map(|m| {
            let due: Vec<SessionKey> = m
                .iter()
                .filter(|(_, r)| !live(r))
                .map(|(k, _)| *k)
                .collect();
            due.iter()
                .map(|k| {
                    m.remove(k);
                    if moved.contains(k) { 2 } else { 1 }
                })
                .sum()
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_delete_expired_counting_a_moved_record_twice() {
    assert_fault_caught::<CountsMovedRecordsTwice>(&[
        "delete_expired_counts_each_record_once_after_churn",
    ])
    .await;
}

/// A lazy expiry index that `delete_expired` trusts: it removes every
/// record whose *first* expiry has passed, without looking at the record
/// (so a session postponed since is lost).
#[derive(Debug, Default)]
struct TrustsAStaleIndex {
    /// The earliest expiry written per key: what a lazy index holds.
    index: std::sync::Mutex<BTreeMap<SessionKey, Timestamp>>,
}

impl TrustsAStaleIndex {
    fn note(&self, key: &SessionKey, expires_at: Timestamp) {
        let mut index = self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = index.entry(*key).or_insert(expires_at);
        *entry = (*entry).min(expires_at);
    }
}

#[async_trait]
impl Fault for TrustsAStaleIndex {
    async fn create(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<bool> {
        self.note(key, record.expires_at);
        s.create(key, record).await
    }
    async fn update(
        &self,
        s: &RefStore,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        self.note(key, record.expires_at);
        s.update(key, record, expected).await
    }
    async fn save(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<()> {
        self.note(key, record.expires_at);
        s.save(key, record).await
    }
    async fn touch(&self, s: &RefStore, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        self.note(key, expires_at);
        s.touch(key, expires_at).await
    }
    async fn delete_expired(&self, s: &RefStore) -> Result<u64> {
        let now = Timestamp::now();
        let due: Vec<SessionKey> = {
            let index = self
                .index
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            index
                .iter()
                .filter(|(_, at)| !at.is_after(now))
                .map(|(k, _)| *k)
                .collect()
        };
        Ok(s.with_map(|m| due.iter().filter(|k| m.remove(k).is_some()).count() as u64))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_delete_expired_trusting_a_stale_index() {
    assert_fault_caught::<TrustsAStaleIndex>(&["delete_expired_spares_postponed_records"]).await;
}

/// Writes of data too deep to read back "succeed" and store nothing (the
/// encode error swallowed).
#[derive(Debug, Default)]
struct SwallowsEncodeErrors;

fn unencodable(record: &Record) -> bool {
    record.data.encoded().is_err()
}

#[async_trait]
impl Fault for SwallowsEncodeErrors {
    async fn create(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<bool> {
        if unencodable(record) {
            return Ok(true);
        }
        s.create(key, record).await
    }
    async fn update(
        &self,
        s: &RefStore,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        if unencodable(record) {
            return Ok(UpdateOutcome::Updated);
        }
        s.update(key, record, expected).await
    }
    async fn save(&self, s: &RefStore, key: &SessionKey, record: &Record) -> Result<()> {
        if unencodable(record) {
            return Ok(());
        }
        s.save(key, record).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_writes_that_swallow_encode_errors() {
    assert_fault_caught::<SwallowsEncodeErrors>(&["data_deeper_than_the_limit_is_refused"]).await;
}

/// `update` answers `Missing` for every refused update, a conflict
/// included ("0 rows changed"): the session handle then takes a concurrent
/// request's win for a logout and drops its own change.
#[derive(Debug, Default)]
struct ConflictReportedAsMissing;

#[async_trait]
impl Fault for ConflictReportedAsMissing {
    async fn update(
        &self,
        s: &RefStore,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        Ok(match s.update(key, record, expected).await? {
            UpdateOutcome::Conflict => UpdateOutcome::Missing,
            other => other,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_conflict_reported_as_missing() {
    assert_fault_caught::<ConflictReportedAsMissing>(&[
        "update_wrong_version_conflicts",
        "session_handle_keeps_every_change_under_contention",
    ])
    .await;
}

// ---------------------------------------------------------------- listing

/// The live records of `s`, sorted by key.
fn sorted_live(s: &RefStore) -> Vec<(SessionKey, Record)> {
    let mut entries: Vec<_> = s.with_map(|m| {
        m.iter()
            .filter(|(_, r)| live(r))
            .map(|(k, r)| (*k, r.clone()))
            .collect()
    });
    entries.sort_unstable_by_key(|(k, _)| *k);
    entries
}

/// `list` ignores `limit`: one page of everything, however large.
#[derive(Debug, Default)]
struct ListIgnoresLimit;

#[async_trait]
impl Fault for ListIgnoresLimit {
    async fn list(
        &self,
        s: &RefStore,
        cursor: Option<&Cursor>,
        _limit: NonZeroUsize,
    ) -> Result<Page> {
        s.list_at(cursor, NonZeroUsize::MAX, Timestamp::now(), |r, now| {
            r.is_live_at(now)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_listing_that_ignores_the_page_size() {
    assert_fault_caught::<ListIgnoresLimit>(&["list_pages_cover_every_live_record_once"]).await;
}

/// `list` resumes *at* the cursor's key instead of after it, so each
/// page repeats the last record of the one before.
#[derive(Debug, Default)]
struct ListRepeatsTheBoundary;

#[async_trait]
impl Fault for ListRepeatsTheBoundary {
    async fn list(
        &self,
        s: &RefStore,
        cursor: Option<&Cursor>,
        limit: NonZeroUsize,
    ) -> Result<Page> {
        let from = cursor.map(|c| c.key_after("reference")).transpose()?;
        let mut entries = sorted_live(s);
        entries.retain(|(k, _)| from.is_none_or(|f| *k >= f));
        let more = entries.len() > limit.get();
        entries.truncate(limit.get());
        let next = if more {
            entries.last().map(|(k, _)| Cursor::after(k))
        } else {
            None
        };
        Ok(Page {
            records: entries,
            next,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_listing_that_repeats_page_boundaries() {
    assert_fault_caught::<ListRepeatsTheBoundary>(&["list_pages_cover_every_live_record_once"])
        .await;
}

/// `list` hands out a cursor after the last record it read but drops that
/// record from the page (an off-by-one in the page slice).
#[derive(Debug, Default)]
struct ListDropsTheLastOfEachPage;

#[async_trait]
impl Fault for ListDropsTheLastOfEachPage {
    async fn list(
        &self,
        s: &RefStore,
        cursor: Option<&Cursor>,
        limit: NonZeroUsize,
    ) -> Result<Page> {
        let mut page = s.list(cursor, limit).await?;
        if page.next.is_some() {
            page.records.pop();
        }
        Ok(page)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_listing_that_drops_records_at_page_ends() {
    assert_fault_caught::<ListDropsTheLastOfEachPage>(&[
        "list_pages_cover_every_live_record_once",
        "list_keeps_every_stable_record_through_concurrent_writes",
    ])
    .await;
}

/// `list` pages by offset (`LIMIT n OFFSET k`), the common shortcut: when
/// records before the offset are destroyed between pages, the rest shift
/// down and some are never listed.
#[derive(Debug, Default)]
struct ListByOffset;

#[async_trait]
impl Fault for ListByOffset {
    async fn list(
        &self,
        s: &RefStore,
        cursor: Option<&Cursor>,
        limit: NonZeroUsize,
    ) -> Result<Page> {
        let offset: usize = match cursor {
            None => 0,
            Some(c) => c
                .as_str()
                .strip_prefix("offset:")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| session_core::Error::invalid_cursor("reference", "not an offset"))?,
        };
        let entries = sorted_live(s);
        let end = offset.saturating_add(limit.get()).min(entries.len());
        let records = entries
            .get(offset..end)
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        let next = (end < entries.len()).then(|| Cursor::new(format!("offset:{end}")));
        Ok(Page { records, next })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_listing_by_offset() {
    assert_fault_caught::<ListByOffset>(&[
        "list_keeps_every_stable_record_through_concurrent_writes",
    ])
    .await;
}

/// `list` treats a cursor it cannot read as "start again": a damaged
/// cursor silently restarts the listing (an endless loop for a tool that
/// resumes from it).
#[derive(Debug, Default)]
struct ListRestartsOnABadCursor;

#[async_trait]
impl Fault for ListRestartsOnABadCursor {
    async fn list(
        &self,
        s: &RefStore,
        cursor: Option<&Cursor>,
        limit: NonZeroUsize,
    ) -> Result<Page> {
        let readable = cursor.filter(|c| c.key_after("reference").is_ok());
        s.list(readable, limit).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_listing_that_restarts_on_a_bad_cursor() {
    assert_fault_caught::<ListRestartsOnABadCursor>(&["list_refuses_a_cursor_it_did_not_make"])
        .await;
}

//! The reference store passes the whole suite, directly and through
//! `Arc<dyn SessionStore>`, durable or not; and the suite's list of
//! behaviours is large and has no duplicates.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::fault::{Fault, FaultyFactory};
use common::{RefFactory, RefStore};
use session_conformance::{BEHAVIOURS, Dyn, Outcome, StoreFactory, run_all};
use session_core::{Record, Result, SessionKey, SessionStore, Timestamp, async_trait};

/// Run the suite on `factory` and require every behaviour to pass.
async fn passes_everything<F: StoreFactory>(what: &str, factory: F) {
    let started = Instant::now();
    let outcomes: Vec<Outcome> = run_all(Arc::new(factory)).await;
    let elapsed = started.elapsed();
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.failure.as_ref().map(|f| format!("{}: {f}", o.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "{what} failed {} behaviour(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    let names: Vec<&str> = outcomes.iter().map(|o| o.name).collect();
    assert_eq!(
        names, BEHAVIOURS,
        "run_all runs every behaviour once, in order"
    );
    eprintln!(
        "{what}: {} behaviours passed in {elapsed:?}",
        outcomes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_store_passes_every_behaviour() {
    passes_everything("reference store", RefFactory::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_store_passes_through_dyn() {
    passes_everything(
        "reference store as Arc<dyn SessionStore>",
        Dyn(RefFactory::default()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_durable_reference_store_passes() {
    passes_everything("non-durable reference store", RefFactory::not_durable()).await;
}

/// How many times [`StallsNearExpiry`] stalled.
static STALLS: AtomicUsize = AtomicUsize::new(0);

/// A correct store that stalls once per store, for 1.2 s, in the first
/// `load` and the first `touch` of a record expiring within 2 s: as a
/// shared CI machine may. The boundary behaviours must retry, not fail.
#[derive(Debug, Default)]
struct StallsNearExpiry {
    load_stalled: AtomicBool,
    touch_stalled: AtomicBool,
}

impl StallsNearExpiry {
    /// Stall once (per `flag`) if `key` holds a record expiring soon.
    async fn maybe_stall(flag: &AtomicBool, s: &RefStore, key: &SessionKey) {
        let soon = Timestamp::now() + Duration::from_secs(2);
        let short_lived = s.with_map(|m| {
            m.get(key)
                .is_some_and(|r| r.is_live() && r.expires_at < soon)
        });
        if short_lived && !flag.swap(true, Ordering::SeqCst) {
            STALLS.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
    }
}

#[async_trait]
impl Fault for StallsNearExpiry {
    async fn load(&self, s: &RefStore, key: &SessionKey) -> Result<Option<Record>> {
        Self::maybe_stall(&self.load_stalled, s, key).await;
        s.load(key).await
    }
    async fn touch(&self, s: &RefStore, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        Self::maybe_stall(&self.touch_stalled, s, key).await;
        s.touch(key, expires_at).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_store_passes_despite_stalls() {
    passes_everything(
        "reference store stalling near expiry",
        FaultyFactory::<StallsNearExpiry>::default(),
    )
    .await;
    let stalls = STALLS.load(Ordering::SeqCst);
    assert!(
        stalls >= 2,
        "the boundary behaviours should have met a stall each, got {stalls}"
    );
}

#[test]
fn behaviours_are_many_and_unique() {
    assert!(
        BEHAVIOURS.len() >= 36,
        "only {} behaviours",
        BEHAVIOURS.len()
    );
    let unique: BTreeSet<&str> = BEHAVIOURS.iter().copied().collect();
    assert_eq!(unique.len(), BEHAVIOURS.len(), "duplicate behaviour names");
}

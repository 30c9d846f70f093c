//! The reference store passes the whole suite, directly and through
//! `Arc<dyn SessionStore>`, durable or not; and the suite's list of
//! behaviours is large and has no duplicates.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use common::RefFactory;
use session_conformance::{BEHAVIOURS, Dyn, Outcome, StoreFactory, run_all};

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

//! The generic reaper: sweeps on its interval, survives failures, stops.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Faulty, Op, Trouble};
use session_core::{Reaper, ReaperConfig};

#[tokio::test(start_paused = true)]
async fn sweeps_every_interval_survives_failures_and_stops() {
    let store = Arc::new(Faulty::default());
    let reaper = Reaper::spawn(store.clone(), ReaperConfig::new(Duration::from_secs(1)));

    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(store.calls(Op::DeleteExpired), 3);

    // Failing sweeps are logged, and the reaper keeps going.
    store.set(&[Op::DeleteExpired], Some(Trouble::Fail));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(store.calls(Op::DeleteExpired), 5);
    store.set(&[Op::DeleteExpired], None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(store.calls(Op::DeleteExpired), 6);

    reaper.stop().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(store.calls(Op::DeleteExpired), 6, "swept after stop");
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_each_sweep_by_at_most_the_jitter() {
    let store = Arc::new(Faulty::default());
    let config = ReaperConfig::new(Duration::from_secs(10)).with_jitter(Duration::from_secs(5));
    let reaper = Reaper::spawn(store.clone(), config);
    tokio::time::sleep(Duration::from_millis(9_999)).await;
    assert_eq!(
        store.calls(Op::DeleteExpired),
        0,
        "swept before the interval"
    );
    tokio::time::sleep(Duration::from_millis(5_002)).await;
    assert_eq!(
        store.calls(Op::DeleteExpired),
        1,
        "jitter exceeded its bound"
    );
    drop(reaper);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        store.calls(Op::DeleteExpired),
        1,
        "dropping the handle must stop it"
    );
}

//! The behaviour suite every session store must pass.
//!
//! One `pub async fn` per behaviour of the [`SessionStore`] contract, each
//! documented with the rule it checks, and [`conformance_suite!`], which
//! expands to one test per behaviour (all named `conformance::…`), so a
//! failure names the broken rule. A backend's whole test file is one factory
//! and one macro call:
//!
//! ```
//! use session_conformance::{conformance_suite, Capabilities, StoreFactory};
//! use session_core::async_trait;
//! use session_store_memory::MemoryStore;
//!
//! struct Factory;
//!
//! #[async_trait]
//! impl StoreFactory for Factory {
//!     type Store = MemoryStore;
//!     async fn open(&self, _namespace: &str) -> MemoryStore {
//!         MemoryStore::new()
//!     }
//!     fn capabilities(&self) -> Capabilities {
//!         Capabilities::new() // not durable: no reopen check
//!     }
//! }
//!
//! conformance_suite!(Factory);
//! # fn main() {}
//! ```
//!
//! Wrap the call in a module of your own to run the suite more than once,
//! e.g. a second time through `Arc<dyn SessionStore>` with [`Dyn`].
//!
//! # What it checks
//!
//! [`BEHAVIOURS`] lists every behaviour; each is a `pub async fn` of this
//! crate whose doc quotes the contract sentence it checks. By topic:
//!
//! - **round trips**: integers from `i64::MIN` to `u64::MAX`, floats bit for
//!   bit (`-0.0`, `1.0`, subnormals), unicode and awkward data keys (`$set`,
//!   `a.b`, `""`, NUL), deep nesting, empty data, times at millisecond
//!   precision, versions up to `u64::MAX`, records of about 2 MiB;
//! - **`save`, `create`, `destroy`**: replace, collisions, create over
//!   expired or destroyed records, idempotent destroy that spares neighbours;
//! - **versioned `update`**: applied (`expected + 1`), `Conflict`, `Missing`
//!   when absent, destroyed or expired, never resurrecting;
//! - **expiry**: save in the past, `touch` (extends, keeps data and version,
//!   never resurrects, expires when moved to the past), the clock boundary,
//!   `delete_expired`;
//! - **listing and namespaces**: `len`/`all` exact and live-only, 500 keys,
//!   `clear` and every method confined to the store's namespace, reopening a
//!   [`durable`](Capabilities::durable) store (the only capability switch);
//! - **concurrency**: writers on distinct keys and on one key (no torn
//!   records), atomic versioned updates (no lost increment), one winner per
//!   `create` race, updates racing a destroy.
//!
//! # Timing
//!
//! The whole suite takes about 4 s on an in-memory store. Only
//! [`expiry_boundary_live_before_gone_after`] and
//! [`expiry_follows_touch_and_update`] wait on the clock (1 s lifetimes):
//! they check "live" only when the check finished at least 400 ms before the
//! expiry, retrying the attempt if the machine stalled, and "gone" 600 ms
//! after it. Every other expiry rule uses records already expired (touched
//! to a minute ago), so nothing depends on scheduling.
//!
//! # Calling behaviours directly
//!
//! Each behaviour panics with a message naming the operation and the rule on
//! failure, opens its stores on fresh namespaces ([`unique_namespace`]) and
//! clears them when it passes. Behaviours spawn tasks and sleep, so call them
//! inside a tokio runtime with timers enabled (preferably multi-threaded, as
//! [`conformance_suite!`] and [`run_behaviour`] do). [`run_all`] runs them
//! all and reports each outcome instead of panicking.
//!
//! The suite checks itself: its own tests run it against a correct reference
//! store (which must pass everything, also when it stalls near an expiry)
//! and against two dozen deliberately broken ones, each breaking one rule,
//! and require the behaviours written for that rule to fail.
//!
//! [`SessionStore`]: session_core::SessionStore

#![allow(
    clippy::panic,
    reason = "a test library: failing a behaviour means panicking with a message that names the rule"
)]

mod behaviours;
pub mod env;
pub mod fixtures;
mod harness;
mod support;

pub use behaviours::*;
pub use harness::{
    BEHAVIOUR_TIMEOUT, Capabilities, Dyn, Outcome, StoreFactory, run_behaviour, unique_namespace,
};
pub use session_core;

/// Calls `callback!{ args; behaviour, behaviour, ... }` with the name of
/// every behaviour: the single list the test macro and [`run_all`] share.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_behaviours {
    ([$($callback:tt)*] $args:tt) => {
        $($callback)*! { $args;
            load_absent_is_none,
            round_trip_preserves_values,
            round_trip_integer_extremes,
            round_trip_floats_bit_exact,
            round_trip_unicode_and_awkward_keys,
            round_trip_deep_nesting_and_empties,
            round_trip_empty_data,
            round_trip_times_and_version_exact,
            large_record_round_trips,
            save_replaces_existing,
            create_inserts_as_given,
            create_collision_leaves_existing,
            create_over_expired_succeeds,
            create_expired_leaves_nothing_live,
            destroy_removes_and_is_idempotent,
            destroy_leaves_neighbours,
            update_applies_and_bumps_version,
            update_absent_is_missing,
            update_wrong_version_conflicts,
            update_after_destroy_is_missing,
            update_after_expiry_is_missing,
            update_sequence_counts_versions,
            update_reaches_u64_max,
            update_to_past_expiry_removes,
            save_expired_stores_nothing,
            save_expired_removes_existing,
            touch_absent_returns_false,
            touch_extends_and_keeps_data_and_version,
            touch_after_destroy_returns_false,
            touch_expired_does_not_resurrect,
            touch_to_past_expires,
            expiry_boundary_live_before_gone_after,
            expiry_follows_touch_and_update,
            delete_expired_removes_only_expired,
            empty_namespace_is_empty,
            len_counts_only_live,
            all_lists_exactly_live_records,
            all_lists_many_keys,
            clear_empties_namespace,
            clear_respects_namespaces,
            namespaces_are_isolated,
            reopen_durable_store,
            concurrent_writers_distinct_keys,
            concurrent_writers_same_key_no_torn_records,
            concurrent_updates_are_atomic,
            concurrent_create_has_one_winner,
            concurrent_destroy_never_resurrected,
        }
    };
}

/// Expand to a module `conformance` holding one test per behaviour, each
/// opening its stores through the [`StoreFactory`] that `$factory` builds
/// (evaluated once per test).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::__with_behaviours! { [$crate::__conformance_tests] ($factory) }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    (($factory:expr); $($name:ident),* $(,)?) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $name() {
                    $crate::run_behaviour($factory, |factory| async move {
                        $crate::$name(&*factory).await;
                    });
                }
            )*
        }
    };
}

macro_rules! define_run_all {
    ((); $($name:ident),* $(,)?) => {
        /// Every behaviour's name, in suite order.
        pub const BEHAVIOURS: &[&str] = &[$(stringify!($name)),*];

        /// Run every behaviour against `factory`, one after the other, and
        /// report each outcome instead of panicking: how the suite tests
        /// itself against broken stores, and how a tool can print a
        /// compliance table.
        ///
        /// Call it inside a tokio runtime with timers enabled, preferably
        /// multi-threaded (`#[tokio::test(flavor = "multi_thread")]`): the
        /// concurrency behaviours spawn tasks. Each behaviour fails as hung
        /// after [`BEHAVIOUR_TIMEOUT`]. Ignores
        /// [`skip_reason`](StoreFactory::skip_reason).
        pub async fn run_all<F: StoreFactory>(factory: std::sync::Arc<F>) -> Vec<Outcome> {
            let mut outcomes = Vec::with_capacity(BEHAVIOURS.len());
            $(
                let failure = harness::catch($name(&*factory)).await;
                outcomes.push(Outcome { name: stringify!($name), failure });
            )*
            outcomes
        }
    };
}

__with_behaviours! { [define_run_all] () }

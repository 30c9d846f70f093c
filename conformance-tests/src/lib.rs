#![doc = include_str!("../README.md")]
#![allow(
    clippy::panic,
    reason = "a test library: failing a behaviour means panicking with a message that names the rule"
)]

mod behaviours;
pub mod env;
pub mod fault;
pub mod fixtures;
mod harness;
pub mod probe;
mod support;

pub use behaviours::*;
pub use harness::{
    BEHAVIOUR_TIMEOUT, Capabilities, Dyn, DynIndex, Outcome, StoreFactory, run_behaviour,
    unique_namespace,
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
            data_deeper_than_the_limit_is_refused,
            round_trip_empty_data,
            round_trip_times_and_version_exact,
            round_trip_principal,
            large_record_round_trips,
            save_replaces_existing,
            create_inserts_as_given,
            create_collision_leaves_existing,
            create_over_expired_succeeds,
            create_expired_leaves_nothing_live,
            create_expired_follows_the_collision_rule,
            destroy_removes_and_is_idempotent,
            destroy_leaves_neighbours,
            update_applies_and_bumps_version,
            update_absent_is_missing,
            update_wrong_version_conflicts,
            update_after_destroy_is_missing,
            update_after_expiry_is_missing,
            update_of_expired_is_missing_for_any_version,
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
            expiry_boundary_is_exact_to_the_millisecond,
            expiry_follows_touch_and_update,
            delete_expired_removes_only_expired,
            delete_expired_spares_records_about_to_expire,
            delete_expired_removes_what_expired_by_time,
            delete_expired_removes_what_has_just_expired,
            delete_expired_counts_each_record_once_after_churn,
            delete_expired_spares_postponed_records,
            empty_namespace_is_empty,
            len_counts_only_live,
            all_lists_exactly_live_records,
            all_lists_many_keys,
            list_pages_cover_every_live_record_once,
            list_keeps_every_stable_record_through_concurrent_writes,
            list_never_returns_records_that_expire_during_the_listing,
            list_refuses_a_cursor_it_did_not_make,
            clear_empties_namespace,
            clear_removes_every_session_at_scale,
            clear_respects_namespaces,
            namespaces_are_isolated,
            namespaces_that_prefix_each_other_are_isolated,
            reopen_durable_store,
            concurrent_writers_distinct_keys,
            concurrent_writers_same_key_no_torn_records,
            concurrent_updates_are_atomic,
            concurrent_create_has_one_winner,
            concurrent_destroy_never_resurrected,
            session_handle_keeps_every_change_under_contention,
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

/// Calls `callback!{ args; behaviour, ... }` with the name of every
/// [`PrincipalIndex`](session_core::PrincipalIndex) behaviour: the single list
/// [`principal_index_suite!`] and [`run_all_principal`] share.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_principal_behaviours {
    ([$($callback:tt)*] $args:tt) => {
        $($callback)*! { $args;
            principal_sessions_of_lists_exactly_their_live_sessions,
            principal_sessions_of_never_lists_an_expired_session,
            principal_sessions_of_never_lists_an_ended_or_moved_session,
            principal_sessions_of_follows_touch,
            principal_destroy_all_of_ends_every_session_but_the_kept_one,
            principal_destroy_all_of_is_not_undone_by_concurrent_commits,
            principal_index_does_not_grow_as_sessions_end,
            principal_create_over_an_expired_record_moves_it,
            principal_indexes_are_per_namespace,
            principal_sessions_of_lists_many_sessions,
            principal_names_are_compared_exactly,
            principal_index_stays_exact_under_racing_writers,
        }
    };
}

/// Expand to a module `principal_index` holding one test per
/// [`PrincipalIndex`](session_core::PrincipalIndex) behaviour, for a store
/// that implements the trait (`$factory`'s `Store: PrincipalIndex`). Run it
/// next to [`conformance_suite!`], with the same factory.
#[macro_export]
macro_rules! principal_index_suite {
    ($factory:expr) => {
        $crate::__with_principal_behaviours! { [$crate::__principal_index_tests] ($factory) }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __principal_index_tests {
    (($factory:expr); $($name:ident),* $(,)?) => {
        mod principal_index {
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

macro_rules! define_run_all_principal {
    ((); $($name:ident),* $(,)?) => {
        /// Every [`PrincipalIndex`](session_core::PrincipalIndex) behaviour's
        /// name, in suite order.
        pub const PRINCIPAL_BEHAVIOURS: &[&str] = &[$(stringify!($name)),*];

        /// [`run_all`] for the [`PrincipalIndex`](session_core::PrincipalIndex)
        /// behaviours.
        pub async fn run_all_principal<F>(factory: std::sync::Arc<F>) -> Vec<Outcome>
        where
            F: StoreFactory,
            F::Store: session_core::PrincipalIndex,
        {
            let mut outcomes = Vec::with_capacity(PRINCIPAL_BEHAVIOURS.len());
            $(
                let failure = harness::catch($name(&*factory)).await;
                outcomes.push(Outcome { name: stringify!($name), failure });
            )*
            outcomes
        }
    };
}

__with_principal_behaviours! { [define_run_all_principal] () }

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

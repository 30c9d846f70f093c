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
//! The suite checks itself: its own tests run it against deliberately broken
//! stores and require it to fail on each.
//!
//! [`SessionStore`]: session_core::SessionStore

mod behaviours;
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

        /// Run every behaviour against `factory` and report each outcome
        /// instead of panicking: how the suite tests itself against broken
        /// stores, and how a tool can print a compliance table.
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

//! What a backend provides to run the suite: a factory and its capabilities.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use session_core::{SessionStore, async_trait};

/// What a backend genuinely can or cannot do. Capabilities switch only
/// optional checks: expiry, touch, destroy and versioned update have no
/// switch, every backend passes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// Sessions survive dropping the store and opening the same namespace
    /// again (files, servers). Enables the reopen check.
    pub durable: bool,
    /// Expired records are removed by the backend itself (Redis's TTL,
    /// MongoDB's TTL monitor, a background sweeper), so `delete_expired`
    /// may find nothing to remove. Disables the two checks that
    /// `delete_expired` removes, and counts exactly, records that expired
    /// with time (untouched, and after churn).
    pub expires_natively: bool,
}

impl Capabilities {
    /// No optional capability.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            durable: false,
            expires_natively: false,
        }
    }

    /// Set [`durable`](Self::durable).
    #[must_use]
    pub const fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Set [`expires_natively`](Self::expires_natively).
    #[must_use]
    pub const fn expires_natively(mut self, native: bool) -> Self {
        self.expires_natively = native;
        self
    }
}

/// Opens stores of one backend for the suite.
///
/// Every behaviour opens its stores through this, on namespaces the suite
/// generates ([`unique_namespace`]), so runs never see each other's data and
/// a shared server is never wiped.
#[async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// The store under test.
    type Store: SessionStore;

    /// Open a store on `namespace` (a key prefix, table, collection or tree:
    /// `namespace` is always `[a-z0-9_]`, starts with a letter and is at most
    /// 32 characters).
    ///
    /// Two stores opened on different namespaces must share the backend
    /// (the same server, the same file) but not their sessions. If the
    /// backend is [`durable`](Capabilities::durable), opening a namespace
    /// again after its previous store was dropped must see what was written.
    ///
    /// Panic with a message that says what was tried (the address, and how to
    /// start the server) if the backend is unreachable: a suite must never
    /// pass by skipping.
    async fn open(&self, namespace: &str) -> Self::Store;

    /// What this backend can do. Default: nothing optional.
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }

    /// `Some(reason)` to skip every test, **only** when the run explicitly
    /// opted out (an environment variable such as `SESSION_SKIP_REDIS=1`).
    /// The reason is printed. Default: never skip.
    fn skip_reason(&self) -> Option<String> {
        None
    }
}

/// Runs the suite through `Arc<dyn SessionStore>`, proving a backend works
/// behind dynamic dispatch: `conformance_suite!(Dyn(MyFactory::new()))`.
#[derive(Debug, Clone)]
pub struct Dyn<F>(pub F);

#[async_trait]
impl<F: StoreFactory> StoreFactory for Dyn<F> {
    type Store = Arc<dyn SessionStore>;

    async fn open(&self, namespace: &str) -> Self::Store {
        Arc::new(self.0.open(namespace).await)
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    fn skip_reason(&self) -> Option<String> {
        self.0.skip_reason()
    }
}

/// Runs the principal suite through `Arc<dyn PrincipalIndex>`:
/// `principal_index_suite!(DynIndex(MyFactory::new()))`.
#[derive(Debug, Clone)]
pub struct DynIndex<F>(pub F);

#[async_trait]
impl<F> StoreFactory for DynIndex<F>
where
    F: StoreFactory,
    F::Store: session_core::PrincipalIndex,
{
    type Store = Arc<dyn session_core::PrincipalIndex>;

    async fn open(&self, namespace: &str) -> Self::Store {
        Arc::new(self.0.open(namespace).await)
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    fn skip_reason(&self) -> Option<String> {
        self.0.skip_reason()
    }
}

/// A fresh namespace: `conf_` and 16 random hex digits.
#[must_use]
pub fn unique_namespace() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Fall back to the clock and a counter; uniqueness within a run is
        // what matters.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = session_core::Timestamp::now().as_millis().unsigned_abs();
        bytes = (t.rotate_left(20) ^ n).to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("conf_{hex}")
}

/// How long one behaviour may take before it fails as hung.
pub const BEHAVIOUR_TIMEOUT: Duration = Duration::from_secs(120);

/// Run one behaviour to completion on a fresh multi-threaded runtime, as the
/// generated tests do. Panics (fails the test) if it fails or hangs.
#[doc(hidden)]
pub fn run_behaviour<F, Fut>(factory: F, behaviour: impl FnOnce(Arc<F>) -> Fut)
where
    F: StoreFactory,
    Fut: Future<Output = ()> + Send + 'static,
{
    if let Some(reason) = factory.skip_reason() {
        eprintln!("skipped by explicit opt-out: {reason}");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"));
    let factory = Arc::new(factory);
    runtime.block_on(async move {
        match tokio::time::timeout(BEHAVIOUR_TIMEOUT, behaviour(factory)).await {
            Ok(()) => {}
            Err(_) => panic!("behaviour did not finish within {BEHAVIOUR_TIMEOUT:?}"),
        }
    });
}

/// The result of one behaviour in [`run_all`](crate::run_all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The behaviour's name (its function name).
    pub name: &'static str,
    /// `None` if it passed; the failure message otherwise.
    pub failure: Option<String>,
}

impl Outcome {
    /// Whether the behaviour passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Run `future`, turning a panic into `Some(message)`.
pub(crate) async fn catch(future: impl Future<Output = ()>) -> Option<String> {
    match tokio::time::timeout(BEHAVIOUR_TIMEOUT, AssertUnwindSafe(future).catch_unwind()).await {
        Ok(Ok(())) => None,
        Ok(Err(panic)) => Some(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panicked".to_owned()),
        ),
        Err(_) => Some(format!("did not finish within {BEHAVIOUR_TIMEOUT:?}")),
    }
}

//! The principal-index behaviours pass a correct index and catch broken
//! ones.
//!
//! [`Indexed`] keeps a separate, lazily cleaned index next to the reference
//! store, the way a key-value engine must (Redis, sled, files): an entry is
//! added before the record is written, so the index is a superset of the
//! live sessions; `sessions_of`, `destroy_all_of` and `delete_expired` check
//! each entry against its record and drop the ended ones. Each [`Bug`]
//! breaks one rule; the suite must pass the correct index and fail each
//! broken one in the behaviours written for that rule.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use common::{RefFactory, RefStore};
use session_conformance::{
    Capabilities, PRINCIPAL_BEHAVIOURS, StoreFactory, principal_index_suite, run_all_principal,
};
use session_core::{
    Cursor, Page, Principal, PrincipalIndex, Record, Result, SessionKey, SessionStore, Timestamp,
    UpdateOutcome, async_trait,
};

/// One deliberate fault of the index, or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Bug {
    /// The correct index.
    #[default]
    None,
    /// `sessions_of` lists an entry's record without checking that it
    /// still names the principal (Spring's stale entry).
    StaleEntryListed,
    /// `sessions_of` lists the record as it was written, without checking
    /// that it is still live (or there at all).
    ExpiredListed,
    /// `destroy_all_of` leaves one session of the principal alive.
    DestroyAllMissesOne,
    /// Entries are never removed: the index grows with every ended session.
    IndexLeaks,
    /// The index remembers the expiry of the last full write and drops an
    /// entry once it passes, although a `touch` extended the session.
    ForgetsTouch,
    /// Names are compared after trimming trailing spaces, as MySQL's
    /// `utf8mb4_bin` collation pads them: "alice " is "alice".
    PadsNames,
}

/// Per namespace, per principal: key → the expiry its last write announced.
type Index = HashMap<String, HashMap<Principal, HashMap<SessionKey, Timestamp>>>;

/// Opens [`Indexed`] stores with one [`Bug`].
#[derive(Debug, Default)]
struct IndexedFactory {
    reference: RefFactory,
    index: Arc<Mutex<Index>>,
    bug: Bug,
}

impl IndexedFactory {
    fn with(bug: Bug) -> Self {
        Self {
            bug,
            ..Self::default()
        }
    }
}

#[async_trait]
impl StoreFactory for IndexedFactory {
    type Store = Indexed;

    async fn open(&self, namespace: &str) -> Indexed {
        Indexed {
            inner: self.reference.open(namespace).await,
            namespace: namespace.to_owned(),
            index: Arc::clone(&self.index),
            bug: self.bug,
        }
    }

    fn capabilities(&self) -> Capabilities {
        self.reference.capabilities()
    }
}

/// The reference store with a lazily cleaned principal index.
#[derive(Debug)]
struct Indexed {
    inner: RefStore,
    namespace: String,
    index: Arc<Mutex<Index>>,
    bug: Bug,
}

impl Indexed {
    fn with_index<R>(
        &self,
        f: impl FnOnce(&mut HashMap<Principal, HashMap<SessionKey, Timestamp>>) -> R,
    ) -> R {
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        f(index.entry(self.namespace.clone()).or_default())
    }

    /// Announce `record` under `key` before it is written.
    fn announce(&self, key: &SessionKey, record: &Record) {
        if let Some(principal) = &record.principal {
            self.with_index(|index| {
                let at = index.entry(principal.clone()).or_default();
                let expiry = at.entry(*key).or_insert(record.expires_at);
                *expiry = (*expiry).max(record.expires_at);
            });
        }
    }

    fn entries(&self, principal: &Principal) -> Vec<(SessionKey, Timestamp)> {
        self.with_index(|index| {
            index
                .iter()
                .filter(|(name, _)| {
                    *name == principal
                        || (self.bug == Bug::PadsNames
                            && name.as_str().trim_end() == principal.as_str().trim_end())
                })
                .flat_map(|(_, at)| at.iter().map(|(k, t)| (*k, *t)))
                .collect()
        })
    }

    fn forget(&self, principal: &Principal, keys: &[SessionKey]) {
        if self.bug == Bug::IndexLeaks {
            return;
        }
        self.with_index(|index| {
            if let Some(at) = index.get_mut(principal) {
                for key in keys {
                    at.remove(key);
                }
                if at.is_empty() {
                    index.remove(principal);
                }
            }
        });
    }

    /// The live sessions of `principal`, dropping the entries of ended ones.
    async fn verified(&self, principal: &Principal) -> Result<Vec<(SessionKey, Record)>> {
        let now = Timestamp::now();
        let mut live = Vec::new();
        let mut ended = Vec::new();
        for (key, announced) in self.entries(principal) {
            if self.bug == Bug::ForgetsTouch && !announced.is_after(now) {
                ended.push(key);
                continue;
            }
            let record = match self.bug {
                Bug::ExpiredListed => self.inner.with_map(|m| m.get(&key).cloned()),
                _ => self.inner.load(&key).await?,
            };
            match record {
                Some(record)
                    if record.principal.as_ref() == Some(principal)
                        || self.bug == Bug::StaleEntryListed
                        || (self.bug == Bug::PadsNames
                            && record.principal.as_ref().is_some_and(|p| {
                                p.as_str().trim_end() == principal.as_str().trim_end()
                            })) =>
                {
                    live.push((key, record));
                }
                _ => ended.push(key),
            }
        }
        self.forget(principal, &ended);
        Ok(live)
    }
}

#[async_trait]
impl SessionStore for Indexed {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.inner.load(key).await
    }
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        self.announce(key, record);
        self.inner.create(key, record).await
    }
    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        self.announce(key, record);
        self.inner.update(key, record, expected).await
    }
    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        self.announce(key, record);
        self.inner.save(key, record).await
    }
    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let touched = self.inner.touch(key, expires_at).await?;
        if touched
            && self.bug != Bug::ForgetsTouch
            && let Some(record) = self.inner.load(key).await?
        {
            self.announce(key, &record);
        }
        Ok(touched)
    }
    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        self.inner.destroy(key).await
    }
    async fn clear(&self) -> Result<()> {
        self.with_index(HashMap::clear);
        self.inner.clear().await
    }
    async fn len(&self) -> Result<u64> {
        self.inner.len().await
    }
    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        self.inner.list(cursor, limit).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        let removed = self.inner.delete_expired().await?;
        let principals: Vec<Principal> = self.with_index(|index| index.keys().cloned().collect());
        for principal in principals {
            self.verified(&principal).await?;
        }
        Ok(removed)
    }
}

#[async_trait]
impl PrincipalIndex for Indexed {
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<(SessionKey, Record)>> {
        self.verified(principal).await
    }

    async fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
    ) -> Result<u64> {
        let mut doomed: Vec<SessionKey> = self
            .verified(principal)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| Some(k) != except)
            .collect();
        if self.bug == Bug::DestroyAllMissesOne {
            doomed.pop();
        }
        for key in &doomed {
            self.inner.destroy(key).await?;
        }
        self.forget(principal, &doomed);
        Ok(doomed.len() as u64)
    }

    async fn index_len(&self, principal: &Principal) -> Result<u64> {
        Ok(self.entries(principal).len() as u64)
    }
}

principal_index_suite!(IndexedFactory::default());

/// The same suite through `Arc<dyn PrincipalIndex>`.
mod through_dyn {
    use super::IndexedFactory;
    use session_conformance::{DynIndex, principal_index_suite};

    principal_index_suite!(DynIndex(IndexedFactory::default()));
}

/// Run the principal suite with `bug` and require it caught by at least
/// every behaviour in `must_fail`.
async fn assert_caught(bug: Bug, must_fail: &[&str]) {
    let failed: BTreeMap<_, _> = run_all_principal(Arc::new(IndexedFactory::with(bug)))
        .await
        .into_iter()
        .filter_map(|o| o.failure.map(|f| (o.name, f)))
        .collect();
    eprintln!("{bug:?} caught by {} behaviour(s):", failed.len());
    for (name, message) in &failed {
        eprintln!("  {name}: {}", message.lines().next().unwrap_or(""));
    }
    for name in must_fail {
        assert!(
            PRINCIPAL_BEHAVIOURS.contains(name),
            "{name} is not a behaviour"
        );
        assert!(
            failed.contains_key(name),
            "{name} should have caught {bug:?}; it failed only: {:?}",
            failed.keys().collect::<Vec<_>>()
        );
    }
    let unique: HashSet<_> = must_fail.iter().collect();
    assert_eq!(unique.len(), must_fail.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_correct_index_passes_every_behaviour() {
    let outcomes = run_all_principal(Arc::new(IndexedFactory::default())).await;
    assert_eq!(outcomes.len(), PRINCIPAL_BEHAVIOURS.len());
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_a_stale_entry_listed() {
    assert_caught(
        Bug::StaleEntryListed,
        &["principal_sessions_of_never_lists_an_ended_or_moved_session"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_an_expired_session_listed() {
    assert_caught(
        Bug::ExpiredListed,
        &[
            "principal_sessions_of_never_lists_an_expired_session",
            "principal_destroy_all_of_ends_every_session_but_the_kept_one",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_destroy_all_missing_one() {
    assert_caught(
        Bug::DestroyAllMissesOne,
        &[
            "principal_destroy_all_of_ends_every_session_but_the_kept_one",
            "principal_destroy_all_of_is_not_undone_by_concurrent_commits",
            "principal_sessions_of_lists_many_sessions",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_an_index_that_leaks() {
    assert_caught(
        Bug::IndexLeaks,
        &["principal_index_does_not_grow_as_sessions_end"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_an_index_that_forgets_touch() {
    assert_caught(Bug::ForgetsTouch, &["principal_sessions_of_follows_touch"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_names_compared_with_padding() {
    assert_caught(Bug::PadsNames, &["principal_names_are_compared_exactly"]).await;
}

//! `list`: paged listing with a cursor.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::time::Duration;

use session_core::{Cursor, Error, Record, SessionKey, SessionStore, Timestamp};

use crate::StoreFactory;
use crate::support::{
    a_minute_ago, data_n, expired, finish, key, keys, live, long_lived, ok, open, save_then_expire,
    sleep_until,
};

/// `limit` as the `NonZeroUsize` that `list` takes.
fn limit_of(limit: usize) -> NonZeroUsize {
    NonZeroUsize::new(limit).unwrap_or(NonZeroUsize::MIN)
}

/// Follows `list` from the start with page size `limit` until `next` is
/// `None`, checking every page against the rules that hold whatever else
/// happens: at most `limit` records (bounded memory), none that had expired
/// when the call began, and a listing that ends (at most `max_calls`
/// calls).
struct Pager {
    limit: usize,
    max_calls: usize,
    calls: usize,
    cursor: Option<Cursor>,
    done: bool,
}

impl Pager {
    fn new(limit: usize, max_calls: usize) -> Self {
        Self {
            limit,
            max_calls,
            calls: 0,
            cursor: None,
            done: false,
        }
    }

    /// The next page, or `None` once the listing has ended.
    async fn next<S: SessionStore + ?Sized>(
        &mut self,
        store: &S,
    ) -> Option<Vec<(SessionKey, Record)>> {
        if self.done {
            return None;
        }
        let limit = self.limit;
        assert!(
            self.calls < self.max_calls,
            "list did not end within {} calls of limit {limit}",
            self.max_calls
        );
        self.calls += 1;
        let started = Timestamp::now();
        let page = ok(
            "list",
            store.list(self.cursor.as_ref(), limit_of(limit)).await,
        );
        assert!(
            page.records.len() <= limit,
            "list returned {} records for a limit of {limit}: a page must hold at most `limit`",
            page.records.len()
        );
        for (key, record) in &page.records {
            assert!(
                record.expires_at.is_after(started),
                "list returned {key}, which had expired when the call began (expires_at {}, call at {started})",
                record.expires_at
            );
        }
        self.done = page.next.is_none();
        self.cursor = page.next;
        Some(page.records)
    }

    /// Every remaining page.
    async fn rest<S: SessionStore + ?Sized>(mut self, store: &S) -> Vec<Vec<(SessionKey, Record)>> {
        let mut pages = Vec::new();
        while let Some(page) = self.next(store).await {
            pages.push(page);
        }
        pages
    }
}

/// Records written around the stable ones of
/// [`list_keeps_every_stable_record_through_concurrent_writes`].
const CHURN: usize = 200;
/// Of them, written between two pages: four end, two stay live.
const CHURN_PER_PAGE: usize = 6;

/// Calls a listing of `records` in pages of `limit` may need: the pages
/// themselves, plus slack for stores whose pages may come back empty (a
/// server scan visiting a shared keyspace).
fn max_calls(records: usize, limit: usize) -> usize {
    records / limit * 4 + 10_000
}

/// "`list` … lists every live record exactly once while nothing is
/// written", never an expired one (expired by time or by `touch`, reaped or
/// not), in pages of at most `limit`, with every record exactly as stored,
/// whatever the page size.
pub async fn list_pages_cover_every_live_record_once<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    let mut stored = BTreeMap::new();
    for (i, k) in keys(230).into_iter().enumerate() {
        let record = long_lived(data_n(i as i64)).with_version(i as u64);
        ok("save", store.save(&k, &record).await);
        stored.insert(k, record);
    }
    let mut gone = BTreeSet::new();
    for (i, k) in keys(20).into_iter().enumerate() {
        save_then_expire(&store, &k, &long_lived(data_n(-(i as i64)))).await;
        gone.insert(k);
    }
    for k in keys(5) {
        ok("save", store.save(&k, &expired(data_n(-100))).await);
        gone.insert(k);
    }
    for limit in [1, 7, 64, 230, 1000] {
        let pages = Pager::new(limit, max_calls(stored.len(), limit))
            .rest(&store)
            .await;
        let mut seen = BTreeMap::new();
        for (k, record) in pages.into_iter().flatten() {
            assert!(
                !gone.contains(&k),
                "limit {limit}: list returned the expired record {k}"
            );
            assert_eq!(
                stored.get(&k),
                Some(&record),
                "limit {limit}: list must return {k} exactly as saved"
            );
            *seen.entry(k).or_insert(0) += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "limit {limit}: with nothing written, each record must be listed once; listed more than once: {twice:?}"
        );
        assert_eq!(
            seen.len(),
            stored.len(),
            "limit {limit}: {} of {} live records listed",
            seen.len(),
            stored.len()
        );
    }
    finish(&store).await;
}

/// "`list` … lists every record that stays live and unwritten through the
/// whole listing at least once, whatever is written meanwhile": between
/// pages, other records are created, destroyed, rewritten, postponed and
/// expired, as a live site does while an operator pages through it. A
/// record destroyed or expired before a page was asked for never appears
/// in it.
pub async fn list_keeps_every_stable_record_through_concurrent_writes<F: StoreFactory>(
    factory: &F,
) {
    let store = open(factory).await;
    let stable = keys(150);
    for (i, k) in stable.iter().enumerate() {
        ok("save", store.save(k, &long_lived(data_n(i as i64))).await);
    }
    let churn = keys(CHURN);
    for k in &churn {
        ok("save", store.save(k, &long_lived(data_n(-1))).await);
    }
    let mut ended: BTreeSet<SessionKey> = BTreeSet::new();
    // What had ended before page `i + 1` was asked for.
    let mut ended_before: Vec<BTreeSet<SessionKey>> = vec![BTreeSet::new()];
    let mut next_churn = 0;
    let limit = 10;
    let mut pager = Pager::new(limit, max_calls(stable.len() + churn.len() + 100, limit));
    let mut pages = Vec::new();
    while let Some(page) = pager.next(&store).await {
        pages.push(page);
        // More records end than begin between two pages, so a pager that
        // counts positions (an offset) skips records, whatever its order.
        ok(
            "create",
            store.create(&key(), &long_lived(data_n(1_000))).await,
        );
        for _ in 0..CHURN_PER_PAGE {
            let Some(k) = churn.get(next_churn) else {
                break;
            };
            next_churn += 1;
            match next_churn % 6 {
                0 | 2 => ok("destroy", store.destroy(k).await),
                1 | 3 => {
                    let _ = ok("touch", store.touch(k, a_minute_ago()).await);
                }
                4 => ok(
                    "save",
                    store.save(k, &long_lived(data_n(pages.len() as i64))).await,
                ),
                _ => {
                    let _ = ok(
                        "touch",
                        store
                            .touch(k, Timestamp::now() + Duration::from_secs(3_600))
                            .await,
                    );
                }
            }
            if next_churn % 6 < 4 {
                ended.insert(*k);
            }
        }
        ended_before.push(ended.clone());
    }
    let listed: BTreeSet<SessionKey> = pages.iter().flatten().map(|(k, _)| *k).collect();
    let missing: Vec<_> = stable.iter().filter(|k| !listed.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records that stayed live and unwritten through the listing were never listed (first: {:?}); other records were written between its {} pages",
        missing.len(),
        stable.len(),
        missing.first(),
        pages.len()
    );
    for (i, page) in pages.iter().enumerate() {
        for (k, _) in page {
            assert!(
                !ended_before[i].contains(k),
                "page {i} listed {k}, which was destroyed or touched to the past before the page was asked for"
            );
        }
    }
    finish(&store).await;
}

/// "`list` … never returns an expired record": records that expire by time
/// while a listing is under way are not listed by any page asked for after
/// their expiry, and records touched to the past between pages are not
/// listed afterwards.
pub async fn list_never_returns_records_that_expire_during_the_listing<F: StoreFactory>(
    factory: &F,
) {
    let store = open(factory).await;
    let short_ttl = Duration::from_millis(1_500);
    let short = keys(40);
    for k in &short {
        ok("save", store.save(k, &live(data_n(0), short_ttl)).await);
    }
    let expiry = Timestamp::now() + short_ttl;
    let lasting = keys(40);
    for k in &lasting {
        ok("save", store.save(k, &long_lived(data_n(1))).await);
    }
    let short_set: BTreeSet<_> = short.iter().copied().collect();
    let mut touched: BTreeSet<SessionKey> = BTreeSet::new();
    let mut after_expiry: Vec<(SessionKey, Record)> = Vec::new();
    let mut expired_now = false;
    let mut cursor: Option<Cursor> = None;
    let limit = limit_of(5);
    for call in 0..max_calls(80, 5) {
        if call == 3 {
            // Let the short-lived records expire in the middle of the listing.
            sleep_until(expiry + Duration::from_millis(20)).await;
            expired_now = true;
        }
        let page = ok("list", store.list(cursor.as_ref(), limit).await);
        for (k, record) in &page.records {
            assert!(
                !touched.contains(k),
                "list returned {k} after it was touched to the past"
            );
            if expired_now {
                after_expiry.push((*k, record.clone()));
            }
        }
        // Expire one lasting record per page by touch.
        if let Some(k) = lasting.get(call) {
            assert!(
                ok("touch", store.touch(k, a_minute_ago()).await),
                "touch of a live record"
            );
            touched.insert(*k);
        }
        match page.next {
            None => {
                let late: Vec<_> = after_expiry
                    .iter()
                    .filter(|(k, _)| short_set.contains(k))
                    .map(|(k, _)| k)
                    .collect();
                assert!(
                    late.is_empty(),
                    "list returned {} records in pages asked for after they expired (first: {:?})",
                    late.len(),
                    late.first()
                );
                finish(&store).await;
                return;
            }
            Some(next) => cursor = Some(next),
        }
    }
    panic!("list did not end");
}

/// A cursor the store did not hand out is [`Error::InvalidCursor`], never a
/// panic and never a silent restart from the beginning.
pub async fn list_refuses_a_cursor_it_did_not_make<F: StoreFactory>(factory: &F) {
    let store = open(factory).await;
    for k in keys(3) {
        ok("save", store.save(&k, &long_lived(data_n(0))).await);
    }
    let texts = [
        String::new(),
        "garbage".to_owned(),
        "0".to_owned(),
        "after:".to_owned(),
        "\u{0}\u{fffd}".to_owned(),
        "x".repeat(10_000),
    ];
    for text in &texts {
        let cursor = Cursor::new(text.clone());
        match store.list(Some(&cursor), limit_of(10)).await {
            Err(Error::InvalidCursor { .. }) => {}
            other => panic!(
                "list with the cursor {:?} must be Error::InvalidCursor, got {other:?}",
                text.chars().take(20).collect::<String>()
            ),
        }
    }
    finish(&store).await;
}

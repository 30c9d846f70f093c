//! The expiry index of [`SledStore`]: one entry per record at or before
//! its expiry (the invariant the crate docs explain), kept by the writers
//! and walked by `delete_expired`, whose cost follows what is due.

use std::ops::Bound;

use session_core::{Result, SessionKey};
use sled::IVec;

use crate::backend;
use crate::codec;
use crate::shared::Trees;

/// Index entries read per range scan by `delete_expired`.
const REAP_BATCH: usize = 1000;

impl Trees {
    /// The first step of a write replacing `old` under `key` by a record
    /// expiring at `expires_at`: insert the index entry it needs, if any,
    /// and return it.
    pub(crate) fn prepare_entry(
        &self,
        key: &SessionKey,
        old: Option<&IVec>,
        expires_at: i64,
    ) -> Result<Option<[u8; codec::INDEX_KEY]>> {
        // The old record's entry is at or before its expiry, so it covers
        // a record that expires no sooner: postponing writes no entry, and
        // the reaper moves the entry forward when it meets it. An old value
        // without a readable header has no known entry.
        let old_expiry = old
            .and_then(|v| codec::read(key, v).ok())
            .map(|h| h.expires_at);
        if old_expiry.is_some_and(|old| expires_at >= old) {
            return Ok(None);
        }
        // Entry first: a crash in between leaves an entry without its
        // record, which the reaper drops, never a record nothing reaps.
        let entry = codec::index_key(expires_at, key);
        self.expiry.insert(&entry[..], &[][..]).map_err(backend)?;
        Ok(Some(entry))
    }

    /// Insert the index entry `entry` unless it exists.
    pub(crate) fn ensure_entry(&self, entry: &[u8; codec::INDEX_KEY]) -> Result<()> {
        if !self.expiry.contains_key(&entry[..]).map_err(backend)? {
            self.expiry.insert(&entry[..], &[][..]).map_err(backend)?;
        }
        Ok(())
    }

    /// Handle one due index entry (expiry at or before `cutoff`) for
    /// `key`: remove the record if it is expired, move the entry to the
    /// record's expiry if the record was postponed, drop the entry.
    /// Returns whether a record was removed.
    fn reap_entry(&self, entry: &[u8], key: &SessionKey, cutoff: i64) -> Result<bool> {
        let (removed, moved_to) = self.reap_record(key, cutoff)?;
        self.drop_entry(entry, key, moved_to)?;
        Ok(removed)
    }

    /// The first step of [`reap_entry`](Self::reap_entry): remove the
    /// record if it is expired at `cutoff`; if it is live, insert the entry
    /// at its expiry and return that expiry.
    fn reap_record(&self, key: &SessionKey, cutoff: i64) -> Result<(bool, Option<i64>)> {
        let mut current = self.get(key)?;
        loop {
            let header = current.as_ref().map(|v| codec::read(key, v));
            match header {
                Some(Ok(h)) if h.is_live_at(cutoff) => {
                    // Postponed since the due entry was written: the new
                    // entry goes in before the old one goes, so the record
                    // is always covered.
                    let moved = codec::index_key(h.expires_at, key);
                    self.expiry.insert(&moved[..], &[][..]).map_err(backend)?;
                    return Ok((false, Some(h.expires_at)));
                }
                Some(Ok(_)) => {
                    let swapped = self
                        .records
                        .compare_and_swap(key.as_bytes(), current.as_ref(), None::<&[u8]>)
                        .map_err(backend)?;
                    match swapped {
                        Ok(()) => {
                            if let Some(old) = &current {
                                self.removed(key, old)?;
                            }
                            return Ok((true, None));
                        }
                        // Written meanwhile: decide again on what is there.
                        Err(raced) => current = raced.current,
                    }
                }
                // No record (destroyed, or reaped through another entry),
                // or one whose header is unreadable (left for `load` to
                // report): only the entry goes.
                None | Some(Err(_)) => return Ok((false, None)),
            }
        }
    }

    /// The second step of [`reap_entry`](Self::reap_entry): remove the due
    /// entry, then make sure the record now under `key` (if any) is still
    /// covered. `moved_to` is the expiry [`reap_record`](Self::reap_record)
    /// inserted an entry at, if it did.
    fn drop_entry(&self, entry: &[u8], key: &SessionKey, moved_to: Option<i64>) -> Result<()> {
        self.expiry.remove(entry).map_err(backend)?;
        // A writer may have stored a record under this key that relies on
        // the entry just removed (same expiry millisecond); see `swap`.
        if let Some(value) = self.get(key)?
            && let Ok(h) = codec::read(key, &value)
            && moved_to.is_none_or(|moved| h.expires_at < moved)
        {
            self.ensure_entry(&codec::index_key(h.expires_at, key))?;
        }
        Ok(())
    }

    /// Remove every record due at `cutoff` (expiry at or before it) through
    /// the index, moving the entries of postponed records forward and
    /// dropping those of records gone; returns how many records it removed.
    pub(crate) fn reap_due(&self, cutoff: i64) -> Result<u64> {
        // Index keys below this bound are exactly the entries due at or
        // before the cut-off: the walk never reads a later entry, so its
        // cost follows what is due, not what lives.
        let bound = codec::sortable(cutoff.saturating_add(1));
        let mut from = Bound::Unbounded;
        let mut removed = 0u64;
        loop {
            let batch = self
                .expiry
                .range::<&[u8], _>((
                    from.as_ref().map(|k: &IVec| &k[..]),
                    Bound::Excluded(&bound[..]),
                ))
                .keys()
                .take(REAP_BATCH)
                .collect::<sled::Result<Vec<IVec>>>()
                .map_err(backend)?;
            for entry in &batch {
                match entry.get(8..).map(codec::session_key) {
                    Some(Ok(key)) => {
                        if self.reap_entry(entry, &key, cutoff)? {
                            removed += 1;
                        }
                    }
                    // Malformed entry: dropped.
                    _ => {
                        self.expiry.remove(entry).map_err(backend)?;
                    }
                }
            }
            // Resume after the last entry rather than from the start,
            // so that a batch never rescans what the previous one did.
            match batch.last() {
                Some(last) if batch.len() == REAP_BATCH => from = Bound::Excluded(last.clone()),
                _ => return Ok(removed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code fails the test on error")]

    use std::time::Duration;

    use session_core::{Data, Record, SessionStore as _, Timestamp};

    use super::*;
    use crate::SledStore;
    use crate::codec::Header;

    /// A stored value for `key` expiring at `expires_at` (milliseconds).
    fn value(expires_at: i64) -> IVec {
        let record = Record::with_times(
            Data::new(),
            Timestamp::from_millis(expires_at - 60_000),
            Timestamp::from_millis(expires_at),
        );
        IVec::from(codec::VALUE.encode(Header::of(&record), &record).unwrap())
    }

    fn has_entry(trees: &Trees, at: i64, key: &SessionKey) -> bool {
        trees
            .expiry
            .contains_key(&codec::index_key(at, key)[..])
            .unwrap()
    }

    async fn setup() -> (SledStore, Trees, SessionKey, i64) {
        let store = SledStore::temporary().await.unwrap();
        let trees = Trees {
            records: store.records_tree().unwrap(),
            expiry: store.expiry_tree().unwrap(),
            principals: store.principals_tree().unwrap(),
        };
        let key = SessionKey::from_bytes([3; 32]);
        // Due: at or before any cut-off taken from now on.
        let due = (Timestamp::now() - Duration::from_secs(1)).as_millis();
        (store, trees, key, due)
    }

    // A writer stores a record expiring in the same millisecond as a due
    // entry of its key that a reaper handles at the same time. Each
    // interleaving of the writer's steps (insert entry, swap record, check
    // entry) with the reaper's (read record, remove entry, check record)
    // must leave the record covered.

    #[tokio::test]
    async fn the_writers_check_restores_an_entry_the_reaper_removed() {
        let (store, trees, key, due) = setup().await;
        let new = value(due);
        let entry = trees.prepare_entry(&key, None, due).unwrap().unwrap();
        // The reaper sees no record yet, and removes the entry.
        let (removed, moved_to) = trees.reap_record(&key, due).unwrap();
        assert_eq!((removed, moved_to), (false, None));
        trees.drop_entry(&entry, &key, moved_to).unwrap();
        assert!(!has_entry(&trees, due, &key));
        // The writer swaps its record in and finds its entry gone.
        trees
            .records
            .compare_and_swap(key.as_bytes(), None::<&[u8]>, Some(&new))
            .unwrap()
            .unwrap();
        trees.ensure_entry(&entry).unwrap();
        assert!(has_entry(&trees, due, &key));
        // So the next reap removes the expired record.
        assert_eq!(store.delete_expired().await.unwrap(), 1);
        assert!(trees.records.is_empty());
    }

    #[tokio::test]
    async fn the_reapers_check_restores_an_entry_it_removed_under_a_new_record() {
        let (_store, trees, key, due) = setup().await;
        let entry = codec::index_key(due, &key);
        trees.expiry.insert(&entry[..], &[][..]).unwrap();
        // The reaper reads: no record.
        let (_, moved_to) = trees.reap_record(&key, due).unwrap();
        // The whole write happens now; its entry already exists.
        assert!(trees.swap(&key, None, &value(due), due).unwrap().is_ok());
        // The reaper removes the entry, then sees the record and restores it.
        trees.drop_entry(&entry, &key, moved_to).unwrap();
        assert!(has_entry(&trees, due, &key));
    }

    #[tokio::test]
    async fn an_expiry_moved_earlier_while_the_reaper_moves_the_entry_stays_covered() {
        let (_store, trees, key, due) = setup().await;
        let later = (Timestamp::now() + Duration::from_secs(3600)).as_millis();
        // A postponed record: live until `later`, its entry still at `due`.
        trees.records.insert(key.as_bytes(), value(later)).unwrap();
        let entry = codec::index_key(due, &key);
        trees.expiry.insert(&entry[..], &[][..]).unwrap();
        let (removed, moved_to) = trees.reap_record(&key, due).unwrap();
        assert_eq!((removed, moved_to), (false, Some(later)));
        // A touch moves the expiry back to `due`, reusing the same entry.
        let old = trees.get(&key).unwrap();
        let touched = IVec::from(codec::VALUE.with_expiry(old.as_ref().unwrap(), due));
        assert!(
            trees
                .swap(&key, old.as_ref(), &touched, due)
                .unwrap()
                .is_ok()
        );
        trees.drop_entry(&entry, &key, moved_to).unwrap();
        assert!(has_entry(&trees, due, &key));
        assert!(has_entry(&trees, later, &key));
    }
}

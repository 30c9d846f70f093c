//! The principal index of [`SledStore`](crate::SledStore): the third tree
//! of a namespace, one entry `len ‖ principal ‖ key` per record that names
//! a principal (see [`codec`]).
//!
//! It keeps one invariant, as the expiry index does, without a sled
//! transaction (see the crate docs for why there are none): **every record
//! that names a principal has its entry**, expired or not. Extra entries
//! (a record destroyed, reaped or given to someone else, and a crash or a
//! race between the two writes) may exist for a while; whoever meets one
//! drops it after checking the record. Two rules make that safe against
//! writers racing on the same key:
//!
//! - a writer whose new record names a principal its old one did not
//!   inserts the entry *before* swapping the record in and checks it is
//!   still there *after* (a cleaner may have removed it in between);
//! - whoever drops an entry (a writer replacing the principal, `destroy`,
//!   the reaper, `sessions_of` and `destroy_all_of` meeting a stale entry)
//!   removes it *first* and then reads the record again, putting the entry
//!   back if the record now names that principal.
//!
//! So of a writer's swap and a cleaner's second read, whichever comes
//! second sees the other. An anonymous record, written over an anonymous
//! one, costs the writers one byte compare and nothing in this tree.

use session_core::{Principal, Record, Result, SessionKey};
use sled::IVec;

use crate::backend;
use crate::codec;
use crate::shared::Trees;

impl Trees {
    /// Before swapping `new` in for `old` under `key`: insert the entry
    /// `new` needs if its principal is not `old`'s (whose entry exists by
    /// the invariant). Returns the entry inserted.
    pub(crate) fn prepare_owner(
        &self,
        key: &SessionKey,
        old: Option<&IVec>,
        new: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let owner = codec::owner(new);
        if owner.is_empty() || old.is_some_and(|old| codec::owner(old) == owner) {
            return Ok(None);
        }
        let entry = codec::owner_key(owner, key);
        self.principals
            .insert(&entry[..], &[][..])
            .map_err(backend)?;
        Ok(Some(entry))
    }

    /// After `new` replaced `old` under `key`: put back the entry
    /// [`prepare_owner`](Self::prepare_owner) inserted if a cleaner removed
    /// it meanwhile, and drop `old`'s if `new` names another principal or
    /// none.
    pub(crate) fn settle_owner(
        &self,
        key: &SessionKey,
        old: Option<&IVec>,
        new: &[u8],
        inserted: Option<&[u8]>,
    ) -> Result<()> {
        if let Some(entry) = inserted
            && !self.principals.contains_key(entry).map_err(backend)?
        {
            self.principals.insert(entry, &[][..]).map_err(backend)?;
        }
        let old_owner = old.map_or(&[][..], |old| codec::owner(old));
        if !old_owner.is_empty() && old_owner != codec::owner(new) {
            self.drop_owner(old_owner, key)?;
        }
        Ok(())
    }

    /// After `old` was removed from under `key` (destroyed, reaped, saved
    /// over by an expired record): drop its principal's entry.
    pub(crate) fn removed(&self, key: &SessionKey, old: &[u8]) -> Result<()> {
        match codec::owner(old) {
            [] => Ok(()),
            owner => self.drop_owner(owner, key),
        }
    }

    /// Remove the entry of `key` under `owner`, then put it back if the
    /// record now under `key` names `owner` (a writer stored it meanwhile,
    /// finding the entry there: see the module docs).
    pub(crate) fn drop_owner(&self, owner: &[u8], key: &SessionKey) -> Result<()> {
        let entry = codec::owner_key(owner, key);
        self.principals.remove(&entry[..]).map_err(backend)?;
        if let Some(value) = self.get(key)?
            && codec::owner(&value) == owner
        {
            self.principals
                .insert(&entry[..], &[][..])
                .map_err(backend)?;
        }
        Ok(())
    }

    /// The keys indexed under `principal`: a prefix scan, whose cost is
    /// the principal's entries, not the namespace.
    fn owned_keys(&self, principal: &Principal) -> Result<Vec<SessionKey>> {
        let prefix = codec::principal_prefix(principal);
        let mut keys = Vec::new();
        for entry in self.principals.scan_prefix(&prefix).keys() {
            let entry = entry.map_err(backend)?;
            match codec::session_key(&entry[prefix.len()..]) {
                Ok(key) => keys.push(key),
                // Not written by this crate: dropped.
                Err(_) => {
                    self.principals.remove(&entry).map_err(backend)?;
                }
            }
        }
        Ok(keys)
    }

    /// `sessions_of`: the records live at `now` among the keys indexed
    /// under `principal`, each read and checked; entries whose record is
    /// gone or names someone else are dropped. Returns the records and
    /// whether it dropped any entry.
    pub(crate) fn sessions_of(
        &self,
        principal: &Principal,
        now: i64,
    ) -> Result<(Vec<(SessionKey, Record)>, bool)> {
        let owner = principal.as_str().as_bytes();
        let mut found = Vec::new();
        let mut dropped = false;
        for key in self.owned_keys(principal)? {
            match self.get(&key)? {
                Some(value) if codec::owner(&value) == owner => {
                    // Expired but not reaped yet: not returned; its entry
                    // goes with the record when `delete_expired` reaps it.
                    if codec::read(&key, &value)?.is_live_at(now) {
                        found.push((key, codec::decode(&key, &value)?));
                    }
                }
                _ => {
                    self.drop_owner(owner, &key)?;
                    dropped = true;
                }
            }
        }
        Ok((found, dropped))
    }

    /// `destroy_all_of`: remove every record indexed under `principal` that
    /// still names it (expired ones too), but `except`'s, each by
    /// compare-and-swap so that a concurrent write is either removed with
    /// it or finds it gone; drop the entries. Returns how many live
    /// records it removed and whether it wrote anything.
    pub(crate) fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
        now: i64,
    ) -> Result<(u64, bool)> {
        let owner = principal.as_str().as_bytes();
        let (mut destroyed, mut wrote) = (0, false);
        for key in self.owned_keys(principal)? {
            let mut current = self.get(&key)?;
            loop {
                match &current {
                    Some(value) if codec::owner(value) == owner => {
                        if except == Some(&key) {
                            break;
                        }
                        let swapped = self
                            .records
                            .compare_and_swap(key.as_bytes(), Some(value), None::<&[u8]>)
                            .map_err(backend)?;
                        match swapped {
                            Ok(()) => {
                                let live =
                                    codec::read(&key, value).is_ok_and(|h| h.is_live_at(now));
                                destroyed += u64::from(live);
                                self.drop_owner(owner, &key)?;
                                wrote = true;
                                break;
                            }
                            // Written meanwhile: decide again on what is
                            // there.
                            Err(raced) => current = raced.current,
                        }
                    }
                    _ => {
                        self.drop_owner(owner, &key)?;
                        wrote = true;
                        break;
                    }
                }
            }
        }
        Ok((destroyed, wrote))
    }

    /// `index_len`: the entries under `principal`, stale ones included.
    pub(crate) fn owned_count(&self, principal: &Principal) -> Result<u64> {
        let mut count = 0;
        for entry in self
            .principals
            .scan_prefix(codec::principal_prefix(principal))
            .keys()
        {
            entry.map_err(backend)?;
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use session_core::{Data, Principal, Record, Timestamp};
    use sled::IVec;

    use super::*;
    use crate::SledStore;
    use crate::codec::Header;

    /// A stored value of `principal`, live for an hour.
    fn value(principal: Option<&str>) -> IVec {
        let now = Timestamp::now();
        let record = Record::with_times(Data::new(), now, now + Duration::from_secs(3600))
            .with_principal(principal.map(|p| Principal::new(p).unwrap()));
        IVec::from(codec::VALUE.encode(Header::of(&record), &record).unwrap())
    }

    async fn setup() -> (SledStore, Trees, SessionKey) {
        let store = SledStore::temporary().await.unwrap();
        let trees = Trees {
            records: store.records_tree().unwrap(),
            expiry: store.expiry_tree().unwrap(),
            principals: store.principals_tree().unwrap(),
        };
        (store, trees, SessionKey::from_bytes([5; 32]))
    }

    fn has_entry(trees: &Trees, owner: &str, key: &SessionKey) -> bool {
        trees
            .principals
            .contains_key(codec::owner_key(owner.as_bytes(), key))
            .unwrap()
    }

    // Each interleaving of a writer's steps (insert entry, swap record,
    // check entry) with a cleaner's (remove entry, read record, restore)
    // must leave a record that names a principal with its entry.

    #[tokio::test]
    async fn the_writers_check_restores_an_entry_a_cleaner_removed() {
        let (_store, trees, key) = setup().await;
        let new = value(Some("ada"));
        let inserted = trees.prepare_owner(&key, None, &new).unwrap();
        assert!(inserted.is_some());
        // A cleaner (say `sessions_of`) meets the entry: no record yet, so
        // it goes.
        trees.drop_owner(b"ada", &key).unwrap();
        assert!(!has_entry(&trees, "ada", &key));
        // The writer swaps its record in and finds its entry gone.
        trees
            .records
            .compare_and_swap(key.as_bytes(), None::<&[u8]>, Some(&new))
            .unwrap()
            .unwrap();
        trees
            .settle_owner(&key, None, &new, inserted.as_deref())
            .unwrap();
        assert!(has_entry(&trees, "ada", &key));
    }

    #[tokio::test]
    async fn the_cleaners_check_restores_an_entry_it_removed_under_a_new_record() {
        let (_store, trees, key) = setup().await;
        let old = value(Some("ada"));
        assert!(trees.swap(&key, None, &old, i64::MAX).unwrap().is_ok());
        // `destroy` removes the record...
        trees.records.remove(key.as_bytes()).unwrap();
        // ...a whole write of the same principal happens (its entry is
        // there already)...
        let new = value(Some("ada"));
        assert!(trees.swap(&key, None, &new, i64::MAX).unwrap().is_ok());
        // ...then `destroy` drops the entry, sees the new record, restores it.
        trees.removed(&key, &old).unwrap();
        assert!(has_entry(&trees, "ada", &key));
    }

    #[tokio::test]
    async fn a_write_that_loses_its_race_takes_back_its_entry() {
        let (_store, trees, key) = setup().await;
        let theirs = value(Some("bob"));
        assert!(trees.swap(&key, None, &theirs, i64::MAX).unwrap().is_ok());
        // Guessing that nothing is there, as `create` does.
        let raced = trees
            .swap(&key, None, &value(Some("ada")), i64::MAX)
            .unwrap();
        assert_eq!(raced.unwrap_err().as_ref(), Some(&theirs));
        assert!(!has_entry(&trees, "ada", &key));
        assert!(has_entry(&trees, "bob", &key));
        // Replacing bob by no one drops bob's entry.
        let anonymous = value(None);
        assert!(
            trees
                .swap(&key, Some(&theirs), &anonymous, i64::MAX)
                .unwrap()
                .is_ok()
        );
        assert!(trees.principals.is_empty());
    }
}

//! [`MongoStore`]: the `SessionStore` implementation.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::{Collection, bson};
use session_core::{
    Cursor, Error, Page, Principal, PrincipalIndex, Record, Result, SessionKey, SessionStore,
    Timestamp, UpdateOutcome, async_trait,
};

use crate::fields::{CREATED_AT, DATA, EXPIRES_AT, ID, PRINCIPAL, VERSION};
use crate::{BACKEND, MongoStoreBuilder};

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// How often `save` retries an upsert that lost a race to a concurrent
/// insert of the same key (the retry then finds the document and replaces
/// it).
const SAVE_ATTEMPTS: usize = 3;

/// A session store on a MongoDB collection.
///
/// One document per session, `_id` = the session key, `expires_at` a BSON
/// date covered by a TTL index; every read and conditional write filters on
/// `expires_at > now` (this process's clock), so results are exact whenever
/// the server's TTL monitor runs. See the crate documentation.
///
/// Cloning is cheap and shares the client.
#[derive(Clone)]
pub struct MongoStore {
    collection: Collection<Document>,
    /// The hosts (or "provided client"), without credentials.
    target: String,
    deadlines: Deadlines,
}

/// How long a call may take, end to end (server selection and retries
/// included), before it fails with [`Error::Timeout`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadlines {
    /// For the calls on one session.
    pub(crate) operation: Duration,
    /// For `clear`, `len`, each page of `list` and `delete_expired`, whose
    /// work grows with the collection.
    pub(crate) bulk: Duration,
}

impl fmt::Debug for MongoStore {
    /// Shows hosts, database and collection; never credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("target", &self.target)
            .field("namespace", &self.collection.namespace().to_string())
            .field("write_concern", &self.collection.write_concern())
            .field("deadlines", &self.deadlines)
            .finish_non_exhaustive()
    }
}

impl MongoStore {
    /// A builder for every setting (database, collection, write concern).
    pub fn builder() -> MongoStoreBuilder {
        MongoStoreBuilder::new()
    }

    /// Connect with the default settings (see [`MongoStoreBuilder::connect`]).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid URL, [`Error::Backend`] if the server
    /// cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().connect(url).await
    }

    pub(crate) fn from_parts(
        collection: Collection<Document>,
        target: String,
        deadlines: Deadlines,
    ) -> Self {
        Self {
            collection,
            target,
            deadlines,
        }
    }

    /// The operation deadline of calls on one session; see
    /// [`MongoStoreBuilder::with_operation_timeout`].
    #[must_use]
    pub fn operation_timeout(&self) -> Duration {
        self.deadlines.operation
    }

    /// The collection the sessions live in.
    #[must_use]
    pub fn collection(&self) -> &Collection<Document> {
        &self.collection
    }

    /// The namespace: the collection's name.
    #[must_use]
    pub fn namespace(&self) -> &str {
        self.collection.name()
    }

    /// Another namespace (collection) in the same database, on the same
    /// client and write concern; its TTL and principal
    /// indexes are created if missing.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid collection name; [`Error::Backend`]
    /// if the server refuses an index.
    pub async fn open_namespace(&self, namespace: &str) -> Result<Self> {
        crate::builder::validate_namespace(namespace)?;
        let database = self
            .collection
            .client()
            .database(&self.collection.namespace().db);
        crate::builder::open(
            &database,
            namespace,
            self.collection.write_concern().cloned(),
            &self.target,
            self.deadlines,
        )
        .await
    }

    /// `Error::Decode` if what is stored under `key` is not a session; `Ok`
    /// if it is one or nothing is there. Only on paths where a filtered
    /// write matched nothing, to tell a corrupt document from an absent or
    /// expired one.
    async fn check_stored(&self, key: &SessionKey) -> Result<()> {
        let found = self
            .collection
            .find_one(doc! { ID: key.as_str() })
            .await
            .map_err(backend)?;
        match found {
            Some(doc) => decode_record(key, &doc).map(drop),
            None => Ok(()),
        }
    }

    fn document(key: &SessionKey, record: &Record) -> Result<Document> {
        let mut document = doc! {
            ID: key.as_str(),
            DATA: Record::encode_data(&record.data)?.as_str(),
            CREATED_AT: DateTime::from_millis(record.created_at.as_millis()),
            EXPIRES_AT: DateTime::from_millis(record.expires_at.as_millis()),
            // Equality is the only comparison made on versions, so the bits
            // of the u64 are stored as an Int64 (u64 above i64::MAX become
            // negative) and read back the same way.
            VERSION: version_to_bson(record.version),
        };
        // Absent, not null, without one: the partial principal index holds
        // only documents that have the field. Every write that stores a
        // record replaces the whole document, so a record without principal
        // removes the field.
        if let Some(principal) = &record.principal {
            document.insert(PRINCIPAL, principal.as_str());
        }
        Ok(document)
    }
}

fn version_to_bson(version: u64) -> i64 {
    i64::from_ne_bytes(version.to_ne_bytes())
}

fn version_from_bson(stored: i64) -> u64 {
    u64::from_ne_bytes(stored.to_ne_bytes())
}

/// Now, by this process's clock, as a BSON date.
fn now() -> DateTime {
    DateTime::from_millis(Timestamp::now().as_millis())
}

/// The filter matching the live document under `key`.
fn live(key: &SessionKey, now: DateTime) -> Document {
    doc! { ID: key.as_str(), EXPIRES_AT: { "$gt": now } }
}

fn backend(e: mongodb::error::Error) -> Error {
    Error::backend(BACKEND, e)
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Decode a stored document into its key and record.
fn decode(doc: &Document) -> Result<(SessionKey, Record)> {
    let id = doc.get_str(ID).map_err(|e| Error::InvalidKey {
        key: format!("{:?}", doc.get(ID)),
        reason: if matches!(e, bson::document::ValueAccessError::NotPresent) {
            "document has no _id"
        } else {
            "_id is not a string"
        },
    })?;
    let key = SessionKey::parse(id)?;
    Ok((key, decode_record(&key, doc)?))
}

fn decode_record(key: &SessionKey, doc: &Document) -> Result<Record> {
    let field = |name: &str| -> Result<&Bson> {
        doc.get(name)
            .ok_or_else(|| Error::decode(key, format!("field {name} is missing")))
    };
    let date = |name: &str| -> Result<Timestamp> {
        match field(name)? {
            Bson::DateTime(d) => Ok(Timestamp::from_millis(d.timestamp_millis())),
            other => Err(Error::decode(
                key,
                format!("field {name} is a {:?}, not a date", other.element_type()),
            )),
        }
    };
    let data = match field(DATA)? {
        Bson::String(text) => Record::decode_data(key, text.as_bytes())?,
        other => {
            return Err(Error::decode(
                key,
                format!("field {DATA} is a {:?}, not a string", other.element_type()),
            ));
        }
    };
    let version = match field(VERSION)? {
        Bson::Int64(v) => version_from_bson(*v),
        other => {
            return Err(Error::decode(
                key,
                format!(
                    "field {VERSION} is a {:?}, not an int64",
                    other.element_type()
                ),
            ));
        }
    };
    let principal = match doc.get(PRINCIPAL) {
        None | Some(Bson::Null) => None,
        Some(Bson::String(name)) => Some(Principal::stored(key, name.as_str())?),
        Some(other) => {
            return Err(Error::decode(
                key,
                format!(
                    "field {PRINCIPAL} is a {:?}, not a string",
                    other.element_type()
                ),
            ));
        }
    };
    Ok(
        Record::with_times(data, date(CREATED_AT)?, date(EXPIRES_AT)?)
            .with_version(version)
            .with_principal(principal),
    )
}

#[async_trait]
impl SessionStore for MongoStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        Error::within(BACKEND, "load", self.deadlines.operation, async {
            // By `_id` alone, liveness decided here: a document whose
            // expiry is not a date must be a decode error, not a session
            // that a filter on `expires_at` silently hides.
            let found = self
                .collection
                .find_one(doc! { ID: key.as_str() })
                .await
                .map_err(backend)?;
            Ok(found
                .map(|doc| decode_record(key, &doc))
                .transpose()?
                .filter(Record::is_live))
        })
        .await
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<bool> {
        Error::within(BACKEND, "create", self.deadlines.operation, async {
            // One server-side step: replace an expired document, or insert when
            // there is none (upsert). A live document matches neither, so the
            // upsert's insert hits the unique `_id`: a duplicate-key error, which
            // is the collision.
            let filter = doc! { ID: key.as_str(), EXPIRES_AT: { "$lte": now() } };
            match self
                .collection
                .replace_one(filter, Self::document(key, record)?)
                .upsert(true)
                .await
            {
                Ok(_) => Ok(true),
                // A collision, unless what is there is not a session at all
                // (an expiry that is no date never matches `$lte`, and would
                // block the key forever).
                Err(e) if is_duplicate_key(&e) => {
                    self.check_stored(key).await?;
                    Ok(false)
                }
                Err(e) => Err(backend(e)),
            }
        })
        .await
    }

    async fn update(
        &self,
        key: &SessionKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<UpdateOutcome> {
        Error::within(BACKEND, "update", self.deadlines.operation, async {
            // Versions wrap from u64::MAX to 0 (the contract: they are only
            // compared for equality).
            let next = expected_version.wrapping_add(1);
            let now = now();
            let mut filter = live(key, now);
            filter.insert(VERSION, version_to_bson(expected_version));
            let replacement = Self::document(key, &record.clone().with_version(next))?;
            let result = self
                .collection
                .replace_one(filter, replacement)
                .await
                .map_err(backend)?;
            if result.matched_count == 1 {
                return Ok(UpdateOutcome::Updated);
            }
            // Nothing was written. Tell a missing session from a concurrent
            // writer by reading, never by writing.
            let current = self
                .collection
                .find_one(doc! { ID: key.as_str() })
                .await
                .map_err(backend)?;
            let current = current.map(|doc| decode_record(key, &doc)).transpose()?;
            Ok(match current {
                Some(record) if record.expires_at.as_millis() > now.timestamp_millis() => {
                    UpdateOutcome::Conflict
                }
                _ => UpdateOutcome::Missing,
            })
        })
        .await
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<()> {
        Error::within(BACKEND, "save", self.deadlines.operation, async {
            if !record.is_live() {
                self.collection
                    .delete_one(doc! { ID: key.as_str() })
                    .await
                    .map_err(backend)?;
                return Ok(());
            }
            let document = Self::document(key, record)?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self
                    .collection
                    .replace_one(doc! { ID: key.as_str() }, &document)
                    .upsert(true)
                    .await
                {
                    Ok(_) => return Ok(()),
                    // Two upserts of a new key raced and this one lost the insert:
                    // the document exists now, so the next attempt replaces it.
                    Err(e) if is_duplicate_key(&e) && attempt < SAVE_ATTEMPTS => {}
                    Err(e) => return Err(backend(e)),
                }
            }
        })
        .await
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        Error::within(BACKEND, "touch", self.deadlines.operation, async {
            let result = self
                .collection
                .update_one(
                    live(key, now()),
                    doc! { "$set": { EXPIRES_AT: DateTime::from_millis(expires_at.as_millis()) } },
                )
                .await
                .map_err(backend)?;
            if result.matched_count == 0 {
                // Absent or expired, unless it is not a session at all.
                self.check_stored(key).await?;
            }
            Ok(result.matched_count == 1)
        })
        .await
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        Error::within(BACKEND, "destroy", self.deadlines.operation, async {
            self.collection
                .delete_one(doc! { ID: key.as_str() })
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn clear(&self) -> Result<()> {
        Error::within(BACKEND, "clear", self.deadlines.bulk, async {
            self.collection
                .delete_many(doc! {})
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn len(&self) -> Result<u64> {
        Error::within(BACKEND, "len", self.deadlines.bulk, async {
            self.collection
                .count_documents(doc! { EXPIRES_AT: { "$gt": now() } })
                .await
                .map_err(backend)
        })
        .await
    }

    async fn list(&self, cursor: Option<&Cursor>, limit: NonZeroUsize) -> Result<Page> {
        let after = cursor.map(|c| c.key_after(BACKEND)).transpose()?;
        // A page's work grows with the documents it skips (expired ones the
        // TTL monitor has not removed yet), so it gets the bulk deadline;
        // each page gets all of it.
        Error::within(BACKEND, "list", self.deadlines.bulk, async {
            // Keyset pagination on the `_id` index. Both bounds are strings,
            // so only string `_id`s match (MongoDB compares within a type):
            // every page sees the same documents, whatever sorts before or
            // after strings.
            let from = match &after {
                Some(key) => doc! { "$gt": key.as_str() },
                None => doc! { "$gte": "" },
            };
            let filter = doc! { ID: from, EXPIRES_AT: { "$gt": now() } };
            let mut found = self
                .collection
                .find(filter)
                .sort(doc! { ID: 1 })
                .limit(i64::try_from(limit.get()).unwrap_or(i64::MAX))
                .await
                .map_err(backend)?;
            let mut scanned = Vec::new();
            while found.advance().await.map_err(backend)? {
                let doc: Document = found.deserialize_current().map_err(backend)?;
                scanned.push(decode(&doc)?);
            }
            // The filter kept live documents only, by this call's clock.
            Page::from_key_ordered(scanned, limit, |_, record| Ok(Some(record)))
        })
        .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        Error::within(BACKEND, "delete_expired", self.deadlines.bulk, async {
            // Uses the TTL index on `expires_at`: the cost follows the number of
            // expired documents.
            let result = self
                .collection
                .delete_many(doc! { EXPIRES_AT: { "$lte": now() } })
                .await
                .map_err(backend)?;
            Ok(result.deleted_count)
        })
        .await
    }
}

/// The principal index is MongoDB's own secondary index on `principal`
/// (partial: documents without one are not in it), so it is exactly the
/// documents that name each principal, written in the same step as the
/// document; entries of expired documents go with the documents (TTL
/// monitor or `delete_expired`), and every query filters on
/// `expires_at > now` as the other reads do.
#[async_trait]
impl PrincipalIndex for MongoStore {
    async fn sessions_of(&self, principal: &Principal) -> Result<Vec<(SessionKey, Record)>> {
        // Its work grows with the principal's documents: the bulk deadline.
        Error::within(BACKEND, "sessions_of", self.deadlines.bulk, async {
            let filter = doc! { PRINCIPAL: principal.as_str(), EXPIRES_AT: { "$gt": now() } };
            let mut found = self.collection.find(filter).await.map_err(backend)?;
            let mut sessions = Vec::new();
            while found.advance().await.map_err(backend)? {
                let doc: Document = found.deserialize_current().map_err(backend)?;
                sessions.push(decode(&doc)?);
            }
            Ok(sessions)
        })
        .await
    }

    async fn destroy_all_of(
        &self,
        principal: &Principal,
        except: Option<&SessionKey>,
    ) -> Result<u64> {
        Error::within(BACKEND, "destroy_all_of", self.deadlines.bulk, async {
            // One `delete_many`: each document is deleted only if it still
            // names the principal and is live when the server gets to it.
            let mut filter = doc! { PRINCIPAL: principal.as_str(), EXPIRES_AT: { "$gt": now() } };
            if let Some(keep) = except {
                filter.insert(ID, doc! { "$ne": keep.as_str() });
            }
            let result = self.collection.delete_many(filter).await.map_err(backend)?;
            Ok(result.deleted_count)
        })
        .await
    }

    async fn index_len(&self, principal: &Principal) -> Result<u64> {
        Error::within(BACKEND, "index_len", self.deadlines.bulk, async {
            self.collection
                .count_documents(doc! { PRINCIPAL: principal.as_str() })
                .await
                .map_err(backend)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_through_int64_bits() {
        for v in [
            0,
            1,
            i64::MAX as u64,
            i64::MAX as u64 + 1,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(version_from_bson(version_to_bson(v)), v);
        }
        assert_eq!(version_to_bson(u64::MAX), -1);
    }
}

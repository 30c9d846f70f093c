//! The conformance suite and MongoDB-specific checks.

use std::time::Duration;

use mongodb::bson::{Document, doc};
use session_conformance::env::MONGO;
use session_conformance::fixtures::assert_decode_error;
use session_conformance::{Capabilities, StoreFactory, unique_namespace};
use session_core::{
    Error, Principal, PrincipalIndex, Record, SessionId, SessionStore, Timestamp, UpdateOutcome,
    async_trait,
};
use session_store_mongo::{MongoStore, PRINCIPAL_INDEX_NAME, TTL_INDEX_NAME};

/// The database every test uses; each store gets its own collection.
const DATABASE: &str = "session_conformance";

fn skip() -> Option<String> {
    MONGO.skip_reason()
}

async fn open(collection: &str) -> MongoStore {
    let url = MONGO.url();
    MongoStore::builder()
        .with_database(DATABASE)
        .with_namespace(collection)
        .with_server_selection_timeout(Duration::from_secs(10))
        .connect(&url)
        .await
        .unwrap_or_else(|e| MONGO.unreachable(&url, &e))
}

struct Mongo;

#[async_trait]
impl StoreFactory for Mongo {
    type Store = MongoStore;

    async fn open(&self, namespace: &str) -> MongoStore {
        open(namespace).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true).expires_natively(true)
    }

    fn skip_reason(&self) -> Option<String> {
        skip()
    }
}

session_conformance::conformance_suite!(Mongo);

/// The whole suite again through `Arc<dyn SessionStore>`.
mod dynamic {
    session_conformance::conformance_suite!(session_conformance::Dyn(crate::Mongo));
}

/// The `PrincipalIndex` behaviours.
mod principals {
    session_conformance::principal_index_suite!(crate::Mongo);
}

/// The `PrincipalIndex` behaviours through `Arc<dyn PrincipalIndex>`.
mod principals_dynamic {
    session_conformance::principal_index_suite!(session_conformance::DynIndex(crate::Mongo));
}

fn data() -> session_core::Data {
    let mut data = session_core::Data::new();
    data.insert("user".into(), "ada".into());
    data
}

#[tokio::test]
async fn ttl_index_exists_after_build() {
    if skip().is_some() {
        return;
    }
    let store = open(&unique_namespace()).await;
    let mut cursor = store.collection().list_indexes().await.unwrap();
    let mut found = None;
    while cursor.advance().await.unwrap() {
        let index = cursor.deserialize_current().unwrap();
        if index.options.as_ref().and_then(|o| o.name.as_deref()) == Some(TTL_INDEX_NAME) {
            found = Some(index);
        }
    }
    let index = found.expect("the TTL index is missing");
    assert_eq!(index.keys, doc! { "expires_at": 1 });
    let options = index.options.unwrap();
    assert_eq!(options.expire_after, Some(Duration::ZERO));

    // Building a second store on the same collection is fine (idempotent).
    let again = open(store.collection().name()).await;
    assert_eq!(again.collection().name(), store.collection().name());
}

#[tokio::test]
async fn documents_hold_dates_and_json_text() {
    if skip().is_some() {
        return;
    }
    let store = open(&unique_namespace()).await;
    let key = SessionId::generate().unwrap().key();
    let record = Record::new(data(), Duration::from_secs(600)).with_version(u64::MAX);
    store.save(&key, &record).await.unwrap();
    let raw: Document = store
        .collection()
        .find_one(doc! { "_id": key.as_str() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        raw.get_datetime("expires_at").unwrap().timestamp_millis(),
        record.expires_at.as_millis()
    );
    assert_eq!(raw.get_str("data").unwrap(), r#"{"user":"ada"}"#);
    assert_eq!(raw.get_i64("version").unwrap(), -1);
    assert_eq!(store.load(&key).await.unwrap(), Some(record));
}

#[tokio::test]
async fn garbage_written_directly_is_a_decode_error_naming_the_key() {
    if skip().is_some() {
        return;
    }
    let store = open(&unique_namespace()).await;
    // A day from now (SecantusDB, the test server, handles dates up to the
    // year 9999 only).
    let far = mongodb::bson::DateTime::from_millis(
        session_core::Timestamp::now().as_millis() + 86_400_000,
    );
    let key = SessionId::generate().unwrap().key();
    store
        .collection()
        .insert_one(doc! {
            "_id": key.as_str(), "data": "not json", "created_at": far,
            "expires_at": far, "version": 1_i64,
        })
        .await
        .unwrap();
    assert_decode_error(store.load(&key).await, &key);
    assert!(matches!(store.all().await, Err(Error::Decode { .. })));

    let key2 = SessionId::generate().unwrap().key();
    store
        .collection()
        .insert_one(doc! {
            "_id": key2.as_str(), "data": "{}", "created_at": "yesterday",
            "expires_at": far, "version": 1_i64,
        })
        .await
        .unwrap();
    assert_decode_error(store.load(&key2).await, &key2);
    store.clear().await.unwrap();
}

/// A document whose expiry is not a date used to be hidden from `load` (its
/// filter on `expires_at` never matched) yet block `create` as a collision
/// forever. Now every method that meets it names the key.
#[tokio::test]
async fn an_expiry_that_is_not_a_date_is_a_decode_error_from_every_method() {
    if skip().is_some() {
        return;
    }
    let store = open(&unique_namespace()).await;
    let far = mongodb::bson::DateTime::from_millis(
        session_core::Timestamp::now().as_millis() + 86_400_000,
    );
    for expiry in [
        mongodb::bson::Bson::String("tomorrow".into()),
        mongodb::bson::Bson::Int64(i64::MAX),
        mongodb::bson::Bson::Null,
    ] {
        let key = SessionId::generate().unwrap().key();
        store
            .collection()
            .insert_one(doc! {
                "_id": key.as_str(), "data": "{}", "created_at": far,
                "expires_at": expiry.clone(), "version": 1_i64,
            })
            .await
            .unwrap();
        let fresh = Record::new(data(), Duration::from_secs(60));
        assert_decode_error(store.load(&key).await, &key);
        assert_decode_error(store.create(&key, &fresh).await, &key);
        assert_decode_error(store.update(&key, &fresh, 1).await, &key);
        assert_decode_error(store.touch(&key, fresh.expires_at).await, &key);
        // What the store reports is what is there: nothing was overwritten.
        let raw = store
            .collection()
            .find_one(doc! { "_id": key.as_str() })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(raw.get("expires_at"), Some(&expiry), "{expiry:?}");
        // `save` overwrites whatever is there, as it does for any key.
        store.save(&key, &fresh).await.unwrap();
        assert_eq!(store.load(&key).await.unwrap(), Some(fresh));
    }
    store.collection().drop().await.unwrap();
}

#[tokio::test]
async fn configuration_errors_are_reported_when_building() {
    for (db, coll) in [
        ("", "x"),
        ("a.b", "x"),
        ("ok", ""),
        ("ok", "a$b"),
        ("ok", "system.x"),
    ] {
        let err = MongoStore::builder()
            .with_database(db)
            .with_namespace(coll)
            .connect("mongodb://127.0.0.1:1/")
            .await;
        assert!(
            matches!(err, Err(Error::Config { .. })),
            "{db:?}.{coll:?}: {err:?}"
        );
    }
    let err = MongoStore::connect("not-a-url://hunter2").await;
    assert!(matches!(err, Err(Error::Config { .. })), "{err:?}");
}

#[tokio::test]
async fn unreachable_server_fails_at_build_without_leaking_the_password() {
    let err = MongoStore::builder()
        .with_server_selection_timeout(Duration::from_millis(300))
        .connect("mongodb://ada:hunter2secret@127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    let chain = format!("{err:?} {}", session_core::report(&err));
    assert!(!chain.contains("hunter2secret"), "{chain}");
}

#[tokio::test]
async fn debug_shows_hosts_and_collection_but_never_credentials() {
    if skip().is_some() {
        return;
    }
    let collection = unique_namespace();
    let store = open(&collection).await;
    let shown = format!("{store:?}");
    assert!(shown.contains(&collection), "{shown}");
    assert!(shown.contains("mongodb://"), "{shown}");
    assert!(!shown.contains('@'), "{shown}");
}

#[tokio::test]
async fn versions_wrap_from_u64_max_to_zero() {
    if skip().is_some() {
        return;
    }
    let store = open(&unique_namespace()).await;
    let key = SessionId::generate().unwrap().key();
    let record = Record::new(data(), Duration::from_secs(600)).with_version(u64::MAX);
    store.save(&key, &record).await.unwrap();
    let outcome = store.update(&key, &record, u64::MAX).await.unwrap();
    assert_eq!(outcome, session_core::UpdateOutcome::Updated);
    assert_eq!(store.load(&key).await.unwrap().unwrap().version, 0);
}

#[tokio::test]
async fn writes_wait_for_the_journal_unless_told_otherwise() {
    use mongodb::options::{Acknowledgment, WriteConcern};
    if skip().is_some() {
        return;
    }
    let store = open(&unique_namespace()).await;
    assert_eq!(
        store.collection().write_concern(),
        Some(&session_store_mongo::durable_write_concern())
    );
    assert_eq!(
        session_store_mongo::durable_write_concern().journal,
        Some(true)
    );
    // A write concern in the URL is the user's choice and is kept.
    let url = MONGO.url();
    let sep = if url.contains('?') { '&' } else { '?' };
    let fast = MongoStore::builder()
        .with_database(DATABASE)
        .with_namespace(unique_namespace())
        .connect(&format!("{url}{sep}w=1"))
        .await
        .unwrap_or_else(|e| MONGO.unreachable(&url, &e));
    let concern = fast
        .collection()
        .write_concern()
        .cloned()
        .unwrap_or_default();
    assert_eq!(concern.w, Some(Acknowledgment::Nodes(1)));
    assert_eq!(concern.journal, None);
    // So is one given to the builder.
    let explicit = MongoStore::builder()
        .with_database(DATABASE)
        .with_namespace(unique_namespace())
        .with_write_concern(WriteConcern::nodes(1))
        .connect(&url)
        .await
        .unwrap_or_else(|e| MONGO.unreachable(&url, &e));
    assert_eq!(
        explicit.collection().write_concern(),
        Some(&WriteConcern::nodes(1))
    );
    // Another namespace keeps the store's concern.
    let other = store.open_namespace(&unique_namespace()).await.unwrap();
    assert_eq!(
        other.collection().write_concern(),
        Some(&session_store_mongo::durable_write_concern())
    );
    // And the server accepts journaled writes.
    let key = SessionId::generate().unwrap().key();
    store
        .save(&key, &Record::new(data(), Duration::from_secs(60)))
        .await
        .unwrap();
    for s in [store, fast, explicit, other] {
        s.collection().drop().await.unwrap();
    }
}

#[tokio::test]
async fn a_stalled_server_is_a_timeout_at_the_operation_deadline_and_the_store_recovers() {
    if skip().is_some() {
        return;
    }
    let url = MONGO.url();
    let (proxy, proxied) = session_conformance::fault::StallProxy::in_front_of(&url)
        .await
        .unwrap_or_else(|e| MONGO.unreachable(&url, &e));
    let deadline = Duration::from_millis(700);
    let store = MongoStore::builder()
        .with_database(DATABASE)
        .with_namespace(unique_namespace())
        .with_operation_timeout(deadline)
        .with_bulk_timeout(deadline)
        .connect(&proxied)
        .await
        .unwrap_or_else(|e| MONGO.unreachable(&proxied, &e));
    assert_eq!(store.operation_timeout(), deadline);
    // Server selection alone would wait 10 s: the deadline ends each call.
    session_conformance::fault::assert_deadline_bounds_a_stall(&store, &proxy, "mongodb", deadline)
        .await;
    store.collection().drop().await.unwrap();
}

/// `list` pages by `_id` in key order, with `Cursor::after` cursors, and
/// every page sees the same documents: ones whose `_id` is not a string
/// (which this store never writes; numbers sort before strings, objects
/// after) are not listed whatever the page size, like ones whose expiry is
/// not a date.
#[tokio::test]
async fn list_pages_in_key_order_and_skips_ids_that_are_not_strings() {
    if skip().is_some() {
        return;
    }
    let store = open(&unique_namespace()).await;
    let far = mongodb::bson::DateTime::from_millis(
        session_core::Timestamp::now().as_millis() + 86_400_000,
    );
    for id in [
        mongodb::bson::Bson::Int64(7),
        mongodb::bson::Bson::Document(doc! { "a": 1 }),
    ] {
        store
            .collection()
            .insert_one(doc! {
                "_id": id, "data": "{}", "created_at": far,
                "expires_at": far, "version": 1_i64,
            })
            .await
            .unwrap();
    }
    let mut keys: Vec<_> = (0..5)
        .map(|_| SessionId::generate().unwrap().key())
        .collect();
    for key in &keys {
        store
            .save(key, &Record::new(data(), Duration::from_secs(600)))
            .await
            .unwrap();
    }
    keys.sort();
    for limit in [1, 2, 5, 100] {
        let size = std::num::NonZeroUsize::new(limit).unwrap();
        let (mut listed, mut cursor) = (Vec::new(), None);
        loop {
            let page = store.list(cursor.as_ref(), size).await.unwrap();
            assert!(page.records.len() <= limit);
            listed.extend(page.records.into_iter().map(|(k, _)| k));
            let Some(next) = page.next else { break };
            assert_eq!(
                next,
                session_core::Cursor::after(listed.last().unwrap()),
                "limit {limit}"
            );
            cursor = Some(next);
        }
        assert_eq!(listed, keys, "limit {limit}");
    }
    store.clear().await.unwrap();
}

#[allow(clippy::unwrap_used, reason = "test helper")]
fn principal(name: &str) -> Principal {
    Principal::new(name).unwrap()
}

/// The index options of the index named `name` on `store`'s collection.
#[allow(clippy::unwrap_used, reason = "test helper")]
async fn index_named(store: &MongoStore, name: &str) -> Option<mongodb::IndexModel> {
    let mut cursor = store.collection().list_indexes().await.unwrap();
    let mut found = None;
    while cursor.advance().await.unwrap() {
        let index = cursor.deserialize_current().unwrap();
        if index.options.as_ref().and_then(|o| o.name.as_deref()) == Some(name) {
            found = Some(index);
        }
    }
    found
}

/// Building the store creates the principal index next to the TTL index:
/// on `principal`, partial (only documents that name one are in it, so
/// anonymous sessions cost it nothing). SecantusDB, the test server,
/// accepts and reports the partial filter as MongoDB does.
#[tokio::test]
async fn the_principal_index_is_partial_and_built_with_the_store() {
    if skip().is_some() {
        return;
    }
    let store = open(&unique_namespace()).await;
    let index = index_named(&store, PRINCIPAL_INDEX_NAME)
        .await
        .expect("the principal index is missing");
    assert_eq!(index.keys, doc! { "principal": 1 });
    assert_eq!(
        index.options.unwrap().partial_filter_expression,
        Some(doc! { "principal": { "$exists": true } })
    );
    store.collection().drop().await.unwrap();
}

/// A document stores its principal as a string field, absent when the
/// session has none: an update without principal removes it, `touch`
/// keeps it.
#[tokio::test]
async fn documents_hold_the_principal_only_when_there_is_one() {
    if skip().is_some() {
        return;
    }
    let store = open(&unique_namespace()).await;
    let raw = |key: session_core::SessionKey| {
        let collection = store.collection().clone();
        async move {
            collection
                .find_one(doc! { "_id": key.as_str() })
                .await
                .unwrap()
                .unwrap()
        }
    };
    let key = SessionId::generate().unwrap().key();
    let ada = principal("ada");
    let record = Record::new(data(), Duration::from_secs(600)).with_principal(Some(ada.clone()));
    assert!(store.create(&key, &record).await.unwrap());
    assert_eq!(raw(key).await.get_str("principal").unwrap(), "ada");
    assert!(
        store
            .touch(&key, record.expires_at + Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert_eq!(raw(key).await.get_str("principal").unwrap(), "ada");
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.principal, Some(ada.clone()));
    let anonymous = loaded.clone().with_principal(None);
    assert_eq!(
        store
            .update(&key, &anonymous, loaded.version)
            .await
            .unwrap(),
        UpdateOutcome::Updated
    );
    assert!(raw(key).await.get("principal").is_none());
    assert_eq!(store.index_len(&ada).await.unwrap(), 0);
    store.collection().drop().await.unwrap();
}

/// A collection written before principals existed (the TTL index only,
/// documents without a `principal` field) gets the principal index when a
/// store is built on it, and its documents are sessions without principal
/// until a write gives them one.
#[tokio::test]
async fn a_collection_of_the_layout_before_principals_gets_its_index_on_build() {
    if skip().is_some() {
        return;
    }
    let name = unique_namespace();
    // What the store of before left: its TTL index and a document.
    let client = mongodb::Client::with_uri_str(MONGO.url()).await.unwrap();
    let collection = client.database(DATABASE).collection::<Document>(&name);
    collection
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! { "expires_at": 1 })
                .options(
                    mongodb::options::IndexOptions::builder()
                        .name(TTL_INDEX_NAME.to_owned())
                        .expire_after(Duration::ZERO)
                        .build(),
                )
                .build(),
        )
        .await
        .unwrap();
    let now = Timestamp::now();
    let key = SessionId::generate().unwrap().key();
    collection
        .insert_one(doc! {
            "_id": key.as_str(), "data": r#"{"user":"ada"}"#,
            "created_at": mongodb::bson::DateTime::from_millis(now.as_millis()),
            "expires_at": mongodb::bson::DateTime::from_millis(now.as_millis() + 600_000),
            "version": 3_i64,
        })
        .await
        .unwrap();
    assert!(
        index_named(&open(&name).await, PRINCIPAL_INDEX_NAME)
            .await
            .is_some(),
        "building a store on the old collection creates the index"
    );
    let store = open(&name).await;
    let old = store.load(&key).await.unwrap().unwrap();
    assert_eq!(old.principal, None);
    assert_eq!(old.version, 3);
    let ada = principal("ada");
    assert!(store.sessions_of(&ada).await.unwrap().is_empty());
    let mine = old.clone().with_principal(Some(ada.clone()));
    assert_eq!(
        store.update(&key, &mine, 3).await.unwrap(),
        UpdateOutcome::Updated
    );
    let listed = store.sessions_of(&ada).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, key);
    collection.drop().await.unwrap();
}

/// A `principal` field that is not a valid principal (written behind the
/// store's back) is a decode error naming the key.
#[tokio::test]
async fn a_principal_that_is_not_one_is_a_decode_error() {
    if skip().is_some() {
        return;
    }
    let store = open(&unique_namespace()).await;
    let far = mongodb::bson::DateTime::from_millis(Timestamp::now().as_millis() + 86_400_000);
    for bad in [
        mongodb::bson::Bson::Int64(42),
        mongodb::bson::Bson::String(String::new()),
        mongodb::bson::Bson::String("a\nb".into()),
    ] {
        let key = SessionId::generate().unwrap().key();
        store
            .collection()
            .insert_one(doc! {
                "_id": key.as_str(), "data": "{}", "created_at": far,
                "expires_at": far, "version": 1_i64, "principal": bad,
            })
            .await
            .unwrap();
        assert_decode_error(store.load(&key).await, &key);
    }
    store.collection().drop().await.unwrap();
}

/// The issue's size check: 10,000 sessions of one principal are 10,000
/// entries of the principal index (documents naming it, counted with the
/// raw driver); once expired, `delete_expired` leaves none.
///
/// The documents are written in the store's layout with `insert_many`
/// batches (SecantusDB manages some 600 single writes a second: 10,000
/// through `create` would take longer than the test should); the store
/// then lists and counts them.
#[tokio::test]
async fn ten_thousand_sessions_of_one_principal_leave_no_index_entry_behind() {
    if skip().is_some() {
        return;
    }
    const MANY: usize = 10_000;
    let store = open(&unique_namespace()).await;
    let who = principal("user:ten-thousand");
    let started = std::time::Instant::now();
    let now = Timestamp::now();
    // Long enough for the writes and the counts below on a busy machine:
    // once expired, the server's TTL monitor may remove documents at any
    // time.
    let expires_at = now + Duration::from_secs(6);
    let date = |t: Timestamp| mongodb::bson::DateTime::from_millis(t.as_millis());
    let keys: Vec<_> = (0..MANY)
        .map(|_| SessionId::generate().unwrap().key())
        .collect();
    for batch in keys.chunks(1_000) {
        let docs = batch.iter().map(|key| {
            doc! {
                "_id": key.as_str(), "data": r#"{"user":"many"}"#,
                "created_at": date(now), "expires_at": date(expires_at),
                "version": 0_i64, "principal": who.as_str(),
            }
        });
        store.collection().insert_many(docs).await.unwrap();
    }
    // And a few through the store, anonymous ones among them.
    let key = SessionId::generate().unwrap().key();
    let record = Record::with_times(data(), now, expires_at).with_principal(Some(who.clone()));
    assert!(store.create(&key, &record).await.unwrap());
    let anonymous = SessionId::generate().unwrap().key();
    assert!(
        store
            .create(&anonymous, &Record::with_times(data(), now, expires_at))
            .await
            .unwrap()
    );
    let written = started.elapsed();
    let raw_count = |filter: Document| {
        let collection = store.collection().clone();
        async move { collection.count_documents(filter).await.unwrap() }
    };
    let on_engine = raw_count(doc! { "principal": who.as_str() }).await;
    assert_eq!(on_engine, MANY as u64 + 1);
    assert_eq!(store.index_len(&who).await.unwrap(), MANY as u64 + 1);

    // Bounded wait until every one has expired by this process's clock.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.len().await.unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "sessions still live");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(store.sessions_of(&who).await.unwrap().is_empty());
    let reaping = std::time::Instant::now();
    // How many it removes depends on whether the TTL monitor got there
    // first; what is left is what counts.
    store.delete_expired().await.unwrap();
    let reaped = reaping.elapsed();
    assert_eq!(raw_count(doc! { "principal": who.as_str() }).await, 0);
    assert_eq!(raw_count(doc! {}).await, 0);
    assert_eq!(store.index_len(&who).await.unwrap(), 0);
    println!(
        "mongo: {MANY} sessions of one principal written in {written:?} (insert_many batches \
         of 1,000), removed with their index entries by delete_expired in {reaped:?}"
    );
    store.collection().drop().await.unwrap();
}

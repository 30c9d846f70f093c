//! The MongoDB engine's limit: the store's own client doing `find_one`,
//! `replace_one` (upsert), `insert_one`, `update_one` and `delete_one` on
//! documents of the same shape, by `_id` only.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection};
use session_core::{SessionKey, SessionStore, Timestamp};
use session_store_mongo::{DEFAULT_DATABASE, MongoStore};

use crate::Result;
use crate::backends::{Env, Opened, opened};
use crate::payload::Payload;
use crate::target::Target;

/// How long to look for the server before failing.
const SELECTION_TIMEOUT: Duration = Duration::from_secs(3);

/// Plain driver calls on a collection of its own, by `_id`, with documents
/// shaped like the store's (`data` as JSON text, dates, an Int64 version).
#[derive(Debug)]
pub struct RawMongo {
    collection: Collection<Document>,
}

fn document(key: &SessionKey, payload: &Payload) -> Document {
    doc! {
        "_id": key.as_str(),
        "data": payload.data_json.as_str(),
        "created_at": DateTime::from_millis(payload.created_at.as_millis()),
        "expires_at": DateTime::from_millis(payload.expires_at.as_millis()),
        "version": 0_i64,
    }
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000)
}

#[async_trait]
impl Target for RawMongo {
    async fn load(&self, key: &SessionKey) -> Result<bool> {
        let found = self
            .collection
            .find_one(doc! { "_id": key.as_str() })
            .await?;
        Ok(found.is_some())
    }

    async fn write(&self, key: &SessionKey, payload: &Payload, _expected: u64) -> Result<bool> {
        self.put(key, payload).await?;
        Ok(true)
    }

    async fn create(&self, key: &SessionKey, payload: &Payload) -> Result<bool> {
        match self.collection.insert_one(document(key, payload)).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn touch(&self, key: &SessionKey, expires_at: Timestamp) -> Result<bool> {
        let result = self
            .collection
            .update_one(
                doc! { "_id": key.as_str() },
                doc! { "$set": { "expires_at": DateTime::from_millis(expires_at.as_millis()) } },
            )
            .await?;
        Ok(result.matched_count == 1)
    }

    async fn destroy(&self, key: &SessionKey) -> Result<()> {
        self.collection
            .delete_one(doc! { "_id": key.as_str() })
            .await?;
        Ok(())
    }

    async fn put(&self, key: &SessionKey, payload: &Payload) -> Result<()> {
        self.collection
            .replace_one(doc! { "_id": key.as_str() }, document(key, payload))
            .upsert(true)
            .await?;
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.collection.delete_many(doc! {}).await?;
        Ok(())
    }
}

/// One client; the store on collection `{namespace}`, the raw baseline on
/// `{namespace}_raw`, both in the store's default database.
pub(crate) async fn open_pair(env: &Env, namespace: &str) -> Result<Opened> {
    let url = &env.mongo_url;
    let mut options = ClientOptions::parse(url.as_str())
        .await
        .map_err(|e| format!("MongoDB URL {url}: {e}"))?;
    options.server_selection_timeout = Some(SELECTION_TIMEOUT);
    options.connect_timeout = Some(SELECTION_TIMEOUT);
    let hosts: Vec<String> = options.hosts.iter().map(ToString::to_string).collect();
    let client = Client::with_options(options)?;
    let unreachable = |e: &dyn std::fmt::Display| {
        format!(
            "cannot reach MongoDB at {}: {e} (start a server or set SESSION_MONGO_URL)",
            hosts.join(",")
        )
    };
    let store = MongoStore::builder()
        .with_namespace(namespace)
        .build(client.clone())
        .await
        .map_err(|e| unreachable(&e))?;
    // The raw side writes with the store's write concern ({ j: true } unless
    // the URL sets one, e.g. `?w=1` to measure the faster, weaker setting).
    let options = mongodb::options::CollectionOptions::builder()
        .write_concern(store.collection().write_concern().cloned())
        .build();
    let raw = RawMongo {
        collection: client
            .database(DEFAULT_DATABASE)
            .collection_with_options(&format!("{namespace}_raw"), options),
    };
    let store: Arc<dyn SessionStore> = Arc::new(store);
    Ok(opened(store, Arc::new(raw), Vec::new()))
}

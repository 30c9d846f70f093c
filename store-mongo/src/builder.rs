//! Configuration of a [`MongoStore`], checked when the store is built.

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::{
    ClientOptions, CollectionOptions, IndexOptions, ReadPreference, SelectionCriteria, WriteConcern,
};
use mongodb::{Client, IndexModel};
use session_core::{Error, Result};

use crate::store::Deadlines;
use crate::{BACKEND, MongoStore, fields};

/// The database used when none is configured.
pub const DEFAULT_DATABASE: &str = "sessions";

/// The collection (namespace) used when none is configured.
pub const DEFAULT_NAMESPACE: &str = "sessions";

/// How long [`MongoStoreBuilder::connect`] waits to find a usable server
/// when none is configured (the driver's own default is 30 s).
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one call on a session may take, end to end, when none is
/// configured: see [`MongoStoreBuilder::with_operation_timeout`].
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `clear`, `len`, one page of `list` and `delete_expired` may
/// take when none is configured: see [`MongoStoreBuilder::with_bulk_timeout`].
pub const DEFAULT_BULK_TIMEOUT: Duration = Duration::from_secs(60);

/// The write concern of every write unless one is configured (here or in
/// the client): acknowledged once the write is in the primary's **journal**
/// (`{ j: true }`, with the server's default `w`), so a write the store
/// reports as done survives a crash of the server. With `w: 1` and no
/// journal, MongoDB acknowledges before the journal commit (up to 100 ms
/// later): writes acknowledged just before a crash are lost.
#[must_use]
pub fn durable_write_concern() -> WriteConcern {
    WriteConcern::builder().journal(true).build()
}

/// The name of the TTL index the store creates on `expires_at`.
pub const TTL_INDEX_NAME: &str = "expires_at_ttl";

/// The name of the index the store creates on `principal` (partial: only
/// documents that have one are in it).
pub const PRINCIPAL_INDEX_NAME: &str = "principal";

/// Builds a [`MongoStore`]: database, collection, write concern, and how to
/// reach the server.
///
/// Building creates the TTL index and the principal index, so settings and
/// connectivity problems surface there, never on first use.
///
/// ```no_run
/// # async fn example() -> session_core::Result<()> {
/// use session_store_mongo::{MongoStore, mongodb::options::WriteConcern};
///
/// let store = MongoStore::builder()
///     .with_database("myapp")
///     .with_namespace("sessions")
///     .with_write_concern(WriteConcern::majority())
///     .connect("mongodb://127.0.0.1:27017/")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct MongoStoreBuilder {
    database: String,
    collection: String,
    write_concern: Option<WriteConcern>,
    server_selection_timeout: Duration,
    deadlines: Deadlines,
}

impl Default for MongoStoreBuilder {
    fn default() -> Self {
        Self {
            database: DEFAULT_DATABASE.to_owned(),
            collection: DEFAULT_NAMESPACE.to_owned(),
            write_concern: None,
            server_selection_timeout: DEFAULT_SERVER_SELECTION_TIMEOUT,
            deadlines: Deadlines {
                operation: DEFAULT_OPERATION_TIMEOUT,
                bulk: DEFAULT_BULK_TIMEOUT,
            },
        }
    }
}

impl MongoStoreBuilder {
    /// A builder with the defaults: database [`DEFAULT_DATABASE`], collection
    /// [`DEFAULT_NAMESPACE`], the client's write concern if it has one, else
    /// [`durable_write_concern`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The database holding the collection.
    pub fn with_database(mut self, name: impl Into<String>) -> Self {
        self.database = name.into();
        self
    }

    /// The collection: the store's namespace. `clear`, `len`, `list` and
    /// `delete_expired` see this collection and nothing else.
    pub fn with_namespace(mut self, name: impl Into<String>) -> Self {
        self.collection = name.into();
        self
    }

    /// The write concern of every write. Default: the client's, if its URL
    /// or options set one; otherwise [`durable_write_concern`] (`j: true`),
    /// so that an acknowledged write survives a server crash. On a replica
    /// set, [`WriteConcern::majority`] makes it survive a failover as well.
    ///
    /// Faster and weaker, explicitly: `WriteConcern::nodes(1)` (`w: 1`
    /// without the journal) acknowledges before the journal commit, and
    /// loses the writes of the last ~100 ms when the server crashes
    /// (measured: 12 to 20 acknowledged sessions gone after a `SIGKILL`).
    pub fn with_write_concern(mut self, concern: WriteConcern) -> Self {
        self.write_concern = Some(concern);
        self
    }

    /// The operation deadline of every call on one session (default
    /// [`DEFAULT_OPERATION_TIMEOUT`]): how long `load`, `create`, `update`,
    /// `save`, `touch` or `destroy` may take **end to end**, looking for a
    /// server and retrying included, before it fails with
    /// [`Error::Timeout`]. Without it, a stalled server held every call for
    /// as long as it stalled.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.deadlines.operation = timeout;
        self
    }

    /// The deadline of `clear`, `len`, each page of `list` (so `all` may
    /// take it once per page of 1,000) and `delete_expired` (default
    /// [`DEFAULT_BULK_TIMEOUT`]), whose work grows with the collection. A
    /// `clear` or `delete_expired` cut short by it has still deleted what
    /// the server got to.
    pub fn with_bulk_timeout(mut self, timeout: Duration) -> Self {
        self.deadlines.bulk = timeout;
        self
    }

    /// How long [`connect`](Self::connect) lets the driver look for a usable
    /// server before an operation fails (default
    /// [`DEFAULT_SERVER_SELECTION_TIMEOUT`]), unless the URL sets
    /// `serverSelectionTimeoutMS`.
    pub fn with_server_selection_timeout(mut self, timeout: Duration) -> Self {
        self.server_selection_timeout = timeout;
        self
    }

    /// Connect with a `mongodb://` or `mongodb+srv://` URL and build the
    /// store (creating the TTL and principal indexes).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting or URL (the URL's password is
    /// never echoed); [`Error::Backend`] if the server cannot be reached or
    /// refuses an index.
    pub async fn connect(self, url: &str) -> Result<MongoStore> {
        self.validate()?;
        let mut options = ClientOptions::parse(url).await.map_err(|e| {
            Error::config(
                BACKEND,
                format!(
                    "invalid MongoDB URL: {}",
                    session_core::scrub_password(&e.to_string(), url)
                ),
            )
        })?;
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(self.server_selection_timeout);
        }
        if options.connect_timeout.is_none() {
            options.connect_timeout = Some(self.server_selection_timeout);
        }
        let hosts: Vec<String> = options.hosts.iter().map(ToString::to_string).collect();
        let target = format!("mongodb://{}", hosts.join(","));
        let client = Client::with_options(options).map_err(|e| {
            Error::config(
                BACKEND,
                format!(
                    "invalid MongoDB client options: {}",
                    session_core::scrub_password(&e.to_string(), url)
                ),
            )
        })?;
        self.finish(client, target).await
    }

    /// Build the store on a client you created yourself (creating the TTL and
    /// principal indexes).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting; [`Error::Backend`] if the
    /// server cannot be reached or refuses an index.
    pub async fn build(self, client: Client) -> Result<MongoStore> {
        self.validate()?;
        self.finish(client, "mongodb (provided client)".to_owned())
            .await
    }

    async fn finish(self, client: Client, target: String) -> Result<MongoStore> {
        let database = client.database(&self.database);
        // A write concern of the client (its URL's `w`/`journal`, or options
        // given to `build`) is kept as it is; none at all becomes durable.
        let write_concern = match self.write_concern {
            Some(concern) => Some(concern),
            None if database.write_concern().is_some() => None,
            None => Some(durable_write_concern()),
        };
        let deadlines = self.deadlines;
        Error::within(
            BACKEND,
            "connect",
            deadlines.operation.max(self.server_selection_timeout),
            async {
                open(
                    &database,
                    &self.collection,
                    write_concern,
                    &target,
                    deadlines,
                )
                .await
            },
        )
        .await
    }

    fn validate(&self) -> Result<()> {
        validate_namespace(&self.collection)?;
        let db = &self.database;
        if db.is_empty() || db.len() > 63 {
            return Err(Error::config(
                BACKEND,
                "the database name must be 1 to 63 bytes",
            ));
        }
        if db.chars().any(|c| {
            matches!(
                c,
                '/' | '\\' | '.' | ' ' | '"' | '$' | '*' | '<' | '>' | ':' | '|' | '?' | '\0'
            )
        }) {
            return Err(Error::config(
                BACKEND,
                "the database name must not contain any of / \\ . space \" $ * < > : | ? or NUL",
            ));
        }
        if self.deadlines.operation.is_zero() || self.deadlines.bulk.is_zero() {
            return Err(Error::config(
                BACKEND,
                "the operation and bulk timeouts must be longer than zero",
            ));
        }
        if self.server_selection_timeout.is_zero() {
            return Err(Error::config(
                BACKEND,
                "the server selection timeout must be longer than zero",
            ));
        }
        Ok(())
    }
}

/// The store on collection `namespace` of `database`, with the TTL index
/// and the principal index created if missing (also on a collection written
/// before principals existed: that is its whole migration, its documents
/// have no principal).
pub(crate) async fn open(
    database: &mongodb::Database,
    namespace: &str,
    write_concern: Option<WriteConcern>,
    target: &str,
    deadlines: Deadlines,
) -> Result<MongoStore> {
    // Reads always go to the primary: a secondary may lag, and `load`
    // after `update` must see the write.
    let options = CollectionOptions::builder()
        .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
        .write_concern(write_concern)
        .build();
    let collection = database.collection_with_options(namespace, options);
    let index = IndexModel::builder()
        .keys(doc! { fields::EXPIRES_AT: 1 })
        .options(
            IndexOptions::builder()
                .name(TTL_INDEX_NAME.to_owned())
                .expire_after(Duration::ZERO)
                .build(),
        )
        .build();
    // Partial: anonymous sessions (the bulk of them) are not in the index,
    // so they cost it nothing, on writes or in space.
    let principal_index = IndexModel::builder()
        .keys(doc! { fields::PRINCIPAL: 1 })
        .options(
            IndexOptions::builder()
                .name(PRINCIPAL_INDEX_NAME.to_owned())
                .partial_filter_expression(doc! { fields::PRINCIPAL: { "$exists": true } })
                .build(),
        )
        .build();
    collection
        .create_indexes([index, principal_index])
        .await
        .map_err(|e| Error::backend(BACKEND, e))?;
    Ok(MongoStore::from_parts(
        collection,
        target.to_owned(),
        deadlines,
    ))
}

/// Check a namespace (collection name): 1 to 200 bytes, no `$` or NUL, not
/// a system collection.
pub(crate) fn validate_namespace(namespace: &str) -> Result<()> {
    let coll = namespace;
    if coll.is_empty() || coll.len() > 200 {
        return Err(Error::config(
            BACKEND,
            "the collection name must be 1 to 200 bytes",
        ));
    }
    if coll.contains('$') || coll.contains('\0') || coll.starts_with("system.") {
        return Err(Error::config(
            BACKEND,
            "the collection name must not contain $ or NUL nor start with \"system.\"",
        ));
    }
    Ok(())
}

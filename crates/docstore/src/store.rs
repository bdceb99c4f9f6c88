//! The [`DocStore`] contract: what the engines need from a document store, nothing more.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;
use serde_json::Value;

use crate::error::Result;
use crate::types::{
    AllDocsPage, AllDocsQuery, BulkItem, ChangesPage, ChangesQuery, DbInfo, DbName, DbUpdate,
    FeedEvent, FeedQuery, Rev, Seq, ViewQuery, ViewRow,
};

/// A live feed connection: rows, heartbeats and the closing `last_seq` line, until the connection
/// ends. An `Err` item ends the connection; the follower reconnects.
pub type FeedStream = Pin<Box<dyn Stream<Item = Result<FeedEvent>> + Send>>;

/// A server-wide feed of database events (`_db_updates`), until the connection ends. An `Err`
/// item ends it; the reader resumes from the last event's `seq`.
pub type DbUpdateStream = Pin<Box<dyn Stream<Item = Result<DbUpdate>> + Send>>;

/// A store shared between tasks.
pub type SharedStore = Arc<dyn DocStore>;

/// The storage contract. Both backends (CouchDB over HTTP, the embedded store) implement it with the
/// same semantics, and one conformance suite (`tests/conformance.rs`) proves they agree.
///
/// Documents are JSON objects carrying `_id` and, once stored, `_rev`. Writes are compare-and-swap on
/// `_rev`: a write without the current rev is an [`Error::Conflict`](crate::Error::Conflict), never an
/// overwrite. A deleted document leaves a tombstone, appears in the change feed with `deleted`, and may
/// be created again without a rev.
#[async_trait]
pub trait DocStore: Send + Sync + 'static {
    /// The backend's name, for status output (`couchdb`, `embedded`).
    fn backend(&self) -> &'static str;

    /// Every database, sorted by name.
    async fn list_dbs(&self) -> Result<Vec<DbName>>;

    /// Whether `db` exists.
    async fn db_exists(&self, db: &DbName) -> Result<bool>;

    /// Creates `db`. [`Error::DbExists`](crate::Error::DbExists) if it exists.
    async fn create_db(&self, db: &DbName) -> Result<()>;

    /// Creates `db` unless it exists; `true` when it was created by this call.
    async fn ensure_db(&self, db: &DbName) -> Result<bool> {
        match self.create_db(db).await {
            Ok(()) => Ok(true),
            Err(crate::Error::DbExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes `db` and everything in it. [`Error::DbNotFound`](crate::Error::DbNotFound) if missing.
    async fn delete_db(&self, db: &DbName) -> Result<()>;

    /// Counts and the latest sequence of `db`.
    async fn db_info(&self, db: &DbName) -> Result<DbInfo>;

    /// The winning revision of a document, with `_id` and `_rev`; `None` if missing or deleted.
    async fn get(&self, db: &DbName, id: &str) -> Result<Option<Value>>;

    /// Writes a document. With `_rev`, only if it is the current rev; without, only if the document
    /// does not exist (or is deleted). Without `_id`, the store generates one. Returns the new rev.
    async fn put(&self, db: &DbName, doc: Value) -> Result<Rev>;

    /// Deletes a document at `rev` (compare-and-swap like `put`), leaving a tombstone.
    async fn delete(&self, db: &DbName, id: &str, rev: &Rev) -> Result<Rev>;

    /// `_bulk_docs`: each document is written (or refused) on its own; the results are in input
    /// order. A document with `_deleted: true` and its `_rev` is a delete.
    async fn bulk_docs(&self, db: &DbName, docs: Vec<Value>) -> Result<Vec<BulkItem>>;

    /// `_all_docs` with a key range, paging and optionally the documents. Design docs are included,
    /// as CouchDB does; `_local` docs are not.
    async fn all_docs(&self, db: &DbName, query: &AllDocsQuery) -> Result<AllDocsPage>;

    /// `_all_docs` with `keys`: the documents with these ids, in order; `None` for missing or deleted.
    async fn get_many(&self, db: &DbName, ids: &[String]) -> Result<Vec<Option<Value>>>;

    /// A one-shot `_changes` (`feed=normal`): the latest change of each document after `since`, in
    /// feed order.
    async fn changes(&self, db: &DbName, query: &ChangesQuery) -> Result<ChangesPage>;

    /// Opens one live feed connection (`feed=continuous`): the backlog after `since`, then changes as
    /// they happen, with heartbeats. The follower (`crate::follow`) adds reconnects and checkpoints.
    async fn open_feed(&self, db: &DbName, query: &FeedQuery) -> Result<FeedStream>;

    /// A server-wide feed of database events (`_db_updates?feed=continuous`), if the backend has
    /// one: every database whose latest event is after `since` (once each, in event order; `since`
    /// [`Seq::now`] for none, [`Seq::zero`] for all), then events as they happen. A `since` the
    /// server does not know replays every database. `Ok(None)` means "not available here": poll
    /// [`list_dbs`](DocStore::list_dbs) instead.
    async fn db_updates(&self, since: &Seq) -> Result<Option<DbUpdateStream>>;

    /// Reads a `_local/{name}` document (not replicated, not in feeds): checkpoints live here.
    async fn get_local(&self, db: &DbName, name: &str) -> Result<Option<Value>>;

    /// Writes a `_local/{name}` document, replacing what is there.
    async fn put_local(&self, db: &DbName, name: &str, body: Value) -> Result<()>;

    /// Queries a view of a deployed design document.
    /// [`Error::Unsupported`](crate::Error::Unsupported) on backends without a JavaScript engine:
    /// the engines never depend on views.
    async fn view(
        &self,
        db: &DbName,
        ddoc: &str,
        view: &str,
        query: &ViewQuery,
    ) -> Result<Vec<ViewRow>>;
}

//! The stores the docstore test files run against: the shared test server (`testkit`'s
//! couch-peer, or `COUCHDB_URL`) and an in-memory embedded store.

// Each test file uses some of these.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use docstore::{
    AllDocsPage, AllDocsQuery, BulkItem, ChangesPage, ChangesQuery, CouchConfig, CouchStore,
    DbInfo, DbName, DbUpdateStream, DocStore, EmbeddedStore, FeedQuery, FeedStream, Result, Rev,
    Seq, SharedStore, ViewQuery, ViewRow,
};
use futures::future::BoxFuture;
use serde_json::Value;
use testkit::CouchServer;

/// A client of `url` (the server itself, or a proxy in front of it) with `server`'s credentials.
pub fn couch_config(url: &str, server: &CouchServer) -> CouchConfig {
    let mut config = CouchConfig::from_url(url).expect("server url");
    if let Some((user, password)) = server.credentials() {
        config.user = Some(user);
        config.password = Some(password);
    }
    config
}

/// A store on the shared test server.
pub fn couch() -> SharedStore {
    let server = CouchServer::shared();
    Arc::new(CouchStore::new(couch_config(server.url(), server)).expect("couch store"))
}

/// A fresh in-memory embedded store.
pub fn embedded() -> SharedStore {
    Arc::new(EmbeddedStore::in_memory().expect("embedded store"))
}

/// A database name no other test uses.
pub fn unique_db(prefix: &str) -> DbName {
    DbName::new(testkit::unique_db(prefix)).expect("unique db name")
}

/// What a [`Spy`] runs once, just before the next `_all_docs` request reaches the store.
pub type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A real store seen through a spy: it counts the live feeds asked of it, can hide its
/// `_db_updates`, and runs a [`Hook`] before the next `_all_docs` request (to write between a
/// read's noted `update_seq` and its documents). Everything else goes to the store unchanged.
pub struct Spy {
    inner: SharedStore,
    db_updates: bool,
    /// Live `_changes` feeds opened so far.
    pub live_feeds: AtomicUsize,
    before_all_docs: Mutex<Option<Hook>>,
}

impl Spy {
    /// A spy on `inner`; `db_updates: false` hides its `_db_updates` feed.
    pub fn new(inner: SharedStore, db_updates: bool) -> Spy {
        Spy {
            inner,
            db_updates,
            live_feeds: AtomicUsize::new(0),
            before_all_docs: Mutex::new(None),
        }
    }

    /// Runs `hook` before the next `_all_docs` request.
    pub fn before_next_all_docs(&self, hook: Hook) {
        *self.before_all_docs.lock().expect("hook lock") = Some(hook);
    }
}

#[async_trait]
impl DocStore for Spy {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn list_dbs(&self) -> Result<Vec<DbName>> {
        self.inner.list_dbs().await
    }
    async fn db_exists(&self, db: &DbName) -> Result<bool> {
        self.inner.db_exists(db).await
    }
    async fn create_db(&self, db: &DbName) -> Result<()> {
        self.inner.create_db(db).await
    }
    async fn delete_db(&self, db: &DbName) -> Result<()> {
        self.inner.delete_db(db).await
    }
    async fn db_info(&self, db: &DbName) -> Result<DbInfo> {
        self.inner.db_info(db).await
    }
    async fn get(&self, db: &DbName, id: &str) -> Result<Option<Value>> {
        self.inner.get(db, id).await
    }
    async fn put(&self, db: &DbName, doc: Value) -> Result<Rev> {
        self.inner.put(db, doc).await
    }
    async fn delete(&self, db: &DbName, id: &str, rev: &Rev) -> Result<Rev> {
        self.inner.delete(db, id, rev).await
    }
    async fn bulk_docs(&self, db: &DbName, docs: Vec<Value>) -> Result<Vec<BulkItem>> {
        self.inner.bulk_docs(db, docs).await
    }
    async fn all_docs(&self, db: &DbName, query: &AllDocsQuery) -> Result<AllDocsPage> {
        let hook = self.before_all_docs.lock().expect("hook lock").take();
        if let Some(hook) = hook {
            hook().await;
        }
        self.inner.all_docs(db, query).await
    }
    async fn get_many(&self, db: &DbName, ids: &[String]) -> Result<Vec<Option<Value>>> {
        self.inner.get_many(db, ids).await
    }
    async fn changes(&self, db: &DbName, query: &ChangesQuery) -> Result<ChangesPage> {
        self.inner.changes(db, query).await
    }
    async fn open_feed(&self, db: &DbName, query: &FeedQuery) -> Result<FeedStream> {
        self.live_feeds.fetch_add(1, Ordering::Relaxed);
        self.inner.open_feed(db, query).await
    }
    async fn db_updates(&self, since: &Seq) -> Result<Option<DbUpdateStream>> {
        if self.db_updates {
            self.inner.db_updates(since).await
        } else {
            Ok(None)
        }
    }
    async fn get_local(&self, db: &DbName, name: &str) -> Result<Option<Value>> {
        self.inner.get_local(db, name).await
    }
    async fn put_local(&self, db: &DbName, name: &str, body: Value) -> Result<()> {
        self.inner.put_local(db, name, body).await
    }
    async fn view(
        &self,
        db: &DbName,
        ddoc: &str,
        view: &str,
        query: &ViewQuery,
    ) -> Result<Vec<ViewRow>> {
        self.inner.view(db, ddoc, view, query).await
    }
}

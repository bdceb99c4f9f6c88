//! The fleet (every database of a kind from one `_db_updates` feed) against couch-peer and the
//! embedded store, and its stand-in poller against a store without `_db_updates`: databases load,
//! changes arrive, deletions are seen, a new database is read — and no live `_changes` feed is
//! ever opened.
//!
//! No assertion is about timing: each wait is for an event or a status with a generous bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use docstore::{
    AllDocsPage, AllDocsQuery, BulkItem, ChangesPage, ChangesQuery, DbInfo, DbName, DbUpdateStream,
    DocStore, FeedQuery, FeedStream, Fleet, FleetEvent, FleetMode, FleetOptions, Result, Rev, Seq,
    SharedStore, ViewQuery, ViewRow,
};
use futures::StreamExt;
use serde_json::{json, Value};

mod common;
use common::{couch, embedded};

const WAIT: Duration = Duration::from_secs(60);

/// A store that counts the live feeds asked of it and can hide its `_db_updates`.
struct Counting {
    inner: SharedStore,
    db_updates: bool,
    live_feeds: AtomicUsize,
}

#[async_trait]
impl DocStore for Counting {
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

async fn next(fleet: &mut Fleet) -> FleetEvent {
    tokio::time::timeout(WAIT, fleet.next()).await.expect("an event in time").expect("running")
}

fn ids(changes: &[docstore::Change]) -> Vec<&str> {
    changes.iter().map(|c| c.id.as_str()).collect()
}

/// Loads, changes, deletion and a new database, on `inner` with or without `_db_updates`.
async fn follows_every_db_of_a_kind(inner: SharedStore, db_updates: bool) {
    let counting = Arc::new(Counting { inner, db_updates, live_feeds: AtomicUsize::new(0) });
    let store: SharedStore = counting.clone();
    let prefix = testkit::unique_db("fleet");
    let db = |i: u32| DbName::new(format!("{prefix}/{i}")).expect("name");
    for i in 0..5 {
        store.create_db(&db(i)).await.expect("create");
        store.put(&db(i), json!({"_id": "r", "kind": "r", "n": i})).await.expect("put");
        store.put(&db(i), json!({"_id": "other", "kind": "x"})).await.expect("put");
    }
    let mut options = FleetOptions::new("test");
    options.selector = Some(json!({"kind": "r"}));
    options.concurrency = 2;
    options.poll_every = Duration::from_millis(100);
    let wanted = format!("{prefix}/");
    let mut fleet =
        docstore::fleet(store.clone(), move |d| d.as_str().starts_with(&wanted), options);

    let mut loaded = Vec::new();
    while loaded.len() < 5 {
        match next(&mut fleet).await {
            FleetEvent::Loaded { db, changes, .. } => {
                assert_eq!(ids(&changes), ["r"], "{db}: only the selected document");
                loaded.push(db);
            }
            other => panic!("a load first, not {other:?}"),
        }
    }
    loaded.sort();
    assert_eq!(loaded, (0..5).map(db).collect::<Vec<_>>());
    let mode = if db_updates { FleetMode::Feed } else { FleetMode::Poll };
    assert_eq!(fleet.status().mode, mode);

    store.put(&db(2), json!({"_id": "r2", "kind": "r"})).await.expect("put");
    match next(&mut fleet).await {
        FleetEvent::Changed { db: changed, changes, .. } => {
            assert_eq!(changed, db(2));
            assert_eq!(ids(&changes), ["r2"]);
        }
        other => panic!("a change, not {other:?}"),
    }

    store.delete_db(&db(3)).await.expect("delete");
    assert_eq!(next(&mut fleet).await, FleetEvent::Gone { db: db(3) });

    store.create_db(&db(9)).await.expect("create");
    store.put(&db(9), json!({"_id": "r9", "kind": "r"})).await.expect("put");
    loop {
        match next(&mut fleet).await {
            FleetEvent::Loaded { db: new, changes, .. } if new == db(9) => {
                if ids(&changes) == ["r9"] {
                    break;
                }
            }
            // Read before its document was written: the write comes as a change.
            FleetEvent::Changed { db: new, changes, .. } if new == db(9) => {
                assert_eq!(ids(&changes), ["r9"]);
                break;
            }
            other => panic!("the new database, not {other:?}"),
        }
    }
    assert_eq!(counting.live_feeds.load(Ordering::Relaxed), 0, "no live _changes feed");
    for i in [0, 1, 2, 4, 9] {
        store.delete_db(&db(i)).await.expect("delete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couch_peer_from_db_updates() {
    follows_every_db_of_a_kind(couch(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_from_db_updates() {
    follows_every_db_of_a_kind(embedded(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_db_updates_one_poller_stands_in() {
    follows_every_db_of_a_kind(couch(), false).await;
}

/// `read_now` reads a database at once, even one the fleet does not follow: its current
/// documents the selector passes (no deletions), at its `update_seq`; a missing one is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_now_reads_a_database_whole_at_once() {
    let store = embedded();
    let db = DbName::new("elsewhere").expect("name");
    store.create_db(&db).await.expect("create");
    store.put(&db, json!({"_id": "a", "type": "keep"})).await.expect("a");
    store.put(&db, json!({"_id": "b", "type": "other"})).await.expect("b");
    let rev = store.put(&db, json!({"_id": "c", "type": "keep"})).await.expect("c");
    store.delete(&db, "c", &rev).await.expect("delete c");
    store.put(&db, json!({"_id": "d", "type": "keep"})).await.expect("d");
    let mut options = FleetOptions::new("read-now");
    options.selector = Some(json!({"type": "keep"}));
    options.page = 1;
    let fleet =
        docstore::fleet(store.clone(), |db: &DbName| db.as_str() == "not-this-one", options);
    let (changes, last_seq) = fleet.read_now(&db).await.expect("read");
    assert_eq!(ids(&changes), ["a", "d"]);
    assert!(changes.iter().all(|c| !c.deleted && c.doc.is_some()));
    assert_eq!(last_seq, store.db_info(&db).await.expect("info").update_seq);
    let missing = DbName::new("missing").expect("name");
    let err = fleet.read_now(&missing).await.expect_err("missing");
    assert!(matches!(err, docstore::Error::DbNotFound { .. }), "{err}");
}

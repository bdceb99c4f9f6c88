//! The storage conformance suite: one set of test bodies, run against every [`DocStore`] backend.
//!
//! Each body is an `async fn(&dyn DocStore, &str)` taking the store and a namespace unique to the
//! test; it creates its own databases under that namespace (with `/` in the names, as Kazoo's) and
//! deletes them at the end. The `conformance!` macro instantiates every body once per backend:
//! `embedded` (a fresh [`EmbeddedStore`] in a temporary directory) and `couchdb` (a [`CouchStore`]
//! against the test server `testkit` starts, or `COUCHDB_URL`).
//!
//! Assertions stick to what CouchDB and the pinned pouchdb-server agree on (tools/couch-peer/README.md):
//! sequences are opaque (never parsed or ordered, only passed back as `since`), revs are `N-…`,
//! error checks go by kind and HTTP status.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use docstore::{
    deploy, AllDocsQuery, ChangesQuery, CouchConfig, CouchStore, DbName, DbUpdateKind, DesignKind,
    DocStore, EmbeddedStore, Error, FeedEvent, FeedQuery, FeedStream, Fields, Rev, Seq,
};
use futures::StreamExt;
use serde_json::{json, Value};

/// The generous upper bound for anything a test waits for (a feed event): never a sleep.
const WAIT: Duration = Duration::from_secs(30);

static NEXT_NS: AtomicU32 = AtomicU32::new(0);

/// A namespace for one test: unique per process and test, valid as a database name prefix.
fn namespace(test: &str) -> String {
    let n = NEXT_NS.fetch_add(1, Ordering::Relaxed);
    // The process id and start time keep runs apart on a persistent server (`COUCHDB_URL`).
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() % 0x1_0000_0000);
    format!("conformance-{:x}{run:x}-{n}-{}", std::process::id(), test.replace('_', "-"))
}

fn db(ns: &str, name: &str) -> DbName {
    DbName::new(format!("{ns}/{name}")).expect("test database names are valid")
}

async fn fresh_db(store: &dyn DocStore, ns: &str, name: &str) -> DbName {
    let db = db(ns, name);
    store.create_db(&db).await.expect("create the test database");
    db
}

async fn drop_db(store: &dyn DocStore, db: &DbName) {
    store.delete_db(db).await.expect("delete the test database");
}

fn rev_of(doc: &Value) -> Rev {
    Rev(doc["_rev"].as_str().expect("a stored document has a _rev").to_owned())
}

fn assert_rev_generation(rev: &Rev, generation: u64) {
    assert_eq!(rev.generation(), Some(generation), "rev {rev} should be generation {generation}");
    let hash = rev.as_str().split_once('-').map(|(_, h)| h).unwrap_or_default();
    assert!(!hash.is_empty(), "rev {rev} has no hash");
}

/// The next feed event that is not a heartbeat, within [`WAIT`].
async fn next_change(feed: &mut FeedStream) -> FeedEvent {
    loop {
        let event = tokio::time::timeout(WAIT, feed.next())
            .await
            .expect("a feed event within the wait bound")
            .expect("the feed stays open")
            .expect("the feed does not fail");
        if event != FeedEvent::Heartbeat {
            return event;
        }
    }
}

fn change_id(event: &FeedEvent) -> &str {
    match event {
        FeedEvent::Change(change) => &change.id,
        other => panic!("expected a change, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The test bodies.

async fn databases_lifecycle(store: &dyn DocStore, ns: &str) {
    let numbers = db(ns, "numbers/+1415");
    let plain = db(ns, "plain");
    assert!(!store.db_exists(&numbers).await.unwrap());

    store.create_db(&numbers).await.unwrap();
    store.create_db(&plain).await.unwrap();
    assert!(store.db_exists(&numbers).await.unwrap());

    let err = store.create_db(&numbers).await.unwrap_err();
    assert!(matches!(err, Error::DbExists { .. }), "{err}");
    assert_eq!(err.status(), 412);
    assert!(!store.ensure_db(&numbers).await.unwrap());

    // Names are kept verbatim, `/` and `+` included, and listed sorted.
    let listed: Vec<DbName> = store
        .list_dbs()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.as_str().starts_with(&format!("{ns}/")))
        .collect();
    assert_eq!(listed, vec![numbers.clone(), plain.clone()]);

    let info = store.db_info(&numbers).await.unwrap();
    assert_eq!(info.db, numbers);
    assert_eq!(info.doc_count, 0);

    drop_db(store, &numbers).await;
    assert!(!store.db_exists(&numbers).await.unwrap());
    let err = store.delete_db(&numbers).await.unwrap_err();
    assert!(matches!(err, Error::DbNotFound { .. }), "{err}");
    assert_eq!(err.status(), 404);
    let err = store.db_info(&numbers).await.unwrap_err();
    assert_eq!(err.status(), 404, "{err}");
    assert!(store.ensure_db(&numbers).await.unwrap());
    drop_db(store, &numbers).await;
    drop_db(store, &plain).await;
}

async fn documents_put_get_and_cas(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "docs").await;

    let rev1 =
        store.put(&db, json!({"_id": "+14155550100", "pvt_state": "available"})).await.unwrap();
    assert_rev_generation(&rev1, 1);
    let doc = store.get(&db, "+14155550100").await.unwrap().expect("the document is there");
    assert_eq!(doc["_id"], "+14155550100");
    assert_eq!(rev_of(&doc), rev1);
    assert_eq!(doc["pvt_state"], "available");

    let rev2 = store
        .put(&db, json!({"_id": "+14155550100", "_rev": rev1.as_str(), "pvt_state": "reserved"}))
        .await
        .unwrap();
    assert_rev_generation(&rev2, 2);
    assert_ne!(rev1, rev2);

    // A stale rev and a missing rev are both conflicts, and change nothing.
    let stale = store
        .put(&db, json!({"_id": "+14155550100", "_rev": rev1.as_str(), "pvt_state": "in_service"}))
        .await
        .unwrap_err();
    assert!(matches!(stale, Error::Conflict { .. }), "{stale}");
    assert_eq!(stale.status(), 409);
    let missing = store
        .put(&db, json!({"_id": "+14155550100", "pvt_state": "in_service"}))
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::Conflict { .. }), "{missing}");
    let doc = store.get(&db, "+14155550100").await.unwrap().unwrap();
    assert_eq!(rev_of(&doc), rev2);
    assert_eq!(doc["pvt_state"], "reserved");

    assert_eq!(store.get(&db, "nope").await.unwrap(), None);

    // Ids starting with `_` are refused, except design documents.
    let err = store.put(&db, json!({"_id": "_private", "a": 1})).await.unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
    let ddoc_rev = store.put(&db, json!({"_id": "_design/x", "language": "javascript"})).await;
    assert_rev_generation(&ddoc_rev.unwrap(), 1);

    // A malformed rev is a bad request, not a conflict.
    let err = store.put(&db, json!({"_id": "+14155550100", "_rev": "garbage"})).await.unwrap_err();
    assert_eq!(err.status(), 400, "{err}");

    let info = store.db_info(&db).await.unwrap();
    assert_eq!(info.doc_count, 2);
    drop_db(store, &db).await;
}

async fn generated_ids(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "generated").await;
    let items = store.bulk_docs(&db, vec![json!({"a": 1}), json!({"a": 2})]).await.unwrap();
    assert_eq!(items.len(), 2);
    for item in &items {
        assert!(
            item.id.len() >= 32 && item.id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
            "generated id {:?}",
            item.id
        );
        let rev = item.outcome.as_ref().expect("a new document is written");
        let doc = store.get(&db, &item.id).await.unwrap().unwrap();
        assert_eq!(&rev_of(&doc), rev);
    }
    assert_ne!(items[0].id, items[1].id);
    drop_db(store, &db).await;
}

async fn missing_database_errors(store: &dyn DocStore, ns: &str) {
    let db = db(ns, "never-created");
    let err = store.get(&db, "x").await.unwrap_err();
    assert_eq!(err.status(), 404, "{err}");
    let err = store.put(&db, json!({"_id": "x"})).await.unwrap_err();
    assert_eq!(err.status(), 404, "{err}");
    let err = store.all_docs(&db, &AllDocsQuery::default()).await.unwrap_err();
    assert_eq!(err.status(), 404, "{err}");
}

async fn delete_tombstone_and_recreate(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "tombstones").await;
    let rev1 = store.put(&db, json!({"_id": "res", "name": "carrier", "old": true})).await.unwrap();
    let rev2 =
        store.put(&db, json!({"_id": "res", "_rev": rev1.as_str(), "name": "carrier b"})).await;
    let rev2 = rev2.unwrap();

    let stale = store.delete(&db, "res", &rev1).await.unwrap_err();
    assert!(matches!(stale, Error::Conflict { .. }), "{stale}");

    let rev3 = store.delete(&db, "res", &rev2).await.unwrap();
    assert_rev_generation(&rev3, 3);
    assert_eq!(store.get(&db, "res").await.unwrap(), None);
    assert_eq!(store.db_info(&db).await.unwrap().doc_count, 0);

    let changes = store.changes(&db, &ChangesQuery::since(Seq::zero())).await.unwrap();
    assert_eq!(changes.results.len(), 1);
    assert_eq!(changes.results[0].id, "res");
    assert!(changes.results[0].deleted);
    assert_eq!(changes.results[0].rev, rev3);

    // Re-created without a rev: the generation continues after the tombstone.
    let rev4 = store.put(&db, json!({"_id": "res", "name": "again"})).await.unwrap();
    assert_rev_generation(&rev4, 4);
    let doc = store.get(&db, "res").await.unwrap().unwrap();
    assert_eq!(doc["name"], "again");
    assert!(doc.get("old").is_none());
    let changes = store.changes(&db, &ChangesQuery::since(Seq::zero())).await.unwrap();
    assert_eq!(changes.results.len(), 1);
    assert!(!changes.results[0].deleted);
    drop_db(store, &db).await;
}

async fn bulk_docs_mixed_results(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "bulk").await;
    let a = store.put(&db, json!({"_id": "a", "v": 1})).await.unwrap();
    let b = store.put(&db, json!({"_id": "b", "v": 1})).await.unwrap();
    let gone = store.put(&db, json!({"_id": "gone", "v": 1})).await.unwrap();
    let b2 = store.put(&db, json!({"_id": "b", "_rev": b.as_str(), "v": 2})).await.unwrap();

    let items = store
        .bulk_docs(
            &db,
            vec![
                json!({"_id": "a", "_rev": a.as_str(), "v": 2}),
                json!({"_id": "b", "_rev": b.as_str(), "v": 3}),
                json!({"_id": "c", "v": 1}),
                json!({"_id": "gone", "_rev": gone.as_str(), "_deleted": true}),
                json!({"_id": "b", "v": 4}),
            ],
        )
        .await
        .unwrap();
    let ids: Vec<&str> = items.iter().map(|item| item.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "gone", "b"]);
    assert_rev_generation(items[0].outcome.as_ref().unwrap(), 2);
    assert!(matches!(items[1].outcome, Err(Error::Conflict { .. })), "{:?}", items[1].outcome);
    assert_rev_generation(items[2].outcome.as_ref().unwrap(), 1);
    assert_rev_generation(items[3].outcome.as_ref().unwrap(), 2);
    assert!(matches!(items[4].outcome, Err(Error::Conflict { .. })), "{:?}", items[4].outcome);

    assert_eq!(store.get(&db, "a").await.unwrap().unwrap()["v"], 2);
    let b_now = store.get(&db, "b").await.unwrap().unwrap();
    assert_eq!(rev_of(&b_now), b2);
    assert_eq!(b_now["v"], 2);
    assert_eq!(store.get(&db, "gone").await.unwrap(), None);
    drop_db(store, &db).await;
}

/// Ids chosen so raw (code point) order differs from a case-insensitive one: `B` < `_design/…` <
/// `a`.
const ALL_DOCS_IDS: [&str; 6] = ["a", "b", "c", "d", "e", "B"];

async fn all_docs_ranges_paging_and_docs(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "all-docs").await;
    let mut docs: Vec<Value> = ALL_DOCS_IDS.iter().map(|id| json!({"_id": id, "n": id})).collect();
    docs.push(json!({"_id": "_design/resources", "language": "javascript"}));
    docs.push(json!({"_id": "deleted", "n": 0}));
    let items = store.bulk_docs(&db, docs).await.unwrap();
    let deleted_rev = items.last().unwrap().outcome.as_ref().unwrap().clone();
    store.delete(&db, "deleted", &deleted_rev).await.unwrap();
    store.put_local(&db, "checkpoint", json!({"seq": 1})).await.unwrap();

    let ids = |page: &docstore::AllDocsPage| -> Vec<String> {
        page.rows.iter().map(|r| r.id.clone()).collect()
    };
    let all = store.all_docs(&db, &AllDocsQuery::default()).await.unwrap();
    assert_eq!(ids(&all), ["B", "_design/resources", "a", "b", "c", "d", "e"]);
    assert_eq!(all.total_rows, 7);
    assert!(all.rows.iter().all(|r| r.doc.is_none()));

    let range = AllDocsQuery {
        start_key: Some("b".into()),
        end_key: Some("d".into()),
        ..AllDocsQuery::default()
    };
    assert_eq!(ids(&store.all_docs(&db, &range).await.unwrap()), ["b", "c", "d"]);
    let exclusive = AllDocsQuery { exclusive_end: true, ..range.clone() };
    assert_eq!(ids(&store.all_docs(&db, &exclusive).await.unwrap()), ["b", "c"]);

    let page1 = AllDocsQuery { start_key: Some("a".into()), limit: Some(2), ..Default::default() };
    assert_eq!(ids(&store.all_docs(&db, &page1).await.unwrap()), ["a", "b"]);
    let page2 = AllDocsQuery { skip: 1, ..page1.clone() };
    let page2 = AllDocsQuery { start_key: Some("b".into()), ..page2 };
    assert_eq!(ids(&store.all_docs(&db, &page2).await.unwrap()), ["c", "d"]);

    let descending = AllDocsQuery {
        descending: true,
        start_key: Some("d".into()),
        end_key: Some("b".into()),
        ..AllDocsQuery::default()
    };
    assert_eq!(ids(&store.all_docs(&db, &descending).await.unwrap()), ["d", "c", "b"]);
    let descending_all = AllDocsQuery { descending: true, limit: Some(3), ..Default::default() };
    assert_eq!(ids(&store.all_docs(&db, &descending_all).await.unwrap()), ["e", "d", "c"]);

    let with_docs = AllDocsQuery {
        include_docs: true,
        start_key: Some("c".into()),
        end_key: Some("c".into()),
        ..AllDocsQuery::default()
    };
    let page = store.all_docs(&db, &with_docs).await.unwrap();
    assert_eq!(page.rows.len(), 1);
    let doc = page.rows[0].doc.as_ref().expect("include_docs gives the document");
    assert_eq!(doc["_id"], "c");
    assert_eq!(doc["n"], "c");
    assert_eq!(rev_of(doc), page.rows[0].rev);
    drop_db(store, &db).await;
}

async fn get_many_with_missing(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "get-many").await;
    store.put(&db, json!({"_id": "one", "n": 1})).await.unwrap();
    let two = store.put(&db, json!({"_id": "two", "n": 2})).await.unwrap();
    store.put(&db, json!({"_id": "three", "n": 3})).await.unwrap();
    store.delete(&db, "two", &two).await.unwrap();

    let ids: Vec<String> =
        ["three", "missing", "two", "one"].iter().map(|s| s.to_string()).collect();
    let docs = store.get_many(&db, &ids).await.unwrap();
    assert_eq!(docs.len(), 4);
    assert_eq!(docs[0].as_ref().unwrap()["n"], 3);
    assert_eq!(docs[1], None);
    assert_eq!(docs[2], None);
    assert_eq!(docs[3].as_ref().unwrap()["_id"], "one");
    drop_db(store, &db).await;
}

async fn changes_order_dedup_and_resume(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "changes").await;
    let a1 = store.put(&db, json!({"_id": "a", "v": 1})).await.unwrap();
    let b1 = store.put(&db, json!({"_id": "b", "v": 1})).await.unwrap();
    let a2 = store.put(&db, json!({"_id": "a", "_rev": a1.as_str(), "v": 2})).await.unwrap();
    let c1 = store.put(&db, json!({"_id": "c", "v": 1})).await.unwrap();
    let b2 = store.delete(&db, "b", &b1).await.unwrap();

    // One row per document, at its latest change, in feed order.
    let page = store.changes(&db, &ChangesQuery::since(Seq::zero())).await.unwrap();
    let rows: Vec<(&str, &Rev, bool)> =
        page.results.iter().map(|c| (c.id.as_str(), &c.rev, c.deleted)).collect();
    assert_eq!(rows, [("a", &a2, false), ("c", &c1, false), ("b", &b2, true)]);
    assert_eq!(page.results[0].doc.as_ref().unwrap()["v"], 2);

    // Resuming from a row's seq gives what came after it.
    let after_a = ChangesQuery::since(page.results[0].seq.clone());
    let ids: Vec<String> =
        store.changes(&db, &after_a).await.unwrap().results.into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["c", "b"]);

    // Resuming from last_seq gives nothing, then exactly the next write.
    let caught_up = ChangesQuery::since(page.last_seq.clone());
    assert!(store.changes(&db, &caught_up).await.unwrap().results.is_empty());
    store.put(&db, json!({"_id": "d"})).await.unwrap();
    let next = store.changes(&db, &caught_up).await.unwrap();
    assert_eq!(next.results.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["d"]);

    // Paging with limit walks the same rows.
    let mut since = Seq::zero();
    let mut paged = Vec::new();
    for _ in 0..10 {
        let query =
            ChangesQuery { limit: Some(1), include_docs: false, ..ChangesQuery::since(since) };
        let page = store.changes(&db, &query).await.unwrap();
        assert!(page.results.len() <= 1);
        since = page.last_seq;
        match page.results.into_iter().next() {
            Some(change) => {
                assert!(change.doc.is_none());
                paged.push(change.id);
            }
            None => break,
        }
    }
    assert_eq!(paged, ["a", "c", "b", "d"]);
    drop_db(store, &db).await;
}

async fn changes_selector_filter(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "selector").await;
    store
        .bulk_docs(
            &db,
            vec![
                json!({"_id": "r1", "pvt_type": "resource", "weight_cost": 10}),
                json!({"_id": "n1", "pvt_type": "number"}),
                json!({"_id": "r2", "pvt_type": "resource", "weight_cost": 90}),
            ],
        )
        .await
        .unwrap();
    let query = ChangesQuery {
        selector: Some(json!({"pvt_type": "resource", "weight_cost": {"$lt": 50}})),
        ..ChangesQuery::since(Seq::zero())
    };
    let page = store.changes(&db, &query).await.unwrap();
    let ids: Vec<&str> = page.results.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["r1"]);

    // Tombstones carry `_deleted`, so a selector can let deletions through (the follower does).
    let r1 = store.get(&db, "r1").await.unwrap().unwrap();
    store.delete(&db, "r1", &rev_of(&r1)).await.unwrap();
    let with_deletions = ChangesQuery {
        selector: Some(json!({"$or": [{"weight_cost": {"$gt": 50}}, {"_deleted": true}]})),
        ..ChangesQuery::since(Seq::zero())
    };
    let page = store.changes(&db, &with_deletions).await.unwrap();
    let rows: Vec<(&str, bool)> = page.results.iter().map(|c| (c.id.as_str(), c.deleted)).collect();
    assert_eq!(rows, [("r2", false), ("r1", true)]);

    // The live feed applies the selector to new writes too.
    let feed_query = FeedQuery {
        since: page.last_seq.clone(),
        include_docs: true,
        selector: Some(json!({"pvt_type": "resource"})),
        heartbeat: Duration::from_secs(5),
        fields: None,
    };
    let mut feed = store.open_feed(&db, &feed_query).await.unwrap();
    store.put(&db, json!({"_id": "n2", "pvt_type": "number"})).await.unwrap();
    store.put(&db, json!({"_id": "r3", "pvt_type": "resource"})).await.unwrap();
    let event = next_change(&mut feed).await;
    assert_eq!(change_id(&event), "r3");
    drop(feed);
    drop_db(store, &db).await;
}

/// A projection (`fields`) keeps the named fields plus `_id`, `_rev` and `_deleted`, in pages,
/// paged scans and the live feed; a selector still sees the whole document.
async fn changes_fields_projection(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "fields").await;
    let big = json!({"_id": "+15550001", "pvt_state": "in_service", "pvt_type": "number",
        "pvt_features": {"cnam": {"display_name": "A \"quoted\" name"}}, "notes": ["x", {"y": 1}],
        "pvt_carrier_data": {"deep": {"deeper": [1, 2, 3]}}});
    store
        .bulk_docs(&db, vec![big.clone(), json!({"_id": "gone", "pvt_state": "x"})])
        .await
        .unwrap();
    let gone = store.get(&db, "gone").await.unwrap().unwrap();
    store.delete(&db, "gone", &rev_of(&gone)).await.unwrap();
    let fields = Fields::new(["pvt_state", "pvt_features", "missing"]);
    let query = ChangesQuery { fields: Some(fields.clone()), ..ChangesQuery::since(Seq::zero()) };
    let page = store.changes(&db, &query).await.unwrap();
    let docs: Vec<&Value> = page.results.iter().filter_map(|c| c.doc.as_ref()).collect();
    assert_eq!(docs.len(), 2);
    let kept = docs[0].as_object().unwrap();
    let mut keys: Vec<&str> = kept.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["_id", "_rev", "pvt_features", "pvt_state"]);
    assert_eq!(kept["pvt_features"], big["pvt_features"]);
    assert_eq!(docs[1]["_deleted"], json!(true));
    assert_eq!(docs[1]["_id"], json!("gone"));

    // One row per page: the projection holds across pages.
    let one = ChangesQuery { limit: Some(1), ..query.clone() };
    let first = store.changes(&db, &one).await.unwrap();
    assert_eq!(first.results.len(), 1);
    assert!(first.results[0].doc.as_ref().unwrap().get("notes").is_none());

    // The selector matches on a field the projection drops.
    let selected = ChangesQuery { selector: Some(json!({"pvt_type": "number"})), ..query.clone() };
    let page = store.changes(&db, &selected).await.unwrap();
    assert_eq!(page.results.len(), 1);
    assert!(page.results[0].doc.as_ref().unwrap().get("pvt_type").is_none());

    let feed_query = FeedQuery {
        since: page.last_seq.clone(),
        include_docs: true,
        selector: None,
        heartbeat: Duration::from_secs(5),
        fields: Some(fields),
    };
    let mut feed = store.open_feed(&db, &feed_query).await.unwrap();
    store.put(&db, json!({"_id": "live", "pvt_state": "reserved", "other": 1})).await.unwrap();
    let event = next_change(&mut feed).await;
    let FeedEvent::Change(change) = event else { panic!("expected a change, got {event:?}") };
    let doc = change.doc.expect("a document");
    assert_eq!(doc["pvt_state"], json!("reserved"));
    assert!(doc.get("other").is_none());
    drop(feed);
    drop_db(store, &db).await;
}

async fn live_feed_backlog_then_writes(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "live").await;
    store.put(&db, json!({"_id": "before-1"})).await.unwrap();
    store.put(&db, json!({"_id": "before-2"})).await.unwrap();

    let query = FeedQuery {
        since: Seq::zero(),
        include_docs: true,
        selector: None,
        heartbeat: Duration::from_millis(200),
        fields: None,
    };
    let mut feed = store.open_feed(&db, &query).await.unwrap();
    assert_eq!(change_id(&next_change(&mut feed).await), "before-1");
    assert_eq!(change_id(&next_change(&mut feed).await), "before-2");

    store.put(&db, json!({"_id": "live", "v": 1})).await.unwrap();
    let event = next_change(&mut feed).await;
    let FeedEvent::Change(change) = event else { panic!("expected a change, got {event:?}") };
    assert_eq!(change.id, "live");
    assert_eq!(change.doc.as_ref().unwrap()["v"], 1);

    // With nothing happening, the connection shows it is alive.
    let heartbeat = async {
        match feed.next().await {
            Some(Ok(FeedEvent::Heartbeat)) => {}
            Some(Ok(other)) => panic!("unexpected event while idle: {other:?}"),
            Some(Err(e)) => panic!("feed failed: {e}"),
            None => panic!("feed ended"),
        }
    };
    tokio::time::timeout(WAIT, heartbeat).await.expect("a heartbeat within the wait bound");
    drop(feed);
    drop_db(store, &db).await;
}

async fn live_feed_since_now(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "live-now").await;
    store.put(&db, json!({"_id": "old"})).await.unwrap();
    let query = FeedQuery {
        since: Seq::now(),
        include_docs: false,
        selector: None,
        heartbeat: Duration::from_secs(5),
        fields: None,
    };
    let mut feed = store.open_feed(&db, &query).await.unwrap();
    store.put(&db, json!({"_id": "new"})).await.unwrap();
    assert_eq!(change_id(&next_change(&mut feed).await), "new");
    drop(feed);
    drop_db(store, &db).await;
}

async fn local_docs_stay_out_of_listings(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "local").await;
    assert_eq!(store.get_local(&db, "follower").await.unwrap(), None);
    store.put_local(&db, "follower", json!({"seq": "1", "extra": true})).await.unwrap();
    store.put_local(&db, "follower", json!({"seq": "2"})).await.unwrap();
    let local = store.get_local(&db, "follower").await.unwrap().expect("stored");
    assert_eq!(local["seq"], "2");
    assert!(local.get("extra").is_none(), "put_local replaces: {local}");

    store.put(&db, json!({"_id": "normal"})).await.unwrap();
    let all = store.all_docs(&db, &AllDocsQuery::default()).await.unwrap();
    assert_eq!(all.rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["normal"]);
    let changes = store.changes(&db, &ChangesQuery::since(Seq::zero())).await.unwrap();
    assert_eq!(changes.results.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["normal"]);
    assert_eq!(store.db_info(&db).await.unwrap().doc_count, 1);
    drop_db(store, &db).await;
}

async fn concurrent_cas_has_one_winner(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "cas").await;
    let rev1 = store.put(&db, json!({"_id": "+14155550100", "pvt_state": "available"})).await;
    let rev1 = rev1.unwrap();
    let writers = (0..50).map(|n| {
        let doc = json!({"_id": "+14155550100", "_rev": rev1.as_str(), "writer": n});
        store.put(&db, doc)
    });
    let results = futures::future::join_all(writers).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "exactly one of 50 writers of the same rev wins");
    for result in &results {
        if let Err(e) = result {
            assert!(matches!(e, Error::Conflict { .. }), "losers get conflicts, not {e}");
        }
    }
    let doc = store.get(&db, "+14155550100").await.unwrap().unwrap();
    assert_rev_generation(&rev_of(&doc), 2);
    let winner = results.iter().position(|r| r.is_ok()).unwrap();
    assert_eq!(doc["writer"], winner);
    drop_db(store, &db).await;
}

async fn design_docs_deploy_and_list(store: &dyn DocStore, ns: &str) {
    let db = fresh_db(store, ns, "offnet").await;
    store.put(&db, json!({"_id": "carrier", "pvt_type": "resource"})).await.unwrap();
    let first = deploy(store, &db, DesignKind::Offnet).await.unwrap();
    assert_eq!(first.written, ["_design/resources", "_design/switchboard_resources"]);
    let second = deploy(store, &db, DesignKind::Offnet).await.unwrap();
    assert!(second.written.is_empty(), "{second:?}");
    assert_eq!(second.unchanged.len(), 2);

    let all = store.all_docs(&db, &AllDocsQuery::default()).await.unwrap();
    let ids: Vec<&str> = all.rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["_design/resources", "_design/switchboard_resources", "carrier"]);
    let ddoc = store.get(&db, "_design/resources").await.unwrap().unwrap();
    assert!(ddoc["views"]["listing_by_id"]["map"].as_str().unwrap().contains("emit(doc._id"));
    drop_db(store, &db).await;
}

/// The next database event of the namespace `ns` (other tests share the server).
async fn next_update(updates: &mut docstore::DbUpdateStream, ns: &str) -> docstore::DbUpdate {
    loop {
        let update = tokio::time::timeout(WAIT, updates.next())
            .await
            .expect("a database event in time")
            .expect("the feed is open")
            .expect("a well-formed event");
        if update.db.as_str().starts_with(ns) {
            return update;
        }
    }
}

/// `_db_updates`: created, updated and deleted as they happen, each with an opaque seq; resuming
/// after one replays each database once with its latest event.
async fn db_updates_live_and_resumed(store: &dyn DocStore, ns: &str) {
    let mut updates = store.db_updates(&Seq::now()).await.unwrap().expect("a _db_updates feed");
    let a = fresh_db(store, ns, "a").await;
    store.put(&a, json!({"_id": "x"})).await.unwrap();
    let b = fresh_db(store, ns, "b").await;
    let created_a = next_update(&mut updates, ns).await;
    assert_eq!((&created_a.db, created_a.kind), (&a, DbUpdateKind::Created));
    let mut kinds = Vec::new();
    loop {
        let update = next_update(&mut updates, ns).await;
        assert!(update.seq.is_some(), "{update:?} has a seq");
        kinds.push((update.db.clone(), update.kind));
        if update.db == b {
            break;
        }
    }
    assert_eq!(kinds.first(), Some(&(a.clone(), DbUpdateKind::Updated)));
    assert_eq!(kinds.last(), Some(&(b.clone(), DbUpdateKind::Created)));

    let since = created_a.seq.expect("a seq");
    let mut resumed = store.db_updates(&since).await.unwrap().expect("a _db_updates feed");
    let mut replayed = Vec::new();
    while !replayed.iter().any(|(db, _)| db == &b) {
        let update = next_update(&mut resumed, ns).await;
        replayed.push((update.db, update.kind));
    }
    assert!(replayed.contains(&(a.clone(), DbUpdateKind::Updated)), "{replayed:?}");
    assert!(!replayed.contains(&(a.clone(), DbUpdateKind::Created)), "{replayed:?}");

    drop_db(store, &a).await;
    let gone = next_update(&mut updates, ns).await;
    assert_eq!((gone.db, gone.kind), (a, DbUpdateKind::Deleted));
    drop_db(store, &b).await;
}

/// Instantiates every test body for one backend: `$fixture` is an async fn returning a `Fixture`.
macro_rules! conformance {
    ($backend:ident, $fixture:path) => {
        mod $backend {
            conformance!(@cases $fixture;
                databases_lifecycle,
                documents_put_get_and_cas,
                generated_ids,
                missing_database_errors,
                delete_tombstone_and_recreate,
                bulk_docs_mixed_results,
                all_docs_ranges_paging_and_docs,
                get_many_with_missing,
                changes_order_dedup_and_resume,
                changes_selector_filter,
                changes_fields_projection,
                live_feed_backlog_then_writes,
                live_feed_since_now,
                local_docs_stay_out_of_listings,
                concurrent_cas_has_one_winner,
                design_docs_deploy_and_list,
                db_updates_live_and_resumed,
            );
        }
    };
    (@cases $fixture:path; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let fixture = $fixture().await;
                super::$test(&*fixture.store, &super::namespace(stringify!($test))).await;
            }
        )*
    };
}

/// A backend under test, with whatever must live as long as it.
struct Fixture {
    store: Box<dyn DocStore>,
    _dir: Option<tempfile::TempDir>,
}

async fn embedded_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = EmbeddedStore::open(dir.path()).expect("open the embedded store");
    Fixture { store: Box::new(store), _dir: Some(dir) }
}

conformance!(embedded, crate::embedded_fixture);

async fn couchdb_fixture() -> Fixture {
    let server = testkit::CouchServer::shared();
    let config = CouchConfig::from_url(&server.url_with_credentials()).expect("the server's url");
    Fixture { store: Box::new(CouchStore::new(config).expect("a CouchDB client")), _dir: None }
}

conformance!(couchdb, crate::couchdb_fixture);

/// What only a server with a JavaScript engine does: our `validate_doc_update` functions refuse
/// malformed documents with a message the operator sees.
mod couchdb_only {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn validate_doc_update_refuses_malformed_resources_and_numbers() {
        let fixture = couchdb_fixture().await;
        let store = &*fixture.store;
        let ns = namespace("validate");

        let offnet = fresh_db(store, &ns, "offnet").await;
        deploy(store, &offnet, DesignKind::Offnet).await.unwrap();
        let good = json!({
            "_id": "carrier", "pvt_type": "resource", "weight_cost": "50",
            "rules": ["^\\+1(\\d{10})$"], "gateways": [{"server": "10.0.0.1"}],
        });
        store.put(&offnet, good).await.unwrap();
        for (doc, message) in [
            (json!({"_id": "r1", "pvt_type": "resource", "rules": "^1"}), "rules must be an array"),
            (json!({"_id": "r2", "pvt_type": "resource", "weight_cost": "x"}), "weight_cost"),
            (json!({"_id": "r3", "pvt_type": "resource", "gateways": [{}]}), "gateways[0].server"),
        ] {
            let err = store.put(&offnet, doc).await.unwrap_err();
            assert!(matches!(err, Error::Forbidden { .. }), "{err}");
            assert!(err.to_string().contains(message), "{err} should say {message}");
        }

        let numbers = fresh_db(store, &ns, "numbers/+1415").await;
        deploy(store, &numbers, DesignKind::Numbers).await.unwrap();
        store
            .put(&numbers, json!({"_id": "+14155550100", "pvt_state": "available"}))
            .await
            .unwrap();
        for (doc, message) in [
            (json!({"_id": "4155550100x", "pvt_state": "available"}), "_id must be"),
            (json!({"_id": "+14155550101", "pvt_state": "sold"}), "pvt_state must be one of"),
        ] {
            let err = store.put(&numbers, doc).await.unwrap_err();
            assert!(matches!(err, Error::Forbidden { .. }), "{err}");
            assert!(err.to_string().contains(message), "{err} should say {message}");
        }
        drop_db(store, &offnet).await;
        drop_db(store, &numbers).await;
    }
}

/// What only the embedded backend has.
mod embedded_only {
    use super::*;

    #[tokio::test]
    async fn db_updates_report_created_updated_deleted() {
        let store = EmbeddedStore::in_memory().unwrap();
        let mut updates =
            store.db_updates(&Seq::now()).await.unwrap().expect("the embedded store has a bus");
        let db = DbName::new("numbers/+1415").unwrap();
        store.create_db(&db).await.unwrap();
        store.put(&db, json!({"_id": "+14155550100"})).await.unwrap();
        store.delete_db(&db).await.unwrap();
        let mut kinds = Vec::new();
        for _ in 0..3 {
            let update =
                tokio::time::timeout(WAIT, updates.next()).await.unwrap().unwrap().unwrap();
            assert_eq!(update.db, db);
            kinds.push(update.kind);
        }
        assert_eq!(kinds, [DbUpdateKind::Created, DbUpdateKind::Updated, DbUpdateKind::Deleted]);
    }

    #[tokio::test]
    async fn a_selector_must_be_an_object() {
        let store = EmbeddedStore::in_memory().unwrap();
        let db = DbName::new("offnet").unwrap();
        store.create_db(&db).await.unwrap();
        let query = ChangesQuery {
            selector: Some(json!(["pvt_type"])),
            ..ChangesQuery::since(Seq::zero())
        };
        assert_eq!(store.changes(&db, &query).await.unwrap_err().status(), 400);
    }

    /// CouchDB's generated ids are 32 lowercase hex characters; ours too.
    #[tokio::test]
    async fn generated_ids_are_32_hex() {
        let store = EmbeddedStore::in_memory().unwrap();
        let db = DbName::new("offnet").unwrap();
        store.create_db(&db).await.unwrap();
        let items = store.bulk_docs(&db, vec![json!({"pvt_type": "resource"})]).await.unwrap();
        let id = &items[0].id;
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{id}");
    }

    #[tokio::test]
    async fn views_are_unsupported() {
        let store = EmbeddedStore::in_memory().unwrap();
        let db = DbName::new("offnet").unwrap();
        store.create_db(&db).await.unwrap();
        let err = store
            .view(&db, "resources", "listing_by_id", &docstore::ViewQuery::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        assert_eq!(err.status(), 501);
    }

    #[tokio::test]
    async fn live_feed_ends_when_the_database_is_deleted() {
        let store = EmbeddedStore::in_memory().unwrap();
        let db = DbName::new("offnet").unwrap();
        store.create_db(&db).await.unwrap();
        let query = FeedQuery {
            since: Seq::zero(),
            include_docs: false,
            selector: None,
            heartbeat: Duration::from_secs(5),
            fields: None,
        };
        let mut feed = store.open_feed(&db, &query).await.unwrap();
        store.delete_db(&db).await.unwrap();
        assert!(matches!(next_change(&mut feed).await, FeedEvent::End { .. }));
    }

    /// A `since` from a deleted-and-recreated database replays the new one from the start.
    #[tokio::test]
    async fn since_from_an_older_incarnation_replays() {
        let store = EmbeddedStore::in_memory().unwrap();
        let db = DbName::new("offnet").unwrap();
        store.create_db(&db).await.unwrap();
        store.put(&db, json!({"_id": "a"})).await.unwrap();
        store.put(&db, json!({"_id": "b"})).await.unwrap();
        let old_seq = store.db_info(&db).await.unwrap().update_seq;
        store.delete_db(&db).await.unwrap();
        store.create_db(&db).await.unwrap();
        store.put(&db, json!({"_id": "c"})).await.unwrap();
        let page = store.changes(&db, &ChangesQuery::since(old_seq)).await.unwrap();
        assert_eq!(page.results.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c"]);
        let err = store.changes(&db, &ChangesQuery::since(Seq::from_json(json!("x-1")))).await;
        assert_eq!(err.unwrap_err().status(), 400);
    }

    /// Two stores on one directory (as the daemon and a CLI command are): compare-and-swap holds
    /// across them, and a live feed of one sees the other's writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_stores_on_one_directory() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = EmbeddedStore::open(dir.path()).unwrap();
        let cli = EmbeddedStore::open(dir.path()).unwrap();
        let db = DbName::new("offnet").unwrap();
        daemon.create_db(&db).await.unwrap();
        let rev1 = daemon.put(&db, json!({"_id": "carrier", "v": 0})).await.unwrap();

        let query = FeedQuery {
            since: Seq::now(),
            include_docs: false,
            selector: None,
            heartbeat: Duration::from_secs(5),
            fields: None,
        };
        let mut feed = daemon.open_feed(&db, &query).await.unwrap();

        let writes = (0..20).map(|n| {
            let store = if n % 2 == 0 { &daemon } else { &cli };
            store.put(&db, json!({"_id": "carrier", "_rev": rev1.as_str(), "v": n}))
        });
        let results = futures::future::join_all(writes).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);

        cli.put(&db, json!({"_id": "from-cli"})).await.unwrap();
        let mut seen = Vec::new();
        while !seen.iter().any(|id| id == "from-cli") {
            seen.push(change_id(&next_change(&mut feed).await).to_owned());
        }

        // The daemon's database event stream hears about the CLI's new database too.
        let mut updates =
            daemon.db_updates(&Seq::now()).await.unwrap().expect("the embedded store has a bus");
        let numbers = DbName::new("numbers/+1415").unwrap();
        cli.create_db(&numbers).await.unwrap();
        loop {
            let update =
                tokio::time::timeout(WAIT, updates.next()).await.unwrap().unwrap().unwrap();
            if update.db == numbers {
                assert_eq!(update.kind, DbUpdateKind::Created);
                break;
            }
        }
    }

    /// Data survives closing and reopening the store directory.
    #[tokio::test]
    async fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let db = DbName::new("account/ef/01/23456789abcdef0123456789abcd").unwrap();
        let rev = {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store.create_db(&db).await.unwrap();
            store.put_local(&db, "follower", json!({"seq": "7"})).await.unwrap();
            store.put(&db, json!({"_id": "res", "name": "x"})).await.unwrap()
        };
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.list_dbs().await.unwrap(), std::slice::from_ref(&db));
        assert_eq!(rev_of(&store.get(&db, "res").await.unwrap().unwrap()), rev);
        assert_eq!(store.get_local(&db, "follower").await.unwrap().unwrap()["seq"], "7");
        assert_eq!(store.path(), Some(dir.path().join(docstore::EMBEDDED_FILE_NAME).as_path()));
    }
}

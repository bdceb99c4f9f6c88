//! The fleet (every database of a kind from one `_db_updates` feed) against couch-peer and the
//! embedded store, and its stand-in poller against a store without `_db_updates`: databases load,
//! changes arrive, deletions are seen, a new database is read — and no live `_changes` feed is
//! ever opened.
//!
//! No assertion is about timing: each wait is for an event or a status with a generous bound.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use docstore::{DbName, Fleet, FleetEvent, FleetMode, FleetOptions, SharedStore};
use futures::StreamExt;
use serde_json::json;

mod common;
use common::{couch, embedded, Spy};

const WAIT: Duration = Duration::from_secs(60);

async fn next(fleet: &mut Fleet) -> FleetEvent {
    tokio::time::timeout(WAIT, fleet.next()).await.expect("an event in time").expect("running")
}

fn ids(changes: &[docstore::Change]) -> Vec<&str> {
    changes.iter().map(|c| c.id.as_str()).collect()
}

/// Loads, changes, deletion and a new database, on `inner` with or without `_db_updates`.
async fn follows_every_db_of_a_kind(inner: SharedStore, db_updates: bool) {
    let counting = Arc::new(Spy::new(inner, db_updates));
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

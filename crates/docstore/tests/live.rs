//! Live documents ([`LiveDocs`], [`Derived`]) and leases ([`Lease`]) against the real
//! CouchDB-compatible server (`testkit`'s couch-peer, or `COUCHDB_URL`) and the embedded store.
//!
//! No assertion is about timing: each test waits for a published generation with a generous
//! upper bound ([`WAIT`]) and then asserts on what it got.

use std::sync::Arc;
use std::time::Duration;

use docstore::{DbName, Derived, FollowOptions, Lease, LiveDocs, LiveSnapshot, SharedStore};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The upper bound of every wait: generous, because the machine is shared.
mod common;
use common::{couch, embedded, unique_db};

const WAIT: Duration = Duration::from_secs(60);

fn fast() -> FollowOptions {
    let mut opts = FollowOptions::new("live-test");
    opts.heartbeat = Duration::from_millis(200);
    opts.backoff_base = Duration::from_millis(20);
    opts.backoff_cap = Duration::from_millis(500);
    opts.verify_every = Duration::from_millis(300);
    opts
}

/// Waits until the published snapshot satisfies `ok`; returns it.
async fn wait_for(live: &LiveDocs, ok: impl Fn(&LiveSnapshot) -> bool) -> Arc<LiveSnapshot> {
    let mut generations = live.subscribe();
    let wait = async {
        loop {
            let snapshot = live.current();
            if ok(&snapshot) {
                return snapshot;
            }
            generations.changed().await.expect("the follower runs");
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("the condition was published")
}

fn names(snapshot: &LiveSnapshot) -> Vec<String> {
    snapshot.docs().map(|d| d["name"].as_str().unwrap_or("").to_owned()).collect()
}

async fn follows_a_database(store: SharedStore) {
    let db = unique_db("live");
    store.ensure_db(&db).await.unwrap();
    for (id, name) in [("a", "one"), ("b", "two")] {
        store.put(&db, json!({"_id": id, "name": name})).await.unwrap();
    }
    store.put(&db, json!({"_id": "_design/x", "views": {}})).await.unwrap();
    let shutdown = CancellationToken::new();
    let live = LiveDocs::spawn(store.clone(), db.clone(), &fast(), shutdown.clone());
    // The first publication is the whole database, never a part of it; design docs left out.
    let first = wait_for(&live, LiveSnapshot::is_caught_up).await;
    assert_eq!(names(&first), ["one", "two"]);
    assert!(first.get("_design/x").is_none());

    // A value derived once per generation.
    let derived = Derived::new(live.clone(), |s: &LiveSnapshot| names(s).join(","));
    assert_eq!(*derived.get(), "one,two");
    assert!(Arc::ptr_eq(&derived.get(), &derived.get()), "recomputed without a new generation");

    // An edit, an addition and a deletion are published.
    let rev = first.get("a").unwrap()["_rev"].clone();
    store.put(&db, json!({"_id": "a", "_rev": rev, "name": "uno"})).await.unwrap();
    store.put(&db, json!({"_id": "c", "name": "three"})).await.unwrap();
    let b = first.get("b").unwrap()["_rev"].as_str().unwrap().to_owned();
    store.delete(&db, "b", &docstore::Rev(b)).await.unwrap();
    let later = wait_for(&live, |s| names(s) == ["uno", "three"]).await;
    assert!(later.generation() > first.generation());
    assert_eq!(*derived.get(), "uno,three");

    // A deleted database publishes empty; recreated, it is read again.
    store.delete_db(&db).await.unwrap();
    wait_for(&live, LiveSnapshot::is_empty).await;
    store.ensure_db(&db).await.unwrap();
    store.put(&db, json!({"_id": "d", "name": "four"})).await.unwrap();
    let again = wait_for(&live, |s| names(s) == ["four"]).await;
    assert!(again.is_caught_up());
    shutdown.cancel();
    store.delete_db(&db).await.unwrap();
}

#[tokio::test]
async fn couch_live_docs_follow_a_database() {
    follows_a_database(couch()).await;
}

#[tokio::test]
async fn embedded_live_docs_follow_a_database() {
    follows_a_database(embedded()).await;
}

#[tokio::test]
async fn a_missing_database_is_waited_for() {
    let store = couch();
    let db = unique_db("live-missing");
    let shutdown = CancellationToken::new();
    let live = LiveDocs::spawn(store.clone(), db.clone(), &fast(), shutdown.clone());
    // Read in full: empty until it exists.
    let empty = wait_for(&live, LiveSnapshot::is_caught_up).await;
    assert!(empty.is_empty());
    store.ensure_db(&db).await.unwrap();
    store.put(&db, json!({"_id": "a", "name": "late"})).await.unwrap();
    let snapshot = wait_for(&live, |s| names(s) == ["late"]).await;
    assert!(snapshot.is_caught_up());
    shutdown.cancel();
    store.delete_db(&db).await.unwrap();
}

#[test]
fn fixed_sources_hold_their_documents() {
    let live = LiveDocs::fixed(
        DbName::new("accounts").unwrap(),
        [json!({"_id": "x", "name": "n"}), json!({"_id": "_design/d"}), json!({"no": "id"})],
    );
    let snapshot = live.current();
    assert!(snapshot.is_caught_up());
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot.get("x").and_then(|d| d.get("name")), Some(&Value::from("n")));
}

async fn one_holder_at_a_time(store: SharedStore) {
    let db = unique_db("lease");
    let ttl = Duration::from_secs(3600);
    let leases: Vec<Lease> = (0..8)
        .map(|i| Lease::new(store.clone(), db.clone(), "job", format!("holder-{i}")))
        .collect();
    // Eight at once: exactly one takes it.
    let tries = leases.iter().map(|lease| lease.try_acquire(ttl));
    let won: Vec<bool> =
        futures::future::join_all(tries).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let winner = won.iter().position(|w| *w).unwrap();
    // The holder renews; the others still cannot take it.
    assert!(leases[winner].try_acquire(ttl).await.unwrap());
    let other = (winner + 1) % leases.len();
    assert!(!leases[other].try_acquire(ttl).await.unwrap());

    // An expired lease is taken over.
    let doc = store.get(&db, "job").await.unwrap().unwrap();
    let mut expired = doc.clone();
    expired["expires_at"] = json!(1);
    store.put(&db, expired).await.unwrap();
    assert!(leases[other].try_acquire(ttl).await.unwrap());
    assert!(!leases[winner].try_acquire(ttl).await.unwrap());

    // A forged lease that runs for ever, or says nothing readable, does not stop the job.
    for forged in [json!(u64::MAX), json!("tomorrow")] {
        let mut doc = store.get(&db, "job").await.unwrap().unwrap();
        doc["holder"] = json!("someone else");
        doc["expires_at"] = forged;
        store.put(&db, doc).await.unwrap();
        assert!(leases[winner].try_acquire(ttl).await.unwrap());
    }
    store.delete_db(&db).await.unwrap();
}

#[tokio::test]
async fn couch_leases_have_one_holder_at_a_time() {
    one_holder_at_a_time(couch()).await;
}

#[tokio::test]
async fn embedded_leases_have_one_holder_at_a_time() {
    one_holder_at_a_time(embedded()).await;
}

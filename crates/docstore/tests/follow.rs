//! The change follower against a real CouchDB-compatible server (`testkit`'s couch-peer, or
//! `COUCHDB_URL`) and against the embedded store: catch-up then live, reconnects
//! after a server restart, a stalled or cut connection, deletion and recreation, terminal errors,
//! database discovery, and the `reflect` driver (a whole read as one batch, a read again on
//! request).
//!
//! No assertion is about timing: each test waits for an event or a status with a generous upper
//! bound ([`WAIT`]) and then asserts on what it got.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use docstore::{
    follow, CouchConfig, CouchStore, DbName, Error, FollowEvent, FollowOptions, Follower,
    FollowerState, ResyncReason, SharedStore, WhenDbMissing,
};
use futures::StreamExt;
use serde_json::json;
use testkit::{CouchServer, TcpProxy};

/// The upper bound of every wait: generous, because the machine is shared.
mod common;
use common::{couch, couch_config, embedded, unique_db};

const WAIT: Duration = Duration::from_secs(60);

/// Short heartbeats and backoffs, so that reconnects happen quickly in tests.
fn fast(name: &str) -> FollowOptions {
    let mut opts = FollowOptions::new(name);
    opts.heartbeat = Duration::from_millis(200);
    opts.backoff_base = Duration::from_millis(20);
    opts.backoff_cap = Duration::from_millis(500);
    opts.verify_every = Duration::from_millis(300);
    opts
}

async fn next(follower: &mut Follower) -> FollowEvent {
    match tokio::time::timeout(WAIT, follower.next()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the follower ended"),
        Err(_) => panic!("no follower event within {WAIT:?}; status {:?}", follower.status().get()),
    }
}

/// Reads events until `CaughtUp`, returning the ids of the changes and whether a resync came first.
async fn until_caught_up(follower: &mut Follower) -> (Vec<String>, Vec<ResyncReason>) {
    let (mut ids, mut resyncs) = (Vec::new(), Vec::new());
    loop {
        match next(follower).await {
            FollowEvent::Change(change) => ids.push(change.id),
            FollowEvent::CaughtUp { .. } => return (ids, resyncs),
            FollowEvent::Resync { reason } => resyncs.push(reason),
            FollowEvent::Failed(e) => panic!("follower failed: {e}"),
        }
    }
}

/// Reads events until a change of `id` arrives (skipping `CaughtUp` after reconnects).
async fn until_change(follower: &mut Follower, id: &str) -> docstore::Change {
    loop {
        match next(follower).await {
            FollowEvent::Change(change) if change.id == id => return change,
            FollowEvent::Failed(e) => panic!("follower failed: {e}"),
            _ => {}
        }
    }
}

async fn put(store: &SharedStore, db: &DbName, id: &str) {
    store.put(db, json!({ "_id": id, "n": id })).await.expect("put");
}

async fn catch_up_then_live(store: SharedStore) {
    let db = unique_db("follow-live-");
    store.create_db(&db).await.unwrap();
    for i in 0..5 {
        put(&store, &db, &format!("before-{i}")).await;
    }
    let mut follower = follow(store.clone(), db.clone(), fast("live"));
    let (ids, resyncs) = until_caught_up(&mut follower).await;
    assert_eq!(resyncs, [ResyncReason::Initial], "a follower from 0 starts with a resync");
    let ids: BTreeSet<_> = ids.into_iter().collect();
    assert_eq!(ids, (0..5).map(|i| format!("before-{i}")).collect());
    let status = follower.status();
    status.wait_for(|s| s.state == FollowerState::Live).await;
    put(&store, &db, "after-0").await;
    let change = until_change(&mut follower, "after-0").await;
    assert_eq!(change.doc.as_ref().and_then(|d| d.get("n")), Some(&json!("after-0")));
    let now = status.get();
    assert!(now.caught_up);
    assert_eq!(now.last_seq.as_ref(), Some(&change.seq));
    assert!(now.last_change_at.is_some());
    // A selector keeps only matching documents (`filter=_selector`).
    let mut opts = fast("selected");
    opts.selector = Some(json!({ "n": { "$regex": "^after" } }));
    let mut selected = follow(store.clone(), db.clone(), opts);
    let (ids, _) = until_caught_up(&mut selected).await;
    assert_eq!(ids, ["after-0"]);
    put(&store, &db, "before-9").await;
    put(&store, &db, "after-1").await;
    assert_eq!(until_change(&mut selected, "after-1").await.id, "after-1");
    // A deletion reaches a selector's follower although the tombstone has no `n` to match.
    let doc = store.get(&db, "after-1").await.unwrap().unwrap();
    let rev = docstore::Rev(doc["_rev"].as_str().unwrap().to_owned());
    store.delete(&db, "after-1", &rev).await.unwrap();
    let deletion = loop {
        match next(&mut selected).await {
            FollowEvent::Change(change) if change.deleted => break change,
            FollowEvent::Change(change) => assert!(change.id.starts_with("after"), "{change:?}"),
            FollowEvent::Failed(e) => panic!("{e}"),
            _ => {}
        }
    };
    assert_eq!(deletion.id, "after-1");
    store.delete_db(&db).await.unwrap();
}

#[tokio::test]
async fn couch_catch_up_then_live() {
    catch_up_then_live(couch()).await;
}

#[tokio::test]
async fn embedded_catch_up_then_live() {
    catch_up_then_live(embedded()).await;
}

/// A plain equality selector is filtered by the server (with deletions let through); a selector
/// the server refuses is a terminal error, not a retry loop.
async fn selectors_filter_and_bad_ones_fail(store: SharedStore) {
    let db = unique_db("follow-selector-");
    store.create_db(&db).await.unwrap();
    store.put(&db, json!({"_id": "r1", "kind": "route"})).await.unwrap();
    let other = store.put(&db, json!({"_id": "o1", "kind": "other"})).await.unwrap();
    let mut opts = fast("selector");
    opts.selector = Some(json!({ "kind": "route" }));
    opts.include_docs = false;
    let mut follower = follow(store.clone(), db.clone(), opts);
    let (ids, _) = until_caught_up(&mut follower).await;
    assert_eq!(ids, ["r1"]);
    let rev = store.get(&db, "r1").await.unwrap().unwrap()["_rev"].as_str().unwrap().to_owned();
    store.delete(&db, "r1", &docstore::Rev(rev)).await.unwrap();
    let deletion = until_change(&mut follower, "r1").await;
    assert!(deletion.deleted);
    assert_eq!(deletion.doc, None, "include_docs is false");
    // A deletion of a document that never matched may come too (a tombstone has no fields).
    store.delete(&db, "o1", &other).await.unwrap();
    store.put(&db, json!({"_id": "r2", "kind": "route"})).await.unwrap();
    loop {
        match next(&mut follower).await {
            FollowEvent::Change(change) if change.id == "r2" => break,
            FollowEvent::Change(change) => assert!(change.deleted, "{change:?} does not match"),
            FollowEvent::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }

    let mut opts = fast("bad-selector");
    opts.selector = Some(json!({ "kind": { "$bogus": 1 } }));
    let mut follower = follow(store.clone(), db.clone(), opts);
    loop {
        match next(&mut follower).await {
            FollowEvent::Failed(Error::BadRequest { reason }) => {
                assert!(reason.contains("$bogus"), "{reason}");
                break;
            }
            FollowEvent::Failed(e) => panic!("expected a refused selector, got {e}"),
            FollowEvent::Change(change) => panic!("nothing matches a bad selector: {change:?}"),
            _ => {}
        }
    }
    assert_eq!(follower.status().get().reconnects, 0);
    store.delete_db(&db).await.unwrap();
}

#[tokio::test]
async fn couch_selectors_filter_and_bad_ones_fail() {
    selectors_filter_and_bad_ones_fail(couch()).await;
}

async fn delete_and_recreate(store: SharedStore) {
    let db = unique_db("follow-recreate-");
    store.create_db(&db).await.unwrap();
    put(&store, &db, "old-0").await;
    let mut opts = fast("recreate");
    opts.when_db_missing = WhenDbMissing::Wait;
    let mut follower = follow(store.clone(), db.clone(), opts);
    until_change(&mut follower, "old-0").await;
    follower.status().wait_for(|s| s.state == FollowerState::Live).await;

    // Deleted while live: reported, then the follower waits for the database.
    store.delete_db(&db).await.unwrap();
    loop {
        match next(&mut follower).await {
            FollowEvent::Resync { reason: ResyncReason::Deleted } => break,
            FollowEvent::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
    store.create_db(&db).await.unwrap();
    put(&store, &db, "new-0").await;
    until_change(&mut follower, "new-0").await;
    drop(follower);
    store.delete_db(&db).await.unwrap();
}

#[tokio::test]
async fn couch_delete_and_recreate_resyncs() {
    delete_and_recreate(couch()).await;
}

#[tokio::test]
async fn embedded_delete_and_recreate_resyncs() {
    delete_and_recreate(embedded()).await;
}

/// A start position further on than the server's `update_seq` of 0, with an incarnation marker
/// in place (a restore that kept `_local` documents): the follower reports a rewind and replays
/// from 0.
/// Only servers whose empty databases report `update_seq` 0 (pouchdb) can show this; CouchDB 3 and
/// the embedded store give `"0-…"` sequences, which the follower does not parse.
async fn rewind_to_zero_resyncs(store: SharedStore) {
    let db = unique_db("follow-rewind-");
    store.create_db(&db).await.unwrap();
    store.put_local(&db, "switchboard-incarnation", json!({ "uuid": "m1" })).await.unwrap();
    let mut opts = fast("rewind");
    opts.since = Some(docstore::Seq::from_json(json!(7)));
    let mut follower = follow(store.clone(), db.clone(), opts);
    let (ids, resyncs) = until_caught_up(&mut follower).await;
    assert_eq!(resyncs, [ResyncReason::Rewound]);
    assert!(ids.is_empty());
    put(&store, &db, "fresh").await;
    until_change(&mut follower, "fresh").await;
    store.delete_db(&db).await.unwrap();
}

#[tokio::test]
async fn couch_rewind_to_zero_resyncs() {
    if CouchServer::shared().is_external() {
        eprintln!("CouchDB 3's update_seq of an empty database is not 0: test skipped");
        return;
    }
    rewind_to_zero_resyncs(couch()).await;
}

async fn missing_db_is_terminal(store: SharedStore) {
    let db = unique_db("follow-missing-");
    let mut follower = follow(store, db, fast("missing"));
    match next(&mut follower).await {
        FollowEvent::Failed(Error::DbNotFound { .. }) => {}
        other => panic!("expected a terminal DbNotFound, got {other:?}"),
    }
    assert!(tokio::time::timeout(WAIT, follower.next()).await.unwrap().is_none());
    assert!(matches!(follower.status().get().state, FollowerState::Failed { .. }));
}

#[tokio::test]
async fn couch_missing_db_is_terminal() {
    missing_db_is_terminal(couch()).await;
}

#[tokio::test]
async fn embedded_missing_db_is_terminal() {
    missing_db_is_terminal(embedded()).await;
}

/// A store that talks to the shared server through a fault-injecting proxy.
async fn through_proxy() -> (SharedStore, TcpProxy) {
    let server = CouchServer::shared();
    let proxy = TcpProxy::start(server.url()).await;
    let mut config = couch_config(&proxy.url(), server);
    config.request_timeout = Duration::from_secs(2);
    (Arc::new(CouchStore::new(config).unwrap()), proxy)
}

#[tokio::test]
async fn couch_stalled_connection_is_declared_dead_and_reconnected() {
    let direct = couch();
    let (proxied, proxy) = through_proxy().await;
    let db = unique_db("follow-stall-");
    direct.create_db(&db).await.unwrap();
    let mut opts = fast("stall");
    // Only the missed heartbeats may notice the stall here.
    opts.verify_every = Duration::from_secs(3600);
    let mut follower = follow(proxied, db.clone(), opts);
    until_caught_up(&mut follower).await;
    let status = follower.status();
    status.wait_for(|s| s.state == FollowerState::Live).await;
    // Bytes stop flowing, the TCP connection stays open: only missed heartbeats tell.
    proxy.stall();
    let stalled = status.wait_for(|s| s.reconnects >= 1).await;
    assert!(!stalled.caught_up);
    let why = stalled.last_error.unwrap_or_default();
    assert!(why.contains("3 heartbeats"), "declared dead for missed heartbeats, not {why:?}");
    proxy.resume();
    put(&direct, &db, "after-stall").await;
    until_change(&mut follower, "after-stall").await;
    direct.delete_db(&db).await.unwrap();
}

#[tokio::test]
async fn couch_cut_connection_is_reconnected() {
    let direct = couch();
    let (proxied, proxy) = through_proxy().await;
    let db = unique_db("follow-cut-");
    direct.create_db(&db).await.unwrap();
    let mut follower = follow(proxied, db.clone(), fast("cut"));
    until_caught_up(&mut follower).await;
    let status = follower.status();
    status.wait_for(|s| s.state == FollowerState::Live).await;
    proxy.refuse(true);
    proxy.cut_all();
    status
        .wait_for(|s| matches!(s.state, FollowerState::Backoff { attempt } if attempt >= 2))
        .await;
    proxy.refuse(false);
    put(&direct, &db, "after-cut").await;
    until_change(&mut follower, "after-cut").await;
    assert!(status.get().reconnects >= 2);
    direct.delete_db(&db).await.unwrap();
}

#[tokio::test]
async fn couch_server_restart_mid_feed_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = CouchServer::start_persistent(dir.path()) else {
        eprintln!("COUCHDB_URL is set: no private server to restart, test skipped");
        return;
    };
    let store: SharedStore =
        Arc::new(CouchStore::new(couch_config(server.url(), &server)).unwrap());
    let db = unique_db("follow-restart-");
    store.create_db(&db).await.unwrap();
    put(&store, &db, "before").await;
    let mut follower = follow(store.clone(), db.clone(), fast("restart"));
    until_change(&mut follower, "before").await;
    let status = follower.status();
    status.wait_for(|s| s.state == FollowerState::Live).await;
    server.kill();
    status.wait_for(|s| matches!(s.state, FollowerState::Backoff { .. })).await;
    server.restart();
    put(&store, &db, "after").await;
    // The reconnect resumes where it stood: "after" arrives, with no resync and no replay.
    loop {
        match next(&mut follower).await {
            FollowEvent::Change(c) if c.id == "after" => break,
            FollowEvent::Change(c) => panic!("replayed {} after the restart", c.id),
            FollowEvent::Resync { reason } => panic!("unexpected resync {reason:?}"),
            FollowEvent::Failed(e) => panic!("{e}"),
            FollowEvent::CaughtUp { .. } => {}
        }
    }
    assert!(status.get().reconnects >= 1);
}

#[tokio::test]
async fn couch_wrong_password_is_terminal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"admins":{"admin":"secret"}}"#).unwrap();
    let Some(server) = CouchServer::start_persistent(dir.path()) else {
        eprintln!("COUCHDB_URL is set: no private server with a known admin, test skipped");
        return;
    };
    let mut config = CouchConfig::from_url(server.url()).unwrap();
    config.user = Some("admin".into());
    config.password = Some("secret".into());
    let good: SharedStore = Arc::new(CouchStore::new(config.clone()).unwrap());
    let db = unique_db("follow-auth-");
    good.create_db(&db).await.unwrap();

    config.password = Some("wrong".into());
    let bad: SharedStore = Arc::new(CouchStore::new(config).unwrap());
    let mut follower = follow(bad, db.clone(), fast("auth"));
    match next(&mut follower).await {
        FollowEvent::Failed(Error::Unauthorized { reason }) => {
            assert!(!reason.is_empty(), "CouchDB's reason is kept");
        }
        other => panic!("expected a terminal 401, got {other:?}"),
    }
    assert!(tokio::time::timeout(WAIT, follower.next()).await.unwrap().is_none());
    let status = follower.status().get();
    assert!(matches!(status.state, FollowerState::Failed { .. }), "{status:?}");
    assert_eq!(status.reconnects, 0, "a 401 is not retried");
}

/// What a [`docstore::Reflect`] was told, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Reset,
    Load(Vec<String>),
    Apply(String),
    Publish(bool),
}

/// A reflection that records what the driver does, and reads again on request.
struct Recorder {
    seen: tokio::sync::mpsc::UnboundedSender<Seen>,
    reread: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl docstore::Reflect for Recorder {
    fn reset(&mut self) {
        let _ = self.seen.send(Seen::Reset);
    }

    fn apply(&mut self, change: docstore::Change) -> bool {
        let _ = self.seen.send(Seen::Apply(change.id));
        true
    }

    async fn load(&mut self, changes: Vec<docstore::Change>) -> bool {
        let mut ids: Vec<String> = changes.into_iter().map(|change| change.id).collect();
        ids.sort();
        let _ = self.seen.send(Seen::Load(ids));
        true
    }

    async fn publish(&mut self, caught_up: bool) {
        let _ = self.seen.send(Seen::Publish(caught_up));
    }

    async fn reread(&mut self) {
        if self.reread.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

async fn seen(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("the driver went on").expect("running")
}

#[tokio::test]
async fn reflect_loads_a_whole_read_as_one_batch_and_reads_again_on_request() {
    let store = embedded();
    let db = unique_db("reflect-");
    store.create_db(&db).await.unwrap();
    for id in ["a", "b", "c"] {
        put(&store, &db, id).await;
    }
    let (seen_tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (reread, reread_rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = Recorder { seen: seen_tx, reread: reread_rx };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(docstore::reflect(
        store.clone(),
        db.clone(),
        fast("reflect"),
        recorder,
        shutdown.clone(),
    ));
    let whole = |ids: &[&str]| Seen::Load(ids.iter().map(|id| (*id).to_owned()).collect());
    // The first read: reset, the whole database as one batch, one publication.
    assert_eq!(seen(&mut rx).await, Seen::Reset);
    assert_eq!(seen(&mut rx).await, whole(&["a", "b", "c"]));
    assert_eq!(seen(&mut rx).await, Seen::Publish(true));
    // A later change is applied on its own and published.
    put(&store, &db, "d").await;
    assert_eq!(seen(&mut rx).await, Seen::Apply("d".into()));
    assert_eq!(seen(&mut rx).await, Seen::Publish(true));
    // Asked to read again: from the start, published even though nothing changed.
    reread.send(()).unwrap();
    assert_eq!(seen(&mut rx).await, Seen::Reset);
    assert_eq!(seen(&mut rx).await, whole(&["a", "b", "c", "d"]));
    assert_eq!(seen(&mut rx).await, Seen::Publish(true));
    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.expect("stops on shutdown").unwrap();
}

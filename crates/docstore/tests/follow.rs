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

/// What a [`Mirror`] was told, for the order of a read and the changes after it.
#[derive(Debug, Clone, PartialEq)]
enum Told {
    /// A read from the start: each document's id and `n`.
    Load(Vec<(String, i64)>),
    /// A later change: its id and `n` (`None`: deleted).
    Apply(String, Option<i64>),
}

/// A reflection like a real consumer's: each document's `n` by id, published whole, with what
/// it was told logged; it reads again on request.
struct Mirror {
    docs: std::collections::BTreeMap<String, i64>,
    told: tokio::sync::mpsc::UnboundedSender<Told>,
    published: tokio::sync::watch::Sender<std::collections::BTreeMap<String, i64>>,
    reread: tokio::sync::mpsc::UnboundedReceiver<()>,
}

type Mirrored = std::collections::BTreeMap<String, i64>;

fn n_of(change: &docstore::Change) -> Option<i64> {
    let doc = change.doc.as_ref().filter(|_| !change.deleted)?;
    doc.get("n").and_then(serde_json::Value::as_i64)
}

impl docstore::Reflect for Mirror {
    fn reset(&mut self) {
        self.docs.clear();
    }

    fn apply(&mut self, change: docstore::Change) -> bool {
        let n = n_of(&change);
        let _ = self.told.send(Told::Apply(change.id.clone(), n));
        match n {
            Some(n) => self.docs.insert(change.id, n) != Some(n),
            None => self.docs.remove(&change.id).is_some(),
        }
    }

    async fn load(&mut self, changes: Vec<docstore::Change>) -> bool {
        let mut read = Vec::new();
        for change in changes {
            assert!(!change.deleted, "a read from the start has no deletions");
            let n = n_of(&change).expect("a read from the start carries its documents");
            read.push((change.id.clone(), n));
            self.docs.insert(change.id, n);
        }
        let _ = self.told.send(Told::Load(read));
        true
    }

    async fn publish(&mut self, _caught_up: bool) {
        self.published.send_replace(self.docs.clone());
    }

    async fn reread(&mut self) {
        if self.reread.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

/// A running [`Mirror`] of `db` on `store` with `options`.
struct Mirroring {
    told: tokio::sync::mpsc::UnboundedReceiver<Told>,
    published: tokio::sync::watch::Receiver<Mirrored>,
    reread: tokio::sync::mpsc::UnboundedSender<()>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Mirroring {
    fn start(store: SharedStore, db: &DbName, options: FollowOptions) -> Mirroring {
        let (told_tx, told) = tokio::sync::mpsc::unbounded_channel();
        let (published_tx, published) = tokio::sync::watch::channel(Mirrored::new());
        let (reread, reread_rx) = tokio::sync::mpsc::unbounded_channel();
        let mirror = Mirror {
            docs: Mirrored::new(),
            told: told_tx,
            published: published_tx,
            reread: reread_rx,
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(docstore::reflect(store, db.clone(), options, mirror, shutdown.clone()));
        Mirroring { told, published, reread, shutdown }
    }

    /// Waits until the published mirror is `expected`.
    async fn until_published(&mut self, expected: &Mirrored) {
        let reached =
            tokio::time::timeout(WAIT, self.published.wait_for(|m| m == expected)).await.is_ok();
        assert!(reached, "mirror {:?}, expected {expected:?}", *self.published.borrow());
    }

    /// What the mirror was told so far.
    fn told(&mut self) -> Vec<Told> {
        std::iter::from_fn(|| self.told.try_recv().ok()).collect()
    }
}

impl Drop for Mirroring {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn put_n(store: &SharedStore, db: &DbName, id: &str, n: i64) {
    let mut doc =
        json!({"_id": id, "n": n, "kind": if id.starts_with('o') { "other" } else { "r" }});
    if let Some(current) = store.get(db, id).await.unwrap() {
        doc["_rev"] = current["_rev"].clone();
    }
    store.put(db, doc).await.unwrap();
}

async fn delete_doc(store: &SharedStore, db: &DbName, id: &str) {
    let current = store.get(db, id).await.unwrap().expect("exists");
    let rev = docstore::Rev(current["_rev"].as_str().unwrap().to_owned());
    store.delete(db, id, &rev).await.unwrap();
}

fn mirrored(entries: &[(&str, i64)]) -> Mirrored {
    entries.iter().map(|(id, n)| ((*id).to_owned(), *n)).collect()
}

/// Writes that land between the `update_seq` a read from the start notes and its `_all_docs`
/// pages are in the read (at their newest revision) and come again from the feed: the mirror
/// ends with each document once, at its newest revision, and without the deleted one.
async fn write_between_noted_seq_and_read_is_seen_once(inner: SharedStore) {
    let db = unique_db("snapshot-race-");
    inner.create_db(&db).await.unwrap();
    for id in ["a", "b", "c"] {
        put_n(&inner, &db, id, 1).await;
    }
    let spy = Arc::new(common::Spy::new(inner.clone(), true));
    let (writer, race_db) = (inner.clone(), db.clone());
    spy.before_next_all_docs(Box::new(move || {
        Box::pin(async move {
            put_n(&writer, &race_db, "a", 2).await;
            delete_doc(&writer, &race_db, "b").await;
            put_n(&writer, &race_db, "x", 1).await;
        })
    }));
    let store: SharedStore = spy.clone();
    let mut mirror = Mirroring::start(store, &db, fast("snapshot-race"));
    mirror.until_published(&mirrored(&[("a", 2), ("c", 1), ("x", 1)])).await;
    // A last write: once it is in, every change before it has been applied.
    put_n(&inner, &db, "z", 1).await;
    mirror.until_published(&mirrored(&[("a", 2), ("c", 1), ("x", 1), ("z", 1)])).await;
    let told = mirror.told();
    assert_eq!(
        told.first(),
        Some(&Told::Load(vec![("a".into(), 2), ("c".into(), 1), ("x".into(), 1)])),
        "the read holds the writes made after its noted sequence: {told:?}"
    );
    let again: Vec<&Told> = told.iter().skip(1).collect();
    for change in [Told::Apply("a".into(), Some(2)), Told::Apply("b".into(), None)] {
        assert!(again.contains(&&change), "the feed delivers {change:?} again: {told:?}");
    }
}

#[tokio::test]
async fn couch_write_between_noted_seq_and_read_is_seen_once() {
    write_between_noted_seq_and_read_is_seen_once(couch()).await;
}

#[tokio::test]
async fn embedded_write_between_noted_seq_and_read_is_seen_once() {
    write_between_noted_seq_and_read_is_seen_once(embedded()).await;
}

/// Reads from the start asked for while documents are written, edited and deleted: the mirror
/// converges on the database.
async fn reread_during_live_writes_converges(store: SharedStore) {
    let db = unique_db("snapshot-reread-");
    store.create_db(&db).await.unwrap();
    for i in 0..5 {
        put_n(&store, &db, &format!("k{i}"), 0).await;
    }
    let mut mirror = Mirroring::start(store.clone(), &db, fast("snapshot-reread"));
    mirror.until_published(&(0..5).map(|i| (format!("k{i}"), 0)).collect()).await;
    let mut truth: Mirrored = (0..5).map(|i| (format!("k{i}"), 0)).collect();
    for step in 1..=60i64 {
        let id = format!("k{}", step % 8);
        if step % 7 == 0 && truth.contains_key(&id) {
            delete_doc(&store, &db, &id).await;
            truth.remove(&id);
        } else {
            put_n(&store, &db, &id, step).await;
            truth.insert(id, step);
        }
        if step % 10 == 0 {
            mirror.reread.send(()).unwrap();
        }
    }
    mirror.until_published(&truth).await;
    let loads = mirror.told().iter().filter(|t| matches!(t, Told::Load(_))).count();
    assert!(loads >= 2, "the rereads read the database from the start ({loads} reads)");
}

#[tokio::test]
async fn couch_reread_during_live_writes_converges() {
    reread_during_live_writes_converges(couch()).await;
}

#[tokio::test]
async fn embedded_reread_during_live_writes_converges() {
    reread_during_live_writes_converges(embedded()).await;
}

/// A follower with a selector reads, from the start and live, only the documents it selects
/// (`_all_docs` cannot filter: the driver applies the selector to the read).
async fn filtered_follower_sees_only_its_documents(store: SharedStore) {
    let db = unique_db("snapshot-filter-");
    store.create_db(&db).await.unwrap();
    put_n(&store, &db, "r1", 1).await;
    put_n(&store, &db, "o1", 1).await;
    store.put(&db, json!({"_id": "_design/d", "n": 7})).await.unwrap();
    let mut options = fast("snapshot-filter");
    options.selector = Some(json!({"kind": "r"}));
    options.fields = Some(docstore::Fields::new(["n"]));
    let mut mirror = Mirroring::start(store.clone(), &db, options);
    mirror.until_published(&mirrored(&[("r1", 1)])).await;
    put_n(&store, &db, "o2", 2).await;
    put_n(&store, &db, "r2", 2).await;
    mirror.until_published(&mirrored(&[("r1", 1), ("r2", 2)])).await;
    mirror.reread.send(()).unwrap();
    put_n(&store, &db, "r3", 3).await;
    mirror.until_published(&mirrored(&[("r1", 1), ("r2", 2), ("r3", 3)])).await;
    let told = mirror.told();
    let reads: Vec<&Told> = told.iter().filter(|t| matches!(t, Told::Load(_))).collect();
    assert_eq!(reads.first(), Some(&&Told::Load(vec![("r1".into(), 1)])), "{told:?}");
    for t in &told {
        let id = match t {
            Told::Load(read) => read.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            Told::Apply(id, _) => vec![id.as_str()],
        };
        assert!(id.iter().all(|id| id.starts_with('r')), "only selected documents: {told:?}");
    }
}

#[tokio::test]
async fn couch_filtered_follower_sees_only_its_documents() {
    filtered_follower_sees_only_its_documents(couch()).await;
}

#[tokio::test]
async fn embedded_filtered_follower_sees_only_its_documents() {
    filtered_follower_sees_only_its_documents(embedded()).await;
}

/// [`Follower::reread`] reads again on the live connection: a `Requested` resync, the documents,
/// caught up, then live, with no reconnect.
async fn reread_stays_on_the_connection(store: SharedStore) {
    let db = unique_db("snapshot-inplace-");
    store.create_db(&db).await.unwrap();
    put(&store, &db, "a").await;
    let mut options = fast("snapshot-inplace");
    options.snapshot_start = true;
    let mut follower = follow(store.clone(), db.clone(), options);
    let (ids, resyncs) = until_caught_up(&mut follower).await;
    assert_eq!((ids, resyncs), (vec!["a".to_owned()], vec![ResyncReason::Initial]));
    follower.status().wait_for(|s| s.state == FollowerState::Live).await;
    put(&store, &db, "b").await;
    until_change(&mut follower, "b").await;
    follower.reread();
    let (ids, resyncs) = until_caught_up(&mut follower).await;
    assert_eq!(resyncs, [ResyncReason::Requested]);
    assert_eq!(ids, ["a", "b"], "the whole database, read again");
    put(&store, &db, "c").await;
    until_change(&mut follower, "c").await;
    assert_eq!(follower.status().get().reconnects, 0, "no new connection");
}

#[tokio::test]
async fn couch_reread_stays_on_the_connection() {
    reread_stays_on_the_connection(couch()).await;
}

#[tokio::test]
async fn embedded_reread_stays_on_the_connection() {
    reread_stays_on_the_connection(embedded()).await;
}

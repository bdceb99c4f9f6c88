//! What only the CouchDB backend has to get right, against a real server (`testkit`'s couch-peer,
//! or `COUCHDB_URL`): names and ids on the wire, typed errors that keep CouchDB's `reason`,
//! authentication, timeouts, the raw live feed and `_db_updates`.

use std::time::Duration;

use docstore::{
    AuthMode, CouchConfig, CouchStore, DbName, DbUpdateKind, DocStore, Error, FeedEvent, FeedQuery,
    Seq, ViewQuery,
};
use futures::StreamExt;
use serde_json::json;
use testkit::{CouchServer, TcpProxy};

mod common;
use common::{couch, couch_config, unique_db};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn slashes_plus_and_spaces_survive_the_wire() {
    let store = couch();
    let db = unique_db("numbers/+1415");
    store.create_db(&db).await.unwrap();
    assert!(store.list_dbs().await.unwrap().contains(&db), "listed under its real name");
    assert!(store.db_exists(&db).await.unwrap());

    let id = "sp ace/slash+plus?q#h%";
    let rev = store.put(&db, json!({ "_id": id, "v": 1 })).await.unwrap();
    let doc = store.get(&db, id).await.unwrap().expect("found by the same id");
    assert_eq!(doc["_id"], json!(id));
    assert_eq!(doc["_rev"], json!(rev.as_str()));
    let many = store.get_many(&db, &[id.to_owned(), "absent".to_owned()]).await.unwrap();
    assert_eq!(many[0].as_ref().map(|d| d["v"].clone()), Some(json!(1)));
    assert_eq!(many[1], None);
    let rev2 = store.delete(&db, id, &rev).await.unwrap();
    assert_eq!(rev2.generation(), Some(2));
    assert_eq!(store.get(&db, id).await.unwrap(), None);
    store.delete_db(&db).await.unwrap();
    assert!(!store.db_exists(&db).await.unwrap());
}

#[tokio::test]
async fn errors_are_typed_and_keep_couchdbs_reason() {
    let store = couch();
    let missing = unique_db("missing-");
    match store.get(&missing, "x").await {
        Err(Error::DbNotFound { db }) => assert_eq!(db, missing.as_str()),
        other => panic!("a missing database, not {other:?}"),
    }
    assert!(matches!(
        store.put(&missing, json!({"_id": "x"})).await,
        Err(Error::DbNotFound { .. })
    ));
    assert!(matches!(store.delete_db(&missing).await, Err(Error::DbNotFound { .. })));
    assert!(matches!(store.db_info(&missing).await, Err(Error::DbNotFound { .. })));

    let db = unique_db("errors-");
    store.create_db(&db).await.unwrap();
    match store.create_db(&db).await {
        Err(Error::DbExists { db: name }) => assert_eq!(name, db.as_str()),
        other => panic!("an existing database, not {other:?}"),
    }
    assert!(!store.ensure_db(&db).await.unwrap());

    let rev = store.put(&db, json!({"_id": "doc"})).await.unwrap();
    match store.put(&db, json!({"_id": "doc"})).await {
        Err(e @ Error::Conflict { .. }) => {
            assert_eq!(e.status(), 409);
            assert!(e.to_string().contains(&format!("{db}/doc")), "{e}");
        }
        other => panic!("a conflict, not {other:?}"),
    }
    // A superseded rev (pouchdb answers 404 for a rev that never existed; CouchDB 409).
    let rev2 = store.put(&db, json!({"_id": "doc", "_rev": rev.as_str(), "v": 2})).await.unwrap();
    assert!(matches!(store.delete(&db, "doc", &rev).await, Err(Error::Conflict { .. })));
    match store.put(&db, json!({"_id": "_bad"})).await {
        Err(Error::BadRequest { reason }) => assert!(reason.contains("underscore"), "{reason}"),
        other => panic!("a bad request, not {other:?}"),
    }
    match store.delete(&db, "absent", &rev2).await {
        Err(Error::DocNotFound { id, .. }) => assert_eq!(id, "absent"),
        other => panic!("a missing document, not {other:?}"),
    }

    let items = store
        .bulk_docs(&db, vec![json!({"_id": "doc"}), json!({"_id": "fresh"}), json!({"v": 1})])
        .await
        .unwrap();
    assert!(matches!(items[0].outcome, Err(Error::Conflict { .. })), "{:?}", items[0]);
    assert_eq!(items[1].id, "fresh");
    assert!(items[1].outcome.is_ok());
    assert!(!items[2].id.is_empty(), "the server names a document without _id");
    store.delete_db(&db).await.unwrap();
}

#[tokio::test]
async fn views_and_local_documents() {
    let store = couch();
    let db = unique_db("views-");
    store.create_db(&db).await.unwrap();
    store
        .put(
            &db,
            json!({"_id": "_design/t", "views": {"by_n": {"map": "function(doc){ if (doc.n) emit(doc.n, 1); }"}}}),
        )
        .await
        .unwrap();
    for n in 1..=3 {
        store.put(&db, json!({"_id": format!("d{n}"), "n": n})).await.unwrap();
    }
    let query = ViewQuery { start_key: Some(json!(2)), reduce: None, ..ViewQuery::default() };
    let rows = store.view(&db, "t", "by_n", &query).await.unwrap();
    let keys: Vec<_> = rows.iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys, [json!(2), json!(3)]);
    assert!(store.view(&db, "nope", "x", &ViewQuery::default()).await.is_err());

    assert_eq!(store.get_local(&db, "cp").await.unwrap(), None);
    store.put_local(&db, "cp", json!({"seq": 1})).await.unwrap();
    store.put_local(&db, "cp", json!({"seq": 2})).await.unwrap();
    assert_eq!(store.get_local(&db, "cp").await.unwrap().unwrap()["seq"], json!(2));
    let all = store.all_docs(&db, &docstore::AllDocsQuery::default()).await.unwrap();
    assert!(all.rows.iter().all(|r| !r.id.starts_with("_local/")));
    store.delete_db(&db).await.unwrap();
}

#[tokio::test]
async fn the_live_feed_brings_heartbeats_and_changes() {
    let store = couch();
    let db = unique_db("feed-");
    store.create_db(&db).await.unwrap();
    let query = FeedQuery {
        since: Seq::now(),
        include_docs: true,
        selector: None,
        heartbeat: Duration::from_millis(100),
        fields: None,
    };
    let mut feed = store.open_feed(&db, &query).await.unwrap();
    let first = tokio::time::timeout(WAIT, feed.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, FeedEvent::Heartbeat, "nothing changed yet");
    store.put(&db, json!({"_id": "a b", "v": 1})).await.unwrap();
    let change = loop {
        match tokio::time::timeout(WAIT, feed.next()).await.unwrap().unwrap().unwrap() {
            FeedEvent::Heartbeat => continue,
            FeedEvent::Change(change) => break change,
            other @ (FeedEvent::End { .. } | FeedEvent::Issue(_)) => {
                panic!("unexpected: {other:?}")
            }
        }
    };
    assert_eq!(change.id, "a b");
    assert_eq!(change.doc.unwrap()["v"], json!(1));
    drop(feed);
    let page = store.changes(&db, &docstore::ChangesQuery::since(Seq::zero())).await.unwrap();
    assert_eq!(page.results.len(), 1);
    assert_eq!(page.last_seq, page.results[0].seq);
    store.delete_db(&db).await.unwrap();
}

#[tokio::test]
async fn db_updates_or_none() {
    let store = couch();
    match store.db_updates(&Seq::now()).await.unwrap() {
        // A server without `_db_updates`: callers poll instead.
        None => {}
        Some(mut updates) => {
            let db = unique_db("updates-");
            store.create_db(&db).await.unwrap();
            loop {
                let update = tokio::time::timeout(WAIT, updates.next()).await.unwrap().unwrap();
                let update = update.unwrap();
                if update.db == db && update.kind == DbUpdateKind::Created {
                    break;
                }
            }
            store.delete_db(&db).await.unwrap();
        }
    }
}

#[tokio::test]
async fn timeouts_and_refusals_are_transient_errors() {
    let server = CouchServer::shared();
    let proxy = TcpProxy::start(server.url()).await;
    let mut config = couch_config(&proxy.url(), server);
    config.request_timeout = Duration::from_millis(300);
    let store = CouchStore::new(config).unwrap();
    proxy.stall();
    match store.list_dbs().await {
        Err(e @ Error::Timeout { .. }) => assert!(e.is_transient()),
        other => panic!("a timeout, not {other:?}"),
    }
    proxy.resume();
    proxy.refuse(true);
    match store.list_dbs().await {
        Err(e @ Error::Transport { .. }) => assert!(e.is_transient()),
        other => panic!("a transport error, not {other:?}"),
    }
    proxy.refuse(false);
    assert!(store.list_dbs().await.is_ok());
}

#[tokio::test]
async fn basic_and_cookie_authentication() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"admins":{"admin":"s3cret"}}"#).unwrap();
    let Some(server) = CouchServer::start_persistent(dir.path()) else {
        eprintln!("COUCHDB_URL is set: no private server with a known admin, test skipped");
        return;
    };
    let authority = server.url().replacen("http://", "http://admin:s3cret@", 1);
    let basic = CouchStore::new(CouchConfig::from_url(&authority).unwrap()).unwrap();
    assert!(!basic.url().contains("s3cret"), "credentials leave the URL");
    let db = unique_db("auth-");
    basic.create_db(&db).await.unwrap();

    let mut cookie = CouchConfig::from_url(&authority).unwrap();
    cookie.auth = AuthMode::Cookie;
    let cookie_store = CouchStore::new(cookie.clone()).unwrap();
    assert!(cookie_store.list_dbs().await.unwrap().contains(&db));
    cookie_store.put(&db, json!({"_id": "by-cookie"})).await.unwrap();
    assert!(basic.get(&db, "by-cookie").await.unwrap().is_some());

    for auth in [AuthMode::Basic, AuthMode::Cookie] {
        let mut wrong = cookie.clone();
        wrong.auth = auth;
        wrong.password = Some("wrong".into());
        match CouchStore::new(wrong).unwrap().list_dbs().await {
            Err(e @ Error::Unauthorized { .. }) => {
                assert_eq!(e.status(), 401);
                assert!(!e.is_transient());
                assert!(e.to_string().contains("incorrect"), "CouchDB's reason: {e}");
            }
            other => panic!("{auth:?}: a 401, not {other:?}"),
        }
    }
    basic.delete_db(&db).await.unwrap();
}

/// A session cookie minted before the admin's password changed is no longer valid; CouchDB then
/// treats the request as anonymous, and a members-only database answers 401. The store logs in
/// again and retries once.
#[tokio::test]
async fn an_invalid_session_cookie_leads_to_a_new_login() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"admins":{"admin":"p1"}}"#).unwrap();
    let Some(server) = CouchServer::start_persistent(dir.path()) else {
        eprintln!("COUCHDB_URL is set: no private server whose admin password may change, skipped");
        return;
    };
    let url = server.url().to_owned();
    let raw = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: &str, password: &str, body: &str| {
        raw.request(method, format!("{url}/{path}"))
            .basic_auth("admin", Some(password))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
    };
    let db = unique_db("members-");
    let mut basic = CouchConfig::from_url(&url).unwrap();
    basic.user = Some("admin".into());
    basic.password = Some("p1".into());
    let basic_store = CouchStore::new(basic.clone()).unwrap();
    basic_store.create_db(&db).await.unwrap();
    basic_store.put(&db, json!({"_id": "d"})).await.unwrap();
    let security = r#"{"members":{"names":["admin"],"roles":[]},"admins":{"names":[],"roles":[]}}"#;
    let path = format!("{}/_security", db.as_str().replace('/', "%2F"));
    let resp = admin(reqwest::Method::PUT, &path, "p1", security).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());

    let mut cookie = basic.clone();
    cookie.auth = AuthMode::Cookie;
    let cookie_store = CouchStore::new(cookie).unwrap();
    assert!(cookie_store.get(&db, "d").await.unwrap().is_some(), "logged in with a cookie");
    // A cookie of the same age as the store's, to show that it stops working.
    let login = raw
        .post(format!("{url}/_session"))
        .header("Content-Type", "application/json")
        .body(r#"{"name":"admin","password":"p1"}"#)
        .send()
        .await
        .unwrap();
    let old_cookie =
        login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();

    // Changing the password (and back) gives the admin a new salt: old cookies are void.
    for (from, to) in [("p1", "\"p2\""), ("p2", "\"p1\"")] {
        let resp =
            admin(reqwest::Method::PUT, "_config/admins/admin", from, to).send().await.unwrap();
        assert!(resp.status().is_success());
    }
    let doc_url = format!("{url}/{}/d", db.as_str().replace('/', "%2F"));
    let stale = raw.get(&doc_url).header("Cookie", old_cookie).send().await.unwrap();
    assert_eq!(stale.status().as_u16(), 401, "an old session cookie is refused");

    assert!(cookie_store.get(&db, "d").await.unwrap().is_some(), "the store logged in again");
    basic_store.delete_db(&db).await.unwrap();
}

/// Writes a document as raw bytes (a lone surrogate escape stays one: CouchDB stores it).
async fn put_raw(db: &DbName, id: &str, body: String) {
    let server = CouchServer::shared();
    let url = format!("{}/{}/{id}", server.url().trim_end_matches('/'), db.as_str());
    let mut req = reqwest::Client::new().put(url).header("content-type", "application/json");
    if let Some((user, password)) = server.credentials() {
        req = req.basic_auth(user, Some(password));
    }
    let resp = req.body(body).send().await.expect("PUT");
    assert!(resp.status().is_success(), "PUT {id}: {}", resp.status());
}

/// A lone surrogate and a value nested 200 levels deep (past serde_json's limit of 128) are
/// stored by the server; every read decodes them (repaired and named), a follower goes past
/// them to later changes, and its board lists them.
#[tokio::test]
async fn documents_a_parser_refuses_are_repaired_and_named_not_fatal() {
    let store = couch();
    let db = unique_db("hostile");
    store.create_db(&db).await.unwrap();
    put_raw(&db, "sur1", r#"{"name":"x\ud800","ok":1}"#.into()).await;
    let deep = format!(r#"{{"x":{}1{},"ok":2}}"#, "[".repeat(200), "]".repeat(200));
    put_raw(&db, "deep1", deep).await;
    store.put(&db, json!({"_id": "plain", "ok": 3})).await.unwrap();

    let doc = store.get(&db, "sur1").await.unwrap().unwrap();
    assert_eq!(doc["name"], "x\u{fffd}");
    let page = store.changes(&db, &docstore::ChangesQuery::since(Seq::zero())).await.unwrap();
    assert_eq!(page.results.len(), 3, "{page:?}");
    let named: Vec<_> = page.issues.iter().filter_map(|i| i.id.as_deref()).collect();
    assert!(named.contains(&"sur1") && named.contains(&"deep1"), "{:?}", page.issues);
    assert!(page.issues.iter().all(|i| i.db == db.as_str() && i.seq.is_some()));
    let query = docstore::AllDocsQuery { include_docs: true, ..Default::default() };
    let all = store.all_docs(&db, &query).await.unwrap();
    assert_eq!(all.rows.len(), 3);
    assert_eq!(all.rows.iter().find(|r| r.id == "deep1").unwrap().doc.as_ref().unwrap()["ok"], 2);

    let board = docstore::FeedBoard::new();
    let mut options = docstore::FollowOptions::new("hostile");
    options.heartbeat = Duration::from_millis(500);
    options.board = Some(board.clone());
    let mut follower = docstore::follow(store.clone(), db.clone(), options);
    let mut wrote_late = false;
    let got_late = tokio::time::timeout(WAIT, async {
        while let Some(event) = follower.next().await {
            match event {
                docstore::FollowEvent::CaughtUp { .. } if !wrote_late => {
                    wrote_late = true;
                    put_raw(&db, "sur2", r#"{"name":"\udc00"}"#.into()).await;
                    store.put(&db, json!({"_id": "late"})).await.unwrap();
                }
                docstore::FollowEvent::Change(c) if c.id == "late" => return true,
                docstore::FollowEvent::Failed(e) => panic!("{e}"),
                _ => {}
            }
        }
        false
    })
    .await
    .expect("the later change arrives");
    assert!(got_late);
    let report = board.report();
    let named: Vec<_> = report.issues.iter().filter_map(|i| i.id.as_deref()).collect();
    for id in ["sur1", "deep1", "sur2"] {
        assert!(named.contains(&id), "{id} not in {:?}", report.issues);
    }
    assert!(!report.degraded(), "{report:?}");
    let status = follower.status().get();
    assert!(status.repaired_rows >= 3 && status.error_since.is_none(), "{status:?}");
}

/// A `PUT` is sent once: when its answer does not come in time the caller gets a timeout (not a
/// conflict from a second try), even if the server applies the write afterwards, and a re-read
/// shows the write applied exactly once. (A client that re-sent a timed-out `PUT` would get a
/// 409 for its own first write.)
#[tokio::test]
async fn a_timed_out_put_is_not_sent_again() {
    let server = CouchServer::shared();
    let admin = couch();
    let db = unique_db("put-once");
    admin.create_db(&db).await.unwrap();
    let first = admin.put(&db, json!({"_id": "d", "n": 1})).await.unwrap();

    let proxy = TcpProxy::start(server.url()).await;
    let mut config = couch_config(&proxy.url(), server);
    config.request_timeout = Duration::from_millis(300);
    let store = CouchStore::new(config).unwrap();
    proxy.stall();
    match store.put(&db, json!({"_id": "d", "_rev": first.0, "n": 2})).await {
        Err(e @ Error::Timeout { .. }) => assert!(e.is_transient()),
        other => panic!("a timeout, not {other:?}"),
    }
    // A stalled connection stays open at the proxy, so a second try (on a new connection, the
    // first being broken) would show here.
    assert_eq!(proxy.open_connections(), 1, "the PUT was sent on one connection, once");
    // The held request reaches the server now and is applied there.
    proxy.resume();
    let deadline = tokio::time::Instant::now() + WAIT;
    let doc = loop {
        let doc = admin.get(&db, "d").await.unwrap().expect("the document");
        if doc["n"] == 2 || tokio::time::Instant::now() > deadline {
            break doc;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(doc["n"], 2, "the delayed PUT was applied");
    assert!(doc["_rev"].as_str().unwrap().starts_with("2-"), "applied once: {doc}");
    admin.delete_db(&db).await.unwrap();
}

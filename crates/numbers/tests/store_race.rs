//! Racing instances (`knm_numbers:save_numbers/1` and the race requirement): every transition is a
//! `_rev` compare-and-swap; a loser re-reads, re-decides against the winner's state and gets a
//! clean `knm_errors` error. Each `NumberStore` below is a separate instance (its own client) over the same
//! database, like separate processes. Fresh number areas per test keep the shared server's
//! databases apart.

mod common;

use std::sync::Arc;

use common::*;
use docstore::SharedStore;
use e164::E164;
use numbers::lifecycle::Move;
use numbers::store::{NumberStore, RunOptions};
use numbers::{AccountInfo, AccountMap, AuthBy, Config, NumberDoc, NumberState, Operation};
use serde_json::Value;

fn account(i: usize) -> String {
    format!("account{:025}", 100 + i)
}

async fn seed(store: &SharedStore, number: &E164, state: NumberState, owner: Option<&str>) {
    let mut doc = NumberDoc::new(number, state, "knm_local", 63_700_000_000);
    if let Some(o) = owner {
        doc.assigned_to = Some(acc(o));
        doc.reserve_history = vec![acc(o)];
    }
    let dbn = db(&doc.db().unwrap());
    store.ensure_db(&dbn).await.unwrap();
    store.put(&dbn, doc.to_json()).await.unwrap();
}

/// 50 concurrent reservations of one available number, each by a different account for itself:
/// exactly one succeeds, 49 get `forbidden` (the number is now someone else's reservation), and
/// the stored document is the winner's: reserved, assigned to it, history [winner], its copy in
/// the winner's account database only.
async fn fifty_reservations(make_store: fn() -> SharedStore) {
    let store = make_store();
    let area = fresh_area(&store).await;
    let number = E164::new(format!("{area}5550123")).unwrap();
    seed(&store, &number, NumberState::Available, None).await;
    for i in 0..50 {
        store.ensure_db(&db(&acc(&account(i)).db_name().to_string())).await.unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..50 {
        let ns = NumberStore::new(make_store(), Config::kazoo_defaults(), AccountMap::new());
        let number = number.clone();
        tasks.push(tokio::spawn(async move {
            let me = account(i);
            let opts = RunOptions::by(AuthBy::parse(&me).unwrap());
            (
                me.clone(),
                ns.apply(&number, &Operation::Reserve { assign_to: Some(acc(&me)) }, &opts).await,
            )
        }));
    }
    let mut winners = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (me, r) = t.await.unwrap();
        match r {
            Ok(d) => winners.push((me, d)),
            Err(e) => errors.push(e.to_json()),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one reservation wins; errors: {errors:?}");
    assert_eq!(errors.len(), 49);
    for e in &errors {
        assert_eq!(e["error"], "forbidden", "a clean `knm_errors` error: {e}");
        assert_eq!(e["code"], 403);
    }
    let (winner, decision) = &winners[0];
    let stored = raw(&store, &format!("numbers/{area}"), number.as_str()).await.unwrap();
    assert_eq!(stored["pvt_state"], "reserved");
    assert_eq!(stored["pvt_assigned_to"], winner.as_str());
    assert_eq!(stored["pvt_reserve_history"], serde_json::json!([winner]));
    assert_eq!(stored["_rev"].as_str(), decision.doc.rev.as_deref());
    assert!(stored["_rev"].as_str().unwrap().starts_with("2-"), "one write after the seed");
    for i in 0..50 {
        let c = raw(&store, &acc(&account(i)).db_name().to_string(), number.as_str()).await;
        assert_eq!(c.is_some(), account(i) == *winner, "only the winner holds a copy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reservations_embedded() {
    // One embedded store shared by the "instances" (it is one process's database).
    static STORE: std::sync::OnceLock<SharedStore> = std::sync::OnceLock::new();
    fn shared() -> SharedStore {
        STORE.get_or_init(embedded).clone()
    }
    fifty_reservations(shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reservations_couchdb() {
    fifty_reservations(couch).await;
}

/// Release by the owner against activations by its sub-accounts, all at once, repeated: the
/// outcomes are those of some serial order. Either the release ran first (the number is gone,
/// every activation `not_found`), or one activation won (the others `forbidden`) and the
/// release then released that sub-account's number (the owner is its parent) — never two
/// activations, never a lost update; the account copies match the final document, and the
/// reserve history is the one that serial order writes: the seed's `[reseller]` kept by an
/// activation (a move to `in_service` does not push, `knm_number_states`' transition table), emptied by the release's unwind
/// (`knm_numbers:release/2` step 6, one entry: unassigned), whose previous owner is whoever held the number last.
async fn release_vs_activate(make_store: fn() -> SharedStore) {
    let store = make_store();
    let reseller = account(90);
    let mut accounts = AccountMap::new();
    let kids: Vec<String> = (0..8).map(|i| account(60 + i)).collect();
    for k in &kids {
        accounts.insert(AccountInfo {
            id: acc(k),
            tree: vec![acc(&reseller)],
            superduper_admin: false,
            allow_additions: false,
            enabled: true,
            reseller_id: None,
        });
        store.ensure_db(&db(&acc(k).db_name().to_string())).await.unwrap();
    }
    store.ensure_db(&db(&acc(&reseller).db_name().to_string())).await.unwrap();
    let area = fresh_area(&store).await;
    for round in 0..5 {
        let number = E164::new(format!("{area}55501{round:02}")).unwrap();
        seed(&store, &number, NumberState::Reserved, Some(&reseller)).await;
        let accounts = Arc::new(accounts.clone());
        let mut tasks = Vec::new();
        {
            let ns = NumberStore::new(make_store(), Config::kazoo_defaults(), (*accounts).clone());
            let number = number.clone();
            let opts = RunOptions::by(AuthBy::parse(&reseller).unwrap());
            tasks.push(tokio::spawn(async move {
                ("release".to_owned(), ns.apply(&number, &Operation::Release, &opts).await)
            }));
        }
        for k in &kids {
            let ns = NumberStore::new(make_store(), Config::kazoo_defaults(), (*accounts).clone());
            let number = number.clone();
            let k = k.clone();
            tasks.push(tokio::spawn(async move {
                let op = Operation::Move(Move { assign_to: Some(acc(&k)), ..Move::default() });
                let opts = RunOptions::by(AuthBy::parse(&k).unwrap());
                (k, ns.apply(&number, &op, &opts).await)
            }));
        }
        let mut released = None;
        let mut activated = Vec::new();
        let mut errors: Vec<Value> = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (who, Ok(d)) if who == "release" => released = Some(d),
                (who, Ok(_)) => activated.push(who),
                (_, Err(e)) => errors.push(e.to_json()),
            }
        }
        assert!(activated.len() <= 1, "two activations won: {activated:?}");
        let stored = raw(&store, &format!("numbers/{area}"), number.as_str()).await;
        match (&released, activated.first()) {
            (Some(r), None) => {
                // Release first: local number, history [reseller] → hard-deleted.
                assert_eq!(r.doc.state, NumberState::Deleted);
                assert!(stored.is_none());
                assert!(r.doc.reserve_history.is_empty(), "{:?}", r.doc.reserve_history);
                assert_eq!(r.doc.prev_assigned_to, Some(acc(&reseller)), "released the reseller's");
                assert!(errors.iter().all(|e| e["error"] == "not_found"), "{errors:?}");
            }
            (Some(r), Some(kid)) => {
                // An activation, then the parent's release of it.
                assert_eq!(r.doc.state, NumberState::Deleted);
                assert!(stored.is_none());
                assert!(r.doc.reserve_history.is_empty(), "{:?}", r.doc.reserve_history);
                assert_eq!(r.doc.prev_assigned_to, Some(acc(kid)), "released the winner's");
                assert!(
                    errors.iter().all(|e| e["error"] == "forbidden" || e["error"] == "not_found"),
                    "{errors:?}"
                );
            }
            (None, Some(kid)) => {
                let s = stored.as_ref().expect("activated number stays");
                assert_eq!(s["pvt_state"], "in_service");
                assert_eq!(s["pvt_assigned_to"], kid.as_str());
                assert_eq!(s["pvt_reserve_history"], serde_json::json!([reseller]));
                assert_eq!(s["pvt_previously_assigned_to"], reseller.as_str());
            }
            (None, None) => panic!("nobody won: {errors:?}"),
        }
        assert!(
            errors.iter().all(|e| e["code"].as_u64().is_some()),
            "only `knm_errors` errors: {errors:?}"
        );
        // The copies agree with the number database.
        let owner = stored.as_ref().and_then(|s| s["pvt_assigned_to"].as_str().map(str::to_owned));
        for a in kids.iter().chain(std::iter::once(&reseller)) {
            let c = raw(&store, &acc(a).db_name().to_string(), number.as_str()).await;
            assert_eq!(c.is_some(), owner.as_deref() == Some(a.as_str()), "copy in {a}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_vs_activate_embedded() {
    static STORE: std::sync::OnceLock<SharedStore> = std::sync::OnceLock::new();
    fn shared() -> SharedStore {
        STORE.get_or_init(embedded).clone()
    }
    release_vs_activate(shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_vs_activate_couchdb() {
    release_vs_activate(couch).await;
}

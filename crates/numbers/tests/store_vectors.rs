//! Kazoo's number vectors end-to-end: the store layer over Kazoo's fixturedb documents, on the
//! embedded store and on the CouchDB-compatible server. Each test names its vector; the
//! persistence checks (`knm_numbers:save_numbers/1`: number db, account copy, previous owner's copy, dirty tracking,
//! migration on write) read the stored documents back.

mod common;

use common::*;
use docstore::SharedStore;
use e164::E164;
use numbers::lifecycle::{Create, Move};
use numbers::store::RunOptions;
use numbers::{AuthBy, NumberState, Operation};
use serde_json::Value;

const AVAIL: &str = "+15551239876";
const INSVC: &str = "+15551233322";
const BADCARRIER: &str = "+15551233337";
const HIST: &str = "+15551255693";
const RESV: &str = "+14252151010";
const NEW: &str = "+15559871234";
const PORTIN: &str = "+14252151007";
const TELNYX: &str = "+14352154006";
const NEWPORT: &str = "+19042471591";

fn n(s: &str) -> E164 {
    E164::new(s).unwrap()
}

fn by(a: &str) -> RunOptions {
    RunOptions::by(AuthBy::parse(a).unwrap())
}

fn reserve(to: &str) -> Operation {
    Operation::Reserve { assign_to: Some(acc(to)) }
}

fn activate(to: &str) -> Operation {
    Operation::Move(Move { assign_to: Some(acc(to)), ..Move::default() })
}

async fn copy(store: &SharedStore, account: &str, number: &str) -> Option<Value> {
    raw(store, &acc(account).db_name().to_string(), number).await
}

/// B1/B4/B7: get reads the stored doc, not dirty; a missing number is `not_found` (404).
async fn get_vectors(store: SharedStore) {
    let ns = fixture_store(store.clone()).await;
    let d = ns.apply(&n(AVAIL), &Operation::Get, &RunOptions::default()).await.unwrap();
    assert!(!d.dirty && d.writes.is_empty());
    assert_eq!((d.doc.state, d.doc.module_name.as_str()), (NumberState::Available, "knm_local"));
    assert!(d.doc.rev.is_some(), "B8: non-empty _rev");
    let e = ns.apply(&n(NEW), &Operation::Get, &RunOptions::default()).await.unwrap_err();
    assert_eq!(e.to_json()["error"], "not_found");
    assert_eq!(e.code(), 404);
    // B5 through apply_many: duplicates collapse, failures keyed as given.
    let out = ns
        .apply_many(
            &[AVAIL, "NOT a number", AVAIL, "NOT a number", NEW],
            &Operation::Get,
            &RunOptions::default(),
        )
        .await;
    assert_eq!(out.ok.len(), 1);
    assert_eq!(out.ko.len(), 2);
    assert_eq!(out.to_json()["error"]["NOT a number"], "not_reconcilable");
}
both_backends!(b_get, super::get_vectors);

/// C1 + `knm_numbers:save_numbers/1`: create of a new number by MASTER for RESELLER writes the number db (a new db
/// `numbers/+1555` doc) and the copy in RESELLER's db; C8: an in_service number is 409.
async fn create_vectors(store: SharedStore) {
    let ns = fixture_store(store.clone()).await;
    let op = Operation::Create(Create { assign_to: Some(acc(RESELLER)), ..Create::default() });
    let d = ns.apply(&n(NEW), &op, &by(MASTER)).await.unwrap();
    assert_eq!(d.doc.state, NumberState::InService);
    assert_eq!(d.doc.assigned_to.as_ref().map(|a| a.as_str()), Some(RESELLER));
    let stored = raw(&store, "numbers/+1555", NEW).await.expect("saved in numbers/+1555");
    assert_eq!(stored["pvt_state"], "in_service");
    assert_eq!(stored["pvt_assigned_to"], RESELLER);
    assert_eq!(stored["_rev"].as_str(), d.doc.rev.as_deref());
    let c = copy(&store, RESELLER, NEW).await.expect("C1: account copy");
    assert_eq!(c["pvt_state"], "in_service");
    assert_eq!(c["pvt_assigned_to"], RESELLER);
    let e = ns.apply(&n(INSVC), &op, &RunOptions::default()).await.unwrap_err();
    assert_eq!(e.to_json()["error"], "number_exists");
    assert_eq!(e.to_json()["cause"], INSVC);
    assert_eq!(e.code(), 409);
    // C4: RESELLER may not add numbers without pvt_wnm_allow_additions... the fixture grants it
    // to RESELLER; CHILD has none.
    let e = ns
        .apply(
            &n("+15559871299"),
            &Operation::Create(Create { assign_to: Some(acc(CHILD)), ..Create::default() }),
            &by(CHILD),
        )
        .await
        .unwrap_err();
    assert_eq!(e.to_json()["error"], "forbidden");
    // C14: a number in an open port request.
    let mut op = Create { assign_to: Some(acc(RESELLER)), ..Create::default() };
    op.number_is_porting = ns.is_porting(&n(NEWPORT)).await.unwrap();
    let e = ns.apply(&n(NEWPORT), &Operation::Create(op), &by(RESELLER)).await.unwrap_err();
    assert_eq!(e.to_json()["error"], "number_is_porting");
}
both_backends!(c_create, super::create_vectors);

/// C9 / `knm_number_options:dry_run`: dry run returns the would-be result and writes nothing.
async fn dry_run_vectors(store: SharedStore) {
    let ns = fixture_store(store.clone()).await;
    let before = raw(&store, "numbers/+1555", AVAIL).await.unwrap();
    let opts = RunOptions { dry_run: true, ..by(MASTER) };
    let d = ns.apply(&n(AVAIL), &activate(RESELLER), &opts).await.unwrap();
    assert!(d.dry_run && d.writes.is_empty() && d.carrier_call.is_none());
    assert_eq!(d.doc.state, NumberState::InService);
    assert_eq!(raw(&store, "numbers/+1555", AVAIL).await.unwrap(), before);
    assert!(copy(&store, RESELLER, AVAIL).await.is_none());
    let op = Operation::Create(Create { assign_to: Some(acc(RESELLER)), ..Create::default() });
    let d = ns.apply(&n(NEW), &op, &opts).await.unwrap();
    assert_eq!(d.doc.state, NumberState::InService);
    assert!(raw(&store, "numbers/+1555", NEW).await.is_none());
}
both_backends!(dry_run, super::dry_run_vectors);

/// D1/D5/D4 + `knm_numbers:save_numbers/1`: moving writes the new owner's copy and removes the previous owner's.
async fn move_vectors(store: SharedStore) {
    let ns = fixture_store(store.clone()).await;
    // D4: UNRELATED may not take RESELLER's reservation.
    let e = ns.apply(&n(RESV), &activate(UNRELATED), &by(UNRELATED)).await.unwrap_err();
    assert_eq!(e.to_json()["error"], "forbidden");
    // D3: SYSTEM moves it to CHILD.
    let d = ns.apply(&n(RESV), &activate(CHILD), &RunOptions::default()).await.unwrap();
    assert_eq!(d.doc.state, NumberState::InService);
    assert!(copy(&store, CHILD, RESV).await.is_some(), "new owner's copy");
    // Then to MASTER: CHILD's copy goes (prev_assigned_to), MASTER's appears.
    ns.apply(&n(RESV), &activate(MASTER), &RunOptions::default()).await.unwrap();
    assert!(copy(&store, CHILD, RESV).await.is_none(), "previous owner's copy removed");
    assert_eq!(copy(&store, MASTER, RESV).await.unwrap()["pvt_assigned_to"], MASTER);
    let stored = raw(&store, "numbers/+1425", RESV).await.unwrap();
    assert_eq!(stored["pvt_assigned_to"], MASTER);
    assert_eq!(stored["pvt_previously_assigned_to"], CHILD);
    // D1: AVAIL to CHILD by SYSTEM.
    let d = ns.apply(&n(AVAIL), &activate(CHILD), &RunOptions::default()).await.unwrap();
    assert_eq!(d.doc.assigned_to.unwrap().as_str(), CHILD);
}
both_backends!(d_move, super::move_vectors);

/// E1–E4: reserve and its history; E2 without assign_to is assign_failure.
async fn reserve_vectors(store: SharedStore) {
    let ns = fixture_store(store.clone()).await;
    let d = ns.apply(&n(AVAIL), &reserve(RESELLER), &by(MASTER)).await.unwrap();
    assert_eq!(d.doc.state, NumberState::Reserved);
    assert_eq!(
        raw(&store, "numbers/+1555", AVAIL).await.unwrap()["pvt_reserve_history"],
        serde_json::json!([RESELLER])
    );
    let e = ns
        .apply(&n(INSVC), &Operation::Reserve { assign_to: None }, &RunOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_json(),
        serde_json::json!({"code": 400, "error": "assign_failure", "cause": "field_undefined",
                           "message": "invalid account to assign to"})
    );
    let d = ns.apply(&n(INSVC), &reserve(CHILD), &RunOptions::default()).await.unwrap();
    let hist: Vec<&str> = d.doc.reserve_history.iter().map(|a| a.as_str()).collect();
    assert_eq!(hist, [CHILD, RESELLER], "E4");
}
both_backends!(e_reserve, super::reserve_vectors);

/// F8/F10 + `knm_phone_number`'s dirty tracking: an unchanged write is a no-op (same `_rev`); a change is written.
async fn dirty_vectors(store: SharedStore) {
    let ns = fixture_store(store.clone()).await;
    let rev0 = raw(&store, "numbers/+1555", INSVC).await.unwrap()["_rev"].clone();
    let same = Operation::AssignToApp { used_by: Some("callflow".into()) };
    let d = ns.apply(&n(INSVC), &same, &RunOptions::default()).await.unwrap();
    assert!(!d.dirty && d.writes.is_empty());
    assert_eq!(raw(&store, "numbers/+1555", INSVC).await.unwrap()["_rev"], rev0, "no write");
    let app = Operation::AssignToApp { used_by: Some("my_app".into()) };
    let d = ns.apply(&n(INSVC), &app, &RunOptions::default()).await.unwrap();
    assert!(d.dirty);
    let stored = raw(&store, "numbers/+1555", INSVC).await.unwrap();
    assert_ne!(stored["_rev"], rev0);
    assert_eq!(stored["pvt_used_by"], "my_app");
    assert_eq!(copy(&store, RESELLER, INSVC).await.unwrap()["pvt_used_by"], "my_app");
}
both_backends!(f_dirty, super::dirty_vectors);

/// G2/G4/G6/G7: release; local numbers are hard-deleted (docs gone from both databases).
async fn release_vectors(store: SharedStore) {
    let ns = fixture_store(store.clone()).await;
    let d = ns.apply(&n(INSVC), &Operation::Release, &by(RESELLER)).await.unwrap();
    assert_eq!(d.doc.state, NumberState::Deleted, "G6");
    assert!(raw(&store, "numbers/+1555", INSVC).await.is_none());
    let d = ns.apply(&n(HIST), &Operation::Release, &RunOptions::default()).await.unwrap();
    assert_eq!(d.doc.state, NumberState::Reserved, "G7");
    assert_eq!(d.doc.assigned_to.as_ref().unwrap().as_str(), MASTER);
    assert!(copy(&store, MASTER, HIST).await.is_some());
    assert!(copy(&store, RESELLER, HIST).await.is_none());
    let d = ns.apply(&n(BADCARRIER), &Operation::Release, &RunOptions::default()).await.unwrap();
    assert_eq!(d.doc.state, NumberState::Available, "G4");
    assert!(d.doc.assigned_to.is_none());
    assert_eq!(raw(&store, "numbers/+1555", BADCARRIER).await.unwrap()["pvt_state"], "available");
    let e = ns.apply(&n(TELNYX), &Operation::Release, &RunOptions::default()).await.unwrap_err();
    assert_eq!(e.to_json()["error"], "invalid_state_transition", "G3");
    let d = ns.apply(&n(AVAIL), &Operation::Release, &RunOptions::default()).await.unwrap();
    assert_eq!(d.doc.state, NumberState::Deleted, "G2");
    let e = ns.apply(&n(NEW), &Operation::Release, &RunOptions::default()).await.unwrap_err();
    assert_eq!(e.to_json()["error"], "not_found", "G1");
}
both_backends!(g_release, super::release_vectors);

/// H1/H3: hard delete by an admin removes the number doc and the owner's copy; others 403.
async fn delete_vectors(store: SharedStore) {
    let ns = fixture_store(store.clone()).await;
    ns.apply(
        &n(INSVC),
        &Operation::AssignToApp { used_by: Some("x".into()) },
        &RunOptions::default(),
    )
    .await
    .unwrap();
    assert!(copy(&store, RESELLER, INSVC).await.is_some());
    let e = ns.apply(&n(INSVC), &Operation::Delete, &by(RESELLER)).await.unwrap_err();
    assert_eq!(e.code(), 403, "H3");
    let d = ns.apply(&n(INSVC), &Operation::Delete, &by(MASTER)).await.unwrap();
    assert_eq!(d.doc.state, NumberState::Deleted);
    assert!(d.doc.features_list().contains(&"local".to_owned()), "H1");
    assert!(raw(&store, "numbers/+1555", INSVC).await.is_none());
    assert!(copy(&store, RESELLER, INSVC).await.is_none());
}
both_backends!(h_delete, super::delete_vectors);

/// L1/L2/L4/L6/L7: lookup_account from the store (port requests included).
async fn lookup_vectors(store: SharedStore) {
    let ns = fixture_store(store.clone()).await;
    let l = ns.lookup_account(&n(PORTIN)).await.unwrap();
    assert!(l.force_outbound && l.pending_port, "L1");
    assert_eq!(l.account_id.as_str(), RESELLER);
    let e = ns.lookup_account(&n(TELNYX)).await.unwrap_err();
    assert_eq!(e.to_json()["error"], "not_in_service", "L2");
    assert!(ns.lookup_account(&n(INSVC)).await.unwrap().force_outbound, "L4");
    assert!(!ns.lookup_account(&n(BADCARRIER)).await.unwrap().force_outbound, "L6");
    let l = ns.lookup_account(&n(NEWPORT)).await.unwrap();
    assert!(l.force_outbound && l.pending_port && l.account_id.as_str() == RESELLER, "L7");
}
both_backends!(l_lookup, super::lookup_vectors);

/// M1/M3 + `knm_phone_number`'s dirty tracking: a legacy document loads migrated (dirty), and the next write stores the
/// current form (integers for the timestamps, `pvt_state` instead of `pvt_number_state`).
async fn migration_vectors(store: SharedStore) {
    let ns = fixture_store(store.clone()).await;
    let d = ns.apply(&n("+12014370855"), &Operation::Get, &RunOptions::default()).await.unwrap();
    assert!(d.dirty, "M3: migrated on load");
    let before = raw(&store, "numbers/+1201", "+12014370855").await.unwrap();
    assert!(before.get("pvt_number_state").is_some());
    let op = Operation::Update(numbers::lifecycle::Update::default());
    ns.apply(&n("+12014370855"), &op, &RunOptions::default()).await.unwrap();
    let after = raw(&store, "numbers/+1201", "+12014370855").await.unwrap();
    assert!(after.get("pvt_number_state").is_none());
    assert_eq!(after["pvt_state"], "in_service");
    assert_eq!(after["pvt_created"], 63637990840i64);
    // Written once: a second identical update is a no-op.
    let rev = after["_rev"].clone();
    ns.apply(&n("+12014370855"), &op, &RunOptions::default()).await.unwrap();
    assert_eq!(raw(&store, "numbers/+1201", "+12014370855").await.unwrap()["_rev"], rev);
}
both_backends!(m_migration, super::migration_vectors);

/// `knm_phone_number:save/1` (doc id = the E.164 number): saving into a number database that does not exist creates it with the design docs.
async fn creates_missing_db(store: SharedStore) {
    let ns = numbers::store::NumberStore::from_store(store.clone()).await.unwrap();
    let area = fresh_area(&store).await;
    let number = n(&format!("{area}5550100"));
    let op = Operation::Create(Create { assign_to: Some(acc(RESELLER)), ..Create::default() });
    ns.apply(&number, &op, &RunOptions::default()).await.unwrap();
    let dbn = format!("numbers/{area}");
    assert!(raw(&store, &dbn, number.as_str()).await.is_some());
    assert!(raw(&store, &dbn, "_design/numbers").await.is_some());
}
both_backends!(s1_5_missing_db, super::creates_missing_db);

/// The store layer's futures are `Send`: the daemon runs them on its multi-threaded runtime.
#[test]
fn futures_are_send() {
    fn assert_send<T: Send>(_: T) {}
    let ns = numbers::store::NumberStore::new(
        embedded(),
        numbers::Config::kazoo_defaults(),
        numbers::AccountMap::new(),
    );
    let number = n(AVAIL);
    let opts = RunOptions::default();
    let acct = acc(RESELLER);
    let progress = |_: usize| {};
    assert_send(ns.apply(&number, &Operation::Get, &opts));
    assert_send(ns.apply_many(&[AVAIL], &Operation::Get, &opts));
    assert_send(ns.lookup_account(&number));
    assert_send(ns.search("415", 1));
    assert_send(ns.search_for("415", 1, Some(&acct)));
    assert_send(ns.generate(numbers::carriers::Pool::Managed, &acct, 14155550000, 1, &progress));
    assert_send(ns.import_csv(&b"number\n"[..], &progress));
    assert_send(ns.load(&number));
}

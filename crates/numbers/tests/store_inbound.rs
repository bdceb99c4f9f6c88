//! The inbound table over both backends: built from the number databases, kept live from their
//! change feeds (writes, deletions, a new number database), `identify` from the table.

mod common;

use std::time::Duration;

use common::*;
use docstore::SharedStore;
use e164::E164;
use numbers::inbound::{InboundOptions, InboundTable};
use numbers::lifecycle::Move;
use numbers::store::RunOptions;
use numbers::{AccountMap, Config, NumberState, Operation};

/// Generous upper bound for a condition the table must reach.
const BOUND: Duration = Duration::from_secs(60);

fn n(s: &str) -> E164 {
    E164::new(s).unwrap()
}

async fn live_table(store: SharedStore) {
    let ns = fixture_store(store.clone()).await;
    let opts =
        InboundOptions { poll_every: Duration::from_millis(200), ..InboundOptions::defaults() };
    let table = InboundTable::start(store.clone(), opts);
    let (config, accounts) = (Config::kazoo_defaults(), AccountMap::new());
    tokio::time::timeout(BOUND, table.wait_caught_up()).await.expect("caught up");
    assert!(table.is_caught_up());
    let insvc = table.lookup(&n("+15551233322")).expect("INSVC in the table");
    assert_eq!(insvc.account.as_ref().unwrap().as_str(), RESELLER);
    assert_eq!(insvc.state, NumberState::InService);
    assert_eq!(insvc.used_by.as_deref(), Some("callflow"));
    assert!(insvc.features.contains(&"local".to_owned()));
    assert!(insvc.is_on_net());
    let l = table.identify(&n("+14252151007"), &config, &accounts).unwrap();
    assert!(l.force_outbound && l.pending_port, "L1 from the table");
    assert_eq!(
        table.identify(&n("+14352154006"), &config, &accounts).unwrap_err().to_json()["error"],
        "not_in_service"
    );
    assert!(table.status().numbers >= 20);

    // A transition through the store layer shows up.
    let op = Operation::Move(Move { assign_to: Some(acc(CHILD)), ..Move::default() });
    ns.apply(&n("+15551239876"), &op, &RunOptions::default()).await.unwrap();
    tokio::time::timeout(
        BOUND,
        table
            .wait_for(&n("+15551239876"), |e| e.is_some_and(|e| e.state == NumberState::InService)),
    )
    .await
    .expect("move seen");
    assert_eq!(table.lookup(&n("+15551239876")).unwrap().account.as_ref().unwrap().as_str(), CHILD);

    // A hard delete disappears.
    ns.apply(&n("+15551233322"), &Operation::Release, &RunOptions::default()).await.unwrap();
    tokio::time::timeout(BOUND, table.wait_for(&n("+15551233322"), |e| e.is_none()))
        .await
        .expect("delete seen");

    // A number in a database created after start.
    let area = fresh_area(&store).await;
    let fresh = n(&format!("{area}5550777"));
    let create = Operation::Create(numbers::lifecycle::Create {
        assign_to: Some(acc(RESELLER)),
        ..Default::default()
    });
    ns.apply(&fresh, &create, &RunOptions::default()).await.unwrap();
    tokio::time::timeout(BOUND, table.wait_for(&fresh, |e| e.is_some()))
        .await
        .expect("new database followed");
    assert_eq!(table.identify(&fresh, &config, &accounts).unwrap().account_id.as_str(), RESELLER);
}
both_backends!(live, super::live_table);

/// A deleted number database leaves the table and a recreated one is read again; a 3.22 document
/// whose features are still a list (derived from its public fields, which the followers do not
/// fetch) is read whole.
async fn db_lifecycle(store: SharedStore) {
    let area = fresh_area(&store).await;
    let db = docstore::DbName::new(format!("numbers/{area}")).unwrap();
    store.ensure_db(&db).await.unwrap();
    let (plain, legacy) = (n(&format!("{area}5550100")), n(&format!("{area}5550101")));
    let plain_doc = serde_json::json!({"_id": plain.as_str(), "pvt_state": "in_service",
        "pvt_module_name": "knm_local", "pvt_assigned_to": RESELLER, "pvt_used_by": "callflow",
        "my_key": "my string"});
    let legacy_doc = serde_json::json!({"_id": legacy.as_str(), "pvt_state": "in_service",
        "pvt_module_name": "wnm_bandwidth", "pvt_assigned_to": RESELLER,
        "pvt_features": ["force_outbound", "prepend"], "force_outbound": true,
        "prepend": {"enabled": true, "name": "ACME"}});
    store.bulk_docs(&db, vec![plain_doc.clone(), legacy_doc]).await.unwrap();
    let opts =
        InboundOptions { poll_every: Duration::from_millis(200), ..InboundOptions::defaults() };
    let table = InboundTable::start(store.clone(), opts);
    let (config, accounts) = (Config::kazoo_defaults(), AccountMap::new());
    tokio::time::timeout(BOUND, table.wait_caught_up()).await.expect("caught up");
    assert!(table.is_on_net(&plain));
    assert!(table.with_entry(&plain, |e| e.unwrap().doc.public.is_empty()));
    let l = table.identify(&legacy, &config, &accounts).unwrap();
    assert!(l.force_outbound, "force_outbound from the public field of a 3.22 document");
    assert_eq!(l.prepend.as_deref(), Some("ACME"));
    assert_eq!(table.lookup(&legacy).unwrap().module, "knm_bandwidth2");

    store.delete_db(&db).await.unwrap();
    tokio::time::timeout(BOUND, table.wait_for(&plain, |e| e.is_none()))
        .await
        .expect("a deleted database leaves the table");
    assert!(table.lookup(&legacy).is_none());

    store.ensure_db(&db).await.unwrap();
    store.bulk_docs(&db, vec![plain_doc]).await.unwrap();
    tokio::time::timeout(BOUND, table.wait_for(&plain, |e| e.is_some()))
        .await
        .expect("a recreated database is read again");
    assert!(table.lookup(&legacy).is_none());
    store.delete_db(&db).await.unwrap();
}
both_backends!(lifecycle_of_dbs, super::db_lifecycle);

/// The static form: built from documents in hand.
#[test]
fn static_table() {
    let table = InboundTable::new();
    let doc = serde_json::json!({"_id": "+15550001111", "pvt_state": "in_service",
        "pvt_module_name": "knm_local", "pvt_assigned_to": RESELLER, "pvt_used_by": "callflow"});
    table.apply_doc(&doc);
    assert_eq!(table.lookup(&n("+15550001111")).unwrap().used_by.as_deref(), Some("callflow"));
    table.apply_doc(&serde_json::json!({"_id": "+15550001111", "_deleted": true}));
    assert!(table.lookup(&n("+15550001111")).is_none());
    assert!(table.is_caught_up());
}

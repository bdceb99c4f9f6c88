//! Kazoo's number vectors group K (and C19–C21, M13 "fix", M15) end-to-end: the feature providers
//! (`knm_providers:exec/2` and the feature providers it runs) run by the store layer over Kazoo's fixturedb documents, on the embedded store
//! and on the CouchDB-compatible server. Telnyx and Dash are wiremock servers (carrier APIs may
//! be mocked; CouchDB never is). Each test reads the stored documents back: what was written,
//! what was not (an unchanged replace keeps its `_rev`, `knm_phone_number`'s dirty tracking), the owner's account copy.
//!
//! The providers come from Kazoo's master fixturedb: MASTER's `configs_number_manager` names
//! `knm_telnyx_e911` / `knm_telnyx_cnam`, so RESELLER's numbers use Telnyx; CHILD's reseller
//! (RESELLER) sets nothing, so CHILD's numbers use Kazoo's defaults (`knm_dash_e911`).

mod common;

use common::*;
use docstore::SharedStore;
use e164::E164;
use numbers::lifecycle::{Create, PublicFields, Update};
use numbers::store::{NumberStore, RunOptions};
use numbers::{AuthBy, Decision, Error, NumberState, Operation};
use serde_json::{json, Map, Value};
use wiremock::matchers::{body_json, body_partial_json, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const INSVC: &str = "+15551233322";
const TELNYX: &str = "+14352154006";
const VITELITY: &str = "+18122154006";
const BW: &str = "+14122065197";
const NEW: &str = "+15559871234";
const OLD7: &str = "+13977031887";
const OLD5_1: &str = "+19377038881";
const ADDRESS: &str = "421564943280637078";
const DID_PATH: &str = r"^/origination/numbers/(%2B|\+)14352154006";

fn n(s: &str) -> E164 {
    E164::new(s).unwrap()
}

fn by(a: &str) -> RunOptions {
    RunOptions::by(AuthBy::parse(a).unwrap())
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn replace(v: Value) -> Operation {
    Operation::Update(Update {
        public_fields: Some(PublicFields::Replace(obj(v))),
        ..Update::default()
    })
}

fn merge(v: Value) -> Operation {
    Operation::Update(Update {
        public_fields: Some(PublicFields::Merge(obj(v))),
        ..Update::default()
    })
}

fn create_for(assign_to: &str, fields: Value) -> Operation {
    Operation::Create(Create {
        assign_to: Some(acc(assign_to)),
        public_fields: Some(obj(fields)),
        ..Create::default()
    })
}

fn fixture(rel: &str) -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/numbers").join(rel);
    std::fs::read_to_string(path).unwrap()
}

fn forbidden(e: &Error) -> bool {
    e.to_json()
        == json!({"code": 403, "error": "forbidden",
                  "message": "requestor is unauthorized to perform operation"})
}

fn number_db(number: &str) -> String {
    format!("numbers/{}", &number[..5])
}

async fn stored(store: &SharedStore, number: &str) -> Value {
    raw(store, &number_db(number), number).await.expect("stored number document")
}

async fn put(store: &SharedStore, db_name: &str, mut doc: Value) {
    let m = doc.as_object_mut().unwrap();
    m.remove("_rev");
    let id = m["_id"].as_str().unwrap().to_owned();
    if let Some(current) = raw(store, db_name, &id).await {
        m.insert("_rev".into(), current["_rev"].clone());
    }
    store.put(&db(db_name), doc).await.unwrap();
}

/// Kazoo's fixturedb, MASTER's provider config, Telnyx and Dash pointed at `server`.
async fn setup(store: &SharedStore, server: &MockServer) -> NumberStore {
    load_fixturedb(store).await;
    let config: Value =
        serde_json::from_str(&fixture("account-configs/master_configs_number_manager.json"))
            .unwrap();
    put(store, &acc(MASTER).db_name().to_string(), config).await;
    let sys = "system_config";
    put(
        store,
        sys,
        json!({"_id": "number_manager.telnyx",
               "default": {"base_url": format!("{}/origination", server.uri()),
                           "user": "telnyx-user", "token": "s3cret-token"}}),
    )
    .await;
    put(
        store,
        sys,
        json!({"_id": "number_manager.dash_e911",
               "default": {"emergency_provisioning_url": format!("{}/dash", server.uri()),
                           "auth_username": "u", "auth_password": "p"}}),
    )
    .await;
    NumberStore::from_store(store.clone()).await.expect("number store")
}

fn e911_k3() -> Value {
    json!({"street_address": "301 Marina Blvd.", "locality": "San Francisco", "region": "CA",
           "postal_code": "94123"})
}

async fn mock_telnyx_e911(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/origination/e911_addresses"))
        .and(body_partial_json(json!({"line_1": "301 MARINA BLVD", "city": "SAN FRANCISCO"})))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(fixture("carriers/telnyx_create_e911.json")),
        )
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(format!("{DID_PATH}/e911_settings$")))
        .and(body_json(json!({"e911_enabled": true, "e911_address_id": ADDRESS})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(fixture("carriers/telnyx_activate_e911.json")),
        )
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(format!("{DID_PATH}/e911_settings$")))
        .and(body_json(json!({"e911_enabled": false, "e911_address_id": null})))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(fixture("carriers/telnyx_delete_e911.json")),
        )
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/origination/e911_addresses/{ADDRESS}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(fixture("carriers/telnyx_delete_e911.json")),
        )
        .expect(1)
        .mount(server)
        .await;
}

/// K1, K2: external features refused with 403, nothing written.
async fn k1_k2(store: SharedStore) {
    let server = MockServer::start().await;
    let ns = setup(&store, &server).await;
    let before = stored(&store, INSVC).await;
    let op = replace(
        json!({"e911": {"street_address": "140 Geary St.", "extended_address": "3rd floor",
                                      "locality": "San Francisco", "region": "CA", "postal_code": "94108"}}),
    );
    let e = ns.apply(&n(INSVC), &op, &by(RESELLER)).await.unwrap_err();
    assert!(forbidden(&e), "K1 {e:?}");
    assert_eq!(stored(&store, INSVC).await, before, "K1: nothing written");
    let mut bw = stored(&store, BW).await;
    bw["pvt_features_denied"] = json!(["e911"]);
    put(&store, &number_db(BW), bw).await;
    let before = stored(&store, BW).await;
    let e =
        ns.apply(&n(BW), &replace(json!({"e911": e911_k3()})), &by(RESELLER)).await.unwrap_err();
    assert!(forbidden(&e), "K2 {e:?}");
    assert_eq!(stored(&store, BW).await, before, "K2: not dirty, nothing written");
    assert!(server.received_requests().await.unwrap().is_empty());
}
both_backends!(k1_k2_forbidden, super::k1_k2);

/// K3, K4 and the release fix: Telnyx e911 provisioned on create (address id stored in the
/// number database and the owner's copy); the same address again writes nothing; releasing the
/// number withdraws the address.
async fn k3_k4(store: SharedStore) {
    let server = MockServer::start().await;
    mock_telnyx_e911(&server).await;
    let ns = setup(&store, &server).await;
    let d = ns
        .apply(&n(TELNYX), &create_for(RESELLER, json!({"e911": e911_k3()})), &by(MASTER))
        .await
        .unwrap();
    assert!(d.dirty && d.doc.state == NumberState::InService);
    let doc = stored(&store, TELNYX).await;
    assert_eq!(doc["pvt_features"]["e911"], e911_k3(), "K3");
    assert_eq!(doc["e911"], e911_k3());
    assert_eq!(doc["pvt_carrier_data"]["address_id"], ADDRESS, "K3");
    let copy = raw(&store, &acc(RESELLER).db_name().to_string(), TELNYX).await.unwrap();
    assert_eq!(copy["pvt_carrier_data"]["address_id"], ADDRESS);
    // K4.
    let d =
        ns.apply(&n(TELNYX), &replace(json!({"e911": e911_k3()})), &by(RESELLER)).await.unwrap();
    assert!(!d.dirty && d.writes.is_empty());
    assert_eq!(stored(&store, TELNYX).await["_rev"], doc["_rev"], "K4: not written");
    // `knm_numbers:release/2` release (deviation: Kazoo never de-provisions here).
    let d = ns.apply(&n(TELNYX), &Operation::Release, &by(RESELLER)).await.unwrap();
    assert_eq!(d.doc.state, NumberState::Available);
    let doc = stored(&store, TELNYX).await;
    assert!(doc.get("pvt_features").is_none() && doc.get("e911").is_none());
    assert!(doc["pvt_carrier_data"].get("address_id").is_none());
    server.verify().await;
}
both_backends!(k3_k4_telnyx_e911, super::k3_k4);

/// K5–K7: Telnyx CNAM through the store.
async fn k5_k7(store: SharedStore) {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path_regex(format!("{DID_PATH}$")))
        .and(body_partial_json(json!({"cnam_listing_details": "my CNAM"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(fixture("carriers/telnyx_activate_cnam_outbound.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(format!("{DID_PATH}$")))
        .and(body_json(json!({"enable_caller_id_name": true})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(fixture("carriers/telnyx_activate_cnam_inbound.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(format!("{DID_PATH}$")))
        .and(body_json(json!({"enable_caller_id_name": false})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"enable_caller_id_name": false})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let ns = setup(&store, &server).await;
    let cnam = json!({"cnam": {"inbound_lookup": true, "display_name": "my CNAM"}});
    let d = ns.apply(&n(TELNYX), &create_for(RESELLER, cnam.clone()), &by(MASTER)).await.unwrap();
    assert!(d.dirty, "K5");
    let doc = stored(&store, TELNYX).await;
    assert_eq!(doc["pvt_features"]["inbound_cnam"]["inbound_lookup"], true, "K5");
    assert_eq!(doc["pvt_features"]["outbound_cnam"]["display_name"], "my CNAM", "K5");
    let d = ns.apply(&n(TELNYX), &replace(cnam), &by(RESELLER)).await.unwrap();
    assert!(!d.dirty, "K6");
    assert_eq!(stored(&store, TELNYX).await["_rev"], doc["_rev"], "K6: not written");
    let d = ns
        .apply(&n(TELNYX), &replace(json!({"inbound_lookup": false})), &by(RESELLER))
        .await
        .unwrap();
    assert!(d.dirty, "K7");
    let doc = stored(&store, TELNYX).await;
    assert!(doc.get("pvt_features").is_none(), "K7: features []");
    assert!(doc.get("cnam").is_none(), "K7: public cnam gone");
    server.verify().await;
}
both_backends!(k5_k7_telnyx_cnam, super::k5_k7);

/// K8–K13: `force_outbound` stored as a boolean, and what routing reads.
async fn k8_k13(store: SharedStore) {
    let server = MockServer::start().await;
    let ns = setup(&store, &server).await;
    let rs = by(RESELLER);
    ns.apply(&n(TELNYX), &create_for(RESELLER, json!({})), &rs).await.unwrap();
    let doc = stored(&store, TELNYX).await;
    assert!(doc.get("force_outbound").is_none() && doc.get("pvt_features").is_none(), "K8");
    assert!(!ns.lookup_account(&n(TELNYX)).await.unwrap().force_outbound, "K8");
    ns.apply(&n(TELNYX), &replace(json!({"force_outbound": true})), &rs).await.unwrap();
    let doc = stored(&store, TELNYX).await;
    assert_eq!(
        (doc["pvt_features"]["force_outbound"].clone(), doc["force_outbound"].clone()),
        (json!(true), json!(true)),
        "K9"
    );
    assert!(ns.lookup_account(&n(TELNYX)).await.unwrap().force_outbound, "K9");
    ns.apply(&n(TELNYX), &replace(json!({})), &rs).await.unwrap();
    let doc = stored(&store, TELNYX).await;
    assert!(doc.get("force_outbound").is_none() && doc.get("pvt_features").is_none(), "K11");
    ns.apply(&n(TELNYX), &merge(json!({"force_outbound": "false"})), &rs).await.unwrap();
    let doc = stored(&store, TELNYX).await;
    assert_eq!(
        (doc["pvt_features"]["force_outbound"].clone(), doc["force_outbound"].clone()),
        (json!(false), json!("false")),
        "K12"
    );
    assert!(!ns.lookup_account(&n(TELNYX)).await.unwrap().force_outbound, "K12");
    ns.apply(&n(TELNYX), &merge(json!({"force_outbound": "blabla"})), &rs).await.unwrap();
    let doc = stored(&store, TELNYX).await;
    assert!(doc.get("pvt_features").is_none() && doc["force_outbound"] == "blabla", "K10");
    assert!(!ns.lookup_account(&n(TELNYX)).await.unwrap().force_outbound, "K10");
    ns.apply(&n(TELNYX), &replace(json!({"force_outbound": false})), &rs).await.unwrap();
    let doc = stored(&store, TELNYX).await;
    assert_eq!(
        (doc["pvt_features"]["force_outbound"].clone(), doc["force_outbound"].clone()),
        (json!(false), json!(false)),
        "K13"
    );
    let d = ns.apply(&n(TELNYX), &replace(json!({"force_outbound": false})), &rs).await.unwrap();
    assert!(!d.dirty, "K13: repeated, not dirty");
    assert_eq!(stored(&store, TELNYX).await["_rev"], doc["_rev"]);
}
both_backends!(k8_k13_force_outbound, super::k8_k13);

/// K16–K21: `carrier_name` renames.
async fn k16_k21(store: SharedStore) {
    let server = MockServer::start().await;
    let ns = setup(&store, &server).await;
    let ms = by(MASTER);
    ns.apply(&n(TELNYX), &create_for(RESELLER, json!({})), &ms).await.unwrap();
    let e = ns.apply(&n(TELNYX), &merge(json!({"carrier_name": "blabla"})), &ms).await.unwrap_err();
    assert_eq!(e.to_json()["cause"], "'blabla' is not known by the system", "K17");
    ns.apply(&n(TELNYX), &replace(json!({"carrier_name": "local"})), &ms).await.unwrap();
    let doc = stored(&store, TELNYX).await;
    assert_eq!(doc["pvt_module_name"], "knm_local", "K16");
    assert_eq!(doc["pvt_features"], json!({"local": {}}), "K16");
    assert!(doc.get("carrier_name").is_none(), "K16");
    assert_eq!(
        raw(&store, &acc(RESELLER).db_name().to_string(), TELNYX).await.unwrap()["pvt_module_name"],
        "knm_local"
    );
    let d = ns.apply(&n(TELNYX), &replace(json!({})), &ms).await.unwrap();
    assert!(!d.dirty, "K18");
    assert_eq!(stored(&store, TELNYX).await["_rev"], doc["_rev"], "K18");
    let e = ns
        .apply(&n(TELNYX), &replace(json!({"carrier_name": "telnyx"})), &by(RESELLER))
        .await
        .unwrap_err();
    assert!(forbidden(&e), "K19 {e:?}");
    ns.apply(&n(TELNYX), &replace(json!({"carrier_name": "gen_carrier"})), &ms).await.unwrap();
    let doc = stored(&store, TELNYX).await;
    assert_eq!(doc["pvt_module_name"], "knm_gen_carrier", "K20");
    assert!(doc.get("pvt_features").is_none(), "K20: no local");
    ns.apply(&n(INSVC), &replace(json!({"carrier_name": "telnyx"})), &ms).await.unwrap();
    let doc = stored(&store, INSVC).await;
    assert_eq!(doc["pvt_module_name"], "knm_telnyx", "K21");
    assert!(doc.get("pvt_features").is_none(), "K21: local removed");
}
both_backends!(k16_k21_rename_carrier, super::k16_k21);

/// K22, K23: renaming VITELITY (with CNAM and prepend).
async fn k22_k23(store: SharedStore) {
    let server = MockServer::start().await;
    let ns = setup(&store, &server).await;
    let original = stored(&store, VITELITY).await;
    ns.apply(&n(VITELITY), &merge(json!({"carrier_name": "bandwidth"})), &by(MASTER))
        .await
        .unwrap();
    let doc = stored(&store, VITELITY).await;
    assert_eq!(doc["pvt_module_name"], "knm_bandwidth2", "K23");
    assert_eq!(doc["pvt_features"], original["pvt_features"], "K23: cnam + prepend kept");
    assert_eq!(doc["cnam"], original["cnam"], "K23");
    let ns = setup(&store, &server).await;
    ns.apply(&n(VITELITY), &merge(json!({"carrier_name": "local"})), &by(MASTER)).await.unwrap();
    let doc = stored(&store, VITELITY).await;
    assert_eq!(doc["pvt_module_name"], "knm_local", "K22");
    assert_eq!(doc["pvt_features"], json!({"local": {}, "prepend": original["prepend"]}), "K22");
    assert!(doc.get("cnam").is_none() && doc["prepend"] == original["prepend"], "K22");
    assert!(server.received_requests().await.unwrap().is_empty(), "unchanged CNAM: no Telnyx call");
}
both_backends!(k22_k23_rename_vitelity, super::k22_k23);

/// C19–C21: creating with `carrier_name`.
async fn c19_c21(store: SharedStore) {
    let server = MockServer::start().await;
    let ns = setup(&store, &server).await;
    let e = ns
        .apply(
            &n(NEW),
            &create_for(RESELLER, json!({"carrier_name": "wrong_carrier"})),
            &by(MASTER),
        )
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.to_json()["error"].clone()), (400, json!("invalid")), "C20");
    let e = ns
        .apply(&n(NEW), &create_for(RESELLER, json!({"carrier_name": "telnyx"})), &by(RESELLER))
        .await
        .unwrap_err();
    assert!(forbidden(&e), "C21 {e:?}");
    assert!(raw(&store, "numbers/+1555", NEW).await.is_none(), "nothing written by C20/C21");
    ns.apply(&n(NEW), &create_for(RESELLER, json!({"carrier_name": "telnyx"})), &by(MASTER))
        .await
        .unwrap();
    let doc = stored(&store, NEW).await;
    assert_eq!(doc["pvt_module_name"], "knm_telnyx", "C19");
    assert!(doc.get("carrier_name").is_none(), "C19");
}
both_backends!(c19_c21_carrier_name, super::c19_c21);

/// M13 "fix" and M15: `used_by` from the apps + denied features removed, written once; a number
/// with nothing to fix is not written.
async fn m13_m15(store: SharedStore) {
    let server = MockServer::start().await;
    let ns = setup(&store, &server).await;
    let fix = |used_by: Option<&str>| {
        Operation::Update(Update {
            used_by: used_by.map(str::to_owned),
            remove_denied_features: true,
            ..Update::default()
        })
    };
    let d = ns.apply(&n(OLD7), &fix(Some("trunkstore")), &by(CHILD)).await.unwrap();
    assert!(d.dirty, "M13");
    let doc = stored(&store, OLD7).await;
    assert_eq!(doc["pvt_used_by"], "trunkstore", "M13");
    assert_eq!(doc["pvt_features"], json!({"local": {}}), "M13: cnam features removed");
    let before = stored(&store, OLD5_1).await;
    let d = ns.apply(&n(OLD5_1), &fix(None), &by(RESELLER)).await.unwrap();
    assert!(!d.dirty, "M15");
    assert_eq!(stored(&store, OLD5_1).await["_rev"], before["_rev"], "M15: not written");
    assert!(server.received_requests().await.unwrap().is_empty());
}
both_backends!(m13_m15_fix, super::m13_m15);

/// Kazoo's feature providers (`knm_prepend`, `knm_failover`, …) `knm_dash_e911` through the store (CHILD's numbers use Kazoo's default provider), and
/// `knm_number_options:dry_run`: a dry run calls nothing and writes nothing.
async fn dash(store: SharedStore) {
    let server = MockServer::start().await;
    let location = |code: &str| {
        format!(
            "<?xml version=\"1.0\"?><ns2:r xmlns:ns2=\"urn:x\"><Location><address1>301 MARINA BLVD</address1>\
             <community>SAN FRANCISCO</community><locationid>77</locationid><postalcode>94123</postalcode>\
             <state>CA</state><status><code>{code}</code></status></Location></ns2:r>"
        )
    };
    Mock::given(method("POST"))
        .and(path("/dash/validatelocation"))
        .respond_with(ResponseTemplate::new(200).set_body_string(location("GEOCODED")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/dash/addlocation"))
        .respond_with(ResponseTemplate::new(200).set_body_string(location("PROVISIONED")))
        .expect(1)
        .mount(&server)
        .await;
    let ns = setup(&store, &server).await;
    let create = Operation::Create(Create {
        assign_to: Some(acc(CHILD)),
        module_name: Some("knm_bandwidth2".into()),
        public_fields: Some(obj(json!({"e911": e911_k3()}))),
        ..Create::default()
    });
    let dry = RunOptions { dry_run: true, ..by(MASTER) };
    let d: Decision = ns.apply(&n(NEW), &create, &dry).await.unwrap();
    assert!(d.dry_run && d.provider_calls.is_empty());
    assert!(raw(&store, "numbers/+1555", NEW).await.is_none());
    assert!(server.received_requests().await.unwrap().is_empty(), "`knm_number_options:dry_run`");
    ns.apply(&n(NEW), &create, &by(MASTER)).await.unwrap();
    let doc = stored(&store, NEW).await;
    let want = json!({"street_address": "301 MARINA BLVD", "locality": "SAN FRANCISCO",
                      "location_id": "77", "postal_code": "94123", "region": "CA",
                      "status": "PROVISIONED", "legacy_data": {}});
    assert_eq!(doc["pvt_features"]["e911"], want);
    assert_eq!(doc["e911"], want);
    assert_eq!(raw(&store, &acc(CHILD).db_name().to_string(), NEW).await.unwrap()["e911"], want);
    server.verify().await;
}
both_backends!(dash_e911_store, super::dash);

/// Holds the first matching request until the test says go (a signal, no sleeps): the window in
/// which a concurrent writer changes the number.
struct Gate {
    reached: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    go: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    body: String,
}

impl wiremock::Respond for Gate {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        if let Some(reached) = self.reached.lock().unwrap().take() {
            reached.send(()).unwrap();
            self.go.lock().unwrap().recv_timeout(std::time::Duration::from_secs(120)).unwrap();
        }
        ResponseTemplate::new(200).set_body_string(self.body.clone())
    }
}

/// `knm_numbers:save_numbers/1` + Kazoo's feature providers (`knm_prepend`, `knm_failover`, …): the number changes while Telnyx provisions its e911 address; the store's write
/// conflicts and it decides again, but the address is not created twice: the first call's
/// `address_id` is reapplied (`ProviderCall::reapply`).
async fn provider_call_not_repeated(store: SharedStore) {
    let server = MockServer::start().await;
    let (reached_tx, reached_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    Mock::given(method("POST"))
        .and(path("/origination/e911_addresses"))
        .respond_with(Gate {
            reached: std::sync::Mutex::new(Some(reached_tx)),
            go: std::sync::Mutex::new(go_rx),
            body: fixture("carriers/telnyx_create_e911.json"),
        })
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(format!("{DID_PATH}/e911_settings$")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(fixture("carriers/telnyx_activate_e911.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let ns = setup(&store, &server).await;
    let first = {
        let ns = ns.clone();
        tokio::spawn(async move {
            ns.apply(&n(TELNYX), &create_for(RESELLER, json!({"e911": e911_k3()})), &by(MASTER))
                .await
        })
    };
    tokio::task::spawn_blocking(move || {
        reached_rx.recv_timeout(std::time::Duration::from_secs(120))
    })
    .await
    .unwrap()
    .expect("the e911 request reached Telnyx");
    // Meanwhile another writer changes the number.
    let app = Operation::AssignToApp { used_by: Some("callflow".into()) };
    ns.apply(&n(TELNYX), &app, &RunOptions::default()).await.unwrap();
    go_tx.send(()).unwrap();
    let d = first.await.unwrap().unwrap();
    assert_eq!(d.doc.state, NumberState::InService);
    let doc = stored(&store, TELNYX).await;
    assert_eq!(doc["pvt_carrier_data"]["address_id"], ADDRESS);
    assert_eq!(doc["pvt_features"]["e911"], e911_k3());
    assert_eq!(doc["pvt_used_by"], "callflow", "the re-decision started from the other write");
    server.verify().await;
}
both_backends!(s7_1_provider_call_not_repeated, super::provider_call_not_repeated);

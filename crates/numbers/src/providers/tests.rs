//! Tests of the feature providers: Kazoo's number vectors group K (K1–K13, K16–K23), C19–C21,
//! M13 "fix" and M15 through [`crate::lifecycle::transition`] (the pure core, `knm_providers:exec/2` and the feature providers it runs), and
//! each external call against a wiremock server standing in for Telnyx / Dash.

use std::path::PathBuf;

use e164::E164;
use serde_json::{json, Map, Value};
use wiremock::matchers::{
    body_json, body_partial_json, body_string_contains, method, path, path_regex,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::auth::tests::{acc, fixture_accounts};
use crate::auth::{AccountMap, AuthBy};
use crate::carriers::testindex::MemoryIndex;
use crate::carriers::CarrierSettings;
use crate::config::Config;
use crate::doc::{NumberDoc, NumberState};
use crate::lifecycle::{
    lookup_account, transition, Create, Ctx, Decision, Operation, PublicFields, Update,
};

const NOW: i64 = 63_800_000_000;
const INSVC: &str = "+15551233322";
const TELNYX: &str = "+14352154006";
const VITELITY: &str = "+18122154006";
const BW: &str = "+14122065197";
const NEW: &str = "+15559871234";
const MASTER: u8 = 1;
const RESELLER: u8 = 2;
const CHILD: u8 = 3;
/// `carrier_data.address_id` of `telnyx_create_e911.json`.
const ADDRESS: &str = "421564943280637078";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/numbers")
}

fn read_json(rel: &str) -> Value {
    let path = fixtures().join(rel);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A starting document of vectors Kazoo's number manager (`knm`) (master fixturedb), as loaded.
fn stored(number: &str) -> NumberDoc {
    let db = crate::doc::encoded_number_db(number).unwrap();
    let v = read_json(&format!("fixturedb/{db}/docs/%2B{}.json", &number[1..]));
    NumberDoc::from_json(&v, NOW).unwrap()
}

fn old(name: &str) -> NumberDoc {
    NumberDoc::from_json(&read_json(&format!("priv-fixtures/{name}")), NOW).unwrap()
}

struct World {
    config: Config,
    accounts: AccountMap,
}

impl World {
    /// Kazoo's defaults: `knm_cnam_notifier`, `knm_dash_e911`.
    fn kazoo() -> Self {
        World { config: Config::kazoo_defaults(), accounts: fixture_accounts() }
    }

    /// Kazoo's master fixturedb: MASTER (RESELLER's reseller) configures `knm_telnyx_cnam` and
    /// `knm_telnyx_e911` (`configs_number_manager`).
    fn master() -> Self {
        let doc = read_json("account-configs/master_configs_number_manager.json");
        let config = Config::kazoo_defaults().with_reseller_config(acc(MASTER), doc);
        World { config, accounts: fixture_accounts() }
    }

    fn decide(
        &self,
        number: &str,
        current: Option<&NumberDoc>,
        op: &Operation,
        by: u8,
        dry_run: bool,
    ) -> Result<Decision, Error> {
        let auth = AuthBy::Account(acc(by));
        let ctx = Ctx {
            config: &self.config,
            accounts: &self.accounts,
            auth_by: Some(&auth),
            dry_run,
            mdn_run: false,
            now: NOW,
        };
        transition(&E164::new(number).unwrap(), current, op, &ctx)
    }

    fn run(
        &self,
        number: &str,
        current: Option<&NumberDoc>,
        op: &Operation,
        by: u8,
    ) -> Result<Decision, Error> {
        self.decide(number, current, op, by, false)
    }

    /// `knm_number:is_force_outbound/3` as routing sees it.
    fn force_outbound(&self, doc: &NumberDoc) -> bool {
        let ctx = Ctx {
            config: &self.config,
            accounts: &self.accounts,
            auth_by: Some(&AuthBy::System),
            dry_run: false,
            mdn_run: false,
            now: NOW,
        };
        lookup_account(&doc.id, Some(doc), None, true, &ctx).unwrap().force_outbound
    }
}

/// The document as the next operation reads it back (written: a `_rev`, no migration mark).
fn saved(d: &Decision) -> NumberDoc {
    let mut doc = d.doc.clone();
    doc.rev = Some(format!("{}-saved", doc.modified));
    doc.clear_migrated();
    doc
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

fn create_for(assign_to: u8, fields: Value) -> Operation {
    Operation::Create(Create {
        assign_to: Some(acc(assign_to)),
        public_fields: Some(obj(fields)),
        ..Create::default()
    })
}

fn feature<'d>(doc: &'d NumberDoc, f: &str) -> Option<&'d Value> {
    doc.features.get(f)
}

fn forbidden(e: &Error) -> bool {
    e.to_json()
        == json!({"code": 403, "error": "forbidden",
                  "message": "requestor is unauthorized to perform operation"})
}

fn e911_k3() -> Value {
    json!({"street_address": "301 Marina Blvd.", "locality": "San Francisco", "region": "CA",
           "postal_code": "94123"})
}

/// A context for the external calls: Telnyx (and Dash) behind `server`.
struct CallEnv {
    config: Config,
    index: MemoryIndex,
    telnyx: CarrierSettings,
    client: reqwest::Client,
}

impl CallEnv {
    fn new(server: &MockServer) -> Self {
        let mut config = Config::kazoo_defaults();
        config.provider_configs.insert(
            dash_e911::CONFIG_DOC.into(),
            json!({"default": {"emergency_provisioning_url": format!("{}/dash", server.uri()),
                               "auth_username": "dash-user", "auth_password": "dash-pass"}}),
        );
        CallEnv {
            config,
            index: MemoryIndex::default(),
            telnyx: CarrierSettings::same_for_all(
                &json!({"default": {"base_url": format!("{}/origination", server.uri()),
                                    "user": "telnyx-user", "token": "s3cret-token"}}),
            ),
            client: reqwest::Client::new(),
        }
    }

    fn ctx(&self) -> CarrierCtx<'_> {
        CarrierCtx::new(&self.config, &self.index)
            .with_settings(&self.telnyx)
            .with_http(&self.client)
    }

    /// Performs the decision's provider calls as the store layer does.
    async fn perform(&self, d: &Decision) -> Result<Decision, Error> {
        let mut d = d.clone();
        for call in d.provider_calls.clone() {
            d.doc = call.perform(d.doc, &self.ctx()).await?;
        }
        Ok(d)
    }
}

fn carrier_fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("carriers").join(name)).unwrap()
}

const DID_PATH: &str = r"^/origination/numbers/(%2B|\+)14352154006";

async fn mock_telnyx_e911(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/origination/e911_addresses"))
        .and(body_json(json!({"business_name": "Valued Customer", "city": "SAN FRANCISCO",
                              "state": "CA", "postal_code": "94123",
                              "line_1": "301 MARINA BLVD"})))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(carrier_fixture("telnyx_create_e911.json")),
        )
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(format!("{DID_PATH}/e911_settings$")))
        .and(body_json(json!({"e911_enabled": true, "e911_address_id": ADDRESS})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(carrier_fixture("telnyx_activate_e911.json")),
        )
        .expect(1)
        .mount(server)
        .await;
}

async fn mock_telnyx_cnam(server: &MockServer) {
    Mock::given(method("PUT"))
        .and(path_regex(format!("{DID_PATH}$")))
        .and(body_partial_json(json!({"cnam_listing_details": "my CNAM"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(carrier_fixture("telnyx_activate_cnam_outbound.json")),
        )
        .mount(server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(format!("{DID_PATH}$")))
        .and(body_json(json!({"enable_caller_id_name": true})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(carrier_fixture("telnyx_activate_cnam_inbound.json")),
        )
        .mount(server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(format!("{DID_PATH}$")))
        .and(body_json(json!({"enable_caller_id_name": false})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"enable_caller_id_name": false})),
        )
        .mount(server)
        .await;
}

/// K1 (`knm_providers:list_available_features/1` and `knm_providers:exec/2`): an external feature requested on a local number is refused with 403 and
/// nothing changes.
#[test]
fn k1_e911_on_a_local_number_is_forbidden() {
    let w = World::master();
    let insvc = stored(INSVC);
    let op = replace(
        json!({"e911": {"street_address": "140 Geary St.", "extended_address": "3rd floor",
                                      "locality": "San Francisco", "region": "CA",
                                      "postal_code": "94108"}}),
    );
    let e = w.run(INSVC, Some(&insvc), &op, RESELLER).unwrap_err();
    assert!(forbidden(&e), "{e:?}");
    assert!(feature(&insvc, "e911").is_none());
}

/// K2: e911 denied by the number's own `pvt_features_denied` → 403 with Kazoo's exact JSON.
#[test]
fn k2_e911_denied_on_the_number() {
    let w = World::master();
    let mut bw = stored(BW);
    bw.features_denied = vec!["e911".into()];
    let op = replace(json!({"e911": e911_k3()}));
    let e = w.run(BW, Some(&bw), &op, RESELLER).unwrap_err();
    assert!(forbidden(&e), "{}", e.to_json());
}

/// K3, K4 (`knm_telnyx_e911`, Kazoo's feature providers (`knm_prepend`, `knm_failover`, …)): create with an e911 address → the feature equals the public
/// object, Telnyx gets `301 MARINA BLVD`, the address id is kept; the same address again is not
/// dirty and calls nothing.
#[tokio::test]
async fn k3_k4_telnyx_e911() {
    let server = MockServer::start().await;
    mock_telnyx_e911(&server).await;
    let env = CallEnv::new(&server);
    let w = World::master();
    let telnyx = stored(TELNYX);
    let fields = json!({"e911": e911_k3()});
    let d = w.run(TELNYX, Some(&telnyx), &create_for(RESELLER, fields.clone()), MASTER).unwrap();
    assert!(d.dirty);
    assert_eq!(d.provider_calls.len(), 1, "{:?}", d.provider_calls);
    let d = env.perform(&d).await.unwrap();
    assert_eq!(feature(&d.doc, "e911"), Some(&e911_k3()));
    assert_eq!(d.doc.public["e911"], e911_k3());
    assert_eq!(d.doc.carrier_data[telnyx_e911::ADDRESS_ID], ADDRESS);
    // K4.
    let k3 = saved(&d);
    let d = w.run(TELNYX, Some(&k3), &replace(fields), RESELLER).unwrap();
    assert!(!d.dirty && d.is_noop(), "{d:?}");
    assert_eq!(d.doc.carrier_data[telnyx_e911::ADDRESS_ID], ADDRESS);
}

/// `knm_number_options:dry_run`: under dry run the e911 feature is decided locally and nothing is called.
#[test]
fn dry_run_makes_no_provider_call() {
    let w = World::master();
    let telnyx = stored(TELNYX);
    let d = w
        .decide(
            TELNYX,
            Some(&telnyx),
            &create_for(RESELLER, json!({"e911": e911_k3()})),
            MASTER,
            true,
        )
        .unwrap();
    assert!(d.dry_run && d.provider_calls.is_empty() && d.writes.is_empty());
    assert_eq!(feature(&d.doc, "e911"), Some(&e911_k3()));
    assert!(!d.doc.carrier_data.contains_key(telnyx_e911::ADDRESS_ID));
}

/// K5–K7 (`knm_telnyx_cnam`): inbound lookup and outbound name are set (and sent to Telnyx); the
/// same again is not dirty; switching inbound off and dropping the name clears every CNAM
/// feature.
#[tokio::test]
async fn k5_k7_telnyx_cnam() {
    let server = MockServer::start().await;
    mock_telnyx_cnam(&server).await;
    let env = CallEnv::new(&server);
    let w = World::master();
    let cnam = json!({"cnam": {"inbound_lookup": true, "display_name": "my CNAM"}});
    let d =
        w.run(TELNYX, Some(&stored(TELNYX)), &create_for(RESELLER, cnam.clone()), MASTER).unwrap();
    assert!(d.dirty);
    assert_eq!(
        d.provider_calls,
        vec![ProviderCall::TelnyxCnam(telnyx_cnam::Call {
            outbound: Some("my CNAM".into()),
            inbound: Some(true)
        })]
    );
    let d = env.perform(&d).await.unwrap();
    assert_eq!(d.doc.features["inbound_cnam"]["inbound_lookup"], true);
    assert_eq!(d.doc.features["outbound_cnam"]["display_name"], "my CNAM");
    // K6.
    let k5 = saved(&d);
    let d = w.run(TELNYX, Some(&k5), &replace(cnam), RESELLER).unwrap();
    assert!(!d.dirty && d.is_noop());
    // K7, as Kazoo's test does it: the public fields become `{inbound_lookup: false}`.
    let k6 = saved(&d);
    let d = w.run(TELNYX, Some(&k6), &replace(json!({"inbound_lookup": false})), RESELLER).unwrap();
    assert!(d.dirty);
    let d = env.perform(&d).await.unwrap();
    assert!(d.doc.features_list().is_empty(), "{:?}", d.doc.features);
    assert!(d.doc.public.get("cnam").is_none());
    // K7 with the flag inside `cnam`: the same features; the public object is the caller's.
    let d = w
        .run(TELNYX, Some(&k6), &replace(json!({"cnam": {"inbound_lookup": false}})), RESELLER)
        .unwrap();
    assert!(d.dirty && d.doc.features_list().is_empty());
    assert_eq!(
        d.provider_calls,
        vec![ProviderCall::TelnyxCnam(telnyx_cnam::Call { outbound: None, inbound: Some(false) })]
    );
    env.perform(&d).await.unwrap();
    let puts = server.received_requests().await.unwrap();
    assert_eq!(puts.len(), 4, "outbound + inbound on, then inbound off twice");
}

/// Telnyx refusing an address fails the call with its reason; nothing further is sent.
#[tokio::test]
async fn telnyx_e911_refused() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/origination/e911_addresses"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"status": "failed", "message": "address not found", "reasons": ["line_1"]}),
        ))
        .mount(&server)
        .await;
    let env = CallEnv::new(&server);
    let w = World::master();
    let d = w
        .run(
            TELNYX,
            Some(&stored(TELNYX)),
            &create_for(RESELLER, json!({"e911": e911_k3()})),
            MASTER,
        )
        .unwrap();
    let e = env.perform(&d).await.unwrap_err();
    let j = e.to_json();
    assert_eq!((j["code"].clone(), j["cause"].clone()), (json!(500), json!(TELNYX)));
    assert!(j["message"].as_str().unwrap().contains("address not found"), "{j}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

/// Telnyx e911 removal (public `e911` emptied, and `knm_numbers:release/2` release): the address is unassigned and
/// deleted, `address_id` dropped.
#[tokio::test]
async fn telnyx_e911_removed_on_update_and_release() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path_regex(format!("{DID_PATH}/e911_settings$")))
        .and(body_json(json!({"e911_enabled": false, "e911_address_id": null})))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(carrier_fixture("telnyx_delete_e911.json")),
        )
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/origination/e911_addresses/{ADDRESS}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(carrier_fixture("telnyx_delete_e911.json")),
        )
        .expect(2)
        .mount(&server)
        .await;
    let env = CallEnv::new(&server);
    let w = World::master();
    let mut k3 = stored(TELNYX);
    k3.state = NumberState::InService;
    k3.public.insert("e911".into(), e911_k3());
    k3.features.insert("e911".into(), e911_k3());
    k3.carrier_data.insert(telnyx_e911::ADDRESS_ID.into(), ADDRESS.into());
    k3.rev = Some("3-x".into());
    let d = w.run(TELNYX, Some(&k3), &replace(json!({})), RESELLER).unwrap();
    assert_eq!(d.provider_calls, vec![ProviderCall::TelnyxE911(telnyx_e911::Call::Remove)]);
    let d = env.perform(&d).await.unwrap();
    assert!(feature(&d.doc, "e911").is_none());
    assert!(!d.doc.carrier_data.contains_key(telnyx_e911::ADDRESS_ID));
    // Release (deviation: Kazoo reset the features before its providers' delete ran).
    let d = w.run(TELNYX, Some(&k3), &Operation::Release, RESELLER).unwrap();
    assert_eq!(d.provider_calls, vec![ProviderCall::TelnyxE911(telnyx_e911::Call::Remove)]);
    assert_eq!(d.doc.state, NumberState::Available);
    env.perform(&d).await.unwrap();
}

/// K8–K13 (`knm_force_outbound`, `knm_number:is_force_outbound/3`): only boolean-like values become the (boolean) feature;
/// routing follows the feature.
#[test]
fn k8_k13_force_outbound() {
    let w = World::kazoo();
    let k8 = saved(
        &w.run(TELNYX, Some(&stored(TELNYX)), &create_for(RESELLER, json!({})), RESELLER).unwrap(),
    );
    assert_eq!(k8.state, NumberState::InService);
    assert!(feature(&k8, "force_outbound").is_none() && k8.public.get("force_outbound").is_none());
    assert!(!w.force_outbound(&k8));
    // K9.
    let d = w.run(TELNYX, Some(&k8), &replace(json!({"force_outbound": true})), RESELLER).unwrap();
    assert!(d.dirty);
    assert_eq!(
        (feature(&d.doc, "force_outbound"), &d.doc.public["force_outbound"]),
        (Some(&json!(true)), &json!(true))
    );
    assert!(w.force_outbound(&d.doc));
    let k9 = saved(&d);
    // K10.
    let d =
        w.run(TELNYX, Some(&k8), &merge(json!({"force_outbound": "blabla"})), RESELLER).unwrap();
    assert!(d.dirty && feature(&d.doc, "force_outbound").is_none());
    assert_eq!(d.doc.public["force_outbound"], "blabla");
    assert!(!w.force_outbound(&d.doc));
    let k10 = saved(&d);
    // K11: Kazoo's `{force_outbound: undefined}` is the empty object.
    let d = w.run(TELNYX, Some(&k9), &replace(json!({})), RESELLER).unwrap();
    assert!(d.dirty && feature(&d.doc, "force_outbound").is_none());
    assert!(d.doc.public.get("force_outbound").is_none() && !w.force_outbound(&d.doc));
    let k11 = saved(&d);
    // K12.
    let d =
        w.run(TELNYX, Some(&k11), &merge(json!({"force_outbound": "false"})), RESELLER).unwrap();
    assert!(d.dirty);
    assert_eq!(feature(&d.doc, "force_outbound"), Some(&json!(false)));
    assert_eq!(d.doc.public["force_outbound"], "false");
    assert!(
        d.doc.features_list().contains(&"force_outbound".to_owned()) && !w.force_outbound(&d.doc)
    );
    // K13, then the same on the saved result: not dirty.
    let d =
        w.run(TELNYX, Some(&k10), &replace(json!({"force_outbound": false})), RESELLER).unwrap();
    assert!(d.dirty);
    assert_eq!(
        (feature(&d.doc, "force_outbound"), &d.doc.public["force_outbound"]),
        (Some(&json!(false)), &json!(false))
    );
    let d = w
        .run(TELNYX, Some(&saved(&d)), &replace(json!({"force_outbound": false})), RESELLER)
        .unwrap();
    assert!(!d.dirty && d.is_noop());
}

/// K16–K20 (`knm_rename_carrier`): renames by an admin, `local` follows the module, the key
/// disappears; unknown names are `invalid`; non-admins get 403; `gen_carrier` is accepted.
#[test]
fn k16_k20_rename_carrier() {
    let w = World::master();
    let created = saved(
        &w.run(TELNYX, Some(&stored(TELNYX)), &create_for(RESELLER, json!({})), MASTER).unwrap(),
    );
    // K16.
    let d =
        w.run(TELNYX, Some(&created), &replace(json!({"carrier_name": "local"})), MASTER).unwrap();
    assert_eq!(d.doc.module_name, "knm_local");
    assert!(feature(&d.doc, "local").is_some() && d.doc.public.get("carrier_name").is_none());
    let k16 = saved(&d);
    // K17.
    let e = w
        .run(TELNYX, Some(&created), &merge(json!({"carrier_name": "blabla"})), MASTER)
        .unwrap_err();
    assert_eq!(
        e.to_json(),
        json!({"code": 400, "error": "invalid", "cause": "'blabla' is not known by the system",
               "message": "invalid"})
    );
    // K18.
    let d = w.run(TELNYX, Some(&k16), &replace(json!({})), MASTER).unwrap();
    assert!(!d.dirty && d.doc.module_name == "knm_local" && feature(&d.doc, "local").is_some());
    let k18 = saved(&d);
    // K19.
    let e = w
        .run(TELNYX, Some(&k18), &replace(json!({"carrier_name": "telnyx"})), RESELLER)
        .unwrap_err();
    assert!(forbidden(&e), "{e:?}");
    // K20.
    let d = w
        .run(TELNYX, Some(&k18), &replace(json!({"carrier_name": "gen_carrier"})), MASTER)
        .unwrap();
    assert_eq!(d.doc.module_name, "knm_gen_carrier");
    assert!(feature(&d.doc, "local").is_none());
}

/// K21–K23: renaming an existing number; denied features stripped after a rename to local.
#[test]
fn k21_k23_rename_existing() {
    let w = World::master();
    // K21.
    let d = w
        .run(INSVC, Some(&stored(INSVC)), &replace(json!({"carrier_name": "telnyx"})), MASTER)
        .unwrap();
    assert_eq!(d.doc.module_name, "knm_telnyx");
    assert!(feature(&d.doc, "local").is_none());
    // K22.
    let vit = stored(VITELITY);
    let d = w.run(VITELITY, Some(&vit), &merge(json!({"carrier_name": "local"})), MASTER).unwrap();
    assert_eq!(d.doc.module_name, "knm_local");
    assert_eq!(d.doc.features_list(), ["local", "prepend"]);
    assert!(d.doc.public.get("cnam").is_none() && d.doc.public.get("prepend").is_some());
    assert!(d.provider_calls.is_empty());
    // K23.
    let d =
        w.run(VITELITY, Some(&vit), &merge(json!({"carrier_name": "bandwidth"})), MASTER).unwrap();
    assert_eq!(d.doc.module_name, "knm_bandwidth2");
    assert_eq!(d.doc.features_list(), ["inbound_cnam", "outbound_cnam", "prepend"]);
    assert_eq!(d.doc.public["cnam"], vit.public["cnam"]);
    assert!(d.provider_calls.is_empty(), "unchanged CNAM: nothing to tell Telnyx");
}

/// C19–C21: `carrier_name` given at creation.
#[test]
fn c19_c21_create_with_carrier_name() {
    let w = World::kazoo();
    let d =
        w.run(NEW, None, &create_for(RESELLER, json!({"carrier_name": "telnyx"})), MASTER).unwrap();
    assert_eq!(d.doc.module_name, "knm_telnyx");
    assert!(d.doc.public.get("carrier_name").is_none() && feature(&d.doc, "local").is_none());
    let e = w
        .run(NEW, None, &create_for(RESELLER, json!({"carrier_name": "wrong_carrier"})), MASTER)
        .unwrap_err();
    assert_eq!(
        (e.code(), e.to_json()["error"].clone(), e.to_json()["message"].clone()),
        (400, json!("invalid"), json!("invalid"))
    );
    let e = w
        .run(NEW, None, &create_for(RESELLER, json!({"carrier_name": "telnyx"})), RESELLER)
        .unwrap_err();
    assert!(forbidden(&e), "{e:?}");
}

/// M13 "fix" (`kazoo_number_manager_maintenance`): `used_by` from the account's apps and `remove_denied_features` → dirty,
/// the CNAM features a local number may not have are gone; without the removal the save is 403.
#[test]
fn m13_fix_removes_denied_features() {
    let w = World::kazoo();
    let doc = old("old_vsn_7_in.json");
    assert!(!doc.migrated());
    let number = doc.id.as_str().to_owned();
    let fix = Operation::Update(Update {
        used_by: Some("trunkstore".into()),
        remove_denied_features: true,
        ..Update::default()
    });
    let d = w.run(&number, Some(&doc), &fix, CHILD).unwrap();
    assert!(d.dirty);
    assert_eq!(d.doc.used_by.as_deref(), Some("trunkstore"));
    assert_eq!(d.doc.features_list(), ["local"]);
    let plain =
        Operation::Update(Update { used_by: Some("trunkstore".into()), ..Update::default() });
    assert!(forbidden(&w.run(&number, Some(&doc), &plain, CHILD).unwrap_err()));
}

/// M15: fixing `old_vsn_5.1` (owner RESELLER) finds nothing to do, with Kazoo's default
/// providers and with the Telnyx ones.
#[test]
fn m15_fix_nothing_to_fix() {
    for w in [World::kazoo(), World::master()] {
        let doc = old("old_vsn_5.1.json");
        let fix = Operation::Update(Update { remove_denied_features: true, ..Update::default() });
        let d = w.run(doc.id.as_str(), Some(&doc), &fix, RESELLER).unwrap();
        assert!(!d.dirty && d.is_noop(), "{d:?}");
    }
}

/// `knm_providers:exec/2`: `im` is dropped; a requested but unavailable `sms` is no error (the provider does not
/// run); an available one becomes the feature when enabled.
#[test]
fn s12_3_im_and_sms() {
    let mut w = World::kazoo();
    let mut doc = stored(VITELITY);
    doc.features.insert("im".into(), json!({}));
    let d =
        w.run(VITELITY, Some(&doc), &merge(json!({"sms": {"enabled": true}})), RESELLER).unwrap();
    assert!(feature(&d.doc, "im").is_none() && feature(&d.doc, "sms").is_none());
    w.config.carrier_features.insert("knm_vitelity".into(), json!({"sms": {"enabled": true}}));
    let d =
        w.run(VITELITY, Some(&doc), &merge(json!({"sms": {"enabled": true}})), RESELLER).unwrap();
    assert_eq!(feature(&d.doc, "sms"), Some(&json!({"enabled": true})));
}

/// `knm_providers:exec/2` provider mapping: a reseller naming a Kazoo provider this build lacks gets a clear 500,
/// not a silently skipped e911.
#[test]
fn s12_3_unavailable_provider() {
    let w = World {
        config: Config::kazoo_defaults()
            .with_reseller_config(acc(MASTER), json!({"e911_provider": "knm_vitelity_e911"})),
        accounts: fixture_accounts(),
    };
    let e = w
        .run(
            TELNYX,
            Some(&stored(TELNYX)),
            &create_for(RESELLER, json!({"e911": e911_k3()})),
            MASTER,
        )
        .unwrap_err();
    assert_eq!(e.to_json()["message"], "provider_unavailable");
    assert_eq!(e.code(), 500);
}

/// Kazoo's feature providers (`knm_prepend`, `knm_failover`, …) `knm_cnam_notifier` / `knm_prepend` / `knm_failover` on their own.
#[test]
fn s12_4_kazoo_side_providers() {
    let w = World::kazoo();
    let mut doc = stored(TELNYX);
    doc.state = NumberState::InService;
    doc.used_by = Some("trunkstore".into());
    let op = replace(json!({"cnam": {"display_name": "Rose", "inbound_lookup": true},
                            "prepend": {"enabled": false, "name": "x"},
                            "failover": {"e164": "+14158867900"}}));
    let d = w.run(TELNYX, Some(&doc), &op, RESELLER).unwrap();
    assert_eq!(d.doc.features["outbound_cnam"], json!({"display_name": "Rose"}));
    assert_eq!(d.doc.features["inbound_cnam"], json!({"inbound_lookup": true}));
    assert!(feature(&d.doc, "prepend").is_none(), "disabled prepend");
    assert_eq!(d.doc.features["failover"], json!({"e164": "+14158867900"}));
    assert!(d.provider_calls.is_empty(), "cnam_notifier calls nothing");
    // Not in service: prepend/failover/force_outbound removed, CNAM left as is.
    let mut reserved = saved(&d);
    reserved.state = NumberState::Reserved;
    let mut ops_doc = reserved.clone();
    ops_doc.features.insert("prepend".into(), json!({"enabled": true}));
    let d = w
        .run(
            TELNYX,
            Some(&ops_doc),
            &replace(json!({"cnam": {"display_name": "Rose", "inbound_lookup": true}})),
            RESELLER,
        )
        .unwrap();
    assert_eq!(d.doc.features_list(), ["inbound_cnam", "outbound_cnam"]);
}

/// `knm_phone_number:remove_denied_features/1`: private keys and their public paths, empty
/// parents pruned, other public keys kept.
#[test]
fn remove_denied_features_prunes() {
    let w = World::kazoo();
    let mut doc = stored(INSVC);
    doc.public = obj(json!({"cnam": {"display_name": "x", "inbound_lookup": true, "keep": 1},
                            "e911": {"a": 1}, "dash_e911": {"a": 1}, "my_key": 2,
                            "failover": {"sip": "s"}}));
    doc.features.insert("outbound_cnam".into(), json!({"display_name": "x"}));
    doc.features.insert("e911".into(), json!({}));
    doc.features.insert("failover".into(), json!({}));
    let ctx =
        FeatureCtx { config: &w.config, accounts: &w.accounts, is_admin: false, dry_run: false };
    remove_denied_features(&mut doc, &ctx);
    assert_eq!(doc.features_list(), ["local"]);
    assert_eq!(Value::Object(doc.public), json!({"cnam": {"keep": 1}, "my_key": 2}));
}

/// Telnyx's address body: uppercased, only letters, digits and spaces.
#[test]
fn telnyx_address_body() {
    let body = telnyx_e911::address_body(&obj(json!({"street_address": "140 Geary St.",
        "extended_address": "3rd floor", "locality": "San Francisco", "region": "ca",
        "postal_code": "94108", "caller_name": "ACME"})));
    assert_eq!(
        body,
        json!({"business_name": "ACME", "city": "SAN FRANCISCO", "state": "CA",
               "postal_code": "94108", "line_1": "140 GEARY ST", "line_2": "3RD FLOOR"})
    );
}

fn dash_location(code: &str, id: &str) -> String {
    format!(
        "<Location><address1>140 GEARY ST</address1><address2>3RD FLOOR</address2>\
         <callername>Valued Customer</callername><community>SAN FRANCISCO</community>\
         <latitude>37.7877</latitude><legacydata><housenumber>140</housenumber>\
         <streetname>GEARY</streetname></legacydata><locationid>{id}</locationid>\
         <longitude>-122.4049</longitude><plusfour>4405</plusfour><postalcode>94108</postalcode>\
         <state>CA</state><status><code>{code}</code><description>Location is {code}</description>\
         </status><type>ADDRESS</type></Location>"
    )
}

fn dash_reply(verb: &str, inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><ns2:{verb}Response xmlns:ns2=\"http://dashcs.com/api/v1/emergency\">\
         {inner}</ns2:{verb}Response>"
    )
}

/// `knm_dash_e911` (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …)): validate, add, provision a geocoded location; the address as Dash
/// returns it becomes the public and private `e911`; emptying it removes the number upstream.
#[tokio::test]
async fn dash_e911_provisioning() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/dash/validatelocation"))
        .and(body_string_contains("<address1>140 Geary St.</address1>"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(dash_reply("validateLocation", &dash_location("GEOCODED", "1"))),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/dash/addlocation"))
        .and(body_string_contains(
            "<uri><uri>tel:15551233322</uri><callername>Valued Customer</callername></uri>",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(dash_reply("addLocation", &dash_location("GEOCODED", "32379723"))),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/dash/provisionlocation"))
        .and(body_string_contains("<locationid>32379723</locationid>"))
        .respond_with(ResponseTemplate::new(200).set_body_string(dash_reply(
            "provisionLocation",
            "<LocationStatus><code>PROVISIONED</code></LocationStatus>",
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/dash/removeuri"))
        .and(body_string_contains("<uri>tel:15551233322</uri>"))
        .respond_with(ResponseTemplate::new(200).set_body_string(dash_reply(
            "removeURI",
            "<URIStatus><code>REMOVED</code></URIStatus>",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let env = CallEnv::new(&server);
    let mut w = World::kazoo();
    w.config.local_feature_override = true;
    let insvc = stored(INSVC);
    let address = json!({"street_address": "140 Geary St.", "extended_address": "3rd floor",
                         "locality": "San Francisco", "region": "CA", "postal_code": "94108"});
    let d = w.run(INSVC, Some(&insvc), &replace(json!({"e911": address})), RESELLER).unwrap();
    assert!(matches!(
        d.provider_calls[..],
        [ProviderCall::DashE911(dash_e911::Call::Update { .. })]
    ));
    let d = env.perform(&d).await.unwrap();
    let e911 = &d.doc.features["e911"];
    assert_eq!(e911, &d.doc.public["e911"]);
    assert_eq!(e911["street_address"], "140 GEARY ST");
    assert_eq!(e911["location_id"], "32379723");
    assert_eq!(e911["status"], "PROVISIONED");
    assert_eq!(e911["legacy_data"], json!({"house_number": "140", "streetname": "GEARY"}));
    // Saved, then the same address: not dirty.
    let again = saved(&d);
    let same = Value::Object(again.public.clone());
    let d2 = w.run(INSVC, Some(&again), &replace(same), RESELLER).unwrap();
    assert!(!d2.dirty && d2.is_noop());
    // Emptied: removeURI, feature gone.
    let d3 = w.run(INSVC, Some(&again), &replace(json!({})), RESELLER).unwrap();
    assert_eq!(d3.provider_calls, vec![ProviderCall::DashE911(dash_e911::Call::RemoveUri)]);
    let d3 = env.perform(&d3).await.unwrap();
    assert!(feature(&d3.doc, "e911").is_none());
    let auth = server.received_requests().await.unwrap()[0].headers.get("authorization").cloned();
    assert!(auth.is_some_and(|a| a.to_str().unwrap().starts_with("Basic ")));
}

/// Dash answers that fail the save: INVALID (400 `invalid`), several candidates (500
/// `multiple_choice`), and an HTTP 401.
#[tokio::test]
async fn dash_e911_refusals() {
    let server = MockServer::start().await;
    let env = CallEnv::new(&server);
    let address = obj(json!({"street_address": "1 Nowhere", "locality": "X", "region": "CA",
                             "postal_code": "00000"}));
    let call = ProviderCall::DashE911(dash_e911::Call::Update { address });
    let doc = stored(INSVC);
    for (reply, status, want) in [
        (dash_reply("validateLocation", &dash_location("INVALID", "")), 200, "invalid"),
        (
            dash_reply(
                "validateLocation",
                &format!("{}{}", dash_location("GEOCODED", "1"), dash_location("GEOCODED", "2")),
            ),
            200,
            "multiple_choice",
        ),
        (String::new(), 401, "authentication"),
    ] {
        server.reset().await;
        Mock::given(method("POST"))
            .and(path("/dash/validatelocation"))
            .respond_with(ResponseTemplate::new(status).set_body_string(reply))
            .mount(&server)
            .await;
        let e = call.perform(doc.clone(), &env.ctx()).await.unwrap_err();
        let j = e.to_json();
        let got = if j["error"] == "invalid" {
            "invalid".to_owned()
        } else {
            j["message"].as_str().unwrap().to_owned()
        };
        assert_eq!(got, want, "{j}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "{want}: no addLocation");
    }
}

/// A lost race re-decides: the store reapplies what a provider call already produced.
#[test]
fn reapply_keeps_the_first_outcome() {
    let mut earlier = stored(TELNYX);
    earlier.carrier_data.insert(telnyx_e911::ADDRESS_ID.into(), ADDRESS.into());
    let call = ProviderCall::TelnyxE911(telnyx_e911::Call::Update { address: obj(e911_k3()) });
    let doc = call.reapply(&earlier, stored(TELNYX));
    assert_eq!(doc.carrier_data[telnyx_e911::ADDRESS_ID], ADDRESS);
}

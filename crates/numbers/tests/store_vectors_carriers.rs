//! Kazoo's number vectors group N (carriers and search) and group O (carrier info, check, billing)
//! end-to-end: through [`NumberStore`] over Kazoo's fixturedb, on the embedded store and on the
//! CouchDB-compatible server, with each carrier configured the way Kazoo keeps it
//! (`system_config/number_manager` `carrier_modules`, `system_config/number_manager.<carrier>`)
//! and its HTTP API played by a wiremock server answering Kazoo's own fixture bodies
//! (`fixtures/numbers/carriers/`). CouchDB is never mocked.
//!
//! Acquisitions (N9, N15, N19) buy a `discovery` document through [`Operation::Move`] and read
//! the stored result back; N16's carrier refusal leaves the stored document untouched.

mod common;

use common::*;
use docstore::SharedStore;
use e164::E164;
use numbers::carriers::SearchQuery;
use numbers::lifecycle::Move;
use numbers::search::CarrierOutcome;
use numbers::store::{NumberSearch, NumberStore, RunOptions};
use numbers::{AuthBy, CarrierKind, Error, NumberDoc, NumberState, Operation};
use serde_json::{json, Value};
use wiremock::matchers::{
    body_partial_json, body_string_contains, header, method, path, query_param,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

const AVAIL: &str = "+15551239876";
const INSVC: &str = "+15551233322";
const HIST: &str = "+15551255693";
const TOLL: &str = "+18005551212";
const TELNYX: &str = "+14352154006";

fn n(s: &str) -> E164 {
    E164::new(s).unwrap()
}

fn by(a: &str) -> AuthBy {
    AuthBy::parse(a).unwrap()
}

/// A body from `fixtures/numbers/carriers/` (Kazoo's own carrier fixtures).
fn body(name: &str) -> String {
    let path = format!("{}/../../fixtures/numbers/carriers/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn numbers_of(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|r| r["number"].as_str().unwrap()).collect()
}

/// A store layer whose `system_config` has `carrier_modules = modules` and the carrier sections
/// `sections` (`(doc id, section)`), as an operator sets them.
async fn configured(
    store: &SharedStore,
    modules: Option<&[&str]>,
    sections: &[(&str, Value)],
) -> NumberStore {
    let mut default = json!({"port_in_module_name": "knm_local"});
    if let Some(m) = modules {
        default["carrier_modules"] = json!(m);
    }
    overwrite(store, "system_config", json!({"_id": "number_manager", "default": default})).await;
    for (id, section) in sections {
        let mut doc = json!({"_id": id});
        doc["default"] = section.clone();
        overwrite(store, "system_config", doc).await;
    }
    NumberStore::from_store(store.clone()).await.unwrap()
}

/// Writes a `discovery` document for `number` (a carrier's search hit kept for buying, `knm_search:discovery/1`),
/// replacing whatever the fixturedb had.
async fn discovery(store: &SharedStore, number: &str, module: &str) {
    let doc = NumberDoc::new(&n(number), NumberState::Discovery, module, 63_700_000_000);
    overwrite(store, &numbers::number_db(number).unwrap(), doc.to_json()).await;
}

async fn stored(store: &SharedStore, number: &str) -> Option<Value> {
    raw(store, &numbers::number_db(number).unwrap(), number).await
}

fn buy(to: &str) -> Operation {
    Operation::Move(Move { assign_to: Some(acc(to)), ..Move::default() })
}

/// Buys `number` for RESELLER and checks what was stored (`knm_carriers:acquire/1`, `knm_numbers:save_numbers/1`).
async fn bought(store: &SharedStore, ns: &NumberStore, case: &str, number: &str) -> NumberDoc {
    let d = ns
        .apply(&n(number), &buy(RESELLER), &RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{case}: {}", e.to_json()));
    assert_eq!(d.doc.id.as_str(), number, "{case}: number unchanged");
    assert_eq!(d.doc.state, NumberState::InService, "{case}");
    let s = stored(store, number).await.unwrap();
    assert_eq!(s, d.doc.to_json(), "{case}: stored as acquired");
    let c = raw(store, &acc(RESELLER).db_name().to_string(), number).await.expect("account copy");
    assert_eq!(c, d.doc.to_account_copy_json(c["_rev"].as_str()), "{case}: account copy");
    d.doc
}

// ---------------------------------------------------------------------------------------------
// vectors N1–N5: knm_local and knm_other

/// The numbers body of Kazoo's `knm_carriers_find_tests` (N4): `+1415886790<d>` → `{extension: d}`.
fn phonebook_numbers() -> Value {
    let data: serde_json::Map<String, Value> =
        (0..10).map(|d| (format!("+1415886790{d}"), json!({"extension": d}))).collect();
    json!({"status": "success", "data": data})
}

/// Vectors N1–N5 (`knm_search:find/1` and `knm_carriers:get_available_carriers/1`, `knm_other` knm_other).
async fn n1_n5(store: SharedStore) {
    load_kazoo_fixturedb(&store).await;
    // N1: knm_local needs an account.
    let ns = configured(&store, None, &[]).await;
    let res = ns.find(&SearchQuery::new("+1415", 1)).await;
    assert!(res.rows.is_empty(), "N1");
    assert_eq!(res.reports.len(), 1);
    assert_eq!(res.reports[0].module, CarrierKind::Local);
    assert!(
        matches!(&res.reports[0].outcome, CarrierOutcome::Failed(Error::NotAvailable { .. })),
        "N1: {:?}",
        res.reports[0].outcome
    );
    // N3: no carriers option, no config at all.
    let sys = docstore::naming::system_config_db();
    let doc = store.get(&sys, "number_manager").await.unwrap().unwrap();
    let rev = docstore::Rev(doc["_rev"].as_str().unwrap().to_owned());
    store.delete(&sys, "number_manager", &rev).await.unwrap();
    let ns = NumberStore::from_store(store.clone()).await.unwrap();
    assert_eq!(ns.config().carrier_modules, ["knm_local"], "N3: the default");
    assert!(ns.search("415", 10).await.is_empty(), "N3");
    // N2: knm_other without phonebook_url.
    let ns = configured(&store, Some(&["knm_other"]), &[]).await;
    assert!(ns.search("415", 10).await.is_empty(), "N2");
    let res = ns.find(&SearchQuery::new("+1415", 10)).await;
    assert!(matches!(res.reports[0].outcome, CarrierOutcome::Failed(_)), "N2");
    // N4 / N5: the phonebook.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/numbers/US/search"))
        .and(query_param("prefix", "+1415"))
        .and(query_param("limit", "10"))
        .and(query_param("offset", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(phonebook_numbers()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/blocks/US/search"))
        .and(query_param("size", "10"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "success",
            "data": [{"start_number": "+14158867900", "end_number": "+14158897909"}]})))
        .mount(&server)
        .await;
    let section = json!({"phonebook_url": server.uri(), "endpoints": "10.0.0.1"});
    let ns = configured(&store, Some(&["knm_other"]), &[("number_manager.other", section)]).await;
    let rows = ns.search_for("415", 10, Some(&acc(MASTER))).await;
    let want: Vec<String> = (0..10).map(|d| format!("+1415886790{d}")).collect();
    assert_eq!(numbers_of(&rows), want, "N4: ascending");
    let request = NumberSearch { account: Some(&acc(MASTER)), ..NumberSearch::new("415", 10) };
    let hits = ns.find_for(&request).await.unwrap();
    assert!(hits.iter().all(|h| h.module == CarrierKind::Other), "N4");
    let mut q = SearchQuery::new("+1415", 10);
    q.blocks = true;
    let res = ns.find(&q).await;
    let got: Vec<&str> = res.rows.iter().map(|r| r.number.as_str()).collect();
    assert_eq!(got, ["+14158867900", "+14158897909"], "N5: [start, end]");
    assert!(res.rows.iter().all(|r| r.module == CarrierKind::Other), "N5");
}
both_backends!(n1_n5_local_other, super::n1_n5);

// ---------------------------------------------------------------------------------------------
// vectors N6–N9: knm_telnyx

async fn telnyx_search_mock(server: &MockServer, descriptor: Value, file: &str) {
    Mock::given(method("POST"))
        .and(path("/origination/number_searches"))
        .and(header("x-api-user", "telnyx-user"))
        .and(header("x-api-token", "s3cret-token"))
        .and(body_partial_json(json!({"search_descriptor": descriptor, "with_result": true})))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body(file), "application/json"))
        .mount(server)
        .await;
}

/// Vectors N6–N9 (the carrier provisioning switches of `number_manager.<carrier>` knm_telnyx; N9 through a buy of a discovered number, `knm_carriers:acquire/1`).
async fn n6_n9(store: SharedStore) {
    load_kazoo_fixturedb(&store).await;
    let server = MockServer::start().await;
    telnyx_search_mock(&server, json!({"npa": "301", "nxx": "359"}), "telnyx_npa_search.json")
        .await;
    telnyx_search_mock(&server, json!({"prefix": "800"}), "telnyx_tollfree_search.json").await;
    telnyx_search_mock(&server, json!({"country_iso": "GB"}), "telnyx_international_search.json")
        .await;
    Mock::given(method("POST"))
        .and(path("/origination/number_orders"))
        .and(body_partial_json(json!({"requested_numbers": ["+13013596695"]})))
        .respond_with(ResponseTemplate::new(200).set_body_string(body("telnyx_order.json")))
        .expect(1)
        .mount(&server)
        .await;
    let section = json!({"base_url": format!("{}/origination", server.uri()),
                         "user": "telnyx-user", "token": "s3cret-token"});
    let ns = configured(&store, Some(&["knm_telnyx"]), &[("number_manager.telnyx", section)]).await;
    let rows = ns.search("301359", 5).await;
    assert_eq!(rows.len(), 5, "N6");
    assert!(numbers_of(&rows).iter().all(|r| r.starts_with("+1301359")), "N6");
    assert!(rows.iter().all(|r| r["state"] == "discovery"), "N6");
    let hits = ns.find_for(&NumberSearch::new("301359", 5)).await.unwrap();
    assert!(hits.iter().all(|h| h.module == CarrierKind::Telnyx), "N6");
    let rows = ns.search("800", 2).await;
    assert_eq!(rows.len(), 2, "N7");
    assert!(numbers_of(&rows).iter().all(|r| r.starts_with("+1800")), "N7");
    let mut q = SearchQuery::new("+441", 2);
    q.country = "GB".into();
    let res = ns.find(&q).await;
    let got: Vec<&str> = res.rows.iter().map(|r| r.number.as_str()).collect();
    assert_eq!(got.len(), 2, "N8");
    assert!(got.iter().all(|r| r.starts_with("+441")), "N8 {got:?}");
    // N9: buying the discovered +13013596695 orders it; the order id is kept.
    let number = "+13013596695";
    reset_number(&store, number).await;
    discovery(&store, number, "knm_telnyx").await;
    let doc = bought(&store, &ns, "N9", number).await;
    assert_eq!(doc.carrier_data["order_id"], "411389090580137691", "N9");
    assert_eq!(
        stored(&store, number).await.unwrap()["pvt_carrier_data"]["order_id"],
        "411389090580137691"
    );
    reset_number(&store, number).await;
}
both_backends!(n6_n9_telnyx, super::n6_n9);

// ---------------------------------------------------------------------------------------------
// vectors N10–N12: knm_vitelity

/// Vectors N10–N12 (the carrier provisioning switches of `number_manager.<carrier>` knm_vitelity).
async fn n10_n12(store: SharedStore) {
    load_kazoo_fixturedb(&store).await;
    let server = MockServer::start().await;
    for (cmd, file) in [
        ("listtollfree", "vitelity_listtollfree.xml"),
        ("listnpanxx", "vitelity_listnpanxx.xml"),
        ("listnpa", "vitelity_listnpa.xml"),
    ] {
        Mock::given(method("POST"))
            .and(path("/api.php"))
            .and(query_param("cmd", cmd))
            .and(query_param("xml", "yes"))
            .and(query_param("login", "vit-login"))
            .and(query_param("pass", "vit-s3cret"))
            .respond_with(ResponseTemplate::new(200).set_body_string(body(file)))
            .mount(&server)
            .await;
    }
    let section = json!({"api_uri": format!("{}/api.php", server.uri()),
                         "login": "vit-login", "pass": "vit-s3cret", "routesip": ["1.2.3.4"]});
    let ns =
        configured(&store, Some(&["knm_vitelity"]), &[("number_manager.vitelity", section)]).await;
    assert_eq!(numbers_of(&ns.search("8887771111", 1).await), ["+18887771111"], "N10");
    assert_eq!(ns.search("9875559876", 1).await.len(), 1, "N11");
    assert_eq!(ns.search("987", 2).await.len(), 2, "N12");
    assert!(numbers_of(&ns.search("987", 2).await).iter().all(|r| r.starts_with("+1987")));
}
both_backends!(n10_n12_vitelity, super::n10_n12);

// ---------------------------------------------------------------------------------------------
// vectors N13–N16: knm_voip_innovations

async fn vi_mock(server: &MockServer, action: &str, needle: &str, reply: String) {
    Mock::given(method("POST"))
        .and(path("/Services/APIService.asmx"))
        .and(header("SOAPAction", format!("http://tempuri.org/{action}").as_str()))
        .and(body_string_contains(format!("<tns:{action}>")))
        .and(body_string_contains(
            "<tns:login>vi-login</tns:login><tns:secret>vi-s3cret</tns:secret>",
        ))
        .and(body_string_contains(needle))
        .respond_with(ResponseTemplate::new(200).set_body_string(reply))
        .mount(server)
        .await;
}

/// Vectors N13–N16 (the carrier provisioning switches of `number_manager.<carrier>` knm_voip_innovations; N15 through a buy, N16 through a release whose
/// disconnect the carrier refuses: the number fails and nothing is written).
async fn n13_n16(store: SharedStore) {
    load_kazoo_fixturedb(&store).await;
    let server = MockServer::start().await;
    vi_mock(
        &server,
        "getDIDs",
        "<tns:npa>435</tns:npa>",
        body("voip_innovations_get_response.xml"),
    )
    .await;
    vi_mock(
        &server,
        "getDIDs",
        "<tns:npa>877</tns:npa>",
        body("voip_innovations_get_tollfree_response.xml"),
    )
    .await;
    vi_mock(
        &server,
        "assignDID",
        "<tns:tn>4352154006</tns:tn><tns:epg>8674</tns:epg>",
        body("voip_innovations_assign_response.xml"),
    )
    .await;
    vi_mock(
        &server,
        "releaseDID",
        "<tns:tn>4352154974</tns:tn>",
        body("voip_innovations_release_response.xml"),
    )
    .await;
    let section = json!({"api_url": format!("{}/Services/APIService.asmx", server.uri()),
                         "login": "vi-login", "password": "vi-s3cret", "endpoint_group": "8674"});
    let ns = configured(
        &store,
        Some(&["knm_voip_innovations"]),
        &[("number_manager.voip_innovations", section)],
    )
    .await;
    let rows = ns.search("435", 2).await;
    assert_eq!(rows.len(), 2, "N13");
    assert!(numbers_of(&rows).iter().all(|r| r.starts_with("+1435")), "N13");
    let rows = ns.search("877", 1).await;
    assert_eq!(rows.len(), 1, "N14");
    assert!(numbers_of(&rows)[0].starts_with("+1877"), "N14");
    // N15: +14352154006 discovered at voip_innovations, bought.
    discovery(&store, TELNYX, "knm_voip_innovations").await;
    let doc = bought(&store, &ns, "N15", TELNYX).await;
    assert_eq!(doc.module_name, "knm_voip_innovations", "N15");
    reset_number(&store, TELNYX).await;
    // N16: releasing +14352154974, which the carrier says is free already.
    let number = "+14352154974";
    let mut doc =
        NumberDoc::new(&n(number), NumberState::InService, "knm_voip_innovations", 63_700_000_000);
    doc.assigned_to = Some(acc(RESELLER));
    overwrite(&store, "numbers/+1435", doc.to_json()).await;
    let before = stored(&store, number).await.unwrap();
    let e = ns.apply(&n(number), &Operation::Release, &RunOptions::default()).await.unwrap_err();
    assert!(
        matches!(&e, Error::ByCarrier { reason, .. } if reason == "Number currently available"),
        "N16 {e:?}"
    );
    assert_eq!(
        e.to_json(),
        json!({"code": 500, "error": "unspecified_fault", "cause": number,
               "message": "fault by carrier"}),
        "N16"
    );
    assert_eq!(stored(&store, number).await.unwrap(), before, "N16: nothing written");
    remove(&store, "numbers/+1435", number).await;
}
both_backends!(n13_n16_voip_innovations, super::n13_n16);

// ---------------------------------------------------------------------------------------------
// vectors N17–N19: knm_bandwidth2

const BW_ACCOUNT: &str = "/api/accounts/eunit_testing_account";

fn xml(file: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body(file), "application/xml")
}

/// `number_manager.bandwidth2` pointing at `server`, polling every 10 ms.
fn bw_section(server: &MockServer) -> Value {
    json!({"base_url": format!("{}/api", server.uri()),
           "account_id": "eunit_testing_account",
           "api_username": "bw-user", "api_password": "bw-s3cret",
           "site_id": "1337", "sip_peer": "13337",
           "enable_provisioning": true, "sandbox_provisioning": false,
           "order_poll_interval_ms": 10})
}

/// Vectors N17–N19 (the carrier provisioning switches of `number_manager.<carrier>` knm_bandwidth2; N19 through a buy: order RECEIVED, polled COMPLETE).
async fn n17_n19(store: SharedStore) {
    load_kazoo_fixturedb(&store).await;
    let server = MockServer::start().await;
    let search = || Mock::given(method("GET")).and(path(format!("{BW_ACCOUNT}/availableNumbers")));
    search()
        .and(query_param("areaCode", "973"))
        .and(query_param("quantity", "2"))
        .respond_with(xml("bandwidth2_find_by_npa_no_detail.xml"))
        .mount(&server)
        .await;
    search()
        .and(query_param("tollFreeWildCardPattern", "55*"))
        .respond_with(xml("bandwidth2_find_tollfree.xml"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{BW_ACCOUNT}/orders")))
        .and(body_string_contains("<TelephoneNumber>9734096113</TelephoneNumber>"))
        .respond_with(xml("bandwidth2_buy_a_number.xml"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{BW_ACCOUNT}/orders/dc0008ec-07fc-41bf-a3bd-6c6ebf913f1c")))
        .respond_with(xml("bandwidth2_check_order.xml"))
        .mount(&server)
        .await;
    let section = bw_section(&server);
    let ns =
        configured(&store, Some(&["knm_bandwidth2"]), &[("number_manager.bandwidth2", section)])
            .await;
    let rows = ns.search("973", 2).await;
    assert_eq!(rows.len(), 2, "N17");
    assert!(numbers_of(&rows).iter().all(|r| r.starts_with("+1973")), "N17");
    let rows = ns.search("855", 15).await;
    assert_eq!(rows.len(), 15, "N18");
    assert!(numbers_of(&rows).iter().all(|r| r.starts_with("+1855")), "N18");
    // N19
    let number = "+19734096113";
    reset_number(&store, number).await;
    discovery(&store, number, "knm_bandwidth2").await;
    let doc = bought(&store, &ns, "N19", number).await;
    assert_eq!(
        Value::Object(doc.carrier_data.clone()),
        json!({"order_id": "deadbeef1234567901234567890dead",
               "order_name": "Kazoo-63628571101", "number": "+19734096113"}),
        "N19 carrier data"
    );
    reset_number(&store, number).await;
}
both_backends!(n17_n19_bandwidth2, super::n17_n19);

/// A purchase whose outcome is unknown (the order taken, still RECEIVED when the polls run out)
/// is recorded on the number instead of forgotten; the next buy follows that same order (no
/// second order is placed) and lands the number in service once the carrier completes it.
async fn bandwidth2_pending_purchase(store: SharedStore) {
    load_kazoo_fixturedb(&store).await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{BW_ACCOUNT}/orders")))
        .respond_with(xml("bandwidth2_buy_a_number.xml"))
        .expect(1)
        .mount(&server)
        .await;
    let order = format!("{BW_ACCOUNT}/orders/dc0008ec-07fc-41bf-a3bd-6c6ebf913f1c");
    Mock::given(method("GET"))
        .and(path(order.clone()))
        .respond_with(xml("bandwidth2_buy_a_number.xml"))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(order))
        .respond_with(xml("bandwidth2_check_order.xml"))
        .expect(1)
        .mount(&server)
        .await;
    let mut section = bw_section(&server);
    section["order_poll_max_attempts"] = json!(2);
    let ns =
        configured(&store, Some(&["knm_bandwidth2"]), &[("number_manager.bandwidth2", section)])
            .await;
    let number = "+19734096113";
    reset_number(&store, number).await;
    discovery(&store, number, "knm_bandwidth2").await;

    let err = ns.apply(&n(number), &buy(RESELLER), &RunOptions::default()).await.unwrap_err();
    assert!(
        matches!(&err, Error::PurchasePending { order_id, .. }
            if order_id == "dc0008ec-07fc-41bf-a3bd-6c6ebf913f1c"),
        "{err:?}"
    );
    assert_eq!(err.to_json()["message"], "fault by carrier", "rendered as by_carrier");
    let s = stored(&store, number).await.unwrap();
    assert_eq!(s["pvt_state"], "discovery", "{s}");
    let pending = &s["pvt_carrier_data"][numbers::carriers::PENDING_ORDER];
    assert_eq!(pending["order_id"], "dc0008ec-07fc-41bf-a3bd-6c6ebf913f1c", "{s}");
    assert_eq!(pending["module"], "knm_bandwidth2", "{s}");

    // A later run: the same order is followed (the POST mock allows one order only).
    let doc = bought(&store, &ns, "pending purchase resumed", number).await;
    assert!(doc.carrier_data.get(numbers::carriers::PENDING_ORDER).is_none(), "{doc:?}");
    assert_eq!(doc.carrier_data["order_name"], "Kazoo-63628571101");
    reset_number(&store, number).await;
}
both_backends!(
    bandwidth2_pending_purchase_is_recorded_and_resumed,
    super::bandwidth2_pending_purchase
);

/// The order of Kazoo's bandwidth2 order fixtures.
const BW_ORDER: &str = "dc0008ec-07fc-41bf-a3bd-6c6ebf913f1c";

/// `server` takes exactly one order (answered with Kazoo's `bandwidth2_buy_a_number.xml`,
/// status `RECEIVED`).
async fn bw_takes_one_order(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(format!("{BW_ACCOUNT}/orders")))
        .respond_with(xml("bandwidth2_buy_a_number.xml"))
        .expect(1)
        .mount(server)
        .await;
}

/// `server` answers looks at the order with `reply`, the next `times` looks (all, without).
async fn bw_order_answers(server: &MockServer, reply: ResponseTemplate, times: Option<u64>) {
    let mock = Mock::given(method("GET"))
        .and(path(format!("{BW_ACCOUNT}/orders/{BW_ORDER}")))
        .respond_with(reply);
    match times {
        Some(n) => mock.up_to_n_times(n).mount(server).await,
        None => mock.mount(server).await,
    }
}

/// Places a Bandwidth2 purchase of `number` for RESELLER whose order is taken but still
/// `RECEIVED` when the polls run out: the purchase is recorded as pending on the number. The
/// order mock then answers `then` (a fixture file) from the next look on.
async fn pending_purchase(store: &SharedStore, server: &MockServer, number: &str) -> NumberStore {
    bw_takes_one_order(server).await;
    bw_order_answers(server, xml("bandwidth2_buy_a_number.xml"), Some(2)).await;
    let mut section = bw_section(server);
    section["order_poll_max_attempts"] = json!(2);
    let ns =
        configured(store, Some(&["knm_bandwidth2"]), &[("number_manager.bandwidth2", section)])
            .await;
    reset_number(store, number).await;
    discovery(store, number, "knm_bandwidth2").await;
    let err = ns.apply(&n(number), &buy(RESELLER), &RunOptions::by(by(MASTER))).await.unwrap_err();
    assert!(matches!(err, Error::PurchasePending { .. }), "{err:?}");
    let s = stored(store, number).await.unwrap();
    let pending = &s["pvt_carrier_data"][numbers::carriers::PENDING_ORDER];
    assert_eq!(pending["assign_to"], RESELLER, "the buyer is recorded: {s}");
    assert_eq!(pending["auth_by"], MASTER, "who was buying is recorded: {s}");
    ns
}

/// The crawler reconciles a purchase whose outcome is unknown: it asks the carrier once; while
/// the order is still in progress the record stays, and once the carrier says `COMPLETE` the
/// number lands `in_service` for the account that was buying it (no second order is placed).
async fn crawler_lands_a_pending_purchase(store: SharedStore) {
    load_kazoo_fixturedb(&store).await;
    let server = MockServer::start().await;
    let number = "+19734096113";
    pending_purchase(&store, &server, number).await;
    let crawler = numbers::crawler::Crawler::new(store.clone(), Default::default());
    bw_order_answers(&server, xml("bandwidth2_buy_a_number.xml"), Some(1)).await;
    let report = crawler.run_once(numbers::store::now_gregorian()).await.unwrap();
    assert_eq!(report.still_pending, [number], "{report:?}");
    assert_eq!(stored(&store, number).await.unwrap()["pvt_state"], "discovery");

    bw_order_answers(&server, xml("bandwidth2_check_order.xml"), None).await;
    let report = crawler.run_once(numbers::store::now_gregorian()).await.unwrap();
    assert_eq!(report.landed_pending, [number], "{report:?}");
    let s = stored(&store, number).await.unwrap();
    assert_eq!(s["pvt_state"], "in_service", "{s}");
    assert_eq!(s["pvt_assigned_to"], RESELLER, "{s}");
    assert!(s["pvt_carrier_data"].get(numbers::carriers::PENDING_ORDER).is_none(), "{s}");
    assert_eq!(s["pvt_carrier_data"]["order_name"], "Kazoo-63628571101", "{s}");
    assert!(
        raw(&store, &acc(RESELLER).db_name().to_string(), number).await.is_some(),
        "account copy"
    );
    // A second crawler run finds nothing left to do.
    let report = crawler.run_once(numbers::store::now_gregorian()).await.unwrap();
    assert!(report.landed_pending.is_empty() && report.still_pending.is_empty(), "{report:?}");
    reset_number(&store, number).await;
}
both_backends!(
    crawler_lands_a_pending_purchase_once_completed,
    super::crawler_lands_a_pending_purchase
);

/// The crawler releases a pending purchase the carrier says failed: the `discovery` record is
/// deleted, nothing is bought, no new order is placed.
async fn crawler_releases_a_failed_pending_purchase(store: SharedStore) {
    load_kazoo_fixturedb(&store).await;
    let server = MockServer::start().await;
    let number = "+19734096113";
    pending_purchase(&store, &server, number).await;
    let failed = body("bandwidth2_buy_a_number.xml")
        .replace("<OrderStatus>RECEIVED</OrderStatus>", "<OrderStatus>FAILED</OrderStatus>");
    assert!(failed.contains("FAILED"), "the fixture carries an OrderStatus");
    let failed = ResponseTemplate::new(200).set_body_raw(failed, "application/xml");
    bw_order_answers(&server, failed, None).await;
    let crawler = numbers::crawler::Crawler::new(store.clone(), Default::default());
    let report = crawler.run_once(numbers::store::now_gregorian()).await.unwrap();
    assert_eq!(report.released_pending, [number], "{report:?}");
    assert!(stored(&store, number).await.is_none(), "the record is released");
    assert!(
        raw(&store, &acc(RESELLER).db_name().to_string(), number).await.is_none(),
        "nothing bought"
    );
    reset_number(&store, number).await;
}
both_backends!(
    crawler_releases_a_pending_purchase_that_failed,
    super::crawler_releases_a_failed_pending_purchase
);

/// A plain create of a number a search found (its `discovery` record) buys it as Kazoo's
/// `create_with_state` asks: `in_service` (the default) or `reserved` acquire it from its
/// carrier; a state the number cannot reach from `discovery` is refused and nothing is bought.
async fn create_of_a_discovered_number(store: SharedStore) {
    load_kazoo_fixturedb(&store).await;
    let server = MockServer::start().await;
    bw_takes_one_order(&server).await;
    bw_order_answers(&server, xml("bandwidth2_check_order.xml"), None).await;
    let ns = configured(
        &store,
        Some(&["knm_bandwidth2"]),
        &[("number_manager.bandwidth2", bw_section(&server))],
    )
    .await;
    let number = "+19734096113";
    reset_number(&store, number).await;
    discovery(&store, number, "knm_bandwidth2").await;
    let create = |state| {
        Operation::Create(numbers::lifecycle::Create {
            assign_to: Some(acc(RESELLER)),
            state,
            ..Default::default()
        })
    };
    let err = ns
        .apply(&n(number), &create(Some(NumberState::Available)), &RunOptions::by(by(MASTER)))
        .await
        .unwrap_err();
    assert_eq!(err.to_json()["cause"], "from discovery to available", "{}", err.to_json());
    let d = ns.apply(&n(number), &create(None), &RunOptions::by(by(MASTER))).await.unwrap();
    assert_eq!(d.doc.state, NumberState::InService);
    let s = stored(&store, number).await.unwrap();
    assert_eq!(s["pvt_state"], "in_service", "{s}");
    assert_eq!(s["pvt_assigned_to"], RESELLER, "{s}");
    assert_eq!(s["pvt_module_name"], "knm_bandwidth2", "{s}");
    assert_eq!(s["pvt_carrier_data"]["order_name"], "Kazoo-63628571101", "bought: {s}");
    reset_number(&store, number).await;
}
both_backends!(create_of_a_discovered_number_buys_it, super::create_of_a_discovered_number);

/// Search with `offset` and `country`, and the hits kept as `discovery` records in the number
/// databases (where every instance sees them); a number that has a document is left alone, an
/// earlier discovery record refreshed.
async fn search_pages_and_keeps_discovery(store: SharedStore) {
    load_kazoo_fixturedb(&store).await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{BW_ACCOUNT}/availableNumbers")))
        .and(query_param("areaCode", "973"))
        .respond_with(xml("bandwidth2_find_by_npa_no_detail.xml"))
        .mount(&server)
        .await;
    let ns = configured(
        &store,
        Some(&["knm_bandwidth2"]),
        &[("number_manager.bandwidth2", bw_section(&server))],
    )
    .await;
    let all = ns.find_for(&NumberSearch::new("973", 50)).await.unwrap();
    assert_eq!(all.len(), 2, "Kazoo's fixture offers two numbers: {all:?}");
    let page =
        ns.find_for(&NumberSearch { offset: 1, ..NumberSearch::new("973", 5) }).await.unwrap();
    assert_eq!(page, all[1..].to_vec(), "offset 1");
    let page = ns.find_for(&NumberSearch::new("973", 1)).await.unwrap();
    assert_eq!(page, all[..1].to_vec(), "quantity 1");
    let us =
        ns.find_for(&NumberSearch { country: "us", ..NumberSearch::new("973", 50) }).await.unwrap();
    assert_eq!(us, all, "country US is the default");
    let err = ns
        .find_for(&NumberSearch { country: "ZZ", ..NumberSearch::new("973", 1) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), 400, "{err:?}");

    let first = all[0].number.as_str().to_owned();
    let second = all[1].number.as_str().to_owned();
    for number in [&first, &second] {
        reset_number(&store, number).await;
    }
    // The second number is someone's already: its document is left alone.
    let owned = NumberDoc::new(&all[1].number, NumberState::InService, "knm_local", 63_700_000_000);
    overwrite(&store, &numbers::number_db(&second).unwrap(), owned.to_json()).await;
    let written = ns.keep_discovery(&all[..2]).await.unwrap();
    assert_eq!(written, 1);
    let kept = stored(&store, &first).await.unwrap();
    assert_eq!(kept["pvt_state"], "discovery", "{kept}");
    assert_eq!(kept["pvt_module_name"], "knm_bandwidth2", "{kept}");
    assert_eq!(stored(&store, &second).await.unwrap()["pvt_state"], "in_service");
    // Found again: the record is refreshed (a new revision), still one document.
    assert_eq!(ns.keep_discovery(&all[..1]).await.unwrap(), 1);
    let again = stored(&store, &first).await.unwrap();
    assert_ne!(again["_rev"], kept["_rev"], "{again}");
    assert_eq!(again["pvt_created"], kept["pvt_created"], "{again}");
    for number in [&first, &second] {
        reset_number(&store, number).await;
    }
}
both_backends!(search_pages_and_keeps_discovery_records, super::search_pages_and_keeps_discovery);

// ---------------------------------------------------------------------------------------------
// group O carrier info, check, billing

/// Vectors O1–O8 (`knm_carriers:info/3` info with the reseller's account config, `knm_number:allowed_creation_states/2` creation states, `knm_numbers:update_services/1`
/// billable, `knm_carriers:check/1` check).
async fn o_info_check(store: SharedStore) {
    let ns = kazoo_store(store.clone()).await;
    let info = |account: &'static str, reseller: Option<&'static str>, who: &'static str| {
        let ns = ns.clone();
        async move {
            let r = reseller.map(acc);
            ns.carriers_info_for(Some(&acc(account)), r.as_ref(), &by(who)).await.unwrap()
        }
    };
    // O1
    assert_eq!(info(RESELLER, Some(RESELLER), MASTER).await["maximal_prefix_length"], 10, "O1");
    assert_eq!(
        ns.carriers_info(&acc(RESELLER), &by(MASTER)).await.unwrap()["maximal_prefix_length"],
        10,
        "O1"
    );
    // O2
    assert_eq!(info(CHILD, Some(RESELLER), MASTER).await["maximal_prefix_length"], 10, "O2");
    assert_eq!(info(CHILD, None, MASTER).await["maximal_prefix_length"], 10, "O2");
    assert_eq!(
        ns.carriers_info(&acc(CHILD), &by(MASTER)).await.unwrap()["maximal_prefix_length"],
        10,
        "O2"
    );
    // O3: CHILD's account config (configs_number_manager) adds knm_bandwidth2.
    assert_eq!(
        ns.account_carrier_modules(&acc(CHILD)).await.unwrap(),
        Some(vec!["knm_local".to_owned(), "knm_bandwidth2".to_owned()])
    );
    let o3 = info(CHILD, Some(CHILD), MASTER).await;
    assert_eq!(o3["maximal_prefix_length"], 3, "O3");
    assert!(o3["usable_carriers"].as_array().unwrap().contains(&json!("local")), "O3 {o3}");
    for s in ["in_service", "reserved", "available"] {
        assert!(o3["usable_creation_states"].as_array().unwrap().contains(&json!(s)), "O3 {s}");
    }
    // `knm_carriers:get_available_carriers/1`: a search for CHILD as its own reseller asks the same carriers, in Kazoo's order.
    let mut q = SearchQuery::new("+1415", 1);
    q.account_id = Some(acc(CHILD));
    q.reseller_id = Some(acc(CHILD));
    let asked: Vec<CarrierKind> = ns.find(&q).await.reports.iter().map(|r| r.module).collect();
    assert_eq!(
        asked,
        [
            CarrierKind::Reserved,
            CarrierKind::ReservedReseller,
            CarrierKind::Local,
            CarrierKind::Bandwidth2
        ],
        "`knm_carriers:get_available_carriers/1`"
    );
    q.reseller_id = Some(acc(RESELLER));
    let asked: Vec<CarrierKind> = ns.find(&q).await.reports.iter().map(|r| r.module).collect();
    assert!(
        !asked.contains(&CarrierKind::Bandwidth2),
        "`knm_carriers:get_available_carriers/1`: RESELLER has no account config"
    );
    // O4 / O5
    let o4 = info(CHILD, Some(CHILD), RESELLER).await;
    assert_eq!(o4["usable_creation_states"], json!(["in_service", "reserved"]), "O4");
    let o5 = info(CHILD, Some(CHILD), CHILD).await;
    assert_eq!(o5["usable_creation_states"], json!([]), "O5");
    // O6: billable by module, on documents read from the store.
    let local = ns.load(&n(INSVC)).await.unwrap().unwrap();
    assert!(!numbers::carriers::is_number_billable(&local), "O6 knm_local");
    let op = Operation::Reconcile {
        assign_to: Some(acc(RESELLER)),
        module_name: Some("knm_bandwidth2".into()),
        public_fields: None,
    };
    ns.apply(&n(INSVC), &op, &RunOptions::default()).await.unwrap();
    let bw = ns.load(&n(INSVC)).await.unwrap().unwrap();
    assert_eq!(bw.module_name, "knm_bandwidth2");
    assert!(numbers::carriers::is_number_billable(&bw), "O6 knm_bandwidth2");
    reset_number(&store, INSVC).await;
    let pacwest = ns.load(&n("+12014370857")).await.unwrap().unwrap();
    assert_eq!(
        raw(&store, "numbers/+1201", "+12014370857").await.unwrap()["pvt_module_name"],
        "wnm_pacwest"
    );
    assert!(numbers::carriers::is_number_billable(&pacwest), "O6 wnm_pacwest");
    // O7 / O8
    assert!(ns.check(&[], &AuthBy::System).await.is_empty(), "O7");
    let nums: Vec<E164> = [AVAIL, INSVC, HIST, TOLL].iter().map(|s| n(s)).collect();
    let statuses = ns.check(&nums, &AuthBy::System).await;
    assert_eq!(statuses.len(), 4, "O8");
    assert!(statuses.values().all(|s| s == "error"), "O8 {statuses:?}");
}
both_backends!(o_info_check_vectors, super::o_info_check);

//! The typed endpoints render exactly the JSON the old builder produced (same keys, values and
//! key order), for Kazoo's fixture `resources/global.json` and the vector shapes of
//! Kazoo's stepswitch behaviour, across many request variants.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::legacy;
use crate::{compile, route, AccountTree, Config, Proxy, RouteRequest, Scope, Tables};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/stepswitch");

fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{path}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Tables holding one compiled scope (Kazoo's default config), with no diagnostics.
pub(crate) fn tables_of(scope: Scope, docs: &[Value], proxies: &[Proxy]) -> Tables {
    let (tables, diagnostics) = tables_and_diagnostics(scope, docs, proxies);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    tables
}

/// [`tables_of`] for documents that may not all compile.
pub(crate) fn tables_and_diagnostics(
    scope: Scope,
    docs: &[Value],
    proxies: &[Proxy],
) -> (Tables, Vec<crate::Diagnostic>) {
    let config = Config::kazoo_defaults();
    let (table, diagnostics) = compile(scope, docs, proxies, &config);
    let mut tables = Tables::new(Arc::new(config));
    tables.set_table(Arc::new(table));
    (tables, diagnostics)
}

/// Routes `request` both ways and checks the answers are the same JSON, byte for byte.
/// Returns the number of endpoints.
fn same(tables: &Tables, request: &RouteRequest) -> usize {
    let new = route(tables, request);
    let old = legacy::route(tables, request);
    assert_eq!(new.number, old.number, "{request:?}");
    assert_eq!(new.classification, old.classification, "{request:?}");
    let rendered = new.endpoints_json();
    assert_eq!(rendered, old.endpoints, "{request:?}");
    // `Map` equality ignores key order; the serialised text does not.
    let expected = json!({"number": old.number, "classification": old.classification,
        "endpoints": old.endpoints});
    assert_eq!(
        serde_json::to_string(&new).unwrap(),
        serde_json::to_string(&expected).unwrap(),
        "{request:?}"
    );
    // The answer written from the prepared fragments: the same bytes.
    let mut written = String::new();
    new.write_json(&mut written);
    assert_eq!(written, serde_json::to_string(&expected).unwrap(), "{request:?}");
    assert_eq!(new.is_emergency(), old.endpoints.iter().any(legacy_emergency), "{request:?}");
    for (endpoint, json) in new.endpoints.iter().zip(&old.endpoints) {
        assert_eq!(Some(endpoint.dial_string().as_str()), json["Route"].as_str());
        assert_eq!(Some(endpoint.matched()), json["To-DID"].as_str());
        assert_eq!(Some(endpoint.weight()), json["Weight"].as_i64());
        let id = json["Custom-Channel-Vars"]["Resource-ID"].as_str();
        assert_eq!(Some(endpoint.resource_id()), id);
    }
    rendered.len()
}

fn legacy_emergency(endpoint: &Map<String, Value>) -> bool {
    endpoint
        .get("Custom-Channel-Vars")
        .and_then(|ccvs| ccvs.get("Emergency-Resource"))
        .is_some_and(|it| crate::resource::is_true(Some(it)))
}

/// Request variants: the fixture `offnet_req/global.json` with its number, flags, caller ids,
/// privacy and requestor values changed.
fn requests(numbers: &[&str]) -> Vec<RouteRequest> {
    let base = fixture("offnet_req/global.json");
    let mut out = Vec::new();
    let flag_sets: [&[&str]; 5] = [&[], &["fax"], &["testing"], &["fax", "testing"], &["x"]];
    for number in numbers {
        for flags in flag_sets {
            for profile in 0..7 {
                let mut req = base.clone();
                req["To-DID"] = json!(number);
                req["Flags"] = json!(flags);
                match profile {
                    0 => {}
                    1 => {
                        // No caller ids at all (the Kazoo bug in `stepswitch_resources`' `E164-Origination`), T.38 on.
                        for key in [
                            "Outbound-Caller-ID-Number",
                            "Outbound-Caller-ID-Name",
                            "Emergency-Caller-ID-Number",
                            "Emergency-Caller-ID-Name",
                        ] {
                            req.as_object_mut().unwrap().remove(key);
                        }
                        req["Fax-T38-Enabled"] = json!(true);
                    }
                    2 => {
                        // Only emergency caller ids; an unreconcilable outbound one.
                        req["Outbound-Caller-ID-Number"] = json!("anonymous");
                        req.as_object_mut().unwrap().remove("Outbound-Caller-ID-Name");
                    }
                    3 => {
                        req["Privacy-Hide-Name"] = json!(true);
                        req["Requestor-Custom-Channel-Vars"] = json!({
                            "Caller-Privacy-Hide-Number": "true", "TNS-CIC": "cic=2002",
                            "Account-ID": 12345});
                        req["Requestor-Custom-SIP-Headers"] = json!({"X-Auth-IP": "127.0.0.1"});
                    }
                    4 => {
                        req["Bypass-E164"] = json!(true);
                    }
                    5 => {
                        req["Custom-SIP-Headers"] =
                            json!({"Diversions": ["<sip:+14158867900@1.2.3.4:5060>;counter=1"]});
                        req["Outbound-Caller-ID-Number"] = json!("+12125550100");
                    }
                    _ => {
                        req["Requestor-Custom-Channel-Vars"] =
                            json!({"Privacy-Hide-Name": true, "account-id": true});
                        req["Outbound-Caller-ID-Number"] = json!("4158867900");
                    }
                }
                let mut request = RouteRequest::from_offnet_req(&req);
                request.local_zone = (profile % 2 == 0).then(|| "local".to_owned());
                request.shuffle_seed = Some(0x9E37_79B9 + profile as u64);
                out.push(request);
            }
        }
    }
    out
}

const NUMBERS: [&str; 10] = [
    "+14158867900",
    "4158867900",
    "+18005550100",
    "+19005550100",
    "+442071234567",
    "911",
    "933",
    "12125550100",
    "",
    "+1415886790",
];

#[test]
fn fixture_global_json_renders_as_before() {
    let tables =
        tables_of(Scope::Global, fixture("resources/global.json").as_array().unwrap(), &[]);
    let total: usize = requests(&NUMBERS).iter().map(|req| same(&tables, req)).sum();
    assert!(total > 50, "the fixture routes: {total} endpoints");
}

#[test]
fn vector_shapes_render_as_before() {
    let route_rule = "^\\+1(\\d{10})$";
    let docs = [
        json!({"_id": "a-plain", "pvt_type": "resource", "name": "a", "weight_cost": 3,
            "rules": [route_rule, "^\\+1"], "gateways": [{"server": "a.example.com"}]}),
        json!({"_id": "b-flags", "pvt_type": "resource", "weight_cost": 3, "flags": ["fax", "x"],
            "rules": [route_rule], "gateways": [
                {"server": "b.example.com", "port": 5070, "prefix": "9", "suffix": "#"},
                {"server": "c.example.com", "port": 0, "codecs": ["PCMU", "G722"]},
                {"server": "d.example.com", "route": "sip:fixed@d.example.com"}]}),
        json!({"_id": "c-random", "pvt_type": "resource", "weight_cost": 1,
            "gateway_strategy": "random", "rules": [route_rule],
            "gateways": (0..5).map(|idx| json!({"server": format!("g{idx}")})).collect::<Vec<_>>()}),
        json!({"_id": "d-cid", "pvt_type": "resource", "weight_cost": 2, "rules": [route_rule],
            "cid_rules": ["^\\+1415"], "gateways": [{"server": "cid.example.com"}]}),
        json!({"_id": "e-emergency", "pvt_type": "resource", "emergency": true,
            "rules": ["^(911)$"], "rules_test": ["^(933)$"], "flags": ["fax"],
            "gateways": [{"server": "e911", "media": {"fax_option": true, "rtcp_mux": "true"}}]}),
        json!({"_id": "f-ccvs", "pvt_type": "resource", "weight_cost": 50,
            "rules": ["^(\\+1)(\\d{3})(\\d{7})$"], "format_from_uri": true,
            "from_uri_realm": "res.example.com",
            "privacy": {"method": "kazoo", "hide_name": true, "hide_number": true},
            "gateways": [
                {"server": "f1", "realm": "f1.example.com", "username": "u", "password": "p",
                 "custom_channel_vars": {"Resource-ID": "spoofed", "Emergency-Resource": "true",
                     "Extra": 1},
                 "custom_sip_headers": {"out": {"X-Out": "1"}, "X-Legacy": "2"},
                 "invite_parameters": {"static": ["npid"],
                     "dynamic": ["custom_channel_vars.tns_cic", "zone",
                         {"key": "custom_sip_headers.x_auth_ip", "tag": "ip", "separator": "&"}]}},
                {"server": "f2", "from_account_realm": true, "format_from_uri": true},
                {"server": "f3", "realm": "f3.example.com", "format_from_uri": true,
                 "from_uri_realm": "", "progress_timeout": 0, "invite_format": "e164",
                 "caller_id_type": "rewrite", "bypass_media": true}]}),
        json!({"_id": "g-intl", "pvt_type": "resource", "weight_cost": 7,
            "rules": ["^\\+(\\d+)$"], "classifiers": {"international": {}, "did_us": {}},
            "gateways": [{"server": "intl.example.com", "endpoint_type": "freetdm"}]}),
        json!({"_id": "h-unanchored", "pvt_type": "resource", "weight_cost": 4,
            "rules": ["5550100$", "^\\+1(?!900)(\\d{10})$"], "gateways": [{"server": "h"}]}),
    ];
    let tables = tables_of(Scope::Global, &docs, &[]);
    let numbers = ["+14155550100", "+19005550100", "+442071234567", "911", "933", "5550100"];
    let total: usize = requests(&numbers).iter().map(|req| same(&tables, req)).sum();
    assert!(total > 200, "the vectors route: {total} endpoints");
}

#[test]
fn values_json_must_escape_render_as_before() {
    let docs = [json!({"_id": "q\"uote", "pvt_type": "resource", "name": "tab\tname\u{1}\"",
            "rules": ["^(.*)$"], "gateways": [
                {"server": "a\"b\\c", "prefix": "\n", "suffix": "\u{7f}ä", "realm": "r\"",
                 "custom_channel_vars": {"K\"ey": "v\u{0}"}},
                {"server": "s", "route": "sofia/\"x\""}]})];
    let tables = tables_of(Scope::Global, &docs, &[]);
    let mut total = 0;
    for number in ["\"\\\t\u{1f}", "plain"] {
        let mut request = RouteRequest::new(number);
        request.bypass_e164 = true;
        request.outbound_caller_id_name = Some("c\"id".into());
        total += same(&tables, &request);
    }
    assert!(total >= 4, "every number routes: {total} endpoints");
}

#[test]
fn local_resources_with_proxies_render_as_before() {
    // `stepswitch_resources:maybe_get_endpoints/2` and `stepswitch_resources`' dedicated-IP proxies: a hunt account's local resources, one copy per proxy.
    let account = "0123456789abcdef0123456789abcdef".to_owned();
    let proxies = [
        Proxy { zone: "east".into(), ip: "10.0.0.1".into() },
        Proxy { zone: "west".into(), ip: "10.0.0.2".into() },
    ];
    let docs = [
        json!({"_id": "l1", "pvt_type": "resource", "weight_cost": 3, "rules": ["^\\+1(\\d{10})$"],
            "gateways": [{"server": "l1a"}, {"server": "l1b", "port": 5080}]}),
        json!({"_id": "l2", "pvt_type": "resource", "weight_cost": 2, "rules": ["^\\+1415"],
            "gateway_strategy": "random", "gateways": [{"server": "l2a"}, {"server": "l2b"}]}),
    ];
    let mut tables =
        tables_of(Scope::Local { account_id: account.clone() }, &docs, proxies.as_slice());
    let (accounts, _) = AccountTree::from_docs(&[json!({"_id": account, "pvt_tree": []})]);
    tables.accounts = Arc::new(accounts);
    let mut total = 0;
    for mut request in requests(&["+14155550100", "+12125550100"]) {
        request.account_id = Some(account.clone());
        request.hunt_account_id = Some(account.clone());
        total += same(&tables, &request);
    }
    assert!(total > 50, "the local table routes: {total} endpoints");
}

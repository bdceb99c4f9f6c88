//! Kazoo's own stepswitch fixtures and the routing rules of Kazoo's stepswitch behaviour, end to end on
//! the pure core (vector ids and rule numbers in test names).

use std::sync::Arc;

use serde_json::{json, Value};
use stepswitch::{
    compile, compile_parsed, is_emergency_test_call, reverse_lookup, route, AccountTree, Config,
    InboundRequest, ParsedResource, Proxy, RouteRequest, Scope, Tables,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/stepswitch");

fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{path}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn resource_docs() -> Vec<Value> {
    fixture("resources/global.json").as_array().unwrap().clone()
}

fn global_tables(docs: &[Value]) -> Tables {
    let config = Config::kazoo_defaults();
    let (table, diagnostics) = compile(Scope::Global, docs, &[], &config);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let mut tables = Tables::new(Arc::new(config));
    tables.set_table(Arc::new(table));
    tables
}

/// `(Resource-ID, Route, To-DID, Weight)` of each endpoint, the vectors' convention.
fn summary(tables: &Tables, request: &RouteRequest) -> Vec<(String, String, String, i64)> {
    route(tables, request)
        .endpoints_json()
        .iter()
        .map(|ep| {
            (
                ep["Custom-Channel-Vars"]["Resource-ID"].as_str().unwrap().to_owned(),
                ep["Route"].as_str().unwrap().to_owned(),
                ep["To-DID"].as_str().unwrap().to_owned(),
                ep["Weight"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn check(tables: &Tables, request: &RouteRequest, expected: &[(&str, &str, &str, i64)]) {
    let got = summary(tables, request);
    let expected: Vec<(String, String, String, i64)> = expected
        .iter()
        .map(|(id, route, did, weight)| ((*id).into(), (*route).into(), (*did).into(), *weight))
        .collect();
    assert_eq!(got, expected, "request {request:?}");
}

fn res(id: &str, weight: i64, rules: &[&str], extra: Value) -> Value {
    let mut doc = json!({"_id": id, "pvt_type": "resource", "name": id, "weight_cost": weight,
        "rules": rules, "gateways": [{"server": format!("{id}.example.com")}]});
    for (key, value) in extra.as_object().unwrap() {
        doc[key] = value.clone();
    }
    doc
}

fn flagged(number: &str, flags: &[&str]) -> RouteRequest {
    RouteRequest {
        flags: flags.iter().map(|it| (*it).to_owned()).collect(),
        ..RouteRequest::new(number)
    }
}

// ---------------------------------------------------------------------------------------------
// A2: Kazoo's resource fixture and invite parameters.

/// A small JSON-schema (draft 4) checker for the keywords the resources schema uses.
fn validate(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else { return };
    if let Some(kind) = schema.get("type") {
        let kinds: Vec<&str> = match kind {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = kinds.iter().any(|kind| match *kind {
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "object" => value.is_object(),
            "array" => value.is_array(),
            "null" => value.is_null(),
            _ => true,
        });
        if !ok {
            errors.push(format!("{path}: {value} is not {kinds:?}"));
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        if !options.contains(value) {
            errors.push(format!("{path}: {value} not in enum"));
        }
    }
    if let (Some(min), Some(number)) =
        (schema.get("minimum").and_then(Value::as_f64), value.as_f64())
    {
        if number < min {
            errors.push(format!("{path}: {number} < {min}"));
        }
    }
    if let (Some(max), Some(number)) =
        (schema.get("maximum").and_then(Value::as_f64), value.as_f64())
    {
        if number > max {
            errors.push(format!("{path}: {number} > {max}"));
        }
    }
    if let (Some(max), Some(text)) =
        (schema.get("maxLength").and_then(Value::as_u64), value.as_str())
    {
        if text.chars().count() as u64 > max {
            errors.push(format!("{path}: longer than {max}"));
        }
    }
    if let Value::Object(object) = value {
        if let Some(Value::Array(required)) = schema.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(key) {
                    errors.push(format!("{path}: missing {key}"));
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let patterns = schema.get("patternProperties").and_then(Value::as_object);
        for (key, child) in object {
            if let Some(sub) = properties.and_then(|it| it.get(key)) {
                validate(child, sub, &format!("{path}.{key}"), errors);
            }
            for (pattern, sub) in patterns.into_iter().flatten() {
                if regex_lite_match(pattern, key) {
                    validate(child, sub, &format!("{path}.{key}"), errors);
                }
            }
        }
    }
    if let (Value::Array(items), Some(sub)) = (value, schema.get("items")) {
        for (idx, item) in items.iter().enumerate() {
            validate(item, sub, &format!("{path}[{idx}]"), errors);
        }
    }
}

fn regex_lite_match(pattern: &str, key: &str) -> bool {
    e164::Pattern::new(pattern).map(|it| it.is_match(key)).unwrap_or(false)
}

#[test]
fn a2_check_fixtures_validate_against_resources_schema() {
    let schema = fixture("schemas/resources.json");
    for doc in resource_docs() {
        let mut errors = Vec::new();
        validate(&doc, &schema, "$", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }
    // The schema checker itself rejects a wrong type.
    let mut errors = Vec::new();
    validate(&json!({"weight_cost": "x", "gateways": [{"port": "y"}]}), &schema, "$", &mut errors);
    assert!(errors.contains(&"$.weight_cost: \"x\" is not [\"integer\"]".to_owned()), "{errors:?}");
    assert!(errors.contains(&"$.gateways[0]: missing server".to_owned()), "{errors:?}");
}

fn a2_invite_parameters(gateway_change: Value, request_change: (&str, &str, &str)) -> Vec<String> {
    let mut doc = resource_docs()[0].clone();
    for (key, value) in gateway_change.as_object().unwrap() {
        doc["gateways"][0]["invite_parameters"][key] = value.clone();
    }
    let tables = global_tables(&[doc]);
    let mut req = fixture("offnet_req/global.json");
    let (object, key, value) = request_change;
    req[object] = json!({ key: value });
    let mut request = RouteRequest::from_offnet_req(&req);
    request.local_zone = Some("local".into());
    // The fixture's own To-DID (+14158867900, did_us) reaches the fixture's first gateway.
    let answer = route(&tables, &request);
    assert_eq!(answer.endpoints.len(), 1);
    answer.endpoints[0].to_json()["SIP-Invite-Parameters"]
        .as_array()
        .map(|items| items.iter().map(|it| it.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn a2_invite_parameters_rule_29() {
    let ccvs = "Requestor-Custom-Channel-Vars";
    let headers = "Requestor-Custom-SIP-Headers";
    let tagged = json!([{"key": "custom_sip_headers.x_auth_ip", "tag": "somethingelse"}]);
    let tagged_amp =
        json!([{"key": "custom_sip_headers.x_auth_ip", "tag": "somethingelse", "separator": "&"}]);
    type Case<'a> = (&'a str, Value, (&'a str, &'a str, &'a str), Vec<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        (
            "1",
            json!({"static": ["npid"]}),
            (ccvs, "TNS-CIC", "cic=2002"),
            vec!["npid", "zone=local", "cic=2002"],
        ),
        (
            "2",
            json!({"static": ["npid"]}),
            (ccvs, "Account-ID", "12345"),
            vec!["npid", "zone=local", "account_id=12345"],
        ),
        (
            "3",
            json!({"static": ["test"]}),
            (headers, "X-Auth-IP", "127.0.0.1"),
            vec!["test", "zone=local", "source_ip=127.0.0.1"],
        ),
        (
            "4",
            json!({"dynamic": tagged}),
            (headers, "X-Auth-IP", "127.0.0.1"),
            vec!["npid", "somethingelse=127.0.0.1"],
        ),
        (
            "5",
            json!({"dynamic": tagged_amp}),
            (headers, "X-Auth-IP", "127.0.0.1"),
            vec!["npid", "somethingelse&127.0.0.1"],
        ),
    ];
    for (case, gateway_change, request_change, expected) in cases {
        assert_eq!(a2_invite_parameters(gateway_change, request_change), expected, "A2 #{case}");
    }
}

// ---------------------------------------------------------------------------------------------
// Kazoo's fixture `resources/global.json` loads and routes.

#[test]
fn fixture_global_json_loads_as_classifier_copies_rule_14() {
    let tables = global_tables(&resource_docs());
    let ids: Vec<&str> = tables.global.resources().iter().map(|it| it.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "resource000000000000000000000001-did_us",
            "resource000000000000000000000001-toll_us",
            "resource000000000000000000000001-tollfree_us"
        ]
    );
}

#[test]
fn fixture_global_json_routes_offnet_req() {
    let tables = global_tables(&resource_docs());
    let request = RouteRequest::from_offnet_req(&fixture("offnet_req/global.json"));
    let answer = route(&tables, &request);
    assert_eq!(answer.number, "+14158867900");
    assert_eq!(answer.classification.as_deref(), Some("did_us"));
    assert_eq!(answer.endpoints.len(), 1);
    let ep = Value::Object(answer.endpoints[0].to_json());
    // `stepswitch_resources:gateway_dialstring/2`: the gateway `route` is used verbatim; `stepswitch_resources:filter_resource_by_rules/5`: longest group of did_us.
    assert_eq!(ep["Route"], json!("+14158867900@2600hz.local"));
    assert_eq!(ep["To-DID"], json!("4158867900"));
    assert_eq!(ep["Outbound-Callee-ID-Number"], json!("4158867900"));
    assert_eq!(ep["Name"], json!("Resource001 - did_us"));
    assert_eq!(ep["Weight"], json!(1));
    assert_eq!(ep["Codecs"], json!(["PCMU"]));
    assert_eq!(ep["Auth-User"], json!("gateway001resource001username"));
    assert_eq!(ep["Auth-Realm"], json!("carrier.2600hz.local"));
    assert_eq!(ep["SIP-Interface"], json!("sipinterface_2"));
    assert_eq!(ep["Endpoint-Type"], json!("sip"));
    assert_eq!(ep["Endpoint-Progress-Timeout"], json!("8"));
    assert_eq!(ep["Privacy-Method"], json!("sip"));
    assert_eq!(ep["Outbound-Caller-ID-Number"], json!("+14158867900"));
    // Custom SIP headers: `out` merged over legacy keys, `in` dropped.
    assert_eq!(
        ep["Custom-SIP-Headers"],
        json!({"x-gateway-header": "baz", "x-legacy-header": "Hz", "x-gateway-outbound": "bar"})
    );
    // `stepswitch_resources:resource_to_endpoints` CCVs.
    let ccvs = &ep["Custom-Channel-Vars"];
    assert_eq!(ccvs["Global-Resource"], json!(true));
    assert_eq!(ccvs["Resource-ID"], json!("resource000000000000000000000001-did_us"));
    assert_eq!(ccvs["E164-Destination"], json!("+14158867900"));
    assert_eq!(ccvs["E164-Origination"], json!("+14158867900"));
    assert_eq!(ccvs["DID-Classifier"], json!("did_us"));
    assert_eq!(ccvs["Original-Number"], json!("+14158867900"));
    assert_eq!(ccvs["Matched-Number"], json!("4158867900"));
    assert_eq!(ccvs["Resource-Type"], json!("offnet-termination"));
    assert_eq!(ccvs["Format-From-URI"], json!(false));
    assert!(ccvs.get("Emergency-Resource").is_none());
    // The CLI object has exactly these keys.
    let object = serde_json::to_value(&answer).unwrap();
    let keys: Vec<&str> = object.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["number", "classification", "endpoints"]);
}

#[test]
fn fixture_global_json_tollfree_and_unclassified_rule_18() {
    let tables = global_tables(&resource_docs());
    let id = "resource000000000000000000000001-tollfree_us";
    check(
        &tables,
        &flagged("8445550100", &["testing"]),
        &[(id, "+14158867900@2600hz.local", "8445550100", 1)],
    );
    // International: no copy for that class and no unclassified resource → no route.
    check(&tables, &RouteRequest::new("+442071234567"), &[]);
    // Flag not offered by the resource (`stepswitch_resources:filter_resources/2`).
    check(&tables, &flagged("8445550100", &["nope"]), &[]);
}

// ---------------------------------------------------------------------------------------------
// Selection rules.

#[test]
fn rule_15_hunt_account_and_hierarchy() {
    let config = Config::kazoo_defaults();
    let parent = "a".repeat(32);
    let child = "b".repeat(32);
    let stranger = "c".repeat(32);
    let (global, _) =
        compile(Scope::Global, &[res("g", 3, &["^\\+1(\\d{10})$"], json!({}))], &[], &config);
    let (local, _) = compile(
        Scope::Local { account_id: parent.clone() },
        &[res("l", 3, &["^\\+1(\\d{10})$"], json!({}))],
        &[],
        &config,
    );
    let mut tables = Tables::new(Arc::new(config));
    tables.set_table(Arc::new(global));
    tables.set_table(Arc::new(local));
    let (accounts, diagnostics) = AccountTree::from_docs(&[
        json!({"_id": parent, "pvt_tree": []}),
        json!({"_id": child, "pvt_tree": [parent]}),
        json!({"_id": stranger, "pvt_tree": []}),
    ]);
    assert!(diagnostics.is_empty());
    tables.accounts = Arc::new(accounts);
    let req = |account: Option<&str>, hunt: Option<&str>| RouteRequest {
        account_id: account.map(str::to_owned),
        hunt_account_id: hunt.map(str::to_owned),
        ..RouteRequest::new("+14155550100")
    };
    let ids = |request: &RouteRequest| -> Vec<String> {
        summary(&tables, request).into_iter().map(|it| it.0).collect()
    };
    assert_eq!(ids(&req(Some(&child), None)), vec!["g"]);
    assert_eq!(ids(&req(Some(&parent), Some(&parent))), vec!["l"]);
    assert_eq!(ids(&req(Some(&child), Some(&parent))), vec!["l"]);
    // Not in the hierarchy: no endpoints, no global fallback.
    assert!(ids(&req(Some(&stranger), Some(&parent))).is_empty());
    // Quirk 70: hunt account without account id fails.
    assert!(ids(&req(None, Some(&parent))).is_empty());
    // Empty hunt id counts as absent.
    assert_eq!(ids(&req(Some(&child), Some(""))), vec!["g"]);
}

#[test]
fn rule_17_flag_filter() {
    let rule = &["^\\+1(\\d{10})$"];
    let docs = [
        res("a-plain", 3, rule, json!({})),
        res("b-needs", 3, rule, json!({"require_flags": true, "flags": ["x"]})),
        res("c-xy", 3, rule, json!({"flags": ["x", "y"]})),
        res("d-ignore", 3, rule, json!({"ignore_flags": true, "require_flags": true})),
    ];
    let tables = global_tables(&docs);
    let ids = |request: &RouteRequest| -> Vec<String> {
        summary(&tables, request).into_iter().map(|it| it.0).collect()
    };
    // No flags: only resources without require_flags, ascending _id (`stepswitch_resources`' order before sorting).
    assert_eq!(ids(&flagged("+14155550100", &[])), vec!["a-plain", "c-xy"]);
    // Flags: every request flag offered (or empty), or ignore_flags; descending _id (`stepswitch_resources`' order before sorting).
    assert_eq!(ids(&flagged("+14155550100", &["x"])), vec!["d-ignore", "c-xy", "b-needs"]);
    assert_eq!(ids(&flagged("+14155550100", &["x", "y"])), vec!["d-ignore", "c-xy"]);
    assert_eq!(
        ids(&flagged("+14155550100", &["x", "NULL", "0", "", "undefined"])),
        vec!["d-ignore", "c-xy", "b-needs"]
    );
    // Case-sensitive.
    assert_eq!(ids(&flagged("+14155550100", &["X"])), vec!["d-ignore"]);
}

#[test]
fn rule_18_classification_bucket_no_fallback() {
    let docs = [
        res("plain", 3, &["^\\+1(\\d{10})$"], json!({})),
        res(
            "cls",
            3,
            &[],
            json!({"classifiers": {"did_us": {"enabled": false}, "tollfree_us": {}}}),
        ),
    ];
    let tables = global_tables(&docs);
    // did_us bucket exists but its only copy is disabled: nothing, no fallback to "plain".
    check(&tables, &RouteRequest::new("+14155550100"), &[]);
    // tollfree_us bucket.
    check(
        &tables,
        &RouteRequest::new("+18005550100"),
        &[("cls-tollfree_us", "sip:8005550100@cls.example.com", "8005550100", 3)],
    );
    // International has no bucket → unclassified resources.
    let tables = global_tables(&[res("plain", 3, &["^\\+(\\d+)$"], json!({}))]);
    check(
        &tables,
        &RouteRequest::new("+442071234567"),
        &[("plain", "sip:442071234567@plain.example.com", "442071234567", 3)],
    );
}

#[test]
fn rule_19_28_stable_weight_order_and_tie_flip_kept() {
    let rule = &["^\\+1(\\d{10})$"];
    let docs = [
        res("r1", 5, rule, json!({})),
        res("r2", 1, rule, json!({"flags": ["f"]})),
        res("r3", 5, rule, json!({"flags": ["f"]})),
        res("r4", 5, rule, json!({"flags": ["f"]})),
    ];
    let tables = global_tables(&docs);
    let ids = |request: &RouteRequest| -> Vec<(String, i64)> {
        summary(&tables, request).into_iter().map(|it| (it.0, it.3)).collect()
    };
    let expect = |list: &[(&str, i64)]| -> Vec<(String, i64)> {
        list.iter().map(|(id, w)| ((*id).to_owned(), *w)).collect()
    };
    assert_eq!(
        ids(&flagged("+14155550100", &[])),
        expect(&[("r2", 1), ("r1", 5), ("r3", 5), ("r4", 5)])
    );
    // Kept quirk 57: ties in descending _id order once a flag is given.
    assert_eq!(ids(&flagged("+14155550100", &["f"])), expect(&[("r2", 1), ("r4", 5), ("r3", 5)]));
}

#[test]
fn rule_10_20_21_rule_order_and_capture_kept() {
    let tables = global_tables(&[
        // Last rule evaluated first (`stepswitch_resources`' rule compilation): the substring rule wins over the full one.
        res("rev", 3, &["^\\+1(\\d{10})$", "^\\+1"], json!({})),
        // Longest group, not the first (`stepswitch_resources:filter_resource_by_rules/5`).
        res("long", 4, &["^(\\+1)(\\d{3})(\\d{7})$"], json!({})),
        res("none", 5, &[], json!({})),
    ]);
    check(
        &tables,
        &RouteRequest::new("+14155550100"),
        &[
            ("rev", "sip:+1@rev.example.com", "+1", 3),
            ("long", "sip:5550100@long.example.com", "5550100", 4),
        ],
    );
}

#[test]
fn rule_23_cid_rules_and_bug_65() {
    let tables =
        global_tables(&[res("cid", 3, &["^\\+1(\\d{10})$"], json!({"cid_rules": ["^\\+1415"]}))]);
    let with_cid = |cid: Option<&str>| RouteRequest {
        outbound_caller_id_number: cid.map(str::to_owned),
        ..RouteRequest::new("+12125550100")
    };
    assert_eq!(summary(&tables, &with_cid(Some("+14158867900"))).len(), 1);
    assert!(summary(&tables, &with_cid(Some("+12128867900"))).is_empty());
    // Kazoo bug in `stepswitch_bridge:check_diversion_fields/1` fixed: no caller id is simply no match (Kazoo crashes).
    assert!(summary(&tables, &with_cid(None)).is_empty());
    // Diversions honoured: user part of the first Diversion, even with a port (the Kazoo bug in `stepswitch_bridge:check_diversion_fields/1` fixed).
    let mut config = Config::kazoo_defaults();
    config.cid_rules_honor_diversions = true;
    let mut honoring = tables.clone();
    honoring.config = Arc::new(config);
    let mut request = with_cid(Some("+12128867900"));
    request.custom_sip_headers =
        json!({"Diversions": ["<sip:+14158867900@1.2.3.4:5060>;counter=1"]})
            .as_object()
            .unwrap()
            .clone();
    assert_eq!(summary(&honoring, &request).len(), 1);
}

#[test]
fn rule_25_dial_string() {
    let docs =
        [json!({"_id": "d", "pvt_type": "resource", "rules": ["^\\+1(\\d{10})$"], "gateways": [
            {"server": "a.example.com", "port": 5060, "prefix": "9", "suffix": "#"},
            {"server": "b.example.com", "port": 5070},
            {"server": "c.example.com", "port": 0},
            {"server": "d.example.com", "route": "sip:fixed@d.example.com"}
        ]})];
    let tables = global_tables(&docs);
    let routes: Vec<String> =
        summary(&tables, &RouteRequest::new("+14155550100")).into_iter().map(|it| it.1).collect();
    assert_eq!(
        routes,
        vec![
            "sip:94155550100#@a.example.com",
            "sip:4155550100@b.example.com:5070",
            "sip:4155550100@c.example.com",
            "sip:fixed@d.example.com"
        ]
    );
}

#[test]
fn rule_26_random_gateway_strategy_is_a_permutation() {
    let gateways: Vec<Value> = (0..6).map(|idx| json!({"server": format!("g{idx}")})).collect();
    let docs = [json!({"_id": "r", "pvt_type": "resource", "rules": ["^\\+1(\\d{10})$"],
        "gateway_strategy": "random", "gateways": gateways})];
    let tables = global_tables(&docs);
    let mut seen_other_order = false;
    for seed in 1..20u64 {
        let request =
            RouteRequest { shuffle_seed: Some(seed), ..RouteRequest::new("+14155550100") };
        let mut routes: Vec<String> =
            summary(&tables, &request).into_iter().map(|it| it.1).collect();
        if routes[0] != "sip:4155550100@g0" {
            seen_other_order = true;
        }
        routes.sort();
        let expected: Vec<String> = (0..6).map(|idx| format!("sip:4155550100@g{idx}")).collect();
        assert_eq!(routes, expected);
    }
    assert!(seen_other_order);
}

#[test]
fn rule_27_proxies() {
    let config = Config::kazoo_defaults();
    let account = "a".repeat(32);
    let proxies = [
        Proxy { zone: "east".into(), ip: "10.0.0.1".into() },
        Proxy { zone: "west".into(), ip: "10.0.0.2".into() },
    ];
    let (local, _) = compile(
        Scope::Local { account_id: account.clone() },
        &[res("l", 3, &["^\\+1(\\d{10})$"], json!({}))],
        &proxies,
        &config,
    );
    let mut tables = Tables::new(Arc::new(config));
    tables.set_table(Arc::new(local));
    let request = RouteRequest {
        account_id: Some(account.clone()),
        hunt_account_id: Some(account),
        ..RouteRequest::new("+14155550100")
    };
    let answer = route(&tables, &request);
    let endpoints = answer.endpoints_json();
    let got: Vec<(&str, &str)> = endpoints
        .iter()
        .map(|ep| (ep["Proxy-Zone"].as_str().unwrap(), ep["Proxy-IP"].as_str().unwrap()))
        .collect();
    assert_eq!(got, vec![("east", "10.0.0.1"), ("west", "10.0.0.2")]);
    // Local resources carry no Global-Resource CCV (false is dropped like Kazoo's filter_empty).
    assert!(endpoints[0]["Custom-Channel-Vars"].get("Global-Resource").is_none());
}

#[test]
fn rule_30a_t38_and_emergency_marking_rule_35() {
    let docs = [
        json!({"_id": "e", "pvt_type": "resource", "emergency": true, "rules": ["^(911)$"], "flags": ["fax"],
        "gateways": [{"server": "e911", "media": {"fax_option": true}}]}),
    ];
    let tables = global_tables(&docs);
    let request = RouteRequest {
        flags: vec!["fax".into()],
        emergency_caller_id_number: Some("+14158867999".into()),
        outbound_caller_id_number: Some("+14158867900".into()),
        ..RouteRequest::new("911")
    };
    let answer = route(&tables, &request);
    assert!(answer.is_emergency());
    let ep = &answer.endpoints[0].to_json();
    assert_eq!(ep["Custom-Channel-Vars"]["Emergency-Resource"], json!("true"));
    assert_eq!(ep["Outbound-Caller-ID-Number"], json!("+14158867999"));
    assert_eq!(ep["Enable-T38-Fax"], json!(true));
    assert_eq!(ep["Enable-T38-Fax-Request"], json!(true));
    assert_eq!(ep["Enable-T38-Gateway"], json!("self"));
    assert_eq!(answer.classification.as_deref(), Some("emergency"));
}

#[test]
fn bug_73_no_caller_id_no_origination() {
    let tables = global_tables(&[res("r", 3, &["^\\+1(\\d{10})$"], json!({}))]);
    let answer = route(&tables, &RouteRequest::new("4155550100"));
    assert_eq!(answer.number, "+14155550100");
    let ep = answer.endpoints[0].to_json();
    let ccvs = &ep["Custom-Channel-Vars"];
    assert!(ccvs.get("E164-Origination").is_none());
    assert_eq!(ccvs["Original-Number"], json!("4155550100"));
}

#[test]
fn rule_2_bypass_e164() {
    let tables = global_tables(&[res("r", 3, &["^(\\d{10})$"], json!({}))]);
    assert!(summary(&tables, &RouteRequest::new("4155550100")).is_empty());
    let request = RouteRequest { bypass_e164: true, ..RouteRequest::new("4155550100") };
    check(&tables, &request, &[("r", "sip:4155550100@r.example.com", "4155550100", 3)]);
}

#[test]
fn rule_38_40_reverse_lookup() {
    let docs = [
        json!({"_id": "a", "pvt_type": "resource", "gateways": [
            {"server": "10.0.0.1", "force_port": true, "port": 5070, "username": "u-a"}]}),
        json!({"_id": "b", "pvt_type": "resource", "gateways": [
            {"server": "sip.carrier.com", "realm": "carrier.com", "username": "u-b", "media": {"fax_option": true}}]}),
    ];
    let tables = global_tables(&docs);
    let lookup = |ip: Option<&str>, port: Option<i64>, realm: Option<&str>, from: Option<&str>| {
        reverse_lookup(
            &tables,
            &InboundRequest {
                ip: ip.map(str::to_owned),
                port,
                auth_realm: realm.map(str::to_owned),
                from: from.map(str::to_owned),
                account_id: None,
            },
        )
        .map(|hit| (hit.resource_id, hit.username, hit.fax_option, hit.global))
    };
    assert_eq!(
        lookup(Some("10.0.0.1"), Some(5070), None, None),
        Some(("a".into(), Some("u-a".into()), false, true))
    );
    // force_port: the port must match too.
    assert_eq!(lookup(Some("10.0.0.1"), Some(5060), None, None), None);
    assert_eq!(
        lookup(None, None, Some("carrier.com"), None),
        Some(("b".into(), Some("u-b".into()), true, true))
    );
    // An IP literal realm is replaced by the From host.
    assert_eq!(
        lookup(Some("192.0.2.9"), None, Some("192.0.2.9"), Some("1000@sip.carrier.com"))
            .map(|it| it.0),
        Some("b".into())
    );
}

/// `stepswitch_resources:reverse_lookup/1`: when no global gateway matches, the local resources of `Account-ID` are searched
/// (and only then: a global match wins; without an account, or for an account with no table,
/// there is no fallback). Gateways are searched in stored order, which `stepswitch_resources`' gateway compilation makes the
/// reverse of document order: of two matching gateways of one resource, the later one wins.
#[test]
fn rule_39_local_fallback_and_gateway_order() {
    let config = Config::kazoo_defaults();
    let account = "d".repeat(32);
    let global_docs = [
        json!({"_id": "g", "pvt_type": "resource", "gateways": [
            {"server": "10.0.0.1", "username": "u-g"}]}),
        json!({"_id": "g2", "pvt_type": "resource", "gateways": [
            {"server": "10.9.9.9", "realm": "carrier.net", "username": "g2-first"},
            {"server": "sip.carrier.net", "realm": "carrier.net", "username": "g2-second"}]}),
    ];
    let local_docs = [json!({"_id": "l", "pvt_type": "resource", "gateways": [
        {"server": "10.0.0.2", "realm": "byoc.example.com", "username": "l-first"},
        {"server": "10.0.0.3", "realm": "byoc.example.com", "username": "l-second"},
        {"server": "10.0.0.1", "username": "l-shadowed"}]})];
    let (global, diagnostics) = compile(Scope::Global, &global_docs, &[], &config);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let (local, diagnostics) =
        compile(Scope::Local { account_id: account.clone() }, &local_docs, &[], &config);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let mut tables = Tables::new(Arc::new(config));
    tables.set_table(Arc::new(global));
    tables.set_table(Arc::new(local));
    let lookup = |ip: Option<&str>, realm: Option<&str>, account_id: Option<&str>| {
        reverse_lookup(
            &tables,
            &InboundRequest {
                ip: ip.map(str::to_owned),
                port: None,
                auth_realm: realm.map(str::to_owned),
                from: None,
                account_id: account_id.map(str::to_owned),
            },
        )
        .map(|hit| (hit.resource_id, hit.username.unwrap_or_default(), hit.global))
    };
    let hit = |id: &str, user: &str, global: bool| Some((id.to_owned(), user.to_owned(), global));

    // No global gateway has 10.0.0.2: the account's local resource answers.
    assert_eq!(lookup(Some("10.0.0.2"), None, Some(&account)), hit("l", "l-first", false));
    // No account, or an account without local resources: no fallback.
    assert_eq!(lookup(Some("10.0.0.2"), None, None), None);
    assert_eq!(lookup(Some("10.0.0.2"), None, Some(&"e".repeat(32))), None);
    // A global match is taken before the local one with the same server.
    assert_eq!(lookup(Some("10.0.0.1"), None, Some(&account)), hit("g", "u-g", true));
    // Two gateways of one resource match the realm: the last in the document is found first,
    // in a global resource and in a local one.
    assert_eq!(lookup(None, Some("carrier.net"), None), hit("g2", "g2-second", true));
    assert_eq!(lookup(None, Some("byoc.example.com"), Some(&account)), hit("l", "l-second", false));
    // Only the first gateway matches this IP: it is found despite the order.
    assert_eq!(lookup(Some("10.9.9.9"), None, None), hit("g2", "g2-first", true));
}

/// `stepswitch_resources:reverse_lookup/1`: without an `Account-ID`, the local resources searched are those of the account
/// owning the realm (`realm` of its account doc); a realm two accounts claim finds none.
#[test]
fn rule_39_account_owning_the_realm() {
    let config = Config::kazoo_defaults();
    let (owner, other) = ("a".repeat(32), "b".repeat(32));
    let local_docs = [json!({"_id": "l", "pvt_type": "resource", "gateways": [
        {"server": "10.0.0.7", "username": "byoc"}]})];
    let (local, diagnostics) =
        compile(Scope::Local { account_id: owner.clone() }, &local_docs, &[], &config);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let (accounts, diagnostics) = AccountTree::from_docs(&[
        json!({"_id": owner, "pvt_tree": [], "realm": "Owner.Sip.Example.com"}),
        json!({"_id": other, "pvt_tree": [], "realm": "other.sip.example.com"}),
        json!({"_id": "c".repeat(32), "pvt_tree": [], "realm": "shared.example.com"}),
        json!({"_id": "d".repeat(32), "pvt_tree": [], "realm": "shared.example.com"}),
    ]);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(accounts.account_by_realm("owner.sip.example.com"), Some(owner.as_str()));
    assert_eq!(accounts.account_by_realm("shared.example.com"), None, "claimed twice");
    let mut tables = Tables::new(Arc::new(config));
    tables.set_table(Arc::new(local));
    tables.accounts = Arc::new(accounts);
    let lookup = |realm: &str, from: Option<&str>| {
        reverse_lookup(
            &tables,
            &InboundRequest {
                ip: Some("10.0.0.7".into()),
                port: None,
                auth_realm: Some(realm.into()),
                from: from.map(str::to_owned),
                account_id: None,
            },
        )
        .map(|hit| (hit.resource_id, hit.username, hit.global))
    };
    let byoc = Some(("l".to_owned(), Some("byoc".to_owned()), false));
    assert_eq!(lookup("owner.sip.example.com", None), byoc);
    // An IP literal as Auth-Realm: the realm is the host of From (`stepswitch_resources:reverse_lookup/1`).
    assert_eq!(lookup("10.1.2.3", Some("sip:+14155550100@OWNER.sip.example.com")), byoc);
    // Another account's realm (it has no local resources), an unknown and a shared one.
    assert_eq!(lookup("other.sip.example.com", None), None);
    assert_eq!(lookup("nobody.example.com", None), None);
    assert_eq!(lookup("shared.example.com", None), None);
}

#[test]
fn rule_41_rules_test() {
    let docs =
        [json!({"_id": "e", "pvt_type": "resource", "emergency": true, "rules": ["^(9\\d\\d)$"],
        "rules_test": ["^933$"], "gateways": [{"server": "e911"}]})];
    let tables = global_tables(&docs);
    let test = route(&tables, &RouteRequest::new("933"));
    assert!(is_emergency_test_call(&tables, &test.endpoints, "933"));
    let real = route(&tables, &RouteRequest::new("911"));
    assert!(!is_emergency_test_call(&tables, &real.endpoints, "911"));
}

#[test]
fn broken_rule_is_reported_and_rest_of_resource_works() {
    let config = Config::kazoo_defaults();
    let docs = [res("r", 3, &["^\\+1(\\d{10})$", "^\\+1(?<=", "^\\+44(\\d+)$"], json!({}))];
    let (table, diagnostics) = compile(Scope::Global, &docs, &[], &config);
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(
        (diagnostics[0].doc_id.as_str(), diagnostics[0].field.as_str(), diagnostics[0].index),
        ("r", "rules", Some(1))
    );
    let mut tables = Tables::new(Arc::new(config));
    tables.set_table(Arc::new(table));
    assert_eq!(summary(&tables, &RouteRequest::new("+14155550100")).len(), 1);
    assert_eq!(summary(&tables, &RouteRequest::new("+442071234567")).len(), 1);
}

#[test]
fn pcre_rules_with_lookaround_route_via_fallback_engine() {
    let tables = global_tables(&[res("look", 3, &["^\\+1(?!900)(\\d{10})$"], json!({}))]);
    assert_eq!(summary(&tables, &RouteRequest::new("+14155550100")).len(), 1);
    assert!(summary(&tables, &RouteRequest::new("+19005550100")).is_empty());
}

#[test]
fn unanchored_rules_are_not_lost_by_the_index() {
    let tables = global_tables(&[
        res("any", 3, &["5550100$"], json!({})),
        res("mid", 3, &["(4155)"], json!({})),
    ]);
    let ids: Vec<String> =
        summary(&tables, &RouteRequest::new("+14155550100")).into_iter().map(|it| it.0).collect();
    assert_eq!(ids, vec!["any", "mid"]);
}

/// The reactor compiles documents it parsed once (`ParsedResource`, `compile_parsed`): the same
/// table and the same diagnostics as `compile` from JSON, a document that cannot be used and a
/// bad rule included.
#[test]
fn compile_parsed_equals_compile_from_json() {
    let mut docs = resource_docs();
    docs.push(json!({"_id": "bad-rule", "pvt_type": "resource", "enabled": true,
        "rules": ["^\\+1(\\d{10}$", "^\\+44(\\d+)$"], "gateways": [{"server": "gw.example"}]}));
    docs.push(json!({"pvt_type": "resource", "rules": ["^(\\d+)$"]}));
    let config = Config::kazoo_defaults();
    let (from_json, json_diagnostics) = compile(Scope::Global, &docs, &[], &config);
    let parsed: Vec<ParsedResource> = docs.iter().map(ParsedResource::parse).collect();
    let (from_parsed, parsed_diagnostics) = compile_parsed(Scope::Global, &parsed, &[], &config);
    assert_eq!(parsed_diagnostics, json_diagnostics);
    assert!(!json_diagnostics.is_empty());
    assert_eq!(format!("{:?}", from_parsed.resources()), format!("{:?}", from_json.resources()));
}

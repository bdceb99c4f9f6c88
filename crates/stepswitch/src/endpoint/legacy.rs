//! The endpoint builder `route()` used before endpoints became typed, kept verbatim as the
//! reference the new [`Endpoint::to_json`](crate::Endpoint::to_json) is checked against.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::Config;
use crate::resource::{is_true, DynamicParameter, GatewayStrategy};
use crate::route::{diversion_user, RouteRequest, Tables};
use crate::table::{Gateway, Resource, RouteTable, Selected};

/// The old `Endpoint`: the Kazoo endpoint JSON object.
type Endpoint = Map<String, Value>;

/// The old `RouteAnswer`.
pub(super) struct RouteAnswer {
    pub(super) number: String,
    pub(super) classification: Option<String>,
    pub(super) endpoints: Vec<Endpoint>,
}

/// Routes a request (`stepswitch_resources:endpoints/2`, `stepswitch_resources`' matching).
pub(super) fn route(tables: &Tables, request: &RouteRequest) -> RouteAnswer {
    let converters = &tables.config.converters;
    // `stepswitch_util:get_outbound_destination/1`.
    let number = if request.bypass_e164 {
        request.to_did.clone()
    } else {
        converters.normalize(&request.to_did)
    };
    let classification = converters.classifier_for(&number).map(|it| it.name.clone());
    // `stepswitch_resources:maybe_get_endpoints/2`.
    let table: Option<&RouteTable> =
        match request.hunt_account_id.as_deref().filter(|it| !it.is_empty()) {
            None => Some(&tables.global),
            Some(hunt) => {
                if tables.accounts.is_in_hierarchy(hunt, request.account_id.as_deref()) {
                    tables.local.get(hunt).map(Arc::as_ref)
                } else {
                    None
                }
            }
        };
    let Some(table) = table else {
        return RouteAnswer { number, classification, endpoints: Vec::new() };
    };
    let caller_id = caller_id_for_rules(&tables.config, request);
    let selected =
        table.select(&number, classification.as_deref(), &request.flags, caller_id.as_deref());
    let mut seed = request.shuffle_seed.unwrap_or_else(fresh_seed);
    let mut endpoints = Vec::new();
    for Selected { resource, matched, .. } in &selected {
        let ctx = EndpointContext {
            config: &tables.config,
            request,
            number: &number,
            classification: classification.as_deref(),
            matched,
        };
        resource_endpoints(resource, &ctx, &mut seed, &mut endpoints);
    }
    RouteAnswer { number, classification, endpoints }
}

/// `stepswitch_resources:evaluate_cid_rules/2`: the caller id `cid_rules` see.
fn caller_id_for_rules(config: &Config, request: &RouteRequest) -> Option<String> {
    if config.cid_rules_honor_diversions {
        let first = request
            .custom_sip_headers
            .get("Diversions")
            .and_then(Value::as_array)
            .and_then(|items| items.first())
            .and_then(Value::as_str);
        if let Some(diversion) = first {
            // Kazoo bug in `stepswitch_bridge:check_diversion_fields/1` fixed: Kazoo crashes unless there is exactly one `:` before the `@`.
            return diversion_user(diversion).or_else(|| request.outbound_caller_id_number.clone());
        }
    }
    request.outbound_caller_id_number.clone()
}

fn fresh_seed() -> u64 {
    std::collections::hash_map::RandomState::new().build_hasher().finish() | 1
}

struct EndpointContext<'a> {
    config: &'a Config,
    request: &'a RouteRequest,
    number: &'a str,
    classification: Option<&'a str>,
    matched: &'a str,
}

/// `stepswitch_resources:resource_to_endpoints` to `stepswitch_resources`' dedicated-IP proxies for one selected resource.
fn resource_endpoints(
    resource: &Resource,
    ctx: &EndpointContext<'_>,
    seed: &mut u64,
    out: &mut Vec<Endpoint>,
) {
    let mut order: Vec<&Gateway> = resource.gateways.iter().collect();
    if resource.gateway_strategy == GatewayStrategy::Random {
        // `stepswitch_resources`' `gateway_strategy`: Fisher-Yates with a xorshift generator.
        for i in (1..order.len()).rev() {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let j = (*seed % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
    }
    for gateway in order {
        let endpoint = gateway_endpoint(resource, gateway, ctx);
        if resource.proxies.is_empty() {
            out.push(endpoint);
        } else {
            // `stepswitch_resources`' dedicated-IP proxies.
            for proxy in &resource.proxies {
                let mut copy = endpoint.clone();
                copy.insert("Proxy-Zone".into(), Value::String(proxy.zone.clone()));
                copy.insert("Proxy-IP".into(), Value::String(proxy.ip.clone()));
                out.push(copy);
            }
        }
    }
}

/// `stepswitch_resources:gateway_dialstring/2`: the dial string.
fn dial_string(gateway: &Gateway, number_match: &str) -> String {
    if let Some(route) = &gateway.route {
        return route.clone();
    }
    let server = gateway.server.as_deref().unwrap_or("");
    // Built by hand (one allocation, no formatting machinery): this runs per endpoint.
    let mut out = String::with_capacity(
        4 + gateway.prefix.len() + number_match.len() + gateway.suffix.len() + 1 + server.len() + 8,
    );
    out.push_str("sip:");
    out.push_str(&gateway.prefix);
    out.push_str(number_match);
    out.push_str(&gateway.suffix);
    out.push('@');
    out.push_str(server);
    if let Some(port) = gateway.port.filter(|port| *port != 0 && *port != 5060) {
        use std::fmt::Write as _;
        let _ = write!(out, ":{port}");
    }
    out
}

/// `props:filter_empty/1`: Kazoo drops undefined, `""`, `[]`, `{}`, `false` and `0` values.
fn push(endpoint: &mut Endpoint, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::Bool(flag) => !flag,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Number(number) => number.as_f64() == Some(0.0),
    };
    if !empty {
        endpoint.insert(key.to_owned(), value);
    }
}

fn opt(value: &Option<String>) -> Value {
    value.clone().map(Value::String).unwrap_or(Value::Null)
}

/// `stepswitch_resources:gateway_to_endpoint/3` (`gateway_to_endpoint/3`) plus the rule-24 updates.
fn gateway_endpoint(resource: &Resource, gateway: &Gateway, ctx: &EndpointContext<'_>) -> Endpoint {
    let request = ctx.request;
    let matched = ctx.matched;
    let (cid_name, cid_number) = if gateway.emergency {
        (
            request
                .emergency_caller_id_name
                .clone()
                .or_else(|| request.outbound_caller_id_name.clone()),
            request
                .emergency_caller_id_number
                .clone()
                .or_else(|| request.outbound_caller_id_number.clone()),
        )
    } else {
        (request.outbound_caller_id_name.clone(), request.outbound_caller_id_number.clone())
    };
    // Sized up front: growing an `IndexMap` reallocates and re-indexes it several times.
    let mut ccvs = Map::with_capacity(gateway.ccvs.len() + 16);
    ccvs.extend(gateway.ccvs.iter().map(|(key, value)| (key.clone(), value.clone())));
    if gateway.emergency {
        ccvs.insert("Emergency-Resource".into(), Value::String("true".into()));
    }
    ccvs.insert("Matched-Number".into(), Value::String(matched.to_owned()));
    ccvs.insert("Resource-Type".into(), Value::String("offnet-termination".into()));
    if let Some(mux) = &gateway.rtcp_mux {
        ccvs.insert("RTCP-MUX".into(), Value::String(mux.clone()));
    }
    from_uri_settings(gateway, &mut ccvs);
    // `stepswitch_resources:resource_to_endpoints`.
    if resource.global {
        ccvs.insert("Global-Resource".into(), Value::Bool(true));
    }
    ccvs.insert("Resource-ID".into(), Value::String(resource.id.clone()));
    ccvs.insert("E164-Destination".into(), Value::String(ctx.number.to_owned()));
    // Kazoo bug in `stepswitch_resources`' `E164-Origination` fixed: no caller id means no `E164-Origination` instead of a crash.
    if let Some(cid) = request.outbound_caller_id_number.as_deref() {
        let converters = &ctx.config.converters;
        if converters.is_reconcilable(cid) {
            ccvs.insert("E164-Origination".into(), Value::String(converters.normalize(cid)));
        }
    }
    if let Some(class) = ctx.classification {
        ccvs.insert("DID-Classifier".into(), Value::String(class.to_owned()));
    }
    if !request.to_did.is_empty() {
        ccvs.insert("Original-Number".into(), Value::String(request.to_did.clone()));
    }
    let hide_name = gateway.privacy_hide_name
        || request.privacy_hide_name
        || requestor_hides(
            &request.requestor_custom_channel_vars,
            "Privacy-Hide-Name",
            "Caller-Privacy-Hide-Name",
        );
    let hide_number = gateway.privacy_hide_number
        || request.privacy_hide_number
        || requestor_hides(
            &request.requestor_custom_channel_vars,
            "Privacy-Hide-Number",
            "Caller-Privacy-Hide-Number",
        );

    let mut ep = Endpoint::with_capacity(32);
    push(&mut ep, "Route", Value::String(dial_string(gateway, matched)));
    push(&mut ep, "Outbound-Callee-ID-Name", Value::String(matched.to_owned()));
    push(&mut ep, "Outbound-Callee-ID-Number", Value::String(matched.to_owned()));
    push(&mut ep, "To-DID", Value::String(matched.to_owned()));
    push(&mut ep, "Invite-Format", Value::String(gateway.invite_format.to_string()));
    push(&mut ep, "Caller-ID-Type", Value::String(gateway.caller_id_type.to_string()));
    push(&mut ep, "Bypass-Media", Value::Bool(gateway.bypass_media));
    push(
        &mut ep,
        "Codecs",
        Value::Array(gateway.codecs.iter().cloned().map(Value::String).collect()),
    );
    push(&mut ep, "Auth-User", opt(&gateway.username));
    push(&mut ep, "Auth-Password", opt(&gateway.password));
    push(&mut ep, "Auth-Realm", opt(&gateway.realm));
    push(&mut ep, "Custom-SIP-Headers", Value::Object(Map::clone(&gateway.sip_headers)));
    push(&mut ep, "SIP-Interface", opt(&gateway.sip_interface));
    push(&mut ep, "Endpoint-Type", Value::String(gateway.endpoint_type.to_string()));
    push(&mut ep, "Endpoint-Options", Value::Object(Map::clone(&gateway.endpoint_options)));
    push(&mut ep, "Endpoint-Progress-Timeout", Value::String(gateway.progress_timeout.to_string()));
    push(&mut ep, "Custom-Channel-Vars", Value::Object(ccvs));
    push(&mut ep, "Outbound-Caller-ID-Number", opt(&cid_number));
    push(&mut ep, "Outbound-Caller-ID-Name", opt(&cid_name));
    push(
        &mut ep,
        "SIP-Invite-Parameters",
        Value::Array(invite_parameters(gateway, request).into_iter().map(Value::String).collect()),
    );
    push(&mut ep, "Privacy-Method", Value::String(gateway.privacy_method.to_string()));
    push(&mut ep, "Privacy-Hide-Name", Value::Bool(hide_name));
    push(&mut ep, "Privacy-Hide-Number", Value::Bool(hide_number));
    if request.flags.iter().any(|it| it == "fax") {
        t38_settings(gateway.fax_option, request.fax_t38_enabled, &mut ep);
    }
    ep.insert("Name".into(), opt(&resource.name));
    ep.insert("Weight".into(), Value::from(resource.weight));
    ep
}

fn requestor_hides(ccvs: &Map<String, Value>, key: &str, caller_key: &str) -> bool {
    is_true(ccvs.get(key)) || is_true(ccvs.get(caller_key))
}

/// `stepswitch_resources:gateway_from_uri_settings/1` hints (`gateway_from_uri_settings/1`): realm precedence from_uri_realm →
/// from_account_realm → gateway realm.
fn from_uri_settings(gateway: &Gateway, ccvs: &mut Map<String, Value>) {
    if !gateway.format_from_uri {
        ccvs.insert("Format-From-URI".into(), Value::Bool(false));
        return;
    }
    if let Some(realm) = gateway.from_uri_realm.as_deref().filter(|it| !it.is_empty()) {
        ccvs.insert("Format-From-URI".into(), Value::Bool(true));
        ccvs.insert("From-URI-Realm".into(), Value::String(realm.to_owned()));
    } else if gateway.from_account_realm {
        ccvs.insert("Format-From-URI".into(), Value::Bool(true));
        ccvs.insert("From-Account-Realm".into(), Value::Bool(true));
    } else if let Some(realm) = gateway.realm.as_deref().filter(|it| !it.is_empty()) {
        ccvs.insert("Format-From-URI".into(), Value::Bool(true));
        ccvs.insert("From-URI-Realm".into(), Value::String(realm.to_owned()));
    } else {
        ccvs.insert("Format-From-URI".into(), Value::Bool(false));
    }
}

/// Rule 30a (`kapps_call_command:get_outbound_t38_settings/2`).
fn t38_settings(gateway_fax: bool, call_t38: bool, ep: &mut Endpoint) {
    ep.insert("Enable-T38-Fax".into(), Value::Bool(true));
    match (gateway_fax, call_t38) {
        (true, true) | (false, false) => {
            ep.insert("Enable-T38-Passthrough".into(), Value::Bool(true));
        }
        (true, false) => {
            ep.insert("Enable-T38-Fax-Request".into(), Value::Bool(true));
            ep.insert("Enable-T38-Gateway".into(), Value::String("self".into()));
        }
        (false, true) => {
            ep.insert("Enable-T38-Fax-Request".into(), Value::Bool(true));
            ep.insert("Enable-T38-Gateway".into(), Value::String("peer".into()));
        }
    }
}

/// `stepswitch_resources:sip_invite_parameters/2` (`sip_invite_parameters/2`): static parameters verbatim, then the dynamic ones in
/// reverse of their listed order; missing or empty values are skipped.
fn invite_parameters(gateway: &Gateway, request: &RouteRequest) -> Vec<String> {
    let Some(params) = &gateway.invite_parameters else { return Vec::new() };
    let mut out = params.static_params.clone();
    let ccvs = normalize_keys(&request.requestor_custom_channel_vars);
    let headers = normalize_keys(&request.requestor_custom_sip_headers);
    let value = |key: &str| -> Option<String> {
        let found = if key == "zone" {
            request.local_zone.clone().map(Value::String)
        } else if let Some(rest) = key.strip_prefix("custom_sip_headers.") {
            headers.get(rest).cloned()
        } else if let Some(rest) = key.strip_prefix("custom_channel_vars.") {
            ccvs.get(rest).cloned()
        } else {
            None
        };
        match found? {
            Value::String(text) if !text.is_empty() => Some(text),
            Value::Number(number) => Some(number.to_string()),
            Value::Bool(flag) => Some(flag.to_string()),
            _ => None,
        }
    };
    for param in params.dynamic.iter().rev() {
        match param {
            DynamicParameter::Key(key) => {
                if let Some(found) = value(key) {
                    out.push(found);
                }
            }
            DynamicParameter::Tagged { key, tag, separator } => {
                if let Some(found) = value(key) {
                    out.push(format!("{tag}{separator}{found}"));
                }
            }
        }
    }
    out
}

/// `kz_json:normalize/1` on top-level keys: lower-case, `-` → `_`.
fn normalize_keys(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .map(|(key, value)| (key.to_ascii_lowercase().replace('-', "_"), value.clone()))
        .collect()
}

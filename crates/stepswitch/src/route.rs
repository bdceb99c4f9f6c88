//! Answering a route request: which endpoints, in which order (rules 15-30, §12).
//!
//! [`route`] is a pure function of the compiled [`Tables`] and a [`RouteRequest`]; its
//! [`RouteAnswer`] serialises to exactly what `switchboard route --json` prints.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::resource::{diag, is_true, DynamicParameter, GatewayStrategy};
use crate::table::{Gateway, Resource, RouteTable, Scope, Selected};
use crate::Diagnostic;

/// Account ancestry from the `accounts` db (`pvt_tree` of each account doc), for the hunt
/// account check of rule 15.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountTree {
    trees: HashMap<String, Vec<String>>,
}

impl AccountTree {
    /// An empty tree (no account knows its ancestors).
    pub fn new() -> AccountTree {
        AccountTree::default()
    }

    /// Builds the tree from account docs (db `accounts`): `_id` → `pvt_tree`. A doc without an
    /// `_id` or with a malformed `pvt_tree` is reported and skipped.
    pub fn from_docs(docs: &[Value]) -> (AccountTree, Vec<Diagnostic>) {
        let mut tree = AccountTree::new();
        let mut diagnostics = Vec::new();
        for doc in docs {
            let Some(id) = doc.get("_id").and_then(Value::as_str) else {
                diagnostics.push(diag("", "_id", None, "account doc without _id; skipped"));
                continue;
            };
            match doc.get("pvt_tree") {
                None | Some(Value::Null) => tree.insert(id, Vec::new()),
                Some(Value::Array(items)) => {
                    let ancestors: Option<Vec<String>> =
                        items.iter().map(|it| it.as_str().map(str::to_owned)).collect();
                    match ancestors {
                        Some(ancestors) => tree.insert(id, ancestors),
                        None => diagnostics.push(diag(
                            id,
                            "pvt_tree",
                            None,
                            "not a list of ids; skipped",
                        )),
                    }
                }
                Some(_) => diagnostics.push(diag(id, "pvt_tree", None, "not a list; skipped")),
            }
        }
        (tree, diagnostics)
    }

    /// Sets one account's ancestors (its `pvt_tree`, root first).
    pub fn insert(&mut self, account_id: &str, pvt_tree: Vec<String>) {
        self.trees.insert(account_id.to_owned(), pvt_tree);
    }

    /// Forgets an account.
    pub fn remove(&mut self, account_id: &str) {
        self.trees.remove(account_id);
    }

    /// An account's `pvt_tree`.
    pub fn pvt_tree(&self, account_id: &str) -> Option<&[String]> {
        self.trees.get(account_id).map(Vec::as_slice)
    }

    /// `kzd_accounts:is_in_account_hierarchy(Hunt, Account, true)` (rule 15): the hunt account
    /// is the account itself or one of its ancestors. An absent account fails (quirk 70).
    pub fn is_in_hierarchy(&self, hunt_account_id: &str, account_id: Option<&str>) -> bool {
        let Some(account_id) = account_id else { return false };
        hunt_account_id == account_id
            || self
                .pvt_tree(account_id)
                .is_some_and(|tree| tree.iter().any(|it| it == hunt_account_id))
    }
}

/// Everything a lookup reads: the config, the global table, the local tables, the accounts.
///
/// Cheap to clone (all `Arc`s); the reactor builds a new one per change and swaps it in.
#[derive(Debug, Clone)]
pub struct Tables {
    /// Settings the tables were compiled with (and `normalize`/`classify` for lookups).
    pub config: Arc<Config>,
    /// The `offnet` table.
    pub global: Arc<RouteTable>,
    /// Local tables by raw account id; a missing account routes like an empty table.
    pub local: HashMap<String, Arc<RouteTable>>,
    /// Account ancestry for rule 15.
    pub accounts: Arc<AccountTree>,
}

impl Tables {
    /// Empty tables for this config.
    pub fn new(config: Arc<Config>) -> Tables {
        Tables {
            config,
            global: Arc::new(RouteTable::empty(Scope::Global)),
            local: HashMap::new(),
            accounts: Arc::new(AccountTree::new()),
        }
    }

    /// The table of a scope, if loaded.
    pub fn table(&self, scope: &Scope) -> Option<&Arc<RouteTable>> {
        match scope {
            Scope::Global => Some(&self.global),
            Scope::Local { account_id } => self.local.get(account_id),
        }
    }

    /// Replaces the table of its own scope.
    pub fn set_table(&mut self, table: Arc<RouteTable>) {
        match table.scope().clone() {
            Scope::Global => self.global = table,
            Scope::Local { account_id } => {
                self.local.insert(account_id, table);
            }
        }
    }
}

/// An outbound route request: the parts of Kazoo's `offnet_req` that routing reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteRequest {
    /// `To-DID`.
    pub to_did: String,
    /// `Flags`.
    pub flags: Vec<String>,
    /// `Account-ID`.
    pub account_id: Option<String>,
    /// `Hunt-Account-ID`: local resources of this account (rule 15).
    pub hunt_account_id: Option<String>,
    /// `Outbound-Caller-ID-Number` (cid_rules, endpoint CID, `E164-Origination`).
    pub outbound_caller_id_number: Option<String>,
    /// `Outbound-Caller-ID-Name`.
    pub outbound_caller_id_name: Option<String>,
    /// `Emergency-Caller-ID-Number` (emergency gateways' CID).
    pub emergency_caller_id_number: Option<String>,
    /// `Emergency-Caller-ID-Name`.
    pub emergency_caller_id_name: Option<String>,
    /// `Bypass-E164`: route `To-DID` verbatim instead of normalizing it (rule 2).
    pub bypass_e164: bool,
    /// `Fax-T38-Enabled` (rule 30a).
    pub fax_t38_enabled: bool,
    /// `Requestor-Custom-Channel-Vars` (rule 29, privacy).
    pub requestor_custom_channel_vars: Map<String, Value>,
    /// `Requestor-Custom-SIP-Headers` (rule 29).
    pub requestor_custom_sip_headers: Map<String, Value>,
    /// `Custom-SIP-Headers` (its `Diversions` feed `cid_rules` when honoured, rule 23).
    pub custom_sip_headers: Map<String, Value>,
    /// The request's own privacy keys (`Privacy-Hide-Name`, `Caller-Privacy-Hide-Name`...).
    pub privacy_hide_name: bool,
    /// The request's own hide-number privacy.
    pub privacy_hide_number: bool,
    /// This node's zone name for the `zone` invite parameter (rule 29); `None` leaves it out.
    pub local_zone: Option<String>,
    /// Seed for `gateway_strategy: random` shuffles; `None` draws a fresh one per request.
    pub shuffle_seed: Option<u64>,
}

impl RouteRequest {
    /// A request for `to_did` with nothing else set.
    pub fn new(to_did: impl Into<String>) -> RouteRequest {
        RouteRequest { to_did: to_did.into(), ..RouteRequest::default() }
    }

    /// Reads the routing-relevant keys of a Kazoo `offnet_req` message.
    pub fn from_offnet_req(req: &Value) -> RouteRequest {
        let text = |key: &str| {
            req.get(key).and_then(Value::as_str).filter(|it| !it.is_empty()).map(str::to_owned)
        };
        let object =
            |key: &str| req.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
        let ccvs = object("Custom-Channel-Vars");
        let hide = |key: &str, ccv: &str| {
            is_true(req.get(key))
                || is_true(ccvs.get(key))
                || is_true(req.get(ccv))
                || is_true(ccvs.get(ccv))
        };
        RouteRequest {
            to_did: text("To-DID").unwrap_or_default(),
            flags: req
                .get("Flags")
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
            account_id: text("Account-ID"),
            hunt_account_id: text("Hunt-Account-ID"),
            outbound_caller_id_number: text("Outbound-Caller-ID-Number"),
            outbound_caller_id_name: text("Outbound-Caller-ID-Name"),
            emergency_caller_id_number: text("Emergency-Caller-ID-Number"),
            emergency_caller_id_name: text("Emergency-Caller-ID-Name"),
            bypass_e164: is_true(req.get("Bypass-E164")),
            fax_t38_enabled: is_true(req.get("Fax-T38-Enabled")),
            requestor_custom_channel_vars: object("Requestor-Custom-Channel-Vars"),
            requestor_custom_sip_headers: object("Requestor-Custom-SIP-Headers"),
            custom_sip_headers: object("Custom-SIP-Headers"),
            privacy_hide_name: hide("Privacy-Hide-Name", "Caller-Privacy-Hide-Name"),
            privacy_hide_number: hide("Privacy-Hide-Number", "Caller-Privacy-Hide-Number"),
            local_zone: None,
            shuffle_seed: None,
        }
    }
}

/// One endpoint: the Kazoo endpoint JSON object (keys of rule 30 and the CCVs of rule 24).
pub type Endpoint = Map<String, Value>;

/// The answer to a route request; serialises to
/// `{"number": ..., "classification": ..., "endpoints": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteAnswer {
    /// The number routed (normalized `To-DID`, or verbatim with `Bypass-E164`).
    pub number: String,
    /// `classify(number)`, `null` when no classifier matches.
    pub classification: Option<String>,
    /// Endpoints in final order (rule 28); empty means "no resources".
    pub endpoints: Vec<Endpoint>,
}

impl RouteAnswer {
    /// Whether any endpoint is an emergency endpoint (`Emergency-Resource`, rule 35).
    pub fn is_emergency(&self) -> bool {
        self.endpoints.iter().any(is_emergency_endpoint)
    }
}

/// Whether an endpoint carries CCV `Emergency-Resource: "true"`.
pub fn is_emergency_endpoint(endpoint: &Endpoint) -> bool {
    endpoint
        .get("Custom-Channel-Vars")
        .and_then(|ccvs| ccvs.get("Emergency-Resource"))
        .is_some_and(|it| is_true(Some(it)))
}

/// Routes a request (`stepswitch_resources:endpoints/2`, §12).
pub fn route(tables: &Tables, request: &RouteRequest) -> RouteAnswer {
    let converters = &tables.config.converters;
    // Rule 2.
    let number = if request.bypass_e164 {
        request.to_did.clone()
    } else {
        converters.normalize(&request.to_did)
    };
    let classification = converters.classifier_for(&number).map(|it| it.name.clone());
    // Rule 15.
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
    for Selected { resource, matched } in &selected {
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

/// Rule 23: the caller id `cid_rules` see.
fn caller_id_for_rules(config: &Config, request: &RouteRequest) -> Option<String> {
    if config.cid_rules_honor_diversions {
        let first = request
            .custom_sip_headers
            .get("Diversions")
            .and_then(Value::as_array)
            .and_then(|items| items.first())
            .and_then(Value::as_str);
        if let Some(diversion) = first {
            // Bug 65 fixed: Kazoo crashes unless there is exactly one `:` before the `@`.
            return diversion_user(diversion).or_else(|| request.outbound_caller_id_number.clone());
        }
    }
    request.outbound_caller_id_number.clone()
}

/// The user part of a Diversion header value such as `<sip:+14158867900@1.2.3.4:5060>;counter=1`.
pub fn diversion_user(diversion: &str) -> Option<String> {
    let start = diversion
        .find("sip:")
        .map(|it| it + 4)
        .or_else(|| diversion.find("tel:").map(|it| it + 4))
        .unwrap_or(0);
    let rest = &diversion[start..];
    let end = rest.find(['@', ';', '>']).unwrap_or(rest.len());
    let user = rest[..end].trim_start_matches('<');
    if user.is_empty() {
        None
    } else {
        Some(user.to_owned())
    }
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

/// Rules 24-27 for one selected resource.
fn resource_endpoints(
    resource: &Resource,
    ctx: &EndpointContext<'_>,
    seed: &mut u64,
    out: &mut Vec<Endpoint>,
) {
    let mut order: Vec<&Gateway> = resource.gateways.iter().collect();
    if resource.gateway_strategy == GatewayStrategy::Random {
        // Rule 26: Fisher-Yates with a xorshift generator.
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
            // Rule 27.
            for proxy in &resource.proxies {
                let mut copy = endpoint.clone();
                copy.insert("Proxy-Zone".into(), Value::String(proxy.zone.clone()));
                copy.insert("Proxy-IP".into(), Value::String(proxy.ip.clone()));
                out.push(copy);
            }
        }
    }
}

/// Rule 25: the dial string.
pub fn dial_string(gateway: &Gateway, number_match: &str) -> String {
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

/// Rule 30 (`gateway_to_endpoint/3`) plus the rule-24 updates.
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
    // Rule 24.
    if resource.global {
        ccvs.insert("Global-Resource".into(), Value::Bool(true));
    }
    ccvs.insert("Resource-ID".into(), Value::String(resource.id.clone()));
    ccvs.insert("E164-Destination".into(), Value::String(ctx.number.to_owned()));
    // Bug 73 fixed: no caller id means no `E164-Origination` instead of a crash.
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
    push(&mut ep, "Invite-Format", Value::String(gateway.invite_format.clone()));
    push(&mut ep, "Caller-ID-Type", Value::String(gateway.caller_id_type.clone()));
    push(&mut ep, "Bypass-Media", Value::Bool(gateway.bypass_media));
    push(
        &mut ep,
        "Codecs",
        Value::Array(gateway.codecs.iter().cloned().map(Value::String).collect()),
    );
    push(&mut ep, "Auth-User", opt(&gateway.username));
    push(&mut ep, "Auth-Password", opt(&gateway.password));
    push(&mut ep, "Auth-Realm", opt(&gateway.realm));
    push(&mut ep, "Custom-SIP-Headers", Value::Object(gateway.sip_headers.clone()));
    push(&mut ep, "SIP-Interface", opt(&gateway.sip_interface));
    push(&mut ep, "Endpoint-Type", Value::String(gateway.endpoint_type.clone()));
    push(&mut ep, "Endpoint-Options", Value::Object(gateway.endpoint_options.clone()));
    push(&mut ep, "Endpoint-Progress-Timeout", Value::String(gateway.progress_timeout.to_string()));
    push(&mut ep, "Custom-Channel-Vars", Value::Object(ccvs));
    push(&mut ep, "Outbound-Caller-ID-Number", opt(&cid_number));
    push(&mut ep, "Outbound-Caller-ID-Name", opt(&cid_name));
    push(
        &mut ep,
        "SIP-Invite-Parameters",
        Value::Array(invite_parameters(gateway, request).into_iter().map(Value::String).collect()),
    );
    push(&mut ep, "Privacy-Method", Value::String(gateway.privacy_method.clone()));
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

/// Rule 34 hints (`gateway_from_uri_settings/1`): realm precedence from_uri_realm →
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

/// Rule 29 (`sip_invite_parameters/2`): static parameters verbatim, then the dynamic ones in
/// reverse of their listed order; missing or empty values are skipped.
pub fn invite_parameters(gateway: &Gateway, request: &RouteRequest) -> Vec<String> {
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

/// Rule 41 (`is_test_number/2`): whether any endpoint's `Resource-ID` names a **global**
/// resource whose `rules_test` match the raw `To-DID` (local resources never count, quirk 64).
pub fn is_emergency_test_call(tables: &Tables, endpoints: &[Endpoint], to_did: &str) -> bool {
    endpoints.iter().any(|ep| {
        ep.get("Custom-Channel-Vars")
            .and_then(|ccvs| ccvs.get("Resource-ID"))
            .and_then(Value::as_str)
            .is_some_and(|id| tables.global.is_test_number(id, to_did))
    })
}

/// Inputs of an inbound reverse lookup (rule 38).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundRequest {
    /// `From-Network-Addr` (or `Orig-IP`).
    pub ip: Option<String>,
    /// `From-Network-Port` (or `Orig-Port`).
    pub port: Option<i64>,
    /// `Auth-Realm`.
    pub auth_realm: Option<String>,
    /// `From` (`user@host`), whose host is the realm when `Auth-Realm` is empty or an IP.
    pub from: Option<String>,
    /// `Account-ID` (or CCV `Account-ID`, or the account owning the realm — resolved by the
    /// caller) whose local resources are searched when no global gateway matches.
    pub account_id: Option<String>,
}

/// A reverse lookup hit (rule 40 result props).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReverseMatch {
    /// The resource's id.
    pub resource_id: String,
    /// Whether it is global.
    pub global: bool,
    /// The gateway's `realm`.
    pub realm: Option<String>,
    /// The gateway's `username`.
    pub username: Option<String>,
    /// The gateway's `password`.
    pub password: Option<String>,
    /// The gateway's fax option.
    pub fax_option: bool,
}

/// Rules 38-40 (`stepswitch_resources:reverse_lookup/1`): which carrier gateway an inbound
/// call came from. Global resources first, then the account's local ones; resources in Kazoo's
/// cached order (descending `_id`) and gateways in stored order (reverse document order).
pub fn reverse_lookup(tables: &Tables, inbound: &InboundRequest) -> Option<ReverseMatch> {
    let realm = inbound_realm(inbound);
    let search = |table: &RouteTable| {
        table.resources().iter().rev().find_map(|res| {
            res.gateways
                .iter()
                .rev()
                .find(|gw| {
                    gateway_matches(gw, inbound.ip.as_deref(), inbound.port, realm.as_deref())
                })
                .map(|gw| ReverseMatch {
                    resource_id: res.id.clone(),
                    global: res.global,
                    realm: gw.realm.clone(),
                    username: gw.username.clone(),
                    password: gw.password.clone(),
                    fax_option: gw.fax_option,
                })
        })
    };
    search(&tables.global).or_else(|| {
        let account = inbound.account_id.as_deref()?;
        search(tables.local.get(account)?)
    })
}

/// Rule 38 (`stepswitch_util:get_realm/1`).
fn inbound_realm(inbound: &InboundRequest) -> Option<String> {
    match inbound.auth_realm.as_deref() {
        Some(realm) if !realm.is_empty() && realm.parse::<std::net::IpAddr>().is_err() => {
            Some(realm.to_owned())
        }
        _ => inbound.from.as_deref().and_then(|from| {
            let host = from.rsplit_once('@').map(|(_, host)| host)?;
            let host = host.split([';', '>']).next().unwrap_or(host);
            (!host.is_empty()).then(|| host.to_owned())
        }),
    }
}

/// Rule 40 (`search_gateway/4`).
fn gateway_matches(gw: &Gateway, ip: Option<&str>, port: Option<i64>, realm: Option<&str>) -> bool {
    if gw.force_port {
        return matches!((ip, port, gw.server.as_deref(), gw.port), (Some(ip), Some(port), Some(server), Some(gw_port)) if server == ip && gw_port == port);
    }
    let server = gw.server.as_deref();
    let gw_realm = gw.realm.as_deref();
    (ip.is_some() && (server == ip || gw_realm == ip))
        || (realm.is_some() && (gw_realm == realm || server == realm))
}

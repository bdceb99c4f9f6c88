//! Answering a route request: which endpoints, in which order (`stepswitch_resources:endpoints/2`, `stepswitch_resources`' matching).
//!
//! [`route`] is a pure function of the compiled [`Tables`] and a [`RouteRequest`]; its
//! [`RouteAnswer`] serialises to exactly what `switchboard route --json` prints.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::endpoint::{AnswerContext, Endpoint, EndpointJson, InviteInputs};
use crate::resource::{diag, is_true};
use crate::table::{Gateway, Hot, RouteTable, Scope, Selected};
use crate::Diagnostic;

/// Account ancestry from the `accounts` db (`pvt_tree` of each account doc), for the hunt
/// account check of `stepswitch_resources:maybe_get_endpoints/2`, and the accounts' realms (`realm`), for `stepswitch_resources:reverse_lookup/1`'s "account owning
/// Realm".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountTree {
    trees: HashMap<String, Vec<String>>,
    /// Lowercased realm → the account that has it; `None` when several accounts claim it
    /// (`kapps_util:get_account_by_realm/1` answers `multiples`, which finds no account).
    realms: HashMap<String, Option<String>>,
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
            if let Some(realm) = doc.get("realm").and_then(Value::as_str) {
                tree.set_realm(id, realm);
            }
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

    /// Records that `account_id` has `realm` (an empty realm is none). Realms compare without
    /// regard to case, as the host names they are.
    pub fn set_realm(&mut self, account_id: &str, realm: &str) {
        if realm.is_empty() {
            return;
        }
        self.realms
            .entry(realm.to_ascii_lowercase())
            .and_modify(|owner| {
                if owner.as_deref() != Some(account_id) {
                    *owner = None;
                }
            })
            .or_insert_with(|| Some(account_id.to_owned()));
    }

    /// The account whose `realm` is `realm` (`stepswitch_resources:reverse_lookup/1`); none when no account, or several, have
    /// it.
    pub fn account_by_realm(&self, realm: &str) -> Option<&str> {
        self.realms.get(&realm.to_ascii_lowercase())?.as_deref()
    }

    /// Forgets an account.
    pub fn remove(&mut self, account_id: &str) {
        self.trees.remove(account_id);
        self.realms.retain(|_, owner| owner.as_deref() != Some(account_id));
    }

    /// An account's `pvt_tree`.
    pub fn pvt_tree(&self, account_id: &str) -> Option<&[String]> {
        self.trees.get(account_id).map(Vec::as_slice)
    }

    /// `kzd_accounts:is_in_account_hierarchy(Hunt, Account, true)` (`stepswitch_resources:maybe_get_endpoints/2`): the hunt account
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
    /// Account ancestry for `stepswitch_resources:maybe_get_endpoints/2`.
    pub accounts: Arc<AccountTree>,
}

impl Tables {
    /// Whether routing `request` to `number` (its destination) may run a backtracking engine
    /// (see [`RouteTable::may_backtrack_on`]): async callers then route on a blocking thread.
    /// Only the rules offered for this number count, so one such rule in a table does not send
    /// every other number's lookup off the async workers.
    pub fn may_backtrack(&self, request: &RouteRequest, number: &str) -> bool {
        table_for(self, request).is_ok_and(|table| table.may_backtrack_on(number))
    }

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
    /// `Hunt-Account-ID`: local resources of this account (`stepswitch_resources:maybe_get_endpoints/2`).
    pub hunt_account_id: Option<String>,
    /// `Outbound-Caller-ID-Number` (cid_rules, endpoint CID, `E164-Origination`).
    pub outbound_caller_id_number: Option<String>,
    /// `Outbound-Caller-ID-Name`.
    pub outbound_caller_id_name: Option<String>,
    /// `Emergency-Caller-ID-Number` (emergency gateways' CID).
    pub emergency_caller_id_number: Option<String>,
    /// `Emergency-Caller-ID-Name`.
    pub emergency_caller_id_name: Option<String>,
    /// `Bypass-E164`: route `To-DID` verbatim instead of normalizing it (`stepswitch_util:get_outbound_destination/1`).
    pub bypass_e164: bool,
    /// `Force-Outbound`: skip `knm_numbers:lookup_account/1` (the on-net check)'s on-net loop-back. Read by the on-net check that comes
    /// before routing, not by [`route`].
    pub force_outbound: bool,
    /// `Fax-T38-Enabled` (rule 30a).
    pub fax_t38_enabled: bool,
    /// `Requestor-Custom-Channel-Vars` (`stepswitch_resources:sip_invite_parameters/2`, privacy).
    pub requestor_custom_channel_vars: Map<String, Value>,
    /// `Requestor-Custom-SIP-Headers` (`stepswitch_resources:sip_invite_parameters/2`).
    pub requestor_custom_sip_headers: Map<String, Value>,
    /// `Custom-SIP-Headers` (its `Diversions` feed `cid_rules` when honoured, `stepswitch_resources:evaluate_cid_rules/2`).
    pub custom_sip_headers: Map<String, Value>,
    /// The request's own privacy keys (`Privacy-Hide-Name`, `Caller-Privacy-Hide-Name`...).
    pub privacy_hide_name: bool,
    /// The request's own hide-number privacy.
    pub privacy_hide_number: bool,
    /// This node's zone name for the `zone` invite parameter (`stepswitch_resources:sip_invite_parameters/2`); `None` leaves it out.
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
            force_outbound: is_true(req.get("Force-Outbound")),
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

    /// `stepswitch_util:get_outbound_destination/1` (`stepswitch_util:get_outbound_destination/1`): `To-DID` normalized to E.164 by
    /// the config's converters, or verbatim with `Bypass-E164`.
    pub fn destination(&self, config: &Config) -> String {
        if self.bypass_e164 {
            self.to_did.clone()
        } else {
            config.converters.normalize(&self.to_did)
        }
    }
}

/// The answer to a route request; serialises to
/// `{"number": ..., "classification": ..., "endpoints": [...]}` (each endpoint as
/// [`Endpoint::to_json`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteAnswer {
    /// The number routed (normalized `To-DID`, or verbatim with `Bypass-E164`).
    pub number: String,
    /// `classify(number)`, `null` when no classifier matches.
    pub classification: Option<String>,
    /// Endpoints in final order (`stepswitch_resources:sort_endpoints/1`); empty means "no resources".
    pub endpoints: Vec<Endpoint>,
}

impl RouteAnswer {
    /// Whether any endpoint is an emergency endpoint (`Emergency-Resource`, `stepswitch_bridge`'s emergency handling).
    pub fn is_emergency(&self) -> bool {
        self.endpoints.iter().any(Endpoint::is_emergency)
    }

    /// The endpoints as Kazoo's endpoint JSON objects, in order (what a bridge carries).
    pub fn endpoints_json(&self) -> Vec<EndpointJson> {
        self.endpoints.iter().map(Endpoint::to_json).collect()
    }
}

/// Whether an endpoint carries CCV `Emergency-Resource: "true"` ([`Endpoint::is_emergency`]).
pub fn is_emergency_endpoint(endpoint: &Endpoint) -> bool {
    endpoint.is_emergency()
}

/// Routes a request (`stepswitch_resources:endpoints/2`, `stepswitch_resources`' matching).
///
/// The endpoints are built without rendering any JSON: each is a handle on its table's resource
/// and gateway plus the values of this request (see [`Endpoint`]).
pub fn route(tables: &Tables, request: &RouteRequest) -> RouteAnswer {
    route_to(tables, request, request.destination(&tables.config))
}

/// [`route`] for a destination already computed from `request` ([`RouteRequest::destination`],
/// `stepswitch_util:get_outbound_destination/1`), for a caller that needed it first (the on-net check).
pub fn route_to(tables: &Tables, request: &RouteRequest, number: String) -> RouteAnswer {
    let config = &*tables.config;
    let converters = &config.converters;
    let classification = converters.classifier_for(&number).map(|it| it.name.clone());
    let Ok(table) = table_for(tables, request) else {
        return RouteAnswer { number, classification, endpoints: Vec::new() };
    };
    let caller_id = caller_id_for_rules(config, request);
    let selected =
        table.select(&number, classification.as_deref(), &request.flags, caller_id.as_deref());
    if selected.is_empty() {
        return RouteAnswer { number, classification, endpoints: Vec::new() };
    }
    // Laid out from the table's dense per-resource array: the resources and gateways
    // themselves are read only when an endpoint is rendered.
    let hot = &table.hot;
    let needs_invite = selected.iter().any(|sel| hot[sel.index].invite_parameters);
    let ctx = Arc::new(answer_context(
        table,
        request,
        config,
        &number,
        classification.as_deref(),
        needs_invite,
    ));
    let count = selected
        .iter()
        .map(|sel| hot[sel.index].gateways as usize * hot[sel.index].proxies.max(1) as usize)
        .sum();
    let mut endpoints = Vec::with_capacity(count);
    let mut seed = request.shuffle_seed;
    for sel in &selected {
        resource_endpoints(&ctx, sel, &hot[sel.index], &mut seed, &mut endpoints);
    }
    drop(selected);
    RouteAnswer { number, classification, endpoints }
}

/// Why a request routes with no table at all (`stepswitch_resources:maybe_get_endpoints/2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoTable {
    /// The hunt account is neither the account nor one of its ancestors.
    Hierarchy,
    /// The hunt account has no loaded table.
    NotLoaded,
}

/// `stepswitch_resources:maybe_get_endpoints/2`: the global table, or the hunt account's when it is in the caller's hierarchy.
pub(crate) fn table_for<'t>(
    tables: &'t Tables,
    request: &RouteRequest,
) -> Result<&'t Arc<RouteTable>, NoTable> {
    match request.hunt_account_id.as_deref().filter(|it| !it.is_empty()) {
        None => Ok(&tables.global),
        Some(hunt) => {
            if tables.accounts.is_in_hierarchy(hunt, request.account_id.as_deref()) {
                tables.local.get(hunt).ok_or(NoTable::NotLoaded)
            } else {
                Err(NoTable::Hierarchy)
            }
        }
    }
}

/// The values of this request that the endpoints render (`stepswitch_resources:gateway_to_endpoint/3` and its helpers).
fn answer_context(
    table: &Arc<RouteTable>,
    request: &RouteRequest,
    config: &Config,
    number: &str,
    classification: Option<&str>,
    needs_invite: bool,
) -> AnswerContext {
    let converters = &config.converters;
    let requestor = &request.requestor_custom_channel_vars;
    AnswerContext {
        table: Arc::clone(table),
        number: number.to_owned(),
        classification: classification.map(str::to_owned),
        to_did: request.to_did.clone(),
        caller_id_name: request.outbound_caller_id_name.clone(),
        caller_id_number: request.outbound_caller_id_number.clone(),
        emergency_caller_id_name: request.emergency_caller_id_name.clone(),
        emergency_caller_id_number: request.emergency_caller_id_number.clone(),
        // Kazoo bug in `stepswitch_resources`' `E164-Origination` fixed: no caller id means no `E164-Origination` instead of a crash.
        e164_origination: request
            .outbound_caller_id_number
            .as_deref()
            .filter(|cid| converters.is_reconcilable(cid))
            .map(|cid| converters.normalize(cid)),
        hide_name: request.privacy_hide_name
            || requestor_hides(requestor, "Privacy-Hide-Name", "Caller-Privacy-Hide-Name"),
        hide_number: request.privacy_hide_number
            || requestor_hides(requestor, "Privacy-Hide-Number", "Caller-Privacy-Hide-Number"),
        fax: request.flags.iter().any(|it| it == "fax"),
        fax_t38_enabled: request.fax_t38_enabled,
        invite: if needs_invite {
            InviteInputs::new(
                requestor,
                &request.requestor_custom_sip_headers,
                request.local_zone.as_deref(),
            )
        } else {
            InviteInputs::default()
        },
    }
}

/// `stepswitch_resources:evaluate_cid_rules/2`: the caller id `cid_rules` see.
pub(crate) fn caller_id_for_rules<'r>(
    config: &Config,
    request: &'r RouteRequest,
) -> Option<Cow<'r, str>> {
    let outbound = || request.outbound_caller_id_number.as_deref().map(Cow::Borrowed);
    if config.cid_rules_honor_diversions {
        let first = request
            .custom_sip_headers
            .get("Diversions")
            .and_then(Value::as_array)
            .and_then(|items| items.first())
            .and_then(Value::as_str);
        if let Some(diversion) = first {
            // Kazoo bug in `stepswitch_bridge:check_diversion_fields/1` fixed: Kazoo crashes unless there is exactly one `:` before the `@`.
            return diversion_user(diversion).map(Cow::Owned).or_else(outbound);
        }
    }
    outbound()
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

/// `stepswitch_resources:resource_to_endpoints` to `stepswitch_resources`' dedicated-IP proxies for one selected resource: one endpoint per gateway (shuffled for
/// `gateway_strategy: random`), one copy per account proxy of a local resource.
fn resource_endpoints(
    ctx: &Arc<AnswerContext>,
    sel: &Selected<'_, '_>,
    hot: &Hot,
    seed: &mut Option<u64>,
    out: &mut Vec<Endpoint>,
) {
    let mut emit = |gateway: usize| {
        if hot.proxies == 0 {
            out.push(Endpoint::new(Arc::clone(ctx), sel.index, gateway, None, sel.span.clone()));
        } else {
            // `stepswitch_resources`' dedicated-IP proxies.
            for proxy in 0..hot.proxies as usize {
                out.push(Endpoint::new(
                    Arc::clone(ctx),
                    sel.index,
                    gateway,
                    Some(proxy),
                    sel.span.clone(),
                ));
            }
        }
    };
    let n_gateways = hot.gateways as usize;
    if hot.random_gateways {
        let seed = seed.get_or_insert_with(fresh_seed);
        let mut order: Vec<usize> = (0..n_gateways).collect();
        // `stepswitch_resources`' `gateway_strategy`: Fisher-Yates with a xorshift generator.
        for i in (1..order.len()).rev() {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let j = (*seed % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order.into_iter().for_each(&mut emit);
    } else {
        (0..n_gateways).for_each(&mut emit);
    }
}

fn requestor_hides(ccvs: &Map<String, Value>, key: &str, caller_key: &str) -> bool {
    is_true(ccvs.get(key)) || is_true(ccvs.get(caller_key))
}

/// `stepswitch_resources:is_test_number/2` (`is_test_number/2`): whether any endpoint's `Resource-ID` names a **global**
/// resource whose `rules_test` match the raw `To-DID` (local resources never count, quirk 64).
pub fn is_emergency_test_call(tables: &Tables, endpoints: &[Endpoint], to_did: &str) -> bool {
    endpoints.iter().any(|ep| tables.global.is_test_number(ep.resource_id(), to_did))
}

/// Inputs of an inbound reverse lookup (`stepswitch_resources:reverse_lookup/1`).
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
    /// `Account-ID` (or CCV `Account-ID`) whose local resources are searched when no global
    /// gateway matches; without it, the account owning the realm (`stepswitch_resources:reverse_lookup/1`,
    /// [`AccountTree::account_by_realm`]).
    pub account_id: Option<String>,
}

/// A reverse lookup hit (`stepswitch_resources:reverse_lookup/1` result props).
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

/// `stepswitch_resources:reverse_lookup/1` (`stepswitch_resources:reverse_lookup/1`): which carrier gateway an inbound
/// call came from. Global resources first, then the local ones of `Account-ID` or, without it,
/// of the account owning the realm; resources in Kazoo's cached order (descending `_id`) and
/// gateways in stored order (reverse document order).
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
        let account = match inbound.account_id.as_deref() {
            Some(account) => account,
            None => tables.accounts.account_by_realm(realm.as_deref()?)?,
        };
        search(tables.local.get(account)?)
    })
}

/// `stepswitch_resources:reverse_lookup/1` (`stepswitch_util:get_realm/1`).
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

/// `stepswitch_resources:reverse_lookup/1` (`search_gateway/4`).
fn gateway_matches(gw: &Gateway, ip: Option<&str>, port: Option<i64>, realm: Option<&str>) -> bool {
    if gw.force_port {
        return matches!((ip, port, gw.server.as_deref(), gw.port), (Some(ip), Some(port), Some(server), Some(gw_port)) if server == ip && gw_port == port);
    }
    let server = gw.server.as_deref();
    let gw_realm = gw.realm.as_deref();
    (ip.is_some() && (server == ip || gw_realm == ip))
        || (realm.is_some() && (gw_realm == realm || server == realm))
}

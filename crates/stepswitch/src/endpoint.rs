//! A route answer's carrier endpoint: a typed, cheap value, rendered to Kazoo's endpoint JSON
//! (`stepswitch_resources:gateway_to_endpoint/3` plus the rule-24 CCVs) only at the edge.
//!
//! An [`Endpoint`] is a handle: the compiled table it came from (shared), which resource,
//! gateway and proxy, the matched part of the number, and the per-request values that every
//! endpoint of one answer shares. Building one allocates nothing; almost all of an endpoint is
//! static per gateway and is read from the table when [`Endpoint::to_json`] renders the object
//! `route()` used to return — the same keys, values and key order.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::resource::{is_true, DynamicParameter, InviteParameters};
use crate::table::{Gateway, Proxy, Resource, RouteTable};

/// An endpoint rendered as JSON: Kazoo's endpoint object, what a bridge command carries.
pub type EndpointJson = Map<String, Value>;

/// What every endpoint of one answer shares: the table and the request's values.
pub(crate) struct AnswerContext {
    /// The table the endpoints' resources are in (kept alive by the answer).
    pub(crate) table: Arc<RouteTable>,
    /// The routed number (`E164-Destination`); every `matched` is a range of it.
    pub(crate) number: String,
    /// `DID-Classifier`.
    pub(crate) classification: Option<String>,
    /// The raw `To-DID` (`Original-Number`).
    pub(crate) to_did: String,
    pub(crate) caller_id_name: Option<String>,
    pub(crate) caller_id_number: Option<String>,
    pub(crate) emergency_caller_id_name: Option<String>,
    pub(crate) emergency_caller_id_number: Option<String>,
    /// `E164-Origination`: the normalized caller id, when reconcilable (the Kazoo bug in `stepswitch_resources`' `E164-Origination` fixed).
    pub(crate) e164_origination: Option<String>,
    /// The request's own privacy (its keys or its requestor CCVs).
    pub(crate) hide_name: bool,
    /// The request's own hide-number privacy.
    pub(crate) hide_number: bool,
    /// The request has flag `fax` (rule 30a).
    pub(crate) fax: bool,
    /// `Fax-T38-Enabled`.
    pub(crate) fax_t38_enabled: bool,
    /// What dynamic invite parameters read (`stepswitch_resources:sip_invite_parameters/2`); left empty when no selected gateway has
    /// `invite_parameters`.
    pub(crate) invite: InviteInputs,
}

/// The request values dynamic invite parameters read (`stepswitch_resources:sip_invite_parameters/2`).
#[derive(Debug, Default)]
pub(crate) struct InviteInputs {
    /// `Requestor-Custom-Channel-Vars`, keys normalized.
    pub(crate) ccvs: Map<String, Value>,
    /// `Requestor-Custom-SIP-Headers`, keys normalized.
    pub(crate) headers: Map<String, Value>,
    /// This node's zone.
    pub(crate) local_zone: Option<String>,
}

/// One carrier endpoint of a route answer, in final order.
///
/// Cheap: a shared pointer and a few indices. Its JSON ([`Endpoint::to_json`], or serde, which
/// serialises the same object) is Kazoo's endpoint: `Route`, `To-DID`, `Custom-Channel-Vars`
/// and the rest of `stepswitch_resources:gateway_to_endpoint/3`. An endpoint keeps its table alive until it is dropped.
#[derive(Clone)]
pub struct Endpoint {
    ctx: Arc<AnswerContext>,
    resource: u32,
    gateway: u32,
    /// Index in the resource's `proxies` (`stepswitch_resources`' dedicated-IP proxies).
    proxy: Option<u32>,
    /// Byte range of the matched number inside `ctx.number`.
    matched: (u32, u32),
}

impl Endpoint {
    pub(crate) fn new(
        ctx: Arc<AnswerContext>,
        resource: usize,
        gateway: usize,
        proxy: Option<usize>,
        matched: std::ops::Range<usize>,
    ) -> Endpoint {
        Endpoint {
            ctx,
            resource: resource as u32,
            gateway: gateway as u32,
            proxy: proxy.map(|it| it as u32),
            matched: (matched.start as u32, matched.end as u32),
        }
    }

    /// The selected resource.
    pub fn resource(&self) -> &Resource {
        self.ctx.table.resources.slot(self.resource as usize)
    }

    /// The gateway this endpoint dials.
    pub fn gateway(&self) -> &Gateway {
        &self.resource().gateways[self.gateway as usize]
    }

    /// The account proxy of a local resource's endpoint copy (`stepswitch_resources`' dedicated-IP proxies).
    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.map(|idx| &self.resource().proxies[idx as usize])
    }

    /// CCV `Resource-ID`: the resource's id (`<_id>-<classifier>` for a classifier copy).
    pub fn resource_id(&self) -> &str {
        &self.resource().id
    }

    /// `Weight`: the resource's weight.
    pub fn weight(&self) -> i64 {
        self.resource().weight
    }

    /// "NumberMatch" (`stepswitch_resources:filter_resource_by_rules/5`): `To-DID`, the callee id and CCV `Matched-Number`.
    pub fn matched(&self) -> &str {
        &self.ctx.number[self.matched.0 as usize..self.matched.1 as usize]
    }

    /// The routed number (CCV `E164-Destination`).
    pub fn number(&self) -> &str {
        &self.ctx.number
    }

    /// `Route`: the dial string (`stepswitch_resources:gateway_dialstring/2`).
    pub fn dial_string(&self) -> String {
        dial_string(self.gateway(), self.matched())
    }

    /// Whether this is an emergency endpoint (CCV `Emergency-Resource` true, `stepswitch_bridge`'s emergency handling).
    pub fn is_emergency(&self) -> bool {
        let gateway = self.gateway();
        gateway.emergency || is_true(gateway.ccvs.get("Emergency-Resource"))
    }

    /// Kazoo's endpoint object (`gateway_to_endpoint/3`, `stepswitch_resources:gateway_to_endpoint/3`, with the rule-24 CCVs):
    /// `props:filter_empty/1` drops undefined, `""`, `[]`, `{}`, `false` and `0` values, except
    /// for `Name` and `Weight`, which are always present.
    pub fn to_json(&self) -> EndpointJson {
        let ctx = &*self.ctx;
        let resource = self.resource();
        let gateway = self.gateway();
        let matched = self.matched();
        let (cid_name, cid_number) = if gateway.emergency {
            (
                ctx.emergency_caller_id_name.as_deref().or(ctx.caller_id_name.as_deref()),
                ctx.emergency_caller_id_number.as_deref().or(ctx.caller_id_number.as_deref()),
            )
        } else {
            (ctx.caller_id_name.as_deref(), ctx.caller_id_number.as_deref())
        };
        // Sized up front: growing an `IndexMap` reallocates and re-indexes it several times.
        let mut ccvs = Map::with_capacity(gateway.ccvs.len() + 16);
        ccvs.extend(gateway.ccvs.iter().map(|(key, value)| (key.clone(), value.clone())));
        if gateway.emergency {
            ccvs.insert("Emergency-Resource".into(), text("true"));
        }
        ccvs.insert("Matched-Number".into(), text(matched));
        ccvs.insert("Resource-Type".into(), text("offnet-termination"));
        if let Some(mux) = gateway.rtcp_mux.as_deref() {
            ccvs.insert("RTCP-MUX".into(), text(mux));
        }
        from_uri_settings(gateway, &mut ccvs);
        // `stepswitch_resources:resource_to_endpoints`.
        if resource.global {
            ccvs.insert("Global-Resource".into(), Value::Bool(true));
        }
        ccvs.insert("Resource-ID".into(), text(&resource.id));
        ccvs.insert("E164-Destination".into(), text(&ctx.number));
        if let Some(origination) = ctx.e164_origination.as_deref() {
            ccvs.insert("E164-Origination".into(), text(origination));
        }
        if let Some(class) = ctx.classification.as_deref() {
            ccvs.insert("DID-Classifier".into(), text(class));
        }
        if !ctx.to_did.is_empty() {
            ccvs.insert("Original-Number".into(), text(&ctx.to_did));
        }
        let hide_name = gateway.privacy_hide_name || ctx.hide_name;
        let hide_number = gateway.privacy_hide_number || ctx.hide_number;

        let mut ep = EndpointJson::with_capacity(32);
        push(&mut ep, "Route", Value::String(dial_string(gateway, matched)));
        push(&mut ep, "Outbound-Callee-ID-Name", text(matched));
        push(&mut ep, "Outbound-Callee-ID-Number", text(matched));
        push(&mut ep, "To-DID", text(matched));
        push(&mut ep, "Invite-Format", text(&gateway.invite_format));
        push(&mut ep, "Caller-ID-Type", text(&gateway.caller_id_type));
        push(&mut ep, "Bypass-Media", Value::Bool(gateway.bypass_media));
        push(&mut ep, "Codecs", Value::Array(gateway.codecs.iter().map(|it| text(it)).collect()));
        push(&mut ep, "Auth-User", opt(gateway.username.as_deref()));
        push(&mut ep, "Auth-Password", opt(gateway.password.as_deref()));
        push(&mut ep, "Auth-Realm", opt(gateway.realm.as_deref()));
        push(&mut ep, "Custom-SIP-Headers", Value::Object(Map::clone(&gateway.sip_headers)));
        push(&mut ep, "SIP-Interface", opt(gateway.sip_interface.as_deref()));
        push(&mut ep, "Endpoint-Type", text(&gateway.endpoint_type));
        push(&mut ep, "Endpoint-Options", Value::Object(Map::clone(&gateway.endpoint_options)));
        push(
            &mut ep,
            "Endpoint-Progress-Timeout",
            Value::String(gateway.progress_timeout.to_string()),
        );
        push(&mut ep, "Custom-Channel-Vars", Value::Object(ccvs));
        push(&mut ep, "Outbound-Caller-ID-Number", opt(cid_number));
        push(&mut ep, "Outbound-Caller-ID-Name", opt(cid_name));
        if let Some(params) = &gateway.invite_parameters {
            let list = invite_parameters(params, &ctx.invite);
            push(
                &mut ep,
                "SIP-Invite-Parameters",
                Value::Array(list.into_iter().map(Value::String).collect()),
            );
        }
        push(&mut ep, "Privacy-Method", text(&gateway.privacy_method));
        push(&mut ep, "Privacy-Hide-Name", Value::Bool(hide_name));
        push(&mut ep, "Privacy-Hide-Number", Value::Bool(hide_number));
        if ctx.fax {
            t38_settings(gateway.fax_option, ctx.fax_t38_enabled, &mut ep);
        }
        ep.insert("Name".into(), opt(resource.name.as_deref()));
        ep.insert("Weight".into(), Value::from(resource.weight));
        if let Some(proxy) = self.proxy() {
            // `stepswitch_resources`' dedicated-IP proxies.
            ep.insert("Proxy-Zone".into(), text(&proxy.zone));
            ep.insert("Proxy-IP".into(), text(&proxy.ip));
        }
        ep
    }
}

/// Serialises [`Endpoint::to_json`].
impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

/// Endpoints are equal when their JSON is.
impl PartialEq for Endpoint {
    fn eq(&self, other: &Endpoint) -> bool {
        self.to_json() == other.to_json()
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("resource_id", &self.resource_id())
            .field("gateway", &self.gateway().doc_index)
            .field("proxy", &self.proxy())
            .field("matched", &self.matched())
            .field("weight", &self.weight())
            .finish()
    }
}

fn text(value: &str) -> Value {
    Value::String(value.to_owned())
}

fn opt(value: Option<&str>) -> Value {
    value.map(text).unwrap_or(Value::Null)
}

/// `props:filter_empty/1`: Kazoo drops undefined, `""`, `[]`, `{}`, `false` and `0` values.
fn push(endpoint: &mut EndpointJson, key: &str, value: Value) {
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

/// `stepswitch_resources:gateway_dialstring/2`: the dial string.
pub(crate) fn dial_string(gateway: &Gateway, number_match: &str) -> String {
    if let Some(route) = gateway.route.as_deref() {
        return route.to_owned();
    }
    let server = gateway.server.as_deref().unwrap_or("");
    // Built by hand (one allocation, no formatting machinery).
    let mut out = String::with_capacity(
        4 + gateway.prefix.len() + number_match.len() + gateway.suffix.len() + 1 + server.len() + 8,
    );
    push_sip_dial_string(&mut out, gateway, number_match);
    out
}

/// `stepswitch_resources:gateway_dialstring/2`'s `sip:prefix+number+suffix@server[:port]` (the dial string of a gateway without a
/// verbatim `route`), appended to `out`.
pub(crate) fn push_sip_dial_string(out: &mut String, gateway: &Gateway, number_match: &str) {
    push_dial_head(out, gateway);
    out.push_str(number_match);
    push_dial_tail(out, gateway);
}

/// What comes before the number in `stepswitch_resources:gateway_dialstring/2`'s dial string: `sip:prefix`.
pub(crate) fn push_dial_head(out: &mut String, gateway: &Gateway) {
    out.push_str("sip:");
    out.push_str(&gateway.prefix);
}

/// What comes after the number in `stepswitch_resources:gateway_dialstring/2`'s dial string: `suffix@server[:port]`.
pub(crate) fn push_dial_tail(out: &mut String, gateway: &Gateway) {
    out.push_str(&gateway.suffix);
    out.push('@');
    out.push_str(gateway.server.as_deref().unwrap_or(""));
    if let Some(port) = gateway.port.filter(|port| *port != 0 && *port != 5060) {
        use std::fmt::Write as _;
        let _ = write!(out, ":{port}");
    }
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
        ccvs.insert("From-URI-Realm".into(), text(realm));
    } else if gateway.from_account_realm {
        ccvs.insert("Format-From-URI".into(), Value::Bool(true));
        ccvs.insert("From-Account-Realm".into(), Value::Bool(true));
    } else if let Some(realm) = gateway.realm.as_deref().filter(|it| !it.is_empty()) {
        ccvs.insert("Format-From-URI".into(), Value::Bool(true));
        ccvs.insert("From-URI-Realm".into(), text(realm));
    } else {
        ccvs.insert("Format-From-URI".into(), Value::Bool(false));
    }
}

/// Rule 30a (`kapps_call_command:get_outbound_t38_settings/2`).
fn t38_settings(gateway_fax: bool, call_t38: bool, ep: &mut EndpointJson) {
    ep.insert("Enable-T38-Fax".into(), Value::Bool(true));
    match (gateway_fax, call_t38) {
        (true, true) | (false, false) => {
            ep.insert("Enable-T38-Passthrough".into(), Value::Bool(true));
        }
        (true, false) => {
            ep.insert("Enable-T38-Fax-Request".into(), Value::Bool(true));
            ep.insert("Enable-T38-Gateway".into(), text("self"));
        }
        (false, true) => {
            ep.insert("Enable-T38-Fax-Request".into(), Value::Bool(true));
            ep.insert("Enable-T38-Gateway".into(), text("peer"));
        }
    }
}

impl InviteInputs {
    /// The request's values, keys normalized like `kz_json:normalize/1` (lower case, `-` →
    /// `_`).
    pub(crate) fn new(
        ccvs: &Map<String, Value>,
        headers: &Map<String, Value>,
        local_zone: Option<&str>,
    ) -> InviteInputs {
        InviteInputs {
            ccvs: normalize_keys(ccvs),
            headers: normalize_keys(headers),
            local_zone: local_zone.map(str::to_owned),
        }
    }
}

/// `stepswitch_resources:sip_invite_parameters/2` (`sip_invite_parameters/2`): static parameters verbatim, then the dynamic ones in
/// reverse of their listed order; missing or empty values are skipped.
pub(crate) fn invite_parameters(params: &InviteParameters, inputs: &InviteInputs) -> Vec<String> {
    let mut out: Vec<String> = params.static_params.iter().map(|it| it.to_string()).collect();
    let value = |key: &str| -> Option<String> {
        let found = if key == "zone" {
            inputs.local_zone.as_deref().map(text)
        } else if let Some(rest) = key.strip_prefix("custom_sip_headers.") {
            inputs.headers.get(rest).cloned()
        } else if let Some(rest) = key.strip_prefix("custom_channel_vars.") {
            inputs.ccvs.get(rest).cloned()
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

mod render;

pub(crate) use render::Rendered;

#[cfg(test)]
mod legacy;
#[cfg(test)]
pub(crate) mod tests;

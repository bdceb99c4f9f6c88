//! Endpoint JSON and text lines assembled from fragments rendered when the table is compiled.
//!
//! Almost all of an endpoint is the same for every call through its gateway: the static keys
//! (`Invite-Format` … `Endpoint-Progress-Timeout`), the gateway's CCVs, `Resource-ID`,
//! `Privacy-Method`, `Name`, `Weight`, the parts of the dial string around the number. They
//! are rendered once per gateway ([`Rendered::of`]); an answer is then written as those bytes
//! plus the per-call values (the matched number, `E164-Destination`, `Original-Number`, the
//! caller ids...), producing exactly the bytes `serde_json` writes for
//! [`Endpoint::to_json`](crate::Endpoint::to_json).

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{
    from_uri_settings, invite_parameters, push, push_dial_head, push_dial_tail, AnswerContext,
    Endpoint,
};
use crate::table::{Gateway, Resource};
use crate::RouteAnswer;

/// CCVs an endpoint sets itself. A gateway whose own CCVs use one of these keys has its value
/// replaced in the gateway key's position, so its endpoints are rendered the generic way.
const OWN_CCVS: &[&str] = &[
    "Emergency-Resource",
    "Matched-Number",
    "Resource-Type",
    "RTCP-MUX",
    "Format-From-URI",
    "From-URI-Realm",
    "From-Account-Realm",
    "Global-Resource",
    "Resource-ID",
    "E164-Destination",
    "E164-Origination",
    "DID-Classifier",
    "Original-Number",
];

/// What one gateway's endpoints share, rendered.
#[derive(Clone, PartialEq)]
pub(crate) struct Rendered {
    /// The JSON fragments; `None` when the gateway is rendered the generic way.
    json: Option<Json>,
    /// The text form's line.
    text: Line,
}

#[derive(Clone, PartialEq)]
struct Json {
    /// `{"Route":"sip:<prefix>` (the number and `route_tail` follow), or with a verbatim route
    /// the whole `{"Route":"<route>",`.
    route_head: Arc<str>,
    /// `<suffix>@<server>[:<port>]",`, `None` with a verbatim route.
    route_tail: Option<Box<str>>,
    /// `"Invite-Format":…,` through `"Endpoint-Progress-Timeout":…,` (the non-empty ones),
    /// then `"Custom-Channel-Vars":{` and the gateway's CCVs (`Emergency-Resource` included).
    statics: Arc<str>,
    /// After `Matched-Number`: `"Resource-Type":…,` through `"Resource-ID":…,`.
    ccvs_tail: Arc<str>,
    /// `"Privacy-Method":…,`.
    privacy: Arc<str>,
    /// `"Name":…,"Weight":…`.
    name_weight: Arc<str>,
}

/// A gateway's line of the text form (see [`crate::write_sip_uris`]).
#[derive(Clone, PartialEq)]
enum Line {
    /// `sip:<prefix>`, the number, then `<suffix>@<server>[:<port>]`.
    Dial(Arc<str>, Box<str>),
    /// A verbatim route, as a SIP URI.
    Fixed(Box<str>),
    /// A verbatim route that names nothing a SIP proxy can dial.
    Skip,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.json.is_some() { "Rendered(json, text)" } else { "Rendered(text)" })
    }
}

impl Rendered {
    /// The fragments of `gateway` of `resource` (its final id, name, weight and scope).
    pub(crate) fn of(resource: &Resource, gateway: &Gateway) -> Rendered {
        Rendered { json: json(resource, gateway), text: line(gateway) }
    }
}

/// Most fragments are the same for many gateways (the static keys of every gateway with the
/// same settings, a resource's `Resource-ID` tail for each of its gateways): each thread that
/// compiles keeps the fragments it rendered lately, and a gateway whose fragment is already
/// there shares it instead of holding a copy.
struct Fragments {
    seen: HashSet<Arc<str>, crate::hash::FastBuild>,
}

/// Past this many fragments a thread forgets them all (a table of unusual gateways then shares
/// less, and the memory a thread keeps stays bounded).
const FRAGMENTS_KEPT: usize = 4_096;

thread_local! {
    static FRAGMENTS: RefCell<Fragments> =
        RefCell::new(Fragments { seen: HashSet::with_hasher(Default::default()) });
}

/// `text` as a shared fragment: the one this thread rendered before, or a new one.
fn shared(text: String) -> Arc<str> {
    FRAGMENTS.with(|cell| {
        let mut fragments = cell.borrow_mut();
        if let Some(known) = fragments.seen.get(text.as_str()) {
            return Arc::clone(known);
        }
        if fragments.seen.len() >= FRAGMENTS_KEPT {
            fragments.seen.clear();
        }
        let fragment: Arc<str> = Arc::from(text);
        fragments.seen.insert(Arc::clone(&fragment));
        fragment
    })
}

fn json(resource: &Resource, gateway: &Gateway) -> Option<Json> {
    if gateway.ccvs.keys().any(|key| OWN_CCVS.contains(&key.as_str())) {
        return None;
    }
    let (route_head, route_tail) = match gateway.route.as_deref() {
        // An empty verbatim route is left out, as every empty value is.
        Some("") => (shared("{".to_owned()), None),
        Some(route) => {
            let mut head = String::from("{\"Route\":");
            quoted(&mut head, route);
            head.push(',');
            (shared(head), None)
        }
        None => {
            // Escaping the dial string's parts escapes the whole (it works per character).
            let (raw_head, raw_tail) = dial_parts(gateway);
            let mut head = String::from("{\"Route\":\"");
            escape(&mut head, &raw_head);
            let mut tail = String::new();
            escape(&mut tail, &raw_tail);
            tail.push_str("\",");
            (shared(head), Some(tail.into_boxed_str()))
        }
    };
    // The same `push` calls as `Endpoint::to_json`, so the same keys are left out.
    let mut statics = Map::new();
    let text = |value: &str| Value::String(value.to_owned());
    let opt = |value: Option<&str>| value.map(text).unwrap_or(Value::Null);
    push(&mut statics, "Invite-Format", text(&gateway.invite_format));
    push(&mut statics, "Caller-ID-Type", text(&gateway.caller_id_type));
    push(&mut statics, "Bypass-Media", Value::Bool(gateway.bypass_media));
    push(&mut statics, "Codecs", Value::Array(gateway.codecs.iter().map(|it| text(it)).collect()));
    push(&mut statics, "Auth-User", opt(gateway.username.as_deref()));
    push(&mut statics, "Auth-Password", opt(gateway.password.as_deref()));
    push(&mut statics, "Auth-Realm", opt(gateway.realm.as_deref()));
    push(&mut statics, "Custom-SIP-Headers", Value::Object(Map::clone(&gateway.sip_headers)));
    push(&mut statics, "SIP-Interface", opt(gateway.sip_interface.as_deref()));
    push(&mut statics, "Endpoint-Type", text(&gateway.endpoint_type));
    push(&mut statics, "Endpoint-Options", Value::Object(Map::clone(&gateway.endpoint_options)));
    push(
        &mut statics,
        "Endpoint-Progress-Timeout",
        Value::String(gateway.progress_timeout.to_string()),
    );
    let mut head_ccvs = Map::clone(&gateway.ccvs);
    if gateway.emergency {
        head_ccvs.insert("Emergency-Resource".into(), text("true"));
    }
    let mut statics_text = String::new();
    entries(&mut statics_text, &statics);
    statics_text.push_str("\"Custom-Channel-Vars\":{");
    entries(&mut statics_text, &head_ccvs);
    let mut tail = Map::new();
    tail.insert("Resource-Type".into(), text("offnet-termination"));
    if let Some(mux) = gateway.rtcp_mux.as_deref() {
        tail.insert("RTCP-MUX".into(), text(mux));
    }
    from_uri_settings(gateway, &mut tail);
    if resource.global {
        tail.insert("Global-Resource".into(), Value::Bool(true));
    }
    tail.insert("Resource-ID".into(), text(&resource.id));
    let mut ccvs_tail = String::new();
    entries(&mut ccvs_tail, &tail);
    let mut privacy = Map::new();
    push(&mut privacy, "Privacy-Method", text(&gateway.privacy_method));
    let mut privacy_text = String::new();
    entries(&mut privacy_text, &privacy);
    let mut name_weight = String::from("\"Name\":");
    match resource.name.as_deref() {
        Some(name) => quoted(&mut name_weight, name),
        None => name_weight.push_str("null"),
    }
    name_weight.push_str(",\"Weight\":");
    name_weight.push_str(&resource.weight.to_string());
    Some(Json {
        route_head,
        route_tail,
        statics: shared(statics_text),
        ccvs_tail: shared(ccvs_tail),
        privacy: shared(privacy_text),
        name_weight: shared(name_weight),
    })
}

fn line(gateway: &Gateway) -> Line {
    match gateway.route.as_deref() {
        None => {
            let head = format!("sip:{}", gateway.prefix);
            let mut tail =
                format!("{}@{}", gateway.suffix, gateway.server.as_deref().unwrap_or(""));
            if let Some(port) = gateway.port.filter(|port| *port != 0 && *port != 5060) {
                tail.push(':');
                tail.push_str(&port.to_string());
            }
            Line::Dial(shared(head), tail.into_boxed_str())
        }
        Some(route) => {
            let lower = route.get(..5).unwrap_or(route).to_ascii_lowercase();
            if lower.starts_with("sip:") || lower.starts_with("sips:") {
                Line::Fixed(route.into())
            } else if route.contains('/') || route.trim().is_empty() {
                Line::Skip
            } else {
                Line::Fixed(format!("sip:{route}").into_boxed_str())
            }
        }
    }
}

/// `stepswitch_resources:gateway_dialstring/2`'s dial string around the number: `sip:prefix` and `suffix@server[:port]`.
fn dial_parts(gateway: &Gateway) -> (String, String) {
    let (mut head, mut tail) = (String::new(), String::new());
    push_dial_head(&mut head, gateway);
    push_dial_tail(&mut tail, gateway);
    (head, tail)
}

/// Each `"key":value,` of `map`, as `serde_json` writes them.
fn entries(out: &mut String, map: &Map<String, Value>) {
    for (key, value) in map {
        quoted(out, key);
        out.push(':');
        out.push_str(&serde_json::to_string(value).expect("a JSON value serialises"));
        out.push(',');
    }
}

/// `text` as a JSON string, as `serde_json` writes it.
fn quoted(out: &mut String, text: &str) {
    out.push('"');
    escape(out, text);
    out.push('"');
}

/// `text` escaped as `serde_json` escapes string contents: `"`, `\` and the control
/// characters (`\b \t \n \f \r`, the others as `\u00xx`); nothing else.
fn escape(out: &mut String, text: &str) {
    let mut start = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escaped: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\x08' => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            b'\x0C' => "\\f",
            b'\r' => "\\r",
            0..=0x1F => "",
            _ => continue,
        };
        out.push_str(&text[start..at]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xF)]));
        } else {
            out.push_str(escaped);
        }
        start = at + 1;
    }
    out.push_str(&text[start..]);
}

impl Endpoint {
    /// About how many bytes [`Endpoint::write_json`] appends (the gateway's prepared fragments
    /// plus this call's values, unescaped), so that a caller can make room for an answer once.
    pub fn json_len_hint(&self) -> usize {
        /// The keys and punctuation around the per-call values, and a caller id.
        const PER_CALL: usize = 320;
        let ctx: &AnswerContext = &self.ctx;
        let text = |value: Option<&str>| value.map_or(0, str::len);
        let values = 5 * self.matched().len()
            + ctx.number.len()
            + ctx.to_did.len()
            + text(ctx.classification.as_deref())
            + text(ctx.e164_origination.as_deref());
        let prepared = match self.gateway().rendered.as_ref().and_then(|it| it.json.as_ref()) {
            Some(parts) => {
                parts.route_head.len()
                    + text(parts.route_tail.as_deref())
                    + parts.statics.len()
                    + parts.ccvs_tail.len()
                    + parts.privacy.len()
                    + parts.name_weight.len()
            }
            None => 1024,
        };
        prepared + values + PER_CALL
    }

    /// Appends this endpoint's JSON ([`Endpoint::to_json`] as `serde_json` writes it, byte for
    /// byte) to `out`: the gateway's prepared fragments plus this call's values.
    pub fn write_json(&self, out: &mut String) {
        let gateway = self.gateway();
        let Some(parts) = gateway.rendered.as_ref().and_then(|it| it.json.as_ref()) else {
            out.push_str(&serde_json::to_string(&self.to_json()).expect("a JSON value serialises"));
            return;
        };
        let ctx: &AnswerContext = &self.ctx;
        let matched = self.matched();
        out.push_str(&parts.route_head);
        if let Some(tail) = &parts.route_tail {
            escape(out, matched);
            out.push_str(tail);
        }
        if !matched.is_empty() {
            for key in
                ["\"Outbound-Callee-ID-Name\":", "\"Outbound-Callee-ID-Number\":", "\"To-DID\":"]
            {
                out.push_str(key);
                quoted(out, matched);
                out.push(',');
            }
        }
        out.push_str(&parts.statics);
        out.push_str("\"Matched-Number\":");
        quoted(out, matched);
        out.push(',');
        out.push_str(&parts.ccvs_tail);
        out.push_str("\"E164-Destination\":");
        quoted(out, &ctx.number);
        let optional = [
            ("E164-Origination", ctx.e164_origination.as_deref()),
            ("DID-Classifier", ctx.classification.as_deref()),
            ("Original-Number", Some(ctx.to_did.as_str()).filter(|it| !it.is_empty())),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                out.push_str(",\"");
                out.push_str(key);
                out.push_str("\":");
                quoted(out, value);
            }
        }
        out.push_str("},");
        let (cid_name, cid_number) = if gateway.emergency {
            (
                ctx.emergency_caller_id_name.as_deref().or(ctx.caller_id_name.as_deref()),
                ctx.emergency_caller_id_number.as_deref().or(ctx.caller_id_number.as_deref()),
            )
        } else {
            (ctx.caller_id_name.as_deref(), ctx.caller_id_number.as_deref())
        };
        for (key, value) in
            [("Outbound-Caller-ID-Number", cid_number), ("Outbound-Caller-ID-Name", cid_name)]
        {
            if let Some(value) = value.filter(|it| !it.is_empty()) {
                out.push('"');
                out.push_str(key);
                out.push_str("\":");
                quoted(out, value);
                out.push(',');
            }
        }
        if let Some(params) = &gateway.invite_parameters {
            let list = invite_parameters(params, &ctx.invite);
            if !list.is_empty() {
                out.push_str("\"SIP-Invite-Parameters\":[");
                for (at, item) in list.iter().enumerate() {
                    if at > 0 {
                        out.push(',');
                    }
                    quoted(out, item);
                }
                out.push_str("],");
            }
        }
        out.push_str(&parts.privacy);
        if gateway.privacy_hide_name || ctx.hide_name {
            out.push_str("\"Privacy-Hide-Name\":true,");
        }
        if gateway.privacy_hide_number || ctx.hide_number {
            out.push_str("\"Privacy-Hide-Number\":true,");
        }
        if ctx.fax {
            out.push_str("\"Enable-T38-Fax\":true,");
            out.push_str(match (gateway.fax_option, ctx.fax_t38_enabled) {
                (true, true) | (false, false) => "\"Enable-T38-Passthrough\":true,",
                (true, false) => "\"Enable-T38-Fax-Request\":true,\"Enable-T38-Gateway\":\"self\",",
                (false, true) => "\"Enable-T38-Fax-Request\":true,\"Enable-T38-Gateway\":\"peer\",",
            });
        }
        out.push_str(&parts.name_weight);
        if let Some(proxy) = self.proxy() {
            out.push_str(",\"Proxy-Zone\":");
            quoted(out, &proxy.zone);
            out.push_str(",\"Proxy-IP\":");
            quoted(out, &proxy.ip);
        }
        out.push('}');
    }

    /// Appends this endpoint's line of the text form (a full SIP URI and `\n`) to `out`;
    /// `false` when its gateway's verbatim route names nothing a SIP proxy can dial.
    pub(crate) fn write_sip_uri(&self, out: &mut String) -> bool {
        let gateway = self.gateway();
        match gateway.rendered.as_ref().map(|it| &it.text) {
            Some(Line::Dial(head, tail)) => {
                out.push_str(head);
                out.push_str(self.matched());
                out.push_str(tail);
            }
            Some(Line::Fixed(line)) => out.push_str(line),
            Some(Line::Skip) => return false,
            None => match line(gateway) {
                Line::Dial(head, tail) => {
                    out.push_str(&head);
                    out.push_str(self.matched());
                    out.push_str(&tail);
                }
                Line::Fixed(line) => out.push_str(&line),
                Line::Skip => return false,
            },
        }
        out.push('\n');
        true
    }
}

impl RouteAnswer {
    /// About how many bytes [`RouteAnswer::write_json`] appends ([`Endpoint::json_len_hint`]).
    pub fn json_len_hint(&self) -> usize {
        64 + self.number.len()
            + self.classification.as_deref().map_or(0, str::len)
            + self.endpoints.iter().map(Endpoint::json_len_hint).sum::<usize>()
    }

    /// Appends the answer's JSON (what `serde_json` writes for it, byte for byte) to `out`:
    /// `{"number":…,"classification":…,"endpoints":[…]}`, each endpoint from its gateway's
    /// prepared fragments ([`Endpoint::write_json`]).
    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"number\":");
        quoted(out, &self.number);
        out.push_str(",\"classification\":");
        match self.classification.as_deref() {
            Some(class) => quoted(out, class),
            None => out.push_str("null"),
        }
        out.push_str(",\"endpoints\":[");
        for (at, endpoint) in self.endpoints.iter().enumerate() {
            if at > 0 {
                out.push(',');
            }
            endpoint.write_json(out);
        }
        out.push_str("]}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_serde_json_does() {
        for text in ["plain", "q\"b\\s", "\u{0}\u{1f}\x08\t\n\x0C\r\u{7f}", "ä€😀/</"] {
            let mut out = String::new();
            quoted(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap());
        }
    }
}

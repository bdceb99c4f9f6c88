//! `knm_dash_e911` (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …)), Kazoo's default e911 provider: addresses provisioned with Dash
//! (Bandwidth) emergency provisioning, for numbers in `reserved` / `in_service` / `port_in`.
//!
//! Pure part ([`save`] / [`delete`]): the public `e911` object is compared with the private
//! `e911` feature; empty → the feature is removed and the number de-provisioned upstream
//! ([`Call::RemoveUri`]); equal → nothing; changed → the feature (and the public `e911`) take the
//! address as given and [`Call::Update`] asks Dash; other states → delete.
//!
//! The call ([`Call::perform`]; section `number_manager.dash_e911`: `emergency_provisioning_url`
//! (default `https://service.dashcs.com/dash-api/xml/emergencyprovisioning/v1`),
//! `auth_username`, `auth_password` (HTTP basic), `request_timeout_ms` (default 30000)), XML
//! `POST {url}/{verb}`:
//! 1. `validatelocation`: `INVALID` → 400 `invalid` (Dash's description and the address),
//!    `ERROR` / other → 500 `unspecified_fault`, `GEOCODED` to several locations → 500
//!    `multiple_choice` (the candidates in the cause);
//! 2. `addlocation` with `tel:1NPANXXXXXX` and the caller name (`caller_name`, else
//!    `Valued Customer`): `PROVISIONED` → that location; `GEOCODED` → `provisionlocation` of its
//!    `locationid`, its status kept; otherwise 500;
//! 3. the location as Dash returns it (`street_address`, `locality`, `region`, `postal_code`,
//!    `location_id`, `latitude`, `longitude`, `status`, `legacy_data`, …) becomes both the public
//!    and the private `e911`.
//!
//! [`Call::RemoveUri`] (`removeuri`) never fails the save (Kazoo ignores its outcome). Unlike
//! Kazoo, a dry run does not call `validatelocation` either (`knm_number_options:dry_run`: no external call).

use std::time::Duration;

use serde_json::{Map, Value};

use crate::carriers::external::{self, xml_escape, Element, Secret};
use crate::carriers::CarrierCtx;
use crate::doc::NumberDoc;
use crate::error::Error;

use super::telnyx_e911::DEFAULT_CALLER_NAME;
use super::{is_empty, is_provisioned_state, non_empty, FeatureCtx, ProviderCall};

const KEY: &str = "e911";

/// The system config document of this provider.
pub const CONFIG_DOC: &str = "number_manager.dash_e911";

const DEFAULT_URL: &str = "https://service.dashcs.com/dash-api/xml/emergencyprovisioning/v1";

/// What the store layer asks Dash.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// Validate and provision this address for the number.
    Update {
        /// The public `e911` object.
        address: Map<String, Value>,
    },
    /// Remove the number (`removeURI`).
    RemoveUri,
}

/// `save/1`.
pub fn save(doc: &mut NumberDoc, ctx: &FeatureCtx<'_>) -> Option<ProviderCall> {
    if !is_provisioned_state(doc) {
        return delete(doc, ctx);
    }
    let public = non_empty(doc.public.get(KEY)).cloned();
    if is_empty(public.as_ref()) {
        let had = doc.features.remove(KEY).is_some();
        return (had && !ctx.dry_run).then_some(ProviderCall::DashE911(Call::RemoveUri));
    }
    if doc.features.get(KEY) == public.as_ref() {
        return None;
    }
    let public = public.unwrap_or_default();
    doc.features.insert(KEY.into(), public.clone());
    let address = public.as_object().cloned().unwrap_or_default();
    (!ctx.dry_run).then_some(ProviderCall::DashE911(Call::Update { address }))
}

/// `delete/1`: the feature is removed and the number de-provisioned.
pub fn delete(doc: &mut NumberDoc, ctx: &FeatureCtx<'_>) -> Option<ProviderCall> {
    doc.features.remove(KEY)?;
    (!ctx.dry_run).then_some(ProviderCall::DashE911(Call::RemoveUri))
}

/// `json_address_to_xml_location/1`.
pub fn location_xml(address: &Map<String, Value>) -> String {
    let mut xml = String::from("<location>");
    for (tag, key) in [
        ("address1", "street_address"),
        ("address2", "extended_address"),
        ("community", "locality"),
        ("state", "region"),
        ("postalcode", "postal_code"),
    ] {
        let text = match address.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => continue,
            Some(other) => other.to_string(),
        };
        xml.push_str(&format!("<{tag}>{}</{tag}>", xml_escape(&text)));
    }
    xml.push_str("<type>ADDRESS</type></location>");
    xml
}

/// `location_xml_to_json_address/1`: a `Location` element as an e911 object.
pub(crate) fn location_json(loc: &Element) -> Value {
    let mut out = Map::new();
    for (tag, key) in [
        ("address1", "street_address"),
        ("address2", "extended_address"),
        ("activated_time", "activated_time"),
        ("callername", "caller_name"),
        ("comments", "comments"),
        ("community", "locality"),
        ("customerorderid", "order_id"),
        ("latitude", "latitude"),
        ("longitude", "longitude"),
        ("locationid", "location_id"),
        ("plusfour", "plus_four"),
        ("postalcode", "postal_code"),
        ("state", "region"),
    ] {
        if let Some(text) = loc.child_text(tag) {
            out.insert(key.into(), Value::from(text));
        }
    }
    if let Some(code) =
        loc.at(&["status", "code"]).map(|c| c.text.as_str()).filter(|t| !t.is_empty())
    {
        out.insert("status".into(), Value::from(code));
    }
    let mut legacy = Map::new();
    if let Some(l) = loc.child("legacydata") {
        for (tag, key) in [
            ("housenumber", "house_number"),
            ("predirectional", "predirectional"),
            ("streetname", "streetname"),
            ("suite", "suite"),
        ] {
            if let Some(text) = l.child_text(tag) {
                legacy.insert(key.into(), Value::from(text));
            }
        }
    }
    out.insert("legacy_data".into(), Value::Object(legacy));
    Value::Object(out)
}

fn locations<'e>(el: &'e Element, out: &mut Vec<&'e Element>) {
    if el.name == "Location" {
        out.push(el);
        return;
    }
    for c in &el.children {
        locations(c, out);
    }
}

/// A parsed answer of `validateLocation` / `addLocation`.
enum Answer {
    Geocoded(Vec<Value>),
    Provisioned(Vec<Value>),
    Invalid(String),
    Error(String),
}

fn parse_answer(root: &Element) -> Answer {
    let mut locs = Vec::new();
    locations(root, &mut locs);
    let first = locs.first();
    let code = first.and_then(|l| l.at(&["status", "code"])).map(|c| c.text.clone());
    let desc = first
        .and_then(|l| l.at(&["status", "description"]))
        .map(|c| c.text.clone())
        .unwrap_or_default();
    let json = || locs.iter().map(|l| location_json(l)).collect::<Vec<_>>();
    match code.as_deref() {
        Some("GEOCODED") => Answer::Geocoded(json()),
        Some("PROVISIONED") => Answer::Provisioned(json()),
        Some("INVALID") => Answer::Invalid(desc),
        Some("ERROR") => Answer::Error(desc),
        Some(other) => Answer::Error(other.to_owned()),
        None => Answer::Error("no location status in the answer".into()),
    }
}

/// The Dash API.
struct DashApi<'a> {
    ctx: &'a CarrierCtx<'a>,
    url: String,
    user: Secret,
    password: Secret,
    timeout: Duration,
}

impl<'a> DashApi<'a> {
    fn new(ctx: &'a CarrierCtx<'a>) -> Result<Self, Error> {
        let section = ctx.config.provider_configs.get(CONFIG_DOC).cloned().unwrap_or(Value::Null);
        let sec = section.get("default").filter(|v| v.is_object()).unwrap_or(&section);
        let get = |k: &str| sec.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let url = get("emergency_provisioning_url").unwrap_or(DEFAULT_URL);
        if url::Url::parse(url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
            return Err(Error::Config {
                key: format!("{CONFIG_DOC}.emergency_provisioning_url"),
                reason: "expected an http(s) URL".into(),
            });
        }
        let timeout = sec.get("request_timeout_ms").and_then(Value::as_u64).unwrap_or(30_000);
        Ok(DashApi {
            ctx,
            url: url.trim_end_matches('/').to_owned(),
            user: Secret::new(get("auth_username").unwrap_or_default()),
            password: Secret::new(get("auth_password").unwrap_or_default()),
            timeout: Duration::from_millis(timeout.max(1)),
        })
    }

    /// `emergency_provisioning_request/2`: the parsed XML answer, or Kazoo's error atom.
    async fn request(&self, verb: &str, inner: &str, number: &str) -> Result<Element, String> {
        let body = format!("<?xml version=\"1.0\"?><{verb}>{inner}</{verb}>");
        let req = external::client(self.ctx)
            .post(format!("{}/{}", self.url, verb.to_lowercase()))
            .header("Accept", "*/*")
            .header("Content-Type", "text/xml")
            .basic_auth(self.user.expose(), Some(self.password.expose()))
            .body(body);
        let unreachable = |e: reqwest::Error| {
            let e = e.without_url();
            tracing::warn!(number, verb, error = %e, "dash e911 unreachable");
            "unreachable".to_owned()
        };
        let resp = req.timeout(self.timeout).send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(unreachable)?;
        tracing::debug!(number, verb, status, "dash e911 answered");
        match status {
            401 => Err("authentication".into()),
            403 => Err("authorization".into()),
            404 => Err("not_found".into()),
            500 | 503 => Err("server_error".into()),
            _ => Element::parse(&body).map_err(|_| "empty_response".into()),
        }
    }
}

fn unspecified(number: &str, reason: impl Into<String>) -> Error {
    Error::Unspecified { reason: reason.into(), cause: Some(number.to_owned()) }
}

/// `tel:1NPANXXXXXX` (`knm_converters:to_1npan/1`; other numbers without `+`).
fn tel_uri(number: &str) -> String {
    let digits = number.strip_prefix('+').unwrap_or(number);
    format!("tel:{digits}")
}

impl Call {
    /// Performs the call (see the module docs).
    ///
    /// # Errors
    /// 400 `invalid`, 500 `multiple_choice` / `unspecified_fault` from the validation or the
    /// provisioning; a config error.
    pub async fn perform(
        &self,
        mut doc: NumberDoc,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        if ctx.dry_run {
            return Ok(doc);
        }
        let api = DashApi::new(ctx)?;
        let number = doc.id.as_str().to_owned();
        match self {
            Call::RemoveUri => {
                let inner = format!("<uri>{}</uri>", xml_escape(&tel_uri(&number)));
                match api.request("removeURI", &inner, &number).await {
                    Ok(rep) => {
                        let code = rep.find("URIStatus").and_then(|s| s.child_text("code"));
                        tracing::debug!(number, ?code, "dash e911 removeURI");
                    }
                    Err(e) => tracing::debug!(number, error = e, "dash e911 removeURI failed"),
                }
                Ok(doc)
            }
            Call::Update { address } => {
                let location = location_xml(address);
                let valid = api
                    .request("validateLocation", &location, &number)
                    .await
                    .map_err(|e| unspecified(&number, e))?;
                match parse_answer(&valid) {
                    Answer::Invalid(desc) => {
                        let addr = Value::Object(address.clone());
                        return Err(Error::Invalid { reason: format!("{desc} ({addr})") });
                    }
                    Answer::Error(desc) => return Err(unspecified(&number, desc)),
                    Answer::Geocoded(candidates) if candidates.len() > 1 => {
                        let detail = serde_json::json!({"cause": address, "details": candidates,
                            "message": "more than one address found"});
                        return Err(Error::Unspecified {
                            reason: "multiple_choice".into(),
                            cause: Some(detail.to_string()),
                        });
                    }
                    Answer::Geocoded(_) | Answer::Provisioned(_) => {}
                }
                let caller = address
                    .get("caller_name")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .unwrap_or(DEFAULT_CALLER_NAME);
                let inner = format!(
                    "<uri><uri>{}</uri><callername>{}</callername></uri>{location}",
                    xml_escape(&tel_uri(&number)),
                    xml_escape(caller)
                );
                let added = api
                    .request("addLocation", &inner, &number)
                    .await
                    .map_err(|e| unspecified(&number, e))?;
                let e911 = match parse_answer(&added) {
                    Answer::Provisioned(mut locs) if !locs.is_empty() => locs.remove(0),
                    Answer::Geocoded(mut locs) if !locs.is_empty() => {
                        let mut loc = locs.remove(0);
                        let id = loc.get("location_id").and_then(Value::as_str).map(str::to_owned);
                        if let Some(id) = id {
                            let inner = format!("<locationid>{}</locationid>", xml_escape(&id));
                            if let Ok(rep) = api.request("provisionLocation", &inner, &number).await
                            {
                                let status = rep
                                    .find("LocationStatus")
                                    .and_then(|s| s.child_text("code"))
                                    .map(str::to_owned);
                                if let (Some(status), Value::Object(m)) = (status, &mut loc) {
                                    m.insert("status".into(), Value::from(status));
                                }
                            }
                        }
                        loc
                    }
                    Answer::Invalid(desc) | Answer::Error(desc) => {
                        return Err(unspecified(&number, desc))
                    }
                    Answer::Provisioned(_) | Answer::Geocoded(_) => {
                        return Err(unspecified(&number, "no location in the answer"))
                    }
                };
                doc.public.insert(KEY.into(), e911.clone());
                doc.features.insert(KEY.into(), e911);
                Ok(doc)
            }
        }
    }
}

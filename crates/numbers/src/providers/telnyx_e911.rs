//! `knm_telnyx_e911` (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …)): e911 addresses provisioned at Telnyx for numbers in `reserved` /
//! `in_service` / `port_in`.
//!
//! Pure part ([`save`] / [`delete`]): the private `e911` feature follows the public `e911` object
//! (removed when the public one is empty; unchanged when equal — no call then, vector K4); other
//! states remove it. A change yields a [`Call`] for the store layer, never under dry run.
//!
//! The call ([`Call::perform`], `number_manager.telnyx`: `base_url`, `user`, `token`,
//! `sandbox_provisioning`, `request_timeout_ms`):
//! - [`Call::Update`]: `POST e911_addresses` with `business_name` (the address's `caller_name`,
//!   else `Valued Customer`), `line_1` / `line_2` / `city` / `state` uppercased and reduced to
//!   letters, digits and spaces, `postal_code`; the reply's `id` is assigned with
//!   `PUT numbers/{+number url-encoded}/e911_settings {e911_enabled: true, e911_address_id}`
//!   and kept as `pvt_carrier_data.address_id` (vector K3); the previous address is then deleted
//!   (`DELETE e911_addresses/{id}`, best effort, as Kazoo's spawned delete);
//! - [`Call::Remove`]: `PUT …/e911_settings {e911_enabled: false, e911_address_id: null}`, the old
//!   address deleted, `address_id` dropped.
//!
//! With `sandbox_provisioning` nothing is called and the feature is only kept locally (Kazoo's
//! behaviour). A refusal is a 500 `unspecified_fault` whose message is Telnyx's reason and whose
//! cause is the number; nothing is written then.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::carriers::external;
use crate::carriers::telnyx::{Telnyx, TelnyxConfig};
use crate::carriers::{CarrierCtx, CarrierKind};
use crate::doc::NumberDoc;
use crate::error::Error;

use super::{is_empty, is_provisioned_state, non_empty, FeatureCtx, ProviderCall};

const KEY: &str = "e911";

/// The carrier-data key of the Telnyx address id.
pub const ADDRESS_ID: &str = "address_id";

/// `?E911_NAME_DEFAULT`.
pub const DEFAULT_CALLER_NAME: &str = "Valued Customer";

/// What the store layer asks Telnyx.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// Provision this address (the public `e911` object) for the number.
    Update {
        /// The address (`street_address`, `extended_address`, `locality`, `region`,
        /// `postal_code`, `caller_name`).
        address: Map<String, Value>,
    },
    /// Withdraw the number's e911 address.
    Remove,
}

/// `save/1`.
pub fn save(doc: &mut NumberDoc, ctx: &FeatureCtx<'_>) -> Option<ProviderCall> {
    if !is_provisioned_state(doc) {
        return delete(doc, ctx);
    }
    let public = non_empty(doc.public.get(KEY)).cloned();
    if is_empty(public.as_ref()) {
        let had = doc.features.remove(KEY).is_some();
        return (had && !ctx.dry_run && doc.carrier_data.contains_key(ADDRESS_ID))
            .then_some(ProviderCall::TelnyxE911(Call::Remove));
    }
    if doc.features.get(KEY) == public.as_ref() {
        return None;
    }
    let public = public.unwrap_or_default();
    doc.features.insert(KEY.into(), public.clone());
    let address = public.as_object().cloned().unwrap_or_default();
    (!ctx.dry_run).then_some(ProviderCall::TelnyxE911(Call::Update { address }))
}

/// `delete/1`: the feature is removed and, if an address was assigned, withdrawn.
pub fn delete(doc: &mut NumberDoc, ctx: &FeatureCtx<'_>) -> Option<ProviderCall> {
    doc.features.remove(KEY)?;
    (!ctx.dry_run && doc.carrier_data.contains_key(ADDRESS_ID))
        .then_some(ProviderCall::TelnyxE911(Call::Remove))
}

/// `cleanse/1`: uppercase, only `[0-9A-Z ]` kept.
pub fn cleanse(text: &str) -> String {
    text.to_uppercase()
        .chars()
        .filter(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || *c == ' ')
        .collect()
}

/// `e911_address/2`: the `POST e911_addresses` body (empty fields left out).
pub fn address_body(address: &Map<String, Value>) -> Value {
    let get = |k: &str| address.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let caller = get("caller_name").unwrap_or(DEFAULT_CALLER_NAME).to_owned();
    let mut body = Map::new();
    let fields = [
        ("business_name", Some(caller)),
        ("city", get("locality").map(cleanse)),
        ("state", get("region").map(cleanse)),
        ("postal_code", get("postal_code").map(str::to_owned)),
        ("line_1", get("street_address").map(cleanse)),
        ("line_2", get("extended_address").map(cleanse)),
    ];
    for (k, v) in fields {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            body.insert(k.into(), Value::from(v));
        }
    }
    Value::Object(body)
}

/// The Telnyx API as the providers use it (`knm_telnyx_util:req/3`), with the carrier's
/// settings (`number_manager.telnyx`, read once with the carrier's).
pub(super) struct TelnyxApi<'a> {
    ctx: &'a CarrierCtx<'a>,
    config: Arc<TelnyxConfig>,
    pub(super) sandbox: bool,
}

impl<'a> TelnyxApi<'a> {
    /// The API with the context's `number_manager.telnyx` settings.
    pub(super) fn new(ctx: &'a CarrierCtx<'a>) -> Result<Self, Error> {
        let config = ctx.settings.get::<Telnyx>()?;
        Ok(TelnyxApi { ctx, sandbox: config.provisioning.sandbox, config })
    }

    /// One request; `Ok((status, JSON object or None))`. Missing credentials are a config
    /// error; a transport failure is `by_carrier`.
    pub(super) async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        number: &str,
    ) -> Result<(u16, Option<Map<String, Value>>), Error> {
        let mut req = self.config.request(self.ctx, method, path)?;
        if let Some(body) = body {
            req = req.json(body);
        }
        let reply = external::send(CarrierKind::Telnyx, number, req, self.config.timeout).await?;
        Ok((reply.status, serde_json::from_str(&reply.body).ok()))
    }
}

/// `knm_telnyx_util:did/1`: the number URL-encoded (`+1…` → `%2B1…`).
pub(super) fn did(number: &str) -> String {
    number.replace('+', "%2B")
}

/// Kazoo's `reason/1`: Telnyx's `message` / `reasons`, or the HTTP status.
fn reason(status: u16, rep: Option<&Map<String, Value>>) -> String {
    let message = rep.and_then(|r| r.get("message")).and_then(Value::as_str);
    let reasons = rep.and_then(|r| r.get("reasons")).filter(|r| !r.is_null());
    match (message, reasons) {
        (Some(m), Some(r)) => format!("{m} {r}"),
        (Some(m), None) => m.to_owned(),
        (None, Some(r)) => r.to_string(),
        (None, None) => format!("telnyx answered HTTP {status}"),
    }
}

fn refused(number: &str, why: String) -> Error {
    tracing::warn!(number, reason = why.as_str(), "telnyx e911 refused");
    Error::Unspecified { reason: why, cause: Some(number.to_owned()) }
}

impl Call {
    /// Performs the call (see the module docs).
    ///
    /// # Errors
    /// 500 `unspecified_fault` with Telnyx's reason; a config error; `by_carrier` on a transport
    /// failure.
    pub async fn perform(
        &self,
        mut doc: NumberDoc,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        let api = TelnyxApi::new(ctx)?;
        if ctx.dry_run || api.sandbox {
            return Ok(doc);
        }
        let number = doc.id.as_str().to_owned();
        let old = doc.carrier_data.get(ADDRESS_ID).and_then(Value::as_str).map(str::to_owned);
        match self {
            Call::Update { address } => {
                let body = address_body(address);
                let (status, rep) =
                    api.req(reqwest::Method::POST, "e911_addresses", Some(&body), &number).await?;
                let ok = status == 200
                    && rep.as_ref().is_some_and(|r| {
                        r.get("success") != Some(&Value::Bool(false))
                            && r.get("status").and_then(Value::as_str) == Some("success")
                    });
                let id = rep
                    .as_ref()
                    .and_then(|r| r.get("id"))
                    .and_then(Value::as_str)
                    .filter(|_| ok)
                    .map(str::to_owned);
                let Some(id) = id else {
                    return Err(refused(&number, reason(status, rep.as_ref())));
                };
                assign(&api, &number, Some(&id)).await?;
                delete_address(&api, &number, old.as_deref()).await;
                doc.carrier_data.insert(ADDRESS_ID.into(), Value::from(id));
            }
            Call::Remove => {
                if old.is_some() {
                    assign(&api, &number, None).await?;
                    delete_address(&api, &number, old.as_deref()).await;
                }
                doc.carrier_data.remove(ADDRESS_ID);
            }
        }
        Ok(doc)
    }
}

/// `assign_address/2`: `PUT numbers/{did}/e911_settings`.
async fn assign(api: &TelnyxApi<'_>, number: &str, id: Option<&str>) -> Result<(), Error> {
    let body = json!({"e911_enabled": id.is_some(), "e911_address_id": id});
    let path = format!("numbers/{}/e911_settings", did(number));
    let (status, rep) = api.req(reqwest::Method::PUT, &path, Some(&body), number).await?;
    let success =
        rep.as_ref().and_then(|r| r.get("success")).is_none_or(|s| s == &Value::Bool(true));
    if status == 200 && success {
        Ok(())
    } else {
        Err(refused(number, reason(status, rep.as_ref())))
    }
}

/// `remove_number_address/1`: `DELETE e911_addresses/{id}`, best effort (Kazoo spawns it and
/// ignores the outcome).
async fn delete_address(api: &TelnyxApi<'_>, number: &str, id: Option<&str>) {
    let Some(id) = id else { return };
    let path = format!("e911_addresses/{id}");
    match api.req(reqwest::Method::DELETE, &path, None, number).await {
        Ok((200, _)) => {}
        Ok((status, _)) => {
            tracing::info!(number, id, status, "old telnyx e911 address not deleted")
        }
        Err(e) => tracing::info!(number, id, error = %e, "old telnyx e911 address not deleted"),
    }
}

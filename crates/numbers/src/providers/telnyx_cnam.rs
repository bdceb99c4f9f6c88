//! `knm_telnyx_cnam`: CNAM at Telnyx for numbers in `reserved` / `in_service` / `port_in`
//! (chosen by a reseller's `cnam_provider`, `knm_providers:exec/2`).
//!
//! Pure part ([`save`] / [`delete`]), as Kazoo:
//! - outbound: the public `cnam.display_name` becomes `outbound_cnam {display_name}`; absent →
//!   `outbound_cnam` removed; unchanged → nothing;
//! - inbound: the public `cnam.inbound_lookup` (true or not) against the current `inbound_cnam`:
//!   switched on → `inbound_cnam {inbound_lookup: true}`, switched off → removed;
//! - the legacy private `cnam` feature is removed; other states leave the features untouched;
//! - `delete` removes `inbound_cnam`, `outbound_cnam`, `cnam` and switches inbound lookup off.
//!
//! Changes that Telnyx must know yield one [`Call`] (never under dry run): a new display name is
//! sent with `PUT numbers/{+number url-encoded} {cnam_listing_details, enable_caller_id_name:
//! true}` (the reply must echo the name); an inbound switch with `PUT numbers/{…}
//! {enable_caller_id_name: bool}` (the reply must echo the flag). A mismatch or an HTTP error is
//! `by_carrier` and nothing is written. Kazoo's CNAM notification is not published (no AMQP).
//! Unlike Kazoo, `sandbox_provisioning` also keeps these calls from being made (Kazoo only
//! honours it for e911).

use serde_json::{json, Value};

use crate::carriers::external::by_carrier;
use crate::carriers::{CarrierCtx, CarrierKind};
use crate::doc::NumberDoc;
use crate::error::Error;

use super::telnyx_e911::{did, TelnyxApi};
use super::{is_provisioned_state, is_true, non_empty, set_feature, FeatureCtx, ProviderCall};

/// What the store layer tells Telnyx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// A new outbound display name to list, if it changed.
    pub outbound: Option<String>,
    /// Inbound CNAM lookup switched on (`true`) or off (`false`), if it changed.
    pub inbound: Option<bool>,
}

/// `save/1`.
pub fn save(doc: &mut NumberDoc, ctx: &FeatureCtx<'_>) -> Option<ProviderCall> {
    if !is_provisioned_state(doc) {
        return None;
    }
    let cnam = doc.public.get("cnam").cloned().unwrap_or(Value::Null);
    // Outbound.
    let current =
        doc.features.get("outbound_cnam").and_then(|f| non_empty(f.get("display_name"))).cloned();
    let wanted = non_empty(cnam.get("display_name")).cloned();
    let mut outbound = None;
    match &wanted {
        None => set_feature(doc, "outbound_cnam", None),
        Some(name) if Some(name) == current.as_ref() => {}
        Some(name) => {
            set_feature(doc, "outbound_cnam", Some(json!({"display_name": name})));
            outbound = Some(name.as_str().map_or_else(|| name.to_string(), str::to_owned));
        }
    }
    // Inbound.
    let was = is_true(doc.features.get("inbound_cnam").and_then(|f| f.get("inbound_lookup")));
    let now = is_true(cnam.get("inbound_lookup"));
    let mut inbound = None;
    if now != was {
        if now {
            set_feature(doc, "inbound_cnam", Some(json!({"inbound_lookup": true})));
        } else {
            set_feature(doc, "inbound_cnam", None);
            set_feature(doc, "inbound_lookup", None);
        }
        inbound = Some(now);
    }
    set_feature(doc, "cnam", None);
    let call = Call { outbound, inbound };
    (!ctx.dry_run && (call.outbound.is_some() || call.inbound.is_some()))
        .then_some(ProviderCall::TelnyxCnam(call))
}

/// `delete/1`.
pub fn delete(doc: &mut NumberDoc, ctx: &FeatureCtx<'_>) -> Option<ProviderCall> {
    let was = is_true(doc.features.get("inbound_cnam").and_then(|f| f.get("inbound_lookup")));
    for f in ["inbound_cnam", "outbound_cnam", "cnam"] {
        set_feature(doc, f, None);
    }
    (was && !ctx.dry_run)
        .then_some(ProviderCall::TelnyxCnam(Call { outbound: None, inbound: Some(false) }))
}

impl Call {
    /// Performs the call (see the module docs); the document is unchanged.
    ///
    /// # Errors
    /// `by_carrier` when Telnyx refuses or does not echo the change; a config error.
    pub async fn perform(&self, doc: NumberDoc, ctx: &CarrierCtx<'_>) -> Result<NumberDoc, Error> {
        let api = TelnyxApi::new(ctx)?;
        if ctx.dry_run || api.sandbox {
            return Ok(doc);
        }
        let number = doc.id.as_str();
        let path = format!("numbers/{}", did(number));
        let refused = |why: String| by_carrier(CarrierKind::Telnyx, number, why);
        if let Some(name) = &self.outbound {
            let body = json!({"cnam_listing_details": name, "enable_caller_id_name": true});
            let (status, rep) = api.req(reqwest::Method::PUT, &path, Some(&body), number).await?;
            let echoed =
                rep.as_ref().and_then(|r| r.get("cnam_listing_details")).and_then(Value::as_str);
            if status != 200 || echoed != Some(name.as_str()) {
                return Err(refused(format!("cnam listing not set (HTTP {status})")));
            }
        }
        if let Some(on) = self.inbound {
            let body = json!({"enable_caller_id_name": on});
            let (status, rep) = api.req(reqwest::Method::PUT, &path, Some(&body), number).await?;
            let echoed = rep.as_ref().and_then(|r| r.get("enable_caller_id_name"));
            if status != 200 || echoed != Some(&Value::Bool(on)) {
                return Err(refused(format!("inbound cnam not switched (HTTP {status})")));
            }
        }
        Ok(doc)
    }
}

//! The number feature providers run when a number is saved or deleted (`knm_providers:exec/2` and the feature providers it runs,
//! `providers/knm_providers.erl` and one `providers/knm_*.erl` per provider).
//!
//! # As a decision
//! [`save`] and [`delete`] are pure: they change the [`NumberDoc`] the way the providers would
//! (private `pvt_features` from the public fields, `carrier_name` renames, stripped denied
//! features) and return the [`ProviderCall`]s that need an external API (Telnyx e911 and CNAM,
//! Dash e911) — never under dry run (`knm_number_options:dry_run`). The lifecycle attaches them to the
//! [`crate::Decision`]; the store layer performs them ([`ProviderCall::perform`]) after the
//! carrier call and before the writes, exactly like carrier calls, and a refusal fails the number
//! with nothing written.
//!
//! # `save` (`exec(N, save)`)
//! 1. the deprecated feature `im` is dropped from `pvt_features`;
//! 2. requested = the feature keys present in the public fields ([`ROOT_KEYS`]) ∪ the keys of
//!    `pvt_features`, minus `local`, each mapped to its provider module ([`provider_module`]:
//!    `cnam*` → the owner's reseller's `cnam_provider`, `e911` → `e911_provider`, …); allowed =
//!    the modules of the available features ([`crate::features::available_features_for`]);
//! 3. if `knm_rename_carrier` is requested and allowed it runs first, then the features now
//!    denied are stripped from the private and public fields ([`remove_denied_features`]) and
//!    the requests are split again;
//! 4. any requested module not allowed (`knm_sms` / `knm_mms` excepted) → 403 `forbidden`;
//! 5. every allowed module's `save` runs, in module-name order; modules that do not exist are
//!    skipped (Kazoo: not loadable), Kazoo modules this build does not provide (the Vitelity
//!    CNAM and e911 providers) are an explicit 500 `provider_unavailable` rather than a silent
//!    skip.

pub mod cnam_notifier;
pub mod dash_e911;
pub mod failover;
pub mod force_outbound;
pub mod im;
pub mod port_notifier;
pub mod prepend;
pub mod rename_carrier;
pub mod telnyx_cnam;
pub mod telnyx_e911;

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::account::AccountId;
use crate::auth::Accounts;
use crate::carriers::CarrierCtx;
use crate::config::{Config, ProviderKey};
use crate::doc::NumberDoc;
use crate::error::Error;
use crate::features;

/// Public keys that request a feature (`?FEATURES_ROOT_KEYS`, `knm_phone_number:to_public_json/1`).
pub const ROOT_KEYS: [&str; 11] = [
    "carrier_name",
    "cnam",
    "e911",
    "failover",
    "force_outbound",
    "local",
    "mms",
    "port",
    "prepend",
    "ringback",
    "sms",
];

/// Deprecated features removed on every save (`?DEPRECATED_FEATURES`).
pub const DEPRECATED_FEATURES: [&str; 1] = ["im"];

/// Requested-but-denied modules that are not an error (`?REMOVED_DENIED_FEATURES`).
const DENIED_NOT_FATAL: [&str; 2] = ["knm_sms", "knm_mms"];

/// What the providers need besides the document.
#[derive(Clone, Copy)]
pub struct FeatureCtx<'a> {
    /// `number_manager` config (feature lists, provider mapping, reseller configs).
    pub config: &'a Config,
    /// The accounts (reseller of the owner, admin test).
    pub accounts: &'a dyn Accounts,
    /// Whether `auth_by` is an admin (`knm_phone_number:is_admin/1`): `carrier_name` is theirs.
    pub is_admin: bool,
    /// `knm_number_options:dry_run`: change the document, call nothing.
    pub dry_run: bool,
}

/// The providers this build runs, one file each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Provider {
    /// `knm_cnam_notifier` ([`cnam_notifier`]).
    CnamNotifier,
    /// `knm_dash_e911` ([`dash_e911`]).
    DashE911,
    /// `knm_failover` ([`failover`]).
    Failover,
    /// `knm_force_outbound` ([`force_outbound`]).
    ForceOutbound,
    /// `knm_mms` ([`im`]).
    Mms,
    /// `knm_port_notifier` ([`port_notifier`]).
    PortNotifier,
    /// `knm_prepend` ([`prepend`]).
    Prepend,
    /// `knm_rename_carrier` ([`rename_carrier`]).
    RenameCarrier,
    /// `knm_sms` ([`im`]).
    Sms,
    /// `knm_telnyx_cnam` ([`telnyx_cnam`]).
    TelnyxCnam,
    /// `knm_telnyx_e911` ([`telnyx_e911`]).
    TelnyxE911,
}

/// Kazoo provider modules that exist in 4.3 but are not provided by this build.
const UNAVAILABLE: [&str; 2] = ["knm_vitelity_cnam", "knm_vitelity_e911"];

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 11] = [
        Provider::CnamNotifier,
        Provider::DashE911,
        Provider::Failover,
        Provider::ForceOutbound,
        Provider::Mms,
        Provider::PortNotifier,
        Provider::Prepend,
        Provider::RenameCarrier,
        Provider::Sms,
        Provider::TelnyxCnam,
        Provider::TelnyxE911,
    ];

    /// The Kazoo module name.
    pub fn module_name(self) -> &'static str {
        match self {
            Provider::CnamNotifier => "knm_cnam_notifier",
            Provider::DashE911 => "knm_dash_e911",
            Provider::Failover => "knm_failover",
            Provider::ForceOutbound => "knm_force_outbound",
            Provider::Mms => "knm_mms",
            Provider::PortNotifier => "knm_port_notifier",
            Provider::Prepend => "knm_prepend",
            Provider::RenameCarrier => "knm_rename_carrier",
            Provider::Sms => "knm_sms",
            Provider::TelnyxCnam => "knm_telnyx_cnam",
            Provider::TelnyxE911 => "knm_telnyx_e911",
        }
    }

    /// The provider of a module name; `None` for names that are no provider module.
    pub fn from_module(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.module_name() == name)
    }

    fn save(
        self,
        doc: &mut NumberDoc,
        ctx: &FeatureCtx<'_>,
    ) -> Result<Option<ProviderCall>, Error> {
        match self {
            Provider::CnamNotifier => {
                cnam_notifier::save(doc);
                Ok(None)
            }
            Provider::DashE911 => Ok(dash_e911::save(doc, ctx)),
            Provider::Failover => {
                failover::save(doc);
                Ok(None)
            }
            Provider::ForceOutbound => {
                force_outbound::save(doc);
                Ok(None)
            }
            Provider::Mms => {
                im::save(doc, im::Im::Mms);
                Ok(None)
            }
            Provider::PortNotifier => {
                port_notifier::save(doc);
                Ok(None)
            }
            Provider::Prepend => {
                prepend::save(doc);
                Ok(None)
            }
            Provider::RenameCarrier => rename_carrier::save(doc, ctx).map(|()| None),
            Provider::Sms => {
                im::save(doc, im::Im::Sms);
                Ok(None)
            }
            Provider::TelnyxCnam => Ok(telnyx_cnam::save(doc, ctx)),
            Provider::TelnyxE911 => Ok(telnyx_e911::save(doc, ctx)),
        }
    }

    fn delete(self, doc: &mut NumberDoc, ctx: &FeatureCtx<'_>) -> Option<ProviderCall> {
        match self {
            Provider::CnamNotifier => {
                cnam_notifier::delete(doc);
                None
            }
            Provider::DashE911 => dash_e911::delete(doc, ctx),
            Provider::Failover => {
                failover::delete(doc);
                None
            }
            Provider::ForceOutbound => {
                force_outbound::delete(doc);
                None
            }
            Provider::Mms => {
                im::delete(doc, im::Im::Mms);
                None
            }
            Provider::PortNotifier | Provider::RenameCarrier => None,
            Provider::Prepend => {
                prepend::delete(doc);
                None
            }
            Provider::Sms => {
                im::delete(doc, im::Im::Sms);
                None
            }
            Provider::TelnyxCnam => telnyx_cnam::delete(doc, ctx),
            Provider::TelnyxE911 => telnyx_e911::delete(doc, ctx),
        }
    }
}

/// A provider's call to an external API, performed by the store layer before the writes.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderCall {
    /// `knm_telnyx_e911` (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …)).
    TelnyxE911(telnyx_e911::Call),
    /// `knm_telnyx_cnam`.
    TelnyxCnam(telnyx_cnam::Call),
    /// `knm_dash_e911` (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …)).
    DashE911(dash_e911::Call),
}

impl ProviderCall {
    /// The provider module making the call.
    pub fn module_name(&self) -> &'static str {
        match self {
            ProviderCall::TelnyxE911(_) => Provider::TelnyxE911.module_name(),
            ProviderCall::TelnyxCnam(_) => Provider::TelnyxCnam.module_name(),
            ProviderCall::DashE911(_) => Provider::DashE911.module_name(),
        }
    }

    /// Makes the call and returns the document as the provider leaves it (Telnyx e911: the new
    /// `pvt_carrier_data.address_id`; Dash e911: the address as Dash validated it, in the public
    /// and private `e911`). `ctx` gives the HTTP client, the `number_manager.telnyx` section
    /// (its `base_url`, credentials, `sandbox_provisioning`) and, through its config, the
    /// `number_manager.dash_e911` section.
    ///
    /// # Errors
    /// The `knm_errors` error the provider raises (`invalid`, `multiple_choice`, `unspecified_fault`,
    /// `by_carrier`); nothing must be written then.
    pub async fn perform(&self, doc: NumberDoc, ctx: &CarrierCtx<'_>) -> Result<NumberDoc, Error> {
        match self {
            ProviderCall::TelnyxE911(c) => c.perform(doc, ctx).await,
            ProviderCall::TelnyxCnam(c) => c.perform(doc, ctx).await,
            ProviderCall::DashE911(c) => c.perform(doc, ctx).await,
        }
    }

    /// After a lost write race, the store decides again; a call identical to one already made
    /// is not made twice: this applies what the earlier call produced (`earlier`) to `doc`.
    pub fn reapply(&self, earlier: &NumberDoc, mut doc: NumberDoc) -> NumberDoc {
        match self {
            ProviderCall::TelnyxE911(_) => {
                match earlier.carrier_data.get(telnyx_e911::ADDRESS_ID) {
                    Some(id) => doc.carrier_data.insert(telnyx_e911::ADDRESS_ID.into(), id.clone()),
                    None => doc.carrier_data.remove(telnyx_e911::ADDRESS_ID),
                };
                doc
            }
            ProviderCall::TelnyxCnam(_) => doc,
            ProviderCall::DashE911(dash_e911::Call::Update { .. }) => {
                if let Some(e911) = earlier.features.get("e911") {
                    doc.features.insert("e911".into(), e911.clone());
                    doc.public.insert("e911".into(), e911.clone());
                }
                doc
            }
            ProviderCall::DashE911(dash_e911::Call::RemoveUri) => doc,
        }
    }
}

/// `provider_module/2`: the provider module of a feature for a number owned by `owner`.
/// Features without a module map to themselves (and are skipped when run).
pub fn provider_module(feature: &str, owner: Option<&AccountId>, ctx: &FeatureCtx<'_>) -> String {
    match feature {
        "cnam" | "inbound_cnam" | "outbound_cnam" if owner.is_some() => {
            ctx.config.provider_for(ProviderKey::Cnam, owner, ctx.accounts)
        }
        "inbound_cnam" | "outbound_cnam" => "cnam".into(),
        "e911" if owner.is_some() => {
            ctx.config.provider_for(ProviderKey::E911, owner, ctx.accounts)
        }
        "prepend" => "knm_prepend".into(),
        "port" => "knm_port_notifier".into(),
        "failover" => "knm_failover".into(),
        "carrier_name" => "knm_rename_carrier".into(),
        "force_outbound" => "knm_force_outbound".into(),
        "sms" => "knm_sms".into(),
        "mms" => "knm_mms".into(),
        other => other.to_owned(),
    }
}

/// `requested_modules/1`: the modules of the feature keys in the public fields and of the
/// current `pvt_features`, `local` excluded.
pub fn requested_modules(doc: &NumberDoc, ctx: &FeatureCtx<'_>) -> BTreeSet<String> {
    let public = ROOT_KEYS.iter().filter(|k| doc.public.get(**k).is_some_and(|v| !v.is_null()));
    let existing = doc.features.keys().map(String::as_str);
    public
        .copied()
        .chain(existing)
        .filter(|f| *f != "local")
        .map(|f| provider_module(f, doc.assigned_to.as_ref(), ctx))
        .collect()
}

/// `allowed_modules/1`: the modules of the available features.
pub fn allowed_modules(doc: &NumberDoc, ctx: &FeatureCtx<'_>) -> BTreeSet<String> {
    features::available_features_for(doc, ctx.config, ctx.accounts, ctx.is_admin)
        .iter()
        .map(|f| provider_module(f, doc.assigned_to.as_ref(), ctx))
        .collect()
}

fn split_requests(doc: &NumberDoc, ctx: &FeatureCtx<'_>) -> (Vec<String>, Vec<String>) {
    let allowed = allowed_modules(doc, ctx);
    requested_modules(doc, ctx).into_iter().partition(|m| allowed.contains(m))
}

/// Runs one module; `Ok(None)` also for modules that do not exist (skipped, as Kazoo does).
fn run(
    module: &str,
    doc: &mut NumberDoc,
    ctx: &FeatureCtx<'_>,
    action: Action,
) -> Result<Option<ProviderCall>, Error> {
    match Provider::from_module(module) {
        Some(p) => match action {
            Action::Save => p.save(doc, ctx),
            Action::Delete => Ok(p.delete(doc, ctx)),
        },
        None if UNAVAILABLE.contains(&module) => Err(Error::Unspecified {
            reason: "provider_unavailable".into(),
            cause: Some(format!("feature provider {module} is not available in this build")),
        }),
        None => {
            tracing::debug!(module, "feature provider unknown, skipped (as Kazoo)");
            Ok(None)
        }
    }
}

#[derive(Clone, Copy)]
enum Action {
    Save,
    Delete,
}

/// `knm_providers:exec/2` `knm_providers:save/1` on one number (see the module docs). Returns the external calls
/// to make, none under dry run.
///
/// # Errors
/// 403 `forbidden` for a requested feature that is not available (or `carrier_name` asked by a
/// non-admin), 400 `invalid` for an unknown `carrier_name`, 500 `provider_unavailable`.
pub fn save(doc: &mut NumberDoc, ctx: &FeatureCtx<'_>) -> Result<Vec<ProviderCall>, Error> {
    for f in DEPRECATED_FEATURES {
        doc.features.remove(f);
    }
    let (mut allowed, mut denied) = split_requests(doc, ctx);
    let rename = Provider::RenameCarrier.module_name();
    if allowed.iter().any(|m| m == rename) {
        run(rename, doc, ctx, Action::Save)?;
        remove_denied_features(doc, ctx);
        (allowed, denied) = split_requests(doc, ctx);
    }
    denied.retain(|m| !DENIED_NOT_FATAL.contains(&m.as_str()));
    if !denied.is_empty() {
        tracing::debug!(number = %doc.id, ?denied, "denied feature providers");
        return Err(Error::unauthorized());
    }
    let mut calls = Vec::new();
    for module in &allowed {
        calls.extend(run(module, doc, ctx, Action::Save)?);
    }
    Ok(calls)
}

/// `knm_providers:exec/2` `knm_providers:delete/1`: every requested module's `delete` (features removed,
/// e911 de-provisioned upstream, Telnyx inbound CNAM switched off). Returns the external calls,
/// none under dry run.
///
/// # Errors
/// 500 `provider_unavailable` (see the module docs).
pub fn delete(doc: &mut NumberDoc, ctx: &FeatureCtx<'_>) -> Result<Vec<ProviderCall>, Error> {
    let mut calls = Vec::new();
    for module in requested_modules(doc, ctx) {
        calls.extend(run(&module, doc, ctx, Action::Delete)?);
    }
    Ok(calls)
}

/// `knm_phone_number:remove_denied_features/1`: the denied features
/// ([`features::denied_features`]) are removed from `pvt_features` and their public keys from the
/// public fields (objects left empty are removed too).
pub fn remove_denied_features(doc: &mut NumberDoc, ctx: &FeatureCtx<'_>) {
    let policy = ctx.config.feature_policy(doc.assigned_to.as_ref(), ctx.accounts);
    for feature in features::denied_features(doc, &policy, ctx.is_admin) {
        let public: &[&[&str]] = match feature.as_str() {
            "e911" | "vitelity_e911" | "dash_e911" | "telnyx_e911" => {
                &[&["e911"], &["vitelity_e911"], &["dash_e911"], &["telnyx_e911"]]
            }
            "cnam" | "inbound_cnam" | "outbound_cnam" => {
                &[&["cnam", "inbound_lookup"], &["cnam", "display_name"]]
            }
            "prepend" => &[&["prepend", "enabled"], &["prepend", "name"], &["prepend", "number"]],
            "failover" => &[&["failover", "e164"], &["failover", "sip"]],
            "ringback" => &[&["ringback", "early"], &["ringback", "transfer"]],
            "force_outbound" => &[&["force_outbound"]],
            _ => continue,
        };
        doc.features.remove(&feature);
        for path in public {
            prune(&mut doc.public, path);
        }
    }
}

/// `kz_json:prune_keys/2` for one path: removes it, then any parent left empty.
fn prune(obj: &mut Map<String, Value>, path: &[&str]) {
    match path {
        [] => {}
        [last] => {
            obj.remove(*last);
        }
        [head, rest @ ..] => {
            if let Some(Value::Object(child)) = obj.get_mut(*head) {
                prune(child, rest);
                if child.is_empty() {
                    obj.remove(*head);
                }
            }
        }
    }
}

pub(crate) use crate::doc::non_empty;

/// `kz_term:is_empty/1`: absent, `null`, `false`, `0`, `0.0`, `""`, `"0"`, `"false"`, `"NULL"`,
/// `"undefined"`, `[]`, `{}`.
pub(crate) fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => matches!(s.as_str(), "" | "0" | "false" | "NULL" | "undefined"),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Bool(true)) => false,
    }
}

/// `kz_json:is_true/2` on a value: `true` or `"true"`.
pub(crate) fn is_true(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || matches!(v, Some(Value::String(s)) if s == "true")
}

/// Whether the number is in a state where the external providers act (reserved, in_service,
/// port_in).
pub(crate) fn is_provisioned_state(doc: &NumberDoc) -> bool {
    use crate::doc::NumberState as S;
    matches!(doc.state, S::Reserved | S::InService | S::PortIn)
}

/// The generic "feature := public value" provider step (`knm_prepend`, `knm_failover`, …):
/// `value` is what the feature should become (`None` = removed).
pub(crate) fn set_feature(doc: &mut NumberDoc, feature: &str, value: Option<Value>) {
    match value {
        Some(v) => {
            if doc.features.get(feature) != Some(&v) {
                doc.features.insert(feature.to_owned(), v);
            }
        }
        None => {
            doc.features.remove(feature);
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

//! Which number features an account may use on a number (`knm_providers:list_available_features/1`,
//! `knm_providers:available_features/1`): allowed minus denied, from the number's own overrides,
//! the reseller's `number_manager.features` config, then the system's.
//!
//! These are the lists; [`crate::providers`] runs the feature providers on save (`knm_providers:exec/2` and the feature providers it runs)
//! and uses them to refuse (403) or strip what is denied.

use serde_json::Value;

use crate::auth::Accounts;
use crate::config::Config;
pub use crate::config::FeaturePolicy;
use crate::doc::{NumberDoc, NumberState};

/// Every number feature (`knm_providers`' feature names, `?KAZOO_NUMBER_FEATURES`), sorted.
pub const ALL_FEATURES: [&str; 12] = [
    "carrier_name",
    "cnam",
    "e911",
    "failover",
    "force_outbound",
    "inbound_cnam",
    "mms",
    "outbound_cnam",
    "port",
    "prepend",
    "ringback",
    "sms",
];

/// Features provided by external services (`?EXTERNAL_NUMBER_FEATURES`), denied on unassigned and
/// (by default) on local numbers.
pub const EXTERNAL_FEATURES: [&str; 7] =
    ["cnam", "e911", "inbound_cnam", "mms", "outbound_cnam", "port", "sms"];

/// Features whose availability also asks the provider (`?PROVIDERS_WITH_AVAILABLE`): `sms`,
/// `mms` are only available on an assigned `in_service` number whose carrier's config enables
/// them (`number_manager.<carrier>` → `features.<im>.enabled`, `knm_im:available/2`).
pub const IM_FEATURES: [&str; 2] = ["mms", "sms"];

/// Features only admins may use (`?ADMIN_ONLY_FEATURES`).
pub const ADMIN_ONLY_FEATURES: [&str; 1] = ["carrier_name"];

/// `legacy_provider_to_feature/1`: provider module names as features.
pub fn legacy_provider_to_feature(name: &str) -> &str {
    let name = name.strip_prefix("wnm_").or_else(|| name.strip_prefix("knm_")).unwrap_or(name);
    match name {
        "cnam_notifier" | "telnyx_cnam" | "vitelity_cnam" => "cnam",
        "dash_e911" | "telnyx_e911" | "vitelity_e911" => "e911",
        "port_notifier" => "port",
        other => other,
    }
}

fn is_local(doc: &NumberDoc) -> bool {
    doc.is_local_or_mdn() || doc.features.contains_key("local")
}

/// `knm_providers:list_available_features/1` `list_allowed_features/1`: the number's `pvt_features_allowed` if non-empty, else the
/// reseller's allow list (assigned numbers), else the system's (default: all). Not yet mapped
/// from legacy provider names.
fn allowed_list(doc: &NumberDoc, policy: &FeaturePolicy) -> Vec<String> {
    let all = || ALL_FEATURES.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    if !doc.features_allowed.is_empty() {
        return doc.features_allowed.clone();
    }
    match (&doc.assigned_to, &policy.reseller_allow) {
        (Some(_), Some(list)) => list.clone(),
        _ => policy.system_allow.clone().unwrap_or_else(all),
    }
}

/// `knm_providers:list_available_features/1` `features_denied/1` (`list_denied_features/1`, cleansed): the number's
/// `pvt_features_denied` if non-empty, else (unassigned → all external; else the reseller's deny
/// list, or, without one, all external for a local number unless `local_feature_override`) plus
/// `failover` unless the number is used by `trunkstore`; `carrier_name` for non-admins. Legacy
/// provider names are mapped to features; sorted, unique.
pub fn denied_features(
    doc: &NumberDoc,
    policy: &FeaturePolicy,
    auth_is_admin: bool,
) -> Vec<String> {
    let external = || EXTERNAL_FEATURES.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut denied: Vec<String> = if !doc.features_denied.is_empty() {
        doc.features_denied.clone()
    } else {
        let mut d = match (&doc.assigned_to, &policy.reseller_deny) {
            (None, _) => external(),
            (Some(_), Some(list)) => list.clone(),
            (Some(_), None) if is_local(doc) && !policy.local_feature_override => external(),
            (Some(_), None) => Vec::new(),
        };
        if doc.used_by.as_deref() != Some("trunkstore") {
            d.push("failover".into());
        }
        d
    };
    if !auth_is_admin {
        denied.extend(ADMIN_ONLY_FEATURES.iter().map(|s| (*s).to_owned()));
    }
    let mut out: Vec<String> =
        denied.iter().map(|f| legacy_provider_to_feature(f).to_owned()).collect();
    out.sort();
    out.dedup();
    out
}

/// `knm_providers:list_available_features/1` `list_available_features/1`: Allowed − Denied, sorted (see [`denied_features`] for
/// Denied). `sms` / `mms` are not filtered here: see [`available_features_for`].
pub fn available_features(
    doc: &NumberDoc,
    policy: &FeaturePolicy,
    auth_is_admin: bool,
) -> Vec<String> {
    let denied = denied_features(doc, policy, auth_is_admin);
    let mut out: Vec<String> = allowed_list(doc, policy)
        .iter()
        .map(|f| legacy_provider_to_feature(f))
        .filter(|f| !denied.iter().any(|d| d == f))
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `knm_providers:available_features/1` in full: [`available_features`] with the policy of the
/// number's owner ([`Config::feature_policy`]), then `sms` / `mms` kept only when available
/// ([`IM_FEATURES`]): state `in_service`, assigned, and the carrier's `features.<im>.enabled`
/// true in [`Config::carrier_features`]. (Kazoo also asks the account's service plan
/// (`kz_services_im:is_enabled`); Switchboard has no service plans, that check is not made.)
pub fn available_features_for(
    doc: &NumberDoc,
    config: &Config,
    accounts: &dyn Accounts,
    auth_is_admin: bool,
) -> Vec<String> {
    let policy = config.feature_policy(doc.assigned_to.as_ref(), accounts);
    let mut out = available_features(doc, &policy, auth_is_admin);
    out.retain(|f| !IM_FEATURES.contains(&f.as_str()) || im_available(doc, config, f));
    out
}

/// `knm_im:available/2`.
fn im_available(doc: &NumberDoc, config: &Config, im: &str) -> bool {
    doc.state == NumberState::InService
        && doc.assigned_to.is_some()
        && config
            .carrier_features
            .get(&doc.module_name)
            .and_then(|f| f.get(im))
            .and_then(|i| i.get("enabled"))
            .is_some_and(|e| e == &Value::Bool(true) || e == &Value::from("true"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn load(rel: &str) -> NumberDoc {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/numbers").join(rel);
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        NumberDoc::from_json(&v, 1).unwrap()
    }

    fn docs() -> Vec<NumberDoc> {
        vec![
            load("fixturedb/numbers%2F%2B1555/docs/%2B15551233322.json"),
            load("fixturedb/numbers%2F%2B1412/docs/%2B14122065197.json"),
            load("priv-fixtures/old_vsn_5.1.json"),
            load("fixturedb/numbers%2F%2B1812/docs/%2B18122154006.json"),
            load("fixturedb/numbers%2F%2B1555/docs/%2B15551233324.json"),
        ]
    }

    /// Vectors K14, K15: `force_outbound` is available on INSVC, BW, OLD5_1, VITELITY, MDN for
    /// every requester; `carrier_name` only for admins.
    #[test]
    fn k14_k15_available_features() {
        let policy = FeaturePolicy::default();
        for doc in docs() {
            for admin in [true, false] {
                let avail = available_features(&doc, &policy, admin);
                assert!(avail.iter().any(|f| f == "force_outbound"), "{} {avail:?}", doc.id);
                assert_eq!(
                    avail.iter().any(|f| f == "carrier_name"),
                    admin,
                    "{} {avail:?}",
                    doc.id
                );
            }
        }
    }

    /// `knm_providers:list_available_features/1`: local numbers lose the external features unless overridden; unassigned numbers
    /// always do; `failover` only for trunkstore; the number's own lists win.
    #[test]
    fn s12_2_lists() {
        let insvc = &docs()[0];
        let policy = FeaturePolicy::default();
        let avail = available_features(insvc, &policy, false);
        assert_eq!(avail, ["force_outbound", "prepend", "ringback"]);
        let over = FeaturePolicy { local_feature_override: true, ..FeaturePolicy::default() };
        assert!(available_features(insvc, &over, false).contains(&"e911".to_owned()));
        let mut unassigned = insvc.clone();
        unassigned.assigned_to = None;
        assert!(!available_features(&unassigned, &over, false).contains(&"e911".to_owned()));
        let mut trunk = insvc.clone();
        trunk.used_by = Some("trunkstore".into());
        assert!(available_features(&trunk, &policy, false).contains(&"failover".to_owned()));
        let old5_1 = &docs()[2];
        let avail = available_features(old5_1, &policy, false);
        assert!(avail.contains(&"e911".to_owned()) && !avail.contains(&"failover".to_owned()));
        let reseller = FeaturePolicy {
            reseller_allow: Some(vec!["knm_cnam_notifier".into(), "prepend".into()]),
            reseller_deny: Some(vec!["prepend".into()]),
            ..FeaturePolicy::default()
        };
        assert_eq!(available_features(insvc, &reseller, true), ["cnam"]);
        let from_cfg =
            FeaturePolicy::from_system_config(&json!({"default": {"providers": ["knm_prepend"],
            "local_feature_override": true}}))
            .with_reseller_config(&json!({"features": {"deny": ["cnam"]}}));
        assert_eq!(from_cfg.system_allow, Some(vec!["knm_prepend".to_owned()]));
        assert!(from_cfg.local_feature_override);
        assert_eq!(available_features(insvc, &from_cfg, false), ["prepend"]);
    }
}

//! The `number_manager` system config keys the lifecycle, the carriers and the feature providers
//! read (the `number_manager` configuration keys), plus the resellers' `number_manager` account configs the providers consult (`knm_providers`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::account::AccountId;
use crate::auth::Accounts;
use crate::doc::NumberState;
use crate::error::Error;

/// Kazoo's default `cnam_provider` (`knm_providers.erl`).
pub const DEFAULT_CNAM_PROVIDER: &str = "knm_cnam_notifier";
/// Kazoo's default `e911_provider` (`knm_providers.erl`).
pub const DEFAULT_E911_PROVIDER: &str = "knm_dash_e911";

/// `system_config/number_manager`, the keys this crate uses. No `Default`: build it with
/// [`Config::kazoo_defaults`] or [`Config::from_system_config`] and pass it explicitly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `available_module_name` (Kazoo default `knm_local`): module of new numbers.
    pub available_module_name: String,
    /// `port_in_module_name` (default `knm_local`): module of ported-in numbers.
    pub port_in_module_name: String,
    /// `carrier_modules` (default `[available_module_name]`): modules searched (`knm_carriers:get_available_carriers/1`).
    pub carrier_modules: Vec<String>,
    /// `released_state` (default `available`): state after release (`knm_numbers:release/2`).
    pub released_state: NumberState,
    /// `should_age` (default false): released `available` numbers go to `aging`.
    pub should_age: bool,
    /// `should_permanently_delete` (default false): released numbers are hard-deleted.
    pub should_permanently_delete: bool,
    /// `maximum_search_quantity` (default 500).
    pub maximum_search_quantity: usize,
    /// `number_search_timeout_ms` (default 5000): per-carrier search deadline (`knm_search:find/1`).
    pub number_search_timeout_ms: u64,
    /// `fetch_account_from_ports` (default true): `lookup_account` falls back to port requests.
    pub fetch_account_from_ports: bool,
    /// `default_force_outbound` (default false) (`knm_number:is_force_outbound/3`).
    pub default_force_outbound: bool,
    /// `force_local_outbound` (default true) (`knm_number:is_force_outbound/3`).
    pub force_local_outbound: bool,
    /// `force_port_in_outbound` (default true) (`knm_number:is_force_outbound/3`).
    pub force_port_in_outbound: bool,
    /// `force_port_out_outbound` (default true) (`knm_number:is_force_outbound/3`).
    pub force_port_out_outbound: bool,
    /// `features.allow` (legacy key `providers`) (`knm_providers:list_available_features/1`); `None` = every feature.
    pub features_allow: Option<Vec<String>>,
    /// `features.deny` (`knm_providers:list_available_features/1`): what `get_from_reseller` falls back to when the reseller sets no
    /// deny list; `None` = not set.
    pub features_deny: Option<Vec<String>>,
    /// `local_feature_override` (default false) (`knm_providers:list_available_features/1`).
    pub local_feature_override: bool,
    /// `cnam_provider` (default `knm_cnam_notifier`): the system fallback of the resellers' key
    /// (`knm_providers:exec/2`).
    pub cnam_provider: String,
    /// `e911_provider` (default `knm_dash_e911`) (`knm_providers:exec/2`).
    pub e911_provider: String,
    /// The resellers' `number_manager` account configs (`configs_number_manager` in the reseller's
    /// account database), by reseller: `cnam_provider`, `e911_provider`, `features.allow/deny`.
    /// Empty by default; the store layer fills it ([`Config::with_reseller_config`]).
    pub reseller_configs: BTreeMap<AccountId, Value>,
    /// Each carrier module's `features` section (`number_manager.<carrier>` → `features`), by
    /// module name: `sms` / `mms` are only available on carriers with `features.<im>.enabled`
    /// (`knm_providers:list_available_features/1`). Empty by default.
    pub carrier_features: BTreeMap<String, Value>,
    /// The feature providers' own system config sections by document id
    /// (`number_manager.dash_e911`: `emergency_provisioning_url`, `auth_username`,
    /// `auth_password`, `request_timeout_ms`). Empty by default.
    pub provider_configs: BTreeMap<String, Value>,
}

impl Config {
    /// Kazoo 4.3's defaults (the `number_manager` configuration keys).
    pub fn kazoo_defaults() -> Self {
        Config {
            available_module_name: "knm_local".into(),
            port_in_module_name: "knm_local".into(),
            carrier_modules: vec!["knm_local".into()],
            released_state: NumberState::Available,
            should_age: false,
            should_permanently_delete: false,
            maximum_search_quantity: 500,
            number_search_timeout_ms: 5000,
            fetch_account_from_ports: true,
            default_force_outbound: false,
            force_local_outbound: true,
            force_port_in_outbound: true,
            force_port_out_outbound: true,
            features_allow: None,
            features_deny: None,
            local_feature_override: false,
            cnam_provider: DEFAULT_CNAM_PROVIDER.into(),
            e911_provider: DEFAULT_E911_PROVIDER.into(),
            reseller_configs: BTreeMap::new(),
            carrier_features: BTreeMap::new(),
            provider_configs: BTreeMap::new(),
        }
    }

    /// Reads the `number_manager` system config document: keys of its `default` section (as
    /// `kapps_config` does), falling back to top-level keys, then to [`Config::kazoo_defaults`].
    ///
    /// # Errors
    /// [`Error::Config`] naming the key when a value has the wrong type or an unknown state.
    pub fn from_system_config(doc: &Value) -> Result<Self, Error> {
        let section = doc.get("default");
        let get = |key: &str| section.and_then(|s| s.get(key)).or_else(|| doc.get(key));
        let bad =
            |key: &str, reason: &str| Error::Config { key: key.into(), reason: reason.into() };
        let string = |key: &str, default: &str| -> Result<String, Error> {
            match get(key) {
                None | Some(Value::Null) => Ok(default.to_owned()),
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => Err(bad(key, "expected a non-empty string")),
            }
        };
        let boolean = |key: &str, default: bool| -> Result<bool, Error> {
            match get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(bad(key, "expected a boolean")),
            }
        };
        let integer = |key: &str, default: u64| -> Result<u64, Error> {
            match get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v.as_u64().ok_or_else(|| bad(key, "expected a non-negative integer")),
            }
        };
        let d = Config::kazoo_defaults();
        let available_module_name = string("available_module_name", &d.available_module_name)?;
        let carrier_modules = match get("carrier_modules") {
            None | Some(Value::Null) => vec![available_module_name.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad("carrier_modules", "expected strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("carrier_modules", "expected a list of module names")),
        };
        let strings = |key: &str, v: Option<&Value>| -> Result<Option<Vec<String>>, Error> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str().map(str::to_owned).ok_or_else(|| bad(key, "expected strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(bad(key, "expected a list of feature names")),
            }
        };
        let features = get("features");
        let features_allow = match strings("features.allow", features.and_then(|f| f.get("allow")))?
        {
            Some(list) => Some(list),
            None => strings("providers", get("providers"))?,
        };
        let features_deny = strings("features.deny", features.and_then(|f| f.get("deny")))?;
        let released_state = string("released_state", "available")?
            .parse()
            .map_err(|_| bad("released_state", "not a number state"))?;
        Ok(Config {
            port_in_module_name: string("port_in_module_name", &d.port_in_module_name)?,
            available_module_name,
            carrier_modules,
            released_state,
            should_age: boolean("should_age", d.should_age)?,
            should_permanently_delete: boolean(
                "should_permanently_delete",
                d.should_permanently_delete,
            )?,
            maximum_search_quantity: integer("maximum_search_quantity", 500)? as usize,
            number_search_timeout_ms: integer("number_search_timeout_ms", 5000)?,
            fetch_account_from_ports: boolean(
                "fetch_account_from_ports",
                d.fetch_account_from_ports,
            )?,
            default_force_outbound: boolean("default_force_outbound", d.default_force_outbound)?,
            force_local_outbound: boolean("force_local_outbound", d.force_local_outbound)?,
            force_port_in_outbound: boolean("force_port_in_outbound", d.force_port_in_outbound)?,
            force_port_out_outbound: boolean("force_port_out_outbound", d.force_port_out_outbound)?,
            features_allow,
            features_deny,
            local_feature_override: boolean("local_feature_override", false)?,
            cnam_provider: string("cnam_provider", DEFAULT_CNAM_PROVIDER)?,
            e911_provider: string("e911_provider", DEFAULT_E911_PROVIDER)?,
            reseller_configs: BTreeMap::new(),
            carrier_features: BTreeMap::new(),
            provider_configs: BTreeMap::new(),
        })
    }

    /// Adds a reseller's `configs_number_manager` account-config document (`knm_providers:exec/2`).
    pub fn with_reseller_config(mut self, reseller: AccountId, doc: Value) -> Self {
        self.reseller_configs.insert(reseller, doc);
        self
    }

    /// The reseller config `owner`'s settings come from (`kapps_account_config:get_from_reseller`):
    /// the config of the owner's reseller (`pvt_reseller_id`), unless the owner is its own
    /// reseller (then: the system config).
    fn reseller_config(
        &self,
        owner: Option<&AccountId>,
        accounts: &dyn Accounts,
    ) -> Option<&Value> {
        let owner = owner?;
        let reseller = accounts.get(owner)?.reseller_id.as_ref()?;
        if reseller == owner {
            return None;
        }
        self.reseller_configs.get(reseller)
    }

    /// `knm_providers:exec/2` provider of `cnam` / `e911` features for a number owned by `owner`: the reseller's
    /// `cnam_provider` / `e911_provider`, else the system's, else Kazoo's default.
    pub fn provider_for(
        &self,
        key: ProviderKey,
        owner: Option<&AccountId>,
        accounts: &dyn Accounts,
    ) -> String {
        let (name, system) = match key {
            ProviderKey::Cnam => ("cnam_provider", &self.cnam_provider),
            ProviderKey::E911 => ("e911_provider", &self.e911_provider),
        };
        self.reseller_config(owner, accounts)
            .and_then(|c| c.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or_else(|| system.clone(), str::to_owned)
    }

    /// `knm_providers:list_available_features/1` the feature lists for a number owned by `owner`: the system `features.allow`,
    /// the reseller's `features.allow` / `features.deny` (each falling back to the system's, as
    /// `get_from_reseller` does) and `local_feature_override`.
    pub fn feature_policy(
        &self,
        owner: Option<&AccountId>,
        accounts: &dyn Accounts,
    ) -> FeaturePolicy {
        let reseller = self.reseller_config(owner, accounts).and_then(|c| c.get("features"));
        let list = |key: &str| -> Option<Vec<String>> {
            reseller
                .and_then(|f| f.get(key))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        };
        FeaturePolicy {
            system_allow: self.features_allow.clone(),
            reseller_allow: list("allow").or_else(|| self.features_allow.clone()),
            reseller_deny: list("deny").or_else(|| self.features_deny.clone()),
            local_feature_override: self.local_feature_override,
        }
    }
}

/// The two features whose provider module is configurable (`knm_providers:exec/2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKey {
    /// `cnam`, `inbound_cnam`, `outbound_cnam` → `cnam_provider`.
    Cnam,
    /// `e911` → `e911_provider`.
    E911,
}

/// The configuration the feature lists come from. `None` means "not set" at that level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeaturePolicy {
    /// System `number_manager.features.allow` (legacy key `providers`); `None` = every feature.
    pub system_allow: Option<Vec<String>>,
    /// The number owner's reseller `number_manager.features.allow`.
    pub reseller_allow: Option<Vec<String>>,
    /// The number owner's reseller `number_manager.features.deny`.
    pub reseller_deny: Option<Vec<String>>,
    /// System `number_manager.local_feature_override` (default false): when set, local numbers
    /// are not denied the external features.
    pub local_feature_override: bool,
}

fn policy_list(v: Option<&Value>) -> Option<Vec<String>> {
    v?.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
}

impl FeaturePolicy {
    /// Reads the system part from the `number_manager` system config document (its `default`
    /// section, else top level): `features.allow` (legacy `providers`) and
    /// `local_feature_override`.
    pub fn from_system_config(doc: &Value) -> Self {
        let section = doc.get("default");
        let get = |key: &str| section.and_then(|s| s.get(key)).or_else(|| doc.get(key));
        FeaturePolicy {
            system_allow: policy_list(get("features").and_then(|f| f.get("allow")))
                .or_else(|| policy_list(get("providers"))),
            reseller_allow: None,
            reseller_deny: None,
            local_feature_override: get("local_feature_override")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    /// Adds the reseller's lists from its `configs_number_manager` account-config document
    /// (`features.allow`, `features.deny`).
    pub fn with_reseller_config(mut self, doc: &Value) -> Self {
        let features = doc.get("features");
        self.reseller_allow = policy_list(features.and_then(|f| f.get("allow")));
        self.reseller_deny = policy_list(features.and_then(|f| f.get("deny")));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// the `number_manager` configuration keys: the fixturedb `number_manager` doc only sets `port_in_module_name`.
    #[test]
    fn s17_defaults_and_fixture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/numbers/fixturedb/system_config/docs/number_manager.json"
        );
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(Config::from_system_config(&doc).unwrap(), Config::kazoo_defaults());
        let c = Config::from_system_config(&json!({"default": {"released_state": "released",
            "should_age": true, "available_module_name": "knm_inventory"}}))
        .unwrap();
        assert_eq!(c.released_state, NumberState::Released);
        assert_eq!(c.carrier_modules, vec!["knm_inventory".to_owned()]);
        let e = Config::from_system_config(&json!({"default": {"should_age": "yes"}})).unwrap_err();
        assert!(e.to_string().contains("should_age"), "{e}");
    }

    /// `knm_providers:list_available_features/1` and `knm_providers:exec/2`: the feature keys; `providers` is the legacy `features.allow`; a reseller's
    /// account config wins over the system for the numbers of its sub-accounts, not for itself.
    #[test]
    fn s12_feature_keys_and_reseller_configs() {
        use crate::auth::tests::{acc, fixture_accounts};
        let c = Config::from_system_config(&json!({"default": {"providers": ["knm_prepend"],
            "features": {"deny": ["port"]}, "local_feature_override": true,
            "e911_provider": "knm_telnyx_e911"}}))
        .unwrap();
        assert_eq!(c.features_allow, Some(vec!["knm_prepend".to_owned()]));
        assert_eq!(c.features_deny, Some(vec!["port".to_owned()]));
        assert!(c.local_feature_override);
        assert_eq!(
            (c.cnam_provider.as_str(), c.e911_provider.as_str()),
            (DEFAULT_CNAM_PROVIDER, "knm_telnyx_e911")
        );
        let e = Config::from_system_config(&json!({"features": {"allow": "cnam"}})).unwrap_err();
        assert!(e.to_string().contains("features.allow"), "{e}");

        let accounts = fixture_accounts();
        let c = Config::kazoo_defaults().with_reseller_config(
            acc(1),
            json!({"cnam_provider": "knm_telnyx_cnam", "features": {"deny": ["e911"]}}),
        );
        // RESELLER's reseller is MASTER; MASTER is its own reseller (system config).
        assert_eq!(c.provider_for(ProviderKey::Cnam, Some(&acc(2)), &accounts), "knm_telnyx_cnam");
        assert_eq!(
            c.provider_for(ProviderKey::Cnam, Some(&acc(1)), &accounts),
            DEFAULT_CNAM_PROVIDER
        );
        assert_eq!(
            c.provider_for(ProviderKey::E911, Some(&acc(2)), &accounts),
            DEFAULT_E911_PROVIDER
        );
        assert_eq!(c.provider_for(ProviderKey::Cnam, None, &accounts), DEFAULT_CNAM_PROVIDER);
        assert_eq!(
            c.feature_policy(Some(&acc(2)), &accounts).reseller_deny,
            Some(vec!["e911".to_owned()])
        );
        assert_eq!(c.feature_policy(Some(&acc(1)), &accounts).reseller_deny, None);
    }
}

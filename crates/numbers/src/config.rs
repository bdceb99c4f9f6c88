//! The `number_manager` system config keys the lifecycle and the carriers read (§17).

use serde_json::Value;

use crate::doc::NumberState;
use crate::error::Error;

/// `system_config/number_manager`, the keys this crate uses. No `Default`: build it with
/// [`Config::kazoo_defaults`] or [`Config::from_system_config`] and pass it explicitly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `available_module_name` (Kazoo default `knm_local`): module of new numbers.
    pub available_module_name: String,
    /// `port_in_module_name` (default `knm_local`): module of ported-in numbers.
    pub port_in_module_name: String,
    /// `carrier_modules` (default `[available_module_name]`): modules searched (§11.3).
    pub carrier_modules: Vec<String>,
    /// `released_state` (default `available`): state after release (§6.1).
    pub released_state: NumberState,
    /// `should_age` (default false): released `available` numbers go to `aging`.
    pub should_age: bool,
    /// `should_permanently_delete` (default false): released numbers are hard-deleted.
    pub should_permanently_delete: bool,
    /// `maximum_search_quantity` (default 500).
    pub maximum_search_quantity: usize,
    /// `number_search_timeout_ms` (default 5000): per-carrier search deadline (§11.1).
    pub number_search_timeout_ms: u64,
    /// `fetch_account_from_ports` (default true): `lookup_account` falls back to port requests.
    pub fetch_account_from_ports: bool,
    /// `default_force_outbound` (default false) (§12.6).
    pub default_force_outbound: bool,
    /// `force_local_outbound` (default true) (§12.6).
    pub force_local_outbound: bool,
    /// `force_port_in_outbound` (default true) (§12.6).
    pub force_port_in_outbound: bool,
    /// `force_port_out_outbound` (default true) (§12.6).
    pub force_port_out_outbound: bool,
}

impl Config {
    /// Kazoo 4.3's defaults (§17).
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// §17: the fixturedb `number_manager` doc only sets `port_in_module_name`.
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
}

//! `system_config/stepswitch` (the `system_config/stepswitch` keys) and `system_config/number_manager` (`knm_converters` (classifiers and E.164 conversion)) as one value.
//!
//! [`Config`] has no `Default`: it is built from the two documents (absent keys take Kazoo's
//! defaults, listed on each field) or explicitly with [`Config::kazoo_defaults`].

use e164::Converters;
use serde_json::{Map, Value};

use crate::resource::diag;
use crate::Diagnostic;

/// The document id diagnostics about `system_config/stepswitch` name.
pub const STEPSWITCH_DOC_ID: &str = "stepswitch";

/// Routing settings (`system_config/stepswitch`, schema `system_config.stepswitch.json`) and the
/// number conversions of `system_config/number_manager`.
#[derive(Debug, Clone)]
pub struct Config {
    /// `number_manager`: `normalize`, `classify`, classifier regexes (`stepswitch_resources:create_classifier_resource/4`, `knm_converters` (classifiers and E.164 conversion)).
    pub converters: Converters,
    /// `default_weight`, default 3 (`stepswitch_resources`' weight).
    pub default_weight: i64,
    /// `default_prefix`, default "".
    pub default_prefix: String,
    /// `default_suffix`, default "".
    pub default_suffix: String,
    /// `default_route`, default unset.
    pub default_route: Option<String>,
    /// `default_caller_id_type`, default `external`.
    pub default_caller_id_type: String,
    /// `default_progress_timeout`, default 8.
    pub default_progress_timeout: i64,
    /// `default_codecs`, default [] (used when audio ++ video codecs are empty).
    pub default_codecs: Vec<String>,
    /// `default_audio_codecs`, default [].
    pub default_audio_codecs: Vec<String>,
    /// `default_video_codecs`, default [].
    pub default_video_codecs: Vec<String>,
    /// `default_bypass_media`, default false.
    pub default_bypass_media: bool,
    /// `default_rtcp_mux`, default unset.
    pub default_rtcp_mux: Option<String>,
    /// `default_formatters`, default unset.
    pub default_formatters: Option<Map<String, Value>>,
    /// `format_from_uri`, default false (bridge time).
    pub format_from_uri: bool,
    /// `cid_rules_honor_diversions`, default false (`stepswitch_resources:evaluate_cid_rules/2`).
    pub cid_rules_honor_diversions: bool,
    /// `use_first_dedicated_proxy_only`, default true (`stepswitch_resources`' local-resource fields; applied by whoever builds proxies).
    pub use_first_dedicated_proxy_only: bool,
    /// `min_shortdial_correction`, default 2 (`stepswitch_util:correct_shortdial/2`).
    pub min_shortdial_correction: usize,
    /// `max_shortdial_correction`, default 5 (`stepswitch_util:correct_shortdial/2`).
    pub max_shortdial_correction: usize,
    /// `fixed_length_shortdial_correction`, default unset (`stepswitch_util:correct_shortdial/2`).
    pub fixed_length_shortdial_correction: Option<usize>,
    /// `min_shortdial_destination` (4.3), default unset (`stepswitch_util:correct_shortdial/2`).
    pub min_shortdial_destination: Option<usize>,
    /// `system_config/privacy.method`, default `kazoo` (`kz_privacy:get_method/1`).
    pub default_privacy_method: String,
    /// Every other key of the stepswitch section, kept as written.
    pub extra: Map<String, Value>,
}

impl Config {
    /// Kazoo's defaults for every key (the `system_config/stepswitch` keys, `knm_converters` (classifiers and E.164 conversion)).
    pub fn kazoo_defaults() -> Config {
        Config {
            converters: Converters::kazoo_defaults(),
            default_weight: 3,
            default_prefix: String::new(),
            default_suffix: String::new(),
            default_route: None,
            default_caller_id_type: "external".into(),
            default_progress_timeout: 8,
            default_codecs: Vec::new(),
            default_audio_codecs: Vec::new(),
            default_video_codecs: Vec::new(),
            default_bypass_media: false,
            default_rtcp_mux: None,
            default_formatters: None,
            format_from_uri: false,
            cid_rules_honor_diversions: false,
            use_first_dedicated_proxy_only: true,
            min_shortdial_correction: 2,
            max_shortdial_correction: 5,
            fixed_length_shortdial_correction: None,
            min_shortdial_destination: None,
            default_privacy_method: "kazoo".into(),
            extra: Map::new(),
        }
    }

    /// Builds the config from `system_config/stepswitch` and `system_config/number_manager`
    /// (either may be `Value::Null` when the doc does not exist).
    ///
    /// Values are read from each doc's `default` section (or its top level when there is none).
    /// A value of the wrong type is reported and replaced by the default.
    pub fn from_docs(stepswitch: &Value, number_manager: &Value) -> (Config, Vec<Diagnostic>) {
        let (converters, mut diagnostics) = match number_manager {
            Value::Null => (Converters::kazoo_defaults(), Vec::new()),
            doc => Converters::from_config(doc),
        };
        let mut config = Config { converters, ..Config::kazoo_defaults() };
        let empty = Map::new();
        let section = match stepswitch.get("default") {
            Some(Value::Object(section)) => section,
            _ => stepswitch.as_object().unwrap_or(&empty),
        };
        let mut bad = |key: &str, value: &Value| {
            diagnostics.push(diag(
                STEPSWITCH_DOC_ID,
                key,
                None,
                &format!("unexpected value {value}; using Kazoo's default"),
            ));
        };
        for (key, value) in section {
            if value.is_null() {
                continue;
            }
            let int = || match value {
                Value::Number(number) => number.as_i64(),
                Value::String(text) => text.trim().parse().ok(),
                _ => None,
            };
            let boolean = || match value {
                Value::Bool(flag) => Some(*flag),
                Value::String(text) if text.eq_ignore_ascii_case("true") => Some(true),
                Value::String(text) if text.eq_ignore_ascii_case("false") => Some(false),
                _ => None,
            };
            let string = || value.as_str().map(str::to_owned);
            let strings = || {
                value.as_array().and_then(|items| {
                    items
                        .iter()
                        .map(|it| it.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                })
            };
            let usize_value = || int().and_then(|it| usize::try_from(it).ok());
            let ok = match key.as_str() {
                "default_weight" => int().map(|it| config.default_weight = it).is_some(),
                "default_prefix" => string().map(|it| config.default_prefix = it).is_some(),
                "default_suffix" => string().map(|it| config.default_suffix = it).is_some(),
                "default_route" => string().map(|it| config.default_route = Some(it)).is_some(),
                "default_caller_id_type" => {
                    string().map(|it| config.default_caller_id_type = it).is_some()
                }
                "default_progress_timeout" => {
                    int().map(|it| config.default_progress_timeout = it).is_some()
                }
                "default_codecs" => strings().map(|it| config.default_codecs = it).is_some(),
                "default_audio_codecs" => {
                    strings().map(|it| config.default_audio_codecs = it).is_some()
                }
                "default_video_codecs" => {
                    strings().map(|it| config.default_video_codecs = it).is_some()
                }
                "default_bypass_media" => {
                    boolean().map(|it| config.default_bypass_media = it).is_some()
                }
                "default_rtcp_mux" => match value {
                    Value::String(text) => {
                        config.default_rtcp_mux = Some(text.clone());
                        true
                    }
                    Value::Bool(flag) => {
                        config.default_rtcp_mux = Some(flag.to_string());
                        true
                    }
                    _ => false,
                },
                "default_formatters" => value
                    .as_object()
                    .map(|it| config.default_formatters = Some(it.clone()))
                    .is_some(),
                "format_from_uri" => boolean().map(|it| config.format_from_uri = it).is_some(),
                "cid_rules_honor_diversions" => {
                    boolean().map(|it| config.cid_rules_honor_diversions = it).is_some()
                }
                "use_first_dedicated_proxy_only" => {
                    boolean().map(|it| config.use_first_dedicated_proxy_only = it).is_some()
                }
                "min_shortdial_correction" => {
                    usize_value().map(|it| config.min_shortdial_correction = it).is_some()
                }
                "max_shortdial_correction" => {
                    usize_value().map(|it| config.max_shortdial_correction = it).is_some()
                }
                "fixed_length_shortdial_correction" => usize_value()
                    .map(|it| config.fixed_length_shortdial_correction = Some(it))
                    .is_some(),
                "min_shortdial_destination" => {
                    usize_value().map(|it| config.min_shortdial_destination = Some(it)).is_some()
                }
                _ => {
                    config.extra.insert(key.clone(), value.clone());
                    true
                }
            };
            if !ok {
                bad(key, value);
            }
        }
        // Kazoo can hand carrier selection to another module (`stepswitch_resource_selectors`,
        // whose rules live in `resource_selector_rules`); Switchboard routes with
        // `stepswitch_resources` only, so say so rather than route differently in silence.
        match config.extra.get("route_by") {
            None => {}
            Some(Value::String(module)) if module == "stepswitch_resources" => {}
            Some(other) => diagnostics.push(diag(
                STEPSWITCH_DOC_ID,
                "route_by",
                None,
                &format!(
                    "route_by {other} is not supported: Switchboard routes with \
                     stepswitch_resources (resource selectors are not implemented)"
                ),
            )),
        }
        (config, diagnostics)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rule_51_defaults_and_overrides() {
        let (config, diagnostics) = Config::from_docs(
            &json!({"_id": "stepswitch", "default": {
                "default_weight": "7", "default_codecs": ["PCMU"], "route_by": "stepswitch_resources",
                "default_progress_timeout": "soon"
            }}),
            &Value::Null,
        );
        assert_eq!(config.default_weight, 7);
        assert_eq!(config.default_codecs, vec!["PCMU"]);
        assert_eq!(config.default_progress_timeout, 8);
        assert_eq!(config.extra.get("route_by"), Some(&json!("stepswitch_resources")));
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].field, "default_progress_timeout");
        let defaults = Config::kazoo_defaults();
        assert_eq!(defaults.default_weight, 3);

        let (_, diagnostics) = Config::from_docs(
            &json!({"default": {"route_by": "stepswitch_resource_selectors"}}),
            &Value::Null,
        );
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].field, "route_by");
        assert!(diagnostics[0].message.contains("not supported"), "{:?}", diagnostics[0]);
        assert_eq!(defaults.default_caller_id_type, "external");
        assert_eq!((defaults.min_shortdial_correction, defaults.max_shortdial_correction), (2, 5));
    }
}

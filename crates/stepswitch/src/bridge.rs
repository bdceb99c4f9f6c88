//! Bridge-time steps that stay pure: emergency privacy (`stepswitch_bridge`'s emergency handling) and short-dial correction
//! (`stepswitch_util:correct_shortdial/2`).

use serde_json::{Map, Value};

use crate::config::Config;
use crate::endpoint::EndpointJson;
use crate::resource::is_true;

/// `stepswitch_bridge`'s emergency handling (`avoid_privacy_if_emergency_call/2`): when any endpoint is an emergency endpoint
/// (CCV `Emergency-Resource` true), privacy is forced off on every endpoint
/// (`Privacy-Method: "none"`, hide flags false).
///
/// Works on the endpoints' JSON, as the bridge sends them (`RouteAnswer::endpoints_json`).
/// The endpoint order is kept (the Kazoo bug in `stepswitch_bridge:avoid_privacy_if_emergency_call/2` fixed: Kazoo reverses it, trying the highest weight
/// first on emergency calls). Returns whether anything was changed.
pub fn avoid_privacy_if_emergency(endpoints: &mut [EndpointJson]) -> bool {
    let emergency = |endpoint: &EndpointJson| {
        endpoint
            .get("Custom-Channel-Vars")
            .and_then(|ccvs| ccvs.get("Emergency-Resource"))
            .is_some_and(|it| is_true(Some(it)))
    };
    if !endpoints.iter().any(emergency) {
        return false;
    }
    for endpoint in endpoints.iter_mut() {
        endpoint.insert("Privacy-Method".into(), Value::String("none".into()));
        endpoint.insert("Privacy-Hide-Name".into(), Value::Bool(false));
        endpoint.insert("Privacy-Hide-Number".into(), Value::Bool(false));
    }
    true
}

/// Inputs of [`correct_shortdial`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ShortdialInput<'a> {
    /// The number that found no resources.
    pub number: &'a str,
    /// Request `Outbound-Caller-ID-Number`.
    pub outbound_caller_id_number: Option<&'a str>,
    /// Request `Emergency-Caller-ID-Number` (fallback caller id).
    pub emergency_caller_id_number: Option<&'a str>,
    /// Request `Denied-Call-Restrictions` (classification → `{"action": "deny"}`).
    pub denied_call_restrictions: Option<&'a Map<String, Value>>,
}

/// `stepswitch_util:correct_shortdial/2` (`stepswitch_util:correct_shortdial/2`): complete a short-dialled number with the
/// leading digits of the caller's own number. `None` when no correction applies, when the
/// corrected number's classification is denied, or when it equals the original number.
pub fn correct_shortdial(config: &Config, input: &ShortdialInput<'_>) -> Option<String> {
    if let Some(required) = config.min_shortdial_destination {
        if input.number.len() != required {
            return None;
        }
    }
    let cid = input
        .outbound_caller_id_number
        .filter(|it| !it.is_empty())
        .or(input.emergency_caller_id_number.filter(|it| !it.is_empty()))
        .unwrap_or(input.number);
    let cid = cid.strip_prefix('+').unwrap_or(cid);
    let number = input.number.strip_prefix('+').unwrap_or(input.number);
    let length = shortdial_length(config, cid, number);
    if length == 0 {
        return None;
    }
    let corrected = config.converters.normalize(&prefix_with_caller(cid, number, length));
    if let Some(restrictions) = input.denied_call_restrictions {
        if let Some(class) = config.converters.classify(&corrected) {
            let action = restrictions
                .get(&class.name)
                .and_then(|it| it.get("action"))
                .and_then(Value::as_str);
            if action == Some("deny") {
                return None;
            }
        }
    }
    (corrected != input.number).then_some(corrected)
}

/// How many leading caller digits to add: the fixed length if configured, else the length
/// difference kept only within [min, max] (0 = no correction).
pub(crate) fn shortdial_length(config: &Config, cid: &str, number: &str) -> usize {
    if let Some(fixed) = config.fixed_length_shortdial_correction {
        return fixed;
    }
    let diff = cid.len() as i64 - number.len() as i64;
    constrain(diff, config.min_shortdial_correction, config.max_shortdial_correction)
}

fn constrain(length: i64, min: usize, max: usize) -> usize {
    if length >= min as i64 && length <= max as i64 {
        length as usize
    } else {
        0
    }
}

fn prefix_with_caller(cid: &str, number: &str, length: usize) -> String {
    let head = cid.get(..length.min(cid.len())).unwrap_or(cid);
    format!("{head}{number}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn endpoint(emergency: &str, method: &str, hide: bool) -> EndpointJson {
        // Vector A3 endpoint template.
        let value = json!({
            "Route": "sip:911@testing.zswitch.net", "To-DID": "911",
            "Custom-Channel-Vars": {"Emergency-Resource": emergency,
                "Resource-ID": "eb79c3e4a17518e83307482bf3f2e40b-emergency",
                "DID-Classifier": "emergency"},
            "Weight": 50, "Name": "E911 Testing Outbound Carrier - emergency",
            "Privacy-Method": method, "Privacy-Hide-Name": hide, "Privacy-Hide-Number": hide
        });
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a3_emergency_privacy() {
        // Vector A3 (`stepswitch_bridge`'s emergency handling).
        let check = |emergency: &str, input: (&str, bool), expected: (&str, bool)| {
            let mut eps = vec![endpoint(emergency, input.0, input.1)];
            avoid_privacy_if_emergency(&mut eps);
            assert_eq!(eps[0]["Privacy-Method"], json!(expected.0), "E={emergency} {input:?}");
            assert_eq!(eps[0]["Privacy-Hide-Name"], json!(expected.1));
            assert_eq!(eps[0]["Privacy-Hide-Number"], json!(expected.1));
        };
        check("true", ("kazoo", true), ("none", false));
        check("true", ("none", false), ("none", false));
        check("false", ("kazoo", true), ("kazoo", true));
        check("false", ("none", false), ("none", false));
    }

    #[test]
    fn bug_63_emergency_keeps_weight_order() {
        let mut first = endpoint("true", "kazoo", true);
        first.insert("Weight".into(), json!(1));
        let second = endpoint("true", "kazoo", true);
        let mut eps = vec![first, second];
        assert!(avoid_privacy_if_emergency(&mut eps));
        assert_eq!(eps[0]["Weight"], json!(1));
        assert_eq!(eps[1]["Weight"], json!(50));
    }

    fn config(fixed: Option<usize>, min_dest: Option<usize>) -> Config {
        let mut config = Config::kazoo_defaults();
        config.fixed_length_shortdial_correction = fixed;
        config.min_shortdial_destination = min_dest;
        config
    }

    const CALLER: &str = "12223334444";
    const CALLEE: &str = "3335555";

    fn full(
        config: &Config,
        caller: &str,
        callee: &str,
        restrictions: Option<&Map<String, Value>>,
    ) -> Option<String> {
        correct_shortdial(
            config,
            &ShortdialInput {
                number: callee,
                outbound_caller_id_number: Some(caller),
                emergency_caller_id_number: None,
                denied_call_restrictions: restrictions,
            },
        )
    }

    #[test]
    fn a4_constrain_and_length() {
        // Vector A4: constrain(len, min 2, max 4).
        for (len, expected) in [(4, 4), (3, 3), (2, 2), (10, 0), (5, 0), (1, 0)] {
            assert_eq!(constrain(len, 2, 4), expected, "{len}");
        }
        // Correction length, fixed unset: (callee, caller).
        let unset = config(None, None);
        for (callee, caller, expected) in [
            ("12345", "1234567", 2),
            ("123", "1234567", 4),
            ("123", "123456789", 0),
            ("123", "1234", 0),
        ] {
            assert_eq!(shortdial_length(&unset, caller, callee), expected, "{callee} {caller}");
        }
        assert_eq!(shortdial_length(&config(Some(5), None), "1", "123456"), 5);
    }

    #[test]
    fn a4_prefix_with_caller() {
        let conv = Config::kazoo_defaults().converters;
        assert_eq!(conv.normalize(&prefix_with_caller(CALLER, CALLEE, 0)), "3335555");
        assert_eq!(conv.normalize(&prefix_with_caller(CALLER, CALLEE, 2)), "123335555");
        assert_eq!(conv.normalize(&prefix_with_caller(CALLER, CALLEE, 4)), "+12223335555");
        assert_eq!(
            conv.normalize(&prefix_with_caller(CALLER, CALLEE, CALLER.len() + 1)),
            "122233344443335555"
        );
    }

    #[test]
    fn a4_full_correction() {
        assert_eq!(
            full(&config(None, None), CALLER, CALLEE, None).as_deref(),
            Some("+12223335555")
        );
        assert_eq!(
            full(&config(Some(6), None), CALLER, CALLEE, None).as_deref(),
            Some("1222333335555")
        );
        assert_eq!(
            full(&config(Some(3), None), CALLER, CALLEE, None).as_deref(),
            Some("1223335555")
        );
        assert_eq!(full(&config(None, None), "1222333444412", CALLEE, None), None);
        assert_eq!(full(&config(None, None), CALLER, "3335555123", None), None);
        assert_eq!(full(&config(Some(0), None), CALLER, CALLEE, None), None);
        // min_shortdial_destination (4.3): unset / ≠ len / = len.
        assert_eq!(full(&config(None, Some(8)), CALLER, CALLEE, None), None);
        assert_eq!(full(&config(None, Some(6)), CALLER, CALLEE, None), None);
        assert_eq!(
            full(&config(None, Some(7)), CALLER, CALLEE, None).as_deref(),
            Some("+12223335555")
        );
    }

    #[test]
    fn a4_denied_restrictions() {
        // classify "mocked" to unknown: a config whose only classifier is `unknown`.
        let (converters, _) = e164::Converters::from_config(
            &json!({"classifiers": {"unknown": {"regex": "^(.*)$"}}}),
        );
        let restrictions = json!({"unknown": {"action": "deny"}});
        let restrictions = restrictions.as_object().unwrap();
        for fixed in [None, Some(1)] {
            let mut config = config(fixed, None);
            config.converters = converters.clone();
            assert_eq!(full(&config, CALLER, CALLEE, Some(restrictions)), None, "{fixed:?}");
        }
    }
}

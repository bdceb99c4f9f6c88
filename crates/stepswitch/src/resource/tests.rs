use serde_json::json;

#[test]
fn integers_convert_as_kazoo_converts_them() {
    for (value, expected) in [
        (json!(7), Some(7)),
        (json!(7.5), Some(8)),
        (json!(-7.5), Some(-8)),
        (json!("50"), Some(50)),
        (json!("+50"), Some(50)),
        (json!("-3"), Some(-3)),
        (json!("50.5"), Some(51)),
        (json!("50.4"), Some(50)),
        (json!("1.5e1"), Some(15)),
        (json!("1.5E+1"), Some(15)),
        (json!("99999999999999999999999"), Some(i64::MAX)),
        (json!("5e2"), None),
        (json!("50."), None),
        (json!(".5"), None),
        (json!(" 7"), None),
        (json!("seven"), None),
        (json!(true), None),
        (json!(null), None),
    ] {
        assert_eq!(kazoo_integer(&value), expected, "{value}");
    }
    let (res, _) = ResourceDoc::from_json(&json!({"_id": "r", "weight_cost": "50.5"})).unwrap();
    assert_eq!(res.weight_cost, Some(51));
}

use super::*;

#[test]
fn rule_12_13_lenient_scalars() {
    let (res, diagnostics) = ResourceDoc::from_json(&json!({
        "_id": "r1", "_rev": "1-x", "enabled": "false", "weight_cost": "7",
        "require_flags": "true", "custom": {"kept": 1}, "pvt_type": "resource"
    }))
    .unwrap();
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert!(!res.enabled);
    assert_eq!(res.weight_cost, Some(7));
    assert!(res.require_flags);
    assert_eq!(res.extra.get("custom"), Some(&json!({"kept": 1})));
    assert!(!res.extra.contains_key("_rev"));
}

/// Issue 3: unknown keys are kept at every level (resource, gateway, and the nested
/// objects), and the known keys beside them are still read.
#[test]
fn unknown_keys_kept_at_every_level() {
    let (res, diagnostics) = ResourceDoc::from_json(&json!({
        "_id": "r1", "x_top": 1,
        "media": {"x_media": 2, "bypass_media": true,
                  "audio": {"codecs": ["PCMU"], "x_audio": 3},
                  "video": {"codecs": ["H264"], "x_video": {"deep": [4]}}},
        "caller_id_options": {"type": "external", "x_cid": 5},
        "privacy": {"method": "sip", "x_privacy": 6},
        "classifiers": {"tollfree_us": {"weight_cost": 2, "x_classifier": 7}},
        "gateways": [{
            "server": "gw.example.com", "x_gateway": 8,
            "media": {"rtcp_mux": "true", "x_gw_media": 9},
            "caller_id_options": {"type": "emergency", "x_gw_cid": 10},
            "privacy": {"hide_name": true, "x_gw_privacy": 11},
            "invite_parameters": {"static": ["npid"], "dynamic": ["zone"], "x_invite": 12}
        }]
    }))
    .unwrap();
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let only = |map: &Map<String, Value>, key: &str, value: Value| {
        assert_eq!(map.len(), 1, "{key}: {map:?}");
        assert_eq!(map.get(key), Some(&value), "{map:?}");
    };
    only(&res.extra, "x_top", json!(1));
    only(&res.media.extra, "x_media", json!(2));
    assert_eq!(res.media.bypass_media, Some(true));
    assert_eq!(res.media.audio.codecs.as_deref(), Some(&["PCMU".to_owned()][..]));
    only(&res.media.audio.extra, "x_audio", json!(3));
    assert_eq!(res.media.video.codecs.as_deref(), Some(&["H264".to_owned()][..]));
    only(&res.media.video.extra, "x_video", json!({"deep": [4]}));
    only(&res.caller_id_options.extra, "x_cid", json!(5));
    only(&res.privacy.extra, "x_privacy", json!(6));
    let classifiers = res.classifiers.as_ref().expect("classifiers");
    assert_eq!(classifiers[0].weight_cost, Some(2));
    only(&classifiers[0].extra, "x_classifier", json!(7));
    let gw = &res.gateways[0];
    assert_eq!(gw.server.as_deref(), Some("gw.example.com"));
    only(&gw.extra, "x_gateway", json!(8));
    assert_eq!(gw.media.rtcp_mux.as_deref(), Some("true"));
    only(&gw.media.extra, "x_gw_media", json!(9));
    only(&gw.caller_id_options.extra, "x_gw_cid", json!(10));
    only(&gw.privacy.extra, "x_gw_privacy", json!(11));
    let invite = gw.invite_parameters.as_ref().expect("invite_parameters");
    assert_eq!(invite.static_params, ["npid"]);
    assert_eq!(invite.dynamic, [DynamicParameter::Key("zone".into())]);
    only(&invite.extra, "x_invite", json!(12));

    // Without unknown keys every `extra` is empty (and an empty map holds no allocation).
    let (plain, _) = ResourceDoc::from_json(&json!({
        "_id": "r2", "media": {"audio": {"codecs": []}, "video": {"codecs": []}},
        "gateways": [{"server": "s", "invite_parameters": {"static": []}}]
    }))
    .unwrap();
    assert!(plain.extra.is_empty() && plain.media.extra.is_empty());
    assert!(plain.media.audio.extra.is_empty() && plain.media.video.extra.is_empty());
    assert!(plain.gateways[0].extra.is_empty());
    assert!(plain.gateways[0].invite_parameters.as_ref().is_some_and(|p| p.extra.is_empty()));
    // A wrong type in a nested object is still a diagnostic naming its path.
    let (_, diagnostics) =
        ResourceDoc::from_json(&json!({"_id": "r3", "media": {"audio": {"codecs": "PCMU"}}}))
            .unwrap();
    let fields: Vec<&str> = diagnostics.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["media.audio.codecs"]);
}

#[test]
fn wrong_types_are_diagnostics_not_failures() {
    let (res, diagnostics) = ResourceDoc::from_json(&json!({
        "_id": "r1", "rules": "^1$", "flags": ["a", 3], "gateways": [{"server": "x", "port": "5070"}, 7]
    }))
    .unwrap();
    let fields: Vec<(&str, Option<usize>)> =
        diagnostics.iter().map(|it| (it.field.as_str(), it.index)).collect();
    assert_eq!(fields, vec![("flags", Some(1)), ("rules", None), ("gateways", Some(1))]);
    assert_eq!(res.flags, vec!["a"]);
    assert_eq!(res.gateways.len(), 1);
    assert_eq!(res.gateways[0].port, Some(5070));
}

#[test]
fn not_an_object_or_no_id_is_an_error() {
    assert!(matches!(ResourceDoc::from_json(&json!([])), Err(Error::NotAnObject { .. })));
    assert!(matches!(ResourceDoc::from_json(&json!({"name": "x"})), Err(Error::MissingId)));
}

#[test]
fn rule_7_is_resource() {
    assert!(ResourceDoc::is_resource(&json!({"pvt_type": "resource"})));
    assert!(!ResourceDoc::is_resource(&json!({"pvt_type": "device"})));
    assert!(!ResourceDoc::is_resource(&json!({"pvt_type": "resource", "pvt_deleted": true})));
}

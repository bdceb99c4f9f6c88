//! One document's values as a compiled [`Resource`] and its [`Gateway`]s: resource and config
//! defaults applied, Kazoo's privacy and custom-header merges (`stepswitch_resources`' gateway compilation to `stepswitch_resources`' disabled documents, 24, 34).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::rules::{Builder, Slots};
use crate::config::Config;
use crate::endpoint::Rendered;
use crate::resource::{is_true, GatewayDoc, PrivacyOptions, ResourceDoc};
use crate::table::{Gateway, Proxy, Resource};
use crate::Diagnostic;

pub(super) fn base_resource(
    doc: &ResourceDoc,
    slots: &mut Slots<'_>,
    global: bool,
    proxies: &[Proxy],
    config: &Config,
    builder: &Builder,
    diagnostics: &mut Vec<Diagnostic>,
) -> Resource {
    let rules = builder.rules(&doc.id, "rules", &doc.rules, slots, diagnostics);
    let cid_rules = builder.rules(&doc.id, "cid_rules", &doc.cid_rules, slots, diagnostics);
    let rules_test = builder.rules(&doc.id, "rules_test", &doc.rules_test, slots, diagnostics);
    // `stepswitch_resources`' weight: default, then clamp to 1..=100.
    let weight = doc.weight_cost.unwrap_or(config.default_weight).clamp(1, 100);
    let grace_period = doc.grace_period.unwrap_or(config.default_weight).clamp(0, 100);
    let emergency = doc.emergency || doc.caller_id_options.kind.as_deref() == Some("emergency");
    let mut codecs: Vec<String> =
        doc.media.audio.codecs.clone().unwrap_or_else(|| config.default_audio_codecs.clone());
    codecs.extend(
        doc.media.video.codecs.clone().unwrap_or_else(|| config.default_video_codecs.clone()),
    );
    if codecs.is_empty() {
        codecs = config.default_codecs.clone();
    }
    let defaults = GatewayDefaults {
        emergency,
        format_from_uri: doc.format_from_uri,
        from_uri_realm: doc.from_uri_realm.clone(),
        from_account_realm: doc.from_account_realm,
        fax_option: doc.media.fax_option.unwrap_or(false),
        codecs,
        bypass_media: doc.media.bypass_media.unwrap_or(config.default_bypass_media),
        privacy_method: privacy_method(
            &doc.caller_id_options,
            &doc.privacy,
            doc.privacy_mode.as_deref(),
            &doc.extra,
            &config.default_privacy_method,
        ),
        hide_name: should_hide(
            HideWhat::Name,
            &doc.caller_id_options.outbound_privacy,
            &doc.privacy,
            doc.privacy_mode.as_deref(),
            &doc.extra,
        ),
        hide_number: should_hide(
            HideWhat::Number,
            &doc.caller_id_options.outbound_privacy,
            &doc.privacy,
            doc.privacy_mode.as_deref(),
            &doc.extra,
        ),
    };
    // `stepswitch_resources`' gateway compilation and 13: enabled gateways, document order.
    let mut gateways: Vec<Gateway> = doc
        .gateways
        .iter()
        .enumerate()
        .filter(|(_, gw)| gw.enabled)
        .map(|(doc_index, gw)| gateway(doc_index, gw, &defaults, config))
        .collect();
    // A filtered collect leaves room for more; a table holds tens of thousands of these.
    gateways.shrink_to_fit();
    let mut resource = Resource {
        id: doc.id.clone(),
        doc_id: doc.id.clone(),
        name: doc.name.clone(),
        weight,
        grace_period,
        flags: doc.flags.clone(),
        require_flags: doc.require_flags,
        ignore_flags: doc.ignore_flags,
        rules,
        cid_rules,
        rules_test,
        emergency,
        classifier: None,
        classifier_enable: true,
        gateways,
        gateway_strategy: doc.gateway_strategy,
        global,
        proxies: proxies.to_vec(),
        formatters: doc.formatters.clone().or_else(|| config.default_formatters.clone()),
    };
    for idx in 0..resource.gateways.len() {
        let rendered = Rendered::of(&resource, &resource.gateways[idx]);
        resource.gateways[idx].rendered = Some(Arc::new(rendered));
    }
    resource
}

struct GatewayDefaults {
    emergency: bool,
    format_from_uri: bool,
    from_uri_realm: Option<String>,
    from_account_realm: bool,
    fax_option: bool,
    codecs: Vec<String>,
    bypass_media: bool,
    privacy_method: &'static str,
    hide_name: bool,
    hide_number: bool,
}

fn gateway(
    doc_index: usize,
    gw: &GatewayDoc,
    defaults: &GatewayDefaults,
    config: &Config,
) -> Gateway {
    let endpoint_type = shared(
        gw.endpoint_type.as_deref().filter(|it| !it.is_empty()).unwrap_or("sip"),
        &["sip", "freetdm", "skype", "amqp"],
    );
    let mut endpoint_options = Map::new();
    match &*endpoint_type {
        "freetdm" => {
            insert_some(&mut endpoint_options, "Span", gw.span.clone());
            endpoint_options.insert(
                "Channel-Selection".into(),
                Value::String(gw.channel_selection.clone().unwrap_or_else(|| "ascending".into())),
            );
        }
        "skype" => {
            // Quirk 66 kept: Kazoo reads `interface`, not the schema's `skype_interface`.
            insert_some(&mut endpoint_options, "Skype-Interface", gw.interface.clone());
            endpoint_options.insert("Skype-RR".into(), Value::Bool(gw.skype_rr.unwrap_or(true)));
        }
        "sip" => insert_some(&mut endpoint_options, "Route-ID", gw.route_id.clone()),
        _ => {}
    }
    let method = privacy_method(
        &gw.caller_id_options,
        &gw.privacy,
        gw.privacy_mode.as_deref(),
        &gw.extra,
        defaults.privacy_method,
    );
    let hide_name = defaults.hide_name
        || should_hide(
            HideWhat::Name,
            &gw.caller_id_options.outbound_privacy,
            &gw.privacy,
            gw.privacy_mode.as_deref(),
            &gw.extra,
        );
    // Kazoo bug in `stepswitch_resources`' `privacy_hide_number` fixed: Kazoo computes the gateway's hide-number with the hide-name check.
    let hide_number = defaults.hide_number
        || should_hide(
            HideWhat::Number,
            &gw.caller_id_options.outbound_privacy,
            &gw.privacy,
            gw.privacy_mode.as_deref(),
            &gw.extra,
        );
    Gateway {
        doc_index,
        endpoint_type,
        server: gw.server.clone().filter(|it| !it.is_empty()),
        port: gw.port,
        realm: gw.realm.clone(),
        username: gw.username.clone(),
        password: gw.password.clone(),
        ccvs: shared_map(outbound(gw.custom_channel_vars.as_ref())),
        sip_headers: shared_map(outbound(gw.custom_sip_headers.as_ref())),
        sip_interface: gw.custom_sip_interface.clone().filter(|it| !it.is_empty()),
        invite_format: shared(
            gw.invite_format.as_deref().unwrap_or("route"),
            &["route", "username", "e164", "npan", "1npan", "loopback", "strip_plus"],
        ),
        format_from_uri: gw.format_from_uri.unwrap_or(defaults.format_from_uri),
        from_uri_realm: gw
            .from_uri_realm
            .clone()
            .filter(|it| !it.is_empty())
            .or_else(|| defaults.from_uri_realm.clone()),
        from_account_realm: gw.from_account_realm.unwrap_or(defaults.from_account_realm),
        emergency: defaults.emergency || gw.emergency.unwrap_or(false),
        fax_option: gw.media.fax_option.unwrap_or(defaults.fax_option),
        codecs: gw.codecs.clone().unwrap_or_else(|| defaults.codecs.clone()),
        bypass_media: gw.bypass_media.unwrap_or(defaults.bypass_media),
        force_port: gw.force_port,
        route: gw
            .route
            .clone()
            .filter(|it| !it.is_empty())
            .or_else(|| config.default_route.clone()),
        prefix: gw.prefix.clone().unwrap_or_else(|| config.default_prefix.clone()),
        suffix: gw.suffix.clone().unwrap_or_else(|| config.default_suffix.clone()),
        rtcp_mux: gw.media.rtcp_mux.clone().or_else(|| config.default_rtcp_mux.clone()),
        caller_id_type: shared(
            gw.caller_id_type
                .as_deref()
                .filter(|it| !it.is_empty())
                .unwrap_or(&config.default_caller_id_type),
            &["external", "internal", "emergency"],
        ),
        progress_timeout: gw.progress_timeout.unwrap_or(config.default_progress_timeout),
        endpoint_options: shared_map(endpoint_options),
        privacy_method: Cow::Borrowed(method),
        privacy_hide_name: hide_name,
        privacy_hide_number: hide_number,
        invite_parameters: gw.invite_parameters.clone().map(Box::new),
        rendered: None,
    }
}

fn insert_some(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value.filter(|it| !it.is_null()) {
        map.insert(key.into(), value);
    }
}

/// `map` behind an `Arc`; every empty map (most gateways have no CCVs, headers or endpoint
/// options) is one shared allocation.
fn shared_map(map: Map<String, Value>) -> Arc<Map<String, Value>> {
    static EMPTY: std::sync::LazyLock<Arc<Map<String, Value>>> =
        std::sync::LazyLock::new(|| Arc::new(Map::new()));
    if map.is_empty() {
        Arc::clone(&EMPTY)
    } else {
        Arc::new(map)
    }
}

/// `kz_custom_sip_headers:outbound/1`: the `out` object merged over the legacy top-level keys
/// (everything but `in`/`out`); `out` wins.
pub(crate) fn outbound(headers: Option<&Map<String, Value>>) -> Map<String, Value> {
    let Some(headers) = headers else { return Map::new() };
    let mut out: Map<String, Value> = headers
        .iter()
        .filter(|(key, _)| key.as_str() != "in" && key.as_str() != "out")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if let Some(Value::Object(over)) = headers.get("out") {
        for (key, value) in over {
            out.insert(key.clone(), value.clone());
        }
    }
    out
}

/// `kz_privacy:get_method/2`: first defined of `caller_id_options.privacy_method`,
/// `privacy.method`, `Privacy-Method`, `privacy_mode`, else the default; `sip` or `kazoo`.
fn privacy_method(
    cid: &crate::resource::CallerIdOptions,
    privacy: &PrivacyOptions,
    mode: Option<&str>,
    extra: &Map<String, Value>,
    default: &str,
) -> &'static str {
    let first = cid
        .privacy_method
        .as_deref()
        .or(privacy.method.as_deref())
        .or_else(|| extra.get("Privacy-Method").and_then(Value::as_str))
        .or(mode)
        .unwrap_or(default);
    if first == "sip" {
        "sip"
    } else {
        "kazoo"
    }
}

/// `text` as a shared static string when it is one of `known` (the usual values: no
/// allocation per gateway), else an owned copy.
fn shared(text: &str, known: &[&'static str]) -> Cow<'static, str> {
    match known.iter().find(|it| **it == text) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(text.to_owned()),
    }
}

#[derive(Clone, Copy)]
enum HideWhat {
    Name,
    Number,
}

/// `kz_privacy:should_hide_name/1` / `should_hide_number/1` on a resource or gateway object.
fn should_hide(
    what: HideWhat,
    outbound_privacy: &Option<Value>,
    privacy: &PrivacyOptions,
    mode: Option<&str>,
    extra: &Map<String, Value>,
) -> bool {
    let (own, key, ccv_key, word) = match what {
        HideWhat::Name => {
            (&privacy.hide_name, "Privacy-Hide-Name", "Caller-Privacy-Hide-Name", "hide_name")
        }
        HideWhat::Number => (
            &privacy.hide_number,
            "Privacy-Hide-Number",
            "Caller-Privacy-Hide-Number",
            "hide_number",
        ),
    };
    let short = match what {
        HideWhat::Name => "name",
        HideWhat::Number => "number",
    };
    let ccvs = extra.get("Custom-Channel-Vars");
    let first = outbound_privacy
        .as_ref()
        .or(own.as_ref())
        .or_else(|| extra.get(key))
        .or_else(|| ccvs.and_then(|it| it.get(key)))
        .or_else(|| extra.get(ccv_key))
        .or_else(|| ccvs.and_then(|it| it.get(ccv_key)));
    match first {
        Some(Value::String(text)) => {
            matches!(text.as_str(), "yes" | "full" | "kazoo")
                || text == word
                || text == short
                || text.eq_ignore_ascii_case("true")
        }
        Some(other) => is_true(Some(other)),
        None => match mode {
            Some(text) => {
                matches!(text, "yes" | "full" | "kazoo")
                    || text == word
                    || text == short
                    || text.eq_ignore_ascii_case("true")
            }
            None => false,
        },
    }
}

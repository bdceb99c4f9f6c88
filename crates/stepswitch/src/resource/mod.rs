//! Typed resource documents (`pvt_type: "resource"`) of db `offnet` and of account dbs.
//!
//! Every field of Kazoo's resource document fields has a typed home here; keys this model does not know
//! are kept in `extra` so nothing an operator wrote is lost. Parsing is lenient the way
//! `kz_json` is (`"false"` is false, `"5"` is 5) and a field of the wrong JSON type is reported
//! as a [`Diagnostic`] and treated as absent, never failing the whole document.

use serde_json::{Map, Value};

use crate::work::{guarded, map_ordered};
use crate::{Diagnostic, Error};

mod read;

pub use read::kazoo_integer;
pub(crate) use read::{diag, is_true};
use read::{
    Prefix, Reader, CALLER_ID_KEYS, CLASSIFIER_KEYS, CODEC_KEYS, DOC_KEYS, GATEWAY_KEYS,
    INVITE_KEYS, MEDIA_KEYS, PRIVACY_KEYS,
};

/// A resource document as stored (Kazoo `kzd_resources`), before compilation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceDoc {
    /// `_id`.
    pub id: String,
    /// `name`.
    pub name: Option<String>,
    /// `enabled`, default true (`stepswitch_resources`' disabled documents).
    pub enabled: bool,
    /// `weight_cost`, numeric strings accepted; default and clamp applied at compile (`stepswitch_resources`' weight).
    pub weight_cost: Option<i64>,
    /// `grace_period` (reported only, never used for routing; the Kazoo bug in the resource's `grace_period`).
    pub grace_period: Option<i64>,
    /// `flags` the resource offers (`stepswitch_resources:filter_resources/2`).
    pub flags: Vec<String>,
    /// `require_flags`, default false.
    pub require_flags: bool,
    /// `ignore_flags`, default false.
    pub ignore_flags: bool,
    /// `rules`: dialled-number regexes in document order.
    pub rules: Vec<String>,
    /// `cid_rules`: caller-id regexes in document order.
    pub cid_rules: Vec<String>,
    /// `rules_test`: emergency test-number regexes in document order.
    pub rules_test: Vec<String>,
    /// `emergency`, default false.
    pub emergency: bool,
    /// `caller_id_options`.
    pub caller_id_options: CallerIdOptions,
    /// `classifiers`, in key order; `Some(vec![])` for `{}` (`stepswitch_resources:create_classifier_resource/4`).
    pub classifiers: Option<Vec<ResourceClassifier>>,
    /// `format_from_uri`, default false.
    pub format_from_uri: bool,
    /// `from_uri_realm`.
    pub from_uri_realm: Option<String>,
    /// `from_account_realm`, default false.
    pub from_account_realm: bool,
    /// `media`.
    pub media: Media,
    /// `formatters` (applied at bridge time, `kz_formatters`).
    pub formatters: Option<Map<String, Value>>,
    /// `gateway_strategy`, default sequential (`stepswitch_resources`' `gateway_strategy`).
    pub gateway_strategy: GatewayStrategy,
    /// `privacy` object (`method`, `hide_name`, `hide_number`).
    pub privacy: PrivacyOptions,
    /// `privacy_mode` (deprecated, still read by `kz_privacy`).
    pub privacy_mode: Option<String>,
    /// `flat_rate_whitelist` (ignored by routing).
    pub flat_rate_whitelist: Option<String>,
    /// `flat_rate_blacklist` (ignored by routing).
    pub flat_rate_blacklist: Option<String>,
    /// `template_name` (ignored by routing).
    pub template_name: Option<String>,
    /// `gateways`, in document order.
    pub gateways: Vec<GatewayDoc>,
    /// `pvt_type` (`"resource"` for resource docs).
    pub pvt_type: Option<String>,
    /// Every other key (including `pvt_*`), kept as written. `_rev` is not kept: routing never
    /// depends on it.
    pub extra: Map<String, Value>,
}

/// `caller_id_options`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallerIdOptions {
    /// `type`; `"emergency"` makes the resource emergency.
    pub kind: Option<String>,
    /// `privacy_method`.
    pub privacy_method: Option<String>,
    /// `outbound_privacy`.
    pub outbound_privacy: Option<Value>,
    /// Other keys.
    pub extra: Map<String, Value>,
}

/// The `privacy` object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrivacyOptions {
    /// `method` (`sip` or `kazoo`).
    pub method: Option<String>,
    /// `hide_name`.
    pub hide_name: Option<Value>,
    /// `hide_number`.
    pub hide_number: Option<Value>,
    /// Other keys.
    pub extra: Map<String, Value>,
}

/// `media` of a resource or a gateway.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Media {
    /// `media.fax_option`.
    pub fax_option: Option<bool>,
    /// `media.audio` (resource only).
    pub audio: CodecOptions,
    /// `media.video` (resource only).
    pub video: CodecOptions,
    /// `media.bypass_media` (resource only).
    pub bypass_media: Option<bool>,
    /// `media.rtcp_mux` (gateway only).
    pub rtcp_mux: Option<String>,
    /// Other keys of `media`.
    pub extra: Map<String, Value>,
}

/// `media.audio` or `media.video` of a resource.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CodecOptions {
    /// `codecs`; `None` when absent (the `default_*_codecs` of the config apply).
    pub codecs: Option<Vec<String>>,
    /// Other keys of the object.
    pub extra: Map<String, Value>,
}

/// Gateway order inside a resource (`stepswitch_resources`' `gateway_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GatewayStrategy {
    /// Document order.
    #[default]
    Sequential,
    /// Shuffled on every request.
    Random,
}

/// One entry of a resource's `classifiers` object (`stepswitch_resources:create_classifier_resource/4`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceClassifier {
    /// The key: a system classifier name.
    pub name: String,
    /// `enabled`, default true.
    pub enabled: Option<bool>,
    /// `regex`, default the system classifier's.
    pub regex: Option<String>,
    /// `weight_cost`, default the doc's.
    pub weight_cost: Option<i64>,
    /// `emergency`.
    pub emergency: Option<bool>,
    /// `prefix` overriding every gateway's.
    pub prefix: Option<String>,
    /// `suffix` overriding every gateway's.
    pub suffix: Option<String>,
    /// Other keys.
    pub extra: Map<String, Value>,
}

/// One `gateways[]` entry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GatewayDoc {
    /// `enabled`, default true.
    pub enabled: bool,
    /// `server`.
    pub server: Option<String>,
    /// `port`.
    pub port: Option<i64>,
    /// `route`: verbatim dial string (`stepswitch_resources:gateway_dialstring/2`).
    pub route: Option<String>,
    /// `prefix`.
    pub prefix: Option<String>,
    /// `suffix`.
    pub suffix: Option<String>,
    /// `realm`.
    pub realm: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `password`.
    pub password: Option<String>,
    /// `invite_format`, default `route`.
    pub invite_format: Option<String>,
    /// `caller_id_type`.
    pub caller_id_type: Option<String>,
    /// `codecs`.
    pub codecs: Option<Vec<String>>,
    /// `bypass_media`.
    pub bypass_media: Option<bool>,
    /// `media` (`fax_option`, `rtcp_mux`).
    pub media: Media,
    /// `progress_timeout`.
    pub progress_timeout: Option<i64>,
    /// `endpoint_type`, default `sip`.
    pub endpoint_type: Option<String>,
    /// `channel_selection` (FreeTDM only).
    pub channel_selection: Option<String>,
    /// `span` (FreeTDM only).
    pub span: Option<Value>,
    /// `interface` (Skype; the schema's `skype_interface` is not what Kazoo reads, quirk 66).
    pub interface: Option<Value>,
    /// `skype_interface` (schema name, kept but not used, quirk 66).
    pub skype_interface: Option<Value>,
    /// `skype_rr`.
    pub skype_rr: Option<bool>,
    /// `route_id` (SIP endpoint option).
    pub route_id: Option<Value>,
    /// `custom_sip_headers`.
    pub custom_sip_headers: Option<Map<String, Value>>,
    /// `custom_channel_vars`.
    pub custom_channel_vars: Option<Map<String, Value>>,
    /// `custom_sip_interface`.
    pub custom_sip_interface: Option<String>,
    /// `format_from_uri`.
    pub format_from_uri: Option<bool>,
    /// `from_uri_realm`.
    pub from_uri_realm: Option<String>,
    /// `from_account_realm`.
    pub from_account_realm: Option<bool>,
    /// `emergency`.
    pub emergency: Option<bool>,
    /// `force_port`, default false (`stepswitch_resources:reverse_lookup/1`).
    pub force_port: bool,
    /// `invite_parameters` (`stepswitch_resources:sip_invite_parameters/2`).
    pub invite_parameters: Option<InviteParameters>,
    /// `caller_id_options` (privacy keys).
    pub caller_id_options: CallerIdOptions,
    /// `privacy`.
    pub privacy: PrivacyOptions,
    /// `privacy_mode`.
    pub privacy_mode: Option<String>,
    /// Other keys (e.g. `Privacy-Method`-style keys `kz_privacy` also reads).
    pub extra: Map<String, Value>,
}

/// `invite_parameters` of a gateway (`stepswitch_resources:sip_invite_parameters/2`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InviteParameters {
    /// `static`, verbatim.
    pub static_params: Vec<String>,
    /// `dynamic`, in document order.
    pub dynamic: Vec<DynamicParameter>,
    /// Other keys of `invite_parameters`.
    pub extra: Map<String, Value>,
}

/// One `invite_parameters.dynamic` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DynamicParameter {
    /// A bare key: the value alone.
    Key(String),
    /// `{key, tag, separator|seperator}`: `tag<sep>value`.
    Tagged {
        /// `key`.
        key: String,
        /// `tag`.
        tag: String,
        /// `separator` (or the misspelt `seperator`), default `=`.
        separator: String,
    },
}

impl ResourceDoc {
    /// Whether a raw document is a live resource doc: `pvt_type == "resource"` and neither
    /// `pvt_deleted` nor `_deleted` (what the `resources/listing_by_id` view emits, the `resources/listing_by_id` view).
    pub fn is_resource(doc: &Value) -> bool {
        doc.get("pvt_type").and_then(Value::as_str) == Some("resource")
            && !is_true(doc.get("pvt_deleted"))
            && !is_true(doc.get("_deleted"))
    }

    /// Parses a resource document.
    ///
    /// # Errors
    ///
    /// [`Error::NotAnObject`] or [`Error::MissingId`]; any other problem is a diagnostic
    /// and the field is treated as absent.
    pub fn from_json(doc: &Value) -> Result<(ResourceDoc, Vec<Diagnostic>), Error> {
        let Value::Object(object) = doc else {
            return Err(Error::NotAnObject { what: "resource document".into() });
        };
        let id: &str = match object.get("_id") {
            Some(Value::String(id)) if !id.is_empty() => id,
            _ => return Err(Error::MissingId),
        };
        let mut diagnostics = Vec::new();
        let mut rd = Reader::new(object, DOC_KEYS, id, Prefix::Text(""), &mut diagnostics);
        let mut res = ResourceDoc {
            id: id.to_owned(),
            name: rd.string("name"),
            enabled: rd.bool("enabled").unwrap_or(true),
            weight_cost: rd.int("weight_cost"),
            grace_period: rd.int("grace_period"),
            flags: rd.strings("flags").unwrap_or_default(),
            require_flags: rd.bool("require_flags").unwrap_or(false),
            ignore_flags: rd.bool("ignore_flags").unwrap_or(false),
            rules: rd.strings("rules").unwrap_or_default(),
            cid_rules: rd.strings("cid_rules").unwrap_or_default(),
            rules_test: rd.strings("rules_test").unwrap_or_default(),
            emergency: rd.bool("emergency").unwrap_or(false),
            format_from_uri: rd.bool("format_from_uri").unwrap_or(false),
            from_uri_realm: rd.string("from_uri_realm"),
            from_account_realm: rd.bool("from_account_realm").unwrap_or(false),
            formatters: rd.object("formatters").cloned(),
            privacy_mode: rd.string("privacy_mode"),
            flat_rate_whitelist: rd.string("flat_rate_whitelist"),
            flat_rate_blacklist: rd.string("flat_rate_blacklist"),
            template_name: rd.string("template_name"),
            pvt_type: rd.string("pvt_type"),
            ..ResourceDoc::default()
        };
        res.gateway_strategy = match rd.string("gateway_strategy").as_deref() {
            None | Some("sequential") => GatewayStrategy::Sequential,
            Some("random") => GatewayStrategy::Random,
            Some(other) => {
                rd.report(
                    "gateway_strategy",
                    None,
                    &format!("unknown strategy {other:?}; using sequential"),
                );
                GatewayStrategy::Sequential
            }
        };
        if let Some(options) = rd.object("caller_id_options") {
            res.caller_id_options =
                caller_id_options(options, id, "caller_id_options.", rd.diagnostics);
        }
        if let Some(privacy) = rd.object("privacy") {
            res.privacy = privacy_options(privacy, id, "privacy.", rd.diagnostics);
        }
        if let Some(media) = rd.object("media") {
            res.media = media_options(media, id, "media.", rd.diagnostics);
        }
        if let Some(classifiers) = rd.object("classifiers") {
            let mut out = Vec::with_capacity(classifiers.len());
            for (index, (name, value)) in classifiers.iter().enumerate() {
                let prefix = format!("classifiers.{name}.");
                let Value::Object(value) = value else {
                    rd.diagnostics.push(diag(
                        id,
                        &format!("classifiers.{name}"),
                        Some(index),
                        "not an object; classifier skipped",
                    ));
                    continue;
                };
                let mut cr =
                    Reader::new(value, CLASSIFIER_KEYS, id, Prefix::Text(&prefix), rd.diagnostics);
                let classifier = ResourceClassifier {
                    name: name.clone(),
                    enabled: cr.bool("enabled"),
                    regex: cr.string("regex"),
                    weight_cost: cr.int("weight_cost"),
                    emergency: cr.bool("emergency"),
                    prefix: cr.string("prefix"),
                    suffix: cr.string("suffix"),
                    extra: Map::new(),
                };
                let extra = cr.finish();
                out.push(ResourceClassifier { extra, ..classifier });
            }
            res.classifiers = Some(out);
        }
        if let Some(gateways) = rd.array("gateways") {
            res.gateways.reserve_exact(gateways.len());
            for (index, gateway) in gateways.iter().enumerate() {
                match gateway {
                    Value::Object(gateway) => {
                        res.gateways.push(gateway_doc(gateway, id, index, rd.diagnostics))
                    }
                    _ => rd.diagnostics.push(diag(
                        id,
                        "gateways",
                        Some(index),
                        "not an object; gateway skipped",
                    )),
                }
            }
        }
        res.extra = rd.finish();
        Ok((res, diagnostics))
    }
}

fn gateway_doc(
    object: &Map<String, Value>,
    id: &str,
    index: usize,
    diagnostics: &mut Vec<Diagnostic>,
) -> GatewayDoc {
    // The field prefix (`gateways[<index>].`) is only formatted when a diagnostic needs it.
    let mut rd = Reader::new(object, GATEWAY_KEYS, id, Prefix::Gateway(index), diagnostics);
    let mut gw = GatewayDoc {
        enabled: rd.bool("enabled").unwrap_or(true),
        server: rd.string("server"),
        port: rd.int("port"),
        route: rd.string("route"),
        prefix: rd.string("prefix"),
        suffix: rd.string("suffix"),
        realm: rd.string("realm"),
        username: rd.string("username"),
        password: rd.string("password"),
        invite_format: rd.string("invite_format"),
        caller_id_type: rd.string("caller_id_type"),
        codecs: rd.strings("codecs"),
        bypass_media: rd.bool("bypass_media"),
        progress_timeout: rd.int("progress_timeout"),
        endpoint_type: rd.string("endpoint_type"),
        channel_selection: rd.string("channel_selection"),
        span: rd.value("span"),
        interface: rd.value("interface"),
        skype_interface: rd.value("skype_interface"),
        skype_rr: rd.bool("skype_rr"),
        route_id: rd.value("route_id"),
        custom_sip_headers: rd.object("custom_sip_headers").cloned(),
        custom_channel_vars: rd.object("custom_channel_vars").cloned(),
        custom_sip_interface: rd.string("custom_sip_interface"),
        format_from_uri: rd.bool("format_from_uri"),
        from_uri_realm: rd.string("from_uri_realm"),
        from_account_realm: rd.bool("from_account_realm"),
        emergency: rd.bool("emergency"),
        force_port: rd.bool("force_port").unwrap_or(false),
        privacy_mode: rd.string("privacy_mode"),
        ..GatewayDoc::default()
    };
    let prefix = || format!("gateways[{index}].");
    if let Some(media) = rd.object("media") {
        gw.media = media_options(media, id, &format!("{}media.", prefix()), rd.diagnostics);
    }
    if let Some(options) = rd.object("caller_id_options") {
        gw.caller_id_options = caller_id_options(
            options,
            id,
            &format!("{}caller_id_options.", prefix()),
            rd.diagnostics,
        );
    }
    if let Some(privacy) = rd.object("privacy") {
        gw.privacy = privacy_options(privacy, id, &format!("{}privacy.", prefix()), rd.diagnostics);
    }
    if let Some(params) = rd.object("invite_parameters") {
        let field = format!("{}invite_parameters.", prefix());
        let mut pr = Reader::new(params, INVITE_KEYS, id, Prefix::Text(&field), rd.diagnostics);
        let static_params = pr.strings("static").unwrap_or_default();
        let mut dynamic = Vec::new();
        if let Some(items) = pr.array("dynamic") {
            for (item_idx, item) in items.iter().enumerate() {
                match item {
                    Value::String(key) => dynamic.push(DynamicParameter::Key(key.clone())),
                    Value::Object(item) => {
                        let key = item.get("key").and_then(Value::as_str);
                        let tag = item.get("tag").and_then(Value::as_str);
                        let separator = item
                            .get("separator")
                            .or_else(|| item.get("seperator"))
                            .and_then(Value::as_str)
                            .unwrap_or("=");
                        match (key, tag) {
                            (Some(key), Some(tag)) => dynamic.push(DynamicParameter::Tagged {
                                key: key.to_owned(),
                                tag: tag.to_owned(),
                                separator: separator.to_owned(),
                            }),
                            _ => pr.diagnostics.push(diag(
                                id,
                                &format!("{field}dynamic"),
                                Some(item_idx),
                                "object without string key and tag; parameter skipped",
                            )),
                        }
                    }
                    _ => pr.diagnostics.push(diag(
                        id,
                        &format!("{field}dynamic"),
                        Some(item_idx),
                        "neither a string nor an object; parameter skipped",
                    )),
                }
            }
        }
        let extra = pr.finish();
        gw.invite_parameters = Some(InviteParameters { static_params, dynamic, extra });
    }
    gw.extra = rd.finish();
    gw
}

fn caller_id_options(
    object: &Map<String, Value>,
    id: &str,
    prefix: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> CallerIdOptions {
    let mut rd = Reader::new(object, CALLER_ID_KEYS, id, Prefix::Text(prefix), diagnostics);
    let kind = rd.string("type");
    let privacy_method = rd.string("privacy_method");
    let outbound_privacy = rd.value("outbound_privacy");
    CallerIdOptions { kind, privacy_method, outbound_privacy, extra: rd.finish() }
}

fn privacy_options(
    object: &Map<String, Value>,
    id: &str,
    prefix: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> PrivacyOptions {
    let mut rd = Reader::new(object, PRIVACY_KEYS, id, Prefix::Text(prefix), diagnostics);
    let method = rd.string("method");
    let hide_name = rd.value("hide_name");
    let hide_number = rd.value("hide_number");
    PrivacyOptions { method, hide_name, hide_number, extra: rd.finish() }
}

fn media_options(
    object: &Map<String, Value>,
    id: &str,
    prefix: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Media {
    let mut rd = Reader::new(object, MEDIA_KEYS, id, Prefix::Text(prefix), diagnostics);
    let fax_option = rd.bool("fax_option");
    let bypass_media = rd.bool("bypass_media");
    let rtcp_mux = match rd.value("rtcp_mux") {
        None => None,
        Some(Value::String(text)) => Some(text),
        Some(other) => Some(other.to_string()),
    };
    let audio = rd.object("audio").map_or_else(CodecOptions::default, |audio| {
        codec_options(audio, id, &format!("{prefix}audio."), rd.diagnostics)
    });
    let video = rd.object("video").map_or_else(CodecOptions::default, |video| {
        codec_options(video, id, &format!("{prefix}video."), rd.diagnostics)
    });
    Media { fax_option, audio, video, bypass_media, rtcp_mux, extra: rd.finish() }
}

fn codec_options(
    object: &Map<String, Value>,
    id: &str,
    prefix: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> CodecOptions {
    let mut rd = Reader::new(object, CODEC_KEYS, id, Prefix::Text(prefix), diagnostics);
    let codecs = rd.strings("codecs");
    CodecOptions { codecs, extra: rd.finish() }
}

/// A resource document parsed once: what a reactor keeps per `_id`, so that a rebuild after a
/// change re-parses only the changed document. Holds the typed document (`None` when the
/// document could not be used at all) and the diagnostics parsing raised.
#[derive(Debug, Clone)]
pub struct ParsedResource {
    /// The document's `_id` (empty when it has none).
    pub(crate) id: String,
    pub(crate) doc: Option<ResourceDoc>,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl ParsedResource {
    /// Parses one resource document ([`ResourceDoc::from_json`]); a document that cannot be
    /// used becomes a diagnostic (`…; document skipped`), as [`compile`] reports it.
    pub fn parse(doc: &Value) -> ParsedResource {
        let id = doc.get("_id").and_then(Value::as_str).unwrap_or("").to_owned();
        match guarded(|| ResourceDoc::from_json(doc)).and_then(|it| it.map_err(|e| e.to_string())) {
            Ok((doc, diagnostics)) => ParsedResource { id, doc: Some(doc), diagnostics },
            Err(err) => {
                let skipped = diag(&id, "", None, &format!("{err}; document skipped"));
                ParsedResource { id, doc: None, diagnostics: vec![skipped] }
            }
        }
    }

    /// Parses many documents, on rayon's pool when there are many, in input order.
    pub fn parse_all(docs: &[Value]) -> Vec<ParsedResource> {
        map_ordered(docs, ParsedResource::parse)
    }
}

#[cfg(test)]
mod tests;

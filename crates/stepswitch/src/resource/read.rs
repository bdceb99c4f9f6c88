//! How a resource document's JSON is read: leniently, the way `kz_json` reads it, one object at a
//! time by a [`Reader`] that knows the object's keys up front, each field of the wrong type
//! reported as a [`Diagnostic`] and treated as absent.

use serde_json::{Map, Value};

use crate::Diagnostic;

/// `kz_term:is_true/1` on an optional JSON value.
pub(crate) fn is_true(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(text)) => text.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

pub(crate) fn diag(id: &str, field: &str, index: Option<usize>, message: &str) -> Diagnostic {
    Diagnostic {
        doc_id: id.to_owned(),
        field: field.to_owned(),
        index,
        message: message.to_owned(),
    }
}

/// Top-level keys of a resource document, in the order `from_json` reads them.
pub(super) const DOC_KEYS: &[&str] = &[
    "_id",
    "_rev",
    "name",
    "enabled",
    "weight_cost",
    "grace_period",
    "flags",
    "require_flags",
    "ignore_flags",
    "rules",
    "cid_rules",
    "rules_test",
    "emergency",
    "format_from_uri",
    "from_uri_realm",
    "from_account_realm",
    "formatters",
    "privacy_mode",
    "flat_rate_whitelist",
    "flat_rate_blacklist",
    "template_name",
    "pvt_type",
    "gateway_strategy",
    "caller_id_options",
    "privacy",
    "media",
    "classifiers",
    "gateways",
];
/// Keys of a `classifiers.<name>` object, in reading order.
pub(super) const CLASSIFIER_KEYS: &[&str] =
    &["enabled", "regex", "weight_cost", "emergency", "prefix", "suffix"];
/// Keys of a `gateways[]` entry, in reading order.
pub(super) const GATEWAY_KEYS: &[&str] = &[
    "enabled",
    "server",
    "port",
    "route",
    "prefix",
    "suffix",
    "realm",
    "username",
    "password",
    "invite_format",
    "caller_id_type",
    "codecs",
    "bypass_media",
    "progress_timeout",
    "endpoint_type",
    "channel_selection",
    "span",
    "interface",
    "skype_interface",
    "skype_rr",
    "route_id",
    "custom_sip_headers",
    "custom_channel_vars",
    "custom_sip_interface",
    "format_from_uri",
    "from_uri_realm",
    "from_account_realm",
    "emergency",
    "force_port",
    "privacy_mode",
    "media",
    "caller_id_options",
    "privacy",
    "invite_parameters",
];
/// Keys of `invite_parameters`.
pub(super) const INVITE_KEYS: &[&str] = &["static", "dynamic"];
/// Keys of `caller_id_options`.
pub(super) const CALLER_ID_KEYS: &[&str] = &["type", "privacy_method", "outbound_privacy"];
/// Keys of `privacy`.
pub(super) const PRIVACY_KEYS: &[&str] = &["method", "hide_name", "hide_number"];
/// Keys of `media`.
pub(super) const MEDIA_KEYS: &[&str] =
    &["fax_option", "bypass_media", "rtcp_mux", "audio", "video"];
/// Keys of `media.audio` and `media.video`.
pub(super) const CODEC_KEYS: &[&str] = &["codecs"];
/// The most keys one [`Reader`] knows.
pub(super) const MAX_KEYS: usize = 40;

/// The position of `key` in `keys` (length and first byte checked before the bytes).
pub(super) fn slot_of(keys: &[&str], key: &str) -> Option<usize> {
    let first = key.as_bytes().first();
    keys.iter().position(|it| it.len() == key.len() && it.as_bytes().first() == first && *it == key)
}

/// How the fields a [`Reader`] reports on are named: `<text><key>`, or
/// `gateways[<index>].<key>` (formatted only when a diagnostic is raised).
#[derive(Clone, Copy)]
pub(super) enum Prefix<'a> {
    Text(&'a str),
    Gateway(usize),
}

impl Prefix<'_> {
    pub(super) fn field(self, key: &str) -> String {
        match self {
            Prefix::Text(prefix) => format!("{prefix}{key}"),
            Prefix::Gateway(index) => format!("gateways[{index}].{key}"),
        }
    }
}

/// Reads typed fields out of one JSON object whose known keys are listed up front.
///
/// One pass over the object's entries files each known key's value in its slot (no hashing
/// per field read); the keys not in the list are what [`Reader::finish`] keeps as `extra`.
pub(super) struct Reader<'a> {
    object: &'a Map<String, Value>,
    keys: &'static [&'static str],
    slots: [Option<&'a Value>; MAX_KEYS],
    /// Whether the object has a key not in `keys`.
    unknown: bool,
    /// Where the next read is expected in `keys` (reads follow the list's order).
    next: usize,
    id: &'a str,
    prefix: Prefix<'a>,
    pub(super) diagnostics: &'a mut Vec<Diagnostic>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(
        object: &'a Map<String, Value>,
        keys: &'static [&'static str],
        id: &'a str,
        prefix: Prefix<'a>,
        diagnostics: &'a mut Vec<Diagnostic>,
    ) -> Reader<'a> {
        debug_assert!(keys.len() <= MAX_KEYS);
        let mut slots = [None; MAX_KEYS];
        let mut unknown = false;
        for (key, value) in object {
            match slot_of(keys, key) {
                Some(slot) => slots[slot] = Some(value),
                None => unknown = true,
            }
        }
        Reader { object, keys, slots, unknown, next: 0, id, prefix, diagnostics }
    }

    pub(super) fn report(&mut self, key: &str, index: Option<usize>, message: &str) {
        self.diagnostics.push(diag(self.id, &self.prefix.field(key), index, message));
    }

    pub(super) fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        // Reads follow the list's order, so the expected slot is nearly always the next one
        // (and the same literal, so the pointers are equal).
        let slot = match self.keys.get(self.next) {
            Some(expected) if std::ptr::eq(*expected, key) || *expected == key => self.next,
            _ => match slot_of(self.keys, key) {
                Some(slot) => slot,
                None => {
                    debug_assert!(false, "{key} is not in the reader's key list");
                    return self.object.get(key).filter(|value| !value.is_null());
                }
            },
        };
        self.next = slot + 1;
        match self.slots[slot] {
            None | Some(Value::Null) => None,
            Some(value) => Some(value),
        }
    }

    pub(super) fn value(&mut self, key: &'static str) -> Option<Value> {
        self.get(key).cloned()
    }

    pub(super) fn string(&mut self, key: &'static str) -> Option<String> {
        match self.get(key)? {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            Value::Bool(flag) => Some(flag.to_string()),
            other => {
                let message = format!("not a string: {other}; ignored");
                self.report(key, None, &message);
                None
            }
        }
    }

    pub(super) fn bool(&mut self, key: &'static str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(flag) => Some(*flag),
            Value::String(text) if text.eq_ignore_ascii_case("true") => Some(true),
            Value::String(text) if text.eq_ignore_ascii_case("false") => Some(false),
            other => {
                let message = format!("not a boolean: {other}; ignored");
                self.report(key, None, &message);
                None
            }
        }
    }

    pub(super) fn int(&mut self, key: &'static str) -> Option<i64> {
        let value = self.get(key)?;
        let parsed = kazoo_integer(value);
        if parsed.is_none() {
            let message = format!("not an integer: {value}; ignored");
            self.report(key, None, &message);
        }
        parsed
    }

    pub(super) fn strings(&mut self, key: &'static str) -> Option<Vec<String>> {
        match self.get(key)? {
            Value::Array(items) => {
                let prefix = self.prefix;
                Some(string_items(items, self.id, || prefix.field(key), self.diagnostics))
            }
            other => {
                let message = format!("not a list: {other}; ignored");
                self.report(key, None, &message);
                None
            }
        }
    }

    pub(super) fn object(&mut self, key: &'static str) -> Option<&'a Map<String, Value>> {
        match self.get(key)? {
            Value::Object(object) => Some(object),
            other => {
                let message = format!("not an object: {other}; ignored");
                self.report(key, None, &message);
                None
            }
        }
    }

    pub(super) fn array(&mut self, key: &'static str) -> Option<&'a Vec<Value>> {
        match self.get(key)? {
            Value::Array(items) => Some(items),
            other => {
                let message = format!("not a list: {other}; ignored");
                self.report(key, None, &message);
                None
            }
        }
    }

    /// The keys nobody asked for.
    pub(super) fn finish(self) -> Map<String, Value> {
        if !self.unknown {
            return Map::new();
        }
        self.object
            .iter()
            .filter(|(key, _)| !self.keys.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

/// The string items of a list; `field` names the list in a diagnostic (formatted only then).
pub(super) fn string_items(
    items: &[Value],
    id: &str,
    field: impl Fn() -> String,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(text) => out.push(text.clone()),
            other => diagnostics.push(diag(
                id,
                &field(),
                Some(index),
                &format!("not a string: {other}; item skipped"),
            )),
        }
    }
    out
}

/// An integer field read as Kazoo reads it (`kz_json:get_integer_value`, i.e. `kz_term:to_integer`
/// with its errors turned into "absent"): an integer as is; a float rounded half away from zero;
/// a string in Erlang's integer syntax (`[+-]digits`, no spaces) as that integer (saturated, as
/// the caller clamps), else in Erlang's float syntax (`[+-]digits.digits[e[+-]digits]`, digits
/// on both sides of the point) rounded; anything else absent. So `"50.5"` is 51 and `"5e2"`,
/// `"50."` and `" 7"` are absent.
pub fn kazoo_integer(value: &Value) -> Option<i64> {
    let round = |float: f64| float.is_finite().then(|| float.round() as i64);
    match value {
        Value::Number(number) => number.as_i64().or_else(|| number.as_f64().and_then(round)),
        Value::String(text) => {
            let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if digits(unsigned) {
                let negative = text.starts_with('-');
                return Some(text.parse::<i64>().unwrap_or(if negative {
                    i64::MIN
                } else {
                    i64::MAX
                }));
            }
            let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
                Some((m, e)) => (m, Some(e)),
                None => (unsigned, None),
            };
            let (whole, fraction) = mantissa.split_once('.')?;
            let exponent_ok =
                exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
            if digits(whole) && digits(fraction) && exponent_ok {
                text.parse::<f64>().ok().and_then(round)
            } else {
                None
            }
        }
        _ => None,
    }
}

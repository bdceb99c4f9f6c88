//! `system_config/number_manager`: E.164 converters, the reconcile regex and the classifiers.
//!
//! Kazoo: `knm_converters.erl`, `knm_converter_regex.erl` (`knm_converters` (classifiers and E.164 conversion),
//! Kazoo's `offnet_req` flow). Every default below is Kazoo's code default, used when the key is absent.

use serde_json::{Map, Value};

use crate::{Diagnostic, Pattern, E164};

/// The document id every [`Diagnostic`] of [`Converters::from_config`] names.
pub const NUMBER_MANAGER_DOC_ID: &str = "number_manager";

/// Kazoo's default `e164_converters` (`?DEFAULT_E164_CONVERTERS`), in evaluation order.
pub const DEFAULT_E164_CONVERTERS: [(&str, &str); 3] = [
    (r"^(\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$", "+1"),
    (r"^011(\d{5,})$|^00(\d{5,})$", "+"),
    (r"^[2-9]\d{7,}$", "+"),
];

/// Kazoo's default `reconcile_regex` (`?DEFAULT_RECONCILE_REGEX`, `knm_converters`' `reconcile_regex`).
pub const DEFAULT_RECONCILE_REGEX: &str = r"^(\+?1)?\d{10}$|^\+[2-9]\d{7,}$|^011\d*$|^00\d*$";

/// The NANP regex `to_npan`/`to_1npan` use (group 2 is the ten-digit NPAN).
const NANP_REGEX: &str = r"^(\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$";

/// Pretty-print format Kazoo's default NANP classifiers carry.
const NANP_PRETTY_PRINT: &str = "SS(###) ### - ####";

/// Kazoo's default `classifiers` (`?DEFAULT_CLASSIFIERS`, master), in evaluation order:
/// (name, regex, friendly name, emergency, pretty print).
///
/// The emergency regex is master's; 4.3 adds `988` (`knm_converters` (classifiers and E.164 conversion)), set it in the config to get it.
pub const DEFAULT_CLASSIFIERS: [(&str, &str, &str, bool, Option<&str>); 7] = [
    (
        "tollfree_us",
        r"^\+1((?:800|88\d|877|866|855|844|833|822)\d{7})$",
        "US TollFree",
        false,
        Some(NANP_PRETTY_PRINT),
    ),
    ("toll_us", r"^\+1(900\d{7})$", "US Toll", false, Some(NANP_PRETTY_PRINT)),
    ("emergency", r"^(911|922|933|833|811|711|999)$", "Emergency Dispatcher", true, None),
    (
        "caribbean",
        r"^\+?1((?:684|264|268|242|246|441|284|345|767|809|829|849|473|671|876|664|670|787|939|869|758|784|721|868|649|340)\d{7})$",
        "Caribbean",
        false,
        Some(NANP_PRETTY_PRINT),
    ),
    ("did_us", r"^(\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$", "US DID", false, Some(NANP_PRETTY_PRINT)),
    ("international", r"^\+([2-9]\d{7,})$", "International", false, None),
    ("unknown", r"^(.*)$", "Unknown", false, None),
];

/// One `e164_converters` entry: numbers matching `pattern` become `prefix ++ capture ++ suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converter {
    /// The entry's key, the regex.
    pub pattern: Pattern,
    /// `prefix`, default "".
    pub prefix: String,
    /// `suffix`, default "".
    pub suffix: String,
}

/// One system classifier (`classifiers.<name>`), as `knm_converters:available_classifiers/0`
/// upgrades it.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    /// The key, e.g. `did_us`.
    pub name: String,
    /// `friendly_name`; defaults to the key (4.3's HELP-15556 fix, spec the Kazoo bug in `knm_converters:available_classifiers/0` not copied).
    pub friendly_name: String,
    /// `regex`; a classifier object without one uses `^$` (`knm_converters:classify/1`).
    pub pattern: Pattern,
    /// `emergency`, default false; a resource classifier copy inherits it (`stepswitch_resources:create_classifier_resource/4`).
    pub emergency: bool,
    /// `pretty_print`, if any (see [`pretty_print`]).
    pub pretty_print: Option<String>,
    /// Every other key of the classifier object, kept as written.
    pub extra: Map<String, Value>,
}

/// The answer of [`Converters::classify`]: the classifier's name and friendly name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Classification {
    /// Classifier key, e.g. `did_us`.
    pub name: String,
    /// Classifier `friendly_name`, e.g. `US DID`.
    pub friendly_name: String,
}

/// The compiled `system_config/number_manager` conversion settings.
///
/// Build it with [`Converters::from_config`] (or [`Converters::kazoo_defaults`]); it is immutable
/// and cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Converters {
    converters: Vec<Converter>,
    reconcile: Pattern,
    classifiers: Vec<Classifier>,
    nanp: Pattern,
}

impl Converters {
    /// Kazoo's code defaults: [`DEFAULT_E164_CONVERTERS`], [`DEFAULT_RECONCILE_REGEX`],
    /// [`DEFAULT_CLASSIFIERS`].
    pub fn kazoo_defaults() -> Converters {
        Converters {
            converters: default_converters(),
            reconcile: builtin(DEFAULT_RECONCILE_REGEX),
            classifiers: default_classifiers(),
            nanp: builtin(NANP_REGEX),
        }
    }

    /// Builds the converters from a `system_config/number_manager` document.
    ///
    /// Settings are read from the doc's `default` section (how `kapps_config` stores them), or
    /// from the top level when the value has no `default` object. Absent keys take Kazoo's
    /// defaults. A malformed entry (bad regex, wrong JSON type) is left out and reported; a
    /// malformed whole key (e.g. `classifiers` not an object) falls back to the default and is
    /// reported. The `converter` key may only name `regex`, the one converter Kazoo ships.
    pub fn from_config(doc: &Value) -> (Converters, Vec<Diagnostic>) {
        let mut diagnostics = Vec::new();
        let section = match doc.get("default") {
            Some(Value::Object(section)) => section,
            _ => match doc {
                Value::Object(top) => top,
                _ => {
                    diagnostics.push(diag("", None, "number_manager config is not a JSON object"));
                    return (Converters::kazoo_defaults(), diagnostics);
                }
            },
        };
        match section.get("converter") {
            None | Some(Value::Null) => {}
            Some(Value::String(name)) if name == "regex" => {}
            Some(other) => diagnostics.push(diag(
                "converter",
                None,
                &format!("unsupported converter {other}; only \"regex\" exists, using it"),
            )),
        }
        let converters = match section.get("e164_converters") {
            None | Some(Value::Null) => default_converters(),
            Some(Value::Object(entries)) => parse_converters(entries, &mut diagnostics),
            Some(_) => {
                diagnostics.push(diag(
                    "e164_converters",
                    None,
                    "not an object; using Kazoo's default converters",
                ));
                default_converters()
            }
        };
        let reconcile = match section.get("reconcile_regex") {
            None | Some(Value::Null) => builtin(DEFAULT_RECONCILE_REGEX),
            Some(Value::String(source)) => match Pattern::new(source) {
                Ok(pattern) => pattern,
                Err(err) => {
                    diagnostics.push(diag(
                        "reconcile_regex",
                        None,
                        &format!("{err}; using Kazoo's default"),
                    ));
                    builtin(DEFAULT_RECONCILE_REGEX)
                }
            },
            Some(_) => {
                diagnostics.push(diag(
                    "reconcile_regex",
                    None,
                    "not a string; using Kazoo's default",
                ));
                builtin(DEFAULT_RECONCILE_REGEX)
            }
        };
        let classifiers = match section.get("classifiers") {
            None | Some(Value::Null) => default_classifiers(),
            Some(Value::Object(entries)) => parse_classifiers(entries, &mut diagnostics),
            Some(_) => {
                diagnostics.push(diag(
                    "classifiers",
                    None,
                    "not an object; using Kazoo's default classifiers",
                ));
                default_classifiers()
            }
        };
        (Converters { converters, reconcile, classifiers, nanp: builtin(NANP_REGEX) }, diagnostics)
    }

    /// The `e164_converters` in evaluation order.
    pub fn converters(&self) -> &[Converter] {
        &self.converters
    }

    /// The classifiers in evaluation order (`knm_converters:available_classifiers/0`).
    pub fn classifiers(&self) -> &[Classifier] {
        &self.classifiers
    }

    /// The classifier called `name`, if configured.
    pub fn classifier(&self, name: &str) -> Option<&Classifier> {
        self.classifiers.iter().find(|it| it.name == name)
    }

    /// The reconcile regex.
    pub fn reconcile_regex(&self) -> &Pattern {
        &self.reconcile
    }

    /// `knm_converters:normalize/1` (`knm_converters`' default `e164_converters`): a number starting with `+` is returned unchanged;
    /// otherwise the first converter whose regex matches gives `prefix ++ last capture ++ suffix`
    /// (the last element of the Erlang capture list, so the whole match when there is no group);
    /// no match returns the input unchanged.
    pub fn normalize(&self, number: &str) -> String {
        if number.starts_with('+') {
            return number.to_owned();
        }
        for converter in &self.converters {
            if let Some(list) = converter.pattern.captures(number) {
                let last = list.iter().rev().flatten().next().cloned().unwrap_or(0..0);
                let mut out = String::with_capacity(
                    converter.prefix.len() + last.len() + converter.suffix.len(),
                );
                out.push_str(&converter.prefix);
                out.push_str(&number[last]);
                out.push_str(&converter.suffix);
                return out;
            }
        }
        number.to_owned()
    }

    /// [`Converters::normalize`], kept only when the result is a valid [`E164`].
    pub fn to_e164(&self, number: &str) -> Option<E164> {
        E164::new(self.normalize(number)).ok()
    }

    /// `knm_converters:is_reconcilable/1` (`knm_converters`' `reconcile_regex`): the normalized number matches `reconcile_regex`.
    pub fn is_reconcilable(&self, number: &str) -> bool {
        if number.starts_with('+') {
            return self.reconcile.is_match(number);
        }
        self.reconcile.is_match(&self.normalize(number))
    }

    /// `knm_converters:classify/1` (`knm_converters:classify/1`): normalize, then the first classifier (config key
    /// order) whose regex matches, unanchored; `None` when none matches.
    pub fn classify(&self, number: &str) -> Option<Classification> {
        self.classifier_for(number).map(|it| Classification {
            name: it.name.clone(),
            friendly_name: it.friendly_name.clone(),
        })
    }

    /// Like [`Converters::classify`] but returns the classifier itself (no allocation).
    pub fn classifier_for(&self, number: &str) -> Option<&Classifier> {
        if number.starts_with('+') {
            // `normalize` returns it unchanged: skip the copy (this runs on every lookup).
            return self.classifier_for_normalized(number);
        }
        let normalized = self.normalize(number);
        self.classifier_for_normalized(&normalized)
    }

    /// The first classifier matching an already normalized number.
    pub fn classifier_for_normalized(&self, normalized: &str) -> Option<&Classifier> {
        self.classifiers.iter().find(|it| it.pattern.is_match(normalized))
    }

    /// `knm_converter_regex:to_npan/1`: the ten-digit NPAN of a NANP number (`+1NPAN`, `1NPAN`
    /// or `NPAN`); anything else is returned unchanged.
    pub fn to_npan(&self, number: &str) -> String {
        match self.nanp_group(number) {
            Some(npan) => npan.to_owned(),
            None => number.to_owned(),
        }
    }

    /// `knm_converter_regex:to_1npan/1`: `1` ++ NPAN of a NANP number; anything else unchanged.
    pub fn to_1npan(&self, number: &str) -> String {
        match self.nanp_group(number) {
            Some(npan) => format!("1{npan}"),
            None => number.to_owned(),
        }
    }

    /// `knm_converters:to_strip_plus/1`: normalize, then drop a leading `+`.
    pub fn to_strip_plus(&self, number: &str) -> String {
        let normalized = self.normalize(number);
        match normalized.strip_prefix('+') {
            Some(rest) => rest.to_owned(),
            None => normalized,
        }
    }

    fn nanp_group<'n>(&self, number: &'n str) -> Option<&'n str> {
        let list = self.nanp.captures(number)?;
        list.get(2).cloned().flatten().map(|range| &number[range])
    }
}

/// `knm_converters:to_db/1` (`knm_converters:to_db/1`): the URL-encoded number database of a
/// number, from its first five bytes (`+14158867900` → `numbers%2F%2B1415`); `None` when
/// shorter than five bytes.
pub fn to_db(number: &str) -> Option<String> {
    let head = number.as_bytes().get(..5)?;
    let mut out = String::from("numbers%2F");
    for &byte in head {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Some(out)
}

/// `knm_util:pretty_print/2` (`knm_converters:classify/1`): `S` skips a character of the number,
/// `#` emits one, `*` emits the rest; `\S`, `\#`, `\*` are literals, as is every other character.
/// Once the number is used up, `S`/`#`/`*` emit nothing.
pub fn pretty_print(format: &str, number: &str) -> String {
    let mut out = String::with_capacity(format.len() + number.len());
    let mut rest = number.chars();
    let mut fmt = format.chars();
    while let Some(ch) = fmt.next() {
        match ch {
            '\\' => match fmt.next() {
                Some(lit) => out.push(lit),
                None => out.push('\\'),
            },
            'S' => {
                rest.next();
            }
            '#' => {
                if let Some(digit) = rest.next() {
                    out.push(digit);
                }
            }
            '*' => out.extend(rest.by_ref()),
            other => out.push(other),
        }
    }
    out
}

fn builtin(source: &str) -> Pattern {
    // Built-in patterns are constants checked by the unit tests.
    Pattern::new(source).unwrap_or_else(|err| panic!("built-in regex {source:?} is valid: {err}"))
}

fn default_converters() -> Vec<Converter> {
    DEFAULT_E164_CONVERTERS
        .iter()
        .map(|(regex, prefix)| Converter {
            pattern: builtin(regex),
            prefix: (*prefix).to_owned(),
            suffix: String::new(),
        })
        .collect()
}

fn default_classifiers() -> Vec<Classifier> {
    DEFAULT_CLASSIFIERS
        .iter()
        .map(|(name, regex, friendly, emergency, pretty)| Classifier {
            name: (*name).to_owned(),
            friendly_name: (*friendly).to_owned(),
            pattern: builtin(regex),
            emergency: *emergency,
            pretty_print: pretty.map(str::to_owned),
            extra: Map::new(),
        })
        .collect()
}

fn diag(field: &str, index: Option<usize>, message: &str) -> Diagnostic {
    Diagnostic {
        doc_id: NUMBER_MANAGER_DOC_ID.to_owned(),
        field: field.to_owned(),
        index,
        message: message.to_owned(),
    }
}

fn string_field(
    object: &Map<String, Value>,
    key: &str,
    field: &str,
    index: usize,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<String> {
    match object.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(value)) => Some(value.clone()),
        Some(other) => {
            diagnostics.push(diag(field, Some(index), &format!("{key} is not a string: {other}")));
            None
        }
    }
}

fn parse_converters(
    entries: &Map<String, Value>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Converter> {
    let mut out = Vec::with_capacity(entries.len());
    for (index, (regex, options)) in entries.iter().enumerate() {
        let field = format!("e164_converters.{regex}");
        let pattern = match Pattern::new(regex) {
            Ok(pattern) => pattern,
            Err(err) => {
                diagnostics.push(diag(&field, Some(index), &err.to_string()));
                continue;
            }
        };
        let (prefix, suffix) = match options {
            Value::Object(options) => (
                string_field(options, "prefix", &field, index, diagnostics).unwrap_or_default(),
                string_field(options, "suffix", &field, index, diagnostics).unwrap_or_default(),
            ),
            Value::Null => (String::new(), String::new()),
            other => {
                diagnostics.push(diag(&field, Some(index), &format!("not an object: {other}")));
                continue;
            }
        };
        out.push(Converter { pattern, prefix, suffix });
    }
    out
}

fn parse_classifiers(
    entries: &Map<String, Value>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Classifier> {
    let mut out = Vec::with_capacity(entries.len());
    for (index, (name, value)) in entries.iter().enumerate() {
        let field = format!("classifiers.{name}");
        let (regex, friendly_name, emergency, pretty_print, extra) = match value {
            // Legacy form: a bare regex string (`available_classifiers/0` upgrades it).
            Value::String(regex) => (regex.clone(), name.clone(), false, None, Map::new()),
            Value::Object(object) => {
                let regex = string_field(object, "regex", &field, index, diagnostics)
                    .unwrap_or_else(|| "^$".to_owned());
                let friendly = string_field(object, "friendly_name", &field, index, diagnostics)
                    .unwrap_or_else(|| name.clone());
                let emergency = match object.get("emergency") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(flag)) => *flag,
                    Some(Value::String(text)) => text.eq_ignore_ascii_case("true"),
                    Some(other) => {
                        diagnostics.push(diag(
                            &field,
                            Some(index),
                            &format!("emergency is not a boolean: {other}"),
                        ));
                        false
                    }
                };
                let pretty = string_field(object, "pretty_print", &field, index, diagnostics);
                let extra = object
                    .iter()
                    .filter(|(key, _)| {
                        !matches!(
                            key.as_str(),
                            "regex" | "friendly_name" | "emergency" | "pretty_print"
                        )
                    })
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                (regex, friendly, emergency, pretty, extra)
            }
            other => {
                diagnostics.push(diag(
                    &field,
                    Some(index),
                    &format!("neither a regex string nor an object: {other}"),
                ));
                continue;
            }
        };
        match Pattern::new(&regex) {
            Ok(pattern) => out.push(Classifier {
                name: name.clone(),
                friendly_name,
                pattern,
                emergency,
                pretty_print,
                extra,
            }),
            Err(err) => {
                diagnostics.push(diag(&format!("{field}.regex"), Some(index), &err.to_string()))
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NANP_FORMS: [&str; 3] = ["+12234567890", "12234567890", "2234567890"];

    #[test]
    fn a1_normalize_test() {
        // Vector A1 normalize_test_ (`knm_converters`' default `e164_converters`).
        let conv = Converters::kazoo_defaults();
        for input in NANP_FORMS {
            assert_eq!(conv.normalize(input), "+12234567890", "{input}");
            assert_eq!(conv.to_e164(input).unwrap().as_str(), "+12234567890");
        }
    }

    #[test]
    fn a1_to_npan_and_to_1npan() {
        // Vector A1 to_npan_test_ / to_1npan_test_ (`knm_converters`' default `e164_converters`).
        let conv = Converters::kazoo_defaults();
        for input in NANP_FORMS {
            assert_eq!(conv.to_npan(input), "2234567890", "{input}");
            assert_eq!(conv.to_1npan(input), "12234567890", "{input}");
        }
        assert_eq!(conv.to_npan("+442071234567"), "+442071234567");
        assert_eq!(conv.to_1npan("911"), "911");
        assert_eq!(conv.to_strip_plus("2234567890"), "12234567890");
    }

    #[test]
    fn a1_converters_fields_in_order() {
        // Vector A1 converters_fields_in_order_test_: the default converters, in order.
        let conv = Converters::kazoo_defaults();
        let got: Vec<(&str, &str)> =
            conv.converters().iter().map(|it| (it.pattern.as_str(), it.prefix.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (r"^(\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$", "+1"),
                (r"^011(\d{5,})$|^00(\d{5,})$", "+"),
                (r"^[2-9]\d{7,}$", "+"),
            ]
        );
        // The same order survives a config that spells them out (ordered JSON object).
        let doc = json!({"default": {"e164_converters": {
            r"^(\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$": {"prefix": "+1"},
            r"^011(\d{5,})$|^00(\d{5,})$": {"prefix": "+"},
            r"^[2-9]\d{7,}$": {"prefix": "+"}
        }}});
        let (from_doc, diagnostics) = Converters::from_config(&doc);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let got_doc: Vec<(&str, &str)> = from_doc
            .converters()
            .iter()
            .map(|it| (it.pattern.as_str(), it.prefix.as_str()))
            .collect();
        assert_eq!(got, got_doc);
    }

    #[test]
    fn a1_to_db() {
        // Vector A1 to_db_test_ (`knm_converters:to_db/1`).
        assert_eq!(to_db("+14158867900").as_deref(), Some("numbers%2F%2B1415"));
        assert_eq!(to_db("14158867900").as_deref(), Some("numbers%2F14158"));
        assert_eq!(to_db("1234"), None);
    }

    #[test]
    fn a1_prop_normalize_nanp_forms() {
        // Vector A1 prop_normalize / prop_to_npan, restricted to NANP-valid numbers (numbers
        // vector A3 explains why the upstream property is not ported literally).
        let conv = Converters::kazoo_defaults();
        for npan in ["2002000000", "4158867900", "9999999999", "2125550100"] {
            let one = format!("1{npan}");
            assert_eq!(conv.normalize(npan), format!("+1{npan}"));
            assert_eq!(conv.normalize(&one), format!("+{one}"));
            assert_eq!(conv.to_npan(&one), npan);
            assert_eq!(conv.to_1npan(npan), one);
        }
        // The upstream property is wrong for these (numbers vector A3).
        assert_eq!(conv.normalize("2010000000"), "+2010000000");
        assert_eq!(conv.normalize("10100000000"), "10100000000");
    }

    #[test]
    fn rule_54_international_prefixes() {
        let conv = Converters::kazoo_defaults();
        assert_eq!(conv.normalize("011442071234567"), "+442071234567");
        assert_eq!(conv.normalize("00442071234567"), "+442071234567");
        assert_eq!(conv.normalize("442071234567"), "+442071234567");
        assert_eq!(conv.normalize("911"), "911");
        assert_eq!(conv.normalize("+anything"), "+anything");
        assert!(conv.to_e164("911").is_none());
    }

    #[test]
    fn a1_available_classifiers_help_15556() {
        // Vector A1 [4.3] available_classifiers_test_ (the Kazoo bug in `knm_converters:available_classifiers/0` not copied).
        let doc = json!({"default": {"classifiers": {
            "noname": {"regex": "^1$"},
            "name": {"friendly_name": "Named", "regex": "^2$"},
            "legacy": "^3$"
        }}});
        let (conv, diagnostics) = Converters::from_config(&doc);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let got: Vec<(&str, &str, &str)> = conv
            .classifiers()
            .iter()
            .map(|it| (it.name.as_str(), it.friendly_name.as_str(), it.pattern.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("noname", "noname", "^1$"),
                ("name", "Named", "^2$"),
                ("legacy", "legacy", "^3$")
            ]
        );
    }

    #[test]
    fn rule_52_classify_default_order() {
        let conv = Converters::kazoo_defaults();
        let check = |number: &str, expected: Option<(&str, &str)>| {
            let got = conv.classify(number);
            let got = got.as_ref().map(|it| (it.name.as_str(), it.friendly_name.as_str()));
            assert_eq!(got, expected, "{number}");
        };
        check("+18005550100", Some(("tollfree_us", "US TollFree")));
        check("8445550100", Some(("tollfree_us", "US TollFree")));
        check("+19005550100", Some(("toll_us", "US Toll")));
        check("911", Some(("emergency", "Emergency Dispatcher")));
        check("+18095550100", Some(("caribbean", "Caribbean")));
        check("4155550100", Some(("did_us", "US DID")));
        check("+442071234567", Some(("international", "International")));
        check("1234", Some(("unknown", "Unknown")));
        assert!(conv.classifier("emergency").unwrap().emergency);
    }

    #[test]
    fn rule_52_alphabetical_config_classifies_tollfree_as_did_us() {
        // Kept behaviour (the Kazoo bug in `knm_converters:classify/1` (classifier order)): a schema-seeded, key-sorted config is used in its own order.
        let mut classifiers = Map::new();
        let mut sorted: Vec<_> = DEFAULT_CLASSIFIERS.to_vec();
        sorted.sort_by_key(|it| it.0);
        for (name, regex, friendly, _, _) in sorted {
            classifiers.insert(name.into(), json!({"regex": regex, "friendly_name": friendly}));
        }
        let (conv, diagnostics) =
            Converters::from_config(&json!({"default": {"classifiers": classifiers}}));
        assert!(diagnostics.is_empty());
        assert_eq!(conv.classify("+18005550100").unwrap().name, "did_us");
        // A classifier without `regex` uses `^$` (`knm_converters:classify/1`).
        let (conv, _) =
            Converters::from_config(&json!({"classifiers": {"blank": {"friendly_name": "B"}}}));
        assert_eq!(conv.classify("").unwrap().name, "blank");
        assert!(conv.classify("1").is_none());
    }

    #[test]
    fn rule_53_is_reconcilable() {
        let conv = Converters::kazoo_defaults();
        for good in ["4158867900", "+14158867900", "+442071234567", "011442071234567"] {
            assert!(conv.is_reconcilable(good), "{good}");
        }
        for bad in ["1000", "NOT a number", "911"] {
            assert!(!conv.is_reconcilable(bad), "{bad}");
        }
    }

    #[test]
    fn broken_config_entries_are_reported_and_the_rest_works() {
        let doc = json!({"default": {
            "e164_converters": {"^(": {"prefix": "+"}, r"^(\d{4})$": {"prefix": "+99"}},
            "classifiers": {"bad": {"regex": "(?<"}, "four": {"regex": r"^\+99\d{4}$"}},
            "reconcile_regex": 7
        }});
        let (conv, diagnostics) = Converters::from_config(&doc);
        let fields: Vec<(&str, Option<usize>)> =
            diagnostics.iter().map(|it| (it.field.as_str(), it.index)).collect();
        assert_eq!(
            fields,
            vec![
                ("e164_converters.^(", Some(0)),
                ("reconcile_regex", None),
                ("classifiers.bad.regex", Some(0))
            ]
        );
        assert!(diagnostics.iter().all(|it| it.doc_id == NUMBER_MANAGER_DOC_ID));
        assert_eq!(conv.normalize("1234"), "+991234");
        assert_eq!(conv.classify("1234").unwrap().name, "four");
        assert!(conv.is_reconcilable("4158867900"));
    }

    #[test]
    fn fixturedb_number_manager_uses_defaults() {
        // Kazoo's fixturedb `system_config/number_manager` has no conversion keys.
        let doc = json!({"_id": "number_manager", "default": {"port_in_module_name": "knm_local"}});
        let (conv, diagnostics) = Converters::from_config(&doc);
        assert!(diagnostics.is_empty());
        assert_eq!(conv.classifiers().len(), 7);
        assert_eq!(conv.normalize("2234567890"), "+12234567890");
    }

    #[test]
    fn pretty_print_vectors() {
        // kazoo-numbers vectors A7.
        assert_eq!(pretty_print("SS(###) ### - *", "+14158867900"), "(415) 886 - 7900");
        assert_eq!(pretty_print(r"S\SS(###\#) ### - *\*", "+14158867900"), "S(415#) 886 - 7900*");
        assert_eq!(pretty_print("*", "+14158867900"), "+14158867900");
    }
}

//! Reading stored number documents of every version Kazoo wrote: `from_json/1` with the
//! load-time migrations of older documents (`knm_phone_number:from_json/1`: renamed features, legacy module names,
//! public e911 keys), and the lenient readers of stored values it uses.

use serde_json::{Map, Value};

use super::{is_private_key, sanitize_public_fields, NumberDoc, NumberState, KNM_LOCAL, KNM_MDN};
use super::{DROPPED_PRIVATE_KEYS, OWN_KEYS};
use crate::account::AccountId;
use crate::error::Error;
use e164::E164;

/// `kz_json:get_ne_value/2`: the value unless absent, `null`, `""`, `[]` or `{}`.
pub(crate) fn non_empty(v: Option<&Value>) -> Option<&Value> {
    match v? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Object(o) if o.is_empty() => None,
        other => Some(other),
    }
}

pub(super) fn is_true(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

pub(super) fn opt_account(
    doc_id: &str,
    key: &str,
    v: Option<&Value>,
) -> Result<Option<AccountId>, Error> {
    match non_empty(v) {
        None => Ok(None),
        Some(Value::String(s)) => AccountId::parse(s).map(Some).map_err(|_| Error::Decode {
            id: doc_id.to_owned(),
            reason: format!("{key} {s:?} is not an account id"),
        }),
        Some(other) => Err(Error::Decode {
            id: doc_id.to_owned(),
            reason: format!("{key} must be a string, got {other}"),
        }),
    }
}

pub(super) fn string_list(
    doc_id: &str,
    key: &str,
    v: Option<&Value>,
) -> Result<Vec<String>, Error> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|it| match it {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err(Error::Decode {
                    id: doc_id.to_owned(),
                    reason: format!("{key} holds a non-string {other}"),
                }),
            })
            .collect(),
        Some(other) => Err(Error::Decode {
            id: doc_id.to_owned(),
            reason: format!("{key} must be a list, got {other}"),
        }),
    }
}

pub(super) fn timestamp(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().filter(|t| *t > 0),
        _ => None,
    }
}

/// `maybe_rename_public_features/1`: a public `dash_e911` / `vitelity_e911` is copied to `e911`
/// (vitelity wins); the legacy keys stay.
pub(super) fn rename_public_features(mut public: Map<String, Value>) -> Map<String, Value> {
    let dash = non_empty(public.get("dash_e911")).cloned();
    let vitelity = non_empty(public.get("vitelity_e911")).cloned();
    if let Some(e911) = vitelity.or(dash) {
        public.insert("e911".into(), e911);
    }
    public
}

/// `doc_from_public_fields/1`.
pub(crate) fn doc_from_public_fields(obj: &Map<String, Value>) -> Map<String, Value> {
    rename_public_features(sanitize_public_fields(obj))
}

/// `maybe_rename_features/1`: `dash_e911` / `vitelity_e911` private features become `e911`
/// (vitelity wins).
pub(super) fn rename_features(features: &Map<String, Value>) -> Map<String, Value> {
    let dash = non_empty(features.get("dash_e911")).cloned();
    let vitelity = non_empty(features.get("vitelity_e911")).cloned();
    if dash.is_none() && vitelity.is_none() {
        return features.clone();
    }
    let mut out: Map<String, Value> = features
        .iter()
        .filter(|(k, _)| k.as_str() != "dash_e911" && k.as_str() != "vitelity_e911")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(e911) = vitelity.or(dash) {
        out.insert("e911".into(), e911);
    }
    out
}

/// `migrate_features/2`: 3.22 feature lists become an object built from the root fields.
pub(super) fn migrate_feature_list(
    list: &[Value],
    public: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let sub = |feature: &str, key: &str| -> Option<Value> {
        non_empty(public.get(feature).and_then(|f| f.get(key))).cloned()
    };
    for item in list {
        let Some(feature) = item.as_str() else { continue };
        match feature {
            "force_outbound" => {
                out.insert(feature.into(), Value::Bool(is_true(public.get(feature))));
            }
            "ringback" | "failover" => {
                let keys: &[&str] =
                    if feature == "ringback" { &["early", "transfer"] } else { &["e164", "sip"] };
                let data: Map<String, Value> = keys
                    .iter()
                    .filter_map(|k| sub(feature, k).map(|v| ((*k).to_owned(), v)))
                    .collect();
                out.insert(feature.into(), Value::Object(data));
            }
            "prepend" => {
                let enabled = is_true(public.get("prepend").and_then(|p| p.get("enabled")));
                let mut data = match non_empty(public.get("prepend")) {
                    Some(Value::Object(o)) => o.clone(),
                    _ => Map::new(),
                };
                data.insert("enabled".into(), Value::Bool(enabled));
                out.insert(feature.into(), Value::Object(data));
            }
            "outbound_cnam" => {
                let mut data = Map::new();
                if let Some(Value::String(name)) = sub("cnam", "display_name") {
                    data.insert("display_name".into(), Value::String(name));
                }
                out.insert(feature.into(), Value::Object(data));
            }
            "inbound_lookup" => {
                let mut data = Map::new();
                data.insert("inbound_lookup".into(), Value::Bool(true));
                out.insert("inbound_cnam".into(), Value::Object(data));
            }
            "dash_e911" | "vitelity_e911" | "telnyx_e911" => {
                if let Some(data) = public.get(feature) {
                    out.insert("e911".into(), data.clone());
                }
            }
            other => {
                let data =
                    non_empty(public.get(other)).cloned().unwrap_or(Value::Object(Map::new()));
                out.insert(other.into(), data);
            }
        }
    }
    out
}

/// Module names as stored, mapped to the module Kazoo loads (`knm_phone_number:from_json/1`): `wnm_X` → `knm_X`,
/// `knm_bandwidth` → `knm_bandwidth2`. Returns the name and whether it changed.
pub fn migrate_module_name(stored: &str) -> (String, bool) {
    let mut name = stored.to_owned();
    let mut changed = false;
    if let Some(rest) = name.strip_prefix("wnm_") {
        name = format!("knm_{rest}");
        changed = true;
    }
    if name == "knm_bandwidth" {
        name = "knm_bandwidth2".to_owned();
        changed = true;
    }
    if name == "undefined" || name.is_empty() {
        name = KNM_LOCAL.to_owned();
        changed = true;
    }
    (name, changed)
}

pub(super) fn is_local_module(module: &str) -> bool {
    module == KNM_LOCAL || module == KNM_MDN
}

impl NumberDoc {
    /// Reads a stored document, applying Kazoo's load-time migrations (`knm_phone_number:from_json/1`, `from_json/1`).
    ///
    /// A document that needed a migration that Kazoo counts as a change is marked so that the next
    /// decision writes it ([`NumberDoc::migrated`]); adding defaults (`pvt_ported_in`, an empty
    /// history, the `local` feature of a local number without features) is not such a change.
    ///
    /// # Errors
    /// [`Error::Decode`] naming the document and the field when the document is not an object, has
    /// no string `_id`, no valid state, or a malformed owner/history/list field.
    pub fn from_json(value: &Value, now: i64) -> Result<Self, Error> {
        let obj = value.as_object().ok_or_else(|| Error::Decode {
            id: "?".into(),
            reason: "a number document must be a JSON object".into(),
        })?;
        let raw_id = match obj.get("_id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(Error::Decode { id: "?".into(), reason: "missing string _id".into() }),
        };
        let id = E164::new(raw_id.clone()).map_err(|_| Error::Decode {
            id: raw_id.clone(),
            reason: "_id is not an E.164 number".into(),
        })?;
        let decode = |reason: String| Error::Decode { id: raw_id.clone(), reason };
        let mut dirty = false;

        let assigned_to = opt_account(&raw_id, "pvt_assigned_to", obj.get("pvt_assigned_to"))?;
        let prev_assigned_to = opt_account(
            &raw_id,
            "pvt_previously_assigned_to",
            obj.get("pvt_previously_assigned_to"),
        )?;
        let used_by = match non_empty(obj.get("pvt_used_by")) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };

        // set_reserve_history/2 from undefined: consecutive duplicates collapse; only a change
        // dirties.
        let stored_history =
            string_list(&raw_id, "pvt_reserve_history", obj.get("pvt_reserve_history"))?;
        let mut reserve_history: Vec<AccountId> = Vec::with_capacity(stored_history.len());
        for raw in stored_history.iter().rev() {
            let acc = AccountId::parse(raw)
                .map_err(|_| decode(format!("pvt_reserve_history holds {raw:?}")))?;
            if reserve_history.first() != Some(&acc) {
                reserve_history.insert(0, acc);
            }
        }
        if reserve_history.len() != stored_history.len() {
            dirty = true;
        }

        let modified = match timestamp(obj.get("pvt_modified")) {
            Some(t) => t,
            None => {
                dirty = true;
                now
            }
        };
        let created = match timestamp(obj.get("pvt_created")) {
            Some(t) => t,
            None => {
                dirty = true;
                now
            }
        };

        let sanitized = sanitize_public_fields(obj);
        let public = rename_public_features(sanitized.clone());
        if public != sanitized {
            dirty = true;
        }

        // maybe_migrate_features/2 (None = Kazoo's `undefined`).
        let mut features: Option<Map<String, Value>> = match non_empty(obj.get("pvt_features")) {
            None => None,
            Some(Value::Array(list)) => {
                dirty = true;
                Some(rename_features(&migrate_feature_list(list, &public)))
            }
            Some(Value::Object(stored)) => {
                let renamed = rename_features(stored);
                if &renamed != stored {
                    dirty = true;
                }
                Some(renamed)
            }
            Some(other) => {
                return Err(decode(format!("pvt_features must be an object, got {other}")))
            }
        };

        let state_value = obj.get("pvt_state").or_else(|| obj.get("pvt_number_state"));
        let state = match state_value {
            Some(Value::String(s)) => s
                .parse::<NumberState>()
                .map_err(|_| decode(format!("pvt_state {s:?} is not a number state")))?,
            _ => return Err(decode("missing pvt_state".into())),
        };
        if obj.contains_key("pvt_number_state") {
            dirty = true;
        }

        let ported_in = is_true(obj.get("pvt_ported_in"));

        // set_module_name/2 during from_json/1.
        let (module_name, module_changed) = match obj.get("pvt_module_name") {
            Some(Value::String(s)) => migrate_module_name(s),
            None | Some(Value::Null) => (KNM_LOCAL.to_owned(), true),
            Some(other) => {
                return Err(decode(format!("pvt_module_name must be a string, got {other}")))
            }
        };
        if module_changed {
            dirty = true;
        }
        if is_local_module(&module_name) {
            match features.as_mut() {
                None => {
                    let mut f = Map::new();
                    f.insert("local".into(), Value::Object(Map::new()));
                    features = Some(f);
                }
                Some(f) => {
                    if !f.contains_key("local") {
                        f.insert("local".into(), Value::Object(Map::new()));
                        dirty = true;
                    }
                }
            }
        } else if let Some(f) = features.as_mut() {
            if f.remove("local").is_some() {
                dirty = true;
            }
        }

        let carrier_data = match obj.get("pvt_carrier_data") {
            Some(Value::Object(o)) => o.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(other) => {
                return Err(decode(format!("pvt_carrier_data must be an object, got {other}")))
            }
        };
        let region = match non_empty(obj.get("pvt_region")) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let features_allowed =
            string_list(&raw_id, "pvt_features_allowed", obj.get("pvt_features_allowed"))?;
        let features_denied =
            string_list(&raw_id, "pvt_features_denied", obj.get("pvt_features_denied"))?;
        let rev = match obj.get("_rev") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let extra: Map<String, Value> = obj
            .iter()
            .filter(|(k, _)| {
                is_private_key(k)
                    && !OWN_KEYS.contains(&k.as_str())
                    && !DROPPED_PRIVATE_KEYS.contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        Ok(NumberDoc {
            id,
            rev,
            state,
            ported_in,
            module_name,
            modified: if dirty { now } else { modified },
            created,
            assigned_to,
            prev_assigned_to,
            used_by,
            features: features.unwrap_or_default(),
            features_allowed,
            features_denied,
            reserve_history,
            carrier_data,
            region,
            public,
            extra,
            migrated: dirty,
        })
    }
}

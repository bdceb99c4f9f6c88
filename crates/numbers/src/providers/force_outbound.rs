//! `knm_force_outbound` (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …), `knm_number:is_force_outbound/3`): for `in_service` numbers the private `force_outbound`
//! feature is the public value when it is boolean-like (`true`, `false`, `"true"`, `"false"`),
//! stored as a boolean; anything else (absent, `"blabla"`) removes it; any other state removes
//! it. A stored `false` is kept (vectors K12, K13): it overrides `default_force_outbound`.

use serde_json::Value;

use crate::doc::{NumberDoc, NumberState};

use super::{non_empty, set_feature};

const KEY: &str = "force_outbound";

/// `kz_term:is_boolean/1` + `is_true/1`.
fn boolean_like(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// `save/1`.
pub fn save(doc: &mut NumberDoc) {
    if doc.state != NumberState::InService {
        return delete(doc);
    }
    let public = boolean_like(non_empty(doc.public.get(KEY)));
    set_feature(doc, KEY, public.map(Value::Bool));
}

/// `delete/1`: the feature is removed.
pub fn delete(doc: &mut NumberDoc) {
    set_feature(doc, KEY, None);
}

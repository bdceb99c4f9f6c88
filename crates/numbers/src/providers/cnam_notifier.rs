//! `knm_cnam_notifier` (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …)), Kazoo's default CNAM provider: in `reserved` / `in_service` /
//! `port_in`, `outbound_cnam := {display_name}` from the public `cnam.display_name` (removed when
//! there is none), `inbound_cnam := {inbound_lookup: true}` iff `cnam.inbound_lookup`, and the
//! legacy private `cnam` feature is removed; other states leave the features as they are.
//!
//! Kazoo also publishes a `cnam_request` notification (AMQP) when the display name changes;
//! Switchboard has no notification bus, so none is sent (docs/kazoo-compat.md).

use serde_json::{json, Value};

use crate::doc::NumberDoc;

use super::{is_provisioned_state, is_true, non_empty, set_feature};

/// `save/1`.
pub fn save(doc: &mut NumberDoc) {
    if !is_provisioned_state(doc) {
        return;
    }
    let cnam = doc.public.get("cnam").cloned().unwrap_or(Value::Null);
    let name = non_empty(cnam.get("display_name")).cloned();
    set_feature(doc, "outbound_cnam", name.map(|n| json!({"display_name": n})));
    let inbound = is_true(cnam.get("inbound_lookup"));
    set_feature(doc, "inbound_cnam", inbound.then(|| json!({"inbound_lookup": true})));
    set_feature(doc, "cnam", None);
}

/// `delete/1`: `inbound_cnam`, `outbound_cnam` and `cnam` are removed.
pub fn delete(doc: &mut NumberDoc) {
    for f in ["inbound_cnam", "outbound_cnam", "cnam"] {
        set_feature(doc, f, None);
    }
}

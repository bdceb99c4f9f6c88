//! `knm_failover` (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …)): the `failover` feature (`{e164, sip}` destinations used when the
//! account's endpoints do not answer) for `in_service` numbers: the private feature is the public
//! `failover` object; empty removes it; any other state removes it. (Available only to numbers
//! used by `trunkstore` unless the number's own lists say otherwise, `knm_providers:list_available_features/1`.)

use crate::doc::{NumberDoc, NumberState};

use super::{is_empty, non_empty, set_feature};

const KEY: &str = "failover";

/// `save/1`.
pub fn save(doc: &mut NumberDoc) {
    if doc.state != NumberState::InService {
        return delete(doc);
    }
    let public = non_empty(doc.public.get(KEY)).cloned();
    if is_empty(public.as_ref()) {
        return set_feature(doc, KEY, None);
    }
    set_feature(doc, KEY, public);
}

/// `delete/1`: the feature is removed.
pub fn delete(doc: &mut NumberDoc) {
    set_feature(doc, KEY, None);
}

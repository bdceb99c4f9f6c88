//! `knm_prepend` (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …)): the `prepend` feature (caller-id name prefix at routing, `knm_number:lookup_account/1`) for
//! `in_service` numbers: the private feature is the public `prepend` object when its `enabled`
//! is true; an empty or disabled object removes it; any other state removes it.

use crate::doc::{NumberDoc, NumberState};

use super::{is_empty, is_true, non_empty, set_feature};

const KEY: &str = "prepend";

/// `save/1`.
pub fn save(doc: &mut NumberDoc) {
    if doc.state != NumberState::InService {
        return delete(doc);
    }
    let public = non_empty(doc.public.get(KEY)).cloned();
    if is_empty(public.as_ref()) {
        return set_feature(doc, KEY, None);
    }
    if doc.features.get(KEY) == public.as_ref() {
        return;
    }
    let enabled = public.as_ref().is_some_and(|p| is_true(p.get("enabled")));
    set_feature(doc, KEY, if enabled { public } else { None });
}

/// `delete/1`: the feature is removed.
pub fn delete(doc: &mut NumberDoc) {
    set_feature(doc, KEY, None);
}

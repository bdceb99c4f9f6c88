//! `knm_sms` / `knm_mms` (`knm_im.erl`, `knm_providers:exec/2`): for `in_service` numbers the private `sms` /
//! `mms` feature is the public object when its `enabled` is true; an empty or disabled object
//! removes an existing feature; any other state removes it.
//!
//! Availability is decided in [`crate::features::available_features_for`] (carrier config
//! `features.<im>.enabled`); a requested but unavailable `sms` / `mms` is not an error, the
//! provider just does not run (`?REMOVED_DENIED_FEATURES`). Kazoo's optional "manual activation"
//! e-mail (`activation: manual`) is a notification Switchboard does not send.

use crate::doc::{NumberDoc, NumberState};

use super::{is_empty, is_true, non_empty, set_feature};

/// The two instant-messaging features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Im {
    /// `sms`.
    Sms,
    /// `mms`.
    Mms,
}

impl Im {
    /// The feature (and public key) name.
    pub fn key(self) -> &'static str {
        match self {
            Im::Sms => "sms",
            Im::Mms => "mms",
        }
    }
}

/// `knm_im:save/2`.
pub fn save(doc: &mut NumberDoc, im: Im) {
    if doc.state != NumberState::InService {
        return delete(doc, im);
    }
    let key = im.key();
    let public = non_empty(doc.public.get(key)).cloned();
    if is_empty(public.as_ref()) {
        return set_feature(doc, key, None);
    }
    if doc.features.get(key) == public.as_ref() {
        return;
    }
    let enabled = public.as_ref().is_some_and(|p| is_true(p.get("enabled")));
    set_feature(doc, key, if enabled { public } else { None });
}

/// `knm_im:delete/2`: the feature is removed.
pub fn delete(doc: &mut NumberDoc, im: Im) {
    set_feature(doc, im.key(), None);
}

//! `knm_rename_carrier` (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …)): the admin-only `carrier_name` public key changes the number's
//! carrier module, then disappears from the public fields ("one time" feature).
//!
//! The value is a carrier name with or without `knm_` / `wnm_` (`"telnyx"`, `"knm_telnyx"`,
//! `"local"`, `"bandwidth"` → `knm_bandwidth2` by the `knm_phone_number:from_json/1` rename); the module is set with
//! `set_module_name/2` (`knm_phone_number:set_module_name/2`: `knm_local` / `knm_mdn` add the `local` feature, others remove
//! it). A requester that is not an admin gets 403 `forbidden`; a name that is no carrier module
//! gets 400 `invalid` with cause `'<value>' is not known by the system`.
//!
//! Kazoo accepts any loadable Erlang module; its test renames to `gen_carrier` (the carrier
//! behaviour module). Switchboard accepts the carrier modules it knows
//! ([`crate::CarrierKind`]) and `knm_gen_carrier` (kept for that vector, K20); a number renamed
//! to a module without a [`crate::CarrierKind`] is never called at a carrier (its acquire and
//! disconnect are skipped, as Kazoo skips unloadable modules).

use serde_json::Value;

use crate::carriers::CarrierKind;
use crate::doc::NumberDoc;
use crate::error::Error;

use super::{non_empty, FeatureCtx};

const KEY: &str = "carrier_name";

/// The module a `carrier_name` value names (`maybe_prefix_carrier/1`).
pub fn module_for(value: &str) -> String {
    let mut name = value;
    loop {
        match name.strip_prefix("knm_").or_else(|| name.strip_prefix("wnm_")) {
            Some(rest) => name = rest,
            None => return format!("knm_{name}"),
        }
    }
}

fn is_known(module: &str) -> bool {
    module == "knm_gen_carrier" || CarrierKind::from_module(module).is_some()
}

/// `save/1`.
///
/// # Errors
/// 403 `forbidden` (not an admin), 400 `invalid` (unknown carrier).
pub fn save(doc: &mut NumberDoc, ctx: &FeatureCtx<'_>) -> Result<(), Error> {
    let Some(value) = non_empty(doc.public.get(KEY)) else { return Ok(()) };
    if !ctx.is_admin {
        return Err(Error::unauthorized());
    }
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let module = module_for(&text);
    if text.is_empty() || !is_known(&module) {
        return Err(Error::Invalid { reason: format!("'{text}' is not known by the system") });
    }
    doc.set_module_name(&module);
    doc.public.remove(KEY);
    Ok(())
}

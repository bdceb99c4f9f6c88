//! `lookup_account` (`knm_number:lookup_account/1`): who owns a number, for routing and `/identify`, with the number's
//! inbound settings (CNAM, prepend, ringback, force-outbound).

use e164::E164;
use serde_json::{Map, Value};

use super::{not_found, Ctx};
use crate::account::AccountId;
use crate::config::Config;
use crate::doc::{NumberDoc, NumberState, KNM_LOCAL};
use crate::error::Error;

/// What `lookup_account` (`knm_number:lookup_account/1`, `/identify`, routing) answers for a routable number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLookup {
    /// The owner.
    pub account_id: AccountId,
    /// The number.
    pub number: E164,
    /// `pending_port`: state `port_in` (or found only in a port request).
    pub pending_port: bool,
    /// `local`: module `knm_local` (true for port-request hits).
    pub local: bool,
    /// `inbound_cnam`: feature present and the carrier looks up CNAM.
    pub inbound_cnam: bool,
    /// `force_outbound` (`knm_number:is_force_outbound/3`).
    pub force_outbound: bool,
    /// `prepend`: `prepend.name` when `prepend.enabled`.
    pub prepend: Option<String>,
    /// `ringback_media`: `ringback.early`.
    pub ringback_media: Option<String>,
    /// `transfer_media`: `ringback.transfer`.
    pub transfer_media: Option<String>,
}

impl AccountLookup {
    /// `{account_id, number}` plus the routing properties, as `/identify` returns them.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("account_id".into(), Value::from(self.account_id.as_str()));
        m.insert("number".into(), Value::from(self.number.as_str()));
        m.insert("pending_port".into(), Value::from(self.pending_port));
        m.insert("local".into(), Value::from(self.local));
        m.insert("inbound_cnam".into(), Value::from(self.inbound_cnam));
        m.insert("force_outbound".into(), Value::from(self.force_outbound));
        for (k, v) in [
            ("prepend", &self.prepend),
            ("ringback_media", &self.ringback_media),
            ("transfer_media", &self.transfer_media),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), Value::from(v.clone()));
            }
        }
        Value::Object(m)
    }
}

pub(super) fn feature_str(doc: &NumberDoc, feature: &str, key: &str) -> Option<String> {
    doc.features.get(feature).and_then(|f| f.get(key)).and_then(Value::as_str).map(str::to_owned)
}

/// `knm_number:is_force_outbound/3` `is_force_outbound/3`.
pub(super) fn is_force_outbound(doc: &NumberDoc, config: &Config) -> bool {
    let local = doc.is_local_or_mdn();
    match doc.state {
        NumberState::PortIn => {
            config.force_port_in_outbound || (local && config.force_local_outbound)
        }
        NumberState::PortOut => {
            config.force_port_out_outbound || (local && config.force_local_outbound)
        }
        _ if local => config.force_local_outbound,
        _ => match doc.features.get("force_outbound") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => config.default_force_outbound,
        },
    }
}

/// `knm_number:lookup_account/1` `lookup_account`: who owns `number`, for routing and `/identify`.
///
/// `current` is the number document read with system auth; `port_request_owner` the account of
/// an open port request holding the number, if the caller found one (used only when there is no
/// document and `fetch_account_from_ports` is set). `should_lookup_cnam` is the carrier module's
/// answer (see `CarrierKind::should_lookup_cnam`).
///
/// # Errors
/// `not_found`, `unassigned`, `not_in_service` (naming the owner), `account_disabled`.
pub fn lookup_account(
    number: &E164,
    current: Option<&NumberDoc>,
    port_request_owner: Option<&AccountId>,
    should_lookup_cnam: bool,
    ctx: &Ctx<'_>,
) -> Result<AccountLookup, Error> {
    let Some(doc) = current else {
        return match port_request_owner {
            Some(owner) if ctx.config.fetch_account_from_ports => Ok(AccountLookup {
                account_id: owner.clone(),
                number: number.clone(),
                pending_port: true,
                local: true,
                inbound_cnam: false,
                force_outbound: true,
                prepend: None,
                ringback_media: None,
                transfer_media: None,
            }),
            _ => Err(not_found(number)),
        };
    };
    let Some(owner) = doc.assigned_to.clone() else {
        return Err(Error::Unassigned { number: number.to_string() });
    };
    if !matches!(
        doc.state,
        NumberState::PortIn | NumberState::InService | NumberState::PortOut | NumberState::Reserved
    ) {
        return Err(Error::NotInService { number: number.to_string(), account: owner.to_string() });
    }
    if ctx.accounts.get(&owner).is_some_and(|a| !a.enabled) {
        return Err(Error::AccountDisabled {
            number: number.to_string(),
            account: owner.to_string(),
        });
    }
    let prepend_enabled = doc
        .features
        .get("prepend")
        .and_then(|p| p.get("enabled"))
        .is_some_and(|e| e == &Value::Bool(true));
    Ok(AccountLookup {
        account_id: owner,
        number: number.clone(),
        pending_port: doc.state == NumberState::PortIn,
        local: doc.module_name == KNM_LOCAL,
        inbound_cnam: doc.features.contains_key("inbound_cnam") && should_lookup_cnam,
        force_outbound: is_force_outbound(doc, ctx.config),
        prepend: if prepend_enabled { feature_str(doc, "prepend", "name") } else { None },
        ringback_media: feature_str(doc, "ringback", "early"),
        transfer_media: feature_str(doc, "ringback", "transfer"),
    })
}

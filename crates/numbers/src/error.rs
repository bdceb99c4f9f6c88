//! The one error type of `numbers`, and its rendering as Kazoo's number-manager error JSON (`knm_errors`).

use serde_json::{Map, Value};

/// Everything a number operation can refuse or fail with.
///
/// The Kazoo errors (`knm_errors.erl`) keep Kazoo's names; [`Error::to_json`] renders each exactly as
/// `knm_errors:to_json/3` does (`knm_errors:to_json`): `{"code", "error", "cause"?, "message"?}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `knm_errors` `number_is_porting(N)`: the number is in an open port request (400).
    #[error("number {number} is porting")]
    NumberIsPorting {
        /// The number.
        number: String,
    },
    /// `knm_errors` `number_exists(N)`: create of a number that exists in a state that forbids it (409).
    #[error("number {number} already exists")]
    NumberExists {
        /// The number.
        number: String,
    },
    /// `knm_errors` `not_found`: no such number document (404).
    #[error("number {number} not found")]
    NotFound {
        /// The number.
        number: String,
    },
    /// `knm_errors` `not_reconcilable`: the input does not match `reconcile_regex` (`knm_converters:is_reconcilable/1`) (404).
    #[error("number {number} is not reconcilable")]
    NotReconcilable {
        /// The input as given.
        number: String,
    },
    /// `knm_errors` `unauthorized()`: 403 `forbidden`, with an optional cause (e.g. `state_for_create`).
    #[error("requestor is unauthorized to perform operation")]
    Unauthorized {
        /// The cause, when Kazoo gives one.
        cause: Option<String>,
    },
    /// `knm_errors` `service_restriction(N, Msg)` (402).
    #[error("{message}")]
    ServiceRestriction {
        /// The number.
        number: String,
        /// The restriction's message.
        message: String,
    },
    /// `knm_errors` `no_change_required` (400, no cause, as in Kazoo).
    #[error("no change required")]
    NoChangeRequired,
    /// `knm_errors` `invalid_state_transition` (400). `from`/`to` are `None` for the bare form without a cause
    /// (`knm_number_states:change_state/2` fall-through).
    #[error("invalid state transition{}", transition_suffix(.from, .to))]
    InvalidStateTransition {
        /// The current state (`(nothing)` when undefined, `'MDN'` for the MDN guard).
        from: Option<String>,
        /// The target state.
        to: Option<String>,
    },
    /// `knm_errors` `assign_failure(_, E)` (400): e.g. cause `field_undefined` when `assign_to` is missing or
    /// not an account id.
    #[error("invalid account to assign to: {cause}")]
    AssignFailure {
        /// The cause.
        cause: String,
    },
    /// `knm_errors` `invalid(N, Reason)` (400).
    #[error("invalid: {reason}")]
    Invalid {
        /// The reason.
        reason: String,
    },
    /// `knm_errors` `by_carrier(Mod, E, N)` (500 `unspecified_fault`, message `fault by carrier`, cause N).
    #[error("fault by carrier {module} for {number}: {reason}")]
    ByCarrier {
        /// The carrier module (only logged by Kazoo, not rendered).
        module: String,
        /// The carrier's reason (only logged by Kazoo, not rendered).
        reason: String,
        /// The number.
        number: String,
    },
    /// A purchase whose outcome is not known: the carrier took the order (`order_id`) but did
    /// not confirm it in time, so it may still complete. Rendered as `by_carrier` (500
    /// `unspecified_fault`, message `fault by carrier`, cause the number); the store layer
    /// records the order on the number (`pvt_carrier_data.pending_order`) and the next acquire
    /// of that number follows the same order instead of placing a second one.
    #[error("purchase of {number} from {module} pending: order {order_id} not confirmed yet")]
    PurchasePending {
        /// The carrier module.
        module: String,
        /// The number, as the carrier writes it.
        number: String,
        /// The carrier's order id.
        order_id: String,
    },
    /// `knm_errors` `not_enough_credit` (402).
    #[error("account {account} does not have enough credit to perform the operation")]
    NotEnoughCredit {
        /// The account.
        account: String,
        /// The missing units.
        units: String,
    },
    /// `knm_errors` fall-through: any other reason (`carrier_not_specified`, `provisioning_disabled`,
    /// `missing_provider_url`, …) is a 500 `unspecified_fault` whose message is the reason name.
    #[error("{reason}")]
    Unspecified {
        /// The reason name (becomes `message`).
        reason: String,
        /// The extra term, if any (becomes `cause`).
        cause: Option<String>,
    },
    /// A carrier module Kazoo knows and that this build does not integrate yet (an external
    /// carrier): an honest refusal, rendered as a 500 `unspecified_fault`.
    #[error("carrier module {module} not available in this build")]
    CarrierUnavailable {
        /// The Kazoo module name.
        module: String,
    },
    /// A carrier search found nothing / cannot answer (Kazoo's `{error, not_available}`).
    #[error("no numbers available from {module}")]
    NotAvailable {
        /// The Kazoo module name.
        module: String,
    },
    /// `knm_number:lookup_account/1` `lookup_account`: the number has no owner.
    #[error("number {number} is not assigned to an account")]
    Unassigned {
        /// The number.
        number: String,
    },
    /// `knm_number:lookup_account/1` `lookup_account`: the number's state does not route.
    #[error("number {number} is not in service (owner {account})")]
    NotInService {
        /// The number.
        number: String,
        /// Its owner.
        account: String,
    },
    /// `knm_number:lookup_account/1` `lookup_account`: the owner account is disabled.
    #[error("account {account} owning {number} is disabled")]
    AccountDisabled {
        /// The number.
        number: String,
        /// Its owner.
        account: String,
    },
    /// A value that must be an account id is not one.
    #[error("invalid account id {value:?}")]
    InvalidAccountId {
        /// The refused value.
        value: String,
    },
    /// A stored document cannot be read as a number document (names the document and the field).
    #[error("number document {id}: {reason}")]
    Decode {
        /// The document id (or `?`).
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A configuration value has the wrong type (names the key).
    #[error("number_manager config key {key}: {reason}")]
    Config {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A compare-and-swap write lost its `_rev` race on every attempt, or the revision the caller
    /// pinned is not the stored one: 409, Crossbar's `datastore_conflict` (the client may retry).
    #[error("conflict on {id}: {cause}")]
    Conflict {
        /// The contended document (a number, or a pool or account-copy document id).
        id: String,
        /// What happened.
        cause: String,
    },
    /// The document store failed (`knm_errors` `database_error`, 500).
    #[error(transparent)]
    Store(docstore::Error),
}

impl From<docstore::Error> for Error {
    /// A refused account id is [`Error::InvalidAccountId`] (400), not a store failure.
    fn from(err: docstore::Error) -> Error {
        match err {
            docstore::Error::InvalidAccountId { value } => Error::InvalidAccountId { value },
            err => Error::Store(err),
        }
    }
}

fn transition_suffix(from: &Option<String>, to: &Option<String>) -> String {
    match (from, to) {
        (Some(from), Some(to)) => format!(" from {from} to {to}"),
        _ => String::new(),
    }
}

impl Error {
    /// The HTTP-like status code Kazoo attaches (`knm_errors:to_json`).
    pub fn code(&self) -> u16 {
        match self {
            Error::NumberIsPorting { .. }
            | Error::NoChangeRequired
            | Error::InvalidStateTransition { .. }
            | Error::AssignFailure { .. }
            | Error::Invalid { .. }
            | Error::Unassigned { .. }
            | Error::NotInService { .. }
            | Error::AccountDisabled { .. }
            | Error::InvalidAccountId { .. } => 400,
            Error::NumberExists { .. } | Error::Conflict { .. } => 409,
            Error::NotFound { .. } | Error::NotReconcilable { .. } => 404,
            Error::Unauthorized { .. } => 403,
            Error::ServiceRestriction { .. } | Error::NotEnoughCredit { .. } => 402,
            _ => 500,
        }
    }

    /// The invalid-state-transition error for `from` → `to` (`knm_errors`, `(nothing)` for no state).
    pub fn invalid_transition(from: Option<&str>, to: &str) -> Self {
        Error::InvalidStateTransition {
            from: Some(from.unwrap_or("(nothing)").to_owned()),
            to: Some(to.to_owned()),
        }
    }

    /// 403 `forbidden` without a cause.
    pub fn unauthorized() -> Self {
        Error::Unauthorized { cause: None }
    }

    /// Whether this error is the bare atom Kazoo keeps in bulk results (`knm_numbers`' bulk errors): `not_found` or
    /// `not_reconcilable`.
    pub fn bare_atom(&self) -> Option<&'static str> {
        match self {
            Error::NotFound { .. } => Some("not_found"),
            Error::NotReconcilable { .. } => Some("not_reconcilable"),
            _ => None,
        }
    }

    /// The `knm_errors` error JSON: `{"code", "error", "cause"?, "message"?}` in that key order, exactly as
    /// `knm_errors:to_json/3` builds it.
    pub fn to_json(&self) -> Value {
        let (error, message, cause): (&str, String, Option<String>) = match self {
            Error::NumberIsPorting { number } => {
                ("number_is_porting", format!("number {number} is porting"), Some(number.clone()))
            }
            Error::NumberExists { number } => {
                ("number_exists", format!("number {number} already exists"), Some(number.clone()))
            }
            Error::NotFound { number } => {
                ("not_found", format!("number {number} not found"), Some(number.clone()))
            }
            Error::NotReconcilable { number } => (
                "not_reconcilable",
                format!("number {number} is not reconcilable"),
                Some(number.clone()),
            ),
            Error::Unauthorized { cause } => (
                "forbidden",
                "requestor is unauthorized to perform operation".to_owned(),
                cause.clone(),
            ),
            Error::ServiceRestriction { number, message } => {
                ("service_restriction", message.clone(), Some(number.clone()))
            }
            Error::NoChangeRequired => {
                ("no_change_required", "no change required".to_owned(), None)
            }
            Error::InvalidStateTransition { from, to } => (
                "invalid_state_transition",
                "invalid state transition".to_owned(),
                match (from, to) {
                    (Some(from), Some(to)) => Some(format!("from {from} to {to}")),
                    _ => None,
                },
            ),
            Error::AssignFailure { cause } => {
                ("assign_failure", "invalid account to assign to".to_owned(), Some(cause.clone()))
            }
            Error::Invalid { reason } => ("invalid", "invalid".to_owned(), Some(reason.clone())),
            Error::ByCarrier { number, .. } | Error::PurchasePending { number, .. } => {
                ("unspecified_fault", "fault by carrier".to_owned(), Some(number.clone()))
            }
            Error::NotEnoughCredit { account, units } => (
                "not_enough_credit",
                format!("account {account} does not have enough credit to perform the operation"),
                Some(units.clone()),
            ),
            Error::Unspecified { reason, cause } => {
                ("unspecified_fault", reason.clone(), cause.clone())
            }
            Error::CarrierUnavailable { module } => (
                "unspecified_fault",
                "carrier module not available in this build".to_owned(),
                Some(module.clone()),
            ),
            Error::NotAvailable { module } => {
                ("unspecified_fault", "not_available".to_owned(), Some(module.clone()))
            }
            Error::Unassigned { number } => {
                ("unassigned", "number is not assigned".to_owned(), Some(number.clone()))
            }
            Error::NotInService { account, .. } => {
                ("not_in_service", "number is not in service".to_owned(), Some(account.clone()))
            }
            Error::AccountDisabled { account, .. } => {
                ("account_disabled", "account is disabled".to_owned(), Some(account.clone()))
            }
            Error::InvalidAccountId { value } => {
                ("assign_failure", "invalid account to assign to".to_owned(), Some(value.clone()))
            }
            Error::Decode { id, reason } => {
                ("unspecified_fault", "database_error".to_owned(), Some(format!("{id}: {reason}")))
            }
            Error::Config { key, reason } => {
                ("unspecified_fault", "config_error".to_owned(), Some(format!("{key}: {reason}")))
            }
            Error::Conflict { cause, .. } => {
                ("datastore_conflict", "conflicting documents".to_owned(), Some(cause.clone()))
            }
            Error::Store(e) => {
                ("unspecified_fault", "database_error".to_owned(), Some(e.to_string()))
            }
        };
        let mut map = Map::new();
        map.insert("code".into(), Value::from(self.code()));
        map.insert("error".into(), Value::from(error));
        if let Some(cause) = cause {
            map.insert("cause".into(), Value::from(cause));
        }
        map.insert("message".into(), Value::from(message));
        Value::Object(map)
    }

    /// The error as a bulk result value (`knm_numbers`' bulk errors, `cb_phone_numbers_v2`'s success replies): the bare strings `"not_found"` /
    /// `"not_reconcilable"` for those two, the `knm_errors` JSON for everything else.
    pub fn to_bulk_json(&self) -> Value {
        match self.bare_atom() {
            Some(atom) => Value::from(atom),
            None => self.to_json(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A lost compare-and-swap race (or a stale pinned revision) is a 409 `datastore_conflict`,
    /// the client's to retry, never a 500.
    #[test]
    fn a_conflict_is_a_409_datastore_conflict() {
        let err = Error::Conflict { id: "+15551233322".into(), cause: "kept changing".into() };
        assert_eq!(err.code(), 409);
        assert_eq!(
            err.to_json(),
            json!({"code": 409, "error": "datastore_conflict", "cause": "kept changing", "message": "conflicting documents"})
        );
    }

    /// `knm_errors:to_json`: every row of the table, shape and key order.
    #[test]
    fn s9_1_error_json_table() {
        let n = "+15551233322".to_owned();
        let cases: Vec<(Error, Value)> = vec![
            (
                Error::NumberIsPorting { number: n.clone() },
                json!({"code":400,"error":"number_is_porting","cause":n,"message":format!("number {n} is porting")}),
            ),
            (
                Error::NumberExists { number: n.clone() },
                json!({"code":409,"error":"number_exists","cause":n,"message":format!("number {n} already exists")}),
            ),
            (
                Error::NotFound { number: n.clone() },
                json!({"code":404,"error":"not_found","cause":n,"message":format!("number {n} not found")}),
            ),
            (
                Error::NotReconcilable { number: "1000".into() },
                json!({"code":404,"error":"not_reconcilable","cause":"1000","message":"number 1000 is not reconcilable"}),
            ),
            (
                Error::unauthorized(),
                json!({"code":403,"error":"forbidden","message":"requestor is unauthorized to perform operation"}),
            ),
            (
                Error::Unauthorized { cause: Some("state_for_create".into()) },
                json!({"code":403,"error":"forbidden","cause":"state_for_create","message":"requestor is unauthorized to perform operation"}),
            ),
            (
                Error::ServiceRestriction { number: n.clone(), message: "nope".into() },
                json!({"code":402,"error":"service_restriction","cause":n,"message":"nope"}),
            ),
            (
                Error::NoChangeRequired,
                json!({"code":400,"error":"no_change_required","message":"no change required"}),
            ),
            (
                Error::invalid_transition(Some("available"), "released"),
                json!({"code":400,"error":"invalid_state_transition","cause":"from available to released","message":"invalid state transition"}),
            ),
            (
                Error::invalid_transition(None, "reserved"),
                json!({"code":400,"error":"invalid_state_transition","cause":"from (nothing) to reserved","message":"invalid state transition"}),
            ),
            (
                Error::InvalidStateTransition { from: None, to: None },
                json!({"code":400,"error":"invalid_state_transition","message":"invalid state transition"}),
            ),
            (
                Error::AssignFailure { cause: "field_undefined".into() },
                json!({"code":400,"error":"assign_failure","cause":"field_undefined","message":"invalid account to assign to"}),
            ),
            (
                Error::Invalid { reason: "'blabla' is not known by the system".into() },
                json!({"code":400,"error":"invalid","cause":"'blabla' is not known by the system","message":"invalid"}),
            ),
            (
                Error::ByCarrier {
                    module: "knm_voip_innovations".into(),
                    reason: "Number currently available".into(),
                    number: n.clone(),
                },
                json!({"code":500,"error":"unspecified_fault","cause":n,"message":"fault by carrier"}),
            ),
            (
                Error::NotEnoughCredit { account: "A".into(), units: "10".into() },
                json!({"code":402,"error":"not_enough_credit","cause":"10","message":"account A does not have enough credit to perform the operation"}),
            ),
            (
                Error::Unspecified { reason: "carrier_not_specified".into(), cause: None },
                json!({"code":500,"error":"unspecified_fault","message":"carrier_not_specified"}),
            ),
        ];
        for (err, want) in cases {
            let got = err.to_json();
            assert_eq!(got, want, "{err}");
            let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
            let want_keys: Vec<&String> = want.as_object().unwrap().keys().collect();
            assert_eq!(keys, want_keys, "key order of {err}");
        }
    }

    /// `knm_numbers`' bulk errors: bulk results keep `not_found` / `not_reconcilable` as bare atoms.
    #[test]
    fn s9_2_bare_atoms_in_bulk() {
        assert_eq!(Error::NotFound { number: "+1".into() }.to_bulk_json(), json!("not_found"));
        assert_eq!(
            Error::NotReconcilable { number: "NOT a number".into() }.to_bulk_json(),
            json!("not_reconcilable")
        );
        assert_eq!(Error::NoChangeRequired.to_bulk_json()["code"], json!(400));
    }
}

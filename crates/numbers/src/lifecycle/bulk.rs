//! Operations on many numbers (`knm_numbers.erl`, `knm_numbers`' bulk result shape): the inputs split into reconcilable
//! numbers and failures (`knm_converters:is_reconcilable/1`), then each number decided on its own, failures collected per number.

use std::collections::BTreeMap;

use e164::{Converters, E164};
use serde_json::{Map, Value};

use super::{transition, Ctx, Decision, Operation};
use crate::doc::NumberDoc;
use crate::error::Error;

/// The result of a bulk operation (`knm_numbers`' bulk result shape, `cb_phone_numbers_v2`'s success replies): per number, a decision or an error.
#[derive(Debug, Default)]
pub struct BulkOutcome {
    /// Numbers that succeeded, by normalized number.
    pub ok: BTreeMap<String, Decision>,
    /// Numbers that failed, by normalized number (by the input as given for `not_reconcilable`).
    pub ko: BTreeMap<String, Error>,
}

impl BulkOutcome {
    /// The collection JSON of `cb_phone_numbers_v2`'s success replies: `{"success": {num: public JSON}, "error": {num: error}}`, empty
    /// parts omitted; `not_found` / `not_reconcilable` errors are bare strings (`knm_numbers`' bulk errors).
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        if !self.ok.is_empty() {
            let success: Map<String, Value> =
                self.ok.iter().map(|(n, d)| (n.clone(), d.to_public_json())).collect();
            out.insert("success".into(), Value::Object(success));
        }
        if !self.ko.is_empty() {
            let error: Map<String, Value> =
                self.ko.iter().map(|(n, e)| (n.clone(), e.to_bulk_json())).collect();
            out.insert("error".into(), Value::Object(error));
        }
        Value::Object(out)
    }
}

/// Inputs split by `knm_converters:is_reconcilable/1`: reconcilable numbers (normalized, duplicates collapsed) and the failures
/// keyed by the input as given.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Normalized, unique, in first-seen order.
    pub numbers: Vec<E164>,
    /// `not_reconcilable`, keyed by the original input.
    pub ko: BTreeMap<String, Error>,
}

/// `knm_numbers:new/4` + `are_reconcilable/1`: normalizes each input with the configured
/// converters; inputs that are not reconcilable (or do not normalize to E.164) fail as
/// `not_reconcilable` keyed by the input.
pub fn split_reconcilable<S: AsRef<str>>(inputs: &[S], converters: &Converters) -> Reconciled {
    let mut out = Reconciled::default();
    for input in inputs {
        let input = input.as_ref();
        match converters.is_reconcilable(input).then(|| converters.to_e164(input)).flatten() {
            Some(n) => {
                if !out.numbers.contains(&n) {
                    out.numbers.push(n);
                }
            }
            None => {
                out.ko
                    .insert(input.to_owned(), Error::NotReconcilable { number: input.to_owned() });
            }
        }
    }
    out
}

/// Decides `op` for many numbers (`knm_numbers`' bulk result shape): each number independently, failures collected per
/// number. `docs` gives the stored document of each reconcilable number (`None` = not found).
pub fn transition_many<'d, I>(items: I, op: &Operation, ctx: &Ctx<'_>) -> BulkOutcome
where
    I: IntoIterator<Item = (E164, Option<&'d NumberDoc>)>,
{
    let mut out = BulkOutcome::default();
    for (number, current) in items {
        match transition(&number, current, op, ctx) {
            Ok(d) => {
                out.ok.insert(number.into_string(), d);
            }
            Err(e) => {
                out.ko.insert(number.into_string(), e);
            }
        }
    }
    out
}

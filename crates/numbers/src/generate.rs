//! Number generation and import, as documents to write (`kazoo_number_manager_maintenance:generate_numbers/4`): `generate_numbers` for the
//! `knm_managed` / `knm_inum` pools, `knm_managed:import_numbers/2`, and a CSV import for
//! `knm_inventory` with a per-row report (every row is either a document or a named error).

use std::collections::BTreeMap;
use std::io::Read;

use e164::{Converters, E164};
use serde_json::{json, Map, Value};

use crate::account::AccountId;
use crate::carriers::Pool;
use crate::doc::{NumberDoc, NumberState};
use crate::error::Error;

/// The largest batch [`generate_numbers`] makes at once.
pub const MAX_GENERATE: u64 = 100_000;

fn pool_doc(number: &str, account: &AccountId) -> Value {
    json!({
        "_id": number,
        "pvt_account_id": account.as_str(),
        "pvt_state": NumberState::Available.as_str(),
        "pvt_type": "number",
    })
}

/// `knm_managed:generate_numbers/3` / `knm_inum:generate_numbers/3`: `quantity` consecutive pool
/// documents `{_id: "+<n>", pvt_account_id, pvt_state: available, pvt_type: number}` from `start`
/// (written to [`Pool::db`]).
///
/// # Errors
/// [`Error::Invalid`] when `quantity` exceeds [`MAX_GENERATE`], the numbers would not be E.164,
/// or, for inum, `start` is not 15 digits beginning `8835100`.
pub fn generate_numbers(
    pool: Pool,
    account: &AccountId,
    start: u64,
    quantity: u64,
) -> Result<Vec<Value>, Error> {
    if quantity > MAX_GENERATE {
        return Err(Error::Invalid {
            reason: format!("quantity {quantity} exceeds {MAX_GENERATE}"),
        });
    }
    if pool == Pool::Inum {
        let s = start.to_string();
        if s.len() != 15 || !s.starts_with("8835100") {
            return Err(Error::Invalid {
                reason: format!("inum start {start} must be 15 digits beginning 8835100"),
            });
        }
    }
    let last = start
        .checked_add(quantity.saturating_sub(1))
        .ok_or_else(|| Error::Invalid { reason: "number range overflows".into() })?;
    if quantity > 0 && E164::new(format!("+{last}")).is_err() {
        return Err(Error::Invalid { reason: format!("+{last} is not an E.164 number") });
    }
    Ok((start..start + quantity).map(|n| pool_doc(&format!("+{n}"), account)).collect())
}

/// Why one number of an import was refused (`{reason, message}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// Machine reason (`not_reconcilable`, `duplicate`, …, or the store's error).
    pub reason: String,
    /// Human message.
    pub message: String,
}

/// The plan and report of `knm_managed:import_numbers/2`.
#[derive(Debug, Default)]
pub struct PoolImport {
    /// Pool documents to write, by normalized number.
    pub docs: BTreeMap<String, Value>,
    /// Refused inputs, keyed as given.
    pub errors: BTreeMap<String, ImportError>,
}

impl PoolImport {
    /// Kazoo's report `{success: {n: {}}, errors: {n: {reason, message}}}` for the numbers the
    /// store saved (`saved`) and all refusals (`store_errors` added by the store).
    pub fn report(&self, saved: &[String], store_errors: &BTreeMap<String, ImportError>) -> Value {
        let success: Map<String, Value> =
            saved.iter().map(|n| (n.clone(), Value::Object(Map::new()))).collect();
        let errors: Map<String, Value> = self
            .errors
            .iter()
            .chain(store_errors)
            .map(|(n, e)| (n.clone(), json!({"reason": e.reason, "message": e.message})))
            .collect();
        json!({"success": success, "errors": errors})
    }
}

/// `knm_managed:import_numbers/2` (and the inum equivalent): one pool document per reconcilable
/// number; others are reported.
pub fn import_pool_numbers<S: AsRef<str>>(
    account: &AccountId,
    numbers: &[S],
    converters: &Converters,
) -> PoolImport {
    let mut out = PoolImport::default();
    for input in numbers {
        let input = input.as_ref();
        match converters.is_reconcilable(input).then(|| converters.to_e164(input)).flatten() {
            Some(n) if out.docs.contains_key(n.as_str()) => {
                out.errors.insert(
                    input.to_owned(),
                    ImportError {
                        reason: "duplicate".into(),
                        message: format!("{n} listed twice"),
                    },
                );
            }
            Some(n) => {
                out.docs.insert(n.to_string(), pool_doc(n.as_str(), account));
            }
            None => {
                out.errors.insert(
                    input.to_owned(),
                    ImportError {
                        reason: "not_reconcilable".into(),
                        message: format!("number {input} is not reconcilable"),
                    },
                );
            }
        }
    }
    out
}

/// One refused CSV row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The line in the file (1 = the header).
    pub line: u64,
    /// The row's `number` cell, as given.
    pub number: String,
    /// What is wrong.
    pub reason: String,
}

/// The result of [`parse_inventory_csv`]: documents to create, and every refused row, named.
#[derive(Debug, Default)]
pub struct InventoryImport {
    /// New number documents (module `knm_inventory` unless the row says otherwise), with the line
    /// each came from.
    pub docs: Vec<(u64, NumberDoc)>,
    /// Refused rows.
    pub errors: Vec<RowError>,
}

/// Columns with a meaning; any other column becomes a public field of the number (nothing in
/// the file is lost).
const KNOWN_COLUMNS: &[&str] = &["number", "state", "account_id", "module_name"];

/// Parses an inventory CSV: a header row with at least `number`; optional `state` (default
/// `available`; `available`, `reserved`, `in_service`, `port_in` or `aging`), `account_id`
/// (required for `reserved` / `in_service` / `port_in`, refused for `available`), `module_name`
/// (default `knm_inventory`); other columns are kept as public fields (empty cells skipped).
/// Each row becomes a new document created `now`, or a [`RowError`] naming the line.
///
/// # Errors
/// [`Error::Invalid`] when the file cannot be read as CSV at all or has no `number` column.
pub fn parse_inventory_csv<R: Read>(
    input: R,
    converters: &Converters,
    now: i64,
) -> Result<InventoryImport, Error> {
    let mut reader =
        csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(input);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| Error::Invalid { reason: format!("csv header: {e}") })?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let number_col = col("number")
        .ok_or_else(|| Error::Invalid { reason: "csv has no `number` column".into() })?;
    let (state_col, account_col, module_col) =
        (col("state"), col("account_id"), col("module_name"));
    let mut out = InventoryImport::default();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (idx, record) in reader.records().enumerate() {
        let line = idx as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                out.errors.push(RowError {
                    line,
                    number: String::new(),
                    reason: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        let cell = |c: Option<usize>| c.and_then(|c| record.get(c)).filter(|v| !v.is_empty());
        let raw_number = record.get(number_col).unwrap_or("").to_owned();
        let fail = |reason: String| RowError { line, number: raw_number.clone(), reason };
        if record.len() > headers.len() {
            out.errors.push(fail(format!("{} cells for {} columns", record.len(), headers.len())));
            continue;
        }
        let Some(number) = converters
            .is_reconcilable(&raw_number)
            .then(|| converters.to_e164(&raw_number))
            .flatten()
        else {
            out.errors.push(fail("not reconcilable".into()));
            continue;
        };
        if let Some(first) = seen.get(number.as_str()) {
            out.errors.push(fail(format!("duplicate of line {first}")));
            continue;
        }
        let state = match cell(state_col).map(str::parse::<NumberState>).transpose() {
            Ok(s) => s.unwrap_or(NumberState::Available),
            Err(e) => {
                out.errors.push(fail(e.to_string()));
                continue;
            }
        };
        let account = match cell(account_col).map(AccountId::parse).transpose() {
            Ok(a) => a,
            Err(e) => {
                out.errors.push(fail(e.to_string()));
                continue;
            }
        };
        let needs_owner =
            matches!(state, NumberState::Reserved | NumberState::InService | NumberState::PortIn);
        match (state, &account) {
            (NumberState::Available | NumberState::Aging, Some(_)) => {
                out.errors.push(fail(format!("{state} numbers have no account_id")));
                continue;
            }
            (_, None) if needs_owner => {
                out.errors.push(fail(format!("{state} numbers need an account_id")));
                continue;
            }
            (
                NumberState::Discovery
                | NumberState::PortOut
                | NumberState::Released
                | NumberState::Deleted,
                _,
            ) => {
                out.errors.push(fail(format!("cannot import numbers in state {state}")));
                continue;
            }
            _ => {}
        }
        let module = cell(module_col).unwrap_or("knm_inventory");
        let mut doc = NumberDoc::new(&number, state, module, now);
        if let Some(owner) = account {
            if state == NumberState::Reserved {
                doc.push_reserve_history(&owner);
            }
            doc.assigned_to = Some(owner);
        }
        for (i, h) in headers.iter().enumerate() {
            if KNOWN_COLUMNS.contains(&h.as_str()) {
                continue;
            }
            if let Some(v) = record.get(i).filter(|v| !v.is_empty()) {
                doc.public.insert(h.clone(), Value::from(v));
            }
        }
        seen.insert(number.to_string(), line);
        out.docs.push((line, doc));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(n: u8) -> AccountId {
        AccountId::parse(&format!("account000000000000000000000000{n}")).unwrap()
    }

    /// `kazoo_number_manager_maintenance:generate_numbers/4`: managed generation.
    #[test]
    fn s16_1_generate_managed() {
        let docs = generate_numbers(Pool::Managed, &acc(1), 14_158_867_900, 3).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(
            docs[2],
            json!({"_id": "+14158867902", "pvt_account_id": acc(1).as_str(),
                   "pvt_state": "available", "pvt_type": "number"})
        );
        assert!(generate_numbers(Pool::Managed, &acc(1), 1, 0).unwrap().is_empty());
        assert!(generate_numbers(Pool::Managed, &acc(1), 1, MAX_GENERATE + 1).is_err());
    }

    /// `kazoo_number_manager_maintenance:generate_numbers/4`: inum start must be 15 digits beginning 8835100.
    #[test]
    fn s16_1_generate_inum() {
        assert_eq!(generate_numbers(Pool::Inum, &acc(1), 883_510_000_000_001, 2).unwrap().len(), 2);
        let e = generate_numbers(Pool::Inum, &acc(1), 14_158_867_900, 1).unwrap_err();
        assert!(e.to_string().contains("8835100"), "{e}");
    }

    /// `kazoo_number_manager_maintenance:generate_numbers/4` `import_numbers`: success and errors per number.
    #[test]
    fn s16_1_import_pool_numbers() {
        let conv = Converters::kazoo_defaults();
        let plan = import_pool_numbers(&acc(1), &["4158867900", "1000", "+14158867900"], &conv);
        assert_eq!(plan.docs.len(), 1);
        assert_eq!(plan.errors["1000"].reason, "not_reconcilable");
        assert_eq!(plan.errors["+14158867900"].reason, "duplicate");
        let report = plan.report(&["+14158867900".into()], &BTreeMap::new());
        assert_eq!(report["success"], json!({"+14158867900": {}}));
        assert_eq!(report["errors"]["1000"]["reason"], "not_reconcilable");
    }

    /// Inventory CSV: good rows become documents; each bad row is named by line; extra columns
    /// are kept.
    #[test]
    fn inventory_csv_report() {
        let conv = Converters::kazoo_defaults();
        let csv = "number,state,account_id,rate_center\n\
                   4158867900,,,SAN FRANCISCO\n\
                   NOT a number,,,\n\
                   +14158867900,,,\n\
                   4158867901,reserved,account0000000000000000000000002,\n\
                   4158867902,reserved,,\n\
                   4158867903,bogus,,\n\
                   4158867904,available,account0000000000000000000000002,\n\
                   4158867905,,not-an-account,\n\
                   4158867906,,,,extra\n";
        let out = parse_inventory_csv(csv.as_bytes(), &conv, 7).unwrap();
        let good: Vec<(u64, &str)> = out.docs.iter().map(|(l, d)| (*l, d.id.as_str())).collect();
        assert_eq!(good, [(2, "+14158867900"), (5, "+14158867901")]);
        assert_eq!(out.docs[0].1.public["rate_center"], "SAN FRANCISCO");
        assert_eq!(out.docs[0].1.module_name, "knm_inventory");
        assert_eq!(out.docs[1].1.state, NumberState::Reserved);
        assert_eq!(out.docs[1].1.assigned_to, Some(acc(2)));
        let bad: Vec<u64> = out.errors.iter().map(|e| e.line).collect();
        assert_eq!(bad, [3, 4, 6, 7, 8, 9, 10]);
        assert!(out.errors[1].reason.contains("duplicate of line 2"), "{:?}", out.errors[1]);
        assert_eq!(out.docs.len() + out.errors.len(), 9, "every row accounted for");
        assert!(parse_inventory_csv("num\n1".as_bytes(), &conv, 7).is_err());
    }
}

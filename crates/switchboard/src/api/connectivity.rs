//! `/v2/accounts/{A}/connectivity[/{id}]`: the trunkstore document (`pvt_type: sys_info`, as
//! Kazoo's `cb_connectivity` stores it), validated against `connectivity.json`. Every DID a
//! document lists under `servers[].DIDs` must be a number the account owns; listed numbers are
//! marked `pvt_used_by: trunkstore`, and released from it when no connectivity document of the
//! account lists them any more. Number documents are updated through the number store
//! (`assign_to_app`), which writes the number database and the owner's copy.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use docstore::{DbName, DesignKind, SharedStore};
use e164::{Converters, E164};
use numbers::store::{NumberStore, RunOptions};
use numbers::Operation;
use serde_json::{Map, Value};

use super::body::CrossbarBody;
use super::docs::{self, Kind, Place, UpdateMode};
use super::envelope::Envelope;
use super::error::{add_validation, knm_error, ApiError};
use super::phone_numbers::number_store;
use super::resources::{account_place, doc_envelope};
use super::schema::Schema;
use super::AppState;

const KIND: Kind =
    Kind { pvt_type: "sys_info", schema: Schema::Connectivity, design: DesignKind::Account };

/// The app name written to `pvt_used_by`.
const APP: &str = "trunkstore";

/// The DIDs a connectivity document lists, as written (keys of `servers[].DIDs`).
fn dids_of(doc: &Map<String, Value>) -> BTreeSet<String> {
    doc.get("servers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|server| server.get("DIDs").and_then(Value::as_object))
        .flat_map(|dids| dids.keys().cloned())
        .collect()
}

/// A DID as its number document's id: E.164 (`+14158867900`), with the configured converters
/// (`system_config/number_manager.e164_converters`), as the number manager reads it.
fn normalize(converters: &Converters, did: &str) -> Option<String> {
    converters.to_e164(did).map(|e| e.as_str().to_owned())
}

/// Where a number's document lives.
fn number_place(number: &str) -> Option<DbName> {
    docstore::naming::numbers_db(number)
}

/// The states in which a number counts as owned by its `pvt_assigned_to`.
const OWNED_STATES: &[&str] = &["in_service", "reserved", "port_in"];

fn state_of(doc: &Value) -> &str {
    doc.get("pvt_state")
        .or_else(|| doc.get("pvt_number_state"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Checks every DID of `doc` is a number `account` owns and no other app uses; the validation
/// errors name `servers.{i}.DIDs.{did}`.
async fn check_dids(
    store: &SharedStore,
    converters: &Converters,
    account: &str,
    doc: &Map<String, Value>,
) -> Result<(), ApiError> {
    let mut errors = Map::new();
    let servers = doc.get("servers").and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, server) in servers.iter().enumerate() {
        let Some(dids) = server.get("DIDs").and_then(Value::as_object) else { continue };
        for did in dids.keys() {
            let field = format!("servers.{i}.DIDs.{did}");
            let Some(number) = normalize(converters, did) else {
                add_validation(
                    &mut errors,
                    &field,
                    "pattern",
                    format!("{did} is not a phone number"),
                    None,
                );
                continue;
            };
            let Some(db) = number_place(&number) else {
                add_validation(
                    &mut errors,
                    &field,
                    "pattern",
                    format!("{did} is not a phone number"),
                    None,
                );
                continue;
            };
            let found = match store.get(&db, &number).await {
                Ok(doc) => doc,
                Err(docstore::Error::DbNotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let owned = found.as_ref().is_some_and(|n| {
                n.get("pvt_assigned_to").and_then(Value::as_str) == Some(account)
                    && OWNED_STATES.contains(&state_of(n))
            });
            if !owned {
                add_validation(
                    &mut errors,
                    &field,
                    "not_owned",
                    format!("number {number} is not in service on this account"),
                    None,
                );
                continue;
            }
            let used_by = found
                .as_ref()
                .and_then(|n| n.get("pvt_used_by"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !used_by.is_empty() && used_by != APP {
                add_validation(
                    &mut errors,
                    &field,
                    "in_use",
                    format!("number {number} is used by {used_by}"),
                    Some(Value::String(used_by.to_owned())),
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Sets (`Some(APP)`) or clears (`None`) `pvt_used_by` on one number through the number store
/// (`assign_to_app`, as the system): the store writes the number database and the owner's copy
/// with its compare-and-swap. Clearing only takes the number from this app: it is made on the
/// revision that was read using [`APP`], and re-read when a concurrent write moved the number on
/// (the store's compare-and-swap budget, then a 409). A missing number is left alone.
async fn set_used_by(
    numbers: &NumberStore,
    number: &E164,
    app: Option<&str>,
) -> Result<(), ApiError> {
    let op = Operation::AssignToApp { used_by: app.map(str::to_owned) };
    for attempt in 0..docstore::CAS_ATTEMPTS {
        docstore::cas_pause(attempt).await;
        let Some(doc) = numbers.load(number).await.map_err(knm_error)? else { return Ok(()) };
        let current = doc.used_by.as_deref().unwrap_or_default();
        let unchanged = match app {
            Some(app) => current == app,
            None => current != APP,
        };
        if unchanged {
            return Ok(());
        }
        let opts = RunOptions { expected_rev: doc.rev.clone(), ..RunOptions::default() };
        match numbers.apply(number, &op, &opts).await {
            Ok(_) => return Ok(()),
            Err(numbers::Error::Conflict { .. }) => continue,
            Err(e) => return Err(knm_error(e)),
        }
    }
    Err(ApiError::Conflict(format!("number {number} kept changing while marking it used by {APP}")))
}

/// Marks and releases numbers after a connectivity write: `listed` are the DIDs now listed by
/// any connectivity document of the account, `before` those listed by the written document
/// before the write.
async fn sync_numbers(
    store: &SharedStore,
    numbers: &NumberStore,
    place: &Place,
    listed_now: &BTreeSet<String>,
    before: &BTreeSet<String>,
) -> Result<(), ApiError> {
    let converters = numbers.converters();
    let all_listed = all_account_dids(store, converters, place).await?;
    for did in listed_now.iter().chain(before.iter()) {
        let Some(number) = converters.to_e164(did) else { continue };
        if number_place(number.as_str()).is_none() {
            continue;
        }
        let app = if all_listed.contains(number.as_str()) { Some(APP) } else { None };
        set_used_by(numbers, &number, app).await?;
    }
    Ok(())
}

/// Every DID (normalized) any connectivity document of the account lists.
async fn all_account_dids(
    store: &SharedStore,
    converters: &Converters,
    place: &Place,
) -> Result<BTreeSet<String>, ApiError> {
    let docs = docs::list(store, place, KIND).await?;
    Ok(docs
        .iter()
        .filter_map(Value::as_object)
        .flat_map(dids_of)
        .filter_map(|d| normalize(converters, &d))
        .collect())
}

fn account_of(place: &Place) -> String {
    place.account.as_ref().map(|a| a.as_str().to_owned()).unwrap_or_default()
}

/// `GET /v2/accounts/{A}/connectivity`: the ids of the account's connectivity documents.
pub(crate) async fn list(
    State(s): State<AppState>,
    Path(a): Path<String>,
) -> Result<Envelope, ApiError> {
    let place = account_place(&a)?;
    let docs = docs::list(&s.store, &place, KIND).await?;
    let ids: Vec<Value> = docs.iter().filter_map(|d| d.get("id").cloned()).collect();
    Ok(Envelope::ok(Value::Array(ids)))
}

/// `GET /v2/accounts/{A}/connectivity/{id}`.
pub(crate) async fn get_one(
    State(s): State<AppState>,
    Path((a, id)): Path<(String, String)>,
) -> Result<Envelope, ApiError> {
    let place = account_place(&a)?;
    let doc = docs::read(&s.store, &place, KIND, &id).await?;
    Ok(doc_envelope(&doc))
}

/// `PUT /v2/accounts/{A}/connectivity`.
pub(crate) async fn create(
    State(s): State<AppState>,
    Path(a): Path<String>,
    CrossbarBody(mut body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    let place = account_place(&a)?;
    // Validate the shape first: DID checks read the keys the schema vouches for.
    Schema::Connectivity.validate(&mut body)?;
    let numbers = number_store(&s).await?;
    check_dids(&s.store, numbers.converters(), &account_of(&place), &body).await?;
    let doc = docs::create(&s.store, &place, KIND, body).await?;
    let listed = doc.as_object().map(dids_of).unwrap_or_default();
    sync_numbers(&s.store, &numbers, &place, &listed, &BTreeSet::new()).await?;
    metrics::counter!("switchboard_api_writes_total", "kind" => "connectivity", "op" => "create")
        .increment(1);
    Ok(doc_envelope(&doc).with_status(StatusCode::CREATED))
}

async fn update(
    s: &AppState,
    a: &str,
    id: &str,
    headers: &HeaderMap,
    body: Map<String, Value>,
    mode: UpdateMode,
) -> Result<Value, ApiError> {
    let place = account_place(a)?;
    let pinned = docs::pinned_rev(headers, Some(&body))?;
    let current = docs::read(&s.store, &place, KIND, id).await?;
    docs::check_rev(&current, pinned.as_deref())?;
    let next = docs::updated(&current, &place, KIND, body, mode)?;
    let numbers = number_store(s).await?;
    check_dids(&s.store, numbers.converters(), &account_of(&place), &next).await?;
    let before = current.as_object().map(dids_of).unwrap_or_default();
    let listed = dids_of(&next);
    let doc = docs::write(&s.store, &place, next).await?;
    sync_numbers(&s.store, &numbers, &place, &listed, &before).await?;
    let op = if mode == UpdateMode::Replace { "replace" } else { "merge" };
    metrics::counter!("switchboard_api_writes_total", "kind" => "connectivity", "op" => op)
        .increment(1);
    Ok(doc)
}

/// `POST /v2/accounts/{A}/connectivity/{id}`.
pub(crate) async fn post(
    State(s): State<AppState>,
    Path((a, id)): Path<(String, String)>,
    headers: HeaderMap,
    CrossbarBody(body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    let doc = update(&s, &a, &id, &headers, body, UpdateMode::Replace).await?;
    Ok(doc_envelope(&doc))
}

/// `PATCH /v2/accounts/{A}/connectivity/{id}`.
pub(crate) async fn patch(
    State(s): State<AppState>,
    Path((a, id)): Path<(String, String)>,
    headers: HeaderMap,
    CrossbarBody(body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    let doc = update(&s, &a, &id, &headers, body, UpdateMode::Merge).await?;
    Ok(doc_envelope(&doc))
}

/// `DELETE /v2/accounts/{A}/connectivity/{id}`: the numbers it listed are released from
/// trunkstore (unless another connectivity document of the account lists them).
pub(crate) async fn delete(
    State(s): State<AppState>,
    Path((a, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Envelope, ApiError> {
    let place = account_place(&a)?;
    let pinned = docs::pinned_rev(&headers, None)?;
    let current = docs::read(&s.store, &place, KIND, &id).await?;
    docs::check_rev(&current, pinned.as_deref())?;
    let numbers = number_store(&s).await?;
    docs::remove(&s.store, &place, &current).await?;
    let before = current.as_object().map(dids_of).unwrap_or_default();
    sync_numbers(&s.store, &numbers, &place, &BTreeSet::new(), &before).await?;
    metrics::counter!("switchboard_api_writes_total", "kind" => "connectivity", "op" => "delete")
        .increment(1);
    Ok(doc_envelope(&current))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dids_are_the_keys_of_every_server() {
        let doc = json!({"servers": [
            {"DIDs": {"+14158867900": {}, "4158867901": {}}, "auth": {"auth_method": "IP"}},
            {"auth": {"auth_method": "IP"}},
            {"DIDs": {"+14158867900": {}}}
        ]});
        let dids = dids_of(doc.as_object().unwrap());
        assert_eq!(dids.into_iter().collect::<Vec<_>>(), ["+14158867900", "4158867901"]);
        let defaults = Converters::kazoo_defaults();
        assert_eq!(normalize(&defaults, "4158867901").as_deref(), Some("+14158867901"));
        assert_eq!(normalize(&defaults, "+14158867900").as_deref(), Some("+14158867900"));
        // A configured converter is the one used.
        let (configured, _) = Converters::from_config(&json!({"e164_converters": {
            "^0(\\d{9})$": {"prefix": "+33"}
        }}));
        assert_eq!(normalize(&configured, "0612345678").as_deref(), Some("+33612345678"));
    }
}

//! `/v2/resources[/{id}]` (global carriers in db `offnet`, superduper admins only) and
//! `/v2/accounts/{A}/resources[/{id}]` (an account's local carriers): Kazoo's `cb_resources`
//! CRUD, validated against `resources.json`. Routing sees a write through the change feed, like
//! any other edit of the database.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use docstore::{AccountId, DesignKind};
use serde_json::{json, Map, Value};
use std::sync::Arc;

use super::body::CrossbarBody;
use super::docs::{self, Kind, Place, UpdateMode};
use super::envelope::Envelope;
use super::error::{add_validation, ApiError};
use super::schema::Schema;
use super::AppState;

const GLOBAL: Kind =
    Kind { pvt_type: "resource", schema: Schema::Resources, design: DesignKind::Offnet };
const LOCAL: Kind =
    Kind { pvt_type: "resource", schema: Schema::Resources, design: DesignKind::Account };

/// Where global resources live (the router lets only superduper admins here).
fn global_place() -> Place {
    Place { db: docstore::naming::offnet_db(), account: None }
}

/// An account's database (the router has checked the caller may act on the account).
pub(crate) fn account_place(account: &str) -> Result<Place, ApiError> {
    let id = AccountId::new(account).map_err(|_| {
        ApiError::BadRequest(format!(
            "account {account} has no database: its id is not 32 lowercase letters, digits or `_`"
        ))
    })?;
    Ok(Place { db: id.db_name(), account: Some(id) })
}

/// The summary row of a resource in a listing (Kazoo's `resources/crossbar_listing`).
fn summary(doc: &Value) -> Value {
    json!({
        "id": doc.get("id"),
        "name": doc.get("name"),
        "enabled": doc.get("enabled").cloned().unwrap_or(Value::Bool(true)),
        "emergency": doc.get("emergency").cloned().unwrap_or(Value::Bool(false)),
        "weight_cost": doc.get("weight_cost"),
        "flags": doc.get("flags").cloned().unwrap_or_else(|| json!([])),
    })
}

async fn list(state: &AppState, place: Place, kind: Kind) -> Result<Envelope, ApiError> {
    let docs = docs::list(&state.store, &place, kind).await?;
    Ok(Envelope::ok(Value::Array(docs.iter().map(summary).collect())))
}

async fn get_one(
    state: &AppState,
    place: Place,
    kind: Kind,
    id: &str,
) -> Result<Envelope, ApiError> {
    let doc = docs::read(&state.store, &place, kind, id).await?;
    Ok(doc_envelope(&doc))
}

/// The reply for one document: its public view, `revision` = its `_rev`.
pub(crate) fn doc_envelope(doc: &Value) -> Envelope {
    Envelope::ok(docs::public(doc)).with_revision(doc.get("_rev").and_then(Value::as_str))
}

/// Refuses a resource whose rules routing could not use (too long or deep, invalid,
/// catastrophic): 400 naming each such field (`rules[2]`, `classifiers.did_us.regex`), found
/// by the router's own compiler with the live configuration. Compiling a hostile rule takes
/// milliseconds, so it runs on the blocking pool, not on the async workers.
async fn check_rules(state: &AppState, doc: &Map<String, Value>) -> Result<(), ApiError> {
    let config = Arc::clone(&state.routing.tables().config);
    let doc = Value::Object(doc.clone());
    let found = tokio::task::spawn_blocking(move || stepswitch::rule_diagnostics(&doc, &config))
        .await
        .map_err(|err| ApiError::Internal(format!("checking the rules failed: {err}")))?;
    if found.is_empty() {
        return Ok(());
    }
    let mut errors = Map::new();
    for problem in found {
        let field = match problem.index {
            Some(index) => format!("{}[{index}]", problem.field),
            None => problem.field,
        };
        add_validation(&mut errors, &field, "regex", problem.message, None);
    }
    Err(ApiError::Validation(errors))
}

async fn create(
    state: &AppState,
    place: Place,
    kind: Kind,
    body: CrossbarBody,
) -> Result<Envelope, ApiError> {
    check_rules(state, &body.0).await?;
    let doc = docs::create(&state.store, &place, kind, body.0).await?;
    metrics::counter!("switchboard_api_writes_total", "kind" => "resource", "op" => "create")
        .increment(1);
    Ok(doc_envelope(&doc).with_status(axum::http::StatusCode::CREATED))
}

async fn update(
    state: &AppState,
    place: Place,
    kind: Kind,
    id: &str,
    headers: &HeaderMap,
    body: CrossbarBody,
    mode: UpdateMode,
) -> Result<Envelope, ApiError> {
    let pinned = docs::pinned_rev(headers, Some(&body.0))?;
    let current = docs::read(&state.store, &place, kind, id).await?;
    docs::check_rev(&current, pinned.as_deref())?;
    let next = docs::updated(&current, &place, kind, body.0, mode)?;
    check_rules(state, &next).await?;
    let doc = docs::write(&state.store, &place, next).await?;
    let op = if mode == UpdateMode::Replace { "replace" } else { "merge" };
    metrics::counter!("switchboard_api_writes_total", "kind" => "resource", "op" => op)
        .increment(1);
    Ok(doc_envelope(&doc))
}

async fn delete(
    state: &AppState,
    place: Place,
    kind: Kind,
    id: &str,
    headers: &HeaderMap,
) -> Result<Envelope, ApiError> {
    let pinned = docs::pinned_rev(headers, None)?;
    let current = docs::read(&state.store, &place, kind, id).await?;
    docs::check_rev(&current, pinned.as_deref())?;
    docs::remove(&state.store, &place, &current).await?;
    metrics::counter!("switchboard_api_writes_total", "kind" => "resource", "op" => "delete")
        .increment(1);
    Ok(doc_envelope(&current))
}

/// `GET /v2/resources`.
pub(crate) async fn global_list(State(s): State<AppState>) -> Result<Envelope, ApiError> {
    list(&s, global_place(), GLOBAL).await
}

/// `PUT /v2/resources`.
pub(crate) async fn global_create(
    State(s): State<AppState>,
    body: CrossbarBody,
) -> Result<Envelope, ApiError> {
    create(&s, global_place(), GLOBAL, body).await
}

/// `GET /v2/resources/{id}`.
pub(crate) async fn global_get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Envelope, ApiError> {
    get_one(&s, global_place(), GLOBAL, &id).await
}

/// `POST /v2/resources/{id}`.
pub(crate) async fn global_post(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: CrossbarBody,
) -> Result<Envelope, ApiError> {
    update(&s, global_place(), GLOBAL, &id, &headers, body, UpdateMode::Replace).await
}

/// `PATCH /v2/resources/{id}`.
pub(crate) async fn global_patch(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: CrossbarBody,
) -> Result<Envelope, ApiError> {
    update(&s, global_place(), GLOBAL, &id, &headers, body, UpdateMode::Merge).await
}

/// `DELETE /v2/resources/{id}`.
pub(crate) async fn global_delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Envelope, ApiError> {
    delete(&s, global_place(), GLOBAL, &id, &headers).await
}

/// `GET /v2/accounts/{A}/resources`.
pub(crate) async fn local_list(
    State(s): State<AppState>,
    Path(a): Path<String>,
) -> Result<Envelope, ApiError> {
    list(&s, account_place(&a)?, LOCAL).await
}

/// `PUT /v2/accounts/{A}/resources`.
pub(crate) async fn local_create(
    State(s): State<AppState>,
    Path(a): Path<String>,
    body: CrossbarBody,
) -> Result<Envelope, ApiError> {
    create(&s, account_place(&a)?, LOCAL, body).await
}

/// `GET /v2/accounts/{A}/resources/{id}`.
pub(crate) async fn local_get(
    State(s): State<AppState>,
    Path((a, id)): Path<(String, String)>,
) -> Result<Envelope, ApiError> {
    get_one(&s, account_place(&a)?, LOCAL, &id).await
}

/// `POST /v2/accounts/{A}/resources/{id}`.
pub(crate) async fn local_post(
    State(s): State<AppState>,
    Path((a, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: CrossbarBody,
) -> Result<Envelope, ApiError> {
    update(&s, account_place(&a)?, LOCAL, &id, &headers, body, UpdateMode::Replace).await
}

/// `PATCH /v2/accounts/{A}/resources/{id}`.
pub(crate) async fn local_patch(
    State(s): State<AppState>,
    Path((a, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: CrossbarBody,
) -> Result<Envelope, ApiError> {
    update(&s, account_place(&a)?, LOCAL, &id, &headers, body, UpdateMode::Merge).await
}

/// `DELETE /v2/accounts/{A}/resources/{id}`.
pub(crate) async fn local_delete(
    State(s): State<AppState>,
    Path((a, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Envelope, ApiError> {
    delete(&s, account_place(&a)?, LOCAL, &id, &headers).await
}

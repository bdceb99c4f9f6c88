//! `/v2/stepswitch/*`: route a request against the live tables, status, reload and flush.

use ::stepswitch::reactor::Routing;
use ::stepswitch::RouteRequest;

use super::envelope::Envelope;
use super::error::ApiError;
use super::routes::{endpoint, Endpoint};
use super::AppState;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use docstore::AccountId;
use serde::Deserialize;
use serde_json::{json, Value};

/// The stepswitch endpoints of the route table: served without a token to trusted networks,
/// with a superduper admin's token from anywhere else (see `ops::trusted_or_superduper`).
pub(crate) fn endpoints(state: &AppState) -> Vec<Endpoint> {
    let r = state.routing.clone();
    vec![
        endpoint!(r, POST "/v2/stepswitch/route", Trusted, "routing", Some("offnet_req"), "Route a dialled number (body: an offnet_req)", route),
        endpoint!(r, GET "/v2/stepswitch/status", Trusted, "routing", None, "Route tables, their diagnostics and feed state", status),
        endpoint!(r, POST "/v2/stepswitch/reload", Trusted, "routing", None, "Rebuild the global table (or ?account_id=A's)", reload),
        endpoint!(r, POST "/v2/stepswitch/flush", Trusted, "routing", None, "Re-read and rebuild every table", flush),
    ]
}

fn success(data: impl serde::Serialize) -> Response {
    match serde_json::to_value(data) {
        Ok(data) => Envelope::ok(data).into_response(),
        Err(err) => ApiError::Internal(err.to_string()).into_response(),
    }
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    let key = match code {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "bad_identifier",
        StatusCode::SERVICE_UNAVAILABLE => "datastore_unreachable",
        _ => "error",
    };
    ApiError::Custom {
        status: code,
        message: key.into(),
        data: json!({ "message": message.into() }),
    }
    .into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// Checks the keys routing reads; any other `offnet_req` key is accepted and ignored.
fn check_route_body(body: &Value) -> Result<(), String> {
    let Some(object) = body.as_object() else {
        return Err("the body must be a JSON object (an offnet_req)".into());
    };
    match object.get("To-DID") {
        Some(Value::String(did)) if !did.trim().is_empty() => {}
        Some(Value::String(_)) => return Err("To-DID is empty".into()),
        Some(_) => return Err("To-DID must be a string".into()),
        None => return Err("To-DID is required".into()),
    }
    match object.get("Flags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => return Err("Flags must be a list of strings".into()),
    }
    for key in ["Account-ID", "Hunt-Account-ID", "Outbound-Caller-ID-Number"] {
        match object.get(key) {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => return Err(format!("{key} must be a string")),
        }
    }
    match object.get("Bypass-E164") {
        None | Some(Value::Null | Value::Bool(_)) => {}
        Some(Value::String(text)) if ["true", "false"].contains(&text.as_str()) => {}
        Some(_) => return Err("Bypass-E164 must be a boolean".into()),
    }
    Ok(())
}

/// `POST /v2/stepswitch/route`: the body is an `offnet_req`.
async fn route(State(routing): State<Routing>, body: Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => return bad_request(format!("the body is not JSON: {err}")),
    };
    if let Err(message) = check_route_body(&body) {
        return bad_request(message);
    }
    let request = RouteRequest::from_offnet_req(&body);
    success(routing.route(&request))
}

/// `GET /v2/stepswitch/status`.
async fn status(State(routing): State<Routing>) -> Response {
    success(routing.status())
}

#[derive(Debug, Deserialize)]
struct ReloadQuery {
    account_id: Option<String>,
}

/// `POST /v2/stepswitch/reload`: `account_id` (query or JSON body) reloads that account's table
/// (Kazoo's `reload_resources/1`); without it, the global table and the config (`/0`).
async fn reload(
    State(routing): State<Routing>,
    Query(query): Query<ReloadQuery>,
    body: Bytes,
) -> Response {
    let mut account = query.account_id;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let body: Value = match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(err) => return bad_request(format!("the body is not JSON: {err}")),
        };
        match body.get("account_id") {
            None | Some(Value::Null) => {}
            Some(Value::String(id)) => account = Some(id.clone()),
            Some(_) => return bad_request("account_id must be a string"),
        }
    }
    let account = match account.as_deref().map(AccountId::new).transpose() {
        Ok(account) => account,
        Err(err) => return bad_request(err.to_string()),
    };
    match routing.reload(account.as_ref()).await {
        Ok(status) => success(status),
        Err(::stepswitch::Error::Store(docstore::Error::DbNotFound { db })) => {
            error(StatusCode::NOT_FOUND, format!("database {db} does not exist"))
        }
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

/// `POST /v2/stepswitch/flush`: Kazoo's `flush/0`, every table re-read and rebuilt.
async fn flush(State(routing): State<Routing>) -> Response {
    routing.flush().await;
    success(routing.status())
}

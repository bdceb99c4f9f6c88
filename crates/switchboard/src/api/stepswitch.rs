//! `/v2/stepswitch/*`: route a request against the live tables, the outbound decision (on-net
//! check against the inbound number table, then routing), status, reload and flush.

use ::stepswitch::reactor::Routing;
use ::stepswitch::{RouteAnswer, RouteRequest, Tables};
use std::sync::Arc;

use super::envelope::Envelope;
use super::error::ApiError;
use super::phone_numbers::{caught_up_table, lookup_doc, number_store};
use super::route_forms;
use super::AppState;
use axum::body::Bytes;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use docstore::AccountId;
use e164::E164;
use numbers::NumberDoc;
use serde::Deserialize;
use serde_json::{json, Value};

fn success(data: impl serde::Serialize) -> Response {
    match serde_json::to_value(data) {
        Ok(data) => Envelope::ok(data).into_response(),
        Err(err) => ApiError::Internal(err.to_string()).into_response(),
    }
}

fn bad_request(message: impl Into<String>) -> Response {
    ApiError::BadRequest(message.into()).into_response()
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
    check_boolean(object, "Bypass-E164")
}

/// A flag of an `offnet_req`: absent, `null`, a boolean or the text `"true"`/`"false"`.
fn check_boolean(object: &serde_json::Map<String, Value>, key: &str) -> Result<(), String> {
    match object.get(key) {
        None | Some(Value::Null | Value::Bool(_)) => Ok(()),
        Some(Value::String(text)) if ["true", "false"].contains(&text.as_str()) => Ok(()),
        Some(_) => Err(format!("{key} must be a boolean")),
    }
}

/// 503 until the routing tables have been loaded once: an empty table would answer "no route"
/// for every number.
fn not_loaded(routing: &Routing) -> Option<Response> {
    (!routing.is_loaded()).then(|| {
        ApiError::Unavailable(
            "the routing tables have not been loaded yet (the store is being read)".into(),
        )
        .into_response()
    })
}

/// `POST /v2/stepswitch/route`: the body is an `offnet_req`; the query may ask for the text
/// form or the explanation ([`route_forms`]).
pub(crate) async fn route(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = match route_forms::parse_query(query.as_deref(), &headers, false) {
        Ok(query) => query,
        Err(message) => return bad_request(message),
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => return bad_request(format!("the body is not JSON: {err}")),
    };
    answer_route(&state, query.form, &body).await
}

/// `GET /v2/stepswitch/route?To-DID=…`: the request as query parameters.
pub(crate) async fn route_get(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match route_forms::parse_query(query.as_deref(), &headers, true) {
        Ok(query) => answer_route(&state, query.form, &Value::Object(query.request)).await,
        Err(message) => bad_request(message),
    }
}

/// [`lookup`], counted in `switchboard_route_lookups_total` when it routed.
async fn answer_route(state: &AppState, form: route_forms::Form, body: &Value) -> Response {
    let response = lookup(state, form, body).await;
    if response.status().is_success() {
        metrics::counter!("switchboard_route_lookups_total").increment(1);
    }
    response
}

/// Routes one checked `offnet_req` and answers in the asked form: Kazoo's JSON (200), the SIP
/// URIs as text, a 404 (both forms) when no carrier takes the number; with `explain`, the
/// explanation next to the answer (JSON: `data.explain`; text: the explanation as text).
async fn lookup(state: &AppState, form: route_forms::Form, body: &Value) -> Response {
    if let Err(message) = check_route_body(body) {
        return bad_request(message);
    }
    if let Some(refusal) = not_loaded(&state.routing) {
        return refusal;
    }
    let request = RouteRequest::from_offnet_req(body);
    state.routing.ensure_loaded(&request).await;
    if form.explain {
        return explained(state, form, &request).await;
    }
    let tables = state.routing.tables();
    let number = request.destination(&tables.config);
    let answer = route_off_the_workers(tables, request, number).await;
    if form.text {
        return route_forms::text_answer(&answer);
    }
    if answer.endpoints.is_empty() {
        return no_carrier(
            json!({"number": answer.number, "classification": answer.classification, "endpoints": []}),
        );
    }
    super::envelope::ok_rendered(answer.json_len_hint(), |out| answer.write_json(out))
}

/// Routes `request` (its destination `number` already computed): inline when the rules the
/// table offers for this number run only on the linear-time matchers (microseconds), else on
/// the blocking pool, since a rule on the backtracking engine may spend its whole step budget,
/// and the async workers also serve `/healthz` and every other request. Decided per number:
/// one such rule in a table must not send every lookup through the blocking pool (a thread
/// hand-off and back per request, which on a small machine costs more than the lookup).
async fn route_off_the_workers(
    tables: Arc<Tables>,
    request: RouteRequest,
    number: String,
) -> RouteAnswer {
    if !tables.may_backtrack(&request, &number) {
        return ::stepswitch::route_to(&tables, &request, number);
    }
    let blocking =
        tokio::task::spawn_blocking(move || ::stepswitch::route_to(&tables, &request, number));
    match blocking.await {
        Ok(answer) => answer,
        // The lookup panicked: propagate it, as an inline lookup would have.
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

/// The 404 of a number no carrier takes: Crossbar's error envelope with the answer as `data`.
fn no_carrier(data: Value) -> Response {
    ApiError::NoCarrier(data).into_response()
}

/// `?explain=true`: the answer and the explanation, from one snapshot of the tables and the
/// scope's stored documents (read now, off the hot path; unreadable documents only shorten
/// the explanation).
async fn explained(state: &AppState, form: route_forms::Form, request: &RouteRequest) -> Response {
    let tables = state.routing.tables();
    // One shuffle for both lookups below, so a random gateway order reads the same in both.
    let mut request = request.clone();
    request.shuffle_seed.get_or_insert_with(|| rand::random::<u64>() | 1);
    let request = &request;
    let hunt = request.hunt_account_id.as_deref().and_then(|id| AccountId::new(id).ok());
    let docs = match ::stepswitch::reactor::read_resource_docs(state.store.as_ref(), hunt.as_ref())
        .await
    {
        Ok(docs) => docs,
        Err(err) => {
            tracing::warn!(error = %err, "Explain: the resource documents are unreadable.");
            Vec::new()
        }
    };
    let explanation = ::stepswitch::explain(&tables, request, &docs);
    let status = if explanation.order.is_empty() { StatusCode::NOT_FOUND } else { StatusCode::OK };
    if form.text {
        return route_forms::text_response(status, explanation.to_text());
    }
    let answer = ::stepswitch::route(&tables, request);
    let mut data = match serde_json::to_value(&answer) {
        Ok(data) => data,
        Err(err) => return ApiError::Internal(err.to_string()).into_response(),
    };
    data["explain"] = json!(explanation);
    if status == StatusCode::NOT_FOUND {
        return no_carrier(data);
    }
    success(data)
}

/// `POST /v2/stepswitch/outbound`: `stepswitch_outbound`'s decision for an `offnet_req` (the
/// body of `/route` plus `Force-Outbound`). The destination is `To-DID` normalized as `/route`
/// does (`stepswitch_util:get_outbound_destination/1`); a number on the network (`knm_numbers:lookup_account/1` (the on-net check): owned, in a routable state, its owner
/// enabled) loops back to its owner, `{number, on_net: true, account_id, state, used_by, …}`
/// with `knm_number:lookup_account/1`'s routing properties, unless its `force_outbound` (`knm_number:is_force_outbound/3`), `Force-Outbound` or a
/// `Hunt-Account-ID` sends it out; anything else is carrier routing: `/route`'s answer plus
/// `on_net: false`.
pub(crate) async fn outbound(State(state): State<AppState>, body: Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => return bad_request(format!("the body is not JSON: {err}")),
    };
    let checked = check_route_body(&body)
        .and_then(|()| body.as_object().map_or(Ok(()), |o| check_boolean(o, "Force-Outbound")));
    if let Err(message) = checked {
        return bad_request(message);
    }
    if let Some(refusal) = not_loaded(&state.routing) {
        return refusal;
    }
    let request = RouteRequest::from_offnet_req(&body);
    let tables = state.routing.tables();
    // `stepswitch_util:get_outbound_destination/1`, once: the on-net check and the routing below use the same destination (and one
    // snapshot of the tables).
    let number = request.destination(&tables.config);
    if !request.force_outbound && request.hunt_account_id.is_none() {
        if let Some(mut data) = on_net(&state, &number).await {
            let classification = tables.config.converters.classifier_for(&number);
            data["classification"] = json!(classification.map(|c| c.name.as_str()));
            return success(data);
        }
    }
    let answer = route_off_the_workers(tables, request, number).await;
    let mut data = match serde_json::to_value(answer) {
        Ok(data) => data,
        Err(err) => return ApiError::Internal(err.to_string()).into_response(),
    };
    data["on_net"] = json!(false);
    success(data)
}

/// `knm_numbers:lookup_account/1` (the on-net check)'s on-net half: what a loop-back to the owner of `number` needs, or `None` (carrier
/// routing: unknown, unowned, not in a routable state, owner disabled, `force_outbound`, or
/// the number store unreadable). From the live inbound table once it has caught up; before
/// that from the number's stored document (a number found only in a port request is always
/// `force_outbound`, `knm_number:lookup_account/1`, so the document alone decides).
async fn on_net(state: &AppState, number: &str) -> Option<Value> {
    // `Bypass-E164` text that is not E.164 names no number of ours.
    let number = E164::new(number).ok()?;
    let table = caught_up_table(state);
    // The usual outbound call is to a number that is not ours: one flag read answers it.
    if table.is_some_and(|table| !table.is_on_net(&number)) {
        return None;
    }
    let store = match number_store(state).await {
        Ok(store) => store,
        Err(err) => {
            tracing::warn!(error = ?err, "On-net check: the number store is unreadable; carrier routing.");
            return None;
        }
    };
    let decide = |doc: Option<&NumberDoc>| -> Option<Value> {
        let doc = doc?;
        let found = lookup_doc(&store, &number, Some(doc)).ok().filter(|f| !f.force_outbound)?;
        let mut data = found.to_json();
        data["on_net"] = json!(true);
        data["state"] = json!(doc.state.as_str());
        data["used_by"] = json!(doc.used_by);
        Some(data)
    };
    match table {
        Some(table) => table.with_entry(&number, |entry| decide(entry.map(|e| &e.doc))),
        None => match store.load(&number).await {
            Ok(doc) => decide(doc.as_ref()),
            Err(err) => {
                tracing::warn!(error = %err, "On-net check: the number could not be read; carrier routing.");
                None
            }
        },
    }
}

/// `GET /v2/stepswitch/status`.
pub(crate) async fn status(State(routing): State<Routing>) -> Response {
    success(routing.status())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReloadQuery {
    account_id: Option<String>,
}

/// `POST /v2/stepswitch/reload`: `account_id` (query or JSON body) reloads that account's table
/// (Kazoo's `reload_resources/1`); without it, the global table and the config (`/0`). Like
/// Kazoo's `kz_util:format_account_id/1`, the id may be raw (32 hex), the account database
/// name (`account/ab/cd/rest`) or its encoded form (`account%2Fab%2Fcd%2Frest`), all read by
/// [`AccountId::new`]; anything else is a 400, a valid id without a database a 404.
pub(crate) async fn reload(
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
        if !body.is_object() {
            return bad_request("the body must be a JSON object ({\"account_id\": …})");
        }
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
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// `POST /v2/stepswitch/flush`: Kazoo's `flush/0`, every table re-read and rebuilt.
pub(crate) async fn flush(State(routing): State<Routing>) -> Response {
    routing.flush().await;
    success(routing.status())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use docstore::naming::{accounts_db, numbers_db, offnet_db};
    use docstore::SharedStore;
    use numbers::inbound::InboundTable;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::api::testing::{memory_store, state_over};

    const OWNER: &str = "acc00000000000000000000000000a01";
    const DISABLED: &str = "acc00000000000000000000000000d01";
    /// Owned by OWNER, in service, used by callflow.
    const ON_NET: &str = "+14155550101";
    /// Owned by OWNER, in service, with the force_outbound feature (`knm_number:is_force_outbound/3`).
    const FORCED: &str = "+14155550102";
    /// Owned by DISABLED (in service).
    const OF_DISABLED: &str = "+14155550103";
    /// In the numbers db, available: owned by nobody.
    const AVAILABLE: &str = "+14155550104";
    /// Owned by OWNER, in service, on carrier knm_local: `force_local_outbound` (default true,
    /// `knm_number:is_force_outbound/3`) sends it out.
    const LOCAL: &str = "+14155550105";
    /// In no numbers db.
    const UNKNOWN: &str = "+14155550199";

    fn number_docs() -> Vec<Value> {
        let doc = |number: &str, owner: Option<&str>, state: &str, features: Value| {
            let module = if number == LOCAL { "knm_local" } else { "knm_inventory" };
            json!({"_id": number, "pvt_type": "number", "pvt_state": state,
                   "pvt_assigned_to": owner, "pvt_module_name": module,
                   "pvt_used_by": "callflow", "pvt_features": features,
                   "pvt_created": 63700000000u64, "pvt_modified": 63700000000u64})
        };
        vec![
            doc(ON_NET, Some(OWNER), "in_service", json!({})),
            doc(FORCED, Some(OWNER), "in_service", json!({"force_outbound": true})),
            doc(OF_DISABLED, Some(DISABLED), "in_service", json!({})),
            doc(AVAILABLE, None, "available", json!({})),
            doc(LOCAL, Some(OWNER), "in_service", json!({})),
        ]
    }

    /// A store with the two accounts (DISABLED disabled), a carrier for `+1415…` in offnet and
    /// the number documents.
    async fn seeded_store() -> SharedStore {
        let store = memory_store();
        store.ensure_db(&accounts_db()).await.unwrap();
        for (id, enabled) in [(OWNER, true), (DISABLED, false)] {
            let doc = json!({"_id": id, "pvt_type": "account", "name": id, "pvt_tree": [],
                             "pvt_enabled": enabled});
            store.put(&accounts_db(), doc).await.unwrap();
        }
        store.ensure_db(&offnet_db()).await.unwrap();
        let carrier = json!({"_id": "carrier", "pvt_type": "resource", "name": "carrier",
            "enabled": true, "rules": ["^\\+1(415\\d{7})$"],
            "gateways": [{"server": "carrier.example.com", "enabled": true}]});
        store.put(&offnet_db(), carrier).await.unwrap();
        let db = numbers_db(ON_NET).unwrap();
        store.ensure_db(&db).await.unwrap();
        for doc in number_docs() {
            store.put(&db, doc).await.unwrap();
        }
        store
    }

    /// The daemon's state over [`seeded_store`], once routing routes `+1415…`. With `table`, an
    /// inbound table holding the number documents; its own accounts are empty, so an answer
    /// that knows DISABLED is disabled came from the store layer's accounts.
    async fn daemon(table: bool) -> (AppState, CancellationToken) {
        let table = table.then(|| {
            let table = InboundTable::new();
            table.apply_docs(&number_docs());
            table
        });
        let (state, shutdown) = state_over(seeded_store().await, Vec::new(), table);
        let mut generations = state.routing.generations();
        let deadline = Instant::now() + Duration::from_secs(60);
        while state.routing.route(&RouteRequest::new(UNKNOWN)).endpoints.is_empty()
            || !state.routing.is_loaded()
        {
            assert!(
                Instant::now() < deadline,
                "routing never loaded: {:?}",
                state.routing.status()
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), generations.changed()).await;
        }
        (state, shutdown)
    }

    async fn answer(response: Response) -> (StatusCode, Value) {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    async fn post_outbound(state: &AppState, body: Value) -> Value {
        let (status, reply) =
            answer(outbound(State(state.clone()), Bytes::from(body.to_string())).await).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["status"], "success", "{reply}");
        reply["data"].clone()
    }

    /// `/route`'s data: the answer (200), or the empty answer of the 404 when no carrier
    /// takes the number.
    async fn post_route(state: &AppState, body: &Value) -> Value {
        let (status, reply) = answer(post_route_raw(state, "", body.to_string()).await).await;
        let routed = reply["data"]["endpoints"].as_array().is_some_and(|e| !e.is_empty());
        let expected = if routed { StatusCode::OK } else { StatusCode::NOT_FOUND };
        assert_eq!(status, expected, "{reply}");
        reply["data"].clone()
    }

    async fn post_route_raw(state: &AppState, query: &str, body: String) -> Response {
        let query = (!query.is_empty()).then(|| query.to_owned());
        route(State(state.clone()), RawQuery(query), HeaderMap::new(), Bytes::from(body)).await
    }

    /// Off-net: exactly `/route`'s data object for the same body, plus `on_net: false`.
    async fn assert_off_net(state: &AppState, body: Value) -> Value {
        let got = post_outbound(state, body.clone()).await;
        let mut expected = post_route(state, &body).await;
        expected["on_net"] = json!(false);
        assert_eq!(got, expected, "{body}");
        got
    }

    /// Off-net, and the carrier of `+1415…` answers.
    async fn assert_carrier_routed(state: &AppState, body: Value) {
        let data = assert_off_net(state, body).await;
        assert!(!data["endpoints"].as_array().unwrap().is_empty(), "{data}");
    }

    /// `knm_numbers:lookup_account/1` (the on-net check), on-net: an owned, in-service number loops back to its owner.
    #[tokio::test]
    async fn rule_3_an_owned_number_in_service_is_on_net() {
        let (state, shutdown) = daemon(true).await;
        // Normalized first (`stepswitch_util:get_outbound_destination/1`): the ten-digit form is the same number.
        for to_did in [ON_NET, &ON_NET[2..]] {
            let data = post_outbound(&state, json!({"To-DID": to_did, "Account-ID": OWNER})).await;
            assert_eq!(data["on_net"], true, "{data}");
            assert_eq!(data["number"], ON_NET, "{data}");
            assert_eq!(data["account_id"], OWNER, "{data}");
            assert_eq!(data["used_by"], "callflow", "{data}");
            assert_eq!(data["state"], "in_service", "{data}");
            assert_eq!(data["force_outbound"], false, "{data}");
            assert_eq!(data["local"], false, "{data}");
            assert_eq!(data["classification"], "did_us", "{data}");
            assert!(data.get("endpoints").is_none(), "{data}");
        }
        shutdown.cancel();
    }

    /// `knm_numbers:lookup_account/1` (the on-net check): each of force_outbound (the number's feature, or the config's for its carrier),
    /// Force-Outbound and Hunt-Account-ID sends an on-net number to the carriers; so do an
    /// unknown number, an unowned one and a disabled owner's.
    #[tokio::test]
    async fn rule_3_forced_unknown_unowned_and_disabled_numbers_are_carrier_routed() {
        let (state, shutdown) = daemon(true).await;
        assert_carrier_routed(&state, json!({"To-DID": FORCED})).await;
        assert_carrier_routed(&state, json!({"To-DID": ON_NET, "Force-Outbound": true})).await;
        assert_carrier_routed(&state, json!({"To-DID": ON_NET, "Force-Outbound": "true"})).await;
        // A hunt account routes from its local table (none here: no endpoints, still off-net).
        let hunted = json!({"To-DID": ON_NET, "Account-ID": OWNER, "Hunt-Account-ID": OWNER});
        assert_off_net(&state, hunted).await;
        for number in [LOCAL, UNKNOWN, AVAILABLE, OF_DISABLED] {
            assert_carrier_routed(&state, json!({"To-DID": number})).await;
        }
        // Force-Outbound false changes nothing.
        let data = post_outbound(&state, json!({"To-DID": ON_NET, "Force-Outbound": false})).await;
        assert_eq!(data["on_net"], true, "{data}");
        shutdown.cancel();
    }

    /// `stepswitch_util:get_outbound_destination/1`: with Bypass-E164 the To-DID is used verbatim, as /route does: the ten-digit
    /// form is not the on-net number.
    #[tokio::test]
    async fn rule_2_bypass_e164_is_honoured() {
        let (state, shutdown) = daemon(true).await;
        let body = json!({"To-DID": &ON_NET[2..], "Bypass-E164": true});
        let data = assert_off_net(&state, body).await;
        assert_eq!(data["number"], &ON_NET[2..]);
        let data = post_outbound(&state, json!({"To-DID": ON_NET, "Bypass-E164": true})).await;
        assert_eq!(data["on_net"], true, "{data}");
        shutdown.cancel();
    }

    /// Without a caught-up inbound table the stored documents decide, the same way.
    #[tokio::test]
    async fn rule_3_without_the_table_the_stored_document_decides() {
        let (state, shutdown) = daemon(false).await;
        let data = post_outbound(&state, json!({"To-DID": ON_NET})).await;
        assert_eq!(
            (data["on_net"].clone(), data["account_id"].clone()),
            (json!(true), json!(OWNER))
        );
        assert_eq!(data["used_by"], "callflow", "{data}");
        for number in [FORCED, LOCAL, UNKNOWN, AVAILABLE, OF_DISABLED] {
            assert_carrier_routed(&state, json!({"To-DID": number})).await;
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn bad_outbound_requests_get_400() {
        let (state, shutdown) = daemon(true).await;
        for body in [
            "not json",
            "[]",
            "{}",
            r#"{"To-DID": ""}"#,
            r#"{"To-DID": "+1", "Flags": "x"}"#,
            r#"{"To-DID": "+14155550101", "Force-Outbound": "yes"}"#,
            r#"{"To-DID": "+14155550101", "Force-Outbound": 1}"#,
        ] {
            let (status, reply) =
                answer(outbound(State(state.clone()), Bytes::from(body)).await).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {reply}");
            assert!(reply["data"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{reply}");
        }
        let (_, reply) = answer(
            outbound(State(state.clone()), Bytes::from(r#"{"To-DID": "+1", "Force-Outbound": 1}"#))
                .await,
        )
        .await;
        assert_eq!(reply["data"]["message"], "Force-Outbound must be a boolean", "{reply}");
        // /route ignores the key, as before.
        let body = json!({"To-DID": ON_NET, "Force-Outbound": 1});
        let (status, _) = answer(post_route_raw(&state, "", body.to_string()).await).await;
        assert_eq!(status, StatusCode::OK);
        shutdown.cancel();
    }

    async fn text(response: Response) -> (StatusCode, String, String) {
        let status = response.status();
        let kind =
            response.headers()[axum::http::header::CONTENT_TYPE].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, kind, String::from_utf8(body.to_vec()).unwrap())
    }

    /// The switch-facing forms: GET with query parameters, the text answer, the 404s, and
    /// the POST JSON answer unchanged.
    #[tokio::test]
    async fn route_forms_get_text_404_and_explain() {
        let (state, shutdown) = daemon(false).await;
        let body = json!({"To-DID": UNKNOWN}).to_string();
        let (status, json_reply) = answer(post_route_raw(&state, "", body.clone()).await).await;
        assert_eq!(status, StatusCode::OK);
        let expected = serde_json::to_value(state.routing.route(&RouteRequest::new(UNKNOWN)));
        assert_eq!(json_reply["data"], expected.unwrap());
        let get = |query: &str, accept: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(accept) = accept {
                headers.insert(axum::http::header::ACCEPT, accept.parse().unwrap());
            }
            route_get(State(state.clone()), RawQuery(Some(query.to_owned())), headers)
        };
        let (status, got) = answer(get("To-DID=+14155550199", None).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got["data"], json_reply["data"]);
        let (status, kind, lines) =
            text(get("To-DID=+14155550199", Some("text/plain")).await).await;
        assert_eq!((status, kind.as_str()), (StatusCode::OK, "text/plain; charset=utf-8"));
        assert_eq!(lines, "sip:4155550199@carrier.example.com\n");
        let (_, _, lines) = text(post_route_raw(&state, "format=text", body.clone()).await).await;
        assert_eq!(lines, "sip:4155550199@carrier.example.com\n");
        // No carrier: 404 in both forms.
        let (status, _, lines) = text(get("To-DID=+442079460000&format=text", None).await).await;
        assert_eq!((status, lines.as_str()), (StatusCode::NOT_FOUND, ""));
        let (status, reply) = answer(get("To-DID=+442079460000", None).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
        assert_eq!(reply["message"], "no_carrier");
        assert_eq!(reply["data"]["number"], "+442079460000");
        assert_eq!(reply["data"]["endpoints"], json!([]));
        // Explain, next to the same answer.
        let (status, reply) = answer(post_route_raw(&state, "explain=true", body).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(reply["data"]["endpoints"], json_reply["data"]["endpoints"]);
        let explain = &reply["data"]["explain"];
        assert_eq!(explain["resources"][0]["id"], "carrier", "{explain}");
        assert_eq!(explain["resources"][0]["verdict"]["verdict"], "taken", "{explain}");
        assert_eq!(explain["order"][0]["route"], "sip:4155550199@carrier.example.com");
        let (status, reply) = answer(get("To-DID=+442079460000&explain=true", None).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let skipped = &reply["data"]["explain"]["resources"][0];
        assert_eq!(skipped["verdict"], json!({"verdict": "skipped", "reason": "no_rule_matched"}));
        // Bad queries.
        for query in ["To-DID=", "Flags=x", "To-DID=1&nope=1", "To-DID=1&format=xml"] {
            let (status, _) = answer(get(query, None).await).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        }
        shutdown.cancel();
    }

    /// Until the tables have been loaded once, `/route` and `/outbound` answer 503, never an
    /// empty 200 or a 404; the status says why. Here nothing listens where the store should be.
    #[tokio::test]
    async fn route_is_503_until_the_tables_are_loaded() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let config = docstore::CouchConfig::from_url(&url).unwrap();
        let store: SharedStore = std::sync::Arc::new(docstore::CouchStore::new(config).unwrap());
        let (state, shutdown) = state_over(store, Vec::new(), None);
        let body = json!({"To-DID": "+14155550123"}).to_string();
        let (status, reply) = answer(post_route_raw(&state, "", body.clone()).await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reply}");
        assert!(reply["data"]["message"].as_str().unwrap().contains("not been loaded"), "{reply}");
        let (status, _) = answer(outbound(State(state.clone()), Bytes::from(body)).await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            let status = state.routing.status();
            if status.degraded {
                break status;
            }
            assert!(Instant::now() < deadline, "never degraded: {status:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(!status.loaded && !status.caught_up, "{status:?}");
        assert!(status.trouble.iter().all(|t| !t.reason.is_empty() && !t.since.is_empty()));
        shutdown.cancel();
    }
}

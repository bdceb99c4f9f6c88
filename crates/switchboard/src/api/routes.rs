//! The one route table: every endpoint with its method, path, access rule, summary and body
//! schema. The router and `/v2/openapi.json` are both built from it, so they cannot disagree.

use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{self, MethodRouter};
use serde_json::{json, Map, Value};

use super::{auth, connectivity, ops, phone_numbers, resources, stepswitch, AppState};

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone.
    Public,
    /// A valid token whose account may act on the path's account.
    Token,
    /// A superduper admin's token.
    Superduper,
    /// A client from a trusted network, or a superduper admin's token.
    Trusted,
}

/// One endpoint.
pub(crate) struct Endpoint {
    /// The HTTP method.
    pub(crate) method: Method,
    /// The path, axum and OpenAPI syntax (`/v2/accounts/{account_id}/resources`).
    pub(crate) path: &'static str,
    /// Who may call it.
    pub(crate) access: Access,
    /// One line for the OpenAPI document.
    pub(crate) summary: &'static str,
    /// The OpenAPI tag.
    pub(crate) tag: &'static str,
    /// The Kazoo schema of the request body's `data`, if it has a body.
    pub(crate) body: Option<&'static str>,
    /// The handler, with its state.
    pub(crate) handler: MethodRouter,
}

/// A method router for `handler` with its state.
pub(crate) fn on<H, T, S>(method: &Method, handler: H, state: S) -> MethodRouter
where
    H: axum::handler::Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    let router: MethodRouter<S> = match *method {
        Method::GET => routing::get(handler),
        Method::PUT => routing::put(handler),
        Method::POST => routing::post(handler),
        Method::PATCH => routing::patch(handler),
        Method::DELETE => routing::delete(handler),
        _ => unreachable!("the table only uses GET, PUT, POST, PATCH and DELETE"),
    };
    router.with_state(state)
}

/// One [`Endpoint`] of the table: `endpoint!(state, METHOD "/path", Access, "tag", body schema,
/// "summary", handler)`.
macro_rules! endpoint {
    ($state:expr, $method:ident $path:literal, $access:ident, $tag:literal, $body:expr, $summary:literal, $handler:expr) => {
        $crate::api::routes::Endpoint {
            method: axum::http::Method::$method,
            path: $path,
            access: $crate::api::routes::Access::$access,
            summary: $summary,
            tag: $tag,
            body: $body,
            handler: $crate::api::routes::on(
                &axum::http::Method::$method,
                $handler,
                ($state).clone(),
            ),
        }
    };
}
pub(crate) use endpoint;

/// Every endpoint the daemon serves.
pub(crate) fn table(state: &AppState) -> Vec<Endpoint> {
    let s = state;
    let res = Some("resources");
    let conn = Some("connectivity");
    let mut endpoints = vec![
        endpoint!(s, PUT "/v2/api_auth", Public, "auth", Some("api_auth"), "Exchange an account's api key for an auth token", auth::api_auth),
        endpoint!(s, GET "/v2/resources", Superduper, "resources", None, "List global resources (db offnet)", resources::global_list),
        endpoint!(s, PUT "/v2/resources", Superduper, "resources", res, "Create a global resource", resources::global_create),
        endpoint!(s, GET "/v2/resources/{resource_id}", Superduper, "resources", None, "Fetch a global resource", resources::global_get),
        endpoint!(s, POST "/v2/resources/{resource_id}", Superduper, "resources", res, "Replace a global resource", resources::global_post),
        endpoint!(s, PATCH "/v2/resources/{resource_id}", Superduper, "resources", res, "Merge fields into a global resource", resources::global_patch),
        endpoint!(s, DELETE "/v2/resources/{resource_id}", Superduper, "resources", None, "Delete a global resource", resources::global_delete),
        endpoint!(s, GET "/v2/accounts/{account_id}/resources", Token, "resources", None, "List an account's local resources", resources::local_list),
        endpoint!(s, PUT "/v2/accounts/{account_id}/resources", Token, "resources", res, "Create a local resource", resources::local_create),
        endpoint!(s, GET "/v2/accounts/{account_id}/resources/{resource_id}", Token, "resources", None, "Fetch a local resource", resources::local_get),
        endpoint!(s, POST "/v2/accounts/{account_id}/resources/{resource_id}", Token, "resources", res, "Replace a local resource", resources::local_post),
        endpoint!(s, PATCH "/v2/accounts/{account_id}/resources/{resource_id}", Token, "resources", res, "Merge fields into a local resource", resources::local_patch),
        endpoint!(s, DELETE "/v2/accounts/{account_id}/resources/{resource_id}", Token, "resources", None, "Delete a local resource", resources::local_delete),
        endpoint!(s, GET "/v2/accounts/{account_id}/connectivity", Token, "connectivity", None, "List an account's connectivity (trunkstore) documents", connectivity::list),
        endpoint!(s, PUT "/v2/accounts/{account_id}/connectivity", Token, "connectivity", conn, "Create a connectivity document; its DIDs are marked used_by trunkstore", connectivity::create),
        endpoint!(s, GET "/v2/accounts/{account_id}/connectivity/{connectivity_id}", Token, "connectivity", None, "Fetch a connectivity document", connectivity::get_one),
        endpoint!(s, POST "/v2/accounts/{account_id}/connectivity/{connectivity_id}", Token, "connectivity", conn, "Replace a connectivity document", connectivity::post),
        endpoint!(s, PATCH "/v2/accounts/{account_id}/connectivity/{connectivity_id}", Token, "connectivity", conn, "Merge fields into a connectivity document", connectivity::patch),
        endpoint!(s, DELETE "/v2/accounts/{account_id}/connectivity/{connectivity_id}", Token, "connectivity", None, "Delete a connectivity document; its DIDs are released", connectivity::delete),
        endpoint!(s, GET "/v2/phone_numbers", Public, "phone_numbers", None, "Search the carriers for numbers (?prefix=&quantity=&offset=&country=)", phone_numbers::search),
        endpoint!(s, PUT "/v2/accounts/{account_id}/phone_numbers/{number}/port", Token, "phone_numbers", Some("phone_numbers"), "Create a number in state port_in", phone_numbers::port),
        endpoint!(s, GET "/v2/accounts/{account_id}/phone_numbers", Token, "phone_numbers", None, "The account's numbers", phone_numbers::list),
        endpoint!(s, PUT "/v2/accounts/{account_id}/phone_numbers/collection", Token, "phone_numbers", Some("phone_numbers"), "Create many numbers ({numbers: [...], ...public fields})", phone_numbers::collection_create),
        endpoint!(s, POST "/v2/accounts/{account_id}/phone_numbers/collection", Token, "phone_numbers", Some("phone_numbers"), "Replace the public fields of many numbers", phone_numbers::collection_post),
        endpoint!(s, PATCH "/v2/accounts/{account_id}/phone_numbers/collection", Token, "phone_numbers", Some("phone_numbers"), "Merge into the public fields of many numbers", phone_numbers::collection_patch),
        endpoint!(s, DELETE "/v2/accounts/{account_id}/phone_numbers/collection", Token, "phone_numbers", Some("phone_numbers"), "Release many numbers", phone_numbers::collection_delete),
        endpoint!(s, PUT "/v2/accounts/{account_id}/phone_numbers/collection/activate", Token, "phone_numbers", Some("phone_numbers"), "Move many numbers to the account", phone_numbers::collection_activate),
        endpoint!(s, GET "/v2/accounts/{account_id}/phone_numbers/carriers_info", Token, "phone_numbers", None, "The account's carriers: maximal prefix length, usable carriers and creation states", phone_numbers::carriers_info),
        endpoint!(s, POST "/v2/accounts/{account_id}/phone_numbers/check", Token, "phone_numbers", Some("phone_numbers"), "Ask the configured carriers for each number's status ({numbers: [...]})", phone_numbers::check),
        endpoint!(s, GET "/v2/accounts/{account_id}/phone_numbers/classifiers", Token, "phone_numbers", None, "Every number classifier", phone_numbers::classifiers),
        endpoint!(s, GET "/v2/accounts/{account_id}/phone_numbers/classifiers/{number}", Token, "phone_numbers", None, "The classifier a number matches", phone_numbers::classify),
        endpoint!(s, GET "/v2/accounts/{account_id}/phone_numbers/{number}", Token, "phone_numbers", None, "A number's public JSON (get)", phone_numbers::get_one),
        endpoint!(s, PUT "/v2/accounts/{account_id}/phone_numbers/{number}", Token, "phone_numbers", Some("phone_numbers"), "Create a number assigned to the account (state create_with_state, default in_service)", phone_numbers::create),
        endpoint!(s, POST "/v2/accounts/{account_id}/phone_numbers/{number}", Token, "phone_numbers", Some("phone_numbers"), "Replace a number's public fields", phone_numbers::post),
        endpoint!(s, PATCH "/v2/accounts/{account_id}/phone_numbers/{number}", Token, "phone_numbers", Some("phone_numbers"), "Merge into a number's public fields", phone_numbers::patch),
        endpoint!(s, DELETE "/v2/accounts/{account_id}/phone_numbers/{number}", Token, "phone_numbers", None, "Release a number (?hard=true: delete, superduper admins)", phone_numbers::delete),
        endpoint!(s, PUT "/v2/accounts/{account_id}/phone_numbers/{number}/activate", Token, "phone_numbers", Some("phone_numbers"), "Move a number to the account (in_service)", phone_numbers::activate),
        endpoint!(s, PUT "/v2/accounts/{account_id}/phone_numbers/{number}/reserve", Token, "phone_numbers", None, "Reserve a number for the account", phone_numbers::reserve),
        endpoint!(s, GET "/v2/accounts/{account_id}/phone_numbers/{number}/identify", Token, "phone_numbers", None, "The account a number belongs to", phone_numbers::identify),
        endpoint!(s, GET "/metrics", Public, "operations", None, "Prometheus metrics", ops::metrics_endpoint),
        endpoint!(s, GET "/healthz", Public, "operations", None, "Ready when every reactor has caught up (else 503)", ops::healthz),
        endpoint!(s, GET "/v2/openapi.json", Public, "operations", None, "This document", openapi_endpoint),
    ];
    endpoints.extend(stepswitch::endpoints(state));
    endpoints
}

/// The router of the table: every endpoint, the trusted-network check where the table says so,
/// Crossbar's 404 for anything else.
pub(crate) fn router(state: &AppState) -> axum::Router {
    let mut router = axum::Router::new();
    for endpoint in table(state) {
        let handler = if endpoint.access == Access::Trusted {
            endpoint
                .handler
                .route_layer(from_fn_with_state(state.clone(), ops::trusted_or_superduper))
        } else {
            endpoint.handler
        };
        router = router.route(endpoint.path, handler);
    }
    router.fallback(ops::not_found).method_not_allowed_fallback(ops::invalid_method)
}

async fn openapi_endpoint(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::Json<Value> {
    axum::Json(openapi(&table(&state)))
}

/// The OpenAPI 3.0 document of the table.
pub(crate) fn openapi(endpoints: &[Endpoint]) -> Value {
    let mut paths = Map::new();
    for e in endpoints {
        let params: Vec<Value> = e
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut responses = Map::new();
        let ok = if e.method == Method::PUT && !e.path.ends_with('}') { "201" } else { "200" };
        responses.insert(ok.into(), json!({"description": "success", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}}));
        if e.body.is_some() {
            responses.insert("400".into(), json!({"$ref": "#/components/responses/BadRequest"}));
            responses.insert("413".into(), json!({"$ref": "#/components/responses/TooLarge"}));
        }
        match e.access {
            Access::Public => {}
            Access::Token | Access::Superduper | Access::Trusted => {
                responses
                    .insert("401".into(), json!({"$ref": "#/components/responses/Unauthorized"}));
                responses.insert("403".into(), json!({"$ref": "#/components/responses/Forbidden"}));
            }
        }
        if e.path.ends_with('}') {
            responses.insert("404".into(), json!({"$ref": "#/components/responses/NotFound"}));
        }
        if matches!(e.method, Method::POST | Method::PATCH | Method::DELETE)
            && e.path.ends_with('}')
        {
            responses.insert("409".into(), json!({"$ref": "#/components/responses/Conflict"}));
        }
        let mut op = json!({
            "summary": e.summary,
            "tags": [e.tag],
            "operationId": format!("{}{}", e.method.as_str().to_lowercase(), e.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": responses,
        });
        op["security"] = match e.access {
            Access::Public => json!([]),
            Access::Token | Access::Superduper => json!([{"authToken": []}]),
            Access::Trusted => json!([{}, {"authToken": []}]),
        };
        if let Some(schema) = e.body {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {"data": {"type": "object", "description": format!("validated against Kazoo's {schema}.json schema")}}
                }}}
            });
        }
        let item = paths.entry(e.path.to_string()).or_insert_with(|| json!({}));
        item[e.method.as_str().to_lowercase()] = op;
    }
    super::route_forms::document(&mut paths);
    let error = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let with = |description: &str| {
        let mut r = error.clone();
        r["description"] = json!(description);
        r
    };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Switchboard Crossbar-compatible API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Kazoo Crossbar-shaped API: every reply is {data, status, request_id, revision, auth_token}; errors add error (the HTTP code) and message."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"authToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}},
            "schemas": {
                "Envelope": {"type": "object", "required": ["data", "status", "request_id", "revision"], "properties": {
                    "data": {}, "status": {"type": "string", "enum": ["success"]}, "request_id": {"type": "string"},
                    "revision": {"type": "string"}, "auth_token": {"type": "string"}}},
                "Error": {"type": "object", "required": ["data", "status", "error", "message"], "properties": {
                    "data": {"type": "object", "description": "details; for validation errors {field: {rule: {message}}}"},
                    "status": {"type": "string", "enum": ["error"]}, "error": {"type": "string"},
                    "message": {"type": "string"}, "request_id": {"type": "string"}}}
            },
            "responses": {
                "BadRequest": with("malformed JSON or a validation error"),
                "TooLarge": with("the body is larger than api.max_body_size"),
                "Unauthorized": with("no, unknown or expired auth token"),
                "Forbidden": with("the token's account may not act here"),
                "NotFound": with("no such document"),
                "Conflict": with("the document changed (stale revision)")
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::api::testing::{memory_store, state_over};
    use crate::api::ReadyCheck;

    /// The daemon's state over an in-memory embedded store, without an inbound table.
    fn state_over_memory(checks: Vec<ReadyCheck>) -> (AppState, CancellationToken) {
        state_over(memory_store(), checks, None)
    }

    /// Every path and method of `/v2/openapi.json` is served by the router (a request reaches a
    /// handler: anything but the fallback's `not_found` and 405), and a path outside the
    /// document is not.
    #[tokio::test]
    async fn the_router_serves_exactly_the_documented_operations() {
        let (state, shutdown) = state_over_memory(vec![ReadyCheck {
            name: "test",
            ready: Box::new(|| true),
            feeds: None,
        }]);
        let doc = openapi(&table(&state));
        let app = crate::api::router(&state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
        });
        let client = reqwest::Client::new();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            let concrete = path
                .replace("{account_id}", "acc00000000000000000000000000001")
                .replace("{resource_id}", "r1")
                .replace("{connectivity_id}", "c1")
                .replace("{number}", "+14155550100");
            for method in item.as_object().unwrap().keys() {
                let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let resp = client
                    .request(method.clone(), format!("http://{addr}{concrete}"))
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                assert_ne!(status, reqwest::StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_ne!(body["message"], "not_found", "{method} {path} is not routed");
                operations += 1;
            }
        }
        assert!(operations >= 44, "{operations}");
        let resp = client.get(format!("http://{addr}/v2/undocumented")).send().await.unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::NOT_FOUND);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["message"], "not_found");
        shutdown.cancel();
    }

    #[test]
    fn every_operation_has_an_id_and_responses() {
        // The document's shape does not depend on the handlers: check it on the table's paths.
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (state, shutdown) = state_over_memory(Vec::new());
            let doc = openapi(&table(&state));
            assert_eq!(doc["openapi"], "3.0.3");
            let mut ids = std::collections::BTreeSet::new();
            for item in doc["paths"].as_object().unwrap().values() {
                for op in item.as_object().unwrap().values() {
                    assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()), "{op}");
                    assert!(!op["responses"].as_object().unwrap().is_empty());
                }
            }
            shutdown.cancel();
        });
    }
}

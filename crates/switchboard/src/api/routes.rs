//! The one route table: every endpoint with its method, path, access rule, request body,
//! statuses and summary. The router (which enforces the access rule and the body schema, in
//! [`super::guard`]) and `/v2/openapi.json` ([`super::openapi`]) are both built from it, so
//! they cannot disagree.

use std::sync::LazyLock;

use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{self, MethodRouter};

use super::schema::Schema;
use super::{
    auth, connectivity, guard, openapi, ops, phone_numbers, resources, stepswitch, AppState,
};

/// Who may call an endpoint. The router checks it ([`super::guard`]) before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone.
    Public,
    /// A valid token whose account may act on the path's `{account_id}` (itself, a descendant,
    /// or anything for a superduper admin).
    Token,
    /// A superduper admin's token.
    Superduper,
    /// A client from a trusted network, or a superduper admin's token.
    Trusted,
}

/// The request body an endpoint reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// None (anything sent is ignored).
    None,
    /// Crossbar's `{"data": {...}}`, `data` checked against the schema by the router.
    Data(Schema),
    /// Crossbar's `{"data": {...}}`, merged into the stored document; the merged document is
    /// checked against the schema before it is written.
    Merge(Schema),
    /// A bare `offnet_req` object, as Kazoo's stepswitch receives it (`/route`).
    OffnetReq,
    /// [`Body::OffnetReq`] with `Force-Outbound` (`/outbound`).
    Outbound,
    /// An optional bare JSON object (`/v2/stepswitch/reload`'s `{"account_id": …}`).
    Reload,
}

/// What a successful reply carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Crossbar's envelope.
    Envelope,
    /// `/metrics`: Prometheus text.
    Metrics,
    /// `/healthz`: the readiness object (200 ready, 503 otherwise).
    Health,
    /// `/v2/openapi.json`: this document.
    OpenApi,
    /// The routing answer: Crossbar's envelope, or one SIP URI per line as text.
    Route,
}

/// A query parameter: name, whether required, the JSON schema of its value, description.
pub(crate) type QueryParam = (&'static str, bool, &'static str, &'static str);

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
    /// The request body.
    pub(crate) body: Body,
    /// The status of success.
    pub(crate) ok: u16,
    /// The error statuses the handler itself may answer, beyond those the router and the
    /// request limits give every endpoint (see `openapi`).
    pub(crate) errors: &'static [u16],
    /// The query parameters it reads (a key it does not read is ignored, unless it says
    /// otherwise).
    pub(crate) query: &'static [QueryParam],
    /// What a success carries.
    pub(crate) reply: Reply,
    /// The handler, with its state.
    pub(crate) handler: MethodRouter,
}

impl Endpoint {
    /// An endpoint answering 200 with an envelope, no body, no query, no error of its own.
    fn new(
        method: Method,
        path: &'static str,
        access: Access,
        tag: &'static str,
        summary: &'static str,
        handler: MethodRouter,
    ) -> Endpoint {
        Endpoint {
            method,
            path,
            access,
            summary,
            tag,
            body: Body::None,
            ok: 200,
            errors: &[],
            query: &[],
            reply: Reply::Envelope,
            handler,
        }
    }

    fn body(mut self, body: Body) -> Endpoint {
        self.body = body;
        self
    }

    fn ok(mut self, status: u16) -> Endpoint {
        self.ok = status;
        self
    }

    fn errors(mut self, errors: &'static [u16]) -> Endpoint {
        self.errors = errors;
        self
    }

    fn query(mut self, query: &'static [QueryParam]) -> Endpoint {
        self.query = query;
        self
    }

    fn reply(mut self, reply: Reply) -> Endpoint {
        self.reply = reply;
        self
    }
}

/// A method router for `handler` with its state.
fn on<H, T, S>(method: &Method, handler: H, state: S) -> MethodRouter
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

/// One [`Endpoint`] of the table: `endpoint!(state, METHOD "/path", Access, "tag", "summary",
/// handler)`, then its body, statuses, query and reply.
macro_rules! endpoint {
    ($state:expr, $method:ident $path:literal, $access:ident, $tag:literal, $summary:literal, $handler:expr) => {
        Endpoint::new(
            Method::$method,
            $path,
            Access::$access,
            $tag,
            $summary,
            on(&Method::$method, $handler, ($state).clone()),
        )
    };
}

/// A search's `prefix` and `quantity`.
const PREFIX: &str = r#"{"type": "string", "minLength": 3, "maxLength": 10}"#;
const QUANTITY: &str = r#"{"type": "integer", "minimum": 1, "maximum": 18446744073709551615}"#;
/// A search's `offset` and `country` (a country the dialling-code table does not know is a 400).
const OFFSET: &str = r#"{"type": "integer", "minimum": 0, "maximum": 18446744073709551615}"#;
/// A search's `country`: the codes the dialling-code table knows, in either case.
static COUNTRY: LazyLock<String> = LazyLock::new(|| {
    let codes: Vec<String> =
        numbers::country::codes().flat_map(|c| [c.to_owned(), c.to_ascii_lowercase()]).collect();
    serde_json::json!({"type": "string", "enum": codes}).to_string()
});

/// `?prefix=&quantity=&offset=&country=` of a number search.
static SEARCH: LazyLock<[QueryParam; 4]> = LazyLock::new(|| {
    [
        ("prefix", true, PREFIX, "the digits the numbers start with (3 to 10 characters)"),
        ("quantity", false, QUANTITY, "how many numbers at most (default 1)"),
        ("offset", false, OFFSET, "how many of the carriers' numbers to skip (default 0)"),
        (
            "country",
            false,
            COUNTRY.as_str(),
            "the ISO 3166 country the numbers are in (default US)",
        ),
    ]
});
/// The account's listing reads the same parameters, both optional: with `prefix` it searches.
static ACCOUNT_SEARCH: LazyLock<[QueryParam; 4]> = LazyLock::new(|| {
    [
    (
        "prefix",
        false,
        PREFIX,
        "search the carriers (and the account's own pool) instead of listing the account's numbers",
    ),
    ("quantity", false, QUANTITY, "with prefix: how many numbers at most (default 1)"),
    ("offset", false, OFFSET, "with prefix: how many of the carriers' numbers to skip (default 0)"),
    (
        "country",
        false,
        COUNTRY.as_str(),
        "with prefix: the ISO 3166 country the numbers are in (default US)",
    ),

]
});
const HARD: &[QueryParam] = &[(
    "hard",
    false,
    r#"{"type": "boolean"}"#,
    "delete the number instead of releasing it (superduper admins)",
)];
const RELOAD: &[QueryParam] = &[(
    "account_id",
    false,
    ACCOUNT_ID,
    "reload this account's table (raw id or account database name) instead of the global one",
)];
/// An account id as `/v2/stepswitch/reload` reads it: raw, or the account database's name
/// (plain or encoded).
pub(crate) const ACCOUNT_ID: &str = r#"{"type": "string", "pattern": "^([0-9a-f]{32}|account(/|%2[Ff])[0-9a-f]{2}(/|%2[Ff])[0-9a-f]{2}(/|%2[Ff])[0-9a-f]{28})$"}"#;

/// Every endpoint the daemon serves.
pub(crate) fn table(state: &AppState) -> Vec<Endpoint> {
    use Body::{Data, Merge};
    let s = state;
    let r = state.routing.clone();
    let res = Schema::Resources;
    let conn = Schema::Connectivity;
    let num = Schema::PhoneNumbers;
    let coll = Schema::PhoneNumbersCollection;
    // What reading or writing a document can answer besides success: no such document or
    // account (404), a stale revision (409), the store failing (503).
    const READ: &[u16] = &[404, 503];
    const WRITE: &[u16] = &[404, 409, 503];
    // A number operation: Kazoo's knm errors (a payment refusal is 402, a refusal 403).
    const NUMBER: &[u16] = &[402, 404, 409, 500, 503];
    vec![
        endpoint!(s, PUT "/v2/api_auth", Public, "auth", "Exchange an account's api key for an auth token", auth::api_auth).body(Data(Schema::ApiAuth)).ok(201).errors(&[401, 503]),
        endpoint!(s, GET "/v2/resources", Superduper, "resources", "List global resources (db offnet)", resources::global_list).errors(&[503]),
        endpoint!(s, PUT "/v2/resources", Superduper, "resources", "Create a global resource", resources::global_create).body(Data(res)).ok(201).errors(WRITE),
        endpoint!(s, GET "/v2/resources/{resource_id}", Superduper, "resources", "Fetch a global resource", resources::global_get).errors(READ),
        endpoint!(s, POST "/v2/resources/{resource_id}", Superduper, "resources", "Replace a global resource", resources::global_post).body(Data(res)).errors(WRITE),
        endpoint!(s, PATCH "/v2/resources/{resource_id}", Superduper, "resources", "Merge fields into a global resource", resources::global_patch).body(Merge(res)).errors(WRITE),
        endpoint!(s, DELETE "/v2/resources/{resource_id}", Superduper, "resources", "Delete a global resource", resources::global_delete).errors(WRITE),
        endpoint!(s, GET "/v2/accounts/{account_id}/resources", Token, "resources", "List an account's local resources", resources::local_list).errors(READ),
        endpoint!(s, PUT "/v2/accounts/{account_id}/resources", Token, "resources", "Create a local resource", resources::local_create).body(Data(res)).ok(201).errors(WRITE),
        endpoint!(s, GET "/v2/accounts/{account_id}/resources/{resource_id}", Token, "resources", "Fetch a local resource", resources::local_get).errors(READ),
        endpoint!(s, POST "/v2/accounts/{account_id}/resources/{resource_id}", Token, "resources", "Replace a local resource", resources::local_post).body(Data(res)).errors(WRITE),
        endpoint!(s, PATCH "/v2/accounts/{account_id}/resources/{resource_id}", Token, "resources", "Merge fields into a local resource", resources::local_patch).body(Merge(res)).errors(WRITE),
        endpoint!(s, DELETE "/v2/accounts/{account_id}/resources/{resource_id}", Token, "resources", "Delete a local resource", resources::local_delete).errors(WRITE),
        endpoint!(s, GET "/v2/accounts/{account_id}/connectivity", Token, "connectivity", "List an account's connectivity (trunkstore) documents", connectivity::list).errors(READ),
        endpoint!(s, PUT "/v2/accounts/{account_id}/connectivity", Token, "connectivity", "Create a connectivity document; its DIDs are marked used_by trunkstore", connectivity::create).body(Data(conn)).ok(201).errors(NUMBER),
        endpoint!(s, GET "/v2/accounts/{account_id}/connectivity/{connectivity_id}", Token, "connectivity", "Fetch a connectivity document", connectivity::get_one).errors(READ),
        endpoint!(s, POST "/v2/accounts/{account_id}/connectivity/{connectivity_id}", Token, "connectivity", "Replace a connectivity document", connectivity::post).body(Data(conn)).errors(NUMBER),
        endpoint!(s, PATCH "/v2/accounts/{account_id}/connectivity/{connectivity_id}", Token, "connectivity", "Merge fields into a connectivity document", connectivity::patch).body(Merge(conn)).errors(NUMBER),
        endpoint!(s, DELETE "/v2/accounts/{account_id}/connectivity/{connectivity_id}", Token, "connectivity", "Delete a connectivity document; its DIDs are released", connectivity::delete).errors(NUMBER),
        endpoint!(s, GET "/v2/phone_numbers", Public, "phone_numbers", "Search the carriers for numbers (?prefix=&quantity=&offset=&country=); the hits are kept as discovery records for buying", phone_numbers::search).query(&*SEARCH).errors(NUMBER),
        endpoint!(s, PUT "/v2/accounts/{account_id}/phone_numbers/{number}/port", Token, "phone_numbers", "Create a number in state port_in", phone_numbers::port).body(Data(num)).ok(201).errors(NUMBER),
        endpoint!(s, GET "/v2/accounts/{account_id}/phone_numbers", Token, "phone_numbers", "The account's numbers; with ?prefix= a search for the account", phone_numbers::list).query(&*ACCOUNT_SEARCH).errors(NUMBER),
        endpoint!(s, PUT "/v2/accounts/{account_id}/phone_numbers/collection", Token, "phone_numbers", "Create many numbers ({numbers: [...], ...public fields}); 200 with each number's result", phone_numbers::collection_create).body(Data(coll)).errors(NUMBER),
        endpoint!(s, POST "/v2/accounts/{account_id}/phone_numbers/collection", Token, "phone_numbers", "Replace the public fields of many numbers", phone_numbers::collection_post).body(Data(coll)).errors(NUMBER),
        endpoint!(s, PATCH "/v2/accounts/{account_id}/phone_numbers/collection", Token, "phone_numbers", "Merge into the public fields of many numbers", phone_numbers::collection_patch).body(Data(coll)).errors(NUMBER),
        endpoint!(s, DELETE "/v2/accounts/{account_id}/phone_numbers/collection", Token, "phone_numbers", "Release many numbers", phone_numbers::collection_delete).body(Data(coll)).errors(NUMBER),
        endpoint!(s, PUT "/v2/accounts/{account_id}/phone_numbers/collection/activate", Token, "phone_numbers", "Move many numbers to the account", phone_numbers::collection_activate).body(Data(coll)).errors(NUMBER),
        endpoint!(s, GET "/v2/accounts/{account_id}/phone_numbers/carriers_info", Token, "phone_numbers", "The account's carriers: maximal prefix length, usable carriers and creation states", phone_numbers::carriers_info).errors(NUMBER),
        endpoint!(s, POST "/v2/accounts/{account_id}/phone_numbers/check", Token, "phone_numbers", "Ask the configured carriers for each number's status ({numbers: [...]})", phone_numbers::check).body(Data(Schema::NumberList)).errors(NUMBER),
        endpoint!(s, GET "/v2/accounts/{account_id}/phone_numbers/classifiers", Token, "phone_numbers", "Every number classifier", phone_numbers::classifiers).errors(NUMBER),
        endpoint!(s, GET "/v2/accounts/{account_id}/phone_numbers/classifiers/{number}", Token, "phone_numbers", "The classifier a number matches (404 when none)", phone_numbers::classify).errors(NUMBER),
        endpoint!(s, GET "/v2/accounts/{account_id}/phone_numbers/{number}", Token, "phone_numbers", "A number's public JSON (get)", phone_numbers::get_one).errors(NUMBER),
        endpoint!(s, PUT "/v2/accounts/{account_id}/phone_numbers/{number}", Token, "phone_numbers", "Create a number assigned to the account, in the state create_with_state names (default in_service)", phone_numbers::create).body(Data(num)).ok(201).errors(NUMBER),
        endpoint!(s, POST "/v2/accounts/{account_id}/phone_numbers/{number}", Token, "phone_numbers", "Replace a number's public fields", phone_numbers::post).body(Data(num)).errors(NUMBER),
        endpoint!(s, PATCH "/v2/accounts/{account_id}/phone_numbers/{number}", Token, "phone_numbers", "Merge into a number's public fields", phone_numbers::patch).body(Data(num)).errors(NUMBER),
        endpoint!(s, DELETE "/v2/accounts/{account_id}/phone_numbers/{number}", Token, "phone_numbers", "Release a number (?hard=true: delete, superduper admins)", phone_numbers::delete).query(HARD).errors(NUMBER),
        endpoint!(s, PUT "/v2/accounts/{account_id}/phone_numbers/{number}/activate", Token, "phone_numbers", "Move a number to the account (in_service); the body's fields are merged in", phone_numbers::activate).body(Data(num)).errors(NUMBER),
        endpoint!(s, PUT "/v2/accounts/{account_id}/phone_numbers/{number}/reserve", Token, "phone_numbers", "Reserve a number for the account", phone_numbers::reserve).errors(NUMBER),
        endpoint!(s, GET "/v2/accounts/{account_id}/phone_numbers/{number}/identify", Token, "phone_numbers", "The account a number belongs to", phone_numbers::identify).errors(NUMBER),
        endpoint!(s, POST "/v2/stepswitch/route", Trusted, "routing", "Route a dialled number (body: an offnet_req; ?format=text or Accept: text/plain for one SIP URI per line; ?explain=true)", stepswitch::route).body(Body::OffnetReq).reply(Reply::Route).errors(&[404, 503]),
        endpoint!(s, GET "/v2/stepswitch/route", Trusted, "routing", "Route a dialled number given as query parameters (To-DID, Flags, ...); same answers as POST", stepswitch::route_get).reply(Reply::Route).errors(&[404, 503]),
        endpoint!(s, POST "/v2/stepswitch/outbound", Trusted, "routing", "On-net check, then carrier routing (body: an offnet_req with Force-Outbound)", stepswitch::outbound).body(Body::Outbound).errors(&[503]),
        endpoint!(r, GET "/v2/stepswitch/status", Trusted, "routing", "Route tables, their diagnostics and feed state", stepswitch::status),
        endpoint!(r, POST "/v2/stepswitch/reload", Trusted, "routing", "Rebuild the global table (or ?account_id=A's)", stepswitch::reload).body(Body::Reload).query(RELOAD).errors(&[404, 503]),
        endpoint!(r, POST "/v2/stepswitch/flush", Trusted, "routing", "Re-read and rebuild every table", stepswitch::flush),
        endpoint!(s, GET "/metrics", Public, "operations", "Prometheus metrics", ops::metrics_endpoint).reply(Reply::Metrics).errors(&[500]),
        endpoint!(s, GET "/healthz", Public, "operations", "Ready when every reactor has caught up (else 503)", ops::healthz).reply(Reply::Health),
        endpoint!(s, GET "/v2/openapi.json", Public, "operations", "This document", openapi_endpoint).reply(Reply::OpenApi),
    ]
}

/// The router of the table: every endpoint behind its guard (the access rule and body the table
/// declares, [`super::guard`]), Crossbar's 404 for anything else.
pub(crate) fn router(state: &AppState) -> axum::Router {
    let mut router = axum::Router::new();
    for endpoint in table(state) {
        let rule = guard::Rule {
            state: state.clone(),
            access: endpoint.access,
            body: endpoint.body,
            query: (endpoint.reply != Reply::Route).then_some(endpoint.query),
        };
        let handler = endpoint.handler.route_layer(from_fn_with_state(rule, guard::guard));
        router = router.route(endpoint.path, handler);
    }
    router.fallback(ops::not_found).method_not_allowed_fallback(ops::invalid_method)
}

async fn openapi_endpoint(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::Json<serde_json::Value> {
    axum::Json(openapi::document(&table(&state)))
}

#[cfg(test)]
mod tests {

    use tokio_util::sync::CancellationToken;

    use serde_json::Value;

    use super::*;
    use crate::api::testing::{concrete, memory_store, serve, state_over};
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
        let doc = openapi::document(&table(&state));
        let addr = serve(&state).await;
        let client = reqwest::Client::new();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            let concrete = concrete(path, "acc00000000000000000000000000001");
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
            let doc = openapi::document(&table(&state));
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

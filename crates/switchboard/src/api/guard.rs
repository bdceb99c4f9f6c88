//! What the router checks in front of every handler, from the route table: the access rule
//! ([`Access`]) and the request body ([`Body`]). A handler runs only for a caller the rule
//! admits (it reads that caller as a [`Caller`]) and, for a Crossbar body, only with `data`
//! the declared schema accepts (it reads it as a [`CrossbarBody`]).

use std::net::SocketAddr;

use axum::body::Body as HttpBody;
use axum::extract::{ConnectInfo, FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{token_of, Auth, Caller};
use super::body::{self, CrossbarBody};
use super::error::ApiError;
use super::routes::{Access, Body, QueryParam};
use super::AppState;

/// One endpoint's rule: who may call it and what body it reads.
#[derive(Clone)]
pub(crate) struct Rule {
    /// The daemon's state (the accounts and tokens, the trusted networks).
    pub(crate) state: AppState,
    /// Who may call it.
    pub(crate) access: Access,
    /// The body it reads.
    pub(crate) body: Body,
    /// The query parameters it reads (any other is a 400), or `None` when the handler reads
    /// and checks the query itself.
    pub(crate) query: Option<&'static [QueryParam]>,
}

/// Checks `rule`, then runs the handler with the caller and the checked body.
pub(crate) async fn guard(State(rule): State<Rule>, req: Request, next: Next) -> Response {
    match check(&rule, req).await {
        Ok(req) => next.run(req).await,
        Err(err) => err.into_response(),
    }
}

async fn check(rule: &Rule, req: Request) -> Result<Request, ApiError> {
    let (mut parts, body) = req.into_parts();
    if let Some(caller) = caller(rule, &mut parts).await? {
        parts.extensions.insert(caller);
    }
    if let Some(declared) = rule.query {
        check_query(parts.uri.query(), declared)?;
    }
    match rule.body {
        Body::Data(schema) | Body::Merge(schema) => {
            let bytes = body::read(body, rule.state.settings.max_body_size).await?;
            let data = body::parse_body(&bytes)?;
            if let Body::Data(_) = rule.body {
                schema.check(&data)?;
            }
            parts.extensions.insert(CrossbarBody(data));
            Ok(Request::from_parts(parts, HttpBody::empty()))
        }
        Body::None | Body::OffnetReq | Body::Outbound | Body::Reload => {
            Ok(Request::from_parts(parts, body))
        }
    }
}

/// The caller `rule` admits (`None` for a public endpoint, or a trusted client without a
/// token), or the 401/403 refusing the request.
async fn caller(rule: &Rule, parts: &mut Parts) -> Result<Option<Caller>, ApiError> {
    let auth = &rule.state.auth;
    match rule.access {
        Access::Public => Ok(None),
        Access::Token => {
            let caller = auth.caller(token_of(parts).as_deref())?;
            if let Some(account) = path_param(parts, "account_id").await {
                auth.authorize(&caller, &account)?;
            }
            Ok(Some(caller))
        }
        Access::Superduper => {
            let caller = auth.caller(token_of(parts).as_deref())?;
            Auth::require_superduper(&caller)?;
            Ok(Some(caller))
        }
        Access::Trusted => {
            let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
            if peer.is_some_and(|ip| rule.state.settings.is_trusted(ip)) {
                return Ok(None);
            }
            let caller = auth.caller(token_of(parts).as_deref())?;
            if !caller.superduper {
                return Err(ApiError::Forbidden(
                    "the routing endpoints need a trusted network or a superduper admin's token"
                        .into(),
                ));
            }
            Ok(Some(caller))
        }
    }
}

/// Refuses a query parameter the endpoint does not read (a typo is not silently ignored).
fn check_query(query: Option<&str>, declared: &[QueryParam]) -> Result<(), ApiError> {
    for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
        let raw = pair.split_once('=').map_or(pair, |(key, _)| key);
        let key = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        if !declared.iter().any(|(name, ..)| *name == key) {
            let known: Vec<&str> = declared.iter().map(|(name, ..)| *name).collect();
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {key:?}; this endpoint reads {}",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            )));
        }
    }
    Ok(())
}

/// The (percent-decoded) value of the path parameter `name`.
async fn path_param(parts: &mut Parts, name: &str) -> Option<String> {
    let params = RawPathParams::from_request_parts(parts, &()).await.ok()?;
    params.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_owned())
}

/// The caller the router admitted. An endpoint whose rule identifies no caller (public, or a
/// trusted client without a token) has none: asking for one there is a defect of the table.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::Internal("the route table admits this request without a caller".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::api::routes::table;
    use crate::api::testing::{concrete, memory_store, serve, settings, state_with};

    use super::*;

    #[test]
    fn a_query_parameter_the_endpoint_does_not_read_is_refused() {
        let declared: &[QueryParam] = &[("hard", false, "{}", "")];
        assert!(check_query(None, declared).is_ok());
        assert!(check_query(Some("hard=true&"), declared).is_ok());
        assert!(matches!(check_query(Some("hrad=true"), declared), Err(ApiError::BadRequest(_))));
        assert!(matches!(check_query(Some("x=1"), &[]), Err(ApiError::BadRequest(_))));
    }

    const OWNER: &str = "acc00000000000000000000000000001";
    const FOREIGN: &str = "acc00000000000000000000000000002";

    fn account(id: &str, key: &str) -> Value {
        json!({"_id": id, "pvt_type": "account", "pvt_api_key": key, "pvt_tree": [], "name": id})
    }

    /// Every operation of the route table that is not public, driven from the table itself (a
    /// new route is covered without editing this test): without a token it is a 401, with the
    /// token of an account outside the path's account tree (and no superduper admin) a 403, and
    /// the handler never runs. No network is trusted here, so the routing endpoints need a
    /// token too.
    #[tokio::test]
    async fn every_route_refuses_a_missing_token_and_a_foreign_account() {
        let mut untrusting = settings();
        untrusting.trusted_networks = Vec::new();
        let store = memory_store();
        let accounts = docstore::naming::accounts_db();
        store.ensure_db(&accounts).await.unwrap();
        store.put(&accounts, account(OWNER, "owner-key")).await.unwrap();
        store.put(&accounts, account(FOREIGN, "foreign-key")).await.unwrap();
        let (state, shutdown) = state_with(store, Vec::new(), None, untrusting);
        crate::api::testing::caught_up(&state).await;
        let (foreign, _) = state.auth.login("foreign-key").unwrap();
        let addr = serve(&state).await;
        let client = reqwest::Client::new();
        let mut guarded = 0;
        for endpoint in table(&state) {
            if endpoint.access == Access::Public {
                continue;
            }
            guarded += 1;
            let path = concrete(endpoint.path, OWNER);
            let method = reqwest::Method::from_bytes(endpoint.method.as_str().as_bytes()).unwrap();
            let body = json!({"data": {"numbers": ["+14155550100"]}, "To-DID": "+14155550100"});
            for (token, expected) in [(None, 401), (Some(foreign.as_str()), 403)] {
                let mut request =
                    client.request(method.clone(), format!("http://{addr}{path}")).json(&body);
                if let Some(token) = token {
                    request = request.header("X-Auth-Token", token);
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let reply: Value = response.json().await.unwrap();
                assert_eq!(status, expected, "{} {path} with {token:?}: {reply}", endpoint.method);
                let key = if expected == 401 { "invalid_credentials" } else { "forbidden" };
                assert_eq!(reply["message"], key, "{} {path}: {reply}", endpoint.method);
            }
        }
        assert!(guarded >= 40, "{guarded}");
        shutdown.cancel();
    }
}

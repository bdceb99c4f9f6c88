//! The HTTP API, shaped like Kazoo's Crossbar: one route table ([`routes`]) from which both the
//! router (which enforces each route's access rule and body schema, [`guard`]) and
//! `/v2/openapi.json` ([`openapi`]) are built, the Crossbar envelope ([`envelope`]) and request
//! bodies ([`body`]), the one error mapping ([`error`]), auth ([`auth`]) and one module per area.

pub(crate) mod auth;
mod body;
mod connectivity;
mod docs;
pub(crate) mod envelope;
pub(crate) mod error;
mod guard;
mod limits;
mod openapi;
pub(crate) mod ops;
pub(crate) mod phone_numbers;
mod resources;
pub(crate) mod route_forms;
pub(crate) mod routes;
mod schema;
mod state;
mod stepswitch;
#[cfg(test)]
mod testing;
pub(crate) mod token;

use axum::extract::DefaultBodyLimit;
use axum::Router;

pub(crate) use state::{AppState, Inner, ReadyCheck};

/// Every route the daemon serves, with the request-id/metrics middleware, the request limits
/// ([`limits`]) and the body limit.
pub(crate) fn router(state: &AppState) -> Router {
    routes::router(state)
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::limit_request))
        .layer(axum::middleware::from_fn(ops::request_layer))
        .layer(DefaultBodyLimit::max(state.settings.max_body_size))
}

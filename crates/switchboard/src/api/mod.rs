//! The HTTP API, shaped like Kazoo's Crossbar: one route table ([`routes`]) from which both the
//! router and `/v2/openapi.json` are built, the Crossbar envelope ([`envelope`]), the one
//! error mapping ([`error`]), auth ([`auth`]) and one module per area.

pub(crate) mod auth;
mod connectivity;
mod docs;
pub(crate) mod envelope;
pub(crate) mod error;
mod limits;
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

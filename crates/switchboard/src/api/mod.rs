//! The HTTP API: one router per area, merged here.

mod stepswitch;

use axum::Router;

/// Every route the daemon serves.
pub(crate) fn router(routing: ::stepswitch::reactor::Routing) -> Router {
    Router::new().merge(self::stepswitch::router(routing))
}

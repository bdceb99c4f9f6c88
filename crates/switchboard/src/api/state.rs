//! What every handler shares: the store, the settings, auth, the routing reader, metrics and
//! the readiness of the reactors.

use std::ops::Deref;
use std::sync::Arc;

use docstore::SharedStore;
use metrics_exporter_prometheus::PrometheusHandle;
use stepswitch::reactor::Routing;

use super::auth::Auth;
use crate::config::Settings;

/// A reactor's readiness, as `/healthz` reports it.
pub(crate) struct ReadyCheck {
    /// The reactor's name.
    pub(crate) name: &'static str,
    /// Whether it has caught up with its feeds.
    pub(crate) ready: Box<dyn Fn() -> bool + Send + Sync>,
    /// Its feeds' trouble and undecodable documents, for reactors that follow the store.
    pub(crate) feeds: Option<Box<dyn Fn() -> docstore::BoardReport + Send + Sync>>,
}

/// The shared state, cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

/// The fields of [`AppState`].
pub(crate) struct Inner {
    /// The document store.
    pub(crate) store: SharedStore,
    /// The daemon's settings.
    pub(crate) settings: Arc<Settings>,
    /// Accounts and tokens.
    pub(crate) auth: Arc<Auth>,
    /// The live `accounts` and `system_config` databases every consumer reads.
    pub(crate) live: docstore::SharedDocs,
    /// The live routing tables.
    pub(crate) routing: Routing,
    /// The Prometheus renderer.
    pub(crate) metrics: Option<PrometheusHandle>,
    /// The reactors `/healthz` waits for.
    pub(crate) checks: Vec<ReadyCheck>,
    /// The number store layer of the phone_numbers routes.
    pub(crate) numbers: Arc<super::phone_numbers::NumbersCache>,
    /// The live inbound number table (for metrics and health).
    pub(crate) inbound: Option<numbers::inbound::InboundTable>,
}

impl AppState {
    /// Wraps the fields.
    pub(crate) fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

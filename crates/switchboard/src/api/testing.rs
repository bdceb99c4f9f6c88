//! Test support: the daemon's state over a store of the test's choosing.

use std::sync::Arc;
use std::time::Duration;

use docstore::{EmbeddedStore, SharedStore};
use numbers::inbound::InboundTable;
use tokio_util::sync::CancellationToken;

use super::auth::Auth;
use super::token::TokenKey;
use super::{AppState, Inner, ReadyCheck};

/// The daemon's settings with the defaults (loopback trusted).
pub(crate) fn settings() -> crate::config::Settings {
    let global = crate::cli::GlobalArgs {
        couch_url: None,
        couch_user: None,
        couch_password: None,
        data_dir: Some("/nonexistent".into()),
        json: false,
        create_data_dir: false,
        log_level: None,
    };
    crate::config::Settings::resolve(&global, &crate::config::ServeArgs::default()).unwrap()
}

/// A fresh in-memory embedded store.
pub(crate) fn memory_store() -> SharedStore {
    Arc::new(EmbeddedStore::in_memory().unwrap())
}

/// The daemon's state over `store`, with its live `accounts` and `system_config`, a routing
/// reactor (both stopped by cancelling the returned token) and `inbound` as the inbound number
/// table. Call inside a Tokio runtime; [`caught_up`] waits for the live documents.
pub(crate) fn state_over(
    store: SharedStore,
    checks: Vec<ReadyCheck>,
    inbound: Option<InboundTable>,
) -> (AppState, CancellationToken) {
    state_with(store, checks, inbound, settings())
}

/// [`state_over`] with these settings.
pub(crate) fn state_with(
    store: SharedStore,
    checks: Vec<ReadyCheck>,
    inbound: Option<InboundTable>,
    settings: crate::config::Settings,
) -> (AppState, CancellationToken) {
    let shutdown = CancellationToken::new();
    let feed = docstore::FeedOptions::defaults();
    let live = docstore::SharedDocs::spawn(store.clone(), &feed.follow("test"), shutdown.clone());
    let routing =
        ::stepswitch::reactor::spawn_with(store.clone(), live.clone(), feed, shutdown.clone());
    let key = TokenKey::new(vec![5; 32]).expect("a 32-byte key");
    let state = AppState::new(Inner {
        store,
        settings: Arc::new(settings),
        auth: Arc::new(Auth::new(live.accounts.clone(), key, Duration::from_secs(60))),
        live,
        routing,
        metrics: None,
        checks,
        numbers: super::phone_numbers::cache(),
        inbound,
    });
    (state, shutdown)
}

/// Waits until the state's live `accounts` and `system_config` have been read in full (or
/// panics after a generous bound).
pub(crate) async fn caught_up(state: &AppState) {
    let wait = async {
        for live in [&state.live.accounts, &state.live.system_config] {
            let mut generations = live.subscribe();
            while !live.is_caught_up() {
                generations.changed().await.expect("the live follower runs");
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.expect("live documents caught up");
}

/// Serves the daemon's router for `state` on a free loopback port (with the peer address, as
/// the daemon does); its address.
pub(crate) async fn serve(state: &AppState) -> std::net::SocketAddr {
    let app = super::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .await
    });
    addr
}

/// A route table path with its parameters filled in (`account` for `{account_id}`).
pub(crate) fn concrete(path: &str, account: &str) -> String {
    path.replace("{account_id}", account)
        .replace("{resource_id}", "r1")
        .replace("{connectivity_id}", "c1")
        .replace("{number}", "+14155550100")
}

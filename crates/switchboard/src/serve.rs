//! `switchboard serve`: the daemon. Resolves the settings, opens the store (seeding an empty
//! embedded store with the demo documents), keeps the design documents deployed, starts the reactors
//! (routing, the numbers inbound table and lifecycle crawler, the API's account index) and serves the HTTP API until SIGTERM or ctrl-c.
//!
//! Shutdown: stop accepting connections, let in-flight requests (writes included) finish for up
//! to 30 s, then stop the reactors and wait for their tasks to end.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use docstore::{DbName, SharedStore};
use serde_json::Value;
use stepswitch::reactor;
use tokio_util::sync::CancellationToken;

use crate::api::{self, auth::Auth, AppState, Inner, ReadyCheck};
use crate::cli::GlobalArgs;
use crate::config::{ServeArgs, Settings, StoreSettings, DEFAULT_SHUTDOWN_GRACE};

/// The demo documents, compiled in (see `fixtures/demo/LICENSE-NOTE.txt`).
const DEMO_SEED: &str = include_str!("../../../fixtures/demo/seed.json");

/// Runs the daemon until SIGTERM or ctrl-c.
pub(crate) async fn run(args: &ServeArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let settings = Arc::new(Settings::resolve(global, args)?);
    crate::init_tracing(&settings.log_level);
    let termination = Termination::install();
    // The signal is heard from the start: a start that keeps retrying its reads can be stopped.
    let signalled = CancellationToken::new();
    tokio::spawn({
        let signalled = signalled.clone();
        async move {
            termination.wait().await;
            signalled.cancel();
        }
    });
    let store = match &settings.store {
        StoreSettings::Couch { url, user, password } => {
            let max_requests = settings.store_max_requests;
            crate::store::open_couch(url, user.as_deref(), password.as_deref(), max_requests)
                .await?
        }
        // The README's first command works on a fresh machine: the default directory is created.
        StoreSettings::Embedded { data_dir } => crate::store::open_embedded(
            data_dir,
            global.create_data_dir || *data_dir == docstore::EmbeddedStore::default_dir(),
        )?,
    };

    let demo = match &settings.store {
        StoreSettings::Embedded { .. } if settings.seed_demo => seed_demo(&store).await?,
        _ => None,
    };

    let shutdown = CancellationToken::new();
    let metrics = api::ops::install_metrics();

    // The one set of feed settings every follower below runs on.
    let feed = settings.feed_options();

    // `accounts` and `system_config`, followed once for every consumer below.
    let live = docstore::SharedDocs::spawn(
        store.clone(),
        &feed.follow("switchboard-live"),
        shutdown.clone(),
    );

    let routing = reactor::spawn_with(store.clone(), live.clone(), feed.clone(), shutdown.clone());

    // Design documents in every matching database, as databases appear, for as long as we run;
    // started once global routing is served, so that its first read of every database does not
    // hold up the reads global routing waits for.
    let design = Arc::new(std::sync::OnceLock::new());
    let keeper_start = tokio::spawn({
        let (design, routing, store) = (design.clone(), routing.clone(), store.clone());
        let keep = feed.clone();
        async move {
            let mut generations = routing.generations();
            while routing.phase() == reactor::Phase::Starting {
                tokio::select! {
                    changed = generations.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                }
            }
            let _ = design.set(docstore::keep(store, keep));
        }
    });

    // The number reactors: the live inbound table and the lifecycle crawler (Kazoo's number crawler (`knm_number_crawler`)).
    let inbound = numbers::inbound::InboundTable::start(store.clone(), feed.clone());
    let crawler =
        retried("system_config/tasks for the number crawler", &settings, &signalled, || {
            numbers::crawler::Crawler::from_store(store.clone())
        })
        .await;
    let Some(crawler) = crawler else { return Ok(ExitCode::SUCCESS) };
    let crawler = crate::crawl::spawn(store.clone(), crawler, shutdown.clone());

    // Tokens are signed with the key every instance on this store shares.
    let key = load_token_key(&store, &shutdown).await?;
    let auth = Arc::new(Auth::new(live.accounts.clone(), key, settings.token_lifetime));

    let checks = vec![
        ReadyCheck {
            name: "routing",
            ready: Box::new({
                let routing = routing.clone();
                move || routing.is_caught_up()
            }),
            feeds: Some(Box::new({
                let routing = routing.clone();
                move || routing.feeds()
            })),
        },
        ReadyCheck {
            name: "accounts",
            ready: Box::new({
                let auth = auth.clone();
                move || auth.is_caught_up()
            }),
            feeds: Some(Box::new({
                let auth = auth.clone();
                move || auth.board().report()
            })),
        },
        ReadyCheck {
            name: "system_config",
            ready: Box::new({
                let live = live.clone();
                move || live.system_config.is_caught_up()
            }),
            feeds: Some(Box::new({
                let live = live.clone();
                move || live.system_config.board().report()
            })),
        },
        ReadyCheck {
            name: "numbers_inbound",
            ready: Box::new({
                let inbound = inbound.clone();
                move || inbound.is_caught_up()
            }),
            feeds: Some(Box::new({
                let inbound = inbound.clone();
                move || inbound.status().feeds
            })),
        },
        ReadyCheck {
            name: "design_docs",
            ready: Box::new({
                let design = design.clone();
                move || design.get().is_some_and(docstore::DesignKeeper::is_caught_up)
            }),
            feeds: None,
        },
    ];
    let state = AppState::new(Inner {
        store: store.clone(),
        settings: settings.clone(),
        auth,
        live,
        routing,
        metrics,
        checks,
        numbers: api::phone_numbers::cache(),
        inbound: Some(inbound),
    });
    let app = api::router(&state);

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr().context("no local address")?;
    print_banner(addr, &settings, demo.as_ref());

    let stop = shutdown.clone();
    let stopping = CancellationToken::new();
    let stopping_signal = stopping.clone();
    let limits = crate::http::ConnLimits {
        header_read_timeout: settings.header_read_timeout,
        max_connections: settings.max_connections,
    };
    let server = crate::http::serve(listener, app, limits, async move {
        tokio::select! {
            _ = signalled.cancelled() => {}
            _ = stop.cancelled() => {}
        }
        stopping_signal.cancel();
    });
    let server = tokio::spawn(server);
    // In-flight requests get a grace period once the signal came; then the server is dropped.
    let result = tokio::select! {
        result = server => result.context("the HTTP server task failed")?.context("the HTTP server failed"),
        _ = async {
            stopping.cancelled().await;
            tokio::time::sleep(DEFAULT_SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("in-flight requests did not finish within {DEFAULT_SHUTDOWN_GRACE:?}");
            Ok(())
        }
    };
    shutdown.cancel();
    keeper_start.abort();
    drop(design);
    crawler.abort();
    tracing::info!("stopped");
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The shared token signing key; a transient storage failure (the store unreachable, a timeout)
/// is retried every second until shutdown; a refusal (no permission to create `system_auth`) or
/// a key document that holds no usable key is fatal.
async fn load_token_key(
    store: &SharedStore,
    shutdown: &CancellationToken,
) -> anyhow::Result<crate::api::token::TokenKey> {
    loop {
        match crate::api::token::TokenKey::load_or_create(store).await {
            Ok(key) => return Ok(key),
            Err(err)
                if err
                    .downcast_ref::<docstore::Error>()
                    .is_some_and(docstore::Error::is_transient) =>
            {
                tracing::warn!(error = %err, "cannot read the token signing key; retrying");
            }
            Err(err) => return Err(err.context("the token signing key")),
        }
        tokio::select! {
            _ = shutdown.cancelled() => anyhow::bail!("stopped before the token signing key was read"),
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

/// Runs a start-time read until it succeeds, logging each failure and waiting with the feeds'
/// backoff (`--backoff-base`, `--backoff-cap`) in between: a store that is down or overloaded
/// at start delays the daemon, it never ends it. `None` when a stop signal came first.
async fn retried<T, E, F, Fut>(
    what: &str,
    settings: &Settings,
    signalled: &CancellationToken,
    mut read: F,
) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 0u32;
    loop {
        let result = tokio::select! {
            _ = signalled.cancelled() => return None,
            result = read() => result,
        };
        match result {
            Ok(value) => return Some(value),
            Err(error) => {
                attempt += 1;
                let wait = docstore::backoff(settings.backoff_base, settings.backoff_cap, attempt)
                    .max(settings.backoff_base);
                tracing::warn!(%error, attempt, ?wait, "Cannot read {what} at start; retrying.");
                tokio::select! {
                    _ = signalled.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// What the demo seeding reports.
struct Demo {
    api_key: String,
    account_id: String,
    sub_account_id: String,
    seeded: bool,
}

/// Writes the demo documents into an embedded store whose `accounts` database does not exist
/// yet; reports the demo key either way when the demo account is present.
async fn seed_demo(store: &SharedStore) -> anyhow::Result<Option<Demo>> {
    let seed: Value = serde_json::from_str(DEMO_SEED).context("fixtures/demo/seed.json")?;
    let text = |key: &str| seed.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let demo = Demo {
        api_key: text("demo_api_key"),
        account_id: text("demo_account_id"),
        sub_account_id: text("demo_sub_account_id"),
        seeded: false,
    };
    let accounts = docstore::naming::accounts_db();
    if store.db_exists(&accounts).await? {
        let present = store.get(&accounts, &demo.account_id).await?.is_some();
        return Ok(present.then_some(demo));
    }
    let dbs = seed.get("dbs").and_then(Value::as_object).context("seed.json has no dbs")?;
    // `accounts` last: its existence marks a finished seed.
    let mut names: Vec<&String> = dbs.keys().collect();
    names.sort_by_key(|n| n.as_str() == docstore::naming::ACCOUNTS);
    for name in names {
        let db = DbName::new(name.as_str()).with_context(|| format!("seed db {name}"))?;
        store.ensure_db(&db).await?;
        let docs = dbs[name.as_str()].as_array().cloned().unwrap_or_default();
        for item in store.bulk_docs(&db, docs).await? {
            if let Err(err) = item.outcome {
                if !matches!(err, docstore::Error::Conflict { .. }) {
                    return Err(err).with_context(|| format!("seeding {name}/{}", item.id));
                }
            }
        }
    }
    Ok(Some(Demo { seeded: true, ..demo }))
}

fn print_banner(addr: SocketAddr, settings: &Settings, demo: Option<&Demo>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "switchboard listening on http://{addr}");
    match &settings.store {
        StoreSettings::Couch { url, .. } => {
            let shown = url.split('@').next_back().unwrap_or(url);
            let _ = writeln!(out, "store: CouchDB at {shown}");
        }
        StoreSettings::Embedded { data_dir } => {
            let _ = writeln!(out, "store: embedded, {}", data_dir.display());
        }
    }
    if let Some(demo) = demo {
        let how = if demo.seeded { "seeded" } else { "present" };
        let _ = writeln!(
            out,
            "demo data {how}: superduper admin account {} (api key {}), sub-account {}",
            demo.account_id, demo.api_key, demo.sub_account_id
        );
        let _ = writeln!(
            out,
            "try: curl -s -X PUT http://{addr}/v2/api_auth -d '{{\"data\": {{\"api_key\": \"{}\"}}}}'",
            demo.api_key
        );
        let _ =
            writeln!(out, "more: README.md, \"A tour of the demo\" (routing, carriers, numbers)");
    } else {
        let _ = writeln!(
            out,
            "try: curl -s http://{addr}/healthz   (then PUT /v2/api_auth with an account's pvt_api_key)"
        );
    }
    let _ = out.flush();
}

/// A SIGTERM/ctrl-c listener, registered when built (so a signal that arrives before the server
/// runs is not lost to the default action).
struct Termination {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Termination {
    fn install() -> Termination {
        Termination {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    /// Resolves on SIGTERM (Unix) or ctrl-c.
    async fn wait(mut self) {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match self.term.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
    }
}

//! The live reactor: follows the databases routing reads and keeps [`Tables`] current (`stepswitch_cache`).
//!
//! This is the only module of the crate that does I/O. One task per singly followed database
//! runs one biased `tokio::select!` loop (shutdown first, then the change stream, then the build
//! timer, then manual reload commands) over [`docstore::follow`]; the account databases, however
//! many, are one task over one [`docstore::fleet`] (`reactor/accounts.rs`):
//!
//! | database | scope it feeds |
//! |---|---|
//! | `offnet` | the global table |
//! | every `account/xx/yy/…` (one fleet) | that account's local table (with its dedicated IPs) |
//! | `dedicated_ips` | each account's proxies: the tables whose proxies changed are rebuilt |
//! | `system_config` (`stepswitch`, `number_manager`) | the [`Config`]: every table is recompiled |
//! | `accounts` | the [`AccountTree`] of the hunt-account check (no compile) |
//!
//! `system_config` and `accounts` are not followed here: they are read from the process's one
//! live copy of each ([`docstore::SharedDocs`]), and their tasks rebuild on every new snapshot
//! whose kept documents changed.
//!
//! The fleet learns from `_db_updates` which account databases changed: a new one routes without
//! a restart or a listing poll, a deleted one drops its table, and an account database without
//! resources costs nothing once read.
//!
//! # Start phases
//! [`Phase::Starting`] until the config, the accounts and `offnet` are built (routes answer 503);
//! then [`Phase::OffnetReady`]: global routing is served while account tables load in the
//! background, [`ReactorOptions::concurrency`](docstore::FeedOptions::concurrency) databases at a
//! time, and a route naming
//! an account not loaded yet loads it first ([`Routing::ensure_loaded`]); [`Phase::Ready`] once
//! every account database there was at start has been read.
//!
//! # Checkpoint semantics
//! Nothing is checkpointed: startup is a rebuild from an empty table. Each task reads its whole
//! database (`_all_docs` with `include_docs`, after noting the database's `update_seq`), builds,
//! and then follows from that sequence (changes in between are applied twice, harmlessly). A
//! [`docstore::FollowEvent::Resync`] other than the initial one (deleted, recreated, rewound
//! database) is another full re-read of that scope.
//!
//! # Coalescing
//! A change after a quiet period (no build for [`ReactorOptions::debounce`](docstore::FeedOptions::debounce), default
//! 50 ms) is
//! built at once, with whatever else the feed has already delivered. A change less than
//! `debounce` after the last build waits until `debounce` after it, so changes arriving during a
//! build coalesce into the next one. The timer is not pushed back by later changes, so a change
//! is live within about `debounce` plus one build even under a constant stream. Changes to
//! documents that are not resources (and never were) do not arm the timer.
//!
//! # Swapping
//! Builds are serialized by one build lock (a config change recompiles every scope under it, so
//! no table is ever published with a stale config); each build publishes a new [`Tables`] with
//! `arc-swap`. Lookups ([`Routing::route`]) never take that lock: they load the current
//! `Arc<Tables>` and never wait for a build.

mod accounts;
mod build;
mod retire;
mod source;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use docstore::naming::AccountId;
use docstore::{DocStore, FeedBoard, SharedDocs, SharedStore};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::{compile, route, AccountTree, Config, Diagnostic, Error, Proxy};
use crate::{ParsedResource, RouteAnswer};
use crate::{RouteRequest, Scope, Tables};

use build::{config_from, drop_account, on_blocking_pool, reduce, BuildState, ScopeInputs};
use source::{read_db, read_proxies, resource, start_source, Kept, Source, SourceHandle};
use status::Book;
pub use status::{AccountDbs, CompileError, Phase, RoutingStatus, SourceStatus, TableStatus};

/// The database of dedicated IPs (Kazoo's `?KZ_DEDICATED_IP_DB`), read for local proxies.
pub const DEDICATED_IPS_DB: &str = "dedicated_ips";
/// `system_config/number_manager`'s document id.
const NUMBER_MANAGER_DOC_ID: &str = "number_manager";
/// Rows per `_all_docs` page of a full read.
const PAGE: usize = 1000;
/// The name the reactor's followers go by.
const FOLLOWER_NAME: &str = "stepswitch";

/// How the reactor runs: the process's one [`docstore::FeedOptions`] (`debounce` coalesces
/// builds; `heartbeat` and the backoff reach every follower of the reactor; `poll_every` and
/// `concurrency` are the account databases' fleet's).
pub type ReactorOptions = docstore::FeedOptions;

struct Shared {
    store: SharedStore,
    /// The live `system_config` and `accounts` the config and account sources read.
    live: SharedDocs,
    options: ReactorOptions,
    current: ArcSwap<Tables>,
    build: tokio::sync::Mutex<BuildState>,
    book: Mutex<Book>,
    generation: watch::Sender<u64>,
    shutdown: CancellationToken,
    handles: Mutex<BTreeMap<Source, SourceHandle>>,
    config_ready: watch::Sender<bool>,
    /// `dedicated_ips` has been read once.
    proxies_ready: watch::Sender<bool>,
    /// The dedicated IPs by account (`pvt_assigned_to`), each list in `_id` order.
    proxies: Mutex<Arc<HashMap<String, Arc<Vec<Proxy>>>>>,
    /// Commands to the account tables' task.
    accounts: mpsc::UnboundedSender<accounts::AccountRequest>,
    /// The accounts whose database has been read (while the start is still loading them).
    loaded_accounts: Mutex<std::collections::HashSet<String>>,
    /// Every account database there was at start has been read: no lookup waits for a load.
    all_accounts_loaded: std::sync::atomic::AtomicBool,
    /// [`Routing::is_loaded`] has been true once: it never goes back (the global table, the
    /// config and the accounts are only ever replaced), so every request after that reads
    /// this instead of taking the status lock.
    loaded: std::sync::atomic::AtomicBool,
    /// Replaced tables, kept until no lookup holds them and then freed off the request path.
    retired: Arc<retire::Retired>,
    /// The followers' and reads' health and the documents they could not decode.
    board: FeedBoard,
}

/// A handle on the live routing tables; cheap to clone.
#[derive(Clone)]
pub struct Routing {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing").field("generation", &*self.shared.generation.borrow()).finish()
    }
}

/// Starts the reactor on `store`, following `system_config` and `accounts` for itself; it runs
/// until `shutdown` is cancelled. A process that shares those with other consumers calls
/// [`spawn_with`].
///
/// # Panics
/// Outside a tokio runtime.
pub fn spawn(store: SharedStore, options: ReactorOptions, shutdown: CancellationToken) -> Routing {
    let live = SharedDocs::spawn(store.clone(), &options.follow(FOLLOWER_NAME), shutdown.clone());
    spawn_with(store, live, options, shutdown)
}

/// Starts the reactor on `store`, reading `system_config` and `accounts` from `live`; it runs
/// until `shutdown` is cancelled.
///
/// # Panics
/// Outside a tokio runtime.
pub fn spawn_with(
    store: SharedStore,
    live: SharedDocs,
    options: ReactorOptions,
    shutdown: CancellationToken,
) -> Routing {
    let (generation, _) = watch::channel(0);
    let (config_ready, _) = watch::channel(false);
    let (proxies_ready, _) = watch::channel(false);
    let (accounts, account_commands) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        store,
        live,
        options,
        current: ArcSwap::from_pointee(Tables::new(Arc::new(Config::kazoo_defaults()))),
        build: tokio::sync::Mutex::new(BuildState { inputs: HashMap::new() }),
        book: Mutex::new(Book::default()),
        generation,
        shutdown,
        handles: Mutex::new(BTreeMap::new()),
        config_ready,
        proxies_ready,
        proxies: Mutex::new(Arc::new(HashMap::new())),
        accounts,
        loaded_accounts: Mutex::new(std::collections::HashSet::new()),
        all_accounts_loaded: std::sync::atomic::AtomicBool::new(false),
        loaded: std::sync::atomic::AtomicBool::new(false),
        retired: Arc::default(),
        board: FeedBoard::new(),
    });
    for source in [Source::Config, Source::Accounts, Source::Global, Source::DedicatedIps] {
        start_source(&shared, source, Vec::new());
    }
    tokio::spawn(accounts::run(shared.clone(), account_commands));
    Routing { shared }
}

impl Routing {
    /// Routes a request against the current tables (a lock-free load; never waits for a build).
    pub fn route(&self, request: &RouteRequest) -> RouteAnswer {
        route(&self.shared.current.load(), request)
    }

    /// While the account tables are still loading at start (phase `offnet_ready`), loads the
    /// tables of the accounts `request` names (`Account-ID`, `Hunt-Account-ID`) that are not
    /// loaded yet, as Kazoo's cache loads an account's resources on first use; returns at once
    /// otherwise. A missing or unreadable account database is left to the background load.
    pub async fn ensure_loaded(&self, request: &RouteRequest) {
        use std::sync::atomic::Ordering;
        if self.shared.all_accounts_loaded.load(Ordering::Acquire) {
            return;
        }
        let ids = [&request.account_id, &request.hunt_account_id];
        for id in ids.into_iter().flatten() {
            let loaded = self.shared.loaded_accounts.lock().expect("loaded lock").contains(id);
            let Ok(id) = AccountId::new(id) else { continue };
            if loaded {
                continue;
            }
            let request = |tx| docstore::FleetRequest::Reread(id.db_name(), tx);
            if let Err(err) = accounts::ask(&self.shared, request).await {
                tracing::debug!(account = %id, error = %err, "Could not load the account's table on first use.");
            }
        }
    }

    /// The current tables.
    pub fn tables(&self) -> Arc<Tables> {
        self.shared.current.load_full()
    }

    /// Kazoo's `reload_resources/0` (`None`: re-reads `offnet`, and the system config) and
    /// `reload_resources/1` (that account's database and dedicated IPs). Returns once the
    /// rebuild is live.
    ///
    /// # Errors
    /// [`Error::Store`] when the database cannot be read (the previous table stays live).
    pub async fn reload(&self, account: Option<&AccountId>) -> Result<RoutingStatus, Error> {
        let sources = match account {
            None => vec![Source::Config, Source::Global],
            Some(id) => {
                // The account's dedicated IPs are re-read with it, as Kazoo's reload does.
                self.reload_sources(vec![Source::DedicatedIps]).await?;
                let request = |tx| docstore::FleetRequest::Reread(id.db_name(), tx);
                accounts::ask(&self.shared, request).await?;
                return Ok(self.status());
            }
        };
        self.reload_sources(sources).await?;
        Ok(self.status())
    }

    /// Kazoo's `flush/0`: re-reads and rebuilds everything (the old tables answer meanwhile).
    pub async fn flush(&self) {
        let sources: Vec<Source> =
            self.shared.handles.lock().expect("handles lock").keys().cloned().collect();
        let mut result = self.reload_sources(sources).await;
        let request = |tx| docstore::FleetRequest::RereadEach(accounts::has_table, tx);
        result = result.and(accounts::ask(&self.shared, request).await);
        if let Err(err) = result {
            tracing::warn!(error = %err, "Flush: a database could not be re-read; its old table stays.");
        }
    }

    /// A receiver of the generation counter, bumped on every swap: wait on it, never sleep.
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    async fn reload_sources(&self, sources: Vec<Source>) -> Result<(), Error> {
        let mut waits = Vec::new();
        {
            let handles = self.shared.handles.lock().expect("handles lock");
            for source in sources {
                if let Some(handle) = handles.get(&source) {
                    let (tx, rx) = oneshot::channel();
                    if handle.commands.send(tx).is_ok() {
                        waits.push(rx);
                    }
                }
            }
        }
        let mut first_err = None;
        for rx in waits {
            if let Err(err) = wait_reply(rx).await {
                first_err.get_or_insert(err);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

async fn wait_reply(rx: oneshot::Receiver<Result<(), Error>>) -> Result<(), Error> {
    rx.await.unwrap_or(Err(Error::Stopped))
}

/// Reads the tables once (no following), for one-shot commands: the system config, the
/// accounts, `offnet` and, when given, one account's resources and dedicated IPs. Missing
/// databases read as empty.
///
/// # Errors
/// [`Error::Store`] when a database cannot be read.
pub async fn load_once(
    store: &dyn DocStore,
    account: Option<&AccountId>,
) -> Result<(Tables, Vec<Diagnostic>), Error> {
    let (config_docs, _) = read_db(store, &Source::Config, None).await?;
    let (config, mut diagnostics) = config_from(&config_docs);
    let config = Arc::new(config);
    let mut tables = Tables::new(config.clone());
    let (account_docs, _) = read_db(store, &Source::Accounts, None).await?;
    let (tree, _) = AccountTree::from_docs(&account_docs);
    tables.accounts = Arc::new(tree);
    let (offnet, _) = read_db(store, &Source::Global, None).await?;
    let (table, mut more) = compile(Scope::Global, &offnet, &[], &config);
    diagnostics.append(&mut more);
    tables.set_table(Arc::new(table));
    if let Some(id) = account {
        let source = Source::Account(id.clone());
        let (docs, _) = read_db(store, &source, None).await?;
        let proxies = read_proxies(store, id).await?;
        let scope = source.scope().expect("an account scope");
        let (table, mut more) = compile(scope, &docs, &reduce(&proxies, &config), &config);
        diagnostics.append(&mut more);
        tables.set_table(Arc::new(table));
    }
    Ok((tables, diagnostics))
}

/// The resource documents of one scope as stored: `offnet`, or `account`'s database (what
/// [`crate::explain`] reads to name the documents that compiled to nothing). A missing
/// database reads as empty.
///
/// # Errors
/// [`Error::Store`] when the database cannot be read.
pub async fn read_resource_docs(
    store: &dyn DocStore,
    account: Option<&AccountId>,
) -> Result<Vec<Value>, Error> {
    let source = account.map_or(Source::Global, |id| Source::Account(id.clone()));
    Ok(read_db(store, &source, None).await?.0)
}

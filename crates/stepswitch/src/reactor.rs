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
//! background, [`ReactorOptions::account_concurrency`] databases at a time, and a route naming
//! an account not loaded yet loads it first ([`Routing::ensure_loaded`]); [`Phase::Ready`] once
//! every account database there was at start has been read.
//!
//! # Checkpoint semantics
//! Nothing is checkpointed: startup is a rebuild from an empty table. Each task reads its whole
//! database (`_all_docs` with `include_docs`, after noting the database's `update_seq`), builds,
//! and then follows from that sequence (changes in between are applied twice, harmlessly). A
//! [`FollowEvent::Resync`] other than the initial one (deleted, recreated, rewound database) is
//! another full re-read of that scope.
//!
//! # Coalescing
//! A change after a quiet period (no build for [`ReactorOptions::debounce`], default 50 ms) is
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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use docstore::naming::{self, AccountId};
use docstore::{
    AllDocsQuery, DbName, DocStore, FeedBoard, FollowEvent, FollowOptions, LiveDocs, ResyncReason,
    RowIssue, Seq, SharedDocs, SharedStore, Trouble, WhenDbMissing,
};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::{compile, rebuild, route, AccountTree, Config, Diagnostic, Error, Proxy};
use crate::{ParsedResource, RouteAnswer};
use crate::{RouteRequest, RouteTable, Scope, Tables};

/// The database of dedicated IPs (Kazoo's `?KZ_DEDICATED_IP_DB`), read for local proxies.
pub const DEDICATED_IPS_DB: &str = "dedicated_ips";
/// `system_config/number_manager`'s document id.
const NUMBER_MANAGER_DOC_ID: &str = "number_manager";
/// Rows per `_all_docs` page of a full read.
const PAGE: usize = 1000;
/// The name the reactor's followers go by.
const FOLLOWER_NAME: &str = "stepswitch";

/// How the reactor runs. No `Default`: [`ReactorOptions::defaults`] documents every value.
#[derive(Debug, Clone)]
pub struct ReactorOptions {
    /// Build coalescing: a change less than this after the last build of its scope waits until
    /// this long after it; a change after a quiet period is built at once.
    pub debounce: Duration,
    /// The heartbeat asked of each live change feed (a silent feed is reconnected after three).
    pub heartbeat: Duration,
    /// How often the database list is polled for new or deleted account databases when the
    /// server has no usable `_db_updates` feed.
    pub discover_every: Duration,
    /// The first reconnect of a failed feed waits up to this long (full jitter, doubling).
    pub backoff_base: Duration,
    /// No reconnect waits longer than this: the longest a recovered store waits to be seen.
    pub backoff_cap: Duration,
    /// Account databases read at once (at start, and when many change together).
    pub account_concurrency: usize,
}

impl ReactorOptions {
    /// `debounce` 50 ms, `heartbeat` 10 s, `discover_every` 5 s, `backoff_base` 100 ms,
    /// `backoff_cap` 60 s (the follower's defaults), `account_concurrency` 8.
    pub fn defaults() -> ReactorOptions {
        let follow = FollowOptions::new(FOLLOWER_NAME);
        ReactorOptions {
            debounce: Duration::from_millis(50),
            heartbeat: Duration::from_secs(10),
            discover_every: Duration::from_secs(5),
            backoff_base: follow.backoff_base,
            backoff_cap: follow.backoff_cap,
            account_concurrency: docstore::DEFAULT_CONCURRENCY,
        }
    }
}

/// One compile diagnostic, as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompileError {
    /// The document (`_id`) the problem is in (`stepswitch` / `number_manager` for the config).
    pub resource_id: String,
    /// The field, e.g. `rules`.
    pub field: String,
    /// The position in the field's list, when there is one.
    pub index: Option<usize>,
    /// What was wrong and what was done about it.
    pub message: String,
}

impl CompileError {
    /// Whether this is a quarantined rule (its message says so first).
    pub fn is_quarantine(&self) -> bool {
        self.message.starts_with("quarantined")
    }
}

impl From<&Diagnostic> for CompileError {
    fn from(d: &Diagnostic) -> CompileError {
        CompileError {
            resource_id: d.doc_id.clone(),
            field: d.field.clone(),
            index: d.index,
            message: d.message.clone(),
        }
    }
}

/// The status of one route table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableStatus {
    /// `global` or `local`.
    pub scope: &'static str,
    /// The account of a local table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Compiled resources (classifier copies counted).
    pub resources: usize,
    /// Rules of those resources.
    pub rules: usize,
    /// The database sequence the table reflects (opaque, as the server gave it).
    pub last_seq: Option<Value>,
    /// When the table was last built (RFC 3339, UTC).
    pub built_at: Option<String>,
    /// How long the last build took, in milliseconds.
    pub build_ms: f64,
    /// How many times the table was built.
    pub builds: u64,
    /// The diagnostics of the last build, then the rules lookups quarantined since.
    pub errors: Vec<CompileError>,
    /// How many of `errors` are quarantined rules (refused at compile time as catastrophic,
    /// or out of their backtracking budget on a lookup).
    pub quarantined: usize,
}

/// The status of one followed database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceStatus {
    /// The database.
    pub db: String,
    /// Whether the derived state reflects the database as of its last catch-up.
    pub caught_up: bool,
    /// The last read or feed error, while the database cannot be read or followed.
    pub last_error: Option<String>,
    /// Since when it has been failing (RFC 3339, UTC), while it is.
    pub error_since: Option<String>,
}

/// How far the start has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The config, the accounts or `offnet` have not been read yet: routing answers 503.
    Starting,
    /// Global routing (`offnet`) is served; account tables are still loading in the background
    /// (a route naming an account whose table is not loaded yet loads it first).
    OffnetReady,
    /// Every account database there was at start has been read once. Stays `ready`: whether
    /// everything is current now is [`RoutingStatus::caught_up`].
    Ready,
}

/// The account databases, followed together (see [`docstore::fleet`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountDbs {
    /// How changes are learnt: `starting`, `feed` (`_db_updates`) or `poll` (listing).
    pub mode: &'static str,
    /// Account databases known.
    pub dbs: usize,
    /// Of those, read at least once.
    pub loaded: usize,
    /// Waiting to be read or being read.
    pub pending: usize,
}

impl From<Option<docstore::FleetStatus>> for AccountDbs {
    fn from(status: Option<docstore::FleetStatus>) -> AccountDbs {
        let Some(status) = status else {
            return AccountDbs { mode: "starting", dbs: 0, loaded: 0, pending: 0 };
        };
        let mode = match status.mode {
            docstore::FleetMode::Starting => "starting",
            docstore::FleetMode::Feed => "feed",
            docstore::FleetMode::Poll => "poll",
        };
        AccountDbs { mode, dbs: status.dbs, loaded: status.loaded, pending: status.pending }
    }
}

/// What [`Routing::status`] reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingStatus {
    /// How far the start has come.
    pub phase: Phase,
    /// Every followed database has been read and built at least once and is caught up, and
    /// none is failing now.
    pub caught_up: bool,
    /// The global table, the config and the accounts have been read and built at least once:
    /// routing answers (until then `/route` answers 503, never an empty list).
    pub loaded: bool,
    /// Some followed database cannot be read or followed now (reconnecting, silent past its
    /// heartbeats, or its reads failing): the tables may be stale. See `trouble`.
    pub degraded: bool,
    /// The databases that cannot be read or followed now, with the reason and since when.
    pub trouble: Vec<Trouble>,
    /// Documents that could not be decoded as stored: skipped (not routed) or repaired (lone
    /// surrogates replaced, too-deep values cut), by database and id; the latest 100.
    pub row_issues: Vec<RowIssue>,
    /// Rows skipped since start.
    pub skipped_rows: u64,
    /// Rows repaired since start.
    pub repaired_rows: u64,
    /// Bumped on every swap (see [`Routing::generations`]).
    pub generation: u64,
    /// The route tables: the global one first, then local ones by account id.
    pub tables: Vec<TableStatus>,
    /// Diagnostics of `system_config/stepswitch` and `system_config/number_manager`.
    pub config_errors: Vec<CompileError>,
    /// Databases named like account databases (`account/…`) whose name holds no account id
    /// (see [`AccountId`]): not followed, so no local table is built from them. An account's
    /// monthly databases (`…-YYYYMM`) are not account databases and are not listed.
    pub db_errors: Vec<CompileError>,
    /// Accounts known to the hunt-account check (docs of db `accounts`).
    pub accounts: usize,
    /// The databases followed one by one (`system_config`, `accounts`, `offnet`,
    /// `dedicated_ips`).
    pub sources: Vec<SourceStatus>,
    /// The account databases.
    pub account_dbs: AccountDbs,
}

/// What a task follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Source {
    Config,
    Accounts,
    Global,
    DedicatedIps,
    Account(AccountId),
}

impl Source {
    fn db(&self) -> DbName {
        match self {
            Source::Config => naming::system_config_db(),
            Source::Accounts => naming::accounts_db(),
            Source::Global => naming::offnet_db(),
            Source::DedicatedIps => DbName::new(DEDICATED_IPS_DB).expect("a valid name"),
            Source::Account(id) => id.db_name(),
        }
    }

    fn scope(&self) -> Option<Scope> {
        match self {
            Source::Global => Some(Scope::Global),
            Source::Account(id) => Some(Scope::Local { account_id: id.as_str().to_owned() }),
            _ => None,
        }
    }

    /// The part of a kept document the source needs (account docs: `_id`, `_rev`, `pvt_tree`,
    /// `realm`).
    fn slim(&self, doc: Value) -> Value {
        match self {
            Source::Accounts => {
                let mut slim = serde_json::Map::new();
                for key in ["_id", "_rev", "pvt_tree", "realm"] {
                    if let Some(value) = doc.get(key) {
                        slim.insert(key.to_owned(), value.clone());
                    }
                }
                Value::Object(slim)
            }
            _ => doc,
        }
    }

    /// The feed selector: account databases hold mostly other documents, so only resources
    /// (and deletions) are sent. A document whose `pvt_type` is edited away from `resource`
    /// is then not seen until the next full read (Kazoo soft-deletes with `pvt_deleted`, which
    /// keeps `pvt_type` and is seen).
    fn selector(&self) -> Option<Value> {
        match self {
            Source::Account(_) => Some(serde_json::json!({"pvt_type": "resource"})),
            _ => None,
        }
    }

    /// Whether this source builds a routing table (its documents are resources).
    fn is_table(&self) -> bool {
        matches!(self, Source::Global | Source::Account(_))
    }

    /// Whether a document of this source's database is one it keeps.
    fn keeps(&self, doc: &Value) -> bool {
        let id = doc.get("_id").and_then(Value::as_str).unwrap_or("");
        match self {
            Source::Config => id == crate::STEPSWITCH_DOC_ID || id == NUMBER_MANAGER_DOC_ID,
            Source::Accounts => !id.starts_with("_design/") && !id.is_empty(),
            Source::DedicatedIps => proxy_of(doc).is_some(),
            Source::Global | Source::Account(_) => crate::ResourceDoc::is_resource(doc),
        }
    }
}

/// A document a source task keeps: the JSON its build reads (config and account documents), or,
/// for a resource, its `_rev` and the document parsed once (a rebuild after one change then
/// re-parses nothing else).
enum Kept {
    Json(Value),
    Resource { rev: Option<String>, parsed: Arc<ParsedResource> },
}

impl Kept {
    /// The parsed resources among kept documents, in `_id` order: a table build's input.
    fn parsed_resources(docs: &BTreeMap<String, Kept>) -> Vec<Arc<ParsedResource>> {
        docs.values()
            .filter_map(|kept| match kept {
                Kept::Resource { parsed, .. } => Some(parsed.clone()),
                Kept::Json(_) => None,
            })
            .collect()
    }

    fn rev(&self) -> Option<&str> {
        match self {
            Kept::Json(doc) => doc.get("_rev").and_then(Value::as_str),
            Kept::Resource { rev, .. } => rev.as_deref(),
        }
    }
}

/// A resource document as a source task keeps it.
fn resource(doc: &Value, parsed: ParsedResource) -> Kept {
    let rev = doc.get("_rev").and_then(Value::as_str).map(str::to_owned);
    Kept::Resource { rev, parsed: Arc::new(parsed) }
}

/// A manual reload request; the reply comes after the rebuild.
type Reply = oneshot::Sender<Result<(), Error>>;

struct SourceHandle {
    commands: mpsc::UnboundedSender<Reply>,
}

#[derive(Default)]
struct TableBook {
    last_seq: Option<Seq>,
    built_at: Option<SystemTime>,
    build_ms: f64,
    builds: u64,
    errors: Vec<CompileError>,
}

#[derive(Default)]
struct Book {
    tables: BTreeMap<Scope2, TableBook>,
    sources: BTreeMap<Source, SourceStatus>,
    config_errors: Vec<CompileError>,
    /// `account/…` databases that hold no account id, by name.
    db_errors: BTreeMap<String, CompileError>,
    /// The initial database listing is done and its sources spawned.
    discovered: bool,
    /// Account docs read from db `accounts`.
    accounts: usize,
    /// The accounts have been built at least once.
    accounts_built: bool,
    /// The config has been built at least once.
    config_built: bool,
    /// The account databases' fleet, once it started.
    fleet: Option<docstore::FleetStatus>,
    /// Every account database there was at start has been read once.
    accounts_loaded_once: bool,
}

/// `Scope` ordered: global first, then accounts by id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Scope2 {
    Global,
    Local(String),
}

impl From<&Scope> for Scope2 {
    fn from(s: &Scope) -> Scope2 {
        match s {
            Scope::Global => Scope2::Global,
            Scope::Local { account_id } => Scope2::Local(account_id.clone()),
        }
    }
}

/// What the build lock guards: the inputs of every table, for config rebuilds.
struct BuildState {
    inputs: HashMap<Scope, ScopeInputs>,
}

#[derive(Clone)]
struct ScopeInputs {
    /// The scope's resource documents, each parsed once when it was read or changed.
    docs: Arc<Vec<Arc<ParsedResource>>>,
    proxies: Arc<Vec<Proxy>>,
    last_seq: Option<Seq>,
}

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
    accounts: mpsc::UnboundedSender<accounts::AccountCommand>,
    /// The accounts whose database has been read (while the start is still loading them).
    loaded_accounts: Mutex<std::collections::HashSet<String>>,
    /// Every account database there was at start has been read: no lookup waits for a load.
    all_accounts_loaded: std::sync::atomic::AtomicBool,
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
    let mut feed = FollowOptions::new(FOLLOWER_NAME);
    feed.heartbeat = options.heartbeat;
    feed.backoff_base = options.backoff_base;
    feed.backoff_cap = options.backoff_cap;
    let live = SharedDocs::spawn(store.clone(), &feed, shutdown.clone());
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
            let (tx, rx) = oneshot::channel();
            let command = accounts::AccountCommand::Reload(id.clone(), tx);
            if self.shared.accounts.send(command).is_ok() {
                if let Err(err) = wait_reply(rx).await {
                    tracing::debug!(account = %id, error = %err, "Could not load the account's table on first use.");
                }
            }
        }
    }

    /// The current tables.
    pub fn tables(&self) -> Arc<Tables> {
        self.shared.current.load_full()
    }

    /// Status of every table and followed database.
    pub fn status(&self) -> RoutingStatus {
        let tables = self.shared.current.load_full();
        let generation = *self.shared.generation.borrow();
        let report = self.shared.board.report();
        let book = self.shared.book.lock().expect("book lock");
        let sources: Vec<SourceStatus> = book
            .sources
            .values()
            .map(|s| {
                let mut s = s.clone();
                if let Some(trouble) = report.trouble.iter().find(|t| t.db == s.db) {
                    s.caught_up = false;
                    s.last_error = Some(trouble.reason.clone());
                    s.error_since = Some(trouble.since.clone());
                }
                s
            })
            .collect();
        let fleet = book.fleet.clone();
        let caught_up = book.discovered
            && fleet.as_ref().is_some_and(docstore::FleetStatus::caught_up)
            && sources.iter().all(|s| s.caught_up)
            && !report.degraded();
        let loaded =
            book.config_built && book.accounts_built && book.tables.contains_key(&Scope2::Global);
        let phase = match (loaded, book.accounts_loaded_once) {
            (false, _) => Phase::Starting,
            (true, false) => Phase::OffnetReady,
            (true, true) => Phase::Ready,
        };
        let mut out = Vec::new();
        for (scope, entry) in &book.tables {
            let (kind, account_id, table) = match scope {
                Scope2::Global => ("global", None, Some(&tables.global)),
                Scope2::Local(id) => ("local", Some(id.clone()), tables.local.get(id)),
            };
            let Some(table) = table else { continue };
            let errors: Vec<CompileError> = entry
                .errors
                .iter()
                .cloned()
                .chain(table.quarantined().iter().map(CompileError::from))
                .collect();
            out.push(TableStatus {
                scope: kind,
                account_id,
                resources: table.len(),
                rules: table.resources().iter().map(|r| r.rules.len()).sum(),
                last_seq: entry.last_seq.as_ref().map(|s| s.as_json().clone()),
                built_at: entry.built_at.map(|t| humantime::format_rfc3339_millis(t).to_string()),
                build_ms: entry.build_ms,
                builds: entry.builds,
                quarantined: errors.iter().filter(|it| it.is_quarantine()).count(),
                errors,
            });
        }
        RoutingStatus {
            phase,
            caught_up,
            loaded,
            degraded: report.degraded(),
            trouble: report.trouble,
            row_issues: report.issues,
            skipped_rows: report.skipped_rows,
            repaired_rows: report.repaired_rows,
            generation,
            tables: out,
            config_errors: book.config_errors.clone(),
            db_errors: book.db_errors.values().cloned().collect(),
            accounts: book.accounts,
            sources,
            account_dbs: AccountDbs::from(fleet),
        }
    }

    /// The followers' and reads' trouble and the documents they could not decode.
    pub fn feeds(&self) -> docstore::BoardReport {
        self.shared.board.report()
    }

    /// Whether the global table, the config and the accounts have been built at least once
    /// (see [`RoutingStatus::loaded`]).
    pub fn is_loaded(&self) -> bool {
        let book = self.shared.book.lock().expect("book lock");
        book.config_built && book.accounts_built && book.tables.contains_key(&Scope2::Global)
    }

    /// How far the start has come (see [`Phase`]).
    pub fn phase(&self) -> Phase {
        let loaded = self.is_loaded();
        match (loaded, self.shared.all_accounts_loaded.load(std::sync::atomic::Ordering::Acquire)) {
            (false, _) => Phase::Starting,
            (true, false) => Phase::OffnetReady,
            (true, true) => Phase::Ready,
        }
    }

    /// Whether every followed database has been read, built and caught up.
    pub fn is_caught_up(&self) -> bool {
        self.status().caught_up
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
                let (tx, rx) = oneshot::channel();
                let command = accounts::AccountCommand::Reload(id.clone(), tx);
                self.shared.accounts.send(command).map_err(|_| Error::Stopped)?;
                wait_reply(rx).await?;
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
        let (tx, rx) = oneshot::channel();
        if self.shared.accounts.send(accounts::AccountCommand::ReloadAll(tx)).is_ok() {
            result = result.and(wait_reply(rx).await);
        }
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

/// Reads every kept document of a source's database, noting `update_seq` first, and the rows it
/// could not decode on `board`. `Ok((docs, None))` when the database does not exist.
async fn read_db(
    store: &dyn DocStore,
    source: &Source,
    board: Option<&FeedBoard>,
) -> Result<(Vec<Value>, Option<Seq>), Error> {
    let db = source.db();
    let seq = match store.db_info(&db).await {
        Ok(info) => info.update_seq,
        Err(docstore::Error::DbNotFound { .. }) => return Ok((Vec::new(), None)),
        Err(err) => return Err(err.into()),
    };
    let mut docs = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let query = AllDocsQuery {
            start_key: start.clone(),
            skip: usize::from(start.is_some()),
            limit: Some(PAGE),
            include_docs: true,
            ..AllDocsQuery::default()
        };
        let page = match store.all_docs(&db, &query).await {
            Ok(page) => page,
            Err(docstore::Error::DbNotFound { .. }) => return Ok((Vec::new(), None)),
            Err(err) => return Err(err.into()),
        };
        if let Some(board) = board {
            board.note_page(db.as_str(), &page);
        }
        let skipped = page.issues.iter().filter(|i| i.action == docstore::RowAction::Skipped);
        let n = page.rows.len() + skipped.count();
        start = page
            .rows
            .last()
            .map(|row| row.id.clone())
            .max(page.issues.iter().filter_map(|i| i.id.clone()).max());
        docs.extend(
            page.rows
                .into_iter()
                .filter_map(|row| row.doc)
                .filter(|d| source.keeps(d))
                .map(|d| source.slim(d)),
        );
        if n < PAGE {
            break;
        }
    }
    Ok((docs, Some(seq)))
}

/// The account's dedicated IPs (`dedicated_ips` docs with `pvt_assigned_to`), in `_id` order.
async fn read_proxies(store: &dyn DocStore, account: &AccountId) -> Result<Vec<Proxy>, Error> {
    let (docs, _) = read_db(store, &Source::DedicatedIps, None).await?;
    Ok(proxies_by_account(&docs).remove(account.as_str()).map(|p| p.to_vec()).unwrap_or_default())
}

/// A dedicated IP document's account (`pvt_assigned_to`) and proxy (`ip`, `zone`).
fn proxy_of(doc: &Value) -> Option<(&str, Proxy)> {
    let account = doc.get("pvt_assigned_to")?.as_str()?;
    let ip = doc.get("ip")?.as_str()?.to_owned();
    let zone = doc.get("zone").and_then(Value::as_str).unwrap_or("").to_owned();
    Some((account, Proxy { zone, ip }))
}

/// Every account's dedicated IPs, each list in the documents' order (`_id` order as read).
fn proxies_by_account(docs: &[Value]) -> HashMap<String, Arc<Vec<Proxy>>> {
    let mut by_account: HashMap<String, Vec<Proxy>> = HashMap::new();
    for (account, proxy) in docs.iter().filter_map(proxy_of) {
        by_account.entry(account.to_owned()).or_default().push(proxy);
    }
    by_account.into_iter().map(|(account, proxies)| (account, Arc::new(proxies))).collect()
}

/// `stepswitch_resources`' local-resource fields: only the first proxy unless `use_first_dedicated_proxy_only` is off.
fn reduce(proxies: &[Proxy], config: &Config) -> Vec<Proxy> {
    if config.use_first_dedicated_proxy_only {
        proxies.iter().take(1).cloned().collect()
    } else {
        proxies.to_vec()
    }
}

fn config_from(docs: &[Value]) -> (Config, Vec<Diagnostic>) {
    let find = |id: &str| {
        docs.iter()
            .find(|d| d.get("_id").and_then(Value::as_str) == Some(id))
            .cloned()
            .unwrap_or(Value::Null)
    };
    Config::from_docs(&find(crate::STEPSWITCH_DOC_ID), &find(NUMBER_MANAGER_DOC_ID))
}

/// Starts a source's task unless it runs; `replies` are answered after its first build.
fn start_source(shared: &Arc<Shared>, source: Source, replies: Vec<Reply>) {
    let mut handles = shared.handles.lock().expect("handles lock");
    if let Some(handle) = handles.get(&source) {
        for reply in replies {
            let _ = handle.commands.send(reply);
        }
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let cancel = shared.shutdown.child_token();
    handles.insert(source.clone(), SourceHandle { commands: tx });
    shared.book.lock().expect("book lock").sources.insert(
        source.clone(),
        SourceStatus {
            db: source.db().to_string(),
            caught_up: false,
            last_error: None,
            error_since: None,
        },
    );
    let task = SourceTask {
        shared: shared.clone(),
        source,
        cancel,
        commands: rx,
        replies,
        docs: BTreeMap::new(),
        last_seq: None,
        last_build: None,
    };
    tokio::spawn(task.run());
}

/// An account database was deleted: drop its table.
async fn drop_account(shared: &Arc<Shared>, id: &AccountId) {
    let source = Source::Account(id.clone());
    let scope = source.scope().expect("an account scope");
    let mut state = shared.build.lock().await;
    state.inputs.remove(&scope);
    let removed = {
        let mut book = shared.book.lock().expect("book lock");
        book.sources.remove(&source);
        book.tables.remove(&Scope2::from(&scope)).is_some()
    };
    if removed || shared.current.load().local.contains_key(id.as_str()) {
        shared.publish(|tables| {
            tables.local.remove(id.as_str());
        });
    }
    drop(state);
}

impl Shared {
    /// Swaps in a changed copy of the current tables. Call with the build lock held.
    fn publish(&self, change: impl FnOnce(&mut Tables)) {
        let mut next = Tables::clone(&self.current.load());
        change(&mut next);
        self.current.store(Arc::new(next));
        self.generation.send_modify(|g| *g += 1);
    }

    fn note_source(&self, source: &Source, change: impl FnOnce(&mut SourceStatus)) {
        if let Some(status) = self.book.lock().expect("book lock").sources.get_mut(source) {
            change(status);
        }
    }

    /// Compiles one scope from its inputs with the current config and swaps it in.
    async fn build_scope(&self, scope: Scope, inputs: ScopeInputs, cancel: &CancellationToken) {
        let mut config_ready = self.config_ready.subscribe();
        // Tables built before the config is read would be built twice.
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = config_ready.wait_for(|ready| *ready) => {}
        }
        let mut state = self.build.lock().await;
        if cancel.is_cancelled() {
            return;
        }
        let key = Scope2::from(&scope);
        if let Scope::Local { account_id } = &scope {
            if inputs.docs.is_empty() {
                // Only accounts with resources have a table.
                state.inputs.remove(&scope);
                let had = self.book.lock().expect("book lock").tables.remove(&key).is_some();
                if had || self.current.load().local.contains_key(account_id) {
                    let account_id = account_id.clone();
                    self.publish(move |tables| {
                        tables.local.remove(&account_id);
                    });
                }
                return;
            }
        }
        state.inputs.insert(scope.clone(), inputs.clone());
        let current = self.current.load();
        let (config, previous) = (current.config.clone(), current.table(&scope).cloned());
        drop(current);
        let (table, diagnostics, took) =
            compile_blocking(previous, scope, inputs.clone(), config).await;
        let table = Arc::new(table);
        self.note_build(key, inputs.last_seq, &diagnostics, took);
        self.publish(|tables| tables.set_table(table));
        drop(state);
    }

    fn note_build(
        &self,
        key: Scope2,
        seq: Option<Seq>,
        diagnostics: &[Diagnostic],
        took: Duration,
    ) {
        let mut book = self.book.lock().expect("book lock");
        let entry = book.tables.entry(key).or_default();
        entry.last_seq = seq;
        entry.built_at = Some(SystemTime::now());
        entry.build_ms = took.as_secs_f64() * 1000.0;
        entry.builds += 1;
        entry.errors = diagnostics.iter().map(CompileError::from).collect();
    }

    /// A new config: every table is recompiled with it and swapped in at once.
    async fn build_config(&self, docs: &[Value]) {
        let state = self.build.lock().await;
        let (config, diagnostics) = config_from(docs);
        for diagnostic in &diagnostics {
            tracing::warn!(diagnostic = %diagnostic, "system_config");
        }
        let config = Arc::new(config);
        let mut built = Vec::new();
        let scopes: Vec<(Scope, ScopeInputs)> =
            state.inputs.iter().map(|(s, i)| (s.clone(), i.clone())).collect();
        for (scope, inputs) in scopes {
            let seq = inputs.last_seq.clone();
            let (table, diags, took) = compile_blocking(None, scope, inputs, config.clone()).await;
            built.push((Arc::new(table), seq, diags, took));
        }
        let mut tables: Vec<Arc<RouteTable>> = Vec::with_capacity(built.len());
        for (table, seq, diags, took) in built {
            self.note_build(Scope2::from(table.scope()), seq, &diags, took);
            tables.push(table);
        }
        {
            let mut book = self.book.lock().expect("book lock");
            book.config_errors = diagnostics.iter().map(CompileError::from).collect();
            book.config_built = true;
        }
        self.publish(move |current| {
            current.config = config;
            for table in tables {
                current.set_table(table);
            }
        });
        self.config_ready.send_replace(true);
        drop(state);
    }

    /// The current dedicated IPs of `account`.
    fn proxies_for(&self, account: &str) -> Arc<Vec<Proxy>> {
        let proxies = self.proxies.lock().expect("proxies lock").clone();
        proxies.get(account).cloned().unwrap_or_default()
    }

    /// New `dedicated_ips` documents: the tables of the accounts whose proxies changed are
    /// rebuilt with them (one read of the database for all accounts, not one per account).
    async fn build_proxies(&self, docs: &[Value]) {
        let mut state = self.build.lock().await;
        let next = Arc::new(proxies_by_account(docs));
        let previous =
            std::mem::replace(&mut *self.proxies.lock().expect("proxies lock"), next.clone());
        let changed: Vec<(Scope, ScopeInputs)> = state
            .inputs
            .iter()
            .filter_map(|(scope, inputs)| match scope {
                Scope::Local { account_id } if previous.get(account_id) != next.get(account_id) => {
                    let mut inputs = inputs.clone();
                    inputs.proxies = next.get(account_id).cloned().unwrap_or_default();
                    Some((scope.clone(), inputs))
                }
                _ => None,
            })
            .collect();
        let config = self.current.load().config.clone();
        let mut tables = Vec::with_capacity(changed.len());
        for (scope, inputs) in changed {
            state.inputs.insert(scope.clone(), inputs.clone());
            let seq = inputs.last_seq.clone();
            let (table, diagnostics, took) =
                // the proxies changed: a full compile (no previous table to share)
                compile_blocking(None, scope.clone(), inputs, config.clone()).await;
            self.note_build(Scope2::from(&scope), seq, &diagnostics, took);
            tables.push(Arc::new(table));
        }
        if !tables.is_empty() {
            self.publish(move |current| {
                for table in tables {
                    current.set_table(table);
                }
            });
        }
        self.proxies_ready.send_replace(true);
        drop(state);
    }

    async fn build_accounts(&self, docs: &[Value]) {
        let state = self.build.lock().await;
        let (tree, diagnostics) = AccountTree::from_docs(docs);
        for d in &diagnostics {
            tracing::debug!(diagnostic = %d, "accounts db");
        }
        let tree = Arc::new(tree);
        {
            let mut book = self.book.lock().expect("book lock");
            book.accounts = docs.len();
            book.accounts_built = true;
        }
        self.publish(move |tables| tables.accounts = tree);
        drop(state);
    }
}

/// Builds the table of `scope` from `previous` (its current table, if any; see
/// [`crate::rebuild`]: only the changed documents are compiled when that is possible).
async fn compile_blocking(
    previous: Option<Arc<RouteTable>>,
    scope: Scope,
    inputs: ScopeInputs,
    config: Arc<Config>,
) -> (RouteTable, Vec<Diagnostic>, Duration) {
    let job = move || {
        let started = Instant::now();
        let proxies = reduce(&inputs.proxies, &config);
        let built = rebuild(previous.as_deref(), scope, &inputs.docs, &proxies, &config);
        (built.table, built.diagnostics, started.elapsed())
    };
    on_blocking_pool(job).await
}

/// Runs CPU work on the blocking pool. A panic in it is resumed here, as if it had run inline;
/// a job the runtime cancelled (it only does so while shutting down) never answers, and the
/// runtime drops the waiting task next, so shutdown is not reported as a panic.
async fn on_blocking_pool<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(job).await {
        Ok(value) => value,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => std::future::pending().await,
    }
}

/// How a follow loop ended.
enum Next {
    /// Re-read the database.
    Reread,
    /// Stop the task.
    Stop,
}

struct SourceTask {
    shared: Arc<Shared>,
    source: Source,
    cancel: CancellationToken,
    commands: mpsc::UnboundedReceiver<Reply>,
    /// Answered after the next build.
    replies: Vec<Reply>,
    /// The kept documents by `_id`.
    docs: BTreeMap<String, Kept>,
    last_seq: Option<Seq>,
    /// When the last build ended: a change after a quiet period is built at once.
    last_build: Option<tokio::time::Instant>,
}

impl SourceTask {
    async fn run(mut self) {
        let live = match self.source {
            Source::Config => Some(self.shared.live.system_config.clone()),
            Source::Accounts => Some(self.shared.live.accounts.clone()),
            Source::Global | Source::Account(_) | Source::DedicatedIps => None,
        };
        if let Some(live) = live {
            return self.run_live(live).await;
        }
        let mut attempt = 0u32;
        let cancel = self.cancel.clone();
        loop {
            let read = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                read = self.read() => read,
            };
            let since = match read {
                Ok(since) => {
                    attempt = 0;
                    self.shared.board.read_ok(self.source.db().as_str());
                    self.build().await;
                    if since.is_none() {
                        // A missing database is caught up: it is empty until it exists.
                        self.set_caught_up(true);
                    }
                    since
                }
                Err(err) => {
                    attempt += 1;
                    tracing::warn!(db = %self.source.db(), error = %err, attempt, "Cannot read; the old table stays, retrying.");
                    self.shared.board.read_failed(self.source.db().as_str(), &err);
                    let message = err.to_string();
                    self.shared.note_source(&self.source, |s| {
                        s.last_error = Some(message);
                    });
                    for reply in self.replies.drain(..) {
                        let _ = reply.send(Err(Error::Unavailable {
                            db: self.source.db().to_string(),
                            message: err.to_string(),
                        }));
                    }
                    let wait = Duration::from_millis(100) * attempt.min(100);
                    tokio::select! {
                        biased;
                        _ = self.cancel.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                        reply = self.commands.recv() => match reply {
                            Some(reply) => self.replies.push(reply),
                            None => return,
                        },
                    }
                    continue;
                }
            };
            match self.follow(since).await {
                Next::Reread => continue,
                Next::Stop => return,
            }
        }
    }

    /// A source read from a live database: rebuilds from each new snapshot whose kept documents
    /// changed (a change burst is gathered for `debounce` first); a manual reload rebuilds from
    /// the current snapshot.
    async fn run_live(mut self, live: LiveDocs) {
        let mut generations = live.subscribe();
        let mut reload = false;
        let mut built = false;
        loop {
            let snapshot = live.current();
            if snapshot.is_caught_up() {
                let docs: BTreeMap<String, Kept> = snapshot
                    .docs()
                    .filter(|doc| self.source.keeps(doc))
                    .filter_map(|doc| {
                        let id = doc.get("_id")?.as_str()?.to_owned();
                        Some((id, Kept::Json(self.source.slim(doc.clone()))))
                    })
                    .collect();
                let same = built
                    && docs.len() == self.docs.len()
                    && docs
                        .iter()
                        .zip(&self.docs)
                        .all(|((a, x), (b, y))| a == b && x.rev().is_some() && x.rev() == y.rev());
                if !same || reload {
                    self.docs = docs;
                    self.build().await;
                    built = true;
                }
                reload = false;
            }
            self.set_caught_up(snapshot.is_caught_up());
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                changed = generations.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = tokio::time::sleep(self.shared.options.debounce) => {}
                    }
                }
                reply = self.commands.recv() => match reply {
                    Some(reply) => {
                        self.replies.push(reply);
                        reload = true;
                    }
                    None => return,
                },
            }
        }
    }

    /// Full read: the kept docs and the sequence to follow from (`None`: the db is missing).
    async fn read(&mut self) -> Result<Option<Seq>, Error> {
        let store = self.shared.store.as_ref();
        let (docs, seq) = read_db(store, &self.source, Some(&self.shared.board)).await?;
        let ids: Vec<Option<String>> =
            docs.iter().map(|d| Some(d.get("_id")?.as_str()?.to_owned())).collect();
        let kept: Vec<Kept> = if self.source.is_table() {
            // Parsing a whole database is CPU work: off the async workers, on rayon's pool.
            on_blocking_pool(move || {
                let parsed = ParsedResource::parse_all(&docs);
                docs.iter().zip(parsed).map(|(d, p)| resource(d, p)).collect()
            })
            .await
        } else {
            docs.into_iter().map(Kept::Json).collect()
        };
        self.docs = ids.into_iter().zip(kept).filter_map(|(id, k)| Some((id?, k))).collect();
        self.last_seq = seq.clone();
        Ok(seq)
    }

    /// Applies one change; whether the derived state changed.
    fn apply(&mut self, change: docstore::Change) -> bool {
        self.last_seq = Some(change.seq.clone());
        let keep = !change.deleted && change.doc.as_ref().is_some_and(|d| self.source.keeps(d));
        if keep {
            let doc = self.source.slim(change.doc.expect("checked"));
            let rev = doc.get("_rev").and_then(Value::as_str);
            if rev.is_some() && self.docs.get(&change.id).and_then(Kept::rev) == rev {
                return false;
            }
            let kept = if self.source.is_table() {
                resource(&doc, ParsedResource::parse(&doc))
            } else {
                Kept::Json(doc)
            };
            self.docs.insert(change.id, kept);
            true
        } else {
            self.docs.remove(&change.id).is_some()
        }
    }

    async fn build(&mut self) {
        match &self.source {
            Source::Config => self.shared.build_config(&self.json_docs()).await,
            Source::Accounts => self.shared.build_accounts(&self.json_docs()).await,
            Source::DedicatedIps => self.shared.build_proxies(&self.json_docs()).await,
            Source::Global | Source::Account(_) => {
                let scope = self.source.scope().expect("a table scope");
                let docs = Kept::parsed_resources(&self.docs);
                let inputs = ScopeInputs {
                    docs: Arc::new(docs),
                    proxies: Arc::new(Vec::new()),
                    last_seq: self.last_seq.clone(),
                };
                self.shared.build_scope(scope, inputs, &self.cancel).await;
            }
        }
        self.last_build = Some(tokio::time::Instant::now());
        for reply in self.replies.drain(..) {
            let _ = reply.send(Ok(()));
        }
    }

    /// When a change arriving now is built: at once after a quiet period (nothing built for
    /// `debounce`), else `debounce` after the last build, so changes during a build coalesce.
    /// The second value says the build is immediate.
    fn deadline_now(&self) -> (tokio::time::Instant, bool) {
        let now = tokio::time::Instant::now();
        let debounce = self.shared.options.debounce;
        match self.last_build {
            Some(last) if last + debounce > now => (last + debounce, false),
            _ => (now, true),
        }
    }

    /// The kept JSON documents (config and account sources), in `_id` order.
    fn json_docs(&self) -> Vec<Value> {
        self.docs
            .values()
            .filter_map(|kept| match kept {
                Kept::Json(doc) => Some(doc.clone()),
                Kept::Resource { .. } => None,
            })
            .collect()
    }

    fn set_caught_up(&self, caught_up: bool) {
        self.shared.note_source(&self.source, |s| {
            s.caught_up = caught_up;
            if caught_up {
                s.last_error = None;
            }
        });
    }

    /// Follows the database from `since` until a re-read is due or the task stops.
    async fn follow(&mut self, since: Option<Seq>) -> Next {
        let mut options = FollowOptions::new(FOLLOWER_NAME);
        options.since = since.clone();
        options.heartbeat = self.shared.options.heartbeat;
        options.when_db_missing = WhenDbMissing::Wait;
        options.selector = self.source.selector();
        options.backoff_base = self.shared.options.backoff_base;
        options.backoff_cap = self.shared.options.backoff_cap;
        options.board = Some(self.shared.board.clone());
        let mut follower = docstore::follow(self.shared.store.clone(), self.source.db(), options);
        let debounce = self.shared.options.debounce;
        // A build due at once waits for the changes already delivered (the timer branch runs
        // when the stream has nothing ready), unless a constant stream holds it for `debounce`.
        let mut immediate = false;
        let mut dirty = false;
        // Until the follower replays the database from its start, nothing is built.
        let mut replaying = false;
        let mut deadline: Option<tokio::time::Instant> = None;
        // The feed has delivered its backlog (the follower's `CaughtUp`).
        let mut feed_caught_up = false;
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Next::Stop,
                event = follower.next() => match event {
                    Some(FollowEvent::Change(change)) => {
                        if self.apply(change) {
                            dirty = true;
                            if !replaying && deadline.is_none() {
                                let (at, now) = self.deadline_now();
                                deadline = Some(at);
                                immediate = now;
                            }
                        }
                    }
                    Some(FollowEvent::CaughtUp { last_seq }) => {
                        feed_caught_up = true;
                        self.last_seq = Some(last_seq);
                        if replaying {
                            replaying = false;
                            deadline = Some(tokio::time::Instant::now());
                            immediate = true;
                        }
                        if !dirty {
                            self.set_caught_up(true);
                        }
                    }
                    Some(FollowEvent::Resync { reason: ResyncReason::Initial }) => {
                        // The follower replays the database from sequence 0.
                        self.docs.clear();
                        dirty = true;
                        replaying = true;
                        feed_caught_up = false;
                        deadline = None;
                        self.set_caught_up(false);
                    }
                    Some(FollowEvent::Resync { reason }) => {
                        tracing::info!(db = %self.source.db(), ?reason, "Re-reading after a resync.");
                        self.set_caught_up(false);
                        return Next::Reread;
                    }
                    Some(FollowEvent::Failed(err)) => {
                        tracing::warn!(db = %self.source.db(), error = %err, "Change follower failed; re-reading.");
                        let message = err.to_string();
                        self.shared.note_source(&self.source, |s| {
                            s.caught_up = false;
                            s.last_error = Some(message);
                        });
                        tokio::select! {
                            _ = self.cancel.cancelled() => return Next::Stop,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        return Next::Reread;
                    }
                    None => return Next::Reread,
                },
                _ = sleep_until(deadline), if deadline.is_some() => {
                    deadline = None;
                    dirty = false;
                    self.build().await;
                    self.set_caught_up(feed_caught_up);
                    continue;
                }
                reply = self.commands.recv() => match reply {
                    Some(reply) => {
                        self.replies.push(reply);
                        return Next::Reread;
                    }
                    None => return Next::Stop,
                },
            }
            // A constant stream must not starve the timer.
            let grace = if immediate { debounce } else { Duration::ZERO };
            if deadline.is_some_and(|d| d + grace <= tokio::time::Instant::now()) {
                deadline = None;
                dirty = false;
                self.build().await;
                self.set_caught_up(feed_caught_up);
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

//! The inbound table: number → owning account, state, `used_by`, features — built from every
//! number database and kept live from their `_changes` feeds. Stepswitch's on-net check and
//! `identify` (§5.10) read it without touching the store.
//!
//! [`InboundTable::start`] lists the number databases once, follows each with
//! [`docstore::follow`] (from the start, so a fresh process rebuilds the table) and watches for
//! databases that come and go with [`docstore::watch_dbs`]. The pools (`numbers/managed`,
//! `numbers/inum`) hold pool records, not routable numbers, and are not read. Lookups are
//! lock-free reads of a [`DashMap`] (sharded, readers never wait for a writer of another shard)
//! and never wait for a reload; a change is visible as soon as its row is applied.
//!
//! Delivery is at least once: applying a change twice is harmless (last write wins per number,
//! and the feed delivers a document's changes in order).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use docstore::{follow, watch_dbs, DbName, DbUpdateKind, FollowEvent, FollowOptions, SharedStore};
use e164::E164;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::account::AccountId;
use crate::auth::{AccountMap, AuthBy};
use crate::config::Config;
use crate::doc::{number_db, NumberDoc, NumberState, INUM_DB, MANAGED_DB};
use crate::error::Error;
use crate::lifecycle::{lookup_account, AccountLookup, Ctx};

/// What the table knows about one number.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundEntry {
    /// The owner (`pvt_assigned_to`).
    pub account: Option<AccountId>,
    /// `pvt_state`.
    pub state: NumberState,
    /// `pvt_used_by`.
    pub used_by: Option<String>,
    /// The names of the number's features (sorted).
    pub features: Vec<String>,
    /// `pvt_module_name`.
    pub module: String,
    /// The whole document, for `identify`'s routing properties.
    pub doc: NumberDoc,
}

impl InboundEntry {
    /// The entry of a number document.
    pub fn from_doc(doc: NumberDoc) -> Self {
        InboundEntry {
            account: doc.assigned_to.clone(),
            state: doc.state,
            used_by: doc.used_by.clone(),
            features: doc.features_list(),
            module: doc.module_name.clone(),
            doc,
        }
    }

    /// Whether calls to this number stay on the network (stepswitch rule 3): it has an owner and
    /// a routable state (`in_service`, `port_in`, `port_out`, `reserved`; §5.10).
    pub fn is_on_net(&self) -> bool {
        self.account.is_some()
            && matches!(
                self.state,
                NumberState::InService
                    | NumberState::PortIn
                    | NumberState::PortOut
                    | NumberState::Reserved
            )
    }
}

/// A snapshot of the table's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundStatus {
    /// Numbers in the table.
    pub numbers: usize,
    /// Number databases followed.
    pub dbs: usize,
    /// Of those, the ones whose backlog has been read.
    pub dbs_caught_up: usize,
    /// Whether every database known at start (and since) has been read up to its live feed.
    pub caught_up: bool,
    /// Changes applied since start.
    pub changes_applied: u64,
}

#[derive(Default)]
struct State {
    map: DashMap<Box<str>, Arc<InboundEntry>>,
    /// Followed databases → caught up at least once.
    dbs: DashMap<String, bool>,
    listed: AtomicBool,
    changes: AtomicU64,
    notify: Notify,
}

impl State {
    fn caught_up(&self) -> bool {
        self.listed.load(Ordering::Acquire) && self.dbs.iter().all(|e| *e.value())
    }

    fn forget_db(&self, db: &str) {
        self.map.retain(|k, _| number_db(k).as_deref() != Some(db));
    }
}

/// How the table follows the store.
#[derive(Debug, Clone)]
pub struct InboundOptions {
    /// The live feeds' heartbeat (default 10 s).
    pub heartbeat: Duration,
    /// How often databases are listed when the store has no `_db_updates` feed (default 5 s).
    pub poll_dbs_every: Duration,
}

impl Default for InboundOptions {
    fn default() -> Self {
        InboundOptions {
            heartbeat: Duration::from_secs(10),
            poll_dbs_every: Duration::from_secs(5),
        }
    }
}

/// The live inbound table. Cheap to clone; the background tasks stop when the last clone is
/// dropped.
#[derive(Clone)]
pub struct InboundTable {
    state: Arc<State>,
    config: Arc<Config>,
    accounts: Arc<AccountMap>,
    _tasks: Arc<TaskGuard>,
}

struct TaskGuard(Option<JoinHandle<()>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

fn is_routable_db(db: &DbName) -> bool {
    docstore::naming::is_numbers_db(db) && db.as_str() != MANAGED_DB && db.as_str() != INUM_DB
}

impl InboundTable {
    /// An empty, static table (filled with [`InboundTable::apply_doc`]; for tests and builds from
    /// documents already in hand).
    pub fn new(config: Config, accounts: AccountMap) -> Self {
        let state = State::default();
        state.listed.store(true, Ordering::Release);
        InboundTable {
            state: Arc::new(state),
            config: Arc::new(config),
            accounts: Arc::new(accounts),
            _tasks: Arc::new(TaskGuard(None)),
        }
    }

    /// Builds the table from `store` and keeps it live (see the module docs). Returns at once;
    /// [`InboundTable::wait_caught_up`] waits for the first full read.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(
        store: SharedStore,
        config: Config,
        accounts: AccountMap,
        opts: InboundOptions,
    ) -> Self {
        let state = Arc::new(State::default());
        let task = tokio::spawn(run(store, state.clone(), opts));
        InboundTable {
            state,
            config: Arc::new(config),
            accounts: Arc::new(accounts),
            _tasks: Arc::new(TaskGuard(Some(task))),
        }
    }

    /// The entry of `number`, if the table has one.
    pub fn lookup(&self, number: &E164) -> Option<Arc<InboundEntry>> {
        self.state.map.get(number.as_str()).map(|e| e.value().clone())
    }

    /// The entry of a number given as text (already normalized).
    pub fn lookup_str(&self, number: &str) -> Option<Arc<InboundEntry>> {
        self.state.map.get(number).map(|e| e.value().clone())
    }

    /// §5.10 `lookup_account` from the table (port requests are not in the table: a number only
    /// in a port request is `not_found` here; the store layer's
    /// [`crate::store::NumberStore::lookup_account`] also reads port requests).
    ///
    /// # Errors
    /// `not_found`, `unassigned`, `not_in_service`, `account_disabled`.
    pub fn identify(&self, number: &E164) -> Result<AccountLookup, Error> {
        let entry = self.lookup(number);
        let doc = entry.as_ref().map(|e| &e.doc);
        let cnam = entry.as_ref().is_none_or(|e| crate::carriers::should_lookup_cnam(&e.module));
        let ctx = Ctx {
            config: &self.config,
            accounts: &*self.accounts,
            auth_by: Some(&AuthBy::System),
            dry_run: false,
            mdn_run: false,
            now: crate::store::now_gregorian(),
        };
        lookup_account(number, doc, None, cnam, &ctx)
    }

    /// Applies one stored document (a change row): number documents are (re)placed, deleted
    /// ones (`_deleted`) removed; design documents and unreadable documents are ignored.
    pub fn apply_doc(&self, doc: &Value) {
        let Some(id) = doc.get("_id").and_then(Value::as_str) else { return };
        if id.starts_with("_design/") {
            return;
        }
        if doc.get("_deleted").and_then(Value::as_bool) == Some(true) {
            self.state.map.remove(id);
            return;
        }
        match NumberDoc::from_json(doc, 0) {
            Ok(d) => {
                self.state.map.insert(id.into(), Arc::new(InboundEntry::from_doc(d)));
            }
            Err(e) => {
                tracing::warn!(id, error = %e, "inbound table: not a number document; skipped");
                self.state.map.remove(id);
            }
        }
        self.state.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a number.
    pub fn remove(&self, number: &str) {
        self.state.map.remove(number);
    }

    /// Numbers in the table.
    pub fn len(&self) -> usize {
        self.state.map.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.state.map.is_empty()
    }

    /// Whether every number database has been read up to its live feed (a table that is not
    /// caught up may answer `not_found` for numbers that exist).
    pub fn is_caught_up(&self) -> bool {
        self.state.caught_up()
    }

    /// Waits until [`InboundTable::is_caught_up`].
    pub async fn wait_caught_up(&self) {
        loop {
            let notified = self.state.notify.notified();
            if self.state.caught_up() {
                return;
            }
            notified.await;
        }
    }

    /// Waits until `pred` holds for the entry of `number` (or its absence); for consumers that
    /// must see their own write.
    pub async fn wait_for(
        &self,
        number: &E164,
        mut pred: impl FnMut(Option<&InboundEntry>) -> bool,
    ) {
        loop {
            let notified = self.state.notify.notified();
            if pred(self.lookup(number).as_deref()) {
                return;
            }
            notified.await;
        }
    }

    /// The table's health.
    pub fn status(&self) -> InboundStatus {
        let dbs = self.state.dbs.len();
        let dbs_caught_up = self.state.dbs.iter().filter(|e| *e.value()).count();
        InboundStatus {
            numbers: self.state.map.len(),
            dbs,
            dbs_caught_up,
            caught_up: self.state.caught_up(),
            changes_applied: self.state.changes.load(Ordering::Relaxed),
        }
    }
}

async fn run(store: SharedStore, state: Arc<State>, opts: InboundOptions) {
    let mut followers: HashMap<String, Aborting> = HashMap::new();
    let table_for = |state: &Arc<State>| InboundTable {
        state: state.clone(),
        config: Arc::new(Config::kazoo_defaults()),
        accounts: Arc::new(AccountMap::new()),
        _tasks: Arc::new(TaskGuard(None)),
    };
    let spawn = |db: DbName, followers: &mut HashMap<String, Aborting>| {
        if followers.contains_key(db.as_str()) {
            return;
        }
        state.dbs.insert(db.as_str().to_owned(), false);
        let table = table_for(&state);
        let store = store.clone();
        let mut fo = FollowOptions::new("inbound");
        fo.heartbeat = opts.heartbeat;
        let name = db.as_str().to_owned();
        let key = name.clone();
        let handle = tokio::spawn(async move {
            let mut feed = follow(store, db, fo);
            while let Some(event) = feed.next().await {
                match event {
                    FollowEvent::Change(c) => match (&c.doc, c.deleted) {
                        (_, true) => table.remove(&c.id),
                        (Some(doc), false) => table.apply_doc(doc),
                        (None, false) => {}
                    },
                    FollowEvent::Resync { .. } => table.state.forget_db(&name),
                    FollowEvent::CaughtUp { .. } => {
                        table.state.dbs.insert(name.clone(), true);
                    }
                    FollowEvent::Failed(e) => {
                        tracing::warn!(db = name, error = %e, "inbound table: follower stopped");
                        break;
                    }
                }
                table.state.notify.notify_waiters();
            }
        });
        followers.insert(key, Aborting(handle));
    };
    // The databases there are now, then the ones that come and go.
    let mut delay = Duration::from_millis(100);
    loop {
        match crate::store::number_dbs(&store).await {
            Ok(dbs) => {
                for db in dbs.into_iter().filter(is_routable_db) {
                    spawn(db, &mut followers);
                }
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "inbound table: cannot list databases; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
    state.listed.store(true, Ordering::Release);
    state.notify.notify_waiters();
    let mut watch = watch_dbs(store.clone(), is_routable_db, opts.poll_dbs_every);
    while let Some(update) = watch.next().await {
        match update.kind {
            DbUpdateKind::Created => spawn(update.db, &mut followers),
            DbUpdateKind::Deleted => {
                drop(followers.remove(update.db.as_str()));
                state.dbs.remove(update.db.as_str());
                state.forget_db(update.db.as_str());
            }
            _ => {}
        }
        state.notify.notify_waiters();
    }
}

/// A follower task, stopped when dropped (with the table's background task).
struct Aborting(JoinHandle<()>);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

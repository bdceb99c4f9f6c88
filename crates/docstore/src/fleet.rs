//! Every database of a kind — as they appear, change and disappear — without a feed per database.
//!
//! [`fleet`] keeps one server-wide `_db_updates` feed open (one connection however many
//! databases there are) to learn *which* databases changed, then reads just those databases'
//! `_changes` since the sequence it last saw of each (a one-shot `feed=normal` request, in pages),
//! at most [`FleetOptions::concurrency`] at a time. A database nobody writes to costs nothing in
//! steady state: no connection, no heartbeat, no request.
//!
//! What it delivers, per database ([`FleetEvent`]): `Loaded` once its whole content (the changes
//! since 0, filtered by the selector) has been read — again after it was deleted and created
//! anew —, `Changed` with the changes read since, and `Gone` when it is deleted. Events of one
//! database come in order; changes to a database while it is being read are read next (they
//! coalesce into one `Changed`).
//!
//! Where the server has no `_db_updates` (it answers 400/404, or refuses it to a non-admin user),
//! one poller stands in: every [`FleetOptions::poll_every`] it lists the databases and compares
//! each one's `update_seq` with the last it saw, [`FleetOptions::concurrency`] requests at a
//! time — never a feed per database.
//!
//! Failures are retried with the backoff of [`FleetOptions`] (full jitter, doubling from
//! `backoff_base` to `backoff_cap`); a database that cannot be read is reported on the board as
//! in trouble until a read succeeds. Dropping the [`Fleet`] stops everything.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{Error, Result};
use crate::health::FeedBoard;
use crate::store::{DbUpdateStream, SharedStore};
use crate::types::{Change, ChangesQuery, DbName, DbUpdateKind, Fields, Seq};

/// How a [`fleet`] reads. Build with [`FleetOptions::new`] and adjust the fields.
#[derive(Clone)]
pub struct FleetOptions {
    /// Names the fleet in logs.
    pub name: String,
    /// Databases read at once (one request each). Default 8.
    pub concurrency: usize,
    /// Changes per `_changes` page. Default 1000.
    pub page: usize,
    /// Deliver documents with the changes. Default `true`.
    pub include_docs: bool,
    /// Only changes of documents matching this Mango selector; deletions always pass (the
    /// server is asked for `{"$or": [selector, {"_deleted": true}]}`, and where it refuses that,
    /// the fleet filters the unfiltered feed itself). Default none.
    pub selector: Option<Value>,
    /// Deliver only these fields of each document (see [`Fields`]). Default none.
    pub fields: Option<Fields>,
    /// How often the poller that stands in for a missing `_db_updates` looks. Default 5 s.
    pub poll_every: Duration,
    /// The heartbeat asked of the `_db_updates` feed is the store's; this is how long a retry
    /// of anything first waits at most (full jitter, doubling). Default 100 ms.
    pub backoff_base: Duration,
    /// No retry waits longer than this. Default 60 s.
    pub backoff_cap: Duration,
    /// Where failing reads and undecodable rows are reported. Default none.
    pub board: Option<FeedBoard>,
}

impl FleetOptions {
    /// Options with the documented defaults, naming the fleet `name`.
    pub fn new(name: impl Into<String>) -> FleetOptions {
        FleetOptions {
            name: name.into(),
            concurrency: DEFAULT_CONCURRENCY,
            page: 1000,
            include_docs: true,
            selector: None,
            fields: None,
            poll_every: Duration::from_secs(5),
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(60),
            board: None,
        }
    }

    /// The wait before retry number `attempt` ([`backoff`] with these options).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        backoff(self.backoff_base, self.backoff_cap, attempt)
    }
}

/// The wait before retry number `attempt` (from 1), with full jitter: a uniform wait in
/// `[0, min(cap, base · 2^(attempt-1))]`. The one backoff of the followers and the fleet.
pub fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exp).min(cap);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
}

/// The default of [`FleetOptions::concurrency`]: 8 databases read at once.
pub const DEFAULT_CONCURRENCY: usize = 8;

impl fmt::Debug for FleetOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetOptions")
            .field("name", &self.name)
            .field("concurrency", &self.concurrency)
            .field("page", &self.page)
            .field("selector", &self.selector)
            .field("poll_every", &self.poll_every)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .finish_non_exhaustive()
    }
}

/// What a [`Fleet`] reports about one database.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetEvent {
    /// The database's whole content (its changes since 0): start over from these.
    Loaded {
        /// The database.
        db: DbName,
        /// The latest change of each (selected) document, deletions included.
        changes: Vec<Change>,
        /// Where the read ended.
        last_seq: Seq,
    },
    /// Changes since the last event of this database.
    Changed {
        /// The database.
        db: DbName,
        /// The changes, in feed order.
        changes: Vec<Change>,
        /// Where the read ended.
        last_seq: Seq,
    },
    /// The database was deleted.
    Gone {
        /// The database.
        db: DbName,
    },
}

/// How the fleet learns which databases changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetMode {
    /// Not connected yet.
    Starting,
    /// The server's `_db_updates` feed.
    Feed,
    /// Listing the databases and comparing their `update_seq` every `poll_every`.
    Poll,
}

/// What a [`Fleet`] has done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetStatus {
    /// How it learns about changes.
    pub mode: FleetMode,
    /// The databases have been listed once.
    pub listed: bool,
    /// Databases known (passing the filter).
    pub dbs: usize,
    /// Of those, read at least once.
    pub loaded: usize,
    /// Databases waiting to be read or being read.
    pub pending: usize,
}

impl FleetStatus {
    /// Every database known has been read and nothing is waiting to be read.
    pub fn caught_up(&self) -> bool {
        self.listed && self.loaded == self.dbs && self.pending == 0
    }
}

/// A stream of [`FleetEvent`]s; see [`fleet`]. Dropping it stops the fleet.
pub struct Fleet {
    rx: mpsc::Receiver<FleetEvent>,
    status: watch::Receiver<FleetStatus>,
    task: JoinHandle<()>,
    /// What [`Fleet::read_now`] reads with: the fleet's store and options.
    store: SharedStore,
    options: Arc<FleetOptions>,
}

impl Fleet {
    /// What the fleet has done so far.
    pub fn status(&self) -> FleetStatus {
        self.status.borrow().clone()
    }

    /// A receiver of the status, to wait on.
    pub fn status_watch(&self) -> watch::Receiver<FleetStatus> {
        self.status.clone()
    }

    /// Reads `db` whole now, once — every current document the fleet's selector passes, as
    /// changes at the database's `update_seq` noted first — for a consumer that needs a
    /// database at once, even one the fleet has not found yet, or while the fleet's reads are
    /// busy elsewhere: a snapshot (`_all_docs`), not a `_changes` replay. The fleet's own reads
    /// go on as before (a change read twice is harmless, see [`FleetEvent`]). Rows that cannot
    /// be decoded are noted on the board. A failure is returned, not retried.
    ///
    /// # Errors
    /// [`Error::DbNotFound`] when the database does not exist; the store's error otherwise.
    pub async fn read_now(&self, db: &DbName) -> Result<(Vec<Change>, Seq)> {
        let options = &self.options;
        let board = options.board.as_ref();
        let (rows, last_seq) =
            crate::snapshot::read_all_docs(&*self.store, db, options.page, |page| {
                if let Some(board) = board {
                    board.note_page(db.as_str(), page);
                }
            })
            .await?;
        if let Some(board) = board {
            board.read_ok(db.as_str());
        }
        let changes = crate::snapshot::as_changes(
            rows,
            &last_seq,
            options.selector.as_ref(),
            options.include_docs,
            options.fields.as_ref(),
        );
        Ok((changes, last_seq))
    }
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet").field("status", &*self.status.borrow()).finish_non_exhaustive()
    }
}

impl Stream for Fleet {
    type Item = FleetEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FleetEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Follows every database of `store` that passes `filter` (see the module documentation).
///
/// # Panics
/// Outside a tokio runtime.
pub fn fleet<F>(store: SharedStore, filter: F, options: FleetOptions) -> Fleet
where
    F: Fn(&DbName) -> bool + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let initial =
        FleetStatus { mode: FleetMode::Starting, listed: false, dbs: 0, loaded: 0, pending: 0 };
    let (status_tx, status) = watch::channel(initial);
    let options = Arc::new(options);
    let run = Run {
        store: store.clone(),
        filter: Box::new(filter),
        options: options.clone(),
        tx,
        status: status_tx,
        dbs: HashMap::new(),
        queue: VecDeque::new(),
        reads: JoinSet::new(),
        filter_here: Arc::new(AtomicBool::new(false)),
        mode: FleetMode::Starting,
        listed: false,
    };
    let task = tokio::spawn(async move {
        let _ = run.run().await;
    });
    Fleet { rx, status, task, store, options }
}

/// What the fleet knows of one database.
#[derive(Default)]
struct DbState {
    /// Where the last read ended; `None` until the database is loaded.
    seq: Option<Seq>,
    /// Waiting in the queue.
    queued: bool,
    /// A read is running.
    reading: bool,
    /// It changed while being read: read again after.
    again: bool,
    /// Bumped when the database is created anew, so a read of the old one is discarded.
    incarnation: u64,
    /// The `update_seq` the poller last saw (poll mode only).
    polled: Option<Seq>,
}

/// A finished read: the database, the incarnation it read, and what it read (`None`: the
/// database does not exist).
type ReadDone = (DbName, u64, bool, Option<(Vec<Change>, Seq)>);

/// The receiver is gone: stop.
struct Stop;

struct Run {
    store: SharedStore,
    filter: Box<dyn Fn(&DbName) -> bool + Send + Sync>,
    options: Arc<FleetOptions>,
    tx: mpsc::Sender<FleetEvent>,
    status: watch::Sender<FleetStatus>,
    dbs: HashMap<DbName, DbState>,
    queue: VecDeque<DbName>,
    reads: JoinSet<ReadDone>,
    filter_here: Arc<AtomicBool>,
    mode: FleetMode,
    listed: bool,
}

impl Run {
    async fn run(mut self) -> std::result::Result<(), Stop> {
        // The feed's position: `now` until the first event names one.
        let mut since = Seq::now();
        let mut positioned = false;
        let mut attempt = 0u32;
        loop {
            let feed = match self.store.db_updates(&since).await {
                Ok(Some(feed)) => Some(feed),
                Ok(None) => None,
                Err(e @ (Error::Unauthorized { .. } | Error::Forbidden { .. })) => {
                    tracing::info!(fleet = %self.options.name, error = %e,
                        "No _db_updates access; polling the database list instead.");
                    None
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(fleet = %self.options.name, error = %e, attempt,
                        "Cannot open _db_updates; retrying.");
                    self.pause(self.options.backoff(attempt)).await?;
                    continue;
                }
            };
            let Some(feed) = feed else {
                self.mode = FleetMode::Poll;
                return self.poll_forever().await;
            };
            self.mode = FleetMode::Feed;
            // Listed after the feed is open, so nothing created in between is missed. Without
            // a position in the feed (it broke before its first event), the gap is covered by
            // listing again and reading every database once more.
            if !positioned {
                let relist = self.listed;
                self.list().await?;
                if relist {
                    let known: Vec<DbName> = self.dbs.keys().cloned().collect();
                    for db in known {
                        self.touch(&db);
                    }
                }
            }
            match self.follow_feed(feed, &mut since, &mut positioned).await? {
                true => attempt = 0,
                false => attempt += 1,
            }
            self.pause(self.options.backoff(attempt.max(1))).await?;
        }
    }

    /// Serves one `_db_updates` connection until it ends; whether it delivered anything.
    async fn follow_feed(
        &mut self,
        mut feed: DbUpdateStream,
        since: &mut Seq,
        positioned: &mut bool,
    ) -> std::result::Result<bool, Stop> {
        let mut delivered = false;
        loop {
            self.start_reads();
            self.publish_status();
            tokio::select! {
                item = feed.next() => match item {
                    Some(Ok(update)) => {
                        delivered = true;
                        if let Some(seq) = update.seq.clone() {
                            *since = seq;
                            *positioned = true;
                        }
                        if !(self.filter)(&update.db) {
                            continue;
                        }
                        match update.kind {
                            DbUpdateKind::Created => self.created(&update.db),
                            DbUpdateKind::Updated => self.touch(&update.db),
                            DbUpdateKind::Deleted => self.gone(&update.db).await?,
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(fleet = %self.options.name, error = %e,
                            "_db_updates feed broke; reconnecting.");
                        return Ok(delivered);
                    }
                    None => return Ok(delivered),
                },
                Some(done) = self.reads.join_next(), if !self.reads.is_empty() => {
                    if let Ok(done) = done {
                        self.read_done(done).await?;
                    }
                }
            }
        }
    }

    /// Lists the databases (retrying until it can): new ones are read, missing ones are gone.
    async fn list(&mut self) -> std::result::Result<(), Stop> {
        let mut attempt = 0u32;
        let names = loop {
            match self.store.list_dbs().await {
                Ok(names) => break names,
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(fleet = %self.options.name, error = %e, attempt,
                        "Cannot list databases; retrying.");
                    self.pause(self.options.backoff(attempt)).await?;
                }
            }
        };
        let now: std::collections::HashSet<DbName> =
            names.into_iter().filter(|db| (self.filter)(db)).collect();
        let missing: Vec<DbName> =
            self.dbs.keys().filter(|db| !now.contains(*db)).cloned().collect();
        for db in missing {
            self.gone(&db).await?;
        }
        let mut new: Vec<DbName> =
            now.into_iter().filter(|db| !self.dbs.contains_key(db)).collect();
        new.sort();
        for db in new {
            self.touch(&db);
        }
        self.listed = true;
        Ok(())
    }

    /// The poller that stands in for `_db_updates`: never returns but to stop.
    async fn poll_forever(&mut self) -> std::result::Result<(), Stop> {
        loop {
            self.list().await?;
            self.compare_update_seqs().await?;
            let until = tokio::time::Instant::now() + self.options.poll_every;
            loop {
                self.start_reads();
                self.publish_status();
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    Some(done) = self.reads.join_next(), if !self.reads.is_empty() => {
                        if let Ok(done) = done {
                            self.read_done(done).await?;
                        }
                    }
                }
            }
        }
    }

    /// Asks each loaded database's `update_seq`, `concurrency` at a time, and queues a read of
    /// those that moved (and of those not compared before: a read since the last seq is cheap).
    async fn compare_update_seqs(&mut self) -> std::result::Result<(), Stop> {
        let loaded: Vec<DbName> = self
            .dbs
            .iter()
            .filter(|(_, s)| s.seq.is_some() && !s.queued && !s.reading)
            .map(|(db, _)| db.clone())
            .collect();
        let store = self.store.clone();
        let infos: Vec<(DbName, Result<Seq>)> = futures::stream::iter(loaded)
            .map(|db| {
                let store = store.clone();
                async move {
                    let info = store.db_info(&db).await.map(|i| i.update_seq);
                    (db, info)
                }
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        for (db, info) in infos {
            match info {
                Ok(seq) => {
                    let Some(state) = self.dbs.get_mut(&db) else { continue };
                    let moved = state.polled.as_ref() != Some(&seq);
                    state.polled = Some(seq);
                    if moved {
                        self.touch(&db);
                    }
                }
                Err(Error::DbNotFound { .. }) => self.gone(&db).await?,
                Err(e) => {
                    tracing::debug!(fleet = %self.options.name, %db, error = %e,
                        "Cannot read update_seq; the next poll tries again.");
                }
            }
        }
        Ok(())
    }

    /// The database was created (again): read it from the start.
    fn created(&mut self, db: &DbName) {
        match self.dbs.get_mut(db) {
            Some(state) if state.seq.is_some() || state.reading => {
                state.incarnation += 1;
                state.seq = None;
                state.polled = None;
                state.reading = false;
                state.again = false;
                if !state.queued {
                    state.queued = true;
                    self.queue.push_back(db.clone());
                }
            }
            _ => self.touch(db),
        }
    }

    /// The database changed (or is new): read what is new in it.
    fn touch(&mut self, db: &DbName) {
        let state = self.dbs.entry(db.clone()).or_default();
        if state.reading {
            state.again = true;
        } else if !state.queued {
            state.queued = true;
            self.queue.push_back(db.clone());
        }
    }

    async fn gone(&mut self, db: &DbName) -> std::result::Result<(), Stop> {
        if let Some(state) = self.dbs.remove(db) {
            if state.queued {
                self.queue.retain(|q| q != db);
            }
            if let Some(board) = &self.options.board {
                board.read_ok(db.as_str());
            }
            self.send(FleetEvent::Gone { db: db.clone() }).await?;
        }
        Ok(())
    }

    fn start_reads(&mut self) {
        while self.reads.len() < self.options.concurrency.max(1) {
            let Some(db) = self.queue.pop_front() else { return };
            let Some(state) = self.dbs.get_mut(&db) else { continue };
            state.queued = false;
            state.reading = true;
            let since = state.seq.clone();
            let incarnation = state.incarnation;
            let (store, options, filter_here) =
                (self.store.clone(), self.options.clone(), self.filter_here.clone());
            self.reads.spawn(async move {
                let fresh = since.is_none();
                let read = read_until_done(
                    &store,
                    &db,
                    since.unwrap_or_else(Seq::zero),
                    &options,
                    &filter_here,
                )
                .await;
                (db, incarnation, fresh, read)
            });
        }
    }

    async fn read_done(
        &mut self,
        (db, incarnation, fresh, read): ReadDone,
    ) -> std::result::Result<(), Stop> {
        let Some(state) = self.dbs.get_mut(&db) else { return Ok(()) };
        if state.incarnation != incarnation {
            return Ok(());
        }
        state.reading = false;
        let Some((changes, last_seq)) = read else {
            return self.gone(&db).await;
        };
        state.seq = Some(last_seq.clone());
        if std::mem::take(&mut state.again) {
            state.queued = true;
            self.queue.push_back(db.clone());
        }
        if fresh {
            self.send(FleetEvent::Loaded { db, changes, last_seq }).await
        } else if changes.is_empty() {
            Ok(())
        } else {
            self.send(FleetEvent::Changed { db, changes, last_seq }).await
        }
    }

    async fn send(&self, event: FleetEvent) -> std::result::Result<(), Stop> {
        self.tx.send(event).await.map_err(|_| Stop)
    }

    fn publish_status(&self) {
        let status = FleetStatus {
            mode: self.mode,
            listed: self.listed,
            dbs: self.dbs.len(),
            loaded: self.dbs.values().filter(|s| s.seq.is_some()).count(),
            pending: self.queue.len() + self.reads.len(),
        };
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    /// Waits, unless the receiver is gone.
    async fn pause(&self, wait: Duration) -> std::result::Result<(), Stop> {
        tokio::select! {
            _ = self.tx.closed() => Err(Stop),
            _ = tokio::time::sleep(wait) => Ok(()),
        }
    }
}

/// Reads `db`'s changes since `since`, retrying failures with the backoff until it succeeds;
/// `None` when the database does not exist.
async fn read_until_done(
    store: &SharedStore,
    db: &DbName,
    since: Seq,
    options: &FleetOptions,
    filter_here: &AtomicBool,
) -> Option<(Vec<Change>, Seq)> {
    let mut attempt = 0u32;
    loop {
        match read_changes(store, db, since.clone(), options, filter_here).await {
            Ok(read) => {
                if let Some(board) = &options.board {
                    board.read_ok(db.as_str());
                }
                return Some(read);
            }
            Err(Error::DbNotFound { .. }) => return None,
            Err(e) => {
                attempt += 1;
                tracing::warn!(fleet = %options.name, %db, error = %e, attempt,
                    "Cannot read the database's changes; retrying.");
                if let Some(board) = &options.board {
                    board.read_failed(db.as_str(), &e);
                }
                tokio::time::sleep(options.backoff(attempt)).await;
            }
        }
    }
}

/// Reads `db`'s changes after `since`, page by page, to the end.
async fn read_changes(
    store: &SharedStore,
    db: &DbName,
    mut since: Seq,
    options: &FleetOptions,
    filter_here: &AtomicBool,
) -> Result<(Vec<Change>, Seq)> {
    let page_size = options.page.max(1);
    let mut out = Vec::new();
    loop {
        let local = filter_here.load(Ordering::Relaxed) && options.selector.is_some();
        let query = ChangesQuery {
            since: since.clone(),
            limit: Some(page_size),
            include_docs: options.include_docs || local,
            selector: if local {
                None
            } else {
                options.selector.as_ref().map(|s| json!({ "$or": [s, { "_deleted": true }] }))
            },
            fields: if local { None } else { options.fields.clone() },
        };
        let page = match store.changes(db, &query).await {
            Err(Error::BadRequest { reason }) if !local && options.selector.is_some() => {
                tracing::warn!(fleet = %options.name, %db, %reason,
                    "The server refuses the selector combined with deletions; filtering here.");
                filter_here.store(true, Ordering::Relaxed);
                continue;
            }
            other => other?,
        };
        let rows = page.results.len() + page.issues.len();
        if let Some(board) = &options.board {
            for issue in &page.issues {
                board.note_issue(issue);
            }
        }
        let selector = options.selector.as_ref().filter(|_| local);
        out.extend(page.results.into_iter().filter(|change| {
            selector.is_none_or(|selector| {
                change.deleted
                    || change
                        .doc
                        .as_ref()
                        .is_some_and(|doc| crate::selector::matches(selector, doc))
            })
        }));
        let done = rows < page_size || page.pending == Some(0) || page.last_seq == since;
        since = page.last_seq;
        if done {
            return Ok((out, since));
        }
    }
}

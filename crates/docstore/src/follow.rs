//! The change follower: a resumable, checkpointed stream of one database's changes over any
//! [`DocStore`](crate::DocStore), and the discovery of databases as they come and go.
//!
//! # How a follower runs
//! Each connection first checks that the database exists and carries the follower's incarnation
//! marker, then catches up with one-shot `_changes` pages (`feed=normal`), reports
//! [`FollowEvent::CaughtUp`], and then holds one live feed (`feed=continuous`) with heartbeats.
//! A connection that stays silent for `missed_heartbeats` heartbeats is dead; it, and every
//! transient error, leads to a reconnect after a full-jitter exponential backoff, resuming from the
//! last *delivered* sequence. A new follower resumes from the last *acknowledged* sequence
//! ([`Follower::ack`]), which is the only one ever checkpointed.
//!
//! # Delivery guarantees
//! At least once: a change may be delivered twice (across a reconnect, a restart from a
//! checkpoint, or because CouchDB replays changes after a shard move). Consumers must be
//! idempotent. Sequences are opaque: never parsed, never compared for order.
//!
//! # Resync
//! [`FollowEvent::Resync`] tells the consumer to forget what it derived from this database: what
//! follows is the database from the start. It is sent when a follower starts from sequence 0, when
//! the database was deleted (then nothing follows until it exists again), recreated (its
//! incarnation marker `_local/switchboard-incarnation` vanished or changed), or rewound (the server
//! reports `update_seq` 0 while the follower stands further on). Sequences are not parsed, so only
//! a literal `0` counts: a clustered CouchDB that silently replays from an older position (after a
//! shard move, apache/couchdb#3788) shows as changes delivered again, which consumers tolerate.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::health::{FeedBoard, Registration};
use crate::store::SharedStore;
use crate::types::{
    Change, ChangesQuery, DbName, DbUpdate, DbUpdateKind, FeedEvent, FeedQuery, Fields, RowAction,
    RowIssue, Seq,
};

/// The `_local` document (without `_local/`) holding a database's incarnation uuid.
const INCARNATION_DOC: &str = "switchboard-incarnation";

/// How many events may wait for the consumer before the follower stops reading.
const CHANNEL_CAPACITY: usize = 256;

/// What a [`Follower`] yields.
#[derive(Debug)]
pub enum FollowEvent {
    /// A change, in feed order.
    Change(Change),
    /// Everything up to `last_seq` has been delivered; later changes arrive as they happen. Sent
    /// after the first catch-up and again after each reconnect's (short) catch-up.
    CaughtUp {
        /// The position reached.
        last_seq: Seq,
    },
    /// Forget what was derived from this database: the changes that follow replay it from the
    /// start (none follow a [`ResyncReason::Deleted`] until the database exists again).
    Resync {
        /// Why.
        reason: ResyncReason,
    },
    /// The follower stopped for good (401, 403, a missing database when not waiting for it, a
    /// refused selector). The stream ends after this event.
    Failed(Error),
}

/// Why a [`FollowEvent::Resync`] was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// The follower starts from sequence 0 (no checkpoint, no `since`).
    Initial,
    /// The database was deleted.
    Deleted,
    /// The database was deleted and created again since the checkpoint or the last connection.
    Recreated,
    /// The server's sequence went back to 0 while the follower stood further on.
    Rewound,
}

/// What the follower does when the database does not exist (at start, or after a deletion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenDbMissing {
    /// Stop with [`FollowEvent::Failed`] carrying [`Error::DbNotFound`].
    Fail,
    /// Wait, polling with the reconnect backoff, until the database exists.
    Wait,
}

/// How to follow a database. Build with [`FollowOptions::new`] and adjust the fields.
#[derive(Clone)]
pub struct FollowOptions {
    /// Names the follower's checkpoint (`_local/switchboard-follow-<name>` or the file entry).
    pub name: String,
    /// Start after this sequence. `None`: from the checkpoint, else from 0.
    pub since: Option<Seq>,
    /// Deliver documents with the changes. Default `true`.
    pub include_docs: bool,
    /// Only changes of documents matching this Mango selector (`filter=_selector`). Deletions
    /// are always delivered, matching or not: a tombstone keeps no fields to match, so the
    /// follower asks for `{"$or": [selector, {"_deleted": true}]}`. If the server refuses that
    /// combination but takes the selector alone (pouchdb-server fails on some operators inside
    /// `$or`), the follower reads the unfiltered feed and filters with [`crate::selector`]
    /// instead. A document edited so that it no longer matches is not delivered; consumers that
    /// must see that follow without a selector and filter themselves. Default none.
    pub selector: Option<Value>,
    /// The server's heartbeat interval on the live feed. Default 10 s.
    pub heartbeat: Duration,
    /// The connection is dead after this many heartbeats were missed. Default 3.
    pub missed_heartbeats: u32,
    /// The first reconnect waits up to this long (full jitter). Default 100 ms.
    pub backoff_base: Duration,
    /// No reconnect waits longer than this. Default 60 s.
    pub backoff_cap: Duration,
    /// Where acknowledged sequences are kept. Default none (nothing is persisted).
    pub checkpoint: Option<Arc<dyn Checkpoints>>,
    /// What to do about a missing database. Default [`WhenDbMissing::Fail`].
    pub when_db_missing: WhenDbMissing,
    /// Changes per catch-up request. Default 5000 (fewer round trips; one page stays a few MB).
    pub catch_up_batch: usize,
    /// Deliver only these fields of each document ([`Fields`]: a projection, `_id`, `_rev` and
    /// `_deleted` always kept), for consumers that read a few fields of large documents. The
    /// selector, if any, still sees whole documents. Default none (whole documents).
    pub fields: Option<Fields>,
    /// While live, check this often that the database still exists with the same incarnation
    /// marker (one small `GET`). Not every server ends a live feed when its database is deleted
    /// (pouchdb-server keeps sending heartbeats), so this is how deletion and recreation are seen
    /// there. Default 30 s.
    pub verify_every: Duration,
    /// Where the follower reports its health and the rows it skipped or repaired (see
    /// [`FeedBoard`]). Default none (the status alone tells).
    pub board: Option<FeedBoard>,
}

impl FollowOptions {
    /// Options with the documented defaults, naming the follower `name`.
    pub fn new(name: impl Into<String>) -> FollowOptions {
        FollowOptions {
            name: name.into(),
            since: None,
            include_docs: true,
            selector: None,
            heartbeat: Duration::from_secs(10),
            missed_heartbeats: 3,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(60),
            checkpoint: None,
            when_db_missing: WhenDbMissing::Fail,
            catch_up_batch: 5000,
            fields: None,
            verify_every: Duration::from_secs(30),
            board: None,
        }
    }

    /// The selector sent to the server: the caller's, or a deletion.
    fn server_selector(&self) -> Option<Value> {
        self.selector.as_ref().map(|selector| json!({ "$or": [selector, { "_deleted": true }] }))
    }

    fn dead_after(&self) -> Duration {
        self.heartbeat * self.missed_heartbeats.max(1)
    }

    /// Full jitter: a uniform wait in `[0, min(cap, base · 2^(attempt-1))]`.
    fn backoff(&self, attempt: u32) -> Duration {
        crate::fleet::backoff(self.backoff_base, self.backoff_cap, attempt)
    }
}

impl fmt::Debug for FollowOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FollowOptions")
            .field("name", &self.name)
            .field("since", &self.since)
            .field("include_docs", &self.include_docs)
            .field("selector", &self.selector)
            .field("heartbeat", &self.heartbeat)
            .field("missed_heartbeats", &self.missed_heartbeats)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field("checkpoint", &self.checkpoint.as_ref().map(|_| "Checkpoints"))
            .field("when_db_missing", &self.when_db_missing)
            .field("catch_up_batch", &self.catch_up_batch)
            .field("fields", &self.fields)
            .field("verify_every", &self.verify_every)
            .field("board", &self.board.is_some())
            .finish()
    }
}

/// A persisted follower position.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The last acknowledged sequence.
    pub seq: Seq,
    /// The database incarnation the sequence belongs to (see the module docs).
    pub incarnation: Option<String>,
}

impl Checkpoint {
    fn to_json(&self) -> Value {
        json!({ "seq": self.seq.as_json(), "incarnation": self.incarnation })
    }

    fn from_json(v: &Value) -> Option<Checkpoint> {
        Some(Checkpoint {
            seq: Seq::from_json(v.get("seq")?.clone()),
            incarnation: v.get("incarnation").and_then(Value::as_str).map(str::to_owned),
        })
    }
}

/// Where followers keep their acknowledged positions.
#[async_trait]
pub trait Checkpoints: Send + Sync + 'static {
    /// The checkpoint of follower `name` on `db`, if any.
    async fn load(&self, db: &DbName, name: &str) -> Result<Option<Checkpoint>>;
    /// Replaces the checkpoint of follower `name` on `db`.
    async fn save(&self, db: &DbName, name: &str, checkpoint: &Checkpoint) -> Result<()>;
}

/// Checkpoints in the followed database itself, in `_local/switchboard-follow-<name>` (not
/// replicated, not in the change feed). A deleted database takes its checkpoints with it.
#[derive(Clone)]
pub struct LocalDocCheckpoints {
    store: SharedStore,
}

impl LocalDocCheckpoints {
    /// Checkpoints kept through `store`.
    pub fn new(store: SharedStore) -> LocalDocCheckpoints {
        LocalDocCheckpoints { store }
    }

    fn doc_name(name: &str) -> String {
        format!("switchboard-follow-{name}")
    }
}

#[async_trait]
impl Checkpoints for LocalDocCheckpoints {
    async fn load(&self, db: &DbName, name: &str) -> Result<Option<Checkpoint>> {
        match self.store.get_local(db, &Self::doc_name(name)).await {
            Ok(doc) => Ok(doc.as_ref().and_then(Checkpoint::from_json)),
            // The checkpoint went with the database.
            Err(Error::DbNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn save(&self, db: &DbName, name: &str, checkpoint: &Checkpoint) -> Result<()> {
        self.store.put_local(db, &Self::doc_name(name), checkpoint.to_json()).await
    }
}

/// Checkpoints in one JSON file, `{"<db>": {"<name>": {"seq": …, "incarnation": …}}}`, replaced
/// atomically (write a sibling temporary file, then rename) on every save.
#[derive(Debug)]
pub struct FileCheckpoints {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl FileCheckpoints {
    /// Checkpoints in the file at `path` (created on the first save, with its directory).
    pub fn new(path: impl Into<PathBuf>) -> FileCheckpoints {
        FileCheckpoints { path: path.into(), lock: tokio::sync::Mutex::new(()) }
    }

    async fn read_all(&self) -> Result<Value> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
                what: format!("checkpoint file {}", self.path.display()),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
            Err(e) => Err(self.io_error(e)),
        }
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::Embedded(format!("checkpoint file {}: {e}", self.path.display()).into())
    }
}

#[async_trait]
impl Checkpoints for FileCheckpoints {
    async fn load(&self, db: &DbName, name: &str) -> Result<Option<Checkpoint>> {
        let _guard = self.lock.lock().await;
        let all = self.read_all().await?;
        Ok(all.get(db.as_str()).and_then(|d| d.get(name)).and_then(Checkpoint::from_json))
    }

    async fn save(&self, db: &DbName, name: &str, checkpoint: &Checkpoint) -> Result<()> {
        let _guard = self.lock.lock().await;
        let mut all = self.read_all().await?;
        if !all.is_object() {
            all = json!({});
        }
        let entry =
            all.as_object_mut().expect("an object").entry(db.as_str()).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        entry.as_object_mut().expect("an object").insert(name.to_owned(), checkpoint.to_json());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| self.io_error(e))?;
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let text = serde_json::to_vec_pretty(&all).expect("JSON values serialize");
        tokio::fs::write(&tmp, text).await.map_err(|e| self.io_error(e))?;
        tokio::fs::rename(&tmp, &self.path).await.map_err(|e| self.io_error(e))
    }
}

/// Where a follower stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowerState {
    /// Opening a connection (existence, incarnation and rewind checks).
    Connecting,
    /// Reading the backlog.
    CatchingUp,
    /// On the live feed.
    Live,
    /// Waiting before reconnect number `attempt` (1 = first retry).
    Backoff {
        /// Consecutive failed attempts so far.
        attempt: u32,
    },
    /// The database does not exist; polling until it does ([`WhenDbMissing::Wait`]).
    WaitingForDb,
    /// Stopped for good.
    Failed {
        /// The terminal error, rendered.
        reason: String,
    },
}

/// A follower's status, for metrics and health checks.
#[derive(Debug, Clone)]
pub struct FollowerStatus {
    /// Where the follower stands.
    pub state: FollowerState,
    /// The last sequence delivered (or reached by catch-up).
    pub last_seq: Option<Seq>,
    /// Whether the backlog has been delivered on the current connection.
    pub caught_up: bool,
    /// Changes left to catch up, where the server says (`Some(0)` once live).
    pub pending: Option<u64>,
    /// When the last change was delivered.
    pub last_change_at: Option<Instant>,
    /// When the server was last heard from (a change, a heartbeat, a catch-up page).
    pub last_heard_at: Option<Instant>,
    /// Reconnects after a failed or dead connection.
    pub reconnects: u64,
    /// Resyncs sent.
    pub resyncs: u64,
    /// The error that caused the last reconnect (or the terminal one), rendered.
    pub last_error: Option<String>,
    /// Since when the follower has been failing (reconnecting, or stopped): set by the first
    /// failed or dead connection, cleared once caught up again. `Some` means the consumer's view
    /// of the database may be stale.
    pub error_since: Option<SystemTime>,
    /// Rows skipped because they could not be decoded (their position is passed).
    pub skipped_rows: u64,
    /// Rows delivered after a repair (lone surrogates replaced, too-deep values cut).
    pub repaired_rows: u64,
    /// The latest skipped or repaired row.
    pub last_issue: Option<RowIssue>,
}

impl FollowerStatus {
    fn new() -> FollowerStatus {
        FollowerStatus {
            state: FollowerState::Connecting,
            last_seq: None,
            caught_up: false,
            pending: None,
            last_change_at: None,
            last_heard_at: None,
            reconnects: 0,
            resyncs: 0,
            last_error: None,
            error_since: None,
            skipped_rows: 0,
            repaired_rows: 0,
            last_issue: None,
        }
    }

    /// Time since the last delivered change.
    pub fn since_last_change(&self) -> Option<Duration> {
        self.last_change_at.map(|t| t.elapsed())
    }

    /// Time since the server was last heard from.
    pub fn since_last_heard(&self) -> Option<Duration> {
        self.last_heard_at.map(|t| t.elapsed())
    }
}

/// A cheap, cloneable view of a follower's [`FollowerStatus`].
#[derive(Debug, Clone)]
pub struct StatusHandle(watch::Receiver<FollowerStatus>);

impl StatusHandle {
    /// The current status.
    pub fn get(&self) -> FollowerStatus {
        self.0.borrow().clone()
    }

    /// Waits until `pred` holds for the status and returns that status (or the last status, if
    /// the follower is gone).
    pub async fn wait_for(&self, mut pred: impl FnMut(&FollowerStatus) -> bool) -> FollowerStatus {
        let mut rx = self.0.clone();
        let reached = match rx.wait_for(|s| pred(s)).await {
            Ok(status) => Some(status.clone()),
            Err(_) => None,
        };
        reached.unwrap_or_else(|| rx.borrow().clone())
    }
}

struct AckState {
    pending: Option<Seq>,
    saved: Option<Seq>,
    incarnation: Option<Arc<str>>,
    closed: bool,
}

struct AckShared {
    state: Mutex<AckState>,
    notify: Notify,
    checkpoints: Option<Arc<dyn Checkpoints>>,
    db: DbName,
    name: String,
    /// Serializes saves, so an older position never overwrites a newer one.
    save_lock: tokio::sync::Mutex<()>,
}

/// Acknowledges applied changes, so that only they are checkpointed. Cloneable, for consumers
/// that apply changes on another task.
#[derive(Clone)]
pub struct AckHandle(Arc<AckShared>);

impl AckHandle {
    /// Records that every change up to and including `seq` has been applied. Acknowledge in the
    /// order changes were delivered. The checkpoint is written in the background, coalescing.
    pub fn ack(&self, seq: Seq) {
        self.0.state.lock().expect("ack lock").pending = Some(seq);
        self.0.notify.notify_one();
    }

    /// Writes the latest acknowledgement now (if there is a checkpoint store and anything new).
    ///
    /// # Errors
    /// What the checkpoint store reports; the acknowledgement stays pending.
    pub async fn flush(&self) -> Result<()> {
        self.0.save_pending().await
    }

    /// The last checkpointed sequence of this follower's lifetime.
    pub fn saved(&self) -> Option<Seq> {
        self.0.state.lock().expect("ack lock").saved.clone()
    }
}

impl AckShared {
    async fn save_pending(&self) -> Result<()> {
        let Some(checkpoints) = &self.checkpoints else { return Ok(()) };
        let _guard = self.save_lock.lock().await;
        let (seq, incarnation) = {
            let mut state = self.state.lock().expect("ack lock");
            match state.pending.take() {
                Some(seq) => (seq, state.incarnation.clone()),
                None => return Ok(()),
            }
        };
        let checkpoint =
            Checkpoint { seq: seq.clone(), incarnation: incarnation.map(|i| i.to_string()) };
        match checkpoints.save(&self.db, &self.name, &checkpoint).await {
            Ok(()) => {
                self.state.lock().expect("ack lock").saved = Some(seq);
                Ok(())
            }
            Err(e) => {
                let mut state = self.state.lock().expect("ack lock");
                if state.pending.is_none() {
                    state.pending = Some(seq);
                }
                Err(e)
            }
        }
    }

    async fn run(self: Arc<Self>) {
        loop {
            let closed = self.state.lock().expect("ack lock").closed;
            if let Err(e) = self.save_pending().await {
                tracing::warn!(db = %self.db, follower = %self.name, error = %e, "Checkpoint not saved; retrying.");
                if closed {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if closed {
                return;
            }
            self.notify.notified().await;
        }
    }
}

struct Envelope {
    event: FollowEvent,
    incarnation: Option<Arc<str>>,
}

/// A live, resumable stream of one database's changes; see the module docs. Dropping it stops
/// the follower (the latest acknowledgement is still written).
pub struct Follower {
    rx: mpsc::Receiver<Envelope>,
    status: StatusHandle,
    acks: AckHandle,
    task: JoinHandle<()>,
    /// On the options' board while the follower lives.
    _board: Option<Registration>,
}

impl Follower {
    /// The follower's status handle.
    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    /// Acknowledges that every change up to and including `seq` has been applied.
    pub fn ack(&self, seq: Seq) {
        self.acks.ack(seq);
    }

    /// A handle to acknowledge from elsewhere, and to flush the checkpoint.
    pub fn acks(&self) -> AckHandle {
        self.acks.clone()
    }
}

impl fmt::Debug for Follower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follower")
            .field("db", &self.acks.0.db)
            .field("name", &self.acks.0.name)
            .finish()
    }
}

impl Stream for Follower {
    type Item = FollowEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FollowEvent>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(envelope)) => {
                let mut state = self.acks.0.state.lock().expect("ack lock");
                if matches!(envelope.event, FollowEvent::Resync { .. }) {
                    // Acknowledgements from before a resync describe another incarnation.
                    state.pending = None;
                }
                state.incarnation = envelope.incarnation;
                drop(state);
                Poll::Ready(Some(envelope.event))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
        self.acks.0.state.lock().expect("ack lock").closed = true;
        self.acks.0.notify.notify_one();
    }
}

/// Follows `db` on `store`; see the module docs.
///
/// # Example
/// A consumer that rebuilds a table from a database and checkpoints what it has published:
/// ```no_run
/// # async fn example(store: docstore::SharedStore) -> docstore::Result<()> {
/// use std::sync::Arc;
/// use docstore::{follow, DbName, FollowEvent, FollowOptions, LocalDocCheckpoints};
/// use futures::StreamExt;
///
/// let mut opts = FollowOptions::new("stepswitch");
/// opts.checkpoint = Some(Arc::new(LocalDocCheckpoints::new(store.clone())));
/// let mut follower = follow(store, DbName::new("offnet")?, opts);
/// let (mut applied, mut live) = (None, false);
/// while let Some(event) = follower.next().await {
///     match event {
///         FollowEvent::Resync { .. } => {
///             /* forget everything built from offnet: the database follows from the start */
///             live = false;
///         }
///         FollowEvent::Change(change) => {
///             /* apply the change (idempotently: it may come twice) */
///             applied = Some(change.seq);
///         }
///         FollowEvent::CaughtUp { .. } => live = true,
///         FollowEvent::Failed(e) => return Err(e),
///     }
///     if live {
///         /* publish the table (a real reactor debounces bursts), then checkpoint it */
///         if let Some(seq) = applied.take() {
///             follower.ack(seq);
///         }
///     }
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Panics
/// Outside a tokio runtime (the follower runs on spawned tasks).
pub fn follow(store: SharedStore, db: DbName, opts: FollowOptions) -> Follower {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (status_tx, status_rx) = watch::channel(FollowerStatus::new());
    let shared = Arc::new(AckShared {
        state: Mutex::new(AckState {
            pending: None,
            saved: None,
            incarnation: None,
            closed: false,
        }),
        notify: Notify::new(),
        checkpoints: opts.checkpoint.clone(),
        db: db.clone(),
        name: opts.name.clone(),
        save_lock: tokio::sync::Mutex::new(()),
    });
    if shared.checkpoints.is_some() {
        tokio::spawn(shared.clone().run());
    }
    let status = StatusHandle(status_rx);
    let registration = opts.board.as_ref().map(|board| board.register(db.clone(), status.clone()));
    let runner = Runner {
        store,
        db,
        opts,
        tx,
        status: status_tx,
        since: Seq::zero(),
        position_loaded: false,
        trusted_position: false,
        zero_announced: false,
        known_to_exist: false,
        incarnation: None,
        attempt: 0,
        filter_here: false,
    };
    let task = tokio::spawn(runner.run());
    Follower { rx, status, acks: AckHandle(shared), task, _board: registration }
}

/// Why a connection ended.
enum Halt {
    /// The consumer dropped the follower.
    Gone,
    /// An error: terminal or retried per [`is_terminal`].
    Error(Error),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Halt {
        Halt::Error(e)
    }
}

/// Errors that retrying cannot fix.
fn is_terminal(e: &Error) -> bool {
    match e {
        Error::Unauthorized { .. }
        | Error::Forbidden { .. }
        | Error::BadRequest { .. }
        | Error::IllegalDbName { .. }
        | Error::Unsupported { .. }
        | Error::Feed { .. } => true,
        Error::Http { status, .. } => (400..500).contains(status) && !matches!(status, 408 | 429),
        _ => false,
    }
}

struct Runner {
    store: SharedStore,
    db: DbName,
    opts: FollowOptions,
    tx: mpsc::Sender<Envelope>,
    status: watch::Sender<FollowerStatus>,
    /// Resume after this (the last delivered sequence).
    since: Seq,
    position_loaded: bool,
    /// `since` came from a checkpoint or from this database's feed (not from the caller's
    /// `since`), so a vanished incarnation marker means the database was recreated.
    trusted_position: bool,
    /// A resync (or an initial one) for `since = 0` has been sent.
    zero_announced: bool,
    known_to_exist: bool,
    incarnation: Option<Arc<str>>,
    /// Consecutive failures.
    attempt: u32,
    /// The selector is applied here, not by the server (see [`FollowOptions::selector`]).
    filter_here: bool,
}

impl Runner {
    async fn run(mut self) {
        loop {
            let err = match self.connection().await {
                Ok(never) => match never {},
                Err(Halt::Gone) => return,
                Err(Halt::Error(e)) => e,
            };
            if is_terminal(&err)
                || (matches!(err, Error::DbNotFound { .. }) && !self.known_to_exist)
            {
                self.fail(err).await;
                return;
            }
            self.attempt += 1;
            let attempt = self.attempt;
            tracing::info!(db = %self.db, follower = %self.opts.name, attempt, error = %err, "Change feed reconnecting.");
            let error = err.to_string();
            self.status.send_modify(|s| {
                s.state = FollowerState::Backoff { attempt };
                s.caught_up = false;
                s.reconnects += 1;
                s.last_error = Some(error);
                s.error_since.get_or_insert_with(SystemTime::now);
            });
            tokio::time::sleep(self.opts.backoff(attempt)).await;
        }
    }

    async fn fail(&mut self, err: Error) {
        tracing::error!(db = %self.db, follower = %self.opts.name, error = %err, "Change follower stopped.");
        let reason = err.to_string();
        self.status.send_modify(|s| {
            s.last_error = Some(reason.clone());
            s.state = FollowerState::Failed { reason };
            s.caught_up = false;
            s.error_since.get_or_insert_with(SystemTime::now);
        });
        let _ = self.emit(FollowEvent::Failed(err)).await;
    }

    async fn emit(&self, event: FollowEvent) -> Result<(), Halt> {
        let envelope = Envelope { event, incarnation: self.incarnation.clone() };
        self.tx.send(envelope).await.map_err(|_| Halt::Gone)
    }

    fn set_state(&self, state: FollowerState) {
        self.status.send_modify(|s| s.state = state);
    }

    fn heard(&self) {
        self.status.send_modify(|s| s.last_heard_at = Some(Instant::now()));
    }

    /// Whether `since` is a position in the feed (not its start, not `now`).
    fn has_position(&self) -> bool {
        !self.since.is_zero() && self.since != Seq::now()
    }

    async fn resync(&mut self, reason: ResyncReason) -> Result<(), Halt> {
        tracing::warn!(db = %self.db, follower = %self.opts.name, ?reason, "Change follower resyncing.");
        self.since = Seq::zero();
        self.zero_announced = true;
        self.trusted_position = false;
        self.status.send_modify(|s| {
            s.resyncs += 1;
            s.caught_up = false;
            s.last_seq = None;
        });
        self.emit(FollowEvent::Resync { reason }).await
    }

    /// One connection, from the checks to the live feed; it only ever ends with a [`Halt`].
    async fn connection(&mut self) -> Result<std::convert::Infallible, Halt> {
        self.set_state(FollowerState::Connecting);
        self.load_position().await?;
        self.ensure_db().await?;
        self.check_incarnation().await?;
        self.check_rewind().await?;
        if self.since.is_zero() && !self.zero_announced {
            self.zero_announced = true;
            self.emit(FollowEvent::Resync { reason: ResyncReason::Initial }).await?;
        }
        self.catch_up().await?;
        self.live().await
    }

    async fn load_position(&mut self) -> Result<(), Halt> {
        if self.position_loaded {
            return Ok(());
        }
        if let Some(since) = &self.opts.since {
            self.since = since.clone();
        } else if let Some(checkpoints) = &self.opts.checkpoint {
            if let Some(cp) = checkpoints.load(&self.db, &self.opts.name).await? {
                tracing::info!(db = %self.db, follower = %self.opts.name, seq = %cp.seq, "Change follower resuming from its checkpoint.");
                self.since = cp.seq;
                self.incarnation = cp.incarnation.map(Arc::from);
                self.trusted_position = true;
            }
        }
        self.position_loaded = true;
        Ok(())
    }

    async fn ensure_db(&mut self) -> Result<(), Halt> {
        if self.store.db_exists(&self.db).await? {
            self.known_to_exist = true;
            return Ok(());
        }
        if self.known_to_exist {
            self.known_to_exist = false;
            // A recreated database is a new incarnation: its marker is created afresh, without a
            // second resync.
            self.incarnation = None;
            self.resync(ResyncReason::Deleted).await?;
        }
        if self.opts.when_db_missing == WhenDbMissing::Fail {
            return Err(Error::DbNotFound { db: self.db.as_str().to_owned() }.into());
        }
        self.set_state(FollowerState::WaitingForDb);
        let mut polls = 0;
        loop {
            polls += 1;
            tokio::time::sleep(self.opts.backoff(polls).max(self.opts.backoff_base)).await;
            if self.tx.is_closed() {
                return Err(Halt::Gone);
            }
            match self.store.db_exists(&self.db).await {
                Ok(true) => {
                    self.known_to_exist = true;
                    self.set_state(FollowerState::Connecting);
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) if is_terminal(&e) => return Err(e.into()),
                Err(e) => {
                    tracing::debug!(db = %self.db, error = %e, "Still waiting for the database.")
                }
            }
        }
    }

    /// Reads (or creates) the incarnation marker; a vanished or changed marker is a recreation.
    async fn check_incarnation(&mut self) -> Result<(), Halt> {
        let read = |v: Option<Value>| {
            v.and_then(|d| d.get("uuid").and_then(Value::as_str).map(Arc::<str>::from))
        };
        let marker = match read(self.store.get_local(&self.db, INCARNATION_DOC).await?) {
            Some(marker) => marker,
            None => {
                let fresh = uuid::Uuid::new_v4().simple().to_string();
                let body = json!({ "uuid": fresh, "created_by": format!("switchboard follower {}", self.opts.name) });
                match self.store.put_local(&self.db, INCARNATION_DOC, body).await {
                    Ok(()) => {}
                    Err(e @ (Error::Unauthorized { .. } | Error::Forbidden { .. })) => {
                        // Read-only access: recreation is then only seen as a rewind.
                        tracing::warn!(db = %self.db, error = %e, "Cannot write the incarnation marker.");
                        self.incarnation = None;
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
                // Another follower may have written its own marker at the same time: keep what
                // is there now. (Two first-ever followers racing can still end with different
                // markers; the loser then sees a "recreation" and replays once, which is safe.)
                let marker = read(self.store.get_local(&self.db, INCARNATION_DOC).await?)
                    .unwrap_or_else(|| Arc::from(fresh));
                if (self.trusted_position && self.has_position()) || self.incarnation.is_some() {
                    self.incarnation = Some(marker);
                    return self.resync(ResyncReason::Recreated).await;
                }
                marker
            }
        };
        if self.incarnation.as_ref().is_some_and(|known| *known != marker) {
            self.incarnation = Some(marker);
            return self.resync(ResyncReason::Recreated).await;
        }
        self.incarnation = Some(marker);
        Ok(())
    }

    async fn check_rewind(&mut self) -> Result<(), Halt> {
        if !self.has_position() {
            return Ok(());
        }
        let info = self.store.db_info(&self.db).await?;
        if info.update_seq.is_zero() {
            return self.resync(ResyncReason::Rewound).await;
        }
        Ok(())
    }

    async fn catch_up(&mut self) -> Result<(), Halt> {
        self.set_state(FollowerState::CatchingUp);
        let batch = self.opts.catch_up_batch.max(1);
        loop {
            let query = ChangesQuery {
                since: self.since.clone(),
                limit: Some(batch),
                include_docs: self.wire_include_docs(),
                selector: self.wire_selector(),
                fields: self.wire_fields(),
            };
            let page = match self.store.changes(&self.db, &query).await {
                Ok(page) => page,
                Err(e @ Error::BadRequest { .. })
                    if !self.filter_here && query.selector.is_some() =>
                {
                    self.choose_client_filter(e).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.heard();
            let skipped = page.issues.iter().filter(|i| i.action == RowAction::Skipped).count();
            let n = page.results.len() + skipped;
            let mut delivered = false;
            for change in page.results {
                self.clear_issue(&change.id);
                delivered |= self.deliver(change, false).await?;
            }
            for issue in &page.issues {
                self.note_issue(issue);
            }
            self.since = page.last_seq;
            self.trusted_position = true;
            let since = self.since.clone();
            // The status is updated once per page, not per change: a catch-up page is thousands.
            let now = Instant::now();
            self.status.send_modify(|s| {
                s.pending = page.pending;
                s.last_seq = Some(since);
                if delivered {
                    s.last_change_at = Some(now);
                }
            });
            if n < batch || page.pending == Some(0) {
                break;
            }
        }
        self.attempt = 0;
        let last_seq = self.since.clone();
        self.status.send_modify(|s| {
            s.caught_up = true;
            s.pending = Some(0);
            s.error_since = None;
        });
        self.emit(FollowEvent::CaughtUp { last_seq }).await
    }

    /// A row was skipped or repaired: counted, kept as the last issue, put on the board.
    fn note_issue(&self, issue: &RowIssue) {
        match &self.opts.board {
            Some(board) => board.note_issue(issue),
            None => tracing::warn!(issue = %issue, "A document could not be decoded as it is."),
        }
        self.status.send_modify(|s| {
            match issue.action {
                RowAction::Skipped => s.skipped_rows += 1,
                RowAction::Repaired => s.repaired_rows += 1,
            }
            s.last_issue = Some(issue.clone());
        });
    }

    /// A document decoded cleanly: its earlier issue, if any, is over.
    fn clear_issue(&self, id: &str) {
        if let Some(board) = &self.opts.board {
            board.clear_issue(self.db.as_str(), id);
        }
    }

    fn wire_include_docs(&self) -> bool {
        self.opts.include_docs || self.filter_here
    }

    /// The projection asked of the server: none while filtering here (the selector needs whole
    /// documents; [`Runner::deliver`] projects after matching).
    fn wire_fields(&self) -> Option<Fields> {
        if self.filter_here {
            None
        } else {
            self.opts.fields.clone()
        }
    }

    fn wire_selector(&self) -> Option<Value> {
        if self.filter_here {
            None
        } else {
            self.opts.server_selector()
        }
    }

    /// The server refused the combined selector: if it takes the caller's selector alone, the
    /// follower filters here; if not, the selector itself is at fault (terminal).
    async fn choose_client_filter(&mut self, refusal: Error) -> Result<(), Halt> {
        let probe = ChangesQuery {
            since: Seq::now(),
            limit: Some(1),
            include_docs: false,
            selector: self.opts.selector.clone(),
            fields: None,
        };
        match self.store.changes(&self.db, &probe).await {
            Ok(_) => {
                tracing::warn!(db = %self.db, follower = %self.opts.name, error = %refusal,
                    "The server refuses the selector combined with deletions; filtering here.");
                self.filter_here = true;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends one change on (unless the selector, applied here, drops it) and, with
    /// `update_status`, records it in the status. Returns whether it was sent.
    async fn deliver(&mut self, mut change: Change, update_status: bool) -> Result<bool, Halt> {
        if self.filter_here {
            let selector = self.opts.selector.as_ref().expect("filtering here needs a selector");
            let wanted = change.deleted
                || change.doc.as_ref().is_some_and(|doc| crate::selector::matches(selector, doc));
            if !self.opts.include_docs {
                change.doc = None;
            }
            if let (Some(fields), Some(doc)) = (&self.opts.fields, change.doc.as_mut()) {
                fields.apply(doc);
            }
            if !wanted {
                self.since = change.seq;
                self.trusted_position = true;
                return Ok(false);
            }
        }
        self.since = change.seq.clone();
        self.trusted_position = true;
        if !update_status {
            self.emit(FollowEvent::Change(change)).await?;
            return Ok(true);
        }
        let seq = change.seq.clone();
        self.emit(FollowEvent::Change(change)).await?;
        let now = Instant::now();
        self.status.send_modify(|s| {
            s.last_seq = Some(seq);
            s.last_change_at = Some(now);
            s.last_heard_at = Some(now);
        });
        Ok(true)
    }

    async fn live(&mut self) -> Result<std::convert::Infallible, Halt> {
        let dead_after = self.opts.dead_after();
        let query = FeedQuery {
            since: self.since.clone(),
            include_docs: self.wire_include_docs(),
            selector: self.wire_selector(),
            heartbeat: self.opts.heartbeat,
            fields: self.wire_fields(),
        };
        let missed = self.opts.missed_heartbeats;
        let dead = |db: &DbName| Error::Timeout {
            url: format!("change feed of {db} (silent for {dead_after:?}, {missed} heartbeats)"),
        };
        let mut feed =
            match tokio::time::timeout(dead_after, self.store.open_feed(&self.db, &query)).await {
                Ok(feed) => feed?,
                Err(_) => return Err(dead(&self.db).into()),
            };
        self.set_state(FollowerState::Live);
        self.heard();
        let mut deadline = tokio::time::Instant::now() + dead_after;
        let verify_every = self.opts.verify_every.max(Duration::from_millis(10));
        let mut verify =
            tokio::time::interval_at(tokio::time::Instant::now() + verify_every, verify_every);
        verify.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The id of a row just reported as repaired: its change follows and keeps the issue.
        let mut repaired: Option<String> = None;
        loop {
            let item = tokio::select! {
                item = tokio::time::timeout_at(deadline, feed.next()) => item,
                _ = verify.tick() => {
                    // The check shares the heartbeat deadline: a stalled server fails both.
                    match tokio::time::timeout_at(deadline, self.verify_incarnation()).await {
                        Ok(checked) => checked?,
                        Err(_) => return Err(dead(&self.db).into()),
                    }
                    continue;
                }
            };
            deadline = tokio::time::Instant::now() + dead_after;
            match item {
                Err(_) => return Err(dead(&self.db).into()),
                Ok(None) => {
                    return Err(Error::Transport {
                        url: format!("change feed of {}", self.db),
                        message: "connection closed".into(),
                    }
                    .into())
                }
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(Some(Ok(FeedEvent::Heartbeat))) => self.heard(),
                Ok(Some(Ok(FeedEvent::Change(change)))) => {
                    if repaired.take().as_deref() != Some(change.id.as_str()) {
                        self.clear_issue(&change.id);
                    }
                    self.deliver(change, true).await?;
                }
                Ok(Some(Ok(FeedEvent::Issue(issue)))) => {
                    self.heard();
                    self.note_issue(&issue);
                    match issue.action {
                        RowAction::Repaired => repaired = issue.id.clone(),
                        RowAction::Skipped => {
                            // The row is passed: resume after it.
                            if let Some(seq) = issue.seq {
                                self.since = seq.clone();
                                self.trusted_position = true;
                                self.status.send_modify(|s| s.last_seq = Some(seq));
                            }
                        }
                    }
                }
                Ok(Some(Ok(FeedEvent::End { last_seq }))) => {
                    // The server closed the feed (its timeout, or the database was deleted): the
                    // next connection's checks tell which.
                    self.since = last_seq;
                    return Err(Error::Transport {
                        url: format!("change feed of {}", self.db),
                        message: "closed by the server".into(),
                    }
                    .into());
                }
            }
        }
    }

    /// While live: the database must still exist and carry the marker seen at connect time.
    /// Any difference ends the connection; the next one's checks report what happened.
    async fn verify_incarnation(&mut self) -> Result<(), Halt> {
        let marker = self.store.get_local(&self.db, INCARNATION_DOC).await?;
        let marker = marker.as_ref().and_then(|d| d.get("uuid")).and_then(Value::as_str);
        match (&self.incarnation, marker) {
            (Some(known), Some(marker)) if **known == *marker => Ok(()),
            (None, _) => Ok(()),
            _ => Err(Error::Transport {
                url: format!("change feed of {}", self.db),
                message: "the database's incarnation marker changed".into(),
            }
            .into()),
        }
    }
}

/// A stream of database events; see [`watch_dbs`]. Dropping it stops the watcher.
pub struct DbWatch {
    rx: mpsc::Receiver<DbUpdate>,
    task: JoinHandle<()>,
}

impl fmt::Debug for DbWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbWatch").finish_non_exhaustive()
    }
}

impl Stream for DbWatch {
    type Item = DbUpdate;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<DbUpdate>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for DbWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches the databases that pass `filter`: first [`DbUpdateKind::Created`] for each existing
/// one, then `Created` and `Deleted` as they happen (never `Updated`: document writes are the
/// follower's business, and polling could not see them anyway).
///
/// Uses the store's [`db_updates`](crate::DocStore::db_updates) feed when there is one (re-listing
/// after each reconnect, so nothing is missed); otherwise, or when the feed is refused (it is
/// admin-only on CouchDB), lists the databases every `poll_every` and reports the difference.
/// Listing errors are logged and retried; the stream only ends when dropped.
///
/// # Panics
/// Outside a tokio runtime.
pub fn watch_dbs<F>(store: SharedStore, filter: F, poll_every: Duration) -> DbWatch
where
    F: Fn(&DbName) -> bool + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let task = tokio::spawn(async move {
        let _ = run_watch(store, filter, poll_every, tx).await;
    });
    DbWatch { rx, task }
}

async fn run_watch<F>(
    store: SharedStore,
    filter: F,
    poll_every: Duration,
    tx: mpsc::Sender<DbUpdate>,
) -> Result<(), ()>
where
    F: Fn(&DbName) -> bool + Send + Sync + 'static,
{
    let backoff = FollowOptions::new("watch_dbs");
    let mut known = BTreeSet::new();
    let mut use_feed = true;
    let mut attempt = 0;
    let send = |db: DbName, kind: DbUpdateKind| {
        let tx = tx.clone();
        async move { tx.send(DbUpdate { db, kind, seq: None }).await.map_err(drop) }
    };
    loop {
        // Open the feed before listing, so nothing created in between is missed.
        let mut feed = None;
        if use_feed {
            match store.db_updates(&Seq::now()).await {
                Ok(Some(f)) => feed = Some(f),
                Ok(None) => use_feed = false,
                Err(e @ (Error::Unauthorized { .. } | Error::Forbidden { .. })) => {
                    tracing::info!(error = %e, "No _db_updates access; polling the database list.");
                    use_feed = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot open _db_updates; polling this round.")
                }
            }
        }
        match store.list_dbs().await {
            Ok(dbs) => {
                attempt = 0;
                let now: BTreeSet<DbName> = dbs.into_iter().filter(|db| filter(db)).collect();
                for db in now.difference(&known) {
                    send(db.clone(), DbUpdateKind::Created).await?;
                }
                for db in known.difference(&now) {
                    send(db.clone(), DbUpdateKind::Deleted).await?;
                }
                known = now;
            }
            Err(e) => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "Cannot list databases; retrying.");
                tokio::time::sleep(
                    backoff.backoff(attempt).max(poll_every.min(Duration::from_secs(1))),
                )
                .await;
                continue;
            }
        }
        let Some(mut feed) = feed else {
            tokio::time::sleep(poll_every).await;
            continue;
        };
        while let Some(item) = feed.next().await {
            match item {
                Ok(update) if filter(&update.db) => {
                    let news = match update.kind {
                        // A write to a database missed at creation time announces it.
                        DbUpdateKind::Created | DbUpdateKind::Updated => {
                            known.insert(update.db.clone()).then_some(DbUpdateKind::Created)
                        }
                        DbUpdateKind::Deleted => {
                            known.remove(&update.db).then_some(DbUpdateKind::Deleted)
                        }
                    };
                    if let Some(kind) = news {
                        send(update.db, kind).await?;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "_db_updates feed broke; reconnecting.");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff.backoff(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_the_cap() {
        let mut opts = FollowOptions::new("t");
        opts.backoff_base = Duration::from_millis(100);
        opts.backoff_cap = Duration::from_secs(1);
        for attempt in 1..40 {
            let ceiling = Duration::from_millis(100 * (1u64 << (attempt - 1).min(20)))
                .min(Duration::from_secs(1));
            assert!(opts.backoff(attempt) <= ceiling, "attempt {attempt}");
        }
    }

    #[test]
    fn terminal_errors_are_not_retried() {
        assert!(is_terminal(&Error::Unauthorized { reason: "x".into() }));
        assert!(is_terminal(&Error::Forbidden { reason: "x".into() }));
        assert!(is_terminal(&Error::Http { status: 400, error: "bad".into(), reason: "x".into() }));
        assert!(!is_terminal(&Error::Http { status: 503, error: "x".into(), reason: "x".into() }));
        assert!(!is_terminal(&Error::Http { status: 429, error: "x".into(), reason: "x".into() }));
        assert!(!is_terminal(&Error::Timeout { url: "x".into() }));
        assert!(!is_terminal(&Error::DbNotFound { db: "x".into() }));
    }

    #[tokio::test]
    async fn file_checkpoints_round_trip() {
        let dir =
            std::env::temp_dir().join(format!("docstore-cp-{}", uuid::Uuid::new_v4().simple()));
        let file = FileCheckpoints::new(dir.join("sub/checkpoints.json"));
        let db = DbName::new("numbers/+1415").unwrap();
        assert_eq!(file.load(&db, "a").await.unwrap(), None);
        let cp =
            Checkpoint { seq: Seq::from_json(json!("12-g1A")), incarnation: Some("u1".into()) };
        file.save(&db, "a", &cp).await.unwrap();
        file.save(&db, "b", &Checkpoint { seq: Seq::zero(), incarnation: None }).await.unwrap();
        assert_eq!(file.load(&db, "a").await.unwrap(), Some(cp));
        let reopened = FileCheckpoints::new(dir.join("sub/checkpoints.json"));
        assert_eq!(reopened.load(&db, "b").await.unwrap().unwrap().seq, Seq::zero());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

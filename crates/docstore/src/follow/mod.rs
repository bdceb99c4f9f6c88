//! The change follower: a resumable stream of one database's changes over any
//! [`DocStore`](crate::DocStore), and the discovery of databases as they come and go.
//!
//! # How a follower runs
//! Each connection first checks that the database exists and carries the follower's incarnation
//! marker, then catches up with one-shot `_changes` pages (`feed=normal`; a read from the start
//! may be an `_all_docs` snapshot instead, see [`FollowOptions::snapshot_start`]), reports
//! [`FollowEvent::CaughtUp`], and then holds one live feed (`feed=continuous`) with heartbeats.
//! [`Follower::reread`] asks for a read from the start on the live connection.
//! A connection that stays silent for `missed_heartbeats` heartbeats is dead; it, and every
//! transient error, leads to a reconnect after a full-jitter exponential backoff, resuming from the
//! last *delivered* sequence. A new follower starts from [`FollowOptions::since`] (else from 0):
//! nothing is persisted, the consumers rebuild what they derive at start.
//!
//! # Delivery guarantees
//! At least once: a change may be delivered twice (across a reconnect, or because CouchDB replays
//! changes after a shard move). Consumers must be
//! idempotent. Sequences are opaque: never parsed, never compared for order.
//!
//! # Resync
//! [`FollowEvent::Resync`] tells the consumer to forget what it derived from this database: what
//! follows is the database from the start. It is sent when a follower starts from sequence 0, when
//! the database was deleted (then nothing follows until it exists again), recreated (its
//! incarnation marker `_local/switchboard-incarnation` vanished or changed), or rewound (the server
//! reports `update_seq` 0 while the follower stands further on), and when the consumer asks
//! ([`Follower::reread`]). Sequences are not parsed, so only
//! a literal `0` counts: a clustered CouchDB that silently replays from an older position (after a
//! shard move, apache/couchdb#3788) shows as changes delivered again, which consumers tolerate.

mod reflect;
mod runner;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use futures::Stream;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::health::{FeedBoard, Registration};
use crate::store::SharedStore;
use crate::types::{Change, DbName, Fields, RowIssue, Seq};

pub use reflect::{reflect, reflect_fleet, FeedOptions, FleetReply, FleetRequest, Reflect};
use runner::Runner;

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
    /// The follower starts from sequence 0 (no `since`).
    Initial,
    /// The database was deleted.
    Deleted,
    /// The database was deleted and created again since the last connection.
    Recreated,
    /// The server's sequence went back to 0 while the follower stood further on.
    Rewound,
    /// The consumer asked for a read from the start ([`Follower::reread`]).
    Requested,
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
    /// Names the follower in logs and in the incarnation marker it creates.
    pub name: String,
    /// Start after this sequence. `None`: from 0.
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
    /// What to do about a missing database. Default [`WhenDbMissing::Fail`].
    pub when_db_missing: WhenDbMissing,
    /// Changes per catch-up request, and documents per `_all_docs` page of a
    /// [`snapshot_start`](FollowOptions::snapshot_start) read. Default 5000 (fewer round trips;
    /// one page stays a few MB).
    pub catch_up_batch: usize,
    /// A read from the start (the first one from 0, the one after each resync, a
    /// [`Follower::reread`]) is a snapshot instead of a `_changes` replay from 0: the database's
    /// `update_seq` is noted first, its current documents are read through `_all_docs` (the
    /// selector and the field projection applied here, design documents included as in the feed,
    /// deleted documents left out: the consumer has just been told to forget everything), each
    /// delivered as a change at the noted sequence, and the follower goes on from there. A change
    /// written between the noted sequence and the read is delivered again by the feed, so
    /// consumers see it twice (at-least-once, as always). Every other catch-up reads `_changes`.
    /// Default `false` (a raw follower replays `_changes`, tombstones included); [`reflect`] sets
    /// it.
    pub snapshot_start: bool,
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
            when_db_missing: WhenDbMissing::Fail,
            catch_up_batch: 5000,
            snapshot_start: false,
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
            .field("when_db_missing", &self.when_db_missing)
            .field("catch_up_batch", &self.catch_up_batch)
            .field("snapshot_start", &self.snapshot_start)
            .field("fields", &self.fields)
            .field("verify_every", &self.verify_every)
            .field("board", &self.board.is_some())
            .finish()
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
}

/// A cheap, cloneable view of a follower's [`FollowerStatus`].
#[derive(Debug, Clone)]
pub struct StatusHandle(tokio::sync::watch::Receiver<FollowerStatus>);

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

/// A live, resumable stream of one database's changes; see the module docs. Dropping it stops
/// the follower.
pub struct Follower {
    rx: mpsc::Receiver<FollowEvent>,
    status: StatusHandle,
    /// Wakes the runner for a read from the start ([`Follower::reread`]).
    reread: Arc<Notify>,
    db: DbName,
    name: String,
    task: JoinHandle<()>,
    /// On the options' board while the follower lives.
    _board: Option<Registration>,
}

impl Follower {
    /// The follower's status handle.
    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    /// Asks for a read from the start on the current connection: once the follower is live, it
    /// sends [`FollowEvent::Resync`] with [`ResyncReason::Requested`], reads the database again
    /// (a snapshot with [`FollowOptions::snapshot_start`], else `_changes` from 0), reports
    /// [`FollowEvent::CaughtUp`] and goes on live, without reconnecting or repeating the
    /// connection's checks. Requests made before that read starts are served by it.
    pub fn reread(&self) {
        self.reread.notify_one();
    }
}

impl fmt::Debug for Follower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follower").field("db", &self.db).field("name", &self.name).finish()
    }
}

impl Stream for Follower {
    type Item = FollowEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FollowEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Follows `db` on `store`; see the module docs.
///
/// # Panics
/// Outside a tokio runtime (the follower runs on spawned tasks).
pub fn follow(store: SharedStore, db: DbName, opts: FollowOptions) -> Follower {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (status_tx, status_rx) = tokio::sync::watch::channel(FollowerStatus::new());
    let name = opts.name.clone();
    let status = StatusHandle(status_rx);
    let registration = opts.board.as_ref().map(|board| board.register(db.clone(), status.clone()));
    let reread = Arc::new(Notify::new());
    let runner = Runner {
        store,
        db: db.clone(),
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
        from_start: false,
        reread: reread.clone(),
    };
    let task = tokio::spawn(runner.run());
    Follower { rx, status, reread, db, name, task, _board: registration }
}

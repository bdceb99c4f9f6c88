//! One follower's task: a connection's checks, the catch-up, the live feed, and the reconnects
//! in between (see the module docs of [`crate::follow`]).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify};

use super::{FollowEvent, FollowOptions, FollowerState, FollowerStatus, ResyncReason};
use super::{WhenDbMissing, INCARNATION_DOC};
use crate::error::{Error, Result};
use crate::store::SharedStore;
use crate::types::RowAction;
use crate::types::{AllDocsPage, Change, ChangesQuery, DbName, FeedEvent, FeedQuery, Fields};
use crate::types::{RowIssue, Seq};

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

pub(super) struct Runner {
    pub(super) store: SharedStore,
    pub(super) db: DbName,
    pub(super) opts: FollowOptions,
    pub(super) tx: mpsc::Sender<FollowEvent>,
    pub(super) status: watch::Sender<FollowerStatus>,
    /// Resume after this (the last delivered sequence).
    pub(super) since: Seq,
    pub(super) position_loaded: bool,
    /// `since` came from this database's feed (not from the caller's
    /// `since`), so a vanished incarnation marker means the database was recreated.
    pub(super) trusted_position: bool,
    /// A resync (or an initial one) for `since = 0` has been sent.
    pub(super) zero_announced: bool,
    pub(super) known_to_exist: bool,
    pub(super) incarnation: Option<Arc<str>>,
    /// Consecutive failures.
    pub(super) attempt: u32,
    /// The selector is applied here, not by the server (see [`FollowOptions::selector`]).
    pub(super) filter_here: bool,
    /// A resync was sent and the read from the start it announced is not complete yet.
    pub(super) from_start: bool,
    /// Notified by [`super::Follower::reread`].
    pub(super) reread: Arc<Notify>,
}

impl Runner {
    pub(super) async fn run(mut self) {
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
        self.tx.send(event).await.map_err(|_| Halt::Gone)
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
        self.from_start = true;
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
            self.from_start = true;
            self.emit(FollowEvent::Resync { reason: ResyncReason::Initial }).await?;
        }
        loop {
            self.catch_up().await?;
            // The live feed ends (without an error) only for a read from the start, on this
            // connection: its checks still hold.
            self.live().await?;
            self.resync(ResyncReason::Requested).await?;
        }
    }

    async fn load_position(&mut self) -> Result<(), Halt> {
        if self.position_loaded {
            return Ok(());
        }
        if let Some(since) = &self.opts.since {
            self.since = since.clone();
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
        if self.opts.snapshot_start && self.from_start {
            self.read_snapshot().await?;
        } else {
            self.read_changes().await?;
        }
        self.from_start = false;
        self.attempt = 0;
        let last_seq = self.since.clone();
        self.status.send_modify(|s| {
            s.caught_up = true;
            s.pending = Some(0);
            s.error_since = None;
        });
        self.emit(FollowEvent::CaughtUp { last_seq }).await
    }

    /// A read from the start as a snapshot (see [`FollowOptions::snapshot_start`]): the whole
    /// read first, then its delivery, so that a read that fails half-way delivers nothing and
    /// is simply done again.
    async fn read_snapshot(&mut self) -> Result<(), Halt> {
        let (rows, last_seq) = {
            let this = &*self;
            let on_page = |page: &AllDocsPage| {
                this.heard();
                for row in &page.rows {
                    if !page.issues.iter().any(|i| i.id.as_deref() == Some(row.id.as_str())) {
                        this.clear_issue(&row.id);
                    }
                }
                for issue in &page.issues {
                    this.note_issue(issue);
                }
            };
            let batch = this.opts.catch_up_batch;
            crate::snapshot::read_all_docs(&*this.store, &this.db, batch, on_page).await?
        };
        let opts = &self.opts;
        let changes = crate::snapshot::as_changes(
            rows,
            &last_seq,
            opts.selector.as_ref(),
            opts.include_docs,
            opts.fields.as_ref(),
        );
        let delivered = !changes.is_empty();
        for change in changes {
            self.emit(FollowEvent::Change(change)).await?;
        }
        self.since = last_seq.clone();
        self.trusted_position = true;
        let now = Instant::now();
        self.status.send_modify(|s| {
            s.last_seq = Some(last_seq);
            if delivered {
                s.last_change_at = Some(now);
            }
        });
        Ok(())
    }

    /// Catches up through one-shot `_changes` pages from `since` to the end of the feed.
    async fn read_changes(&mut self) -> Result<(), Halt> {
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
                return Ok(());
            }
        }
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

    /// Follows the live feed until it fails ([`Halt`]) or a read from the start is asked for
    /// (`Ok`).
    async fn live(&mut self) -> Result<(), Halt> {
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
                _ = self.reread.notified() => return Ok(()),
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
}

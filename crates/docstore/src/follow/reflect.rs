//! Following a database into memory, one way: a consumer says what it keeps ([`Reflect`]) and
//! [`reflect`] drives it from one database's [`follow`](super::follow), or [`reflect_fleet`] from
//! a [`fleet`](crate::fleet) of databases, with the reconnects, resyncs, restarts and shutdown
//! written once. [`FeedOptions`] is the one set of settings every follower runs on.
//!
//! # What a reflection sees
//! [`Reflect::reset`] first (a read from the start: the first one, again after a resync or a
//! deletion, and when the reflection asks for it with [`Reflect::reread`]), then the whole read
//! as one batch ([`Reflect::load`]), then [`Reflect::apply`] for each later change, and
//! [`Reflect::publish`] once the changes delivered together have been applied (spaced by
//! [`Reflect::debounce`]). Nothing is published between a reset and the end of the read that
//! follows it, so readers never see half a database; a deleted database is published empty at
//! once. Changes may come twice (see [`super::follow`]): applying one again must be harmless.
//! A read from the start is the database's current documents through `_all_docs`, read after
//! its `update_seq` was noted, and the feed goes on from that sequence: a document written in
//! between is loaded at its newest revision and then applied again from the feed (whose rows
//! carry the newest document too), so the reflection converges on the database.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use super::{FollowEvent, FollowOptions, FollowerState, ResyncReason, WhenDbMissing};
use crate::fleet::{FleetEvent, FleetOptions, FleetStatus};
use crate::store::SharedStore;
use crate::types::{Change, DbName, Seq};

/// How long a follower that failed for good waits before it starts again.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// The settings every follower of the process runs on (the daemon's `feed.*` settings,
/// `--debounce`, `--discover-every`, `--account-concurrency`). No `Default`:
/// [`FeedOptions::defaults`] documents every value.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// The heartbeat asked of each live change feed (a feed silent for three is reconnected).
    pub heartbeat: Duration,
    /// The first retry of a failed feed or read waits up to this long (full jitter, doubling).
    pub backoff_base: Duration,
    /// No retry waits longer than this: the longest a recovered store waits to be seen.
    pub backoff_cap: Duration,
    /// Build coalescing of the routing tables: a change less than this after the last build of
    /// its table waits until this long after it; a change after a quiet period is built at once.
    pub debounce: Duration,
    /// How often a fleet lists the databases and compares their `update_seq` when the server has
    /// no usable `_db_updates` feed.
    pub poll_every: Duration,
    /// Databases a fleet reads at once (at start, and when many change together).
    pub concurrency: usize,
}

impl FeedOptions {
    /// `heartbeat` 10 s, `backoff_base` 100 ms, `backoff_cap` 60 s, `debounce` 50 ms,
    /// `poll_every` 5 s, `concurrency` 8.
    pub fn defaults() -> FeedOptions {
        FeedOptions {
            heartbeat: Duration::from_secs(10),
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(60),
            debounce: Duration::from_millis(50),
            poll_every: Duration::from_secs(5),
            concurrency: crate::fleet::DEFAULT_CONCURRENCY,
        }
    }

    /// A follower named `name` on these settings (its other fields at their defaults).
    pub fn follow(&self, name: impl Into<String>) -> FollowOptions {
        let mut options = FollowOptions::new(name);
        options.heartbeat = self.heartbeat;
        options.backoff_base = self.backoff_base;
        options.backoff_cap = self.backoff_cap;
        options
    }

    /// A fleet named `name` on these settings (its other fields at their defaults).
    pub fn fleet(&self, name: impl Into<String>) -> FleetOptions {
        let mut options = FleetOptions::new(name);
        options.backoff_base = self.backoff_base;
        options.backoff_cap = self.backoff_cap;
        options.poll_every = self.poll_every;
        options.concurrency = self.concurrency.max(1);
        options
    }
}

impl Default for FeedOptions {
    /// [`FeedOptions::defaults`].
    fn default() -> Self {
        FeedOptions::defaults()
    }
}

/// What a consumer keeps in memory of one database; see the module docs.
pub trait Reflect: Send {
    /// Forgets everything derived from the database: the changes that follow are the database
    /// from its start.
    fn reset(&mut self);

    /// Applies one change; whether what is derived changed.
    fn apply(&mut self, change: Change) -> bool;

    /// Applies the changes of a whole read from the start (after [`Reflect::reset`]), given
    /// together once the read is complete, so that a reflection can derive them as one batch
    /// (in parallel, say); whether what is derived changed. Default: [`Reflect::apply`] each.
    fn load(&mut self, changes: Vec<Change>) -> impl Future<Output = bool> + Send {
        async move {
            let mut changed = false;
            for change in changes {
                changed |= self.apply(change);
            }
            changed
        }
    }

    /// Makes what was applied since the last publication visible to readers. `caught_up`: the
    /// whole database has been read (a database that does not exist is read, and empty).
    fn publish(&mut self, caught_up: bool) -> impl Future<Output = ()> + Send;

    /// Resolves when the consumer wants the database read again from its start (a manual
    /// reload); [`reflect`] then resets it, reads the database whole and publishes, changed or
    /// not. Default: never.
    fn reread(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// Where the read of the database has reached (its `last_seq`, which may lie past the last
    /// change delivered), told before the publication of what was read. Default: nothing.
    fn reached(&mut self, last_seq: &Seq) {
        let _ = last_seq;
    }

    /// The database cannot be read for now: a read from the start is waiting to retry after
    /// `error`, or the follower stopped for good after it and starts again. What was published
    /// stays; a read from the start (and its publication) follows. Default: nothing.
    fn trouble(&mut self, error: &str) {
        let _ = error;
    }

    /// Publications are spaced by this much: a change after a quiet period (nothing published
    /// for this long) is published at once, a change sooner waits until this long after the
    /// last publication, so that changes arriving during a publication coalesce into the next.
    /// Default zero (every burst of changes is published as it comes).
    fn debounce(&self) -> Duration {
        Duration::ZERO
    }
}

/// When a change arriving now is published: at once after a quiet period, else `debounce` after
/// the last publication. The second value says it is at once.
fn due(last_publish: Option<Instant>, debounce: Duration) -> (Instant, bool) {
    let now = Instant::now();
    match last_publish {
        Some(last) if last + debounce > now => (last + debounce, false),
        _ => (now, true),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Keeps `target` a reflection of `db` until `shutdown` (see the module docs): follows the
/// database from its start with `options` (the database is waited for while it does not exist;
/// its name, start, missing-database policy and snapshot reads are set here: each read from the
/// start is the database's current documents through `_all_docs` at the `update_seq` noted
/// before it, then the feed from there, see [`FollowOptions::snapshot_start`]), loads each read
/// from the start as one batch ([`Reflect::load`]), publishes bursts of changes as
/// [`Reflect::debounce`] paces them, reads again from the start when the target asks
/// ([`Reflect::reread`]; on the live connection, else by starting the follower again), tells it when
/// the database cannot be read ([`Reflect::trouble`]), and starts again after a pause when the
/// follower fails for good.
pub async fn reflect(
    store: SharedStore,
    db: DbName,
    mut options: FollowOptions,
    mut target: impl Reflect,
    shutdown: CancellationToken,
) {
    options.since = None;
    options.when_db_missing = WhenDbMissing::Wait;
    options.snapshot_start = true;
    let debounce = target.debounce();
    // Whether the whole database has been published once.
    let mut caught_up = false;
    // A read from the start was asked for (by the target).
    let mut fresh = false;
    let mut last_publish: Option<Instant> = None;
    loop {
        if (fresh || !caught_up) && matches!(store.db_exists(&db).await, Ok(false)) {
            // A missing database is read in full: it is empty until it exists (the follower
            // waits for it).
            target.reset();
            target.publish(true).await;
            last_publish = Some(Instant::now());
            caught_up = true;
        }
        fresh = false;
        let mut follower = super::follow(store.clone(), db.clone(), options.clone());
        let mut status = follower.status().0;
        // Between a resync and the next catch-up: the changes of the replay, loaded at its end.
        let mut replaying = false;
        // A read from the start was asked of the live follower and has not begun yet.
        let mut rereading = false;
        let mut loading: Vec<Change> = Vec::new();
        let mut dirty = false;
        // When the pending publication is due, and whether it was due at once (then a constant
        // stream holds it back for at most `debounce`).
        let mut deadline: Option<Instant> = None;
        let mut immediate = false;
        let failed = loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                event = follower.next() => event,
                _ = sleep_until(deadline), if deadline.is_some() => {
                    deadline = None;
                    dirty = false;
                    target.publish(true).await;
                    last_publish = Some(Instant::now());
                    continue;
                }
                _ = target.reread() => {
                    if follower.status().get().state == FollowerState::Live {
                        // On the live connection: no new connection, no repeated checks.
                        follower.reread();
                        rereading = true;
                        continue;
                    }
                    // Not live (waiting for the database, retrying): start again, with the
                    // missing database published empty at once.
                    fresh = true;
                    break false;
                }
                changed = status.changed(), if replaying || rereading => {
                    if changed.is_ok() {
                        let now = status.borrow_and_update().clone();
                        if let (FollowerState::Backoff { .. }, Some(error)) = (&now.state, &now.last_error) {
                            target.trouble(error);
                        }
                    }
                    continue;
                }
            };
            let mut next = first;
            // Every event already waiting is applied before one publication.
            let stop = loop {
                match next {
                    None => break Some(false),
                    Some(FollowEvent::Failed(err)) => {
                        tracing::warn!(%db, follower = %options.name, error = %err, "The follower stopped; starting again.");
                        target.trouble(&err.to_string());
                        break Some(true);
                    }
                    Some(FollowEvent::Change(change)) if replaying => loading.push(change),
                    Some(FollowEvent::Change(change)) => dirty |= target.apply(change),
                    Some(FollowEvent::CaughtUp { last_seq }) => {
                        target.reached(&last_seq);
                        if replaying || !caught_up {
                            target.load(std::mem::take(&mut loading)).await;
                            // The end of a replay is published at once, even when it found
                            // nothing.
                            dirty = true;
                            deadline = Some(Instant::now());
                            immediate = true;
                        }
                        replaying = false;
                        caught_up = true;
                    }
                    Some(FollowEvent::Resync { reason }) => {
                        tracing::info!(%db, follower = %options.name, ?reason, "Re-reading the database.");
                        target.reset();
                        loading.clear();
                        replaying = true;
                        rereading = false;
                        dirty = false;
                        deadline = None;
                        if reason == ResyncReason::Deleted {
                            // Nothing follows until the database exists again: it is empty.
                            target.publish(caught_up).await;
                            last_publish = Some(Instant::now());
                        }
                    }
                }
                if dirty && caught_up && !replaying && deadline.is_none() {
                    let (at, now) = due(last_publish, debounce);
                    deadline = Some(at);
                    immediate = now;
                }
                // A constant stream must not hold a due publication back for long (without a
                // debounce, everything waiting is applied first).
                let grace = if immediate { debounce } else { Duration::ZERO };
                if !debounce.is_zero() && deadline.is_some_and(|d| d + grace <= Instant::now()) {
                    break None;
                }
                match follower.next().now_or_never() {
                    Some(event) => next = event,
                    None => break None,
                }
            };
            let grace = if immediate { debounce } else { Duration::ZERO };
            if stop.is_none() && deadline.is_some_and(|d| d + grace <= Instant::now()) {
                deadline = None;
                dirty = false;
                target.publish(true).await;
                last_publish = Some(Instant::now());
            }
            if let Some(failed) = stop {
                break failed;
            }
        };
        let pause = if failed { RESTART_PAUSE } else { Duration::ZERO };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Where the answer to a [`FleetRequest`] goes: sent once the reflections are published, or
/// with the first read's error.
pub type FleetReply = tokio::sync::oneshot::Sender<crate::Result<()>>;

/// What a consumer may ask of a running [`reflect_fleet`] between the fleet's events (a manual
/// reload, a table needed at once). Each read is the fleet's ([`Fleet::read_now`]): the whole
/// database, which replaces its reflection (reset, load, published).
///
/// [`Fleet::read_now`]: crate::fleet::Fleet::read_now
pub enum FleetRequest<R> {
    /// Read this database now, even one the fleet has not found yet (then its reflection is
    /// opened); a database that does not exist is an error and changes nothing.
    Reread(DbName, FleetReply),
    /// Read again every database whose reflection passes the test, one after the other; the
    /// answer carries the first error (the others are read all the same).
    RereadEach(fn(&R) -> bool, FleetReply),
}

/// Keeps one [`Reflect`] per database of a [`fleet`](crate::fleet) (the databases of `store`
/// that pass `filter`) until `shutdown` or the fleet stops: `open` makes the reflection of a
/// database the first time it is read (and again when it is created anew), each read of it is
/// applied and published as one burst, and a deleted database is reset, published empty and
/// dropped. `requests` are served before the fleet's next event (a closed channel is simply no
/// more requests). `status` is told the fleet's progress and the number of databases read here
/// (the fleet's status may run ahead of the events still queued) after every event, request and
/// status change.
pub async fn reflect_fleet<R, F>(
    store: SharedStore,
    filter: F,
    options: FleetOptions,
    mut open: impl FnMut(&DbName) -> R + Send,
    mut status: impl FnMut(&FleetStatus, usize) + Send,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<FleetRequest<R>>,
    shutdown: CancellationToken,
) where
    R: Reflect,
    F: Fn(&DbName) -> bool + Send + Sync + 'static,
{
    let mut fleet = crate::fleet::fleet(store, filter, options);
    let mut progress = fleet.status_watch();
    let mut dbs: std::collections::HashMap<DbName, R> = std::collections::HashMap::new();
    let mut asking = true;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            request = requests.recv(), if asking => match request {
                Some(FleetRequest::Reread(db, reply)) => {
                    let _ = reply.send(reread(&fleet, &mut dbs, &mut open, db).await);
                }
                Some(FleetRequest::RereadEach(pick, reply)) => {
                    let picked: Vec<DbName> =
                        dbs.iter().filter(|(_, r)| pick(r)).map(|(db, _)| db.clone()).collect();
                    let mut result = Ok(());
                    for db in picked {
                        result = result.and(reread(&fleet, &mut dbs, &mut open, db).await);
                    }
                    let _ = reply.send(result);
                }
                None => asking = false,
            },
            event = fleet.next() => match event {
                Some(FleetEvent::Loaded { db, changes, last_seq }) => {
                    let target = dbs.entry(db.clone()).or_insert_with(|| open(&db));
                    target.reset();
                    target.load(changes).await;
                    target.reached(&last_seq);
                    target.publish(true).await;
                }
                Some(FleetEvent::Changed { db, changes, last_seq }) => {
                    let target = dbs.entry(db.clone()).or_insert_with(|| open(&db));
                    let mut dirty = false;
                    for change in changes {
                        dirty |= target.apply(change);
                    }
                    target.reached(&last_seq);
                    if dirty {
                        target.publish(true).await;
                    }
                }
                Some(FleetEvent::Gone { db }) => {
                    if let Some(mut target) = dbs.remove(&db) {
                        target.reset();
                        target.publish(false).await;
                    }
                }
                None => return,
            },
            changed = progress.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let now = progress.borrow().clone();
        status(&now, dbs.len());
    }
}

/// Serves one read of a [`FleetRequest`]: the whole of `db`, replacing its reflection.
async fn reread<R: Reflect>(
    fleet: &crate::fleet::Fleet,
    dbs: &mut std::collections::HashMap<DbName, R>,
    open: &mut (impl FnMut(&DbName) -> R + Send),
    db: DbName,
) -> crate::Result<()> {
    let (changes, last_seq) = fleet.read_now(&db).await?;
    let target = dbs.entry(db.clone()).or_insert_with(|| open(&db));
    target.reset();
    target.load(changes).await;
    target.reached(&last_seq);
    target.publish(true).await;
    Ok(())
}

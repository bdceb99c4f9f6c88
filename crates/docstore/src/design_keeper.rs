//! Keeps the design documents of [`crate::design`] in every database that calls for them, for as
//! long as the daemon runs: a database that appears later (a new customer's account database, an
//! `offnet` or a number database deleted and created again) gets them as soon as the database
//! watcher ([`watch_dbs`], the one the reactors use) reports it, and a periodic check puts back
//! one of ours that was removed or edited, or one of Kazoo's that was deleted.
//!
//! The check costs one `_all_docs` request per database when nothing changed: it lists the
//! design documents and compares our documents' revisions with the ones last seen correct.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::task::JoinHandle;

use crate::design::{deploy_known, DesignKind, KnownRevs};
use crate::follow::watch_dbs;
use crate::store::SharedStore;
use crate::types::{DbName, DbUpdateKind};

/// How many databases are checked at once.
const CONCURRENCY: usize = 8;

/// Settings of [`keep`].
#[derive(Debug, Clone, Copy)]
pub struct KeepOptions {
    /// How often the database list is polled when the server has no `_db_updates` feed.
    pub poll_dbs_every: Duration,
    /// How often every known database is checked again.
    pub check_every: Duration,
}

/// The running keeper; dropping it stops it.
pub struct DesignKeeper {
    caught_up: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl fmt::Debug for DesignKeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesignKeeper").field("caught_up", &self.is_caught_up()).finish()
    }
}

impl DesignKeeper {
    /// Whether every database that existed at start has been checked once.
    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }
}

impl Drop for DesignKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts keeping the design documents; see the module documentation.
///
/// # Panics
/// Outside a tokio runtime.
pub fn keep(store: SharedStore, options: KeepOptions) -> DesignKeeper {
    let caught_up = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(run(store, options, caught_up.clone()));
    DesignKeeper { caught_up, task }
}

async fn run(store: SharedStore, options: KeepOptions, caught_up: Arc<AtomicBool>) {
    let mut known: BTreeMap<DbName, KnownRevs> = BTreeMap::new();
    // The initial listing is ours, so that `caught_up` covers every database that exists now.
    let mut attempt = 0u32;
    let initial = loop {
        match store.list_dbs().await {
            Ok(dbs) => break dbs,
            Err(err) => {
                attempt += 1;
                tracing::warn!(error = %err, attempt, "Cannot list databases to deploy design documents; retrying.");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(50)))).await;
            }
        }
    };
    let initial: BTreeSet<DbName> =
        initial.into_iter().filter(|db| DesignKind::for_db(db).is_some()).collect();
    let count = initial.len();
    let failures = check(&store, initial, &mut known).await;
    tracing::info!(databases = count, failures, "design documents checked");
    caught_up.store(true, Ordering::Release);

    let mut watch = watch_dbs(
        store.clone(),
        |db: &DbName| DesignKind::for_db(db).is_some(),
        options.poll_dbs_every,
    );
    let mut timer = tokio::time::interval(options.check_every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer.tick().await;
    loop {
        let mut due = BTreeSet::new();
        tokio::select! {
            update = watch.next() => {
                let Some(update) = update else { return };
                note(update.db, update.kind, &mut due, &mut known);
                // Take the rest of a burst (the watcher's first listing, say) in one round.
                while let Some(Some(update)) = watch.next().now_or_never() {
                    note(update.db, update.kind, &mut due, &mut known);
                }
            }
            _ = timer.tick() => due.extend(known.keys().cloned()),
        }
        if !due.is_empty() {
            check(&store, due, &mut known).await;
        }
    }
}

fn note(
    db: DbName,
    kind: DbUpdateKind,
    due: &mut BTreeSet<DbName>,
    known: &mut BTreeMap<DbName, KnownRevs>,
) {
    match kind {
        DbUpdateKind::Created | DbUpdateKind::Updated => {
            due.insert(db);
        }
        DbUpdateKind::Deleted => {
            due.remove(&db);
            known.remove(&db);
        }
    }
}

/// Deploys into each of `dbs`; returns how many failed (logged; they are tried again at the
/// next check).
async fn check(
    store: &SharedStore,
    dbs: BTreeSet<DbName>,
    known: &mut BTreeMap<DbName, KnownRevs>,
) -> usize {
    let work: Vec<(DbName, DesignKind, KnownRevs)> = dbs
        .into_iter()
        .filter_map(|db| {
            let kind = DesignKind::for_db(&db)?;
            let revs = known.remove(&db).unwrap_or_default();
            Some((db, kind, revs))
        })
        .collect();
    let jobs = work.into_iter().map(|(db, kind, mut revs)| {
        let store = store.clone();
        async move {
            let outcome = deploy_known(store.as_ref(), &db, kind, &mut revs).await;
            (db, revs, outcome)
        }
    });
    let mut results = futures::stream::iter(jobs).buffer_unordered(CONCURRENCY);
    let mut failures = 0;
    while let Some((db, revs, outcome)) = results.next().await {
        match outcome {
            Ok(report) => {
                if !report.written.is_empty() {
                    tracing::info!(db = %db, written = ?report.written, "design documents deployed");
                }
                known.insert(db, revs);
            }
            Err(crate::Error::DbNotFound { .. }) => {}
            Err(err) => {
                failures += 1;
                tracing::warn!(db = %db, error = %err, "cannot deploy design documents");
                known.insert(db, KnownRevs::new());
            }
        }
    }
    failures
}

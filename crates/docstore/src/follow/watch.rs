//! The discovery of databases as they come and go ([`watch_dbs`]).

use std::collections::BTreeSet;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{FollowOptions, CHANNEL_CAPACITY};
use crate::error::Error;
use crate::store::SharedStore;
use crate::types::{DbName, DbUpdate, DbUpdateKind, Seq};

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

//! Keeps the design documents of [`crate::design`] in every database that calls for them, for as
//! long as the daemon runs, from one [`crate::fleet`] of those databases (one `_db_updates`
//! feed, no feed per database, no periodic sweep).
//!
//! The fleet reads only the design documents' changes (a selector on the `_design/` ids;
//! deletions pass too). A database is checked when it is first read — at start, or when it appears later (a new
//! customer's account database, `offnet` or a number database deleted and created again) — and
//! again only when one of its design documents changes or is deleted: a removed or edited one of
//! ours is put back, a deleted one of Kazoo's is created again, an existing one of Kazoo's is
//! never touched. The check itself is done on what the fleet read (no request when everything is
//! in place); only the writes cost requests. Our own writes come back through the fleet and
//! are then found in place.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::task::{JoinHandle, JoinSet};

use crate::design::{to_write, write_all, DesignKind, Seen};
use crate::fleet::{backoff, fleet, FleetEvent, FleetStatus};
use crate::follow::FeedOptions;
use crate::store::SharedStore;
use crate::types::{Change, DbName};

/// How many databases are written to at once (the checks themselves need no request).
const CONCURRENCY: usize = 4;
/// How many databases' design documents are read at once.
const READ_CONCURRENCY: usize = 4;

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
    /// Whether every database that existed at start has been checked once (and written to
    /// where it needed it).
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
pub fn keep(store: SharedStore, options: FeedOptions) -> DesignKeeper {
    let caught_up = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(run(store, options, caught_up.clone()));
    DesignKeeper { caught_up, task }
}

/// The fleet's selector: design documents (deletions of any document pass as well). A range of
/// ids rather than a `$regex`, which PouchDB-based servers refuse inside the fleet's `$or`; under
/// CouchDB's collation the range may also hold a few other ids, which [`seen_in`] drops.
fn design_selector() -> Value {
    json!({"_id": {"$gte": "_design/", "$lt": "_design0"}})
}

async fn run(store: SharedStore, options: FeedOptions, caught_up: Arc<AtomicBool>) {
    let mut fleet_options = options.fleet("design-keeper");
    fleet_options.concurrency = READ_CONCURRENCY;
    fleet_options.selector = Some(design_selector());
    let pauses = (options.backoff_base, options.backoff_cap);
    let mut fleet =
        fleet(store.clone(), |db: &DbName| DesignKind::for_db(db).is_some(), fleet_options);
    let mut status = fleet.status_watch();
    // Databases whose first read has been checked, until every one has (then `None`).
    let mut checked: Option<HashSet<DbName>> = Some(HashSet::new());
    let mut writes: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            event = fleet.next(), if writes.len() < CONCURRENCY => {
                let Some(event) = event else { return };
                if let Some((db, docs)) = on_event(event, checked.as_mut()) {
                    writes.spawn(write_until_done(store.clone(), db, docs, pauses));
                }
            }
            Some(_) = writes.join_next(), if !writes.is_empty() => {}
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        if let Some(seen) = &checked {
            if all_checked(&status.borrow(), seen.len()) && writes.is_empty() {
                tracing::info!(databases = seen.len(), "design documents checked");
                caught_up.store(true, Ordering::Release);
                checked = None;
            }
        }
    }
}

/// Every database the fleet knows has been read and its first read checked here.
fn all_checked(status: &FleetStatus, checked: usize) -> bool {
    status.caught_up() && checked >= status.dbs
}

/// What a fleet event asks of the keeper: the database and the documents to write into it.
fn on_event(
    event: FleetEvent,
    checked: Option<&mut HashSet<DbName>>,
) -> Option<(DbName, Vec<Value>)> {
    let (db, changes, complete) = match event {
        FleetEvent::Loaded { db, changes, .. } => {
            if let Some(checked) = checked {
                checked.insert(db.clone());
            }
            (db, changes, true)
        }
        FleetEvent::Changed { db, changes, .. } => (db, changes, false),
        FleetEvent::Gone { db } => {
            if let Some(checked) = checked {
                checked.remove(&db);
            }
            return None;
        }
    };
    let kind = DesignKind::for_db(&db)?;
    let docs = match to_write(kind, &seen_in(changes), complete) {
        Ok(docs) => docs,
        Err(err) => {
            tracing::error!(%db, error = %err, "cannot render the design documents");
            return None;
        }
    };
    (!docs.is_empty()).then_some((db, docs))
}

/// The design documents among `changes` (the latest change of each wins).
fn seen_in(changes: Vec<Change>) -> BTreeMap<String, Seen> {
    changes
        .into_iter()
        .filter(|change| change.id.starts_with("_design/"))
        .map(|change| {
            let seen = if change.deleted { Seen::Deleted } else { Seen::Live(change.doc) };
            (change.id, seen)
        })
        .collect()
}

/// Writes `docs` into `db`, retrying failures with the backoff until it is done, the database
/// is gone, or the store refuses the write (a `validate_doc_update` of someone else's, say:
/// tried again when a design document of the database changes next).
async fn write_until_done(
    store: SharedStore,
    db: DbName,
    docs: Vec<Value>,
    (backoff_base, backoff_cap): (Duration, Duration),
) {
    let mut attempt = 0u32;
    loop {
        match write_all(store.as_ref(), &db, docs.clone()).await {
            Ok(report) => {
                if !report.written.is_empty() {
                    tracing::info!(db = %db, written = ?report.written, "design documents deployed");
                }
                return;
            }
            Err(crate::Error::DbNotFound { .. }) => return,
            Err(err @ (crate::Error::Forbidden { .. } | crate::Error::Unauthorized { .. })) => {
                tracing::warn!(db = %db, error = %err, "cannot deploy design documents");
                return;
            }
            Err(err) => {
                attempt += 1;
                tracing::warn!(db = %db, error = %err, attempt, "cannot deploy design documents; retrying");
                tokio::time::sleep(backoff(backoff_base, backoff_cap, attempt)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Rev, Seq};

    fn change(id: &str, deleted: bool, doc: Option<Value>) -> Change {
        Change { seq: Seq::zero(), id: id.into(), rev: Rev("1-a".into()), deleted, doc }
    }

    #[test]
    fn a_first_read_writes_what_is_missing_and_a_change_only_what_it_touched() {
        let db = DbName::new("numbers/+1415").unwrap();
        let mut checked = HashSet::new();
        let loaded = FleetEvent::Loaded {
            db: db.clone(),
            changes: vec![change("user", false, None)],
            last_seq: Seq::zero(),
        };
        let (_, docs) = on_event(loaded, Some(&mut checked)).expect("everything is missing");
        assert_eq!(docs.len(), DesignKind::Numbers.documents().unwrap().len());
        assert!(checked.contains(&db));

        // Another document's change (a deletion passes the selector) asks for nothing.
        let other = FleetEvent::Changed {
            db: db.clone(),
            changes: vec![change("user", true, None)],
            last_seq: Seq::zero(),
        };
        assert!(on_event(other, None).is_none());

        // Kazoo's deleted: created again; and only it.
        let deleted = FleetEvent::Changed {
            db: db.clone(),
            changes: vec![change("_design/numbers", true, None)],
            last_seq: Seq::zero(),
        };
        let (_, docs) = on_event(deleted, None).expect("put back");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["_id"], "_design/numbers");

        // Kazoo's edited: left alone.
        let edited = FleetEvent::Changed {
            db: db.clone(),
            changes: vec![change(
                "_design/numbers",
                false,
                Some(json!({"_id": "_design/numbers"})),
            )],
            last_seq: Seq::zero(),
        };
        assert!(on_event(edited, None).is_none());

        let gone = FleetEvent::Gone { db: db.clone() };
        assert!(on_event(gone, Some(&mut checked)).is_none());
        assert!(checked.is_empty());
    }

    #[test]
    fn databases_without_design_documents_are_not_kept() {
        let db = DbName::new("system_config").unwrap();
        let loaded = FleetEvent::Loaded { db, changes: vec![], last_seq: Seq::zero() };
        assert!(on_event(loaded, None).is_none());
    }
}

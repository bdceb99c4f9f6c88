//! Following the number databases into the table: one [`docstore::fleet`], no feed per
//! database.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use docstore::{Change, DbName, Fields, FleetEvent, FleetOptions, SharedStore};
use futures::StreamExt;

use super::index::{parse_doc, Batch, Key, Parsed, Part, Slot, State};
use super::{is_routable_db, InboundOptions, TABLE_FIELDS};

/// Changes per `_changes` page (the fleet's default is 1,000).
pub(super) const CATCH_UP_PAGE: usize = 10_000;

/// Follows every number database with one [`docstore::fleet`] (no feed per database): a
/// database's first read (and a read after it was created anew) is swapped in at once as its
/// partition; later reads are applied as one batch each; a deleted database leaves the table.
pub(super) async fn run(store: SharedStore, state: Arc<State>, opts: InboundOptions) {
    let mut options = FleetOptions::new("inbound");
    options.backoff_base = opts.backoff_base;
    options.backoff_cap = opts.backoff_cap;
    options.poll_every = opts.poll_dbs_every;
    options.board = Some(state.board.clone());
    options.page = CATCH_UP_PAGE;
    options.fields = Some(Fields::new(TABLE_FIELDS.iter().copied()));
    let mut fleet = docstore::fleet(store.clone(), is_routable_db, options);
    let mut status = fleet.status_watch();
    loop {
        tokio::select! {
            event = fleet.next() => match event {
                Some(FleetEvent::Loaded { db, changes, .. }) => {
                    let replace = Part::of_db(db.as_str());
                    let batch = read_changes(&store, &state, &db, changes, replace).await;
                    state.publish(batch);
                    state.dbs.insert(db.as_str().to_owned(), true);
                }
                Some(FleetEvent::Changed { db, changes, .. }) => {
                    let batch = read_changes(&store, &state, &db, changes, None).await;
                    state.publish(batch);
                }
                Some(FleetEvent::Gone { db }) => {
                    state.dbs.remove(db.as_str());
                    state.forget_db(db.as_str());
                }
                None => return,
            },
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let now = status.borrow().clone();
        state.fleet_dbs.store(now.dbs, Ordering::Relaxed);
        // The status may run ahead of the events still queued: caught up once every database
        // the fleet read has been applied here too.
        let applied = state.dbs.len() >= now.dbs;
        state.listed.store(now.caught_up() && applied, Ordering::Release);
        state.notify.notify_waiters();
    }
}

/// One read of a database as one batch (`replace`: it replaces the database's partition).
pub(super) async fn read_changes(
    store: &SharedStore,
    state: &State,
    db: &DbName,
    changes: Vec<Change>,
    replace: Option<Part>,
) -> Batch {
    let mut batch = Batch { changes: Vec::with_capacity(changes.len()), replace };
    for change in changes {
        if let Some(change) = read_change(store, db, change).await {
            batch.changes.push(change);
            state.changes.fetch_add(1, Ordering::Relaxed);
        }
    }
    batch
}

/// What a change row means for the table (`None`: nothing).
pub(super) async fn read_change(
    store: &SharedStore,
    db: &DbName,
    c: Change,
) -> Option<(Key, Slot)> {
    if c.deleted {
        return Key::of(&c.id).map(|key| (key, None));
    }
    let doc = c.doc?;
    match parse_doc(&doc, true) {
        Parsed::Skip => None,
        Parsed::Set(key, slot) => Some((key, slot)),
        Parsed::NeedsWholeDoc(key) => match store.get(db, &c.id).await {
            Ok(Some(whole)) => match parse_doc(&whole, false) {
                Parsed::Set(key, slot) => Some((key, slot)),
                _ => None,
            },
            // Deleted since: its deletion row follows.
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(id = c.id, error = %e, "inbound table: cannot read a 3.22 number document; skipped");
                Some((key, None))
            }
        },
    }
}

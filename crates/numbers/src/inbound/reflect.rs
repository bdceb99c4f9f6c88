//! Following the number databases into the table: one [`docstore::fleet`], no feed per
//! database, driven by [`docstore::reflect_fleet`] with one [`NumberDb`] per database.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use docstore::{Change, DbName, Fields, FleetStatus, Reflect, SharedStore};
use tokio_util::sync::CancellationToken;

use super::index::{parse_doc, Batch, Key, Parsed, Part, Slot, State};
use super::{is_routable_db, InboundOptions, TABLE_FIELDS};

/// Changes per `_changes` page (the fleet's default is 1,000).
pub(super) const CATCH_UP_PAGE: usize = 10_000;

/// Follows every number database with one [`docstore::fleet`] (no feed per database): a
/// database's first read (and a read after it was created anew) is swapped in at once as its
/// partition; later reads are applied as one batch each; a deleted database leaves the table.
pub(super) async fn run(store: SharedStore, state: Arc<State>, opts: InboundOptions) {
    let mut options = opts.fleet("inbound");
    options.board = Some(state.board.clone());
    options.page = CATCH_UP_PAGE;
    options.fields = Some(Fields::new(TABLE_FIELDS.iter().copied()));
    let open = {
        let (store, state) = (store.clone(), state.clone());
        move |db: &DbName| NumberDb {
            store: store.clone(),
            state: state.clone(),
            db: db.clone(),
            part: Part::of_db(db.as_str()),
            rows: Vec::new(),
            replace: false,
        }
    };
    let progress = move |now: &FleetStatus, _read: usize| {
        state.fleet_dbs.store(now.dbs, Ordering::Relaxed);
        // The status may run ahead of the events still queued: caught up once every database
        // the fleet read has been applied here too.
        let applied = state.dbs.len() >= now.dbs;
        state.listed.store(now.caught_up() && applied, Ordering::Release);
        state.notify.notify_waiters();
    };
    // The task is aborted with the table (see `TaskGuard`): nothing else stops it.
    let shutdown = CancellationToken::new();
    // Nothing asks the table for a read: the fleet alone drives it.
    let (_, requests) = tokio::sync::mpsc::unbounded_channel();
    docstore::reflect_fleet(store, is_routable_db, options, open, progress, requests, shutdown)
        .await;
}

/// One change row as the table will apply it.
enum Row {
    /// The number's entry (`None`: removed).
    Ready(Key, Slot),
    /// A 3.22 document to read whole first (its id).
    Whole(Key, String),
}

/// One number database's reflection in the table: the rows of one read, applied as one batch.
pub(super) struct NumberDb {
    store: SharedStore,
    state: Arc<State>,
    db: DbName,
    /// The database's partition.
    part: Option<Part>,
    rows: Vec<Row>,
    /// The next batch replaces the partition (a read from the start).
    replace: bool,
}

impl Reflect for NumberDb {
    fn reset(&mut self) {
        self.rows.clear();
        self.replace = true;
    }

    fn apply(&mut self, c: Change) -> bool {
        let row = if c.deleted {
            Key::of(&c.id).map(|key| Row::Ready(key, None))
        } else {
            match c.doc.as_ref().map(|doc| parse_doc(doc, true)) {
                None | Some(Parsed::Skip) => None,
                Some(Parsed::Set(key, slot)) => Some(Row::Ready(key, slot)),
                Some(Parsed::NeedsWholeDoc(key)) => Some(Row::Whole(key, c.id)),
            }
        };
        row.map(|row| self.rows.push(row)).is_some()
    }

    /// Swaps the read in (`caught_up` is `false` only when the database is gone: its numbers
    /// leave the table).
    async fn publish(&mut self, caught_up: bool) {
        let replace = if std::mem::take(&mut self.replace) { self.part } else { None };
        let rows = std::mem::take(&mut self.rows);
        let mut batch = Batch { changes: Vec::with_capacity(rows.len()), replace };
        for row in rows {
            let change = match row {
                Row::Ready(key, slot) => Some((key, slot)),
                Row::Whole(key, id) => read_whole(&self.store, &self.db, key, &id).await,
            };
            if let Some(change) = change {
                batch.changes.push(change);
                self.state.changes.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.state.publish(batch);
        if caught_up {
            self.state.dbs.insert(self.db.as_str().to_owned(), true);
        } else {
            self.state.dbs.remove(self.db.as_str());
        }
    }
}

/// A 3.22 number document read whole (`None`: nothing for the table).
async fn read_whole(store: &SharedStore, db: &DbName, key: Key, id: &str) -> Option<(Key, Slot)> {
    match store.get(db, id).await {
        Ok(Some(whole)) => match parse_doc(&whole, false) {
            Parsed::Set(key, slot) => Some((key, slot)),
            _ => None,
        },
        // Deleted since: its deletion row follows.
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(id, error = %e, "inbound table: cannot read a 3.22 number document; skipped");
            Some((key, None))
        }
    }
}

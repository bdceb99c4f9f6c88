//! The embedded backend: a [`DocStore`] in one SQLite file, for running without a CouchDB server.
//!
//! It mirrors CouchDB's semantics closely enough that the conformance suite
//! (`tests/conformance.rs`) runs unchanged against both: `N-md5` revisions with compare-and-swap on
//! `_rev`, tombstones that stay in the change feed and may be re-created, a per-database update
//! sequence, `_local` documents outside feeds, `_all_docs` in raw id order, generated 32-hex ids,
//! `_bulk_docs` per-document results, the one-shot and live change feeds (with `filter=_selector`)
//! and a server-wide `_db_updates` stream fed by an in-process bus.
//!
//! What it does not do: JavaScript. Design documents are stored like any document (so `deploy`
//! works and Fauxton-style tools see them), but views answer [`Error::Unsupported`] and
//! `validate_doc_update` functions are not run.
//!
//! Several processes (the daemon and a CLI command) may open the same directory: SQLite's write
//! lock serializes their writes, compare-and-swap holds across them, and live feeds and
//! `db_updates` see another process's writes within about a second (a per-store watcher compares
//! update sequences when SQLite reports a foreign commit).
//!
//! Sequences are strings `"N-instance"` (opaque, like CouchDB 2+'s); a `since` from a database
//! that was deleted and created again replays the new database from the start. All SQLite work runs
//! on blocking threads behind one connection lock, which is also what makes compare-and-swap hold
//! under concurrent writers.

mod sql;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use rusqlite::Connection;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use crate::error::{Error, Result};
use crate::store::{DbUpdateStream, DocStore, FeedStream};
use crate::types::{
    AllDocsPage, AllDocsQuery, BulkItem, ChangesPage, ChangesQuery, DbInfo, DbName, DbUpdate,
    DbUpdateKind, FeedEvent, FeedQuery, Rev, Seq, ViewQuery, ViewRow,
};
use crate::update_log::UpdateLog;

/// The file, inside the data directory, that holds every database of an embedded store.
pub const EMBEDDED_FILE_NAME: &str = "docstore.sqlite3";

/// How many database events the in-process bus buffers for a slow `_db_updates` reader or live feed
/// before it reports that it fell behind.
const BUS_CAPACITY: usize = 1024;

/// How many rows a live feed reads from SQLite per round trip.
const FEED_BATCH: usize = 500;

/// How often a store on a file checks whether another process committed to it (SQLite's
/// `data_version`), to put that process's database events on this process's bus.
const EXTERNAL_POLL: Duration = Duration::from_secs(1);

/// The embedded [`DocStore`]. Cheap to clone; clones share the database and the event bus.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    bus: broadcast::Sender<DbUpdate>,
    /// Each database's latest event, for `db_updates` readers resuming from a `since`. Events
    /// are recorded and put on the bus under this lock, so a reader that takes the backlog and
    /// subscribes under it misses nothing and sees nothing twice.
    log: Mutex<UpdateLog>,
    path: Option<PathBuf>,
    watcher: tokio::sync::OnceCell<()>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.inner.path).finish()
    }
}

impl EmbeddedStore {
    /// Opens (creating it and `dir` if needed) the store in `dir`, file [`EMBEDDED_FILE_NAME`].
    ///
    /// # Errors
    /// [`Error::Embedded`] if the directory cannot be created or the file is not a usable SQLite
    /// database.
    pub fn open(dir: &Path) -> Result<EmbeddedStore> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Embedded(Box::new(e)))?;
        let path = dir.join(EMBEDDED_FILE_NAME);
        let conn = Connection::open(&path).map_err(sql::sql_error)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql::sql_error)?;
        Self::with_connection(conn, Some(path))
    }

    /// A store that lives in memory and vanishes when the last clone is dropped: for tests.
    ///
    /// # Errors
    /// [`Error::Embedded`] if SQLite cannot start.
    pub fn in_memory() -> Result<EmbeddedStore> {
        Self::with_connection(Connection::open_in_memory().map_err(sql::sql_error)?, None)
    }

    fn with_connection(conn: Connection, path: Option<PathBuf>) -> Result<EmbeddedStore> {
        sql::init(&conn)?;
        let (bus, _) = broadcast::channel(BUS_CAPACITY);
        let watcher = tokio::sync::OnceCell::new();
        // The databases there are when the store opens are its first events.
        let mut log = UpdateLog::new();
        for db in sql::list_dbs(&conn)? {
            log.record(&db, DbUpdateKind::Created);
        }
        let log = Mutex::new(log);
        let inner = Inner { conn: Mutex::new(conn), bus, log, path, watcher };
        Ok(EmbeddedStore { inner: Arc::new(inner) })
    }

    /// The SQLite file, `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The default data directory: `$XDG_DATA_HOME/switchboard`, else
    /// `$HOME/.local/share/switchboard`, else `./switchboard-data` (relative to the working
    /// directory) when neither variable is set.
    pub fn default_dir() -> PathBuf {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(xdg) = non_empty("XDG_DATA_HOME") {
            PathBuf::from(xdg).join("switchboard")
        } else if let Some(home) = non_empty("HOME") {
            PathBuf::from(home).join(".local/share/switchboard")
        } else {
            PathBuf::from("switchboard-data")
        }
    }

    /// Runs `f` with the connection on a blocking thread.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock rolled its transaction back: the data is consistent.
            let mut conn = inner.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| Error::Embedded(Box::new(e)))?
    }

    /// Starts, once per store on a file, the task that notices other processes' commits and puts
    /// their database events on the bus. It holds the store weakly and ends when the store is
    /// dropped. The first snapshot is taken before this returns, so nothing committed after it is
    /// missed.
    async fn watch_other_processes(&self) -> Result<()> {
        if self.inner.path.is_none() {
            return Ok(());
        }
        self.inner
            .watcher
            .get_or_try_init(|| async {
                let baseline = self.run(sql::snapshot).await?;
                tokio::spawn(watch_file(Arc::downgrade(&self.inner), baseline));
                Ok::<(), Error>(())
            })
            .await?;
        Ok(())
    }

    /// A `_changes` page without a selector: the rows are read under the connection lock and
    /// decoded after it is released, so that other readers and writers (and the next page of
    /// another follower) do not wait for JSON parsing.
    async fn changes_unfiltered(&self, db: &DbName, query: &ChangesQuery) -> Result<ChangesPage> {
        let (name, since, limit, include_docs) =
            (db.clone(), query.since.clone(), query.limit, query.include_docs);
        let (raw, instance, last_seq, pending) = self
            .run(move |conn| {
                let row = sql::require_db(conn, &name)?;
                let since = sql::resolve_since(&row, &since)?;
                let raw = sql::scan_changes_raw(conn, &row, since, limit, include_docs)?;
                let (last_seq, pending) = if raw.hit_limit {
                    (row.seq(raw.last_scanned), sql::count_after(conn, &row, raw.last_scanned)?)
                } else {
                    (row.seq(row.update_seq.max(since)), 0)
                };
                Ok((raw, row.instance, last_seq, pending))
            })
            .await?;
        let fields = query.fields.clone();
        let scan = tokio::task::spawn_blocking(move || raw.decode(&instance, fields.as_ref()))
            .await
            .map_err(|e| Error::Embedded(Box::new(e)))??;
        Ok(ChangesPage { results: scan.rows, last_seq, pending: Some(pending), issues: Vec::new() })
    }

    fn publish(&self, db: &DbName, kind: DbUpdateKind) {
        let mut log = self.inner.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let update = log.record(db, kind);
        // No subscriber is not an error: nobody is listening.
        let _ = self.inner.bus.send(update);
    }
}

#[async_trait]
impl DocStore for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn list_dbs(&self) -> Result<Vec<DbName>> {
        self.run(|conn| sql::list_dbs(conn)).await
    }

    async fn db_exists(&self, db: &DbName) -> Result<bool> {
        let db = db.clone();
        self.run(move |conn| Ok(sql::db_row(conn, &db)?.is_some())).await
    }

    async fn create_db(&self, db: &DbName) -> Result<()> {
        let name = db.clone();
        self.run(move |conn| sql::create_db(conn, &name)).await?;
        self.publish(db, DbUpdateKind::Created);
        Ok(())
    }

    async fn delete_db(&self, db: &DbName) -> Result<()> {
        let name = db.clone();
        self.run(move |conn| sql::delete_db(conn, &name)).await?;
        self.publish(db, DbUpdateKind::Deleted);
        Ok(())
    }

    async fn db_info(&self, db: &DbName) -> Result<DbInfo> {
        let db = db.clone();
        self.run(move |conn| sql::db_info(conn, &db)).await
    }

    async fn get(&self, db: &DbName, id: &str) -> Result<Option<Value>> {
        let (db, id) = (db.clone(), id.to_owned());
        self.run(move |conn| sql::get(conn, &db, &id)).await
    }

    async fn put(&self, db: &DbName, doc: Value) -> Result<Rev> {
        let mut items = self.bulk_docs(db, vec![doc]).await?;
        match items.pop() {
            Some(item) => item.outcome,
            None => Err(Error::Embedded("a one-document write returned no result".into())),
        }
    }

    async fn delete(&self, db: &DbName, id: &str, rev: &Rev) -> Result<Rev> {
        let (name, id, rev) = (db.clone(), id.to_owned(), rev.clone());
        let new_rev = self.run(move |conn| sql::delete(conn, &name, &id, &rev)).await?;
        self.publish(db, DbUpdateKind::Updated);
        Ok(new_rev)
    }

    async fn bulk_docs(&self, db: &DbName, docs: Vec<Value>) -> Result<Vec<BulkItem>> {
        let name = db.clone();
        let items = self.run(move |conn| sql::write_docs(conn, &name, docs)).await?;
        if items.iter().any(|item| item.outcome.is_ok()) {
            self.publish(db, DbUpdateKind::Updated);
        }
        Ok(items)
    }

    async fn all_docs(&self, db: &DbName, query: &AllDocsQuery) -> Result<AllDocsPage> {
        let (db, query) = (db.clone(), query.clone());
        self.run(move |conn| sql::all_docs(conn, &db, &query)).await
    }

    async fn get_many(&self, db: &DbName, ids: &[String]) -> Result<Vec<Option<Value>>> {
        let (db, ids) = (db.clone(), ids.to_vec());
        self.run(move |conn| sql::get_many(conn, &db, &ids)).await
    }

    async fn changes(&self, db: &DbName, query: &ChangesQuery) -> Result<ChangesPage> {
        check_selector(query.selector.as_ref())?;
        if query.selector.is_none() {
            return self.changes_unfiltered(db, query).await;
        }
        let (db, query) = (db.clone(), query.clone());
        self.run(move |conn| {
            let row = sql::require_db(conn, &db)?;
            let since = sql::resolve_since(&row, &query.since)?;
            let scan = sql::scan_changes(
                conn,
                &row,
                since,
                query.limit,
                query.include_docs,
                query.selector.as_ref(),
                query.fields.as_ref(),
            )?;
            if scan.hit_limit {
                let pending = sql::count_after(conn, &row, scan.last_scanned)?;
                Ok(ChangesPage {
                    results: scan.rows,
                    last_seq: row.seq(scan.last_scanned),
                    pending: Some(pending),
                    issues: Vec::new(),
                })
            } else {
                Ok(ChangesPage {
                    results: scan.rows,
                    last_seq: row.seq(row.update_seq.max(since)),
                    pending: Some(0),
                    issues: Vec::new(),
                })
            }
        })
        .await
    }

    async fn open_feed(&self, db: &DbName, query: &FeedQuery) -> Result<FeedStream> {
        check_selector(query.selector.as_ref())?;
        self.watch_other_processes().await?;
        // Subscribe before reading the backlog, so no write can fall between the two.
        let events = self.inner.bus.subscribe();
        let (name, since) = (db.clone(), query.since.clone());
        let (db_id, instance, start) = self
            .run(move |conn| {
                let row = sql::require_db(conn, &name)?;
                let start = sql::resolve_since(&row, &since)?;
                Ok((row.id, row.instance, start))
            })
            .await?;
        let (tx, rx) = mpsc::channel(64);
        let feed = LiveFeed {
            store: self.clone(),
            db: db.clone(),
            db_id,
            instance,
            include_docs: query.include_docs,
            selector: query.selector.clone(),
            fields: query.fields.clone(),
            heartbeat: query.heartbeat,
        };
        tokio::spawn(feed.run(start, events, tx));
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        })))
    }

    async fn db_updates(&self, since: &Seq) -> Result<Option<DbUpdateStream>> {
        self.watch_other_processes().await?;
        let (backlog, events) = {
            let log = self.inner.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            (log.after(log.position(since)), self.inner.bus.subscribe())
        };
        let live = futures::stream::unfold(events, |mut events| async move {
            match events.recv().await {
                Ok(update) => Some((Ok(update), events)),
                Err(broadcast::error::RecvError::Lagged(n)) => Some((
                    Err(Error::Feed {
                        db: "_db_updates".into(),
                        reason: format!("the reader fell behind and missed {n} database events"),
                    }),
                    events,
                )),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(Some(Box::pin(futures::stream::iter(backlog.into_iter().map(Ok)).chain(live))))
    }

    async fn get_local(&self, db: &DbName, name: &str) -> Result<Option<Value>> {
        let (db, name) = (db.clone(), name.to_owned());
        self.run(move |conn| sql::get_local(conn, &db, &name)).await
    }

    async fn put_local(&self, db: &DbName, name: &str, body: Value) -> Result<()> {
        let (db, name) = (db.clone(), name.to_owned());
        self.run(move |conn| sql::put_local(conn, &db, &name, body)).await
    }

    async fn view(
        &self,
        _db: &DbName,
        _ddoc: &str,
        _view: &str,
        _query: &ViewQuery,
    ) -> Result<Vec<ViewRow>> {
        Err(Error::Unsupported { what: "views", backend: "embedded" })
    }
}

/// A selector must be a JSON object, as CouchDB requires.
fn check_selector(selector: Option<&Value>) -> Result<()> {
    match selector {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(Error::BadRequest { reason: "Selector must be a JSON object".into() }),
    }
}

/// One live feed connection: a task that reads the backlog, then waits on the bus for writes to its
/// database, sending heartbeats while nothing happens. It ends when the reader drops the stream,
/// and ends the stream with [`FeedEvent::End`] when the database is deleted.
struct LiveFeed {
    store: EmbeddedStore,
    db: DbName,
    db_id: i64,
    instance: String,
    include_docs: bool,
    selector: Option<Value>,
    fields: Option<crate::types::Fields>,
    heartbeat: Duration,
}

impl LiveFeed {
    async fn run(
        self,
        mut cursor: i64,
        mut events: broadcast::Receiver<DbUpdate>,
        tx: mpsc::Sender<Result<FeedEvent>>,
    ) {
        let mut heartbeat = (!self.heartbeat.is_zero()).then(|| {
            let mut it = tokio::time::interval_at(
                tokio::time::Instant::now() + self.heartbeat,
                self.heartbeat,
            );
            it.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            it
        });
        loop {
            let (db, db_id, include_docs, selector, fields) = (
                self.db.clone(),
                self.db_id,
                self.include_docs,
                self.selector.clone(),
                self.fields.clone(),
            );
            let scanned = self
                .store
                .run(move |conn| {
                    let Some(row) = sql::db_row(conn, &db)?.filter(|row| row.id == db_id) else {
                        return Ok(None);
                    };
                    let scan = sql::scan_changes(
                        conn,
                        &row,
                        cursor,
                        Some(FEED_BATCH),
                        include_docs,
                        selector.as_ref(),
                        fields.as_ref(),
                    )?;
                    Ok(Some(scan))
                })
                .await;
            let scan = match scanned {
                Ok(Some(found)) => found,
                Ok(None) => {
                    // The database was deleted (or replaced): close like CouchDB does.
                    let last_seq = sql::make_seq(cursor, &self.instance);
                    let _ = tx.send(Ok(FeedEvent::End { last_seq })).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            for change in scan.rows {
                if tx.send(Ok(FeedEvent::Change(change))).await.is_err() {
                    return;
                }
            }
            cursor = scan.last_scanned;
            if scan.hit_limit {
                continue;
            }
            // Caught up: wait for a write to this database, a heartbeat, or the reader leaving.
            loop {
                let tick = async {
                    match heartbeat.as_mut() {
                        Some(it) => {
                            it.tick().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = tx.closed() => return,
                    event = events.recv() => match event {
                        Ok(update) if update.db == self.db => break,
                        Ok(_) => {}
                        // Fell behind the bus: re-read from the cursor, which loses nothing.
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick => {
                        if tx.send(Ok(FeedEvent::Heartbeat)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// The watcher of a store file: every [`EXTERNAL_POLL`], if SQLite says another connection
/// committed (`PRAGMA data_version` moved), compares the databases' update sequences with the last
/// snapshot and publishes the differences. Own writes are already on the bus; when both happen in
/// one interval an own write may be announced twice, which readers tolerate (a feed re-reads from
/// its cursor and finds nothing new).
async fn watch_file(inner: std::sync::Weak<Inner>, mut last: sql::Snapshot) {
    let mut interval = tokio::time::interval(EXTERNAL_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let store = EmbeddedStore { inner };
        let version = last.data_version;
        let next = store
            .run(move |conn| {
                if sql::data_version(conn)? == version {
                    return Ok(None);
                }
                sql::snapshot(conn).map(Some)
            })
            .await;
        match next {
            Ok(Some(next)) => {
                for (db, kind) in sql::Snapshot::diff(&last, &next) {
                    store.publish(&db, kind);
                }
                last = next;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "Cannot check the embedded store file for other writers.")
            }
        }
    }
}

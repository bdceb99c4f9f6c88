//! Live documents: a database shared by several consumers (`accounts`, `system_config`) followed
//! once, its documents kept in memory and published through [`ArcSwap`].
//!
//! [`LiveDocs::spawn`] follows one database from its start (the catch-up reads every document, as
//! `_all_docs` would) and publishes a new [`LiveSnapshot`] after each burst of changes; readers
//! ([`LiveDocs::current`]) load the current snapshot without a lock and never wait for the
//! follower. Until the first catch-up nothing but an empty, not caught up snapshot is published,
//! so no consumer sees half a database; a database that does not exist is published as empty
//! and caught up, and followed once it is created. A resync (database recreated or rewound) keeps the old
//! snapshot published until the replay has caught up; a deleted database publishes an empty one.
//! A follower that fails for good is started again after a pause. The loop is
//! [`crate::reflect`]'s, the one every follower of a single database runs.
//!
//! Consumers derive what they need from a snapshot and key their caches on
//! [`LiveSnapshot::generation`] (or wait on [`LiveDocs::subscribe`]); [`Derived`] is that cache
//! for a value computed from one source.
//!
//! [`SharedDocs`] is the pair every daemon process follows once: `accounts` and `system_config`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{naming, Change, DbName, FeedBoard, FollowOptions, SharedStore};

/// One published state of a live database: its documents by id (design documents left out).
#[derive(Debug, Default)]
pub struct LiveSnapshot {
    docs: BTreeMap<String, Arc<Value>>,
    generation: u64,
    caught_up: bool,
}

impl LiveSnapshot {
    /// The document with this id.
    pub fn get(&self, id: &str) -> Option<&Value> {
        self.docs.get(id).map(|d| &**d)
    }

    /// Every document, in id order.
    pub fn docs(&self) -> impl Iterator<Item = &Value> {
        self.docs.values().map(|d| &**d)
    }

    /// How many documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Bumped by every publication: caches derived from a snapshot compare it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the follower had read the whole database when this was published.
    pub fn is_caught_up(&self) -> bool {
        self.caught_up
    }
}

struct Inner {
    db: DbName,
    current: ArcSwap<LiveSnapshot>,
    generation: watch::Sender<u64>,
    board: FeedBoard,
}

/// A live database; cheap to clone. See the module docs.
#[derive(Clone)]
pub struct LiveDocs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LiveDocs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.inner.current.load();
        f.debug_struct("LiveDocs")
            .field("db", &self.inner.db)
            .field("docs", &current.len())
            .field("generation", &current.generation)
            .finish()
    }
}

impl LiveDocs {
    fn empty(db: DbName) -> LiveDocs {
        LiveDocs {
            inner: Arc::new(Inner {
                db,
                current: ArcSwap::from_pointee(LiveSnapshot::default()),
                generation: watch::channel(0).0,
                board: FeedBoard::new(),
            }),
        }
    }

    /// Follows `db` from its start until `shutdown` (see the module docs). `feed` carries the
    /// heartbeat and reconnect settings; its name, start, documents, board and missing-database
    /// policy are set here (the database is waited for when it does not exist yet).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(
        store: SharedStore,
        db: DbName,
        feed: &FollowOptions,
        shutdown: CancellationToken,
    ) -> LiveDocs {
        let live = LiveDocs::empty(db);
        let mut options = feed.clone();
        options.name = format!("switchboard-live-{}", live.inner.db);
        options.include_docs = true;
        options.selector = None;
        options.fields = None;
        options.board = Some(live.inner.board.clone());
        let reflection = Reflection { live: live.clone(), docs: BTreeMap::new() };
        let db = live.inner.db.clone();
        tokio::spawn(crate::reflect(store, db, options, reflection, shutdown));
        live
    }

    /// A source that never changes, caught up with these documents (one-shot commands, tests).
    pub fn fixed(db: DbName, docs: impl IntoIterator<Item = Value>) -> LiveDocs {
        let live = LiveDocs::empty(db);
        let mut map = BTreeMap::new();
        for doc in docs {
            if let Some(id) = kept_id(&doc) {
                map.insert(id, Arc::new(doc));
            }
        }
        live.publish(map, true);
        live
    }

    /// The database followed.
    pub fn db(&self) -> &DbName {
        &self.inner.db
    }

    /// The current snapshot (a lock-free load).
    pub fn current(&self) -> Arc<LiveSnapshot> {
        self.inner.current.load_full()
    }

    /// Whether the whole database has been read at least once.
    pub fn is_caught_up(&self) -> bool {
        self.inner.current.load().caught_up
    }

    /// The generation counter, bumped on every publication: wait on it, never sleep.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// The follower's health and the documents it could not decode.
    pub fn board(&self) -> &FeedBoard {
        &self.inner.board
    }

    fn publish(&self, docs: BTreeMap<String, Arc<Value>>, caught_up: bool) {
        let generation = self.inner.current.load().generation + 1;
        self.inner.current.store(Arc::new(LiveSnapshot { docs, generation, caught_up }));
        self.inner.generation.send_replace(generation);
    }
}

/// The id a kept document is filed under; `None` for design documents and documents without one.
fn kept_id(doc: &Value) -> Option<String> {
    let id = doc.get("_id")?.as_str()?;
    (!id.is_empty() && !id.starts_with("_design/")).then(|| id.to_owned())
}

/// Applies one change to the working copy; whether it changed anything.
fn apply(docs: &mut BTreeMap<String, Arc<Value>>, change: Change) -> bool {
    if change.id.starts_with("_design/") {
        return false;
    }
    match change.doc.filter(|_| !change.deleted) {
        Some(doc) if kept_id(&doc).as_deref() == Some(change.id.as_str()) => {
            docs.insert(change.id, Arc::new(doc));
            true
        }
        _ => docs.remove(&change.id).is_some(),
    }
}

/// What [`crate::reflect`] keeps for a [`LiveDocs`]: the working copy the next publication
/// holds.
struct Reflection {
    live: LiveDocs,
    docs: BTreeMap<String, Arc<Value>>,
}

impl crate::Reflect for Reflection {
    fn reset(&mut self) {
        self.docs.clear();
    }

    fn apply(&mut self, change: Change) -> bool {
        apply(&mut self.docs, change)
    }

    async fn publish(&mut self, caught_up: bool) {
        self.live.publish(self.docs.clone(), caught_up);
    }
}

/// A value computed from one live source, recomputed at most once per generation (on the first
/// read after a publication). Cheap to clone.
pub struct Derived<T> {
    source: LiveDocs,
    derive: fn(&LiveSnapshot) -> T,
    cached: Arc<ArcSwap<(u64, Arc<T>)>>,
}

impl<T> Clone for Derived<T> {
    fn clone(&self) -> Self {
        Derived { source: self.source.clone(), derive: self.derive, cached: self.cached.clone() }
    }
}

impl<T> std::fmt::Debug for Derived<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Derived").field("source", &self.source).finish_non_exhaustive()
    }
}

impl<T> Derived<T> {
    /// `derive` applied to `source`'s snapshots.
    pub fn new(source: LiveDocs, derive: fn(&LiveSnapshot) -> T) -> Derived<T> {
        let snapshot = source.current();
        let value = Arc::new(derive(&snapshot));
        Derived {
            source,
            derive,
            cached: Arc::new(ArcSwap::from_pointee((snapshot.generation, value))),
        }
    }

    /// The value of the current snapshot.
    pub fn get(&self) -> Arc<T> {
        let cached = self.cached.load();
        let snapshot = self.source.current();
        if cached.0 == snapshot.generation {
            return cached.1.clone();
        }
        let value = Arc::new((self.derive)(&snapshot));
        self.cached.store(Arc::new((snapshot.generation, value.clone())));
        value
    }

    /// The source.
    pub fn source(&self) -> &LiveDocs {
        &self.source
    }
}

/// The shared databases a daemon follows once for all its consumers.
#[derive(Clone, Debug)]
pub struct SharedDocs {
    /// Db `accounts`: the account documents.
    pub accounts: LiveDocs,
    /// Db `system_config`: the system configuration documents (`stepswitch`, `number_manager`,
    /// the carriers' sections, …).
    pub system_config: LiveDocs,
}

impl SharedDocs {
    /// Follows both (see [`LiveDocs::spawn`]).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(store: SharedStore, feed: &FollowOptions, shutdown: CancellationToken) -> Self {
        SharedDocs {
            accounts: LiveDocs::spawn(store.clone(), naming::accounts_db(), feed, shutdown.clone()),
            system_config: LiveDocs::spawn(store, naming::system_config_db(), feed, shutdown),
        }
    }

    /// Fixed documents (one-shot commands, tests).
    pub fn fixed(
        accounts: impl IntoIterator<Item = Value>,
        system_config: impl IntoIterator<Item = Value>,
    ) -> Self {
        SharedDocs {
            accounts: LiveDocs::fixed(naming::accounts_db(), accounts),
            system_config: LiveDocs::fixed(naming::system_config_db(), system_config),
        }
    }

    /// Whether both have been read in full at least once.
    pub fn is_caught_up(&self) -> bool {
        self.accounts.is_caught_up() && self.system_config.is_caught_up()
    }
}

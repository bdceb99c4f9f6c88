//! What the reactor follows: one task per singly followed database: `offnet` and
//! `dedicated_ips`, each a [`docstore::Reflect`] run by [`docstore::reflect`] (read whole and
//! parsed as one batch, then its changes, built on the coalescing timer), and
//! `system_config`/`accounts`, rebuilt from their live copies.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use docstore::naming::{self, AccountId};
use docstore::{DbName, DocStore, FeedBoard, LiveDocs, Seq};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{ScopeInputs, Shared, SourceStatus, DEDICATED_IPS_DB, FOLLOWER_NAME};
use super::{NUMBER_MANAGER_DOC_ID, PAGE};
use crate::{Error, ParsedResource, Proxy, Scope};

/// What a task follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Source {
    Config,
    Accounts,
    Global,
    DedicatedIps,
    Account(AccountId),
}

impl Source {
    pub(super) fn db(&self) -> DbName {
        match self {
            Source::Config => naming::system_config_db(),
            Source::Accounts => naming::accounts_db(),
            Source::Global => naming::offnet_db(),
            Source::DedicatedIps => DbName::new(DEDICATED_IPS_DB).expect("a valid name"),
            Source::Account(id) => id.db_name(),
        }
    }

    pub(super) fn scope(&self) -> Option<Scope> {
        match self {
            Source::Global => Some(Scope::Global),
            Source::Account(id) => Some(Scope::Local { account_id: id.as_str().to_owned() }),
            _ => None,
        }
    }

    /// The part of a kept document the source needs (account docs: `_id`, `_rev`, `pvt_tree`,
    /// `realm`).
    pub(super) fn slim(&self, doc: Value) -> Value {
        match self {
            Source::Accounts => {
                let mut slim = serde_json::Map::new();
                for key in ["_id", "_rev", "pvt_tree", "realm"] {
                    if let Some(value) = doc.get(key) {
                        slim.insert(key.to_owned(), value.clone());
                    }
                }
                Value::Object(slim)
            }
            _ => doc,
        }
    }

    /// The feed selector: account databases hold mostly other documents, so only resources
    /// (and deletions) are sent. A document whose `pvt_type` is edited away from `resource`
    /// is then not seen until the next full read (Kazoo soft-deletes with `pvt_deleted`, which
    /// keeps `pvt_type` and is seen).
    pub(super) fn selector(&self) -> Option<Value> {
        match self {
            Source::Account(_) => Some(serde_json::json!({"pvt_type": "resource"})),
            _ => None,
        }
    }

    /// Whether this source builds a routing table (its documents are resources).
    pub(super) fn is_table(&self) -> bool {
        matches!(self, Source::Global | Source::Account(_))
    }

    /// Whether a document of this source's database is one it keeps.
    pub(super) fn keeps(&self, doc: &Value) -> bool {
        let id = doc.get("_id").and_then(Value::as_str).unwrap_or("");
        match self {
            Source::Config => id == crate::STEPSWITCH_DOC_ID || id == NUMBER_MANAGER_DOC_ID,
            Source::Accounts => !id.starts_with("_design/") && !id.is_empty(),
            Source::DedicatedIps => proxy_of(doc).is_some(),
            Source::Global | Source::Account(_) => crate::ResourceDoc::is_resource(doc),
        }
    }
}

/// A document a source task keeps: the JSON its build reads (config and account documents), or,
/// for a resource, its `_rev` and the document parsed once (a rebuild after one change then
/// re-parses nothing else).
pub(super) enum Kept {
    Json(Value),
    Resource { rev: Option<String>, parsed: Arc<ParsedResource> },
}

impl Kept {
    /// The parsed resources among kept documents, in `_id` order: a table build's input.
    pub(super) fn parsed_resources(docs: &BTreeMap<String, Kept>) -> Vec<Arc<ParsedResource>> {
        docs.values()
            .filter_map(|kept| match kept {
                Kept::Resource { parsed, .. } => Some(parsed.clone()),
                Kept::Json(_) => None,
            })
            .collect()
    }

    pub(super) fn rev(&self) -> Option<&str> {
        match self {
            Kept::Json(doc) => doc.get("_rev").and_then(Value::as_str),
            Kept::Resource { rev, .. } => rev.as_deref(),
        }
    }
}

/// A resource document as a source task keeps it.
pub(super) fn resource(doc: &Value, parsed: ParsedResource) -> Kept {
    let rev = doc.get("_rev").and_then(Value::as_str).map(str::to_owned);
    Kept::Resource { rev, parsed: Arc::new(parsed) }
}

/// A manual reload request; the reply comes after the rebuild.
pub(super) type Reply = oneshot::Sender<Result<(), Error>>;

pub(super) struct SourceHandle {
    pub(super) commands: mpsc::UnboundedSender<Reply>,
}

/// Reads every kept document of a source's database, noting `update_seq` first, and the rows it
/// could not decode on `board`. `Ok((docs, None))` when the database does not exist.
pub(super) async fn read_db(
    store: &dyn DocStore,
    source: &Source,
    board: Option<&FeedBoard>,
) -> Result<(Vec<Value>, Option<Seq>), Error> {
    let db = source.db();
    let read = docstore::read_all_docs(store, &db, PAGE, |page| {
        if let Some(board) = board {
            board.note_page(db.as_str(), page);
        }
    });
    let (rows, seq) = match read.await {
        Ok(read) => read,
        Err(docstore::Error::DbNotFound { .. }) => return Ok((Vec::new(), None)),
        Err(err) => return Err(err.into()),
    };
    let docs = rows
        .into_iter()
        .filter_map(|row| row.doc)
        .filter(|d| source.keeps(d))
        .map(|d| source.slim(d))
        .collect();
    Ok((docs, Some(seq)))
}

/// The account's dedicated IPs (`dedicated_ips` docs with `pvt_assigned_to`), in `_id` order.
pub(super) async fn read_proxies(
    store: &dyn DocStore,
    account: &AccountId,
) -> Result<Vec<Proxy>, Error> {
    let (docs, _) = read_db(store, &Source::DedicatedIps, None).await?;
    Ok(proxies_by_account(&docs).remove(account.as_str()).map(|p| p.to_vec()).unwrap_or_default())
}

/// A dedicated IP document's account (`pvt_assigned_to`) and proxy (`ip`, `zone`).
pub(super) fn proxy_of(doc: &Value) -> Option<(&str, Proxy)> {
    let account = doc.get("pvt_assigned_to")?.as_str()?;
    let ip = doc.get("ip")?.as_str()?.to_owned();
    let zone = doc.get("zone").and_then(Value::as_str).unwrap_or("").to_owned();
    Some((account, Proxy { zone, ip }))
}

/// Every account's dedicated IPs, each list in the documents' order (`_id` order as read).
pub(super) fn proxies_by_account(docs: &[Value]) -> HashMap<String, Arc<Vec<Proxy>>> {
    let mut by_account: HashMap<String, Vec<Proxy>> = HashMap::new();
    for (account, proxy) in docs.iter().filter_map(proxy_of) {
        by_account.entry(account.to_owned()).or_default().push(proxy);
    }
    by_account.into_iter().map(|(account, proxies)| (account, Arc::new(proxies))).collect()
}

/// Starts a source's task unless it runs; `replies` are answered after its first build.
pub(super) fn start_source(shared: &Arc<Shared>, source: Source, replies: Vec<Reply>) {
    let mut handles = shared.handles.lock().expect("handles lock");
    if let Some(handle) = handles.get(&source) {
        for reply in replies {
            let _ = handle.commands.send(reply);
        }
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let cancel = shared.shutdown.child_token();
    handles.insert(source.clone(), SourceHandle { commands: tx });
    shared.book.lock().expect("book lock").sources.insert(
        source.clone(),
        SourceStatus {
            db: source.db().to_string(),
            caught_up: false,
            last_error: None,
            error_since: None,
        },
    );
    let task = SourceTask {
        shared: shared.clone(),
        source,
        cancel,
        commands: rx,
        replies,
        docs: BTreeMap::new(),
        last_seq: None,
    };
    tokio::spawn(task.run());
}

pub(super) struct SourceTask {
    pub(super) shared: Arc<Shared>,
    pub(super) source: Source,
    pub(super) cancel: CancellationToken,
    pub(super) commands: mpsc::UnboundedReceiver<Reply>,
    /// Answered after the next build.
    pub(super) replies: Vec<Reply>,
    /// The kept documents by `_id`.
    pub(super) docs: BTreeMap<String, Kept>,
    pub(super) last_seq: Option<Seq>,
}

impl SourceTask {
    pub(super) async fn run(self) {
        let live = match self.source {
            Source::Config => Some(self.shared.live.system_config.clone()),
            Source::Accounts => Some(self.shared.live.accounts.clone()),
            Source::Global | Source::Account(_) | Source::DedicatedIps => None,
        };
        if let Some(live) = live {
            return self.run_live(live).await;
        }
        let mut options = self.shared.options.follow(FOLLOWER_NAME);
        options.selector = self.source.selector();
        options.board = Some(self.shared.board.clone());
        let (store, db, cancel) =
            (self.shared.store.clone(), self.source.db(), self.cancel.clone());
        docstore::reflect(store, db, options, self, cancel).await;
    }

    /// A source read from a live database: rebuilds from each new snapshot whose kept documents
    /// changed (a change burst is gathered for `debounce` first); a manual reload rebuilds from
    /// the current snapshot.
    pub(super) async fn run_live(mut self, live: LiveDocs) {
        let mut generations = live.subscribe();
        let mut reload = false;
        let mut built = false;
        loop {
            let snapshot = live.current();
            if snapshot.is_caught_up() {
                let docs: BTreeMap<String, Kept> = snapshot
                    .docs()
                    .filter(|doc| self.source.keeps(doc))
                    .filter_map(|doc| {
                        let id = doc.get("_id")?.as_str()?.to_owned();
                        Some((id, Kept::Json(self.source.slim(doc.clone()))))
                    })
                    .collect();
                let same = built
                    && docs.len() == self.docs.len()
                    && docs
                        .iter()
                        .zip(&self.docs)
                        .all(|((a, x), (b, y))| a == b && x.rev().is_some() && x.rev() == y.rev());
                if !same || reload {
                    self.docs = docs;
                    self.build().await;
                    built = true;
                }
                reload = false;
            }
            self.set_caught_up(snapshot.is_caught_up());
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                changed = generations.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = tokio::time::sleep(self.shared.options.debounce) => {}
                    }
                }
                reply = self.commands.recv() => match reply {
                    Some(reply) => {
                        self.replies.push(reply);
                        reload = true;
                    }
                    None => return,
                },
            }
        }
    }

    /// Applies one change; whether the derived state changed.
    pub(super) fn apply(&mut self, change: docstore::Change) -> bool {
        self.last_seq = Some(change.seq.clone());
        let keep = !change.deleted && change.doc.as_ref().is_some_and(|d| self.source.keeps(d));
        if keep {
            let doc = self.source.slim(change.doc.expect("checked"));
            let rev = doc.get("_rev").and_then(Value::as_str);
            if rev.is_some() && self.docs.get(&change.id).and_then(Kept::rev) == rev {
                return false;
            }
            let kept = if self.source.is_table() {
                resource(&doc, ParsedResource::parse(&doc))
            } else {
                Kept::Json(doc)
            };
            self.docs.insert(change.id, kept);
            true
        } else {
            self.docs.remove(&change.id).is_some()
        }
    }

    pub(super) async fn build(&mut self) {
        match &self.source {
            Source::Config => self.shared.build_config(&self.json_docs()).await,
            Source::Accounts => self.shared.build_accounts(&self.json_docs()).await,
            Source::DedicatedIps => self.shared.build_proxies(&self.json_docs()).await,
            Source::Global | Source::Account(_) => {
                let scope = self.source.scope().expect("a table scope");
                let docs = Kept::parsed_resources(&self.docs);
                let inputs = ScopeInputs {
                    docs: Arc::new(docs),
                    proxies: Arc::new(Vec::new()),
                    last_seq: self.last_seq.clone(),
                };
                self.shared.build_scope(scope, inputs, &self.cancel).await;
            }
        }
        for reply in self.replies.drain(..) {
            let _ = reply.send(Ok(()));
        }
    }

    /// The kept JSON documents (config and account sources), in `_id` order.
    pub(super) fn json_docs(&self) -> Vec<Value> {
        self.docs
            .values()
            .filter_map(|kept| match kept {
                Kept::Json(doc) => Some(doc.clone()),
                Kept::Resource { .. } => None,
            })
            .collect()
    }

    pub(super) fn set_caught_up(&self, caught_up: bool) {
        self.shared.note_source(&self.source, |s| {
            s.caught_up = caught_up;
            if caught_up {
                s.last_error = None;
            }
        });
    }
}

/// The singly followed resource and dedicated IP databases, kept by [`docstore::reflect`]: a
/// read from the start is parsed as one batch on the blocking pool, each later change on its
/// own; a publication is a build (paced by `debounce`), and a manual reload asks for a read from
/// the start, answered after its build (or with the error that holds it up).
impl docstore::Reflect for SourceTask {
    fn reset(&mut self) {
        self.docs.clear();
        self.last_seq = None;
    }

    fn apply(&mut self, change: docstore::Change) -> bool {
        SourceTask::apply(self, change)
    }

    async fn load(&mut self, changes: Vec<docstore::Change>) -> bool {
        if let Some(last) = changes.last() {
            self.last_seq = Some(last.seq.clone());
        }
        let docs: Vec<Value> = changes
            .into_iter()
            .filter(|change| !change.deleted)
            .filter_map(|change| change.doc)
            .filter(|doc| self.source.keeps(doc))
            .map(|doc| self.source.slim(doc))
            .collect();
        if self.source.is_table() {
            // Parsing a whole database is CPU work: off the async workers, on rayon's pool.
            self.docs.extend(super::accounts::parse(docs).await);
        } else {
            self.docs.extend(docs.into_iter().filter_map(|doc| {
                let id = doc.get("_id")?.as_str()?.to_owned();
                Some((id, Kept::Json(doc)))
            }));
        }
        true
    }

    async fn publish(&mut self, caught_up: bool) {
        self.build().await;
        self.set_caught_up(caught_up);
    }

    async fn reread(&mut self) {
        match self.commands.recv().await {
            Some(reply) => self.replies.push(reply),
            // The routing handle is gone: the task stops with the shutdown.
            None => std::future::pending().await,
        }
    }

    fn trouble(&mut self, error: &str) {
        tracing::warn!(db = %self.source.db(), %error, "Cannot read; the old table stays, retrying.");
        let message = error.to_owned();
        self.shared.note_source(&self.source, |s| {
            s.caught_up = false;
            s.last_error = Some(message);
        });
        for reply in self.replies.drain(..) {
            let _ = reply.send(Err(Error::Unavailable {
                db: self.source.db().to_string(),
                message: error.to_owned(),
            }));
        }
    }

    fn debounce(&self) -> Duration {
        self.shared.options.debounce
    }
}

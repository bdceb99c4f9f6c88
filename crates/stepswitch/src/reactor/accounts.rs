//! The account databases' local tables, all from one [`docstore::fleet`]: no feed per account
//! database. The fleet learns from the server's `_db_updates` which account databases changed and
//! reads just their resource changes, a bounded number at a time; an account database without
//! resources costs nothing once it has been read.
//!
//! Each account database is one [`AccountDb`] (a [`docstore::Reflect`]) driven by
//! [`docstore::reflect_fleet`]. A database's first read (or a manual reload, a
//! [`docstore::FleetRequest`] the reactor sends) replaces its resource documents; each later read
//! is applied and, when a resource changed, the account's table is built at once (changes that
//! arrive meanwhile are read and built next, so there is no debounce wait and a burst still
//! coalesces). The dedicated IPs come from the reactor's one follower of `dedicated_ips` (see
//! [`Shared::proxies_for`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use docstore::naming::{self, AccountId};
use docstore::{Change, DbName, FleetReply, FleetRequest, FleetStatus, Reflect, Seq};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{
    on_blocking_pool, resource, Error, Kept, ParsedResource, ScopeInputs, Shared, Source,
    FOLLOWER_NAME,
};

/// What the reactor asks of the account tables: Kazoo's `reload_resources/1` (re-read one
/// account's database now, answered once its table is live; an error when the database is
/// missing) and part of Kazoo's `flush/0` (re-read every account that has a table, see
/// [`has_table`]).
pub(super) type AccountRequest = FleetRequest<AccountDb>;

/// Runs the account tables until shutdown: one [`AccountDb`] per account database, driven by
/// [`docstore::reflect_fleet`].
pub(super) async fn run(shared: Arc<Shared>, requests: mpsc::UnboundedReceiver<AccountRequest>) {
    // Tables need the config and the dedicated IPs: built before them, they would be built twice.
    let mut config_ready = shared.config_ready.subscribe();
    let mut proxies_ready = shared.proxies_ready.subscribe();
    tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        _ = async {
            let _ = config_ready.wait_for(|ready| *ready).await;
            let _ = proxies_ready.wait_for(|ready| *ready).await;
        } => {}
    }
    let options = &shared.options;
    let mut fleet_options = options.fleet(FOLLOWER_NAME);
    fleet_options.selector = Source::Account(placeholder()).selector();
    fleet_options.board = Some(shared.board.clone());
    // an account's monthly databases (`…-YYYYMM`) are not account databases
    let is_account = |db: &DbName| {
        db.as_str().starts_with(naming::ACCOUNT_PREFIX) && naming::monthly_db_account(db).is_none()
    };
    let open = {
        let shared = shared.clone();
        move |db: &DbName| AccountDb::open(shared.clone(), db)
    };
    let status = {
        let shared = shared.clone();
        move |now: &FleetStatus, read: usize| shared.note_fleet(now.clone(), read)
    };
    let (store, shutdown) = (shared.store.clone(), shared.shutdown.clone());
    docstore::reflect_fleet(store, is_account, fleet_options, open, status, requests, shutdown)
        .await;
}

/// Asks the account tables for a read ([`AccountRequest`]); answers once it is live.
pub(super) async fn ask(
    shared: &Shared,
    request: impl FnOnce(FleetReply) -> AccountRequest,
) -> Result<(), Error> {
    let (tx, rx) = oneshot::channel();
    shared.accounts.send(request(tx)).map_err(|_| Error::Stopped)?;
    rx.await.map_err(|_| Error::Stopped)?.map_err(Error::from)
}

/// Whether an account has a table (resources): what a flush re-reads.
pub(super) fn has_table(account: &AccountDb) -> bool {
    !account.docs.is_empty()
}

/// Any valid account id: [`Source::selector`] is the same for every account.
fn placeholder() -> AccountId {
    AccountId::new("00000000000000000000000000000000").expect("a valid account id")
}

/// One account database's reflection: its resource documents by `_id`, and where its database
/// was last read. A read from the start replaces them; each publication applies what was read
/// and, when a resource changed, builds the account's table at once.
pub(super) struct AccountDb {
    shared: Arc<Shared>,
    db: DbName,
    /// `None`: a database named like an account database that holds no account id (it counts
    /// towards "every account database read" but routes nothing).
    id: Option<AccountId>,
    docs: BTreeMap<String, Kept>,
    last_seq: Option<Seq>,
    /// The changes delivered since the last publication, parsed together then.
    pending: Vec<Change>,
    /// The table must be built at the next publication (it had resources before a reset).
    dirty: bool,
}

impl AccountDb {
    fn open(shared: Arc<Shared>, db: &DbName) -> AccountDb {
        let id = account_of(&shared, db, true);
        AccountDb {
            shared,
            db: db.clone(),
            id,
            docs: BTreeMap::new(),
            last_seq: None,
            pending: Vec::new(),
            dirty: false,
        }
    }

    async fn build(&self, id: &AccountId) {
        let docs = Kept::parsed_resources(&self.docs);
        let inputs = ScopeInputs {
            docs: Arc::new(docs),
            proxies: self.shared.proxies_for(id.as_str()),
            last_seq: self.last_seq.clone(),
        };
        let scope = Source::Account(id.clone()).scope().expect("an account scope");
        self.shared.build_scope(scope, inputs, &self.shared.shutdown).await;
    }
}

impl Reflect for AccountDb {
    fn reset(&mut self) {
        self.dirty = !self.docs.is_empty();
        self.docs.clear();
        self.pending.clear();
    }

    fn apply(&mut self, change: Change) -> bool {
        self.pending.push(change);
        true
    }

    fn reached(&mut self, last_seq: &Seq) {
        self.last_seq = Some(last_seq.clone());
    }

    /// Builds the account's table when a resource changed (or it had resources before a
    /// reset); `caught_up` is `false` only when the database is gone: its table goes too.
    async fn publish(&mut self, caught_up: bool) {
        let pending = std::mem::take(&mut self.pending);
        let Some(id) = self.id.clone() else {
            if !caught_up {
                account_of(&self.shared, &self.db, false);
            }
            return;
        };
        if !caught_up {
            self.docs.clear();
            self.shared.note_loaded(&id, false);
            super::drop_account(&self.shared, &id).await;
            return;
        }
        let changed = apply_all(&mut self.docs, pending).await;
        if std::mem::take(&mut self.dirty) | changed {
            self.build(&id).await;
        }
        self.shared.note_loaded(&id, true);
    }
}

/// The account of an `account/…` database, or `None` for a name that holds no account id, which
/// is reported in the status while the database is `present` (not routed: silence would hide why
/// its routes are missing).
fn account_of(shared: &Shared, db: &DbName, present: bool) -> Option<AccountId> {
    match AccountId::from_db_name(db) {
        Ok(id) => Some(id),
        Err(err) => {
            let mut book = shared.book.lock().expect("book lock");
            if present {
                tracing::warn!(%db, error = %err, "Not an account database name; its resources are not routed.");
                let diagnostic = super::CompileError {
                    resource_id: db.to_string(),
                    field: "db_name".into(),
                    index: None,
                    message: format!("not followed: {err}"),
                };
                book.db_errors.insert(db.to_string(), diagnostic);
            } else {
                book.db_errors.remove(db.as_str());
            }
            None
        }
    }
}

/// Applies changes to an account's documents; whether a resource changed.
async fn apply_all(docs: &mut BTreeMap<String, Kept>, changes: Vec<Change>) -> bool {
    let mut changed = false;
    let mut upserts = Vec::new();
    for change in changes {
        let keep =
            !change.deleted && change.doc.as_ref().is_some_and(crate::ResourceDoc::is_resource);
        if !keep {
            changed |= docs.remove(&change.id).is_some();
            continue;
        }
        let doc = change.doc.expect("checked");
        let rev = doc.get("_rev").and_then(Value::as_str);
        if rev.is_some() && docs.get(&change.id).and_then(Kept::rev) == rev {
            continue;
        }
        upserts.push(doc);
    }
    if upserts.is_empty() {
        return changed;
    }
    for (id, kept) in parse(upserts).await {
        docs.insert(id, kept);
    }
    true
}

/// Parses resource documents (CPU work: on the blocking pool), keyed by `_id`.
pub(super) async fn parse(docs: Vec<Value>) -> BTreeMap<String, Kept> {
    on_blocking_pool(move || {
        let parsed = ParsedResource::parse_all(&docs);
        docs.iter()
            .zip(parsed)
            .filter_map(|(doc, parsed)| {
                let id = doc.get("_id")?.as_str()?.to_owned();
                Some((id, resource(doc, parsed)))
            })
            .collect()
    })
    .await
}

impl Shared {
    /// Notes the fleet's progress for the status; `applied`: the accounts whose first read has
    /// been applied here (the status may run ahead of the events still queued).
    fn note_fleet(&self, mut status: FleetStatus, applied: usize) {
        let mut book = self.book.lock().expect("book lock");
        if status.listed {
            book.discovered = true;
        }
        status.loaded = status.loaded.min(applied);
        // Read once each, even if some are being read again (the design keeper's writes, say).
        let all_read = status.listed && status.loaded == status.dbs;
        if all_read && !book.accounts_loaded_once {
            book.accounts_loaded_once = true;
            self.all_accounts_loaded.store(true, std::sync::atomic::Ordering::Release);
            // Only needed until then.
            self.loaded_accounts.lock().expect("loaded lock").clear();
        }
        book.fleet = Some(status);
    }

    /// Notes that an account's database has been read (or is gone), for
    /// [`super::Routing::ensure_loaded`] during the start.
    fn note_loaded(&self, id: &AccountId, loaded: bool) {
        if self.all_accounts_loaded.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut set = self.loaded_accounts.lock().expect("loaded lock");
        if loaded {
            set.insert(id.as_str().to_owned());
        } else {
            set.remove(id.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_is_a_valid_account() {
        assert_eq!(placeholder().as_str().len(), 32);
    }

    #[tokio::test]
    async fn only_resources_are_kept_and_a_repeated_rev_changes_nothing() {
        let change = |id: &str, doc: Value, deleted: bool| Change {
            seq: Seq::zero(),
            id: id.to_owned(),
            rev: docstore::Rev("1-a".into()),
            deleted,
            doc: Some(doc),
        };
        let resource = serde_json::json!({"_id": "r", "_rev": "1-a", "pvt_type": "resource"});
        let mut docs = BTreeMap::new();
        assert!(apply_all(&mut docs, vec![change("r", resource.clone(), false)]).await);
        let other = serde_json::json!({"_id": "u", "_rev": "1-a", "pvt_type": "user"});
        assert!(!apply_all(&mut docs, vec![change("u", other, false)]).await);
        assert!(!apply_all(&mut docs, vec![change("r", resource.clone(), false)]).await);
        assert_eq!(docs.len(), 1);
        let tombstone = serde_json::json!({"_id": "r", "_rev": "2-b", "_deleted": true});
        assert!(apply_all(&mut docs, vec![change("r", tombstone, true)]).await);
        assert!(docs.is_empty());
    }
}

//! The account databases' local tables, all from one [`docstore::fleet`]: no feed per account
//! database. The fleet learns from the server's `_db_updates` which account databases changed and
//! reads just their resource changes, a bounded number at a time; an account database without
//! resources costs nothing once it has been read.
//!
//! One task owns every account's resource documents. A database's first read (or a manual
//! reload) replaces them; each later read is applied and, when a resource changed, the account's
//! table is built at once (changes that arrive meanwhile are read and built next, so there is
//! no debounce wait and a burst still coalesces). The dedicated IPs come from the reactor's one
//! follower of `dedicated_ips` (see [`Shared::proxies_for`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use docstore::naming::{self, AccountId};
use docstore::{Change, DbName, FleetEvent, FleetStatus, Seq};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{
    on_blocking_pool, read_db, resource, Error, Kept, ParsedResource, Reply, ScopeInputs, Shared,
    Source, FOLLOWER_NAME,
};

/// What the reactor asks of the account task.
pub(super) enum AccountCommand {
    /// Kazoo's `reload_resources/1`: re-read this account's database now, answer once its table
    /// is live (or the database is missing).
    Reload(AccountId, Reply),
    /// Part of Kazoo's `flush/0`: re-read every account that has a table.
    ReloadAll(Reply),
}

/// One account's resource documents by `_id`, and where its database was last read.
#[derive(Default)]
struct Account {
    docs: BTreeMap<String, Kept>,
    last_seq: Option<Seq>,
}

/// Runs the account tables until shutdown.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<AccountCommand>,
) {
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
    let mut fleet = docstore::fleet(shared.store.clone(), is_account, fleet_options);
    let mut status = fleet.status_watch();
    let mut task = AccountTask {
        shared: shared.clone(),
        accounts: HashMap::new(),
        unroutable: std::collections::HashSet::new(),
    };
    loop {
        tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => return,
            // Commands first: a route waiting for its account's table goes before the
            // background load.
            command = commands.recv() => match command {
                Some(AccountCommand::Reload(id, reply)) => {
                    let _ = reply.send(task.reload(&id).await);
                }
                Some(AccountCommand::ReloadAll(reply)) => {
                    let ids: Vec<AccountId> = task
                        .accounts
                        .iter()
                        .filter(|(_, a)| !a.docs.is_empty())
                        .map(|(id, _)| id.clone())
                        .collect();
                    let mut result = Ok(());
                    for id in ids {
                        if let Err(err) = task.reload(&id).await {
                            result = result.and(Err(err));
                        }
                    }
                    let _ = reply.send(result);
                }
                None => return,
            },
            event = fleet.next() => match event {
                Some(event) => task.on_event(event).await,
                None => return,
            },
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let now = status.borrow().clone();
        shared.note_fleet(now, task.accounts.len() + task.unroutable.len());
    }
}

/// Any valid account id: [`Source::selector`] is the same for every account.
fn placeholder() -> AccountId {
    AccountId::new("00000000000000000000000000000000").expect("a valid account id")
}

struct AccountTask {
    shared: Arc<Shared>,
    accounts: HashMap<AccountId, Account>,
    /// Databases named like account databases that hold no account id, read once (they count
    /// towards "every account database read" but route nothing).
    unroutable: std::collections::HashSet<DbName>,
}

impl AccountTask {
    async fn on_event(&mut self, event: FleetEvent) {
        match event {
            FleetEvent::Loaded { db, changes, last_seq } => {
                let Some(id) = account_of(&self.shared, &db, true) else {
                    self.unroutable.insert(db);
                    return;
                };
                let had = self.accounts.remove(&id).is_some_and(|a| !a.docs.is_empty());
                let mut account = Account::default();
                apply_all(&mut account, changes).await;
                account.last_seq = Some(last_seq);
                let has = !account.docs.is_empty();
                self.accounts.insert(id.clone(), account);
                self.shared.note_loaded(&id, true);
                if has || had {
                    self.build(&id).await;
                }
            }
            FleetEvent::Changed { db, changes, last_seq } => {
                let Some(id) = account_of(&self.shared, &db, true) else { return };
                let account = self.accounts.entry(id.clone()).or_default();
                let changed = apply_all(account, changes).await;
                account.last_seq = Some(last_seq);
                if changed {
                    self.build(&id).await;
                }
            }
            FleetEvent::Gone { db } => {
                self.unroutable.remove(&db);
                let Some(id) = account_of(&self.shared, &db, false) else { return };
                self.accounts.remove(&id);
                self.shared.note_loaded(&id, false);
                super::drop_account(&self.shared, &id).await;
            }
        }
    }

    /// Re-reads one account's database in full and builds its table.
    async fn reload(&mut self, id: &AccountId) -> Result<(), Error> {
        let source = Source::Account(id.clone());
        let store = self.shared.store.as_ref();
        let db = id.db_name();
        if !store.db_exists(&db).await? {
            return Err(Error::Store(docstore::Error::DbNotFound { db: db.to_string() }));
        }
        let (docs, seq) = read_db(store, &source, Some(&self.shared.board)).await?;
        self.shared.board.read_ok(db.as_str());
        let kept = parse(docs).await;
        let account = self.accounts.entry(id.clone()).or_default();
        account.docs = kept;
        account.last_seq = seq;
        self.build(id).await;
        self.shared.note_loaded(id, true);
        Ok(())
    }

    async fn build(&self, id: &AccountId) {
        let Some(account) = self.accounts.get(id) else { return };
        let docs = Kept::parsed_resources(&account.docs);
        let inputs = ScopeInputs {
            docs: Arc::new(docs),
            proxies: self.shared.proxies_for(id.as_str()),
            last_seq: account.last_seq.clone(),
        };
        let scope = Source::Account(id.clone()).scope().expect("an account scope");
        self.shared.build_scope(scope, inputs, &self.shared.shutdown).await;
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
async fn apply_all(account: &mut Account, changes: Vec<Change>) -> bool {
    let mut changed = false;
    let mut upserts = Vec::new();
    for change in changes {
        let keep =
            !change.deleted && change.doc.as_ref().is_some_and(crate::ResourceDoc::is_resource);
        if !keep {
            changed |= account.docs.remove(&change.id).is_some();
            continue;
        }
        let doc = change.doc.expect("checked");
        let rev = doc.get("_rev").and_then(Value::as_str);
        if rev.is_some() && account.docs.get(&change.id).and_then(Kept::rev) == rev {
            continue;
        }
        upserts.push(doc);
    }
    if upserts.is_empty() {
        return changed;
    }
    for (id, kept) in parse(upserts).await {
        account.docs.insert(id, kept);
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
        let mut account = Account::default();
        assert!(apply_all(&mut account, vec![change("r", resource.clone(), false)]).await);
        let other = serde_json::json!({"_id": "u", "_rev": "1-a", "pvt_type": "user"});
        assert!(!apply_all(&mut account, vec![change("u", other, false)]).await);
        assert!(!apply_all(&mut account, vec![change("r", resource.clone(), false)]).await);
        assert_eq!(account.docs.len(), 1);
        let tombstone = serde_json::json!({"_id": "r", "_rev": "2-b", "_deleted": true});
        assert!(apply_all(&mut account, vec![change("r", tombstone, true)]).await);
        assert!(account.docs.is_empty());
    }
}

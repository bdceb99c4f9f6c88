//! The store layer: number documents read from and written to the document store exactly where
//! Kazoo keeps them (`numbers/+1415`, the owner's account database), every transition decided by
//! [`transition`] and written with `_rev` compare-and-swap.
//!
//! # The CAS/retry protocol (see also [`crate::lifecycle`])
//! [`NumberStore::apply`] reads the number document (migrating older versions on load, §10.3),
//! decides, calls the carrier, and writes the number database first: that write is the
//! linearization point. A 409 there means someone else changed the number since it was read: the
//! store re-reads, decides again against the new state (which may now refuse, cleanly, with the
//! knm error JSON) and retries after a jittered pause ([`docstore::cas_pause`]), at most
//! [`MAX_ATTEMPTS`] times; then it gives up with [`Error::Conflict`] (409 `datastore_conflict`,
//! nothing written by the last attempt) naming the contention. A revision the caller pinned
//! ([`RunOptions::expected_rev`]) that is not the stored one is the same 409, at any attempt.
//! A carrier acquisition made by an attempt that then lost the race is reused by the next
//! attempt, never bought twice.
//!
//! The account-database copies (§7.3) follow the number write. Two writers that both succeeded on
//! the number database one after the other may write their copies in the other order, so after
//! its writes each writer re-reads the number document and, if it moved on, brings the copies it
//! touched in line with the current document (repeating until the document holds still). The
//! copies therefore always converge to what the number database says.
//!
//! A missing number database is created and the design documents of §13 deployed before the save
//! is retried (§1.5). Unchanged documents are not written (§7.2); under `dry_run` nothing is
//! written and no carrier is called (§8.1).
//!
//! [`StoreIndex`] is the [`NumberIndex`] the internal carriers use, answered from `_all_docs`
//! ranges (no JavaScript views, so the embedded store answers too).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use docstore::{AllDocsQuery, DbName, DesignKind, SharedStore};
use e164::{Converters, E164};
use serde_json::{json, Map, Value};

use crate::account::AccountId;
use crate::auth::{AccountInfo, AccountMap, AuthBy};
use crate::carriers::{CarrierCtx, CarrierKind, NumberIndex, Pool, SearchQuery};
use crate::config::Config;
use crate::doc::{gregorian_seconds, number_db, NumberDoc, NumberState};
use crate::error::Error;
use crate::generate::{self, ImportError};
use crate::lifecycle::{
    lookup_account, split_reconcilable, transition, AccountLookup, BulkOutcome, CarrierCall, Ctx,
    Decision, Operation, Write, MAX_ATTEMPTS,
};
use crate::providers::ProviderCall;

/// How many documents go into one `_bulk_docs` request of a generation or import.
pub const BULK_CHUNK: usize = 1000;

/// Now, in Gregorian seconds (Kazoo's timestamps).
pub fn now_gregorian() -> i64 {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    gregorian_seconds(i64::try_from(unix).unwrap_or(i64::MAX))
}

/// A storage failure as the §9 fall-through error (`database_error`, 500).
pub fn db_error(e: &docstore::Error) -> Error {
    Error::Unspecified { reason: "database_error".into(), cause: Some(e.to_string()) }
}

fn db_name(name: &str) -> Result<DbName, Error> {
    DbName::new(name).map_err(|e| db_error(&e))
}

/// Who performs an operation and how (§5.0 options).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `auth_by` (Kazoo's default: `system`).
    pub auth_by: AuthBy,
    /// §8.1: decide everything, write nothing, call no carrier.
    pub dry_run: bool,
    /// §8.2.
    pub mdn_run: bool,
    /// The time of the operation in Gregorian seconds; `None`: the clock.
    pub now: Option<i64>,
    /// The number document's `_rev` the caller based its request on (`If-Match`, a body's
    /// `_rev`): when set, the operation is performed only on that revision, else it fails with
    /// [`Error::Conflict`] (also when a concurrent write moved the number on between attempts).
    pub expected_rev: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            auth_by: AuthBy::System,
            dry_run: false,
            mdn_run: false,
            now: None,
            expected_rev: None,
        }
    }
}

impl RunOptions {
    /// Options for `auth_by`, not a dry run.
    pub fn by(auth_by: AuthBy) -> Self {
        RunOptions { auth_by, ..RunOptions::default() }
    }
}

/// Outcome of writing one document of a bulk generation or import.
#[derive(Debug, Default)]
pub struct BulkReport {
    /// Saved, by number.
    pub saved: Vec<String>,
    /// Refused, by number (or `line N` for rows without a number).
    pub errors: BTreeMap<String, ImportError>,
}

impl BulkReport {
    /// `{success: {n: {}}, errors: {n: {reason, message}}}` (the shape of
    /// `knm_managed:import_numbers/2`).
    pub fn to_json(&self) -> Value {
        let success: Map<String, Value> =
            self.saved.iter().map(|n| (n.clone(), json!({}))).collect();
        let errors: Map<String, Value> = self
            .errors
            .iter()
            .map(|(n, e)| (n.clone(), json!({"reason": e.reason, "message": e.message})))
            .collect();
        json!({"success": success, "errors": errors})
    }
}

/// The `e164_converters` and `classifiers` of `system_config/number_manager`, the ones routing
/// compiles with too; a malformed entry is left out (Kazoo's default where the whole key is
/// malformed) and logged.
fn configured_converters(doc: &Value) -> Converters {
    let (converters, diagnostics) = Converters::from_config(doc);
    for diagnostic in diagnostics {
        tracing::warn!(diagnostic = %diagnostic, "system_config/number_manager");
    }
    converters
}

/// Number documents over a [`SharedStore`]: loads, transitions with CAS and retry, bulk writes.
/// Cheap to clone; safe to share between tasks and to run in several processes at once.
#[derive(Clone)]
pub struct NumberStore {
    store: SharedStore,
    config: Arc<Config>,
    accounts: Arc<AccountMap>,
    converters: Arc<Converters>,
    carrier_configs: Arc<BTreeMap<CarrierKind, Value>>,
}

impl NumberStore {
    /// A store layer with this config and these accounts (for the §3 predicates).
    pub fn new(store: SharedStore, config: Config, accounts: AccountMap) -> Self {
        NumberStore {
            store,
            config: Arc::new(config),
            accounts: Arc::new(accounts),
            converters: Arc::new(Converters::kazoo_defaults()),
            carrier_configs: Arc::new(BTreeMap::new()),
        }
    }

    /// A store layer configured from the store itself: `system_config/number_manager` (Kazoo's
    /// defaults when missing), every account of the `accounts` database (none when missing),
    /// each carrier's `number_manager.<carrier>` section, and what the feature providers read
    /// (the resellers' `configs_number_manager`, `number_manager.dash_e911`; §12.3).
    ///
    /// # Errors
    /// A storage failure, or a config value of the wrong type.
    pub async fn from_store(store: SharedStore) -> Result<Self, Error> {
        let sys = docstore::naming::system_config_db();
        let (config, converters) = match store.get(&sys, "number_manager").await {
            Ok(Some(doc)) => (Config::from_system_config(&doc)?, configured_converters(&doc)),
            Ok(None) | Err(docstore::Error::DbNotFound { .. }) => {
                (Config::kazoo_defaults(), Converters::kazoo_defaults())
            }
            Err(e) => return Err(db_error(&e)),
        };
        let accounts = load_accounts(&store).await?;
        let mut carrier_configs = BTreeMap::new();
        for kind in CarrierKind::ALL {
            let Some(id) = crate::carriers::config_doc_id(kind) else { continue };
            if let Ok(Some(doc)) = store.get(&sys, &id).await {
                let section = doc.get("default").cloned().unwrap_or(doc);
                carrier_configs.insert(kind, section);
            }
        }
        let config = load_feature_configs(&store, config, &accounts, &carrier_configs).await?;
        let mut me = NumberStore::new(store, config, accounts);
        me.carrier_configs = Arc::new(carrier_configs);
        me.converters = Arc::new(converters);
        Ok(me)
    }

    /// The underlying document store.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// The `number_manager` config in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The accounts the §3 predicates read.
    pub fn accounts(&self) -> &AccountMap {
        &self.accounts
    }

    /// The public JSON of `doc` (§10.2) as `auth_by` sees it: [`NumberDoc::to_public_json`] plus
    /// `_read_only.features_available`, the features that requester may set on this number
    /// (§12.2, with the owner's reseller config and the carriers' sms/mms settings).
    pub fn public_json(&self, doc: &NumberDoc, auth_by: &AuthBy) -> Value {
        let is_admin = crate::auth::is_admin(&*self.accounts, auth_by);
        let available =
            crate::features::available_features_for(doc, &self.config, &*self.accounts, is_admin);
        doc.to_public_json_with_features(&available)
    }

    /// The normalization rules (§1.1).
    pub fn converters(&self) -> &Converters {
        &self.converters
    }

    /// Normalizes and checks one input (§1.1, §1.3).
    ///
    /// # Errors
    /// `not_reconcilable` naming the input.
    pub fn normalize(&self, input: &str) -> Result<E164, Error> {
        let c = &self.converters;
        c.is_reconcilable(input)
            .then(|| c.to_e164(input))
            .flatten()
            .ok_or_else(|| Error::NotReconcilable { number: input.to_owned() })
    }

    /// The [`NumberIndex`] over this store.
    pub fn index(&self) -> StoreIndex {
        StoreIndex { store: self.store.clone() }
    }

    /// Reads the stored document of `number` (migrated on load, §10.3); `None` when there is none.
    ///
    /// # Errors
    /// A storage failure, or a document that cannot be read as a number document.
    pub async fn load(&self, number: &E164) -> Result<Option<NumberDoc>, Error> {
        let Some(db) = number_db(number.as_str()) else {
            return Err(Error::NotReconcilable { number: number.to_string() });
        };
        let db = db_name(&db)?;
        match self.store.get(&db, number.as_str()).await {
            Ok(Some(v)) => NumberDoc::from_json(&v, now_gregorian()).map(Some),
            Ok(None) | Err(docstore::Error::DbNotFound { .. }) => Ok(None),
            Err(e) => Err(db_error(&e)),
        }
    }

    /// Creates a number database when missing and deploys the number design documents (§1.5).
    ///
    /// # Errors
    /// A storage failure.
    pub async fn ensure_number_db(&self, db: &DbName) -> Result<(), Error> {
        let created = self.store.ensure_db(db).await.map_err(|e| db_error(&e))?;
        if created {
            let kind = DesignKind::for_db(db).unwrap_or(DesignKind::Numbers);
            docstore::deploy(&*self.store, db, kind).await.map_err(|e| db_error(&e))?;
        }
        Ok(())
    }

    /// Performs `op` on `number` (§4–§8): read, decide, carrier call, CAS write; on a conflict
    /// re-read and decide again, at most [`MAX_ATTEMPTS`] times (see the module docs). Returns the
    /// decision as performed (its `doc` carries the new `_rev`).
    ///
    /// # Errors
    /// The knm error of the decision, a carrier refusal, a storage failure, or
    /// [`Error::Conflict`] after [`MAX_ATTEMPTS`] lost races or on a stale
    /// [`RunOptions::expected_rev`].
    pub async fn apply(
        &self,
        number: &E164,
        op: &Operation,
        opts: &RunOptions,
    ) -> Result<Decision, Error> {
        let mut acquired: Option<(String, NumberDoc)> = None;
        let mut disconnected: Option<String> = None;
        let mut provided: Vec<(ProviderCall, NumberDoc)> = Vec::new();
        for attempt in 0..MAX_ATTEMPTS {
            docstore::cas_pause(attempt).await;
            let current = self.load(number).await?;
            if let Some(expected) = &opts.expected_rev {
                let stored = current.as_ref().and_then(|d| d.rev.as_deref());
                if stored != Some(expected.as_str()) {
                    return Err(Error::Conflict {
                        id: number.as_str().to_owned(),
                        cause: format!(
                            "the number is at revision {}, the request was made against {expected}",
                            stored.unwrap_or("(none)")
                        ),
                    });
                }
            }
            // The context borrows `dyn Accounts` (not `Sync`): keep it out of the awaits.
            let mut decision = {
                let ctx = Ctx {
                    config: &self.config,
                    accounts: &*self.accounts,
                    auth_by: Some(&opts.auth_by),
                    dry_run: opts.dry_run,
                    mdn_run: opts.mdn_run,
                    now: opts.now.unwrap_or_else(now_gregorian),
                };
                transition(number, current.as_ref(), op, &ctx)?
            };
            if decision.dry_run || decision.is_noop() {
                return Ok(decision);
            }
            let called =
                self.carrier_call(&mut decision, &opts.auth_by, &mut acquired, &mut disconnected);
            if let Err(err) = called.await {
                if let Error::PurchasePending { module, order_id, .. } = &err {
                    self.record_pending_order(number, module, order_id).await;
                }
                return Err(err);
            }
            self.provider_calls(&mut decision, &opts.auth_by, &mut provided).await?;
            match self.perform(&mut decision).await? {
                Performed::Done => return Ok(decision),
                Performed::Conflict => {
                    tracing::debug!(number = %number, op = op.name(), "conflict; re-deciding");
                }
            }
        }
        Err(Error::Conflict {
            id: number.as_str().to_owned(),
            cause: format!(
                "{number} kept changing under {} attempts of {}; nothing was written by the last",
                MAX_ATTEMPTS,
                op.name()
            ),
        })
    }

    /// [`NumberStore::apply`] for many inputs (§5.0): inputs that are not reconcilable fail as
    /// `not_reconcilable` keyed as given, the others are performed one by one, each failure kept
    /// per number.
    pub async fn apply_many<S: AsRef<str>>(
        &self,
        inputs: &[S],
        op: &Operation,
        opts: &RunOptions,
    ) -> BulkOutcome {
        let split = split_reconcilable(inputs, &self.converters);
        let mut out = BulkOutcome { ko: split.ko, ..BulkOutcome::default() };
        for number in split.numbers {
            match self.apply(&number, op, opts).await {
                Ok(d) => {
                    out.ok.insert(number.into_string(), d);
                }
                Err(e) => {
                    out.ko.insert(number.into_string(), e);
                }
            }
        }
        out
    }

    /// §5.10 `lookup_account` from the store: the number document (system auth) and, when there
    /// is none, an open port request holding the number.
    ///
    /// # Errors
    /// `not_found`, `unassigned`, `not_in_service`, `account_disabled`, or a storage failure.
    pub async fn lookup_account(&self, number: &E164) -> Result<AccountLookup, Error> {
        let doc = self.load(number).await?;
        let port_owner = match &doc {
            None if self.config.fetch_account_from_ports => self.port_request_owner(number).await?,
            _ => None,
        };
        let cnam = doc.as_ref().is_none_or(|d| crate::carriers::should_lookup_cnam(&d.module_name));
        let ctx = Ctx::system(&self.config, &*self.accounts, now_gregorian());
        lookup_account(number, doc.as_ref(), port_owner.as_ref(), cnam, &ctx)
    }

    /// The account of an open port request (db `port_requests`, state not `completed` /
    /// `canceled`) whose `numbers` hold `number`.
    async fn port_request_owner(&self, number: &E164) -> Result<Option<AccountId>, Error> {
        let db = db_name("port_requests")?;
        let mut query = AllDocsQuery { include_docs: true, limit: Some(500), ..Default::default() };
        loop {
            let page = match self.store.all_docs(&db, &query).await {
                Ok(p) => p,
                Err(docstore::Error::DbNotFound { .. }) => return Ok(None),
                Err(e) => return Err(db_error(&e)),
            };
            let n = page.rows.len();
            for row in &page.rows {
                let Some(doc) = &row.doc else { continue };
                let open = !matches!(
                    doc.get("pvt_port_state").and_then(Value::as_str),
                    Some("completed" | "canceled")
                );
                let holds = doc.get("numbers").and_then(|n| n.get(number.as_str())).is_some();
                if open && holds {
                    let owner = doc.get("pvt_account_id").and_then(Value::as_str);
                    return Ok(owner.and_then(|o| AccountId::parse(o).ok()));
                }
            }
            match page.rows.last() {
                Some(last) if n == 500 => {
                    query.start_key = Some(last.id.clone());
                    query.skip = 1;
                }
                _ => return Ok(None),
            }
        }
    }

    /// Whether `number` is in an open port request (§5.2 d).
    ///
    /// # Errors
    /// A storage failure.
    pub async fn is_porting(&self, number: &E164) -> Result<bool, Error> {
        Ok(self.port_request_owner(number).await?.is_some())
    }

    fn carrier_ctx<'a>(&'a self, index: &'a StoreIndex, auth_by: &'a AuthBy) -> CarrierCtx<'a> {
        CarrierCtx::new(&self.config, index)
            .with_carrier_configs(&self.carrier_configs)
            .with_auth_by(auth_by)
    }

    /// Records a purchase whose outcome is unknown on the stored number document
    /// (`pvt_carrier_data.pending_order`: order id, module, when), so the next acquire of the
    /// number follows that order. Best effort: a failure is logged, the caller reports the
    /// pending purchase either way.
    async fn record_pending_order(&self, number: &E164, module: &str, order_id: &str) {
        let Some(db) = number_db(number.as_str()).and_then(|db| db_name(&db).ok()) else { return };
        for _ in 0..MAX_ATTEMPTS {
            let mut doc = match self.store.get(&db, number.as_str()).await {
                Ok(Some(doc)) => doc,
                Ok(None) | Err(docstore::Error::DbNotFound { .. }) => {
                    tracing::warn!(number = %number, order_id, "pending purchase not recorded: no number document");
                    return;
                }
                Err(err) => {
                    tracing::warn!(number = %number, order_id, error = %err, "pending purchase not recorded");
                    return;
                }
            };
            let Some(map) = doc.as_object_mut() else { return };
            let data = map.entry("pvt_carrier_data").or_insert_with(|| json!({}));
            let Some(data) = data.as_object_mut() else { return };
            data.insert(
                crate::carriers::PENDING_ORDER.into(),
                json!({"order_id": order_id, "module": module, "since": now_gregorian()}),
            );
            match self.store.put(&db, doc).await {
                Ok(_) => return,
                Err(docstore::Error::Conflict { .. }) => continue,
                Err(err) => {
                    tracing::warn!(number = %number, order_id, error = %err, "pending purchase not recorded");
                    return;
                }
            }
        }
    }

    async fn carrier_call(
        &self,
        decision: &mut Decision,
        auth_by: &AuthBy,
        acquired: &mut Option<(String, NumberDoc)>,
        disconnected: &mut Option<String>,
    ) -> Result<(), Error> {
        let index = self.index();
        let ctx = self.carrier_ctx(&index, auth_by);
        match decision.carrier_call.clone() {
            Some(CarrierCall::Acquire { module }) => {
                let Some(kind) = CarrierKind::from_module(&module) else {
                    tracing::warn!(module, "carrier module not known; acquire skipped (as Kazoo)");
                    return Ok(());
                };
                if let Some((m, got)) = acquired.as_ref().filter(|(m, _)| *m == module) {
                    tracing::debug!(module = m, "reusing the acquisition of an earlier attempt");
                    decision.doc.carrier_data = got.carrier_data.clone();
                    return Ok(());
                }
                let rev = decision.doc.rev.clone();
                let mut doc = kind.acquire(decision.doc.clone(), &ctx).await?;
                doc.rev = rev;
                *acquired = Some((module, doc.clone()));
                decision.doc = doc;
            }
            Some(CarrierCall::Disconnect { module }) => {
                let Some(kind) = CarrierKind::from_module(&module) else {
                    tracing::warn!(
                        module,
                        "carrier module not known; disconnect ignored (as Kazoo)"
                    );
                    return Ok(());
                };
                if disconnected.as_deref() == Some(module.as_str()) {
                    return Ok(());
                }
                let rev = decision.doc.rev.clone();
                let state = decision.doc.state;
                let mut doc = kind.disconnect(decision.doc.clone(), &ctx).await?;
                doc.rev = rev;
                doc.state = state;
                *disconnected = Some(module);
                decision.doc = doc;
            }
            None => {}
        }
        Ok(())
    }

    /// The feature providers' external calls (§12.4), in order, after the carrier call; a call
    /// already made by an earlier attempt is not made again, its outcome is reapplied.
    async fn provider_calls(
        &self,
        decision: &mut Decision,
        auth_by: &AuthBy,
        provided: &mut Vec<(ProviderCall, NumberDoc)>,
    ) -> Result<(), Error> {
        let index = self.index();
        let ctx = self.carrier_ctx(&index, auth_by);
        for call in decision.provider_calls.clone() {
            let rev = decision.doc.rev.clone();
            let mut doc = match provided.iter().find(|(c, _)| *c == call) {
                Some((_, earlier)) => call.reapply(earlier, decision.doc.clone()),
                None => {
                    let done = call.perform(decision.doc.clone(), &ctx).await?;
                    provided.push((call, done.clone()));
                    done
                }
            };
            doc.rev = rev;
            decision.doc = doc;
        }
        Ok(())
    }

    /// Performs the writes of a decision: the number database first (the CAS point), then the
    /// account copies, then their convergence check.
    async fn perform(&self, decision: &mut Decision) -> Result<Performed, Error> {
        let id = decision.doc.id.as_str().to_owned();
        let mut touched: BTreeSet<(AccountId, String)> = BTreeSet::new();
        // The CAS point.
        for write in &decision.writes {
            match write {
                Write::SaveNumber { db } => {
                    let db = db_name(db)?;
                    match self.put_number(&db, decision.doc.to_json()).await? {
                        Some(rev) => decision.doc.rev = Some(rev),
                        None => return Ok(Performed::Conflict),
                    }
                }
                Write::DeleteNumber { db } => {
                    let db = db_name(db)?;
                    let Some(rev) = decision.doc.rev.clone() else { continue };
                    match self.store.delete(&db, &id, &docstore::Rev(rev)).await {
                        Ok(_) => decision.doc.rev = None,
                        Err(docstore::Error::Conflict { .. }) => return Ok(Performed::Conflict),
                        Err(
                            docstore::Error::DocNotFound { .. }
                            | docstore::Error::DbNotFound { .. },
                        ) => return Ok(Performed::Conflict),
                        Err(e) => return Err(db_error(&e)),
                    }
                }
                _ => {}
            }
        }
        for write in &decision.writes {
            match write {
                Write::SaveAccountCopy { account, db } => {
                    touched.insert((account.clone(), db.clone()));
                    self.set_copy(db, &id, Some(&decision.doc), true).await?;
                }
                Write::DeleteAccountCopy { account, db, ignore_missing_db } => {
                    touched.insert((account.clone(), db.clone()));
                    self.set_copy(db, &id, None, *ignore_missing_db).await?;
                }
                _ => {}
            }
        }
        if !touched.is_empty() {
            self.converge_copies(&decision.doc, &touched).await?;
        }
        Ok(Performed::Done)
    }

    /// Writes a number document; `None` on a conflict. A missing database is created (§1.5).
    async fn put_number(&self, db: &DbName, doc: Value) -> Result<Option<String>, Error> {
        for _ in 0..2 {
            match self.store.put(db, doc.clone()).await {
                Ok(rev) => return Ok(Some(rev.0)),
                Err(docstore::Error::Conflict { .. }) => return Ok(None),
                Err(docstore::Error::DbNotFound { .. }) => self.ensure_number_db(db).await?,
                Err(e) => return Err(db_error(&e)),
            }
        }
        Err(Error::Unspecified {
            reason: "database_error".into(),
            cause: Some(format!("database {db} vanished while saving")),
        })
    }

    /// Makes the account copy of `id` in `db` equal to `doc` (or absent), retrying its own
    /// conflicts (copies never re-decide, §7.3). A missing database: skipped for a save (§7.1),
    /// an error for a deletion unless `ignore_missing_db`.
    async fn set_copy(
        &self,
        db: &str,
        id: &str,
        doc: Option<&NumberDoc>,
        ignore_missing_db: bool,
    ) -> Result<(), Error> {
        let db = db_name(db)?;
        for attempt in 0..MAX_ATTEMPTS * 2 {
            docstore::cas_pause(attempt).await;
            let existing = match self.store.get(&db, id).await {
                Ok(e) => e,
                Err(docstore::Error::DbNotFound { .. }) => {
                    return if doc.is_some() || ignore_missing_db {
                        Ok(())
                    } else {
                        Err(Error::Unspecified {
                            reason: "database_error".into(),
                            cause: Some(format!("account database {db} not found")),
                        })
                    };
                }
                Err(e) => return Err(db_error(&e)),
            };
            let rev = existing.as_ref().and_then(|e| e.get("_rev")).and_then(Value::as_str);
            let result = match (doc, rev) {
                (Some(d), rev) => {
                    let body = d.to_account_copy_json(rev);
                    if existing.as_ref().is_some_and(|e| same_without_rev(e, &body)) {
                        return Ok(());
                    }
                    self.store.put(&db, body).await.map(drop)
                }
                (None, Some(rev)) => {
                    self.store.delete(&db, id, &docstore::Rev(rev.to_owned())).await.map(drop)
                }
                (None, None) => return Ok(()),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(docstore::Error::Conflict { .. } | docstore::Error::DocNotFound { .. }) => {}
                Err(docstore::Error::DbNotFound { .. }) => return Ok(()),
                Err(e) => {
                    return Err(match doc {
                        Some(_) => Error::AssignFailure { cause: e.to_string() },
                        None => db_error(&e),
                    })
                }
            }
        }
        Err(Error::Conflict {
            id: id.to_owned(),
            cause: format!("the copy of {id} in {db} kept changing"),
        })
    }

    /// After the copies were written: if the number document moved on meanwhile, make the copies
    /// this writer touched match the current document, until it holds still.
    async fn converge_copies(
        &self,
        written: &NumberDoc,
        touched: &BTreeSet<(AccountId, String)>,
    ) -> Result<(), Error> {
        let mut expected = written.rev.clone();
        for _ in 0..MAX_ATTEMPTS * 2 {
            let current = self.load(&written.id).await?;
            let current_rev = current.as_ref().and_then(|d| d.rev.clone());
            if current_rev == expected {
                return Ok(());
            }
            for (account, db) in touched {
                let keep = current.as_ref().filter(|d| d.assigned_to.as_ref() == Some(account));
                self.set_copy(db, written.id.as_str(), keep, true).await?;
            }
            expected = current_rev;
        }
        Ok(())
    }

    /// Writes new documents into one database with `_bulk_docs`, [`BULK_CHUNK`] at a time,
    /// calling `progress(n)` after each chunk with the number of documents it held. Each document
    /// succeeds or fails on its own (an existing number is a `conflict`).
    ///
    /// # Errors
    /// Only when the database cannot be created; write failures are per document.
    pub async fn bulk_create(
        &self,
        db: &DbName,
        docs: Vec<Value>,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<BulkReport, Error> {
        self.ensure_number_db(db).await?;
        let mut report = BulkReport::default();
        for chunk in docs.chunks(BULK_CHUNK) {
            let items = match self.store.bulk_docs(db, chunk.to_vec()).await {
                Ok(items) => items,
                Err(e) => {
                    for d in chunk {
                        let id = d.get("_id").and_then(Value::as_str).unwrap_or("?").to_owned();
                        report.errors.insert(
                            id,
                            ImportError { reason: "database_error".into(), message: e.to_string() },
                        );
                    }
                    progress(chunk.len());
                    continue;
                }
            };
            for item in items {
                match item.outcome {
                    Ok(_) => report.saved.push(item.id),
                    Err(docstore::Error::Conflict { .. }) => {
                        report.errors.insert(
                            item.id.clone(),
                            ImportError {
                                reason: "number_exists".into(),
                                message: format!("number {} already exists", item.id),
                            },
                        );
                    }
                    Err(e) => {
                        report.errors.insert(
                            item.id,
                            ImportError { reason: "database_error".into(), message: e.to_string() },
                        );
                    }
                }
            }
            progress(chunk.len());
        }
        Ok(report)
    }

    /// §16.1 `generate_numbers(managed|inum, Account, Start, Quantity)`: the pool documents,
    /// written with `_bulk_docs`; `progress` as in [`NumberStore::bulk_create`].
    ///
    /// # Errors
    /// `invalid` arguments (see [`generate::generate_numbers`]) or an uncreatable database.
    pub async fn generate(
        &self,
        pool: Pool,
        account: &AccountId,
        start: u64,
        quantity: u64,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<BulkReport, Error> {
        let docs = generate::generate_numbers(pool, account, start, quantity)?;
        self.bulk_create(&db_name(pool.db())?, docs, progress).await
    }

    /// A CSV import for `knm_inventory` (see [`generate::parse_inventory_csv`]): each valid row
    /// becomes a number document in its number database (`_bulk_docs`, grouped by database) and,
    /// when assigned, a copy in the owner's account database (if it exists); refused rows are
    /// reported as `line N` (or by number). `progress` gets the rows handled.
    ///
    /// # Errors
    /// A file that is not CSV or has no `number` column.
    pub async fn import_csv<R: std::io::Read>(
        &self,
        input: R,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<BulkReport, Error> {
        let parsed = generate::parse_inventory_csv(input, &self.converters, now_gregorian())?;
        let mut report = BulkReport::default();
        for e in &parsed.errors {
            let key =
                if e.number.is_empty() { format!("line {}", e.line) } else { e.number.clone() };
            report.errors.insert(
                key,
                ImportError {
                    reason: "invalid".into(),
                    message: format!("line {}: {}", e.line, e.reason),
                },
            );
        }
        progress(parsed.errors.len());
        let mut by_db: BTreeMap<String, Vec<NumberDoc>> = BTreeMap::new();
        for (_, doc) in parsed.docs {
            if let Some(db) = doc.db() {
                by_db.entry(db).or_default().push(doc);
            }
        }
        for (db, docs) in by_db {
            let db = db_name(&db)?;
            let owners: BTreeMap<String, NumberDoc> =
                docs.iter().map(|d| (d.id.as_str().to_owned(), d.clone())).collect();
            let sub = self
                .bulk_create(&db, docs.iter().map(NumberDoc::to_json).collect(), progress)
                .await?;
            for id in &sub.saved {
                if let Some(doc) = owners.get(id).filter(|d| d.assigned_to.is_some()) {
                    let owner = doc
                        .assigned_to
                        .as_ref()
                        .map(|a| a.db_name().to_string())
                        .unwrap_or_default();
                    self.set_copy(&owner, id, Some(doc), true).await?;
                }
            }
            report.saved.extend(sub.saved);
            report.errors.extend(sub.errors);
        }
        Ok(report)
    }

    /// §11 search over the configured carriers (system-wide, no account): public rows
    /// `{number, state, module}`, at most `min(quantity, maximum_search_quantity)` (§11.2), each
    /// carrier asked for no more. `prefix` without `+` is a US prefix
    /// (`415` and `1415` both search `+1415`).
    pub async fn search(&self, prefix: &str, quantity: usize) -> Vec<Value> {
        self.search_for(prefix, quantity, None).await
    }

    /// §11.5 `check(Numbers)` over the system `carrier_modules`, in order, on behalf of
    /// `auth_by`: `{number: status}`, every number `"error"` when no carrier can check (the
    /// default `knm_local` cannot).
    pub async fn check(&self, numbers: &[E164], auth_by: &AuthBy) -> BTreeMap<String, String> {
        let (kinds, _) = crate::search::available_carriers(&self.config, None, None, None);
        let index = self.index();
        let ctx = self.carrier_ctx(&index, auth_by);
        crate::search::check(numbers, &kinds, &ctx).await
    }

    /// §11.6 `info(AuthAccountId, AccountId, ResellerId)` as Crossbar's `carriers_info` calls it:
    /// the carriers of `account`, its reseller read from the accounts (and that reseller's
    /// account-config `carrier_modules` honoured, see [`NumberStore::carriers_info_for`]), as
    /// `{maximal_prefix_length, usable_carriers, usable_creation_states}`, the creation states
    /// being those `auth_by` may use (§3.8).
    pub async fn carriers_info(
        &self,
        account: &AccountId,
        auth_by: &AuthBy,
    ) -> Result<Value, Error> {
        let reseller = crate::auth::Accounts::get(&*self.accounts, account)
            .and_then(|i| i.reseller_id.clone());
        self.carriers_info_for(Some(account), reseller.as_ref(), auth_by).await
    }

    /// §11.6 `info(AuthAccountId, AccountId, ResellerId)` with Kazoo's arguments: the carriers of
    /// §11.3 for `account` and `reseller` (the reseller's account-config `carrier_modules` when
    /// set, see [`NumberStore::account_carrier_modules`]), as [`NumberStore::carriers_info`]
    /// returns them.
    ///
    /// # Errors
    /// A storage failure reading the reseller's account config.
    pub async fn carriers_info_for(
        &self,
        account: Option<&AccountId>,
        reseller: Option<&AccountId>,
        auth_by: &AuthBy,
    ) -> Result<Value, Error> {
        let kinds = self.carriers_for(account, reseller).await?;
        Ok(crate::search::carriers_info(&kinds, &*self.accounts, Some(auth_by)))
    }

    /// `carrier_modules` of `account`'s `number_manager` account config (document
    /// `configs_number_manager` in its account database, as `kapps_account_config` keeps it);
    /// `None` when unset (or no such database).
    ///
    /// # Errors
    /// A storage failure.
    pub async fn account_carrier_modules(
        &self,
        account: &AccountId,
    ) -> Result<Option<Vec<String>>, Error> {
        let db = account.db_name();
        match self.store.get(&db, "configs_number_manager").await {
            Ok(Some(doc)) => Ok(doc.get("carrier_modules").and_then(Value::as_array).map(|a| {
                a.iter().filter_map(Value::as_str).map(str::to_owned).collect::<Vec<_>>()
            })),
            Ok(None) | Err(docstore::Error::DbNotFound { .. }) => Ok(None),
            Err(e) => Err(db_error(&e)),
        }
    }

    /// §11.3 for `account` and `reseller`, the reseller's account config included.
    async fn carriers_for(
        &self,
        account: Option<&AccountId>,
        reseller: Option<&AccountId>,
    ) -> Result<Vec<CarrierKind>, Error> {
        let modules = match (account, reseller) {
            (Some(_), Some(r)) => self.account_carrier_modules(r).await?,
            _ => None,
        };
        let (kinds, dropped) =
            crate::search::available_carriers(&self.config, account, reseller, modules.as_deref());
        if !dropped.is_empty() {
            tracing::debug!(?dropped, "carrier modules this build does not know");
        }
        Ok(kinds)
    }

    /// §11.1 `first/1` for a whole [`SearchQuery`] (country, `blocks`, account and reseller as
    /// given): every row of the carriers of §11.3 (the reseller's account config included) and
    /// how each carrier answered. A failure reading the reseller's config falls back to the
    /// system `carrier_modules` (logged).
    pub async fn find(&self, query: &SearchQuery) -> crate::search::SearchResults {
        let account = query.account_id.as_ref();
        let reseller = query.reseller_id.as_ref();
        let kinds = match self.carriers_for(account, reseller).await {
            Ok(kinds) => kinds,
            Err(e) => {
                tracing::warn!(error = %e, "reseller carrier_modules unreadable; system ones used");
                crate::search::available_carriers(&self.config, account, reseller, None).0
            }
        };
        let index = self.index();
        let auth = AuthBy::System;
        let ctx = self.carrier_ctx(&index, &auth);
        crate::search::find(&kinds, query, &ctx).await
    }

    /// [`NumberStore::search`] on behalf of `account` (Kazoo's `account_id`; its `reseller_id`
    /// from the accounts): the internal carriers (`knm_local`, …) only answer searches made for
    /// an account, as in Kazoo.
    pub async fn search_for(
        &self,
        prefix: &str,
        quantity: usize,
        account: Option<&AccountId>,
    ) -> Vec<Value> {
        self.find_for(prefix, quantity, account).await.iter().map(search_row).collect()
    }

    /// The hits of [`NumberStore::search_for`] as found (module and carrier data included), so
    /// a caller can keep them for buying (as Kazoo's `discovery` numbers).
    pub async fn find_for(
        &self,
        prefix: &str,
        quantity: usize,
        account: Option<&AccountId>,
    ) -> Vec<crate::carriers::FoundNumber> {
        // §11: the country's dial code (US, +1) ++ the prefix typed; a `+…` prefix is used as is.
        let prefix = if prefix.starts_with('+') {
            prefix.to_owned()
        } else {
            format!("+1{}", prefix.strip_prefix('1').filter(|p| p.len() >= 3).unwrap_or(prefix))
        };
        let reseller = account.and_then(|a| {
            crate::auth::Accounts::get(&*self.accounts, a).and_then(|i| i.reseller_id.clone())
        });
        let mut query = SearchQuery::new(prefix, quantity);
        query.account_id = account.cloned();
        query.reseller_id = reseller;
        let results = self.find(&query).await;
        results.window(0, quantity, self.config.maximum_search_quantity).cloned().collect()
    }

    /// Stores the `discovery` document of a search hit, so buying it (a move) finds it:
    /// only where the number has no document yet; `false` when one exists.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn store_discovery(
        &self,
        found: &crate::carriers::FoundNumber,
    ) -> Result<bool, Error> {
        if found.state != NumberState::Discovery || self.load(&found.number).await?.is_some() {
            return Ok(false);
        }
        let Some(db) = number_db(found.number.as_str()) else { return Ok(false) };
        let db = db_name(&db)?;
        self.ensure_number_db(&db).await?;
        match self.store.put(&db, found.to_discovery_doc(now_gregorian()).to_json()).await {
            Ok(_) => Ok(true),
            Err(docstore::Error::Conflict { .. }) => Ok(false),
            Err(e) => Err(db_error(&e)),
        }
    }
}

/// A search hit as the search API answers it: `{number, state, module}`.
pub fn search_row(found: &crate::carriers::FoundNumber) -> Value {
    json!({"number": found.number.as_str(), "state": found.state.as_str(),
           "module": found.module.module_name()})
}

enum Performed {
    Done,
    Conflict,
}

fn same_without_rev(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Value::Object(m) = &mut v {
            m.remove("_rev");
        }
        v
    };
    strip(a) == strip(b)
}

/// Every account of the `accounts` database (none when it is missing); documents that are not
/// accounts are skipped.
///
/// # Errors
/// A storage failure.
pub async fn load_accounts(store: &SharedStore) -> Result<AccountMap, Error> {
    let db = docstore::naming::accounts_db();
    let mut map = AccountMap::new();
    let mut query = AllDocsQuery { include_docs: true, limit: Some(1000), ..Default::default() };
    loop {
        let page = match store.all_docs(&db, &query).await {
            Ok(p) => p,
            Err(docstore::Error::DbNotFound { .. }) => return Ok(map),
            Err(e) => return Err(db_error(&e)),
        };
        for row in &page.rows {
            if let Some(info) = row.doc.as_ref().and_then(|d| AccountInfo::from_json(d).ok()) {
                map.insert(info);
            }
        }
        match page.rows.last() {
            Some(last) if page.rows.len() == 1000 => {
                query.start_key = Some(last.id.clone());
                query.skip = 1;
            }
            _ => return Ok(map),
        }
    }
}

/// What the feature providers read besides `system_config/number_manager` (§12): each reseller's
/// `configs_number_manager` account config (for the accounts' `pvt_reseller_id`s), the Dash
/// e911 section `number_manager.dash_e911`, and each carrier section's `features` (sms/mms).
///
/// # Errors
/// A storage failure other than a missing database or document.
async fn load_feature_configs(
    store: &SharedStore,
    mut config: Config,
    accounts: &AccountMap,
    carrier_configs: &BTreeMap<CarrierKind, Value>,
) -> Result<Config, Error> {
    // The resellers named by the accounts (`AccountMap` is a lookup, not a list: re-read).
    let all = docs_in_range(store, &docstore::naming::accounts_db(), "", "\u{fff0}").await?;
    let resellers: BTreeSet<AccountId> = all
        .iter()
        .filter_map(|d| AccountInfo::from_json(d).ok())
        .filter_map(|a| a.reseller_id.filter(|r| *r != a.id))
        .filter(|r| crate::auth::Accounts::get(accounts, r).is_some())
        .collect();
    for reseller in resellers {
        match store.get(&reseller.db_name(), "configs_number_manager").await {
            Ok(Some(doc)) => config = config.with_reseller_config(reseller, doc),
            Ok(None) | Err(docstore::Error::DbNotFound { .. }) => {}
            Err(e) => return Err(db_error(&e)),
        }
    }
    let sys = docstore::naming::system_config_db();
    let id = crate::providers::dash_e911::CONFIG_DOC;
    match store.get(&sys, id).await {
        Ok(Some(doc)) => {
            config.provider_configs.insert(id.to_owned(), doc);
        }
        Ok(None) | Err(docstore::Error::DbNotFound { .. }) => {}
        Err(e) => return Err(db_error(&e)),
    }
    for (kind, section) in carrier_configs {
        if let Some(features) = section.get("features") {
            config.carrier_features.insert(kind.module_name().to_owned(), features.clone());
        }
    }
    Ok(config)
}

/// Every number database of the store (`numbers/…`), pools included.
///
/// # Errors
/// A storage failure.
pub async fn number_dbs(store: &SharedStore) -> Result<Vec<DbName>, Error> {
    let dbs = store.list_dbs().await.map_err(|e| db_error(&e))?;
    Ok(dbs.into_iter().filter(docstore::naming::is_numbers_db).collect())
}

/// Reads every document of `db` whose id lies in `[start, end]`, a page at a time.
async fn docs_in_range(
    store: &SharedStore,
    db: &DbName,
    start: &str,
    end: &str,
) -> Result<Vec<Value>, Error> {
    const PAGE: usize = 1000;
    let mut out = Vec::new();
    let mut query = AllDocsQuery {
        start_key: Some(start.to_owned()),
        end_key: Some(end.to_owned()),
        include_docs: true,
        limit: Some(PAGE),
        ..Default::default()
    };
    loop {
        let page = match store.all_docs(db, &query).await {
            Ok(p) => p,
            Err(docstore::Error::DbNotFound { .. }) => return Ok(out),
            Err(e) => return Err(db_error(&e)),
        };
        let n = page.rows.len();
        let last = page.rows.last().map(|r| r.id.clone());
        out.extend(page.rows.into_iter().filter_map(|r| r.doc));
        match last {
            Some(last) if n == PAGE => {
                query.start_key = Some(last);
                query.skip = 1;
            }
            _ => return Ok(out),
        }
    }
}

/// The [`NumberIndex`] over a document store: `_all_docs` id ranges filtered in memory (the
/// number ids are the keys Kazoo's views range over).
#[derive(Clone)]
pub struct StoreIndex {
    store: SharedStore,
}

impl StoreIndex {
    /// The number databases a prefix can live in: its own (5 characters and more), or every
    /// number database whose suffix starts with it.
    async fn dbs_for_prefix(&self, prefix: &str) -> Result<Vec<DbName>, Error> {
        if let Some(db) = number_db(prefix) {
            return Ok(vec![db_name(&db)?]);
        }
        let all = number_dbs(&self.store).await?;
        Ok(all.into_iter().filter(|d| d.as_str()["numbers/".len()..].starts_with(prefix)).collect())
    }
}

fn state_of(doc: &Value) -> Option<&str> {
    doc.get("pvt_state").and_then(Value::as_str)
}

#[async_trait]
impl NumberIndex for StoreIndex {
    async fn available_by_module(
        &self,
        module: &str,
        prefix: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<NumberDoc>, Error> {
        let mut out = Vec::new();
        let end = format!("{prefix}\u{fff0}");
        for db in self.dbs_for_prefix(prefix).await? {
            for raw in docs_in_range(&self.store, &db, prefix, &end).await? {
                if state_of(&raw) != Some("available") {
                    continue;
                }
                if let Ok(doc) = NumberDoc::from_json(&raw, now_gregorian()) {
                    if doc.module_name == module {
                        out.push(doc);
                    }
                }
            }
        }
        Ok(out.into_iter().skip(skip).take(limit).collect())
    }

    async fn reserved_in_account(
        &self,
        account: &AccountId,
        prefix: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<NumberDoc>, Error> {
        let db = account.db_name();
        let end = format!("{prefix}\u{fff0}");
        let mut out = Vec::new();
        for copy in docs_in_range(&self.store, &db, prefix, &end).await? {
            let is_number = copy.get("pvt_type").and_then(Value::as_str) == Some("number");
            if !is_number || state_of(&copy) != Some("reserved") {
                continue;
            }
            let Some(id) = copy.get("_id").and_then(Value::as_str) else { continue };
            let Some(ndb) = number_db(id) else { continue };
            match self.store.get(&db_name(&ndb)?, id).await {
                Ok(Some(v)) => {
                    if let Ok(doc) = NumberDoc::from_json(&v, now_gregorian()) {
                        if doc.state == NumberState::Reserved {
                            out.push(doc);
                        }
                    }
                }
                Ok(None) | Err(docstore::Error::DbNotFound { .. }) => {}
                Err(e) => return Err(db_error(&e)),
            }
        }
        Ok(out.into_iter().skip(skip).take(limit).collect())
    }

    async fn available_in_pool(
        &self,
        pool: Pool,
        account: &AccountId,
        prefix: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<E164>, Error> {
        let db = db_name(pool.db())?;
        let end = format!("{prefix}\u{fff0}");
        let docs = docs_in_range(&self.store, &db, prefix, &end).await?;
        Ok(docs
            .iter()
            .filter(|d| {
                state_of(d) == Some("available")
                    && d.get("pvt_account_id").and_then(Value::as_str) == Some(account.as_str())
            })
            .filter_map(|d| d.get("_id").and_then(Value::as_str).and_then(|i| E164::new(i).ok()))
            .skip(skip)
            .take(limit)
            .collect())
    }

    async fn update_pool_doc(
        &self,
        pool: Pool,
        number: &E164,
        fields: Map<String, Value>,
    ) -> Result<(), Error> {
        let db = db_name(pool.db())?;
        for attempt in 0..MAX_ATTEMPTS {
            docstore::cas_pause(attempt).await;
            let current = match self.store.get(&db, number.as_str()).await {
                Ok(c) => c,
                Err(e) => return Err(db_error(&e)),
            };
            let mut doc = current.unwrap_or_else(|| json!({"_id": number.as_str()}));
            let Value::Object(m) = &mut doc else { continue };
            for (k, v) in &fields {
                if v.is_null() {
                    m.remove(k);
                } else {
                    m.insert(k.clone(), v.clone());
                }
            }
            match self.store.put(&db, doc).await {
                Ok(_) => return Ok(()),
                Err(docstore::Error::Conflict { .. }) => continue,
                Err(e) => return Err(db_error(&e)),
            }
        }
        Err(Error::Conflict {
            id: number.as_str().to_owned(),
            cause: format!("pool document {number} kept changing"),
        })
    }
}

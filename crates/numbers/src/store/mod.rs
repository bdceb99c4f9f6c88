//! The store layer: number documents read from and written to the document store exactly where
//! Kazoo keeps them (`numbers/+1415`, the owner's account database), every transition decided by
//! [`transition`](crate::lifecycle::transition) and written with `_rev` compare-and-swap.
//!
//! # The CAS/retry protocol (see also [`crate::lifecycle`])
//! [`NumberStore::apply`] reads the number document (migrating older versions on load, `knm_phone_number:from_json/1`),
//! decides, calls the carrier, and writes the number database first: that write is the
//! linearization point. A 409 there means someone else changed the number since it was read: the
//! store re-reads, decides again against the new state (which may now refuse, cleanly, with the
//! knm error JSON) and retries after a jittered pause ([`docstore::cas_pause`]), at most
//! [`MAX_ATTEMPTS`](crate::lifecycle::MAX_ATTEMPTS) times; then it gives up with
//! [`Error::Conflict`] (409 `datastore_conflict`, nothing written by the last attempt) naming
//! the contention. A revision the caller pinned
//! ([`RunOptions::expected_rev`]) that is not the stored one is the same 409, at any attempt.
//! A carrier acquisition made by an attempt that then lost the race is reused by the next
//! attempt, never bought twice.
//!
//! The account-database copies (`knm_phone_number:save/1`'s account-db copy) follow the number write. Two writers that both succeeded on
//! the number database one after the other may write their copies in the other order, so after
//! its writes each writer re-reads the number document and, if it moved on, brings the copies it
//! touched in line with the current document (repeating until the document holds still). The
//! copies therefore always converge to what the number database says.
//!
//! A missing number database is created and the design documents of Kazoo's number views deployed before the save
//! is retried (`knm_phone_number:save/1` (doc id = the E.164 number)). Unchanged documents are not written (`knm_phone_number`'s dirty tracking); under `dry_run` nothing is
//! written and no carrier is called (`knm_number_options:dry_run`).
//!
//! [`StoreIndex`] is the [`NumberIndex`](crate::carriers::NumberIndex) the internal carriers
//! use, answered from `_all_docs` ranges (no JavaScript views, so the embedded store answers too).

mod apply;
mod bulk;
mod load;
mod pending;
mod search;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use docstore::{DbName, SharedStore};
use e164::{Converters, E164};
use serde_json::Value;

use crate::account::AccountId;
use crate::auth::{AccountInfo, AccountMap, AuthBy};
use crate::carriers::{CarrierCtx, CarrierKind, CarrierSettings};
use crate::config::Config;
use crate::doc::{gregorian_seconds, NumberDoc};
use crate::error::Error;

pub use bulk::{BulkReport, BULK_CHUNK};
pub use load::number_dbs;
use load::system_doc_ids;
pub use pending::Reconciled;
pub use search::{search_row, NumberSearch, StoreIndex};

/// Now, in Gregorian seconds (Kazoo's timestamps).
pub fn now_gregorian() -> i64 {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    gregorian_seconds(i64::try_from(unix).unwrap_or(i64::MAX))
}

/// A storage failure as the `knm_errors` fall-through error (`database_error`, 500).
pub fn db_error(e: &docstore::Error) -> Error {
    Error::Unspecified { reason: "database_error".into(), cause: Some(e.to_string()) }
}

fn db_name(name: &str) -> Result<DbName, Error> {
    DbName::new(name).map_err(|e| db_error(&e))
}

/// Who performs an operation and how (`knm_numbers`' bulk result shape options).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `auth_by` (Kazoo's default: `system`).
    pub auth_by: AuthBy,
    /// `knm_number_options:dry_run`: decide everything, write nothing, call no carrier.
    pub dry_run: bool,
    /// `knm_number_options:mdn_run`.
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
    /// Each external carrier's settings, read once from its `number_manager.<carrier>` section.
    settings: Arc<CarrierSettings>,
}

impl NumberStore {
    /// A store layer with this config and these accounts (for the `knm_phone_number`'s authorization predicates).
    pub fn new(store: SharedStore, config: Config, accounts: AccountMap) -> Self {
        NumberStore {
            store,
            config: Arc::new(config),
            accounts: Arc::new(accounts),
            converters: Arc::new(Converters::kazoo_defaults()),
            settings: Arc::new(CarrierSettings::default()),
        }
    }

    /// A store layer configured from the store itself: `system_config/number_manager` (Kazoo's
    /// defaults when missing), every account of the `accounts` database (none when missing),
    /// each carrier's `number_manager.<carrier>` section, and what the feature providers read
    /// (the resellers' `configs_number_manager`, `number_manager.dash_e911`; `knm_providers:exec/2`). For
    /// one-shot commands; the daemon builds from its live documents ([`NumberStore::from_live`]).
    ///
    /// # Errors
    /// A storage failure, or a config value of the wrong type.
    pub async fn from_store(store: SharedStore) -> Result<Self, Error> {
        let sys = docstore::naming::system_config_db();
        let mut system = BTreeMap::new();
        for id in system_doc_ids() {
            match store.get(&sys, &id).await {
                Ok(Some(doc)) => {
                    system.insert(id, doc);
                }
                Ok(None) | Err(docstore::Error::DbNotFound { .. }) => {}
                Err(e) => return Err(db_error(&e)),
            }
        }
        let accounts =
            load::docs_in_range(&store, &docstore::naming::accounts_db(), "", "\u{fff0}").await?;
        NumberStore::assemble(store, |id| system.get(id), accounts.iter()).await
    }

    /// A store layer configured from the daemon's live copies of `system_config` and
    /// `accounts` (what [`NumberStore::from_store`] reads, without reading them again); only
    /// the resellers' `configs_number_manager` documents are read from their account databases.
    /// Build a new one when either snapshot's generation moves.
    ///
    /// # Errors
    /// A storage failure, or a config value of the wrong type.
    pub async fn from_live(
        store: SharedStore,
        system_config: &docstore::LiveSnapshot,
        accounts: &docstore::LiveSnapshot,
    ) -> Result<Self, Error> {
        NumberStore::assemble(store, |id| system_config.get(id), accounts.docs()).await
    }

    /// Builds the store layer from the `system_config` documents (`system`, by id) and the
    /// account documents.
    async fn assemble<'a>(
        store: SharedStore,
        system: impl Fn(&str) -> Option<&'a Value>,
        account_docs: impl Iterator<Item = &'a Value>,
    ) -> Result<Self, Error> {
        let (config, converters) = match system("number_manager") {
            Some(doc) => (Config::from_system_config(doc)?, configured_converters(doc)),
            None => (Config::kazoo_defaults(), Converters::kazoo_defaults()),
        };
        let infos: Vec<AccountInfo> =
            account_docs.filter_map(|d| AccountInfo::from_json(d).ok()).collect();
        // The resellers named by the accounts.
        let resellers: BTreeSet<AccountId> =
            infos.iter().filter_map(|a| a.reseller_id.clone().filter(|r| *r != a.id)).collect();
        let accounts: AccountMap = infos.into_iter().collect();
        let resellers: BTreeSet<AccountId> = resellers
            .into_iter()
            .filter(|r| crate::auth::Accounts::get(&accounts, r).is_some())
            .collect();
        let mut sections = BTreeMap::new();
        for kind in CarrierKind::ALL {
            let Some(id) = crate::carriers::config_doc_id(kind) else { continue };
            if let Some(doc) = system(&id) {
                let section = doc.get("default").unwrap_or(doc).clone();
                sections.insert(kind, section);
            }
        }
        // each carrier's section read into its typed config, once per `system_config`
        let settings = CarrierSettings::read(sections);
        let dash = system(crate::providers::dash_e911::CONFIG_DOC).cloned();
        let config =
            load::load_feature_configs(&store, config, resellers, dash, settings.sections())
                .await?;
        let mut me = NumberStore::new(store, config, accounts);
        me.settings = Arc::new(settings);
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

    /// The accounts the `knm_phone_number`'s authorization predicates read.
    pub fn accounts(&self) -> &AccountMap {
        &self.accounts
    }

    /// The public JSON of `doc` (`knm_phone_number:to_public_json/1`) as `auth_by` sees it: [`NumberDoc::to_public_json`] plus
    /// `_read_only.features_available`, the features that requester may set on this number
    /// (`knm_providers:list_available_features/1`, with the owner's reseller config and the carriers' sms/mms settings).
    pub fn public_json(&self, doc: &NumberDoc, auth_by: &AuthBy) -> Value {
        let is_admin = crate::auth::is_admin(&*self.accounts, auth_by);
        let available =
            crate::features::available_features_for(doc, &self.config, &*self.accounts, is_admin);
        doc.to_public_json_with_features(&available)
    }

    /// The normalization rules (`knm_converters:normalize/1`).
    pub fn converters(&self) -> &Converters {
        &self.converters
    }

    /// Normalizes and checks one input (`knm_converters:normalize/1`, `knm_converters:is_reconcilable/1`).
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

    /// The [`NumberIndex`](crate::carriers::NumberIndex) over this store.
    pub fn index(&self) -> StoreIndex {
        StoreIndex { store: self.store.clone() }
    }

    fn carrier_ctx<'a>(&'a self, index: &'a StoreIndex, auth_by: &'a AuthBy) -> CarrierCtx<'a> {
        CarrierCtx::new(&self.config, index).with_settings(&self.settings).with_auth_by(auth_by)
    }
}

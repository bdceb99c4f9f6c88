//! Reading from the store: number documents, number databases, the accounts and the configs the
//! store layer is built from, and `knm_number:lookup_account/1`'s lookup (number document, then open port requests).

use std::collections::{BTreeMap, BTreeSet};

use docstore::{AllDocsQuery, DbName, DesignKind, SharedStore};
use e164::E164;
use serde_json::Value;

use super::{db_error, db_name, now_gregorian, NumberStore};
use crate::account::AccountId;
use crate::auth::AccountInfo;
use crate::carriers::CarrierKind;
use crate::config::Config;
use crate::doc::{number_db, NumberDoc};
use crate::error::Error;
use crate::lifecycle::{lookup_account, AccountLookup, Ctx};

impl NumberStore {
    /// Reads the stored document of `number` (migrated on load, `knm_phone_number:from_json/1`); `None` when there is none.
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

    /// Creates a number database when missing and deploys the number design documents (`knm_phone_number:save/1` (doc id = the E.164 number)).
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

    /// `knm_number:lookup_account/1` `lookup_account` from the store: the number document (system auth) and, when there
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

    /// Whether `number` is in an open port request (`knm_numbers:create/2` d).
    ///
    /// # Errors
    /// A storage failure.
    pub async fn is_porting(&self, number: &E164) -> Result<bool, Error> {
        Ok(self.port_request_owner(number).await?.is_some())
    }
}

/// The ids of the `system_config` documents the store layer reads: `number_manager`, each
/// external carrier's section and the Dash e911 section.
pub(super) fn system_doc_ids() -> Vec<String> {
    let mut ids = vec!["number_manager".to_owned()];
    ids.extend(CarrierKind::ALL.into_iter().filter_map(crate::carriers::config_doc_id));
    ids.push(crate::providers::dash_e911::CONFIG_DOC.to_owned());
    ids
}

/// What the feature providers read besides `system_config/number_manager` (`knm_providers`): each reseller's
/// `configs_number_manager` account config, the Dash e911 section `number_manager.dash_e911`,
/// and each carrier section's `features` (sms/mms).
///
/// # Errors
/// A storage failure other than a missing database or document.
pub(super) async fn load_feature_configs(
    store: &SharedStore,
    mut config: Config,
    resellers: BTreeSet<AccountId>,
    dash_e911: Option<Value>,
    carrier_configs: &BTreeMap<CarrierKind, Value>,
) -> Result<Config, Error> {
    for reseller in resellers {
        match store.get(&reseller.db_name(), "configs_number_manager").await {
            Ok(Some(doc)) => config = config.with_reseller_config(reseller, doc),
            Ok(None) | Err(docstore::Error::DbNotFound { .. }) => {}
            Err(e) => return Err(db_error(&e)),
        }
    }
    if let Some(doc) = dash_e911 {
        config.provider_configs.insert(crate::providers::dash_e911::CONFIG_DOC.to_owned(), doc);
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
pub(super) async fn docs_in_range(
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

impl NumberStore {
    /// The number copies `account`'s database holds (`pvt_type` `number`, not `pvt_deleted`),
    /// as stored, in id order; none when the database is missing.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn account_numbers(&self, account: &AccountId) -> Result<Vec<Value>, Error> {
        let db = account.db_name();
        let docs = docs_in_range(&self.store, &db, "+", "+\u{fff0}").await?;
        Ok(docs
            .into_iter()
            .filter(|d| d.get("pvt_type").and_then(Value::as_str) == Some("number"))
            .filter(|d| d.get("pvt_deleted").and_then(Value::as_bool) != Some(true))
            .collect())
    }

    /// The accounts below `account` (every account whose `pvt_tree` names it), read from the
    /// `accounts` database.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn descendants(&self, account: &AccountId) -> Result<Vec<AccountId>, Error> {
        let all =
            docs_in_range(&self.store, &docstore::naming::accounts_db(), "", "\u{fff0}").await?;
        Ok(all
            .iter()
            .filter_map(|d| AccountInfo::from_json(d).ok())
            .filter(|a| a.id != *account && a.tree.contains(account))
            .map(|a| a.id)
            .collect())
    }
}

//! Search (`knm_search`) over the store: which carriers, the fan-out, `check`, carrier info, the
//! `discovery` records of search hits, and [`StoreIndex`], the index the internal carriers search.

use std::collections::BTreeMap;

use async_trait::async_trait;
use docstore::{DbName, SharedStore};
use e164::E164;
use serde_json::{json, Map, Value};

use super::load::{docs_in_range, number_dbs};
use super::{db_error, db_name, now_gregorian, NumberStore};
use crate::account::AccountId;
use crate::auth::AuthBy;
use crate::carriers::{CarrierKind, NumberIndex, Pool, SearchQuery};
use crate::doc::{number_db, NumberDoc, NumberState};
use crate::error::Error;
use crate::lifecycle::MAX_ATTEMPTS;

impl NumberStore {
    /// `knm_search` search over the configured carriers (system-wide, no account): public rows
    /// `{number, state, module}`, at most `min(quantity, maximum_search_quantity)` (`knm_search`' result rows), each
    /// carrier asked for no more. `prefix` without `+` is a US prefix
    /// (`415` and `1415` both search `+1415`).
    pub async fn search(&self, prefix: &str, quantity: usize) -> Vec<Value> {
        self.search_for(prefix, quantity, None).await
    }

    /// `knm_carriers:check/1` `check(Numbers)` over the system `carrier_modules`, in order, on behalf of
    /// `auth_by`: `{number: status}`, every number `"error"` when no carrier can check (the
    /// default `knm_local` cannot).
    pub async fn check(&self, numbers: &[E164], auth_by: &AuthBy) -> BTreeMap<String, String> {
        let (kinds, _) = crate::search::available_carriers(&self.config, None, None, None);
        let index = self.index();
        let ctx = self.carrier_ctx(&index, auth_by);
        crate::search::check(numbers, &kinds, &ctx).await
    }

    /// `knm_carriers:info/3` `info(AuthAccountId, AccountId, ResellerId)` as Crossbar's `carriers_info` calls it:
    /// the carriers of `account`, its reseller read from the accounts (and that reseller's
    /// account-config `carrier_modules` honoured, see [`NumberStore::carriers_info_for`]), as
    /// `{maximal_prefix_length, usable_carriers, usable_creation_states}`, the creation states
    /// being those `auth_by` may use (`knm_number:allowed_creation_states/2`).
    pub async fn carriers_info(
        &self,
        account: &AccountId,
        auth_by: &AuthBy,
    ) -> Result<Value, Error> {
        let reseller = crate::auth::Accounts::get(&*self.accounts, account)
            .and_then(|i| i.reseller_id.clone());
        self.carriers_info_for(Some(account), reseller.as_ref(), auth_by).await
    }

    /// `knm_carriers:info/3` `info(AuthAccountId, AccountId, ResellerId)` with Kazoo's arguments: the carriers of
    /// `knm_carriers:get_available_carriers/1` for `account` and `reseller` (the reseller's account-config `carrier_modules` when
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

    /// `knm_carriers:get_available_carriers/1` for `account` and `reseller`, the reseller's account config included.
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

    /// `knm_search:find/1` `first/1` for a whole [`SearchQuery`] (country, `blocks`, account and reseller as
    /// given): every row of the carriers of `knm_carriers:get_available_carriers/1` (the reseller's account config included) and
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
        let request = NumberSearch { account, ..NumberSearch::new(prefix, quantity) };
        let hits = self.find_for(&request).await.unwrap_or_default();
        hits.iter().map(search_row).collect()
    }

    /// The hits of a search (`knm_search:find/1` and `knm_search`' result rows) as found (module and carrier data included): the
    /// carriers of `knm_carriers:get_available_carriers/1` for the request's account are asked for `offset + quantity` numbers
    /// each from their first (at most `maximum_search_quantity`), and the merged, sorted rows
    /// from `offset` on, at most `min(quantity, maximum_search_quantity)`, are returned. Kazoo keeps the first
    /// answer under a query id and pages from it; asking again keeps every instance stateless.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a `country` that names no country.
    pub async fn find_for(
        &self,
        request: &NumberSearch<'_>,
    ) -> Result<Vec<crate::carriers::FoundNumber>, Error> {
        let Some(prefix) = crate::country::normalized_prefix(request.country, request.prefix)
        else {
            return Err(Error::Invalid { reason: format!("unknown country {}", request.country) });
        };
        let account = request.account;
        let reseller = account.and_then(|a| {
            crate::auth::Accounts::get(&*self.accounts, a).and_then(|i| i.reseller_id.clone())
        });
        let max = self.config.maximum_search_quantity;
        let mut query = SearchQuery::new(prefix, request.offset.saturating_add(request.quantity));
        query.country = request.country.to_ascii_uppercase();
        query.account_id = account.cloned();
        query.reseller_id = reseller;
        let results = self.find(&query).await;
        Ok(results.window(request.offset, request.quantity, max).cloned().collect())
    }

    /// Keeps the carrier stock among `hits` as `discovery` documents in the number databases
    /// (Kazoo's `knm_search:discovery/1` `discovery` records, as Kazoo's number databases held them before its
    /// in-memory search cache), so every instance sharing the store can buy a number any of them
    /// found: a move or create of the number starts from that record (module, carrier data).
    /// A number that already has a document is left alone, except an earlier `discovery` record,
    /// which is refreshed (carrier data, `pvt_modified`) unless it carries a purchase whose
    /// outcome is unknown. The crawler deletes records older than `discovery_expiry_d`.
    /// Returns how many records were written.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn keep_discovery(
        &self,
        hits: &[crate::carriers::FoundNumber],
    ) -> Result<usize, Error> {
        let now = now_gregorian();
        let mut by_db: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for hit in hits.iter().filter(|h| h.state == NumberState::Discovery) {
            if let Some(db) = number_db(hit.number.as_str()) {
                by_db.entry(db).or_default().push(hit.to_discovery_doc(now).to_json());
            }
        }
        let mut written = 0;
        for (db, docs) in by_db {
            let db = db_name(&db)?;
            self.ensure_number_db(&db).await?;
            let items = self.store.bulk_docs(&db, docs.clone()).await.map_err(|e| db_error(&e))?;
            for (item, fresh) in items.into_iter().zip(docs) {
                match item.outcome {
                    Ok(_) => written += 1,
                    Err(docstore::Error::Conflict { .. }) => {
                        written += usize::from(self.refresh_discovery(&db, fresh).await?);
                    }
                    Err(e) => return Err(db_error(&e)),
                }
            }
        }
        Ok(written)
    }

    /// Replaces an existing `discovery` record by `fresh` (same number), keeping its revision;
    /// anything else, or a record of a pending purchase, is left alone. A lost race is left
    /// alone too (someone else just wrote the number).
    async fn refresh_discovery(&self, db: &DbName, mut fresh: Value) -> Result<bool, Error> {
        let Some(id) = fresh.get("_id").and_then(Value::as_str).map(str::to_owned) else {
            return Ok(false);
        };
        let existing = match self.store.get(db, &id).await {
            Ok(Some(doc)) => doc,
            Ok(None) | Err(docstore::Error::DbNotFound { .. }) => return Ok(false),
            Err(e) => return Err(db_error(&e)),
        };
        let pending = existing
            .get("pvt_carrier_data")
            .and_then(|d| d.get(crate::carriers::PENDING_ORDER))
            .is_some();
        if existing.get("pvt_state").and_then(Value::as_str) != Some("discovery") || pending {
            return Ok(false);
        }
        if let (Some(map), Some(rev)) = (fresh.as_object_mut(), existing.get("_rev")) {
            map.insert("_rev".into(), rev.clone());
            if let Some(created) = existing.get("pvt_created") {
                map.insert("pvt_created".into(), created.clone());
            }
        }
        match self.store.put(db, fresh).await {
            Ok(_) => Ok(true),
            Err(docstore::Error::Conflict { .. } | docstore::Error::DocNotFound { .. }) => {
                Ok(false)
            }
            Err(e) => Err(db_error(&e)),
        }
    }
}

/// One number search (Crossbar's `find_numbers` options): the prefix as typed, how many rows
/// from which offset, the country whose dialling code prefixes it, and the account searching.
#[derive(Debug, Clone, Copy)]
pub struct NumberSearch<'a> {
    /// The prefix as typed (`415`, `1415`, `+1415`).
    pub prefix: &'a str,
    /// How many rows at most (`quantity`, at least 1).
    pub quantity: usize,
    /// How many rows to skip (`offset`).
    pub offset: usize,
    /// Two letters (`country`, default `US`).
    pub country: &'a str,
    /// The account searching (its reserved and pool numbers are found too).
    pub account: Option<&'a AccountId>,
}

impl<'a> NumberSearch<'a> {
    /// `quantity` numbers under `prefix` in the US, from the first, for no account.
    pub fn new(prefix: &'a str, quantity: usize) -> Self {
        NumberSearch { prefix, quantity, offset: 0, country: "US", account: None }
    }
}

/// A search hit as Crossbar answers it: `{number, state}`.
pub fn search_row(found: &crate::carriers::FoundNumber) -> Value {
    json!({"number": found.number.as_str(), "state": found.state.as_str()})
}

/// The [`NumberIndex`] over a document store: `_all_docs` id ranges filtered in memory (the
/// number ids are the keys Kazoo's views range over).
#[derive(Clone)]
pub struct StoreIndex {
    pub(super) store: SharedStore,
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

//! An in-memory [`NumberIndex`] for the carrier tests (the store layer implements the real one
//! over the document store and is tested against a CouchDB-compatible server).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use e164::E164;
use serde_json::{Map, Value};

use super::{NumberIndex, Pool};
use crate::account::AccountId;
use crate::doc::{NumberDoc, NumberState};
use crate::error::Error;

pub(crate) fn acc(n: u8) -> AccountId {
    AccountId::parse(&format!("account000000000000000000000000{n}")).unwrap()
}

pub(crate) fn avail(number: &str, module: &str) -> NumberDoc {
    NumberDoc::new(&E164::new(number).unwrap(), NumberState::Available, module, 1)
}

pub(crate) fn reserved(number: &str, owner: AccountId) -> NumberDoc {
    let mut d = NumberDoc::new(&E164::new(number).unwrap(), NumberState::Reserved, "knm_local", 1);
    d.assigned_to = Some(owner);
    d
}

/// Pool documents by (pool database, number).
type PoolDocs = BTreeMap<(&'static str, String), Map<String, Value>>;

#[derive(Default)]
pub(crate) struct MemoryIndex {
    numbers: Vec<NumberDoc>,
    pools: Mutex<PoolDocs>,
    page_size: Option<usize>,
}

impl MemoryIndex {
    pub(crate) fn with_numbers(mut numbers: Vec<NumberDoc>) -> Self {
        numbers.sort_by(|a, b| a.id.cmp(&b.id));
        MemoryIndex { numbers, ..Default::default() }
    }

    /// Pages never hold more than `n` rows, to exercise the carriers' paging.
    pub(crate) fn with_page_size(mut self, n: usize) -> Self {
        self.page_size = Some(n);
        self
    }

    pub(crate) fn add_pool(&self, pool: Pool, account: &AccountId, numbers: &[&str]) {
        let mut pools = self.pools.lock().unwrap();
        for n in numbers {
            let mut doc = Map::new();
            doc.insert("_id".into(), Value::from(*n));
            doc.insert("pvt_account_id".into(), Value::from(account.as_str()));
            doc.insert("pvt_state".into(), Value::from("available"));
            doc.insert("pvt_type".into(), Value::from("number"));
            pools.insert((pool.db(), (*n).to_owned()), doc);
        }
    }

    pub(crate) fn pool_doc(&self, pool: Pool, number: &str) -> Map<String, Value> {
        self.pools.lock().unwrap()[&(pool.db(), number.to_owned())].clone()
    }

    fn page<T>(&self, rows: Vec<T>, skip: usize, limit: usize) -> Vec<T> {
        let limit = self.page_size.map_or(limit, |p| p.min(limit));
        rows.into_iter().skip(skip).take(limit).collect()
    }
}

#[async_trait]
impl NumberIndex for MemoryIndex {
    async fn available_by_module(
        &self,
        module: &str,
        prefix: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<NumberDoc>, Error> {
        let rows = self
            .numbers
            .iter()
            .filter(|d| {
                d.state == NumberState::Available
                    && d.module_name == module
                    && d.id.as_str().starts_with(prefix)
            })
            .cloned()
            .collect();
        Ok(self.page(rows, skip, limit))
    }

    async fn reserved_in_account(
        &self,
        account: &AccountId,
        prefix: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<NumberDoc>, Error> {
        let rows = self
            .numbers
            .iter()
            .filter(|d| {
                d.state == NumberState::Reserved
                    && d.assigned_to.as_ref() == Some(account)
                    && d.id.as_str().starts_with(prefix)
            })
            .cloned()
            .collect();
        Ok(self.page(rows, skip, limit))
    }

    async fn available_in_pool(
        &self,
        pool: Pool,
        account: &AccountId,
        prefix: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<E164>, Error> {
        let rows: Vec<E164> = self
            .pools
            .lock()
            .unwrap()
            .iter()
            .filter(|((db, id), doc)| {
                *db == pool.db()
                    && id.starts_with(prefix)
                    && doc["pvt_account_id"] == account.as_str()
                    && doc["pvt_state"] == "available"
            })
            .map(|((_, id), _)| E164::new(id.clone()).unwrap())
            .collect();
        Ok(self.page(rows, skip, limit))
    }

    async fn update_pool_doc(
        &self,
        pool: Pool,
        number: &E164,
        fields: Map<String, Value>,
    ) -> Result<(), Error> {
        let mut pools = self.pools.lock().unwrap();
        let doc = pools.entry((pool.db(), number.to_string())).or_default();
        for (k, v) in fields {
            if v.is_null() {
                doc.remove(&k);
            } else {
                doc.insert(k, v);
            }
        }
        Ok(())
    }
}

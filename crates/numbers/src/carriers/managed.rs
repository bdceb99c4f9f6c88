//! `knm_managed` (`knm_gen_carrier`): numbers generated into the `numbers%2Fmanaged` pool for an account
//! (maintenance `generate_numbers`, `kazoo_number_manager_maintenance:generate_numbers/4`); searched per account, falling back to the reseller;
//! acquiring or disconnecting updates the pool document.

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{
    not_available, plus_prefix, Carrier, CarrierCtx, CarrierKind, CarrierSpec, Found, FoundNumber,
    Pool, SearchQuery,
};
use crate::doc::{NumberDoc, NumberState};
use crate::error::Error;

/// `knm_managed`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Managed;

/// Pool search of `knm_managed` / `knm_inum`: the account's pool numbers, else the reseller's.
pub(crate) async fn find_in_pool(
    kind: CarrierKind,
    pool: Pool,
    row_state: NumberState,
    query: &SearchQuery,
    ctx: &CarrierCtx<'_>,
) -> Result<Found, Error> {
    let prefix = plus_prefix(&query.prefix);
    let mut account = query.account_id.clone();
    let mut offset = query.offset;
    loop {
        let Some(acc) = account.clone() else { return Err(not_available(kind)) };
        let ids = ctx.index.available_in_pool(pool, &acc, &prefix, offset, query.quantity).await?;
        if !ids.is_empty() {
            let rows = ids
                .into_iter()
                .take(query.quantity)
                .map(|number| FoundNumber {
                    number,
                    module: kind,
                    state: row_state,
                    carrier_data: Map::new(),
                })
                .collect();
            return Ok(Found::Numbers(rows));
        }
        if account == query.reseller_id || query.reseller_id.is_none() {
            return Err(not_available(kind));
        }
        account.clone_from(&query.reseller_id);
        offset = 0;
    }
}

/// `update_doc/2` of the pooled carriers: always sets `pvt_module_name`.
pub(crate) async fn update_pool(
    kind: CarrierKind,
    pool: Pool,
    doc: &NumberDoc,
    mut fields: Map<String, Value>,
    ctx: &CarrierCtx<'_>,
) -> Result<(), Error> {
    fields.insert("pvt_module_name".into(), Value::from(kind.module_name()));
    ctx.index.update_pool_doc(pool, &doc.id, fields).await
}

pub(crate) fn acquire_fields(doc: &NumberDoc) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("pvt_state".into(), Value::from(doc.state.as_str()));
    fields.insert(
        "pvt_assigned_to".into(),
        doc.assigned_to.as_ref().map_or(Value::Null, |a| Value::from(a.as_str())),
    );
    fields
}

/// What `knm_managed` declares about itself (see [`CarrierSpec`]).
pub(crate) const SPEC: CarrierSpec = CarrierSpec {
    kind: CarrierKind::Managed,
    module_name: "knm_managed",
    is_local: true,
    is_billable: true,
    lookup_cnam: true,
    maximal_prefix_length: 15,
    config_section: None,
    carrier: &Managed,
};

#[async_trait]
impl Carrier for Managed {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Managed
    }

    async fn find_numbers(
        &self,
        query: &SearchQuery,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        find_in_pool(CarrierKind::Managed, Pool::Managed, NumberState::Discovery, query, ctx).await
    }

    async fn acquire_number(
        &self,
        doc: NumberDoc,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        update_pool(CarrierKind::Managed, Pool::Managed, &doc, acquire_fields(&doc), ctx).await?;
        Ok(doc)
    }

    async fn disconnect_number(
        &self,
        doc: NumberDoc,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        let mut fields = Map::new();
        fields.insert("pvt_state".into(), Value::from(NumberState::Available.as_str()));
        fields.insert("pvt_assigned_to".into(), Value::Null);
        update_pool(CarrierKind::Managed, Pool::Managed, &doc, fields, ctx).await?;
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carriers::testindex::{acc, MemoryIndex};
    use crate::config::Config;
    use crate::doc::MANAGED_DB;
    use serde_json::json;

    /// `knm_gen_carrier`: managed search per account then reseller; rows `discovery`; acquire/disconnect
    /// update the pool doc; dry run touches nothing.
    #[tokio::test]
    async fn s14_1_managed() {
        let config = Config::kazoo_defaults();
        let index = MemoryIndex::default();
        index.add_pool(Pool::Managed, &acc(1), &["+15550000001", "+15550000002"]);
        let ctx = CarrierCtx::new(&config, &index);
        let mut q = SearchQuery::new("1555", 1);
        q.account_id = Some(acc(2));
        assert!(Managed.find_numbers(&q, &ctx).await.is_err());
        q.reseller_id = Some(acc(1));
        let found = Managed.find_numbers(&q, &ctx).await.unwrap();
        assert_eq!(found.rows().len(), 1);
        assert_eq!(found.rows()[0].state, NumberState::Discovery);
        assert_eq!(found.rows()[0].module, CarrierKind::Managed);

        let mut doc = found.rows()[0].to_discovery_doc(5);
        doc.state = NumberState::InService;
        doc.assigned_to = Some(acc(2));
        CarrierKind::Managed.acquire(doc.clone(), &ctx.with_dry_run(true)).await.unwrap();
        assert_eq!(index.pool_doc(Pool::Managed, "+15550000001")["pvt_state"], "available");
        let ctx = CarrierCtx::new(&config, &index);
        Managed.acquire_number(doc.clone(), &ctx).await.unwrap();
        let pool_doc = index.pool_doc(Pool::Managed, "+15550000001");
        assert_eq!(pool_doc["pvt_state"], "in_service");
        assert_eq!(pool_doc["pvt_assigned_to"], acc(2).as_str());
        assert_eq!(pool_doc["pvt_module_name"], "knm_managed");
        Managed.disconnect_number(doc, &ctx).await.unwrap();
        let pool_doc = index.pool_doc(Pool::Managed, "+15550000001");
        assert_eq!(pool_doc["pvt_state"], "available");
        assert_eq!(pool_doc.get("pvt_assigned_to"), None);
        assert_eq!(Pool::Managed.db(), MANAGED_DB);
        assert!(Managed.is_number_billable(&NumberDoc::new(
            &e164::E164::new("+15550000001").unwrap(),
            NumberState::Available,
            "knm_managed",
            1
        )));
        let _ = json!({});
    }
}

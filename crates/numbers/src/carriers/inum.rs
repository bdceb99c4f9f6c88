//! `knm_inum` (`knm_gen_carrier`): iNum numbers (`+883 510…`) generated into the `numbers%2Finum` pool;
//! searched per account (falling back to the reseller, offset reset), rows `available`; disconnect
//! puts the pool document back to `released` with no owner and an empty history.

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::managed::{acquire_fields, find_in_pool, update_pool};
use super::{Carrier, CarrierCtx, CarrierKind, CarrierSpec, Found, Pool, SearchQuery};
use crate::doc::{NumberDoc, NumberState};
use crate::error::Error;

/// `knm_inum`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inum;

/// What `knm_inum` declares about itself (see [`CarrierSpec`]).
pub(crate) const SPEC: CarrierSpec = CarrierSpec {
    kind: CarrierKind::Inum,
    module_name: "knm_inum",
    is_local: true,
    is_billable: false,
    lookup_cnam: true,
    maximal_prefix_length: 15,
    config_section: None,
    carrier: &Inum,
};

#[async_trait]
impl Carrier for Inum {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Inum
    }

    async fn find_numbers(
        &self,
        query: &SearchQuery,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        if query.account_id.is_none() {
            return Ok(Found::Numbers(Vec::new()));
        }
        find_in_pool(CarrierKind::Inum, Pool::Inum, NumberState::Available, query, ctx).await
    }

    async fn acquire_number(
        &self,
        doc: NumberDoc,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        update_pool(CarrierKind::Inum, Pool::Inum, &doc, acquire_fields(&doc), ctx).await?;
        Ok(doc)
    }

    async fn disconnect_number(
        &self,
        doc: NumberDoc,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        let mut fields = Map::new();
        fields.insert("pvt_state".into(), Value::from(NumberState::Released.as_str()));
        fields.insert("pvt_assigned_to".into(), Value::Null);
        fields.insert("pvt_reserve_history".into(), Value::Array(Vec::new()));
        update_pool(CarrierKind::Inum, Pool::Inum, &doc, fields, ctx).await?;
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carriers::testindex::{acc, MemoryIndex};
    use crate::config::Config;
    use e164::E164;

    /// `knm_gen_carrier`: inum without account → []; rows `available`; disconnect → released.
    #[tokio::test]
    async fn s14_1_inum() {
        let config = Config::kazoo_defaults();
        let index = MemoryIndex::default();
        index.add_pool(Pool::Inum, &acc(2), &["+883510000000001"]);
        let ctx = CarrierCtx::new(&config, &index);
        let mut q = SearchQuery::new("+883510", 3);
        assert_eq!(Inum.find_numbers(&q, &ctx).await.unwrap(), Found::Numbers(vec![]));
        q.account_id = Some(acc(2));
        let found = Inum.find_numbers(&q, &ctx).await.unwrap();
        assert_eq!(found.rows()[0].state, NumberState::Available);
        let doc = found.rows()[0].to_discovery_doc(1);
        Inum.disconnect_number(doc, &ctx).await.unwrap();
        let pool_doc = index.pool_doc(Pool::Inum, "+883510000000001");
        assert_eq!(pool_doc["pvt_state"], "released");
        assert_eq!(pool_doc["pvt_reserve_history"], serde_json::json!([]));
        assert_eq!(pool_doc["pvt_module_name"], "knm_inum");
        assert!(!Inum.is_number_billable(&NumberDoc::new(
            &E164::new("+883510000000001").unwrap(),
            NumberState::Available,
            "knm_inum",
            1
        )));
    }
}

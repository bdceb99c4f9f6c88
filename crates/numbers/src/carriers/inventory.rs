//! `knm_inventory` (`knm_gen_carrier`): like `knm_local`, for numbers imported into the system's inventory
//! (module `knm_inventory`; not local, not billable). Import is [`crate::generate::parse_inventory_csv`].

use async_trait::async_trait;

use super::local::find_in_number_db;
use super::{Carrier, CarrierCtx, CarrierKind, CarrierSpec, Found, SearchQuery};
use crate::error::Error;

/// `knm_inventory`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inventory;

/// What `knm_inventory` declares about itself (see [`CarrierSpec`]).
pub(crate) const SPEC: CarrierSpec = CarrierSpec {
    kind: CarrierKind::Inventory,
    module_name: "knm_inventory",
    is_local: false,
    is_billable: false,
    lookup_cnam: true,
    maximal_prefix_length: 10,
    config_section: None,
    carrier: &Inventory,
};

#[async_trait]
impl Carrier for Inventory {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Inventory
    }

    async fn find_numbers(
        &self,
        query: &SearchQuery,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        find_in_number_db(CarrierKind::Inventory, query, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carriers::testindex::{acc, avail, MemoryIndex};
    use crate::config::Config;

    /// `knm_gen_carrier`: inventory searches its own module only; not local.
    #[tokio::test]
    async fn s14_1_inventory_search() {
        let config = Config::kazoo_defaults();
        let index = MemoryIndex::with_numbers(vec![
            avail("+14158867900", "knm_local"),
            avail("+14158867902", "knm_inventory"),
        ]);
        let ctx = CarrierCtx::new(&config, &index);
        let mut q = SearchQuery::new("+1415", 10);
        q.account_id = Some(acc(2));
        let found = Inventory.find_numbers(&q, &ctx).await.unwrap();
        assert_eq!(found.rows().len(), 1);
        assert_eq!(found.rows()[0].module, CarrierKind::Inventory);
        assert!(!Inventory.is_local());
        assert!(!Inventory.is_number_billable(&avail("+14158867902", "knm_inventory")));
    }
}

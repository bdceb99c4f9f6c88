//! `knm_reserved_reseller` (`knm_gen_carrier`): numbers reserved in the searching account's *reseller*
//! database. Kazoo's paging recursion swaps two arguments (a Kazoo quirk kept for parity quirk), so it never finds a
//! second page; this implementation pages correctly (listed in `docs/kazoo-compat.md`).

use async_trait::async_trait;

use super::reserved::find_reserved;
use super::{not_available, Carrier, CarrierCtx, CarrierKind, CarrierSpec, Found, SearchQuery};
use crate::error::Error;

/// `knm_reserved_reseller`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReservedReseller;

/// What `knm_reserved_reseller` declares about itself (see [`CarrierSpec`]).
pub(crate) const SPEC: CarrierSpec = CarrierSpec {
    kind: CarrierKind::ReservedReseller,
    module_name: "knm_reserved_reseller",
    is_local: true,
    is_billable: false,
    lookup_cnam: true,
    maximal_prefix_length: 10,
    config_section: None,
    carrier: &ReservedReseller,
};

#[async_trait]
impl Carrier for ReservedReseller {
    fn kind(&self) -> CarrierKind {
        CarrierKind::ReservedReseller
    }

    async fn find_numbers(
        &self,
        query: &SearchQuery,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        match &query.reseller_id {
            None => Err(not_available(CarrierKind::ReservedReseller)),
            Some(reseller) => {
                find_reserved(CarrierKind::ReservedReseller, reseller, query, ctx).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carriers::testindex::{acc, reserved, MemoryIndex};
    use crate::config::Config;

    /// `knm_gen_carrier`: searches the reseller's reservations, all pages.
    #[tokio::test]
    async fn s14_1_reserved_reseller_pages() {
        let config = Config::kazoo_defaults();
        let index = MemoryIndex::with_numbers(
            (0..5).map(|i| reserved(&format!("+1425215101{i}"), acc(1))).collect(),
        )
        .with_page_size(2);
        let ctx = CarrierCtx::new(&config, &index);
        let mut q = SearchQuery::new("+1425", 4);
        q.account_id = Some(acc(2));
        q.reseller_id = Some(acc(1));
        let found = ReservedReseller.find_numbers(&q, &ctx).await.unwrap();
        assert_eq!(found.rows().len(), 4);
        q.reseller_id = None;
        assert!(ReservedReseller.find_numbers(&q, &ctx).await.is_err());
    }
}

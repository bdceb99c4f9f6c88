//! `knm_mdn` (`knm_gen_carrier`): mobile numbers (MDNs) provisioned by an external mobile system; nothing to
//! search, buy or give back.

use async_trait::async_trait;

use super::{not_available, Carrier, CarrierCtx, CarrierKind, CarrierSpec, Found, SearchQuery};
use crate::error::Error;

/// `knm_mdn`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mdn;

/// What `knm_mdn` declares about itself (see [`CarrierSpec`]).
pub(crate) const SPEC: CarrierSpec = CarrierSpec {
    kind: CarrierKind::Mdn,
    module_name: "knm_mdn",
    is_local: false,
    is_billable: false,
    lookup_cnam: true,
    maximal_prefix_length: 0,
    config_section: None,
    carrier: &Mdn,
};

#[async_trait]
impl Carrier for Mdn {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Mdn
    }

    async fn find_numbers(
        &self,
        _query: &SearchQuery,
        _ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        Err(not_available(CarrierKind::Mdn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carriers::testindex::MemoryIndex;
    use crate::config::Config;

    /// `knm_gen_carrier`: MDN search is `not_available`; info prefix 0; not local, not billable.
    #[tokio::test]
    async fn s14_1_mdn() {
        let config = Config::kazoo_defaults();
        let index = MemoryIndex::default();
        let ctx = CarrierCtx::new(&config, &index);
        assert!(Mdn.find_numbers(&SearchQuery::new("+1555", 1), &ctx).await.is_err());
        assert_eq!(Mdn.info().maximal_prefix_length, 0);
        assert!(!Mdn.is_local() && Mdn.should_lookup_cnam());
    }
}

//! The external carriers Kazoo has and this build does not integrate yet (`knm_other`,
//! `knm_telnyx`, `knm_vitelity`, `knm_voip_innovations`, `knm_bandwidth2`, `knm_simwood`): every
//! call refuses with [`Error::CarrierUnavailable`] ("carrier module not available in this build").
//! Their static properties are Kazoo's (see [`CarrierKind`]). Each gets its own file when its
//! integration lands, and its arm in [`CarrierKind::carrier`] moves there.

use std::collections::BTreeMap;

use async_trait::async_trait;
use e164::E164;

use super::{Carrier, CarrierCtx, CarrierKind, Found, SearchQuery};
use crate::doc::NumberDoc;
use crate::error::Error;

/// An external carrier not available in this build.
#[derive(Debug, Clone, Copy)]
pub struct Unavailable(pub CarrierKind);

impl Unavailable {
    fn refuse(&self) -> Error {
        Error::CarrierUnavailable { module: self.0.module_name().to_owned() }
    }
}

#[async_trait]
impl Carrier for Unavailable {
    fn kind(&self) -> CarrierKind {
        self.0
    }

    async fn find_numbers(
        &self,
        _query: &SearchQuery,
        _ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        Err(self.refuse())
    }

    async fn acquire_number(
        &self,
        _doc: NumberDoc,
        _ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        Err(self.refuse())
    }

    async fn disconnect_number(
        &self,
        _doc: NumberDoc,
        _ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        Err(self.refuse())
    }

    async fn check_numbers(
        &self,
        _numbers: &[E164],
        _ctx: &CarrierCtx<'_>,
    ) -> Result<BTreeMap<String, String>, Error> {
        Err(self.refuse())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carriers::testindex::MemoryIndex;
    use crate::config::Config;

    /// External carriers refuse clearly, with Kazoo's static properties.
    #[tokio::test]
    async fn external_carriers_refuse() {
        let config = Config::kazoo_defaults();
        let index = MemoryIndex::default();
        let ctx = CarrierCtx::new(&config, &index);
        let telnyx = CarrierKind::Telnyx.carrier();
        let err = telnyx.find_numbers(&SearchQuery::new("+1301359", 5), &ctx).await.unwrap_err();
        assert_eq!(err.to_json()["message"], "carrier module not available in this build");
        assert_eq!(err.to_json()["cause"], "knm_telnyx");
        assert!(telnyx.is_number_billable(&NumberDoc::new(
            &E164::new("+14352154006").unwrap(),
            crate::doc::NumberState::Available,
            "knm_telnyx",
            1
        )));
        assert!(!CarrierKind::Vitelity.carrier().should_lookup_cnam());
        assert_eq!(CarrierKind::Bandwidth2.carrier().info().maximal_prefix_length, 3);
    }
}

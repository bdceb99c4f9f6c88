//! Kazoo's placeholder carrier modules (`knm_didww`, `knm_flowroute`, `knm_inteliquent`,
//! `knm_it_vocal`, `knm_level3`, `knm_o1`, `knm_peerless`, `knm_thinq`, `knm_verizon`,
//! `knm_windstream`, `knm_ziron`, 4.3 `knm_voxbone`), with Kazoo's own behaviour (§14.1): search
//! finds nothing, acquire fails `by_carrier not_implemented`, disconnect does nothing.

use async_trait::async_trait;

use super::{Carrier, CarrierCtx, CarrierKind, Found, SearchQuery};
use crate::doc::NumberDoc;
use crate::error::Error;

/// One of Kazoo's placeholder modules.
#[derive(Debug, Clone, Copy)]
pub struct KazooStub(pub CarrierKind);

#[async_trait]
impl Carrier for KazooStub {
    fn kind(&self) -> CarrierKind {
        self.0
    }

    async fn find_numbers(
        &self,
        _query: &SearchQuery,
        _ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        Ok(Found::Numbers(Vec::new()))
    }

    async fn acquire_number(
        &self,
        doc: NumberDoc,
        _ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        Err(Error::ByCarrier {
            module: self.0.module_name().to_owned(),
            reason: "not_implemented".into(),
            number: doc.id.to_string(),
        })
    }
}

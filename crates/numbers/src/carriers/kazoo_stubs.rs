//! Kazoo's placeholder carrier modules (`knm_didww`, `knm_flowroute`, `knm_inteliquent`,
//! `knm_it_vocal`, `knm_level3`, `knm_o1`, `knm_peerless`, `knm_thinq`, `knm_verizon`,
//! `knm_windstream`, `knm_ziron`, 4.3 `knm_voxbone`), with Kazoo's own behaviour (`knm_gen_carrier`): search
//! finds nothing, acquire fails `by_carrier not_implemented`, disconnect does nothing.

use async_trait::async_trait;

use super::{Carrier, CarrierCtx, CarrierKind, CarrierSpec, Found, SearchQuery};
use crate::doc::NumberDoc;
use crate::error::Error;

/// One of Kazoo's placeholder modules.
#[derive(Debug, Clone, Copy)]
pub struct KazooStub(pub CarrierKind);

/// The spec of a placeholder module: external, billable, looks CNAM up, prefix length 3, no
/// settings of its own.
macro_rules! stub_spec {
    ($(#[$doc:meta] $name:ident: $kind:ident = $module:literal;)*) => {$(
        #[$doc]
        pub(crate) const $name: CarrierSpec = CarrierSpec {
            kind: CarrierKind::$kind,
            module_name: $module,
            is_local: false,
            is_billable: true,
            lookup_cnam: true,
            maximal_prefix_length: 3,
            config_section: None,
            carrier: &KazooStub(CarrierKind::$kind),
        };
    )*};
}

stub_spec! {
    /// `knm_didww`.
    DIDWW: Didww = "knm_didww";
    /// `knm_flowroute`.
    FLOWROUTE: Flowroute = "knm_flowroute";
    /// `knm_inteliquent`.
    INTELIQUENT: Inteliquent = "knm_inteliquent";
    /// `knm_it_vocal`.
    IT_VOCAL: ItVocal = "knm_it_vocal";
    /// `knm_level3`.
    LEVEL3: Level3 = "knm_level3";
    /// `knm_o1`.
    O1: O1 = "knm_o1";
    /// `knm_peerless`.
    PEERLESS: Peerless = "knm_peerless";
    /// `knm_thinq`.
    THINQ: Thinq = "knm_thinq";
    /// `knm_verizon`.
    VERIZON: Verizon = "knm_verizon";
    /// `knm_windstream`.
    WINDSTREAM: Windstream = "knm_windstream";
    /// `knm_ziron`.
    ZIRON: Ziron = "knm_ziron";
    /// `knm_voxbone` (Kazoo 4.3).
    VOXBONE: Voxbone = "knm_voxbone";
}

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

//! `knm_local` (`knm_gen_carrier`): numbers already in the system's number databases, state `available`,
//! module `knm_local`; nothing to buy or give back.

use async_trait::async_trait;

use super::{
    not_available, Carrier, CarrierCtx, CarrierKind, CarrierSpec, Found, FoundNumber, SearchQuery,
};
use crate::error::Error;

/// `knm_local`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

/// The search `knm_local` and `knm_inventory` share: needs an account, a `+` prefix of at least 5
/// characters (one number database); pages through the index until `quantity` numbers are found
/// or it runs dry. Rows carry the numbers' real state and module.
pub(crate) async fn find_in_number_db(
    kind: CarrierKind,
    query: &SearchQuery,
    ctx: &CarrierCtx<'_>,
) -> Result<Found, Error> {
    if query.account_id.is_none() || !query.prefix.starts_with('+') || query.prefix.len() < 5 {
        return Err(not_available(kind));
    }
    let mut rows = Vec::new();
    let mut skip = query.offset;
    while rows.len() < query.quantity {
        let want = query.quantity - rows.len();
        let page =
            ctx.index.available_by_module(kind.module_name(), &query.prefix, skip, want).await?;
        let got = page.len();
        skip += got;
        // Kazoo's view upper bound is not prefix-limited (`knm_gen_carrier` quirk): we keep only the prefix.
        rows.extend(page.into_iter().filter(|d| d.id.as_str().starts_with(&query.prefix)).map(
            |d| FoundNumber {
                module: CarrierKind::from_module(&d.module_name).unwrap_or(kind),
                state: d.state,
                carrier_data: d.carrier_data,
                number: d.id,
            },
        ));
        if got == 0 {
            break;
        }
    }
    rows.truncate(query.quantity);
    Ok(Found::Numbers(rows))
}

/// What `knm_local` declares about itself (see [`CarrierSpec`]).
pub(crate) const SPEC: CarrierSpec = CarrierSpec {
    kind: CarrierKind::Local,
    module_name: "knm_local",
    is_local: true,
    is_billable: false,
    lookup_cnam: true,
    maximal_prefix_length: 10,
    config_section: None,
    carrier: &Local,
};

#[async_trait]
impl Carrier for Local {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Local
    }

    async fn find_numbers(
        &self,
        query: &SearchQuery,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        find_in_number_db(CarrierKind::Local, query, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carriers::testindex::{acc, avail, MemoryIndex};
    use crate::config::Config;
    use crate::doc::NumberState;

    /// Vector N1: no account → not_available.
    #[tokio::test]
    async fn n1_local_needs_an_account() {
        let config = Config::kazoo_defaults();
        let index = MemoryIndex::default();
        let ctx = CarrierCtx::new(&config, &index);
        let err = Local.find_numbers(&SearchQuery::new("415", 1), &ctx).await.unwrap_err();
        assert!(matches!(err, Error::NotAvailable { .. }), "{err}");
    }

    /// `knm_gen_carrier`: prefix ≥ 5 characters with `+`; paging until quantity; real state; prefix bound.
    #[tokio::test]
    async fn s14_1_local_search() {
        let config = Config::kazoo_defaults();
        let index = MemoryIndex::with_numbers(vec![
            avail("+14158867900", "knm_local"),
            avail("+14158867901", "knm_local"),
            avail("+14158867902", "knm_inventory"),
            avail("+14159990000", "knm_local"),
        ]);
        let ctx = CarrierCtx::new(&config, &index);
        let mut q = SearchQuery::new("+14158", 5);
        q.account_id = Some(acc(2));
        let found = Local.find_numbers(&q, &ctx).await.unwrap();
        let nums: Vec<&str> = found.rows().iter().map(|r| r.number.as_str()).collect();
        assert_eq!(nums, ["+14158867900", "+14158867901"]);
        assert!(found.rows().iter().all(|r| r.state == NumberState::Available));
        q.quantity = 1;
        q.offset = 1;
        let found = Local.find_numbers(&q, &ctx).await.unwrap();
        assert_eq!(found.rows()[0].number.as_str(), "+14158867901");
        q.prefix = "+141".into();
        assert!(Local.find_numbers(&q, &ctx).await.is_err());
    }
}

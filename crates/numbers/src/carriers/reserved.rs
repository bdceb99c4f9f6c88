//! `knm_reserved` (`knm_gen_carrier`): numbers reserved in the searching account's own database (view
//! `numbers/list_reserved`), offered with their real state and module; nothing to buy.

use async_trait::async_trait;

use super::{
    not_available, Carrier, CarrierCtx, CarrierKind, CarrierSpec, Found, FoundNumber, SearchQuery,
};
use crate::account::AccountId;
use crate::error::Error;

/// `knm_reserved`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reserved;

/// The reserved-numbers search of `account` (`knm_reserved:do_find_numbers/5` with `find_more`):
/// pages until `quantity` or the view runs dry; nothing at all → `not_available`.
pub(crate) async fn find_reserved(
    kind: CarrierKind,
    account: &AccountId,
    query: &SearchQuery,
    ctx: &CarrierCtx<'_>,
) -> Result<Found, Error> {
    if !query.prefix.starts_with('+') || query.quantity == 0 {
        return Err(not_available(kind));
    }
    let mut rows = Vec::new();
    let mut skip = query.offset;
    while rows.len() < query.quantity {
        let want = query.quantity - rows.len();
        let page = ctx.index.reserved_in_account(account, &query.prefix, skip, want).await?;
        let got = page.len();
        skip += got;
        rows.extend(page.into_iter().map(|d| FoundNumber {
            module: CarrierKind::from_module(&d.module_name).unwrap_or(kind),
            state: d.state,
            carrier_data: d.carrier_data,
            number: d.id,
        }));
        if got == 0 {
            break;
        }
    }
    if rows.is_empty() {
        return Err(not_available(kind));
    }
    rows.truncate(query.quantity);
    Ok(Found::Numbers(rows))
}

/// What `knm_reserved` declares about itself (see [`CarrierSpec`]).
pub(crate) const SPEC: CarrierSpec = CarrierSpec {
    kind: CarrierKind::Reserved,
    module_name: "knm_reserved",
    is_local: true,
    is_billable: false,
    lookup_cnam: true,
    maximal_prefix_length: 10,
    config_section: None,
    carrier: &Reserved,
};

#[async_trait]
impl Carrier for Reserved {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Reserved
    }

    async fn find_numbers(
        &self,
        query: &SearchQuery,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        match &query.account_id {
            None => Err(not_available(CarrierKind::Reserved)),
            Some(account) => find_reserved(CarrierKind::Reserved, account, query, ctx).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carriers::testindex::{acc, reserved, MemoryIndex};
    use crate::config::Config;
    use crate::doc::NumberState;

    /// `knm_gen_carrier`: reserved numbers of the account itself; none → not_available.
    #[tokio::test]
    async fn s14_1_reserved_search() {
        let config = Config::kazoo_defaults();
        let index = MemoryIndex::with_numbers(vec![
            reserved("+14252151010", acc(2)),
            reserved("+14252151011", acc(3)),
        ]);
        let ctx = CarrierCtx::new(&config, &index);
        let mut q = SearchQuery::new("+1425", 10);
        q.account_id = Some(acc(2));
        let found = Reserved.find_numbers(&q, &ctx).await.unwrap();
        assert_eq!(found.rows().len(), 1);
        assert_eq!(found.rows()[0].number.as_str(), "+14252151010");
        assert_eq!(found.rows()[0].state, NumberState::Reserved);
        q.account_id = Some(acc(1));
        assert!(Reserved.find_numbers(&q, &ctx).await.is_err());
        q.account_id = None;
        assert!(Reserved.find_numbers(&q, &ctx).await.is_err());
    }
}

//! Number search across carriers (`knm_search`, `knm_search.erl`, `knm_carriers.erl`): which carriers are
//! asked, the parallel fan-out with a per-carrier deadline, paging, `check`, and carrier `info`.
//!
//! This is the one module that uses a timer (`tokio::time::timeout`): it is the fan-out, not a
//! lifecycle decision. Results are returned as a value; caching them under a query id for later
//! pages (`knm_search:find/1`) is the caller's business.

use std::collections::BTreeMap;
use std::time::Duration;

use e164::E164;
use serde_json::{json, Map, Value};

use crate::account::AccountId;
use crate::auth::{self, Accounts, AuthBy};
use crate::carriers::{CarrierCtx, CarrierKind, FoundNumber, SearchQuery};
use crate::config::Config;
use crate::error::Error;

/// `knm_carriers:get_available_carriers/1` `get_available_carriers/1`: without both an account and a reseller, the system
/// `carrier_modules`; with both, `knm_reserved`, `knm_reserved_reseller`, `knm_local`, then the
/// reseller's `carrier_modules` (else the system's) minus those three. Names this build does not
/// know are dropped and returned as the second value (Kazoo drops modules it cannot load).
pub fn available_carriers(
    config: &Config,
    account_id: Option<&AccountId>,
    reseller_id: Option<&AccountId>,
    reseller_carrier_modules: Option<&[String]>,
) -> (Vec<CarrierKind>, Vec<String>) {
    let configured = reseller_carrier_modules.unwrap_or(&config.carrier_modules);
    let mut names: Vec<&str> = Vec::new();
    if account_id.is_some() && reseller_id.is_some() {
        let first = ["knm_reserved", "knm_reserved_reseller", "knm_local"];
        names.extend(first);
        names.extend(configured.iter().map(String::as_str).filter(|n| !first.contains(n)));
    } else {
        names.extend(config.carrier_modules.iter().map(String::as_str));
    }
    let mut kinds = Vec::new();
    let mut dropped = Vec::new();
    for name in names {
        match CarrierKind::from_module(name) {
            Some(k) if !kinds.contains(&k) => kinds.push(k),
            Some(_) => {}
            None => dropped.push(name.to_owned()),
        }
    }
    (kinds, dropped)
}

/// How one carrier answered a search.
#[derive(Debug)]
pub enum CarrierOutcome {
    /// It answered with this many rows.
    Answered {
        /// Rows returned.
        rows: usize,
    },
    /// It failed (ignored by the search, `knm_search:find/1`).
    Failed(Error),
    /// It did not answer before `number_search_timeout_ms` (ignored, `knm_search:find/1`).
    TimedOut,
}

/// One carrier's part in a search.
#[derive(Debug)]
pub struct CarrierReport {
    /// The carrier.
    pub module: CarrierKind,
    /// What it did.
    pub outcome: CarrierOutcome,
}

/// What a search found: every row of the carriers that answered in time (sorted by number,
/// identical rows once), and a report per carrier.
#[derive(Debug, Default)]
pub struct SearchResults {
    /// The rows.
    pub rows: Vec<FoundNumber>,
    /// Per carrier, in the order asked.
    pub reports: Vec<CarrierReport>,
}

impl SearchResults {
    /// `knm_search`' result rows `next/1`: `offset` rows skipped, at most `min(quantity, maximum)` rows (the merged
    /// rows of every carrier, not per carrier).
    pub fn window(
        &self,
        offset: usize,
        quantity: usize,
        maximum: usize,
    ) -> impl Iterator<Item = &FoundNumber> {
        self.rows.iter().skip(offset).take(quantity.min(maximum))
    }

    /// [`SearchResults::window`] as the API returns it: `[{"number", "state"}]`.
    pub fn page(&self, offset: usize, quantity: usize, maximum: usize) -> Vec<Value> {
        self.window(offset, quantity, maximum)
            .map(|r| json!({"number": r.number.as_str(), "state": r.state.as_str()}))
            .collect()
    }

    /// `knm_search:discovery/1` `discovery(Num)`: the hit for `number` in state `discovery`, if any.
    pub fn discovery(&self, number: &E164) -> Option<&FoundNumber> {
        self.rows
            .iter()
            .find(|r| &r.number == number && r.state == crate::doc::NumberState::Discovery)
    }
}

/// `knm_search:find/1` `first/1`: asks every carrier in parallel for `min(quantity, maximum_search_quantity)`
/// numbers, each bounded by `number_search_timeout_ms`; errors and timeouts are reported and
/// otherwise ignored.
pub async fn find(
    kinds: &[CarrierKind],
    query: &SearchQuery,
    ctx: &CarrierCtx<'_>,
) -> SearchResults {
    let mut query = query.clone();
    query.quantity = query.quantity.min(ctx.config.maximum_search_quantity);
    let deadline = Duration::from_millis(ctx.config.number_search_timeout_ms);
    let carriers: Vec<_> = kinds.iter().map(|k| k.carrier()).collect();
    let asks = carriers.iter().map(|c| {
        let query = &query;
        async move { tokio::time::timeout(deadline, c.find_numbers(query, ctx)).await }
    });
    let answers = futures::future::join_all(asks).await;
    let mut out = SearchResults::default();
    for (kind, answer) in kinds.iter().zip(answers) {
        let outcome = match answer {
            Ok(Ok(found)) => {
                let rows = found.rows().to_vec();
                let n = rows.len();
                out.rows.extend(rows);
                CarrierOutcome::Answered { rows: n }
            }
            Ok(Err(e)) => CarrierOutcome::Failed(e),
            Err(_) => CarrierOutcome::TimedOut,
        };
        out.reports.push(CarrierReport { module: *kind, outcome });
    }
    out.rows.sort_by(|a, b| a.number.cmp(&b.number));
    out.rows.dedup();
    out
}

/// `knm_carriers:check/1` `check(Numbers)`: duplicates removed; the first carrier whose `check_numbers` answers
/// decides; with none, every number is `"error"`.
pub async fn check(
    numbers: &[E164],
    kinds: &[CarrierKind],
    ctx: &CarrierCtx<'_>,
) -> BTreeMap<String, String> {
    let mut unique: Vec<E164> = Vec::new();
    for n in numbers {
        if !unique.contains(n) {
            unique.push(n.clone());
        }
    }
    if unique.is_empty() {
        return BTreeMap::new();
    }
    for kind in kinds {
        if let Ok(statuses) = kind.carrier().check_numbers(&unique, ctx).await {
            return statuses;
        }
    }
    unique.into_iter().map(|n| (n.into_string(), "error".to_owned())).collect()
}

/// `knm_carriers:info/3` `info(AuthAccountId, AccountId, ResellerId)` over the carriers of that account:
/// `{maximal_prefix_length, usable_carriers, usable_creation_states}`.
pub fn carriers_info(
    kinds: &[CarrierKind],
    accounts: &dyn Accounts,
    auth_by: Option<&AuthBy>,
) -> Value {
    let max = kinds.iter().map(|k| k.maximal_prefix_length()).fold(15, usize::min);
    let usable: Vec<Value> = CarrierKind::ALL
        .into_iter()
        .filter(|k| !matches!(k, CarrierKind::Reserved | CarrierKind::ReservedReseller))
        .map(|k| Value::from(k.module_name().trim_start_matches("knm_")))
        .collect();
    let states: Vec<Value> = auth::allowed_creation_states(accounts, auth_by)
        .into_iter()
        .map(|s| Value::from(s.as_str()))
        .collect();
    let mut m = Map::new();
    m.insert("maximal_prefix_length".into(), Value::from(max));
    m.insert("usable_carriers".into(), Value::Array(usable));
    m.insert("usable_creation_states".into(), Value::Array(states));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tests::{acc, fixture_accounts};
    use crate::carriers::testindex::{avail, MemoryIndex};
    use crate::carriers::{NumberIndex, Pool};
    use crate::doc::NumberDoc;
    use async_trait::async_trait;

    /// `knm_carriers:get_available_carriers/1`: system list without account/reseller; reserved first with both; unknown dropped.
    #[test]
    fn s11_3_available_carriers() {
        let mut config = Config::kazoo_defaults();
        assert_eq!(available_carriers(&config, None, None, None).0, vec![CarrierKind::Local]);
        config.carrier_modules = vec!["knm_inventory".into(), "knm_pacwest".into()];
        let (kinds, dropped) = available_carriers(&config, Some(&acc(3)), Some(&acc(2)), None);
        assert_eq!(
            kinds,
            vec![
                CarrierKind::Reserved,
                CarrierKind::ReservedReseller,
                CarrierKind::Local,
                CarrierKind::Inventory
            ]
        );
        assert_eq!(dropped, vec!["knm_pacwest".to_owned()]);
        let child_modules = vec!["knm_local".to_owned(), "knm_bandwidth2".to_owned()];
        let (kinds, _) =
            available_carriers(&config, Some(&acc(3)), Some(&acc(3)), Some(&child_modules));
        assert_eq!(kinds.last(), Some(&CarrierKind::Bandwidth2));
    }

    /// Vectors O1–O5: carrier info.
    #[test]
    fn o1_o5_carriers_info() {
        let accounts = fixture_accounts();
        let master = AuthBy::Account(acc(1));
        let info = carriers_info(&[CarrierKind::Local], &accounts, Some(&master));
        assert_eq!(info["maximal_prefix_length"], 10);
        let info =
            carriers_info(&[CarrierKind::Local, CarrierKind::Bandwidth2], &accounts, Some(&master));
        assert_eq!(info["maximal_prefix_length"], 3);
        let usable = info["usable_carriers"].as_array().unwrap();
        assert!(usable.contains(&Value::from("local")));
        assert!(!usable.contains(&Value::from("reserved")));
        for s in ["in_service", "reserved", "available"] {
            assert!(info["usable_creation_states"].as_array().unwrap().contains(&Value::from(s)));
        }
        let reseller = AuthBy::Account(acc(2));
        let info = carriers_info(&[CarrierKind::Local], &accounts, Some(&reseller));
        assert_eq!(info["usable_creation_states"], json!(["in_service", "reserved"]));
        let child = AuthBy::Account(acc(3));
        let info = carriers_info(&[CarrierKind::Local], &accounts, Some(&child));
        assert_eq!(info["usable_creation_states"], json!([]));
    }

    /// Vectors O7–O8: check with no numbers, and with carriers that cannot check.
    #[tokio::test]
    async fn o7_o8_check() {
        let config = Config::kazoo_defaults();
        let index = MemoryIndex::default();
        let ctx = CarrierCtx::new(&config, &index);
        assert!(check(&[], &[CarrierKind::Local], &ctx).await.is_empty());
        let nums: Vec<E164> = ["+15551239876", "+15551233322", "+15551239876"]
            .iter()
            .map(|n| E164::new(*n).unwrap())
            .collect();
        let statuses = check(&nums, &[CarrierKind::Local, CarrierKind::Telnyx], &ctx).await;
        assert_eq!(statuses.len(), 2);
        assert!(statuses.values().all(|s| s == "error"));
    }

    /// Vectors N2/N3 analogue and `knm_search:find/1` and `knm_search`' result rows: the fan-out merges, sorts, dedups and pages; a
    /// failing carrier is ignored.
    #[tokio::test]
    async fn s11_1_fan_out_merges_and_pages() {
        let config = Config::kazoo_defaults();
        let index = MemoryIndex::with_numbers(vec![
            avail("+14158867902", "knm_local"),
            avail("+14158867900", "knm_local"),
            avail("+14158867901", "knm_inventory"),
        ]);
        let ctx = CarrierCtx::new(&config, &index);
        let mut q = SearchQuery::new("+1415", 10);
        q.account_id = Some(acc(2));
        let kinds =
            [CarrierKind::Local, CarrierKind::Inventory, CarrierKind::Local, CarrierKind::Telnyx];
        let res = find(&kinds, &q, &ctx).await;
        let nums: Vec<&str> = res.rows.iter().map(|r| r.number.as_str()).collect();
        assert_eq!(nums, ["+14158867900", "+14158867901", "+14158867902"]);
        // knm_telnyx without credentials refuses (config error); the search goes on
        assert!(matches!(res.reports[3].outcome, CarrierOutcome::Failed(Error::Config { .. })));
        assert_eq!(
            res.page(1, 1, 500),
            vec![json!({"number": "+14158867901", "state": "available"})]
        );
        assert_eq!(res.page(0, 10, 2).len(), 2);
        assert!(find(&[], &q, &ctx).await.rows.is_empty());
    }

    /// `knm_search:find/1` and `knm_search`' result rows `maximum_search_quantity`: each carrier is asked for at most the maximum, and
    /// the merged rows of several carriers are cut at the maximum too, whatever the quantity asked.
    #[tokio::test]
    async fn s11_2_maximum_search_quantity_caps_carriers_and_merge() {
        let mut config = Config::kazoo_defaults();
        config.maximum_search_quantity = 2;
        let index = MemoryIndex::with_numbers(vec![
            avail("+14158867900", "knm_local"),
            avail("+14158867902", "knm_local"),
            avail("+14158867904", "knm_local"),
            avail("+14158867901", "knm_inventory"),
            avail("+14158867903", "knm_inventory"),
            avail("+14158867905", "knm_inventory"),
        ]);
        let ctx = CarrierCtx::new(&config, &index);
        let mut q = SearchQuery::new("+1415", 10);
        q.account_id = Some(acc(2));
        let res = find(&[CarrierKind::Local, CarrierKind::Inventory], &q, &ctx).await;
        for report in &res.reports {
            assert!(
                matches!(report.outcome, CarrierOutcome::Answered { rows: 2 }),
                "{:?} was asked for more than the maximum: {:?}",
                report.module,
                report.outcome
            );
        }
        // two carriers × two rows each: four merged rows, of which the maximum is returned
        assert_eq!(res.rows.len(), 4);
        let max = config.maximum_search_quantity;
        let nums: Vec<&str> = res.window(0, 10, max).map(|r| r.number.as_str()).collect();
        assert_eq!(nums, ["+14158867900", "+14158867901"]);
        assert_eq!(res.page(1, 10, max).len(), 2);
        // a quantity under the maximum is the cut
        assert_eq!(res.window(0, 1, max).count(), 1);
    }

    /// An index whose pool queries never answer.
    struct Stalled(MemoryIndex);

    #[async_trait]
    impl NumberIndex for Stalled {
        async fn available_by_module(
            &self,
            m: &str,
            p: &str,
            s: usize,
            l: usize,
        ) -> Result<Vec<NumberDoc>, Error> {
            self.0.available_by_module(m, p, s, l).await
        }
        async fn reserved_in_account(
            &self,
            a: &AccountId,
            p: &str,
            s: usize,
            l: usize,
        ) -> Result<Vec<NumberDoc>, Error> {
            self.0.reserved_in_account(a, p, s, l).await
        }
        async fn available_in_pool(
            &self,
            _: Pool,
            _: &AccountId,
            _: &str,
            _: usize,
            _: usize,
        ) -> Result<Vec<E164>, Error> {
            std::future::pending().await
        }
        async fn update_pool_doc(
            &self,
            _: Pool,
            _: &E164,
            _: Map<String, Value>,
        ) -> Result<(), Error> {
            std::future::pending().await
        }
    }

    /// `knm_search:find/1`: a carrier that misses the deadline is reported and the others' rows are returned
    /// (virtual time: the deadline elapses without waiting).
    #[tokio::test(start_paused = true)]
    async fn s11_1_deadline() {
        let config = Config::kazoo_defaults();
        let index = Stalled(MemoryIndex::with_numbers(vec![avail("+14158867900", "knm_local")]));
        let ctx = CarrierCtx::new(&config, &index);
        let mut q = SearchQuery::new("+1415", 10);
        q.account_id = Some(acc(2));
        let res = find(&[CarrierKind::Managed, CarrierKind::Local], &q, &ctx).await;
        assert!(matches!(res.reports[0].outcome, CarrierOutcome::TimedOut));
        assert!(matches!(res.reports[1].outcome, CarrierOutcome::Answered { rows: 1 }));
        assert_eq!(res.rows.len(), 1);
    }
}

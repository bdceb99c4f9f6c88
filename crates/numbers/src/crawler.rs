//! The lifecycle reactor (Kazoo's number crawler (`knm_number_crawler`), `knm_number_crawler.erl`): over every number database, documents
//! in state `deleted` are hard-deleted, `discovery` records older than `discovery_expiry_d` days
//! are deleted (unless they carry a purchase whose outcome is unknown), and `aging` numbers whose `pvt_modified` is more than `aging_expiry_d` days old
//! become `available` (and `pvt_modified` becomes now). A number carrying a purchase whose
//! outcome is unknown is reconciled: the carrier is asked again, and the number lands
//! `in_service` for the account that was buying it, or the record is released
//! ([`NumberStore::reconcile_pending`]).
//!
//! Every action is a compare-and-swap on the `_rev` that was read: when another instance (or a
//! user) changed the document in between, the write is refused, the crawler re-reads and checks
//! again, so two crawlers running at once never apply one action twice and never undo a newer
//! change. The timestamps come from the documents only, so [`Crawler::run_once`] takes `now` and
//! is deterministic under test.

use std::time::Duration;

use docstore::{AllDocsQuery, DbName, Rev, SharedStore};
use serde_json::Value;

use crate::doc::{NumberDoc, NumberState, INUM_DB, MANAGED_DB};
use crate::error::Error;
use crate::lifecycle::MAX_ATTEMPTS;
use crate::store::{db_error, number_dbs, NumberStore, Reconciled};

const DAY: i64 = 86_400;
const PAGE: usize = 500;

/// The crawler's settings (system_config `tasks`, the `number_manager` configuration keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrawlerConfig {
    /// `tasks.discovery_expiry_d` (default 1).
    pub discovery_expiry_d: i64,
    /// `tasks.aging_expiry_d` (default 90).
    pub aging_expiry_d: i64,
    /// `tasks.crawler_timer_ms` (default one day): the pause between the daemon's passes.
    pub crawler_timer: Duration,
}

impl Default for CrawlerConfig {
    fn default() -> Self {
        CrawlerConfig {
            discovery_expiry_d: 1,
            aging_expiry_d: 90,
            crawler_timer: Duration::from_secs(86_400),
        }
    }
}

impl CrawlerConfig {
    /// Reads the `tasks` system_config document (`default` section or top level); missing keys
    /// keep their defaults, values of the wrong type are refused.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key.
    pub fn from_tasks_config(doc: &Value) -> Result<Self, Error> {
        let section = doc.get("default");
        let get = |k: &str| section.and_then(|s| s.get(k)).or_else(|| doc.get(k));
        let int = |k: &str, d: i64| -> Result<i64, Error> {
            match get(k) {
                None | Some(Value::Null) => Ok(d),
                Some(v) => v.as_i64().filter(|n| *n >= 0).ok_or_else(|| Error::Config {
                    key: format!("tasks.{k}"),
                    reason: "must be a non-negative integer".into(),
                }),
            }
        };
        let defaults = CrawlerConfig::default();
        Ok(CrawlerConfig {
            discovery_expiry_d: int("discovery_expiry_d", defaults.discovery_expiry_d)?,
            aging_expiry_d: int("aging_expiry_d", defaults.aging_expiry_d)?,
            crawler_timer: Duration::from_millis(
                u64::try_from(int("crawler_timer_ms", 86_400_000)?).unwrap_or(86_400_000),
            ),
        })
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrawlReport {
    /// Number databases crawled.
    pub dbs: usize,
    /// Documents looked at.
    pub docs: usize,
    /// `aging` → `available`.
    pub aged_to_available: Vec<String>,
    /// Expired `discovery` records deleted.
    pub purged_discovery: Vec<String>,
    /// `deleted` documents removed.
    pub purged_deleted: Vec<String>,
    /// Pending purchases the carrier completed: now `in_service` for their buyer.
    pub landed_pending: Vec<String>,
    /// Pending purchases the carrier says failed: their records released.
    pub released_pending: Vec<String>,
    /// Pending purchases still unknown (or that could not be reconciled), left for a later run.
    pub still_pending: Vec<String>,
    /// Actions not taken because the document changed first (re-checked; another instance or a
    /// user got there first).
    pub lost_races: usize,
    /// Documents that could not be read as number documents (left alone).
    pub unreadable: usize,
}

/// Whether a raw number document records a purchase whose outcome is unknown.
fn has_pending_purchase(raw: &Value) -> bool {
    raw.get("pvt_carrier_data")
        .and_then(|d| d.get(crate::carriers::PENDING_ORDER))
        .is_some_and(Value::is_object)
}

/// What to do with one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Delete,
    PurgeDiscovery,
    Age,
}

/// The lifecycle reactor over a store.
#[derive(Clone)]
pub struct Crawler {
    store: SharedStore,
    config: CrawlerConfig,
}

impl Crawler {
    /// A crawler over `store`.
    pub fn new(store: SharedStore, config: CrawlerConfig) -> Self {
        Crawler { store, config }
    }

    /// A crawler configured from `system_config/tasks` (defaults when missing).
    ///
    /// # Errors
    /// A storage failure or a badly typed setting.
    pub async fn from_store(store: SharedStore) -> Result<Self, Error> {
        let sys = docstore::naming::system_config_db();
        let config = match store.get(&sys, "tasks").await {
            Ok(Some(doc)) => CrawlerConfig::from_tasks_config(&doc)?,
            Ok(None) | Err(docstore::Error::DbNotFound { .. }) => CrawlerConfig::default(),
            Err(e) => return Err(db_error(&e)),
        };
        Ok(Crawler::new(store, config))
    }

    fn action(&self, doc: &NumberDoc, now: i64) -> Option<Action> {
        match doc.state {
            NumberState::Deleted => Some(Action::Delete),
            // A discovery record carrying a purchase whose outcome is unknown is kept: it is what
            // the next buy of the number resumes the carrier's order from.
            NumberState::Discovery
                if doc.modified + self.config.discovery_expiry_d * DAY < now
                    && !doc.carrier_data.contains_key(crate::carriers::PENDING_ORDER) =>
            {
                Some(Action::PurgeDiscovery)
            }
            NumberState::Aging if doc.modified + self.config.aging_expiry_d * DAY < now => {
                Some(Action::Age)
            }
            _ => None,
        }
    }

    /// One pass over every number database (pools excluded) at time `now` (Gregorian seconds).
    ///
    /// # Errors
    /// A storage failure other than a lost race (listing, reading, writing).
    pub async fn run_once(&self, now: i64) -> Result<CrawlReport, Error> {
        let mut report = CrawlReport::default();
        let mut numbers = None;
        for db in number_dbs(&self.store).await? {
            if db.as_str() == MANAGED_DB || db.as_str() == INUM_DB {
                continue;
            }
            report.dbs += 1;
            self.crawl_db(&db, now, &mut report, &mut numbers).await?;
        }
        Ok(report)
    }

    async fn crawl_db(
        &self,
        db: &DbName,
        now: i64,
        report: &mut CrawlReport,
        numbers: &mut Option<NumberStore>,
    ) -> Result<(), Error> {
        let mut query =
            AllDocsQuery { include_docs: true, limit: Some(PAGE), ..Default::default() };
        loop {
            let page = match self.store.all_docs(db, &query).await {
                Ok(p) => p,
                Err(docstore::Error::DbNotFound { .. }) => return Ok(()),
                Err(e) => return Err(db_error(&e)),
            };
            for row in &page.rows {
                if row.id.starts_with("_design/") {
                    continue;
                }
                let Some(raw) = &row.doc else { continue };
                report.docs += 1;
                if has_pending_purchase(raw) {
                    self.reconcile(&row.id, report, numbers).await?;
                    continue;
                }
                self.handle(db, raw.clone(), now, report).await?;
            }
            match page.rows.last() {
                Some(last) if page.rows.len() == PAGE => {
                    query.start_key = Some(last.id.clone());
                    query.skip = 1;
                }
                _ => return Ok(()),
            }
        }
    }

    /// Reconciles the pending purchase of `id` through the store layer (built on first use,
    /// with the store's current configs): landed, released or still pending. A refusal is
    /// logged and left for the next run; a storage failure stops the run.
    async fn reconcile(
        &self,
        id: &str,
        report: &mut CrawlReport,
        numbers: &mut Option<NumberStore>,
    ) -> Result<(), Error> {
        let Ok(number) = e164::E164::new(id) else {
            report.unreadable += 1;
            return Ok(());
        };
        let numbers = match numbers {
            Some(n) => n,
            None => numbers.insert(NumberStore::from_store(self.store.clone()).await?),
        };
        match numbers.reconcile_pending(&number).await {
            Ok(Reconciled::Landed) => report.landed_pending.push(id.to_owned()),
            Ok(Reconciled::Released(reason)) => {
                tracing::info!(number = id, reason, "pending purchase failed at the carrier");
                report.released_pending.push(id.to_owned());
            }
            Ok(Reconciled::StillPending(reason)) => {
                tracing::info!(number = id, reason, "purchase still pending");
                report.still_pending.push(id.to_owned());
            }
            Ok(Reconciled::NotPending) => {}
            Err(err @ Error::Unspecified { .. }) => return Err(err),
            Err(err) => {
                tracing::warn!(number = id, error = %err, "pending purchase not reconciled");
                report.still_pending.push(id.to_owned());
            }
        }
        Ok(())
    }

    /// Decides and acts on one document; a refused write re-reads and decides again.
    async fn handle(
        &self,
        db: &DbName,
        mut raw: Value,
        now: i64,
        report: &mut CrawlReport,
    ) -> Result<(), Error> {
        for attempt in 0..MAX_ATTEMPTS {
            let doc = match NumberDoc::from_json(&raw, now) {
                Ok(d) => d,
                Err(_) => {
                    report.unreadable += 1;
                    return Ok(());
                }
            };
            let Some(action) = self.action(&doc, now) else {
                if attempt > 0 {
                    report.lost_races += 1;
                }
                return Ok(());
            };
            let id = doc.id.as_str().to_owned();
            let rev = Rev(doc.rev.clone().unwrap_or_default());
            let result = match action {
                Action::Delete | Action::PurgeDiscovery => {
                    self.store.delete(db, &id, &rev).await.map(drop)
                }
                Action::Age => {
                    let mut aged = doc.clone();
                    aged.state = NumberState::Available;
                    aged.modified = now;
                    self.store.put(db, aged.to_json()).await.map(drop)
                }
            };
            match result {
                Ok(()) => {
                    match action {
                        Action::Delete => report.purged_deleted.push(id),
                        Action::PurgeDiscovery => report.purged_discovery.push(id),
                        Action::Age => report.aged_to_available.push(id),
                    }
                    return Ok(());
                }
                Err(docstore::Error::Conflict { .. } | docstore::Error::DocNotFound { .. }) => {
                    docstore::cas_pause(attempt + 1).await;
                    match self.store.get(db, &id).await {
                        Ok(Some(v)) => raw = v,
                        Ok(None) | Err(docstore::Error::DbNotFound { .. }) => {
                            report.lost_races += 1;
                            return Ok(());
                        }
                        Err(e) => return Err(db_error(&e)),
                    }
                }
                Err(e) => return Err(db_error(&e)),
            }
        }
        report.lost_races += 1;
        Ok(())
    }

    /// The settings (the daemon schedules passes every `crawler_timer`).
    pub fn config(&self) -> &CrawlerConfig {
        &self.config
    }
}

//! The number crawler's schedule in the daemon: a pass now and then every `crawler_timer_ms`
//! (`system_config/tasks`), each pass done only by the instance that holds the crawler lease, so
//! several daemons on one store crawl once per period between them (every action of a pass is a
//! compare-and-swap as well, so even two passes at once would never apply one twice).
//!
//! The lease is document [`LEASE_DOC_ID`] of database [`LEASE_DB`] (created when missing), taken
//! for one period; its holder renews it at its next pass, and when the holder stops, the lease
//! expires and the next daemon to try takes the crawl over.

use std::time::Duration;

use docstore::{DbName, Lease, SharedStore};
use numbers::crawler::Crawler;
use tokio_util::sync::CancellationToken;

/// Switchboard's own system database (leases).
pub(crate) const LEASE_DB: &str = "system_switchboard";
/// The crawler lease's document id.
pub(crate) const LEASE_DOC_ID: &str = "lease_number_crawler";
/// The shortest period between passes, whatever `crawler_timer_ms` says.
const MIN_PERIOD: Duration = Duration::from_secs(1);
/// The counter of crawler passes, by `outcome` (`done`, `failed`, `skipped`: another instance
/// held the lease).
const PASSES: &str = "switchboard_number_crawler_passes_total";

/// Runs `crawler` on its schedule until `shutdown`.
///
/// # Panics
/// Outside a tokio runtime.
pub(crate) fn spawn(
    store: SharedStore,
    crawler: Crawler,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    metrics::describe_counter!(
        PASSES,
        "number crawler passes by outcome (skipped: another instance held the crawler lease)"
    );
    let db = DbName::new(LEASE_DB).expect("a valid database name");
    let lease = Lease::new(store, db, LEASE_DOC_ID, Lease::process_holder());
    // A period of 0 (a hostile or mistaken `tasks` document) must not spin.
    let every = crawler.config().crawler_timer.max(MIN_PERIOD);
    tokio::spawn(async move {
        loop {
            pass(&crawler, &lease, every).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    })
}

/// One scheduled pass, if this instance holds (or takes) the lease.
async fn pass(crawler: &Crawler, lease: &Lease, every: Duration) {
    match lease.try_acquire(every).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!("number crawler: another instance holds the lease; skipping this pass");
            metrics::counter!(PASSES, "outcome" => "skipped").increment(1);
            return;
        }
        Err(err) => {
            tracing::warn!(error = %err, "number crawler: cannot take the lease; skipping this pass");
            metrics::counter!(PASSES, "outcome" => "failed").increment(1);
            return;
        }
    }
    match crawler.run_once(numbers::store::now_gregorian()).await {
        Ok(r) => {
            metrics::counter!(PASSES, "outcome" => "done").increment(1);
            tracing::info!(
                dbs = r.dbs,
                aged = r.aged_to_available.len(),
                discovery = r.purged_discovery.len(),
                deleted = r.purged_deleted.len(),
                lost_races = r.lost_races,
                holder = lease.holder(),
                "number crawler run done"
            );
        }
        Err(e) => {
            metrics::counter!(PASSES, "outcome" => "failed").increment(1);
            tracing::warn!(error = %e, "number crawler run failed");
        }
    }
}

//! The lifecycle reactor (Kazoo's number crawler (`knm_number_crawler`)) against both backends: `run_once(now)` with
//! documents whose timestamps straddle the expiry limits, and two crawlers at once.

mod common;

use common::*;
use docstore::SharedStore;
use e164::E164;
use numbers::crawler::{Crawler, CrawlerConfig};
use numbers::{NumberDoc, NumberState};

const DAY: i64 = 86_400;
const NOW: i64 = 63_800_000_000;

async fn put(store: &SharedStore, number: &str, state: NumberState, modified: i64) {
    let mut doc = NumberDoc::new(&E164::new(number).unwrap(), state, "knm_telnyx", modified);
    doc.modified = modified;
    let dbn = db(&doc.db().unwrap());
    store.ensure_db(&dbn).await.unwrap();
    store.put(&dbn, doc.to_json()).await.unwrap();
}

/// Seeds one area: aging 91 days (→ available), aging 89 days (kept), discovery 2 days (purged),
/// discovery 12 hours (kept), deleted (purged), in_service 1000 days (kept), discovery 2 days
/// with a pending purchase (kept).
async fn seed(store: &SharedStore) -> String {
    let area = fresh_area(store).await;
    put(store, &format!("{area}5550001"), NumberState::Aging, NOW - 91 * DAY).await;
    put(store, &format!("{area}5550002"), NumberState::Aging, NOW - 89 * DAY).await;
    put(store, &format!("{area}5550003"), NumberState::Discovery, NOW - 2 * DAY).await;
    put(store, &format!("{area}5550004"), NumberState::Discovery, NOW - DAY / 2).await;
    put(store, &format!("{area}5550005"), NumberState::Deleted, NOW - DAY).await;
    put(store, &format!("{area}5550006"), NumberState::InService, NOW - 1000 * DAY).await;
    // discovery 2 days with a pending purchase (kept).
    let number = E164::new(format!("{area}5550007")).unwrap();
    let mut pending = NumberDoc::new(&number, NumberState::Discovery, "knm_bandwidth2", NOW);
    pending.modified = NOW - 2 * DAY;
    pending.carrier_data.insert(
        numbers::carriers::PENDING_ORDER.into(),
        serde_json::json!({"order_id": "o-1", "module": "knm_bandwidth2", "since": NOW - 2 * DAY}),
    );
    store.put(&db(&pending.db().unwrap()), pending.to_json()).await.unwrap();
    area
}

fn ours<'a>(ids: &'a [String], area: &str) -> Vec<&'a str> {
    ids.iter().filter(|i| i.starts_with(area)).map(String::as_str).collect()
}

/// Kazoo's number crawler (`knm_number_crawler`) timing rules, and that the aged document is saved available with pvt_modified = now.
async fn run_once_cases(store: SharedStore) {
    let area = seed(&store).await;
    let crawler = Crawler::new(store.clone(), CrawlerConfig::default());
    let r = crawler.run_once(NOW).await.unwrap();
    assert_eq!(ours(&r.aged_to_available, &area), [format!("{area}5550001")]);
    assert_eq!(ours(&r.purged_discovery, &area), [format!("{area}5550003")]);
    assert_eq!(ours(&r.purged_deleted, &area), [format!("{area}5550005")]);
    let dbn = format!("numbers/{area}");
    let aged = raw(&store, &dbn, &format!("{area}5550001")).await.unwrap();
    assert_eq!(aged["pvt_state"], "available");
    assert_eq!(aged["pvt_modified"], NOW);
    assert_eq!(raw(&store, &dbn, &format!("{area}5550002")).await.unwrap()["pvt_state"], "aging");
    assert!(raw(&store, &dbn, &format!("{area}5550003")).await.is_none());
    assert!(raw(&store, &dbn, &format!("{area}5550004")).await.is_some());
    assert!(raw(&store, &dbn, &format!("{area}5550005")).await.is_none());
    assert!(raw(&store, &dbn, &format!("{area}5550006")).await.is_some());
    assert!(raw(&store, &dbn, &format!("{area}5550007")).await.is_some(), "pending purchase kept");
    // A second run finds nothing left to do in this area.
    let r = crawler.run_once(NOW).await.unwrap();
    assert!(ours(&r.aged_to_available, &area).is_empty());
    assert!(
        ours(&r.purged_discovery, &area).is_empty() && ours(&r.purged_deleted, &area).is_empty()
    );
}
both_backends!(run_once, super::run_once_cases);

/// Two crawlers at once: every action is done exactly once between them.
async fn two_instances(store: SharedStore) {
    let area = seed(&store).await;
    let a = Crawler::new(store.clone(), CrawlerConfig::default());
    let b = Crawler::new(store.clone(), CrawlerConfig::default());
    let (ra, rb) = tokio::join!(a.run_once(NOW), b.run_once(NOW));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let count = |f: fn(&numbers::crawler::CrawlReport) -> &Vec<String>| {
        ours(f(&ra), &area).len() + ours(f(&rb), &area).len()
    };
    assert_eq!(count(|r| &r.aged_to_available), 1, "aged once: {ra:?} {rb:?}");
    assert_eq!(count(|r| &r.purged_discovery), 1);
    assert_eq!(count(|r| &r.purged_deleted), 1);
    let aged = raw(&store, &format!("numbers/{area}"), &format!("{area}5550001")).await.unwrap();
    assert!(aged["_rev"].as_str().unwrap().starts_with("2-"), "written once: {aged}");
}
both_backends!(two_crawlers, super::two_instances);

/// `tasks` config: defaults, and values read from the document.
#[test]
fn tasks_config() {
    let c = CrawlerConfig::from_tasks_config(&serde_json::json!({})).unwrap();
    assert_eq!((c.discovery_expiry_d, c.aging_expiry_d), (1, 90));
    let c = CrawlerConfig::from_tasks_config(
        &serde_json::json!({"default": {"aging_expiry_d": 30, "crawler_timer_ms": 1000}}),
    )
    .unwrap();
    assert_eq!(c.aging_expiry_d, 30);
    assert_eq!(c.crawler_timer, std::time::Duration::from_secs(1));
    assert!(CrawlerConfig::from_tasks_config(&serde_json::json!({"aging_expiry_d": "x"})).is_err());
}

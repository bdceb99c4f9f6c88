//! One-off timings of the inbound table's first load (figures in docs/PERFORMANCE.md
//! "## numbers"): `InboundTable::start` over a store that already holds the number documents,
//! until `wait_caught_up`. A load takes seconds to minutes, so this is a plain timed run (median
//! of `INBOUND_LOAD_RUNS` runs), not a criterion benchmark.
//!
//! - embedded: a SQLite store file with `INBOUND_LOAD_N` numbers (default 1,000,000) in
//!   `INBOUND_LOAD_DBS` number databases (default 100). The file is generated once (bulk
//!   inserts, not timed) into `$INBOUND_LOAD_DIR` (default `<tmp>/numbers-inbound-load-<n>-<dbs>`)
//!   and reused by later runs.
//! - couchdb: the same load from the couch-peer server testkit starts (or `COUCHDB_URL`), with
//!   `INBOUND_LOAD_COUCH_N` numbers (default 20,000; 0 skips it) in `INBOUND_LOAD_DBS`
//!   databases; loading the server is not timed.
//!
//! Run: `cargo bench -p numbers --bench inbound_load`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use docstore::{CouchConfig, CouchStore, DbName, EmbeddedStore, SharedStore};
use e164::E164;
use numbers::inbound::{InboundOptions, InboundTable};
use numbers::{AccountId, NumberDoc, NumberState};
use serde_json::{json, Value};

/// The daemon's allocator (crates/switchboard/src/main.rs), so the figures are the daemon's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const OWNER: &str = "account0000000000000000000000002";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

/// Number `i` of `n` spread over `dbs` area codes (`+1201…`, `+1202…`, …): an in-service number
/// owned by an account, used by callflow, with a CNAM feature and a public field, like a real one.
fn number_of(i: usize, dbs: usize) -> E164 {
    let area = 201 + (i % dbs);
    let line = i / dbs;
    E164::new(format!("+1{area}{:07}", line * 3 % 10_000_000)).expect("an E.164 number")
}

fn doc_json(number: &E164) -> Value {
    let mut doc = NumberDoc::new(number, NumberState::InService, "knm_local", 63_700_000_000);
    doc.assigned_to = Some(AccountId::parse(OWNER).unwrap());
    doc.used_by = Some("callflow".into());
    doc.features.insert("cnam".into(), json!({"inbound_lookup": true, "display_name": "ACME"}));
    doc.public.insert("cnam".into(), json!({"inbound_lookup": true, "display_name": "ACME"}));
    doc.public.insert("my_key".into(), json!("my string"));
    doc.to_json()
}

async fn fill(store: &SharedStore, n: usize, dbs: usize) {
    let mut by_db: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for i in 0..n {
        let number = number_of(i, dbs);
        by_db
            .entry(numbers::number_db(number.as_str()).unwrap())
            .or_default()
            .push(doc_json(&number));
    }
    for (db, docs) in by_db {
        let db = DbName::new(db).unwrap();
        store.ensure_db(&db).await.unwrap();
        for chunk in docs.chunks(2000) {
            store.bulk_docs(&db, chunk.to_vec()).await.unwrap();
        }
    }
}

async fn load(store: &SharedStore) -> (Duration, Duration, usize) {
    let cpu = cpu_time();
    let started = Instant::now();
    let table = InboundTable::start(store.clone(), InboundOptions::default());
    table.wait_caught_up().await;
    let took = started.elapsed();
    let cpu = cpu_time() - cpu;
    let len = table.len();
    drop(table);
    (took, cpu, len)
}

/// CPU time (user + system) this process used so far: on a machine shared with other work,
/// a steadier measure of the cost than wall time.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

/// This process's resident memory (`VmRSS`).
fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l[6..].trim().to_owned()))
        .unwrap_or_else(|| "?".into())
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn timed(what: &str, store: &SharedStore, n: usize, runs: usize) {
    let mut times = Vec::new();
    for run in 0..runs {
        let (took, cpu, len) = load(store).await;
        assert_eq!(len, n, "every number in the table");
        eprintln!(
            "{what}: run {run}: {n} numbers in {took:.2?} ({:.0} docs/s; this process's CPU time \
             {cpu:.2?}; resident after dropping the table {}), load average {}",
            n as f64 / took.as_secs_f64(),
            rss(),
            load_avg()
        );
        times.push(took);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "{what}: median of {runs}: {n} numbers loaded in {median:.2?} ({:.0} docs/s), load average {}",
        n as f64 / median.as_secs_f64(),
        load_avg()
    );
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n = env_usize("INBOUND_LOAD_N", 1_000_000);
    let dbs = env_usize("INBOUND_LOAD_DBS", 100);
    let runs = env_usize("INBOUND_LOAD_RUNS", 3);
    rt.block_on(async {
        if n > 0 {
            let dir =
                std::env::var_os("INBOUND_LOAD_DIR").map(PathBuf::from).unwrap_or_else(|| {
                    std::env::temp_dir().join(format!("numbers-inbound-load-{n}-{dbs}"))
                });
            let done = dir.join("complete");
            if !done.exists() {
                let _ = std::fs::remove_dir_all(&dir);
                let started = Instant::now();
                let store: SharedStore = Arc::new(EmbeddedStore::open(&dir).unwrap());
                fill(&store, n, dbs).await;
                std::fs::write(&done, b"").unwrap();
                eprintln!(
                    "embedded: generated {n} numbers in {dbs} dbs in {:.1?} (not timed)",
                    started.elapsed()
                );
            }
            let store: SharedStore = Arc::new(EmbeddedStore::open(&dir).unwrap());
            timed("embedded", &store, n, runs).await;
        }
        let couch_n = env_usize("INBOUND_LOAD_COUCH_N", 20_000);
        if couch_n > 0 {
            let server = testkit::CouchServer::shared();
            let config = CouchConfig::from_url(&server.url_with_credentials()).unwrap();
            let store: SharedStore = Arc::new(CouchStore::new(config).unwrap());
            let started = Instant::now();
            fill(&store, couch_n, dbs.min(couch_n)).await;
            eprintln!(
                "couchdb: loaded {couch_n} numbers into couch-peer in {:.1?} (not timed)",
                started.elapsed()
            );
            timed("couchdb", &store, couch_n, runs).await;
        }
    });
}

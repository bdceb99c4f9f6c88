//! Live-reload measurements of the routing reactor against a private couch-peer (testkit):
//!
//! 1. change-to-live latency: from just before a `PUT` of an edited offnet resource to the
//!    first route answer that shows the edit, over `EDITS` edits, with the default 50 ms
//!    debounce and with a 1 ms one (what the debounce costs);
//! 2. resident memory (VmRSS) across 1,000 manual reloads (`Routing::reload(None)`) and 1,000
//!    live edits of a 1,000-resource `offnet`;
//! 3. at 10,000 resources: the change-to-live latency of 60 lone edits (each one `debounce` +
//!    10 ms after the last went live) with the default options and with a 1 ms debounce,
//!    beside the server's own `PUT` → `_changes` latency for the same edits (a second follower
//!    of `offnet` in this process), then `route()` latency (wall and thread CPU time) with no
//!    edits and while 100 edits/s stream in. `REACTOR_LIVE_10K_ONLY=1` runs only this part,
//!    `REACTOR_LIVE_SKIP_10K=1` all but this part.
//!    Its edits go to a resource that parts 1 and 2 never touch ([`LIVE`]): couch-peer's cost
//!    per write grows with the document's revision history (PouchDB reads, merges and rewrites
//!    the whole revision tree, up to 1,000 revisions, on every write and every `_changes` row),
//!    and parts 1 and 2 edit `res-00000` 1,400 times.
//!
//! A `PUT` answered 409 (a conflict on a document only this bench writes) re-reads the document:
//! if it already holds the bench's body the write is taken as done, if not it is made again over
//! the current `_rev`; each part prints how many of each it had.
//!
//! Run: `cargo bench -p stepswitch --bench reactor_live` (prints a table; figures are recorded
//! in docs/PERFORMANCE.md). Needs Node.js for couch-peer, like the tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use docstore::{CouchConfig, CouchStore, DbName, SharedStore};
use futures::StreamExt;
use serde_json::{json, Value};
use stepswitch::reactor::{self, ReactorOptions, Routing};
use stepswitch::RouteRequest;
use testkit::CouchServer;

#[allow(dead_code)]
mod common;
use common::thread_cpu;
use tokio_util::sync::CancellationToken;

/// The daemon's allocator (crates/switchboard/src/main.rs), so the figures are the daemon's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RESOURCES: usize = 1_000;
const EDITS: usize = 200;
const RELOADS: usize = 1_000;

fn resource(i: usize, server: &str) -> Value {
    json!({
        "_id": format!("res-{i:05}"), "pvt_type": "resource", "name": format!("carrier {i}"),
        "weight_cost": if i == 0 || i == LIVE { 1 } else { 2 + i % 50 },
        "rules": [format!("^\\+1(2{:02}\\d{{7}})$", i % 100), format!("^\\+44({i:05}\\d{{5}})$")],
        "gateways": [{"server": server, "enabled": true}]
    })
}

/// 409s on the bench's own `PUT`s: (the document held another body: written again over the
/// re-read `_rev`, the document already held this very body: taken as written).
type Conflicts = (usize, usize);

/// Writes `doc` (an edit of a document only this bench writes) over revision `rev`, which is
/// then the new one. On a 409 it re-reads the document: if it already holds `doc`, the write is
/// done; if not, it writes again over the current `_rev` (up to 5 times). Both are counted in
/// `conflicts`.
async fn put_edit(
    store: &SharedStore,
    db: &DbName,
    mut doc: Value,
    rev: &mut String,
    conflicts: &mut Conflicts,
) {
    let id = doc["_id"].as_str().expect("an _id").to_owned();
    for _ in 0..5 {
        doc["_rev"] = json!(rev);
        match store.put(db, doc.clone()).await {
            Ok(new) => {
                *rev = new.0;
                return;
            }
            Err(docstore::Error::Conflict { .. }) => {
                let mut current = store.get(db, &id).await.expect("re-read").expect("the document");
                *rev = current["_rev"].as_str().expect("a _rev").to_owned();
                // Our own write, already applied (answered 409 all the same), is not made again.
                current.as_object_mut().expect("an object").remove("_rev");
                doc.as_object_mut().expect("an object").remove("_rev");
                if current == doc {
                    conflicts.1 += 1;
                    return;
                }
                conflicts.0 += 1;
            }
            Err(e) => panic!("edit of {id}: {e}"),
        }
    }
    panic!("edit of {id}: 5 conflicts in a row");
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn first_route(routing: &Routing, number: &str) -> Option<String> {
    let answer = routing.route(&RouteRequest::new(number));
    answer.endpoints.first().map(stepswitch::Endpoint::dial_string)
}

/// Waits on the generation counter until `number` routes to a Route containing `server`.
async fn until_live(routing: &Routing, number: &str, server: &str) {
    let mut generations = routing.generations();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !first_route(routing, number).is_some_and(|r| r.contains(server)) {
        let waited = tokio::time::timeout_at(deadline, generations.changed()).await;
        assert!(waited.is_ok(), "edit not live within 60 s");
    }
}

async fn seed(store: &SharedStore, offnet: &DbName) -> Vec<String> {
    store.ensure_db(offnet).await.expect("offnet");
    let docs: Vec<Value> = (0..RESOURCES).map(|i| resource(i, "seed.example.com")).collect();
    let mut revs = Vec::new();
    for item in store.bulk_docs(offnet, docs).await.expect("bulk") {
        revs.push(item.outcome.expect("seeded").0);
    }
    revs
}

async fn latency(store: &SharedStore, debounce: Duration, revs: &mut [String]) -> Vec<Duration> {
    let offnet = docstore::naming::offnet_db();
    let shutdown = CancellationToken::new();
    let mut options = ReactorOptions::defaults();
    options.debounce = debounce;
    let routing = reactor::spawn(store.clone(), options, shutdown.clone());
    let mut generations = routing.generations();
    while !routing.is_caught_up() {
        let _ = tokio::time::timeout(Duration::from_millis(50), generations.changed()).await;
    }
    let mut took = Vec::with_capacity(EDITS);
    let mut conflicts = (0, 0);
    for n in 0..EDITS {
        // Resource 0 is the cheapest for +1200…: weight 1.
        let server = format!("edit-{}-{n}.example.com", debounce.as_millis());
        let started = Instant::now();
        put_edit(store, &offnet, resource(0, &server), &mut revs[0], &mut conflicts).await;
        until_live(&routing, "+12005550100", &server).await;
        took.push(started.elapsed());
    }
    report_conflicts(conflicts);
    shutdown.cancel();
    took.sort();
    took
}

const LARGE: usize = 10_000;
const LARGE_EDITS: usize = 60;
/// The resource part 3 edits: the cheapest for +1299… (weight 1, the others there weigh 51).
const LIVE: usize = LARGE - 1;
const LIVE_NUMBER: &str = "+12995550100";

fn report_conflicts((other, same): Conflicts) {
    if other + same > 0 {
        println!(
            "({} PUTs answered 409: {other} over another body, made again over the re-read _rev; \
             {same} whose body the document already held)",
            other + same
        );
    }
}

/// Route latencies of `numbers`, cycled, on a thread of its own for `span`: per lookup its
/// wall time and this thread's CPU time (which leaves out the waits for a core that the other
/// processes on the two cores cause), the answer dropped inside the timed part.
type Latencies = (Vec<Duration>, Vec<Duration>);

fn lookups(routing: &Routing, span: Duration) -> std::thread::JoinHandle<Latencies> {
    let routing = routing.clone();
    std::thread::spawn(move || {
        let numbers: Vec<String> =
            (0..1_000).map(|k| format!("+12{:02}555{:04}", k % 100, (k * 7) % 10_000)).collect();
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        let started = Instant::now();
        let mut k = 0;
        while started.elapsed() < span {
            k = (k + 1) % numbers.len();
            let (at, at_cpu) = (Instant::now(), thread_cpu());
            drop(std::hint::black_box(routing.route(&RouteRequest::new(numbers[k].as_str()))));
            cpu.push(thread_cpu().saturating_sub(at_cpu));
            wall.push(at.elapsed());
        }
        wall.sort();
        cpu.sort();
        (wall, cpu)
    })
}

fn line(name: &str, took: &[Duration], unit: f64, suffix: &str) {
    println!(
        "| {name} | {:.1} {suffix} | {:.1} {suffix} | {:.1} {suffix} | {} |",
        percentile(took, 0.5).as_secs_f64() * unit,
        percentile(took, 0.99).as_secs_f64() * unit,
        took.last().expect("samples").as_secs_f64() * unit,
        took.len()
    );
}

/// Part 3's edits: `LARGE_EDITS` edits of resource 0, each timed to the first answer that shows
/// it and to its arrival on a `_changes` feed of this process.
async fn edits_to_live(
    store: &SharedStore,
    routing: &Routing,
    revs: &mut [String],
    debounce: Duration,
) {
    let offnet = docstore::naming::offnet_db();
    let mut generations = routing.generations();
    while !routing.is_caught_up() || routing.tables().global.len() < LARGE {
        let _ = tokio::time::timeout(Duration::from_millis(50), generations.changed()).await;
    }
    // The server's own latency: a second follower of `offnet` notes when each change arrives.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut options = docstore::FollowOptions::new("bench-feed");
    options.since = Some(store.db_info(&offnet).await.expect("db info").update_seq);
    let mut feed = docstore::follow(store.clone(), offnet.clone(), options);
    // The first edit waits until this follower is on its live feed (its connection's checks and
    // catch-up are not the server's latency).
    let status = feed.status();
    let feed_task = tokio::spawn(async move {
        while let Some(event) = feed.next().await {
            if let docstore::FollowEvent::Change(change) = event {
                let _ = seen_tx.send((change.rev.0, Instant::now()));
            }
        }
    });
    status.wait_for(|s| s.state == docstore::FollowerState::Live).await;
    let mut live = Vec::with_capacity(LARGE_EDITS);
    let mut fed = Vec::with_capacity(LARGE_EDITS);
    let mut conflicts = (0, 0);
    for n in 0..LARGE_EDITS {
        let server = format!("large-{}-{n}.example.com", debounce.as_millis());
        let started = Instant::now();
        put_edit(store, &offnet, resource(LIVE, &server), &mut revs[LIVE], &mut conflicts).await;
        until_live(routing, LIVE_NUMBER, &server).await;
        live.push(started.elapsed());
        loop {
            let (rev, at) = seen_rx.recv().await.expect("the feed runs");
            if rev == revs[LIVE] {
                fed.push(at - started);
                break;
            }
        }
        // Lone edits, as a person makes them: the next one comes after a quiet period (an edit
        // within `debounce` of the last build waits for it, so that bursts coalesce).
        tokio::time::sleep(debounce + Duration::from_millis(10)).await;
    }
    feed_task.abort();
    live.sort();
    fed.sort();
    println!();
    println!("offnet of {LARGE} resources, {LARGE_EDITS} edits, debounce {debounce:?}");
    println!("| measured | p50 | p99 | max | samples |");
    println!("| --- | --- | --- | --- | --- |");
    line("PUT → route shows the edit", &live, 1e3, "ms");
    line("PUT → the change on `_changes`", &fed, 1e3, "ms");
    report_conflicts(conflicts);
}

/// Part 3: 10,000 resources.
async fn large(store: &SharedStore, revs: &mut Vec<String>) {
    let offnet = docstore::naming::offnet_db();
    let more: Vec<Value> = (revs.len()..LARGE).map(|i| resource(i, "seed.example.com")).collect();
    for chunk in more.chunks(2_000) {
        for item in store.bulk_docs(&offnet, chunk.to_vec()).await.expect("bulk") {
            revs.push(item.outcome.expect("seeded").0);
        }
    }
    let mut reactor = None;
    for debounce in [ReactorOptions::defaults().debounce, Duration::from_millis(1)] {
        if let Some((_, shutdown)) = reactor.take() {
            CancellationToken::cancel(&shutdown);
        }
        let shutdown = CancellationToken::new();
        let mut options = ReactorOptions::defaults();
        options.debounce = debounce;
        let routing = reactor::spawn(store.clone(), options, shutdown.clone());
        edits_to_live(store, &routing, revs, debounce).await;
        reactor = Some((routing, shutdown));
    }
    let (routing, shutdown) = reactor.expect("a reactor");
    let span = Duration::from_secs(5);
    let quiet = lookups(&routing, span).join().expect("lookups");
    let editing = lookups(&routing, span);
    let started = Instant::now();
    let mut n = 0usize;
    let mut conflicts = (0, 0);
    while started.elapsed() < span {
        let i = 1 + n % 100;
        let doc = resource(i, &format!("stream-{n}.example.com"));
        put_edit(store, &offnet, doc, &mut revs[i], &mut conflicts).await;
        n += 1;
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            started + span.mul_f64(n as f64 / 500.0),
        ))
        .await;
    }
    let busy = editing.join().expect("lookups");
    println!();
    println!(
        "route() on {LARGE} resources (debounce 1 ms), 5 s each, {n} edits in the second run (100/s)"
    );
    println!("| lookups | p50 | p99 | max | samples |");
    println!("| --- | --- | --- | --- | --- |");
    line("no edits, wall", &quiet.0, 1e6, "µs");
    line("100 edits/s, wall", &busy.0, 1e6, "µs");
    line("no edits, thread CPU", &quiet.1, 1e6, "µs");
    line("100 edits/s, thread CPU", &busy.1, 1e6, "µs");
    report_conflicts(conflicts);
    shutdown.cancel();
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(server) = CouchServer::start_persistent(dir.path()) else {
        eprintln!("COUCHDB_URL is set: this bench needs a private couch-peer");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store: SharedStore = Arc::new(
            CouchStore::new(CouchConfig::from_url(server.url()).expect("url")).expect("store"),
        );
        let offnet = docstore::naming::offnet_db();
        let mut revs = seed(&store, &offnet).await;
        if std::env::var_os("REACTOR_LIVE_10K_ONLY").is_some() {
            large(&store, &mut revs).await;
            return;
        }

        println!(
            "change-to-live latency, couch-peer, offnet of {RESOURCES} resources, {EDITS} edits"
        );
        println!("| debounce | p50 | p90 | p99 | max |");
        println!("| --- | --- | --- | --- | --- |");
        for debounce in [Duration::from_millis(50), Duration::from_millis(1)] {
            let took = latency(&store, debounce, &mut revs).await;
            println!(
                "| {debounce:?} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
                percentile(&took, 0.5).as_secs_f64() * 1e3,
                percentile(&took, 0.9).as_secs_f64() * 1e3,
                percentile(&took, 0.99).as_secs_f64() * 1e3,
                took.last().expect("samples").as_secs_f64() * 1e3,
            );
        }

        let shutdown = CancellationToken::new();
        let routing = reactor::spawn(store.clone(), ReactorOptions::defaults(), shutdown.clone());
        let mut generations = routing.generations();
        while !routing.is_caught_up() {
            let _ = tokio::time::timeout(Duration::from_millis(50), generations.changed()).await;
        }
        println!();
        println!("VmRSS across {RELOADS} reloads (reload_resources/0) of {RESOURCES} resources");
        println!("| reloads | VmRSS |");
        println!("| --- | --- |");
        println!("| 0 | {} MiB |", rss_kib() / 1024);
        let started = Instant::now();
        for n in 1..=RELOADS {
            routing.reload(None).await.expect("reload");
            if [10, 100, 250, 500, 750, 1000].contains(&n) {
                println!("| {n} | {} MiB |", rss_kib() / 1024);
            }
        }
        let per = started.elapsed() / RELOADS as u32;
        println!("(one reload = full `_all_docs` read + compile + swap: {per:?})");

        println!();
        println!("VmRSS across {RELOADS} live edits (one resource each, default debounce)");
        println!("| edits | VmRSS |");
        println!("| --- | --- |");
        let mut conflicts = (0, 0);
        for n in 1..=RELOADS {
            let server = format!("rss-{n}.example.com");
            put_edit(&store, &offnet, resource(0, &server), &mut revs[0], &mut conflicts).await;
            until_live(&routing, "+12005550100", &server).await;
            if [10, 100, 250, 500, 750, 1000].contains(&n) {
                println!("| {n} | {} MiB |", rss_kib() / 1024);
            }
        }
        report_conflicts(conflicts);
        shutdown.cancel();
        if std::env::var_os("REACTOR_LIVE_SKIP_10K").is_none() {
            large(&store, &mut revs).await;
        }
    });
}

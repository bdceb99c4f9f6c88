//! One-resource changes applied to a compiled table (`stepswitch::rebuild` from the previous
//! table) next to a full compile of the same documents, on the generated resources of
//! `benches/route.rs`: an edit of a gateway (`one_resource_edit`), a document added
//! (`add`), deleted (`delete`), disabled (`disable`), and given another rule (`rule_change`);
//! then lookups (`select_1000`: 1,000 numbers) on a fully compiled table and on one with an
//! appended slot and a tombstone; then the memory a compiled table holds, and the process's
//! resident size across 10,000 incremental edits.
//!
//! Run: `cargo bench -p stepswitch --bench rebuild`; `STEPSWITCH_BENCH_SIZES=10000,100000`
//! picks the sizes (default both), `STEPSWITCH_BENCH_MEMORY_ONLY=1` stops after the table sizes.
//! The edit changes one resource's gateways (a new server), the
//! usual live edit. Memory is counted by a global allocator that wraps the daemon's (mimalloc)
//! and keeps the number of live bytes: a table's size is the live bytes its build added with
//! its parsed documents already held (a reactor holds them anyway).

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{generate, npa_nxx};
use criterion::{BenchmarkId, Criterion};
use serde_json::{json, Value};
use stepswitch::{compile_parsed, rebuild, Config, ParsedResource, RouteTable, Scope};

/// mimalloc (the daemon's allocator, crates/switchboard/src/main.rs) with a count of the bytes
/// currently allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to mimalloc unchanged; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by this allocator with `layout`.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn sizes() -> Vec<usize> {
    match std::env::var("STEPSWITCH_BENCH_SIZES") {
        Ok(list) => list.split(',').filter_map(|it| it.trim().parse().ok()).collect(),
        Err(_) => vec![10_000, 100_000],
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The generated documents as a reactor keeps them: parsed once, ascending `_id`.
fn parsed(docs: &[Value]) -> Vec<Arc<ParsedResource>> {
    let mut docs: Vec<&Value> = docs.iter().collect();
    docs.sort_by(|a, b| a["_id"].as_str().cmp(&b["_id"].as_str()));
    docs.into_iter().map(|doc| Arc::new(ParsedResource::parse(doc))).collect()
}

/// `docs` with the document at `pos` given a new gateway server.
fn edited(
    docs: &[Value],
    list: &[Arc<ParsedResource>],
    pos: usize,
    server: &str,
) -> Arc<ParsedResource> {
    changed(docs, list, pos, |doc| doc["gateways"][0]["server"] = json!(server))
}

/// The document at `pos` of `list` (sorted `docs`) changed by `change`.
fn changed(
    docs: &[Value],
    list: &[Arc<ParsedResource>],
    pos: usize,
    change: impl FnOnce(&mut Value),
) -> Arc<ParsedResource> {
    let id = list_id(list, pos, docs);
    let mut doc = docs.iter().find(|it| it["_id"] == id).expect("the document").clone();
    change(&mut doc);
    Arc::new(ParsedResource::parse(&doc))
}

/// The one-resource changes timed besides the gateway edit, each as the next input list.
fn changes(
    docs: &[Value],
    list: &[Arc<ParsedResource>],
    pos: usize,
) -> Vec<(&'static str, Arc<Vec<Arc<ParsedResource>>>)> {
    // A document the generator would make next: new `_id`, new rules.
    let new_doc = generate(docs.len() + 1).pop().expect("one more document");
    let mut ids: Vec<&str> = docs.iter().filter_map(|it| it["_id"].as_str()).collect();
    ids.sort_unstable();
    let at = ids.partition_point(|it| Some(*it) < new_doc["_id"].as_str());
    let new_doc = Arc::new(ParsedResource::parse(&new_doc));
    let mut added = list.to_vec();
    added.insert(at, new_doc);
    let mut deleted = list.to_vec();
    deleted.remove(pos);
    let disabled = changed(docs, list, pos, |doc| doc["enabled"] = json!(false));
    let ruled = changed(docs, list, pos, |doc| doc["rules"][0] = json!("^\\+1(2125550\\d{3})$"));
    vec![
        ("add", Arc::new(added)),
        ("delete", Arc::new(deleted)),
        ("disable", with(list, pos, &disabled)),
        ("rule_change", with(list, pos, &ruled)),
    ]
}

fn list_id(list: &[Arc<ParsedResource>], pos: usize, docs: &[Value]) -> String {
    // The sorted list's `pos`-th `_id`: the documents sorted the same way.
    let mut ids: Vec<&str> = docs.iter().filter_map(|it| it["_id"].as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids.len(), list.len());
    ids[pos].to_owned()
}

fn with(
    list: &[Arc<ParsedResource>],
    pos: usize,
    doc: &Arc<ParsedResource>,
) -> Arc<Vec<Arc<ParsedResource>>> {
    let mut next = list.to_vec();
    next[pos] = Arc::clone(doc);
    Arc::new(next)
}

fn main() {
    let config = Arc::new(Config::kazoo_defaults());
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    println!(
        "| resources | compiled table (live bytes) | of which regex engines (`warm`) | VmRSS after the compile |"
    );
    println!("| --- | --- | --- | --- |");
    let mut prepared = Vec::new();
    for n in sizes() {
        let docs = generate(n);
        let list = Arc::new(parsed(&docs));
        // The same compile without the engines first, to tell them apart.
        let before = LIVE.load(Ordering::Relaxed);
        let (cold, _) = compile_parsed(Scope::Global, list.iter().map(|it| &**it), &[], &config);
        let cold_bytes = LIVE.load(Ordering::Relaxed) - before;
        cold.warm();
        let engines = LIVE.load(Ordering::Relaxed) - before - cold_bytes;
        drop(cold);
        let before = LIVE.load(Ordering::Relaxed);
        let first = rebuild(None, Scope::Global, &list, &[], &config);
        assert!(first.diagnostics.is_empty() && !first.incremental);
        let table_bytes = LIVE.load(Ordering::Relaxed) - before;
        println!(
            "| {n} | {:.1} MiB | {:.1} MiB | {} MiB |",
            mib(table_bytes),
            mib(engines),
            rss_kib() / 1024
        );
        let pos = n / 2;
        let edits = [
            edited(&docs, &list, pos, "a.example.org"),
            edited(&docs, &list, pos, "b.example.org"),
        ];
        prepared.push((n, docs, list, first.table, pos, edits));
    }
    println!();
    if std::env::var_os("STEPSWITCH_BENCH_MEMORY_ONLY").is_some() {
        return;
    }

    let mut group = criterion.benchmark_group("rebuild");
    group.sample_size(10);
    for (n, docs, list, table, pos, edits) in &prepared {
        let next = with(list, *pos, &edits[0]);
        let check = rebuild(Some(table), Scope::Global, &next, &[], &config);
        assert!(check.incremental, "a gateway edit is applied to its slot");
        group.bench_function(BenchmarkId::new("one_resource_edit", n), |b| {
            b.iter(|| black_box(rebuild(Some(table), Scope::Global, &next, &[], &config)))
        });
        for (name, next) in changes(docs, list, *pos) {
            let check = rebuild(Some(table), Scope::Global, &next, &[], &config);
            assert!(check.incremental, "{name} is applied incrementally");
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| black_box(rebuild(Some(table), Scope::Global, &next, &[], &config)))
            });
        }
        group.bench_function(BenchmarkId::new("full_compile", n), |b| {
            b.iter(|| black_box(rebuild(None, Scope::Global, &next, &[], &config)))
        });
    }
    group.finish();

    // Lookups on the full compile's table and on the table after a rule change (one tombstone,
    // one appended slot with its own patterns and index): 1,000 NANP numbers per iteration.
    let mut group = criterion.benchmark_group("select_1000");
    for (n, docs, list, table, pos, _) in &prepared {
        let (_, ruled) = changes(docs, list, *pos).pop().expect("the rule change");
        let appended = rebuild(Some(table), Scope::Global, &ruled, &[], &config);
        assert!(appended.incremental);
        let numbers: Vec<String> = (0..1_000u64)
            .map(|i| {
                let (npa, nxx) = npa_nxx(i * (*n as u64 / 1_000));
                format!("+1{npa}{nxx}1234")
            })
            .collect();
        let cases = [("full_compile", table), ("with_appended", &appended.table)];
        for (name, table) in cases {
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| {
                    for number in &numbers {
                        black_box(table.select(number, None, &[], None));
                    }
                })
            });
        }
    }
    group.finish();
    criterion.final_summary();

    // Resident size across 10,000 incremental edits of the smallest table (each edit builds on
    // the previous table, as the reactor does; the previous one is dropped).
    let Some((n, _, list, table, pos, edits)) = prepared.into_iter().next() else { return };
    let mut table: RouteTable = table;
    let base_live = LIVE.load(Ordering::Relaxed);
    println!();
    println!("{n} resources, 10,000 one-resource edits applied in turn");
    println!("| edits | live bytes (change since the first table) | VmRSS |");
    println!("| --- | --- | --- |");
    println!("| 0 | +0.0 MiB | {} MiB |", rss_kib() / 1024);
    for edit in 1..=10_000usize {
        let next = with(&list, pos, &edits[edit % 2]);
        let built = rebuild(Some(&table), Scope::Global, &next, &[], &config);
        assert!(built.incremental);
        table = built.table;
        if edit % 2_000 == 0 {
            let live = LIVE.load(Ordering::Relaxed) as f64 - base_live as f64;
            println!(
                "| {edit} | {:+.1} MiB | {} MiB |",
                live / (1024.0 * 1024.0),
                rss_kib() / 1024
            );
        }
    }
    drop(black_box(table));
}

//! Benchmarks of the store layer, the inbound table and bulk generation (figures in
//! docs/PERFORMANCE.md "## numbers"):
//! - `inbound/lookup_1m`: one lookup in a table of 1,000,000 numbers (in 100 number databases),
//!   probes in random order over the whole table, half hits and half misses;
//!   `inbound/with_entry_1m` the same reading the entry's owner and state in place (no reference
//!   count: `InboundTable::with_entry`); `inbound/info_1m` the owner, state, `used_by` and module
//!   from the number's slot (`InboundTable::info`, the entry not read); `inbound/is_on_net_1m`
//!   the on-net flag alone;
//!   `inbound/lookup_1m_1024_hot` the former pattern (1,024 hits, cycled: they stay in cache);
//!   `inbound_cpu/*` the same three measured in this thread's CPU time instead of wall time
//!   (on a shared machine, wall time also counts the time other processes had the core);
//! - `inbound/build_from_docs_100k`: the in-memory build from 100,000 number documents (JSON,
//!   `apply_docs`: one swap);
//! - `inbound/start_embedded_100k`: start a live table over an embedded store holding 100,000
//!   numbers in 10 databases and wait until it has caught up;
//! - `transition/{embedded,couchdb}`: one transition (read + CAS write + account copy);
//! - `generate/couchdb_2000`: `generate_numbers` of 2,000 pool numbers through `_bulk_docs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{
    black_box, criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput,
};
use docstore::{CouchConfig, CouchStore, DbName, EmbeddedStore, SharedStore};
use e164::E164;
use numbers::carriers::Pool;
use numbers::inbound::{InboundOptions, InboundTable};
use numbers::store::{NumberStore, RunOptions};
use numbers::{AccountId, AccountMap, Config, NumberDoc, NumberState, Operation};
use serde_json::Value;

/// The daemon's allocator (crates/switchboard/src/main.rs), so the figures are the daemon's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const OWNER: &str = "account0000000000000000000000002";

fn doc_json(i: u64) -> Value {
    doc_json_for(&E164::new(format!("+1{}", 2_000_000_000 + i * 7)).unwrap())
}

fn doc_json_for(number: &E164) -> Value {
    let mut doc = NumberDoc::new(number, NumberState::InService, "knm_local", 63_700_000_000);
    doc.assigned_to = Some(AccountId::parse(OWNER).unwrap());
    doc.used_by = Some("callflow".into());
    doc.to_json()
}

fn couch() -> SharedStore {
    let server = testkit::CouchServer::shared();
    let config = CouchConfig::from_url(&server.url_with_credentials()).unwrap();
    Arc::new(CouchStore::new(config).unwrap())
}

/// Number `i` of a table spread over 100 number databases (`+1201…` to `+1300…`).
fn spread_number(i: u64) -> E164 {
    E164::new(format!("+1{}{:07}", 201 + i % 100, (i / 100) * 3 % 10_000_000)).unwrap()
}

/// A small xorshift generator: reproducible probe orders without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`, nanoseconds): the time the benchmark
/// actually ran, without the time other processes on this shared machine had the core. Cache and
/// memory contention from them still show.
struct ThreadCpu;

impl ThreadCpu {
    fn now() -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux knows.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        Self::now()
    }

    fn end(&self, start: u64) -> u64 {
        Self::now().saturating_sub(start)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

/// The 1,000,000-number table and 2^20 probes in random order over the whole table: half
/// numbers it has, half numbers of the same databases that it does not have (its line numbers
/// are multiples of 3; the misses are not).
fn lookup_table() -> &'static (InboundTable, Vec<E164>, Vec<E164>) {
    static TABLE: OnceLock<(InboundTable, Vec<E164>, Vec<E164>)> = OnceLock::new();
    TABLE.get_or_init(|| {
        const N: u64 = 1_000_000;
        let docs: Vec<Value> = (0..N).map(|i| doc_json_for(&spread_number(i))).collect();
        let table = InboundTable::new();
        let started = Instant::now();
        table.apply_docs(&docs);
        eprintln!(
            "inbound: built a 1,000,000-number table from documents (apply_docs) in {:?}",
            started.elapsed()
        );
        drop(docs);
        assert_eq!(table.len(), N as usize);
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let probes: Vec<E164> = (0..1u64 << 20)
            .map(|_| {
                let r = rng.next();
                let hit = spread_number(r % N);
                if r >> 63 == 0 {
                    hit
                } else {
                    E164::new(format!("+{}", hit.digits().parse::<u64>().unwrap() + 1)).unwrap()
                }
            })
            .collect();
        let hits = probes.iter().filter(|p| table.lookup(p).is_some()).count();
        eprintln!("inbound: {} probes, {hits} hits", probes.len());
        // The former benchmark's pattern: 1,024 probes, all hits, cycled (they stay in cache).
        let hot: Vec<E164> = (0..1024).map(|i| spread_number(i * 977)).collect();
        (table, probes, hot)
    })
}

fn lookups<M: Measurement>(g: &mut BenchmarkGroup<'_, M>) {
    let (table, probes, hot) = lookup_table();
    let mask = probes.len() - 1;
    let mut k = 0usize;
    g.bench_function("lookup_1m", |b| {
        b.iter(|| {
            k = (k + 1) & mask;
            black_box(table.lookup(&probes[k]))
        })
    });
    g.bench_function("with_entry_1m", |b| {
        b.iter(|| {
            k = (k + 1) & mask;
            black_box(table.with_entry(&probes[k], |e| e.map(|e| (e.state, e.account.is_some()))))
        })
    });
    g.bench_function("info_1m", |b| {
        b.iter(|| {
            k = (k + 1) & mask;
            black_box(table.info(&probes[k]).map(|i| (i.account.is_some(), i.state, i.on_net)))
        })
    });
    g.bench_function("is_on_net_1m", |b| {
        b.iter(|| {
            k = (k + 1) & mask;
            black_box(table.is_on_net(&probes[k]))
        })
    });
    g.bench_function("lookup_1m_1024_hot", |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            black_box(table.lookup(&hot[k]))
        })
    });
}

fn inbound_cpu(c: &mut Criterion<ThreadCpu>) {
    let mut g = c.benchmark_group("inbound_cpu");
    lookups(&mut g);
    g.finish();
}

fn inbound(c: &mut Criterion) {
    let mut g = c.benchmark_group("inbound");
    lookups(&mut g);

    let docs: Vec<Value> = (0..100_000).map(doc_json).collect();
    g.sample_size(10);
    g.throughput(Throughput::Elements(docs.len() as u64));
    g.bench_function("build_from_docs_100k", |b| {
        b.iter(|| {
            let t = InboundTable::new();
            t.apply_docs(&docs);
            black_box(t.len())
        })
    });

    let rt = tokio::runtime::Runtime::new().unwrap();
    let store: SharedStore = Arc::new(EmbeddedStore::in_memory().unwrap());
    rt.block_on(async {
        let mut by_db: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
        for d in docs {
            let id = d["_id"].as_str().unwrap().to_owned();
            by_db.entry(numbers::number_db(&id).unwrap()).or_default().push(d);
        }
        for (db, docs) in by_db {
            let db = DbName::new(db).unwrap();
            store.ensure_db(&db).await.unwrap();
            for chunk in docs.chunks(5000) {
                store.bulk_docs(&db, chunk.to_vec()).await.unwrap();
            }
        }
    });
    g.bench_function("start_embedded_100k", |b| {
        b.to_async(&rt).iter(|| async {
            let t = InboundTable::start(store.clone(), InboundOptions::default());
            t.wait_caught_up().await;
            assert_eq!(t.len(), 100_000);
        })
    });
    g.finish();
}

fn transition(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut g = c.benchmark_group("transition");
    for (name, store) in [
        ("embedded", Arc::new(EmbeddedStore::in_memory().unwrap()) as SharedStore),
        ("couchdb", couch()),
    ] {
        let ns = NumberStore::new(store.clone(), Config::kazoo_defaults(), AccountMap::new());
        let number = E164::new("+19995550100").unwrap();
        rt.block_on(async {
            let owner = AccountId::parse(OWNER).unwrap();
            let _ = store.ensure_db(&DbName::new(owner.db_name()).unwrap()).await;
            let create = Operation::Create(numbers::lifecycle::Create {
                assign_to: Some(AccountId::parse(OWNER).unwrap()),
                ..Default::default()
            });
            let _ = ns.apply(&number, &create, &RunOptions::default()).await;
        });
        let flip = AtomicU64::new(0);
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let app =
                    if flip.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) { "a" } else { "b" };
                let op = Operation::AssignToApp { used_by: Some(app.into()) };
                ns.apply(&number, &op, &RunOptions::default()).await.unwrap()
            })
        });
    }
    g.finish();
}

fn generate(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ns = NumberStore::new(couch(), Config::kazoo_defaults(), AccountMap::new());
    let owner = AccountId::parse(OWNER).unwrap();
    let next = AtomicU64::new(0);
    let mut g = c.benchmark_group("generate");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(2000));
    g.bench_function("couchdb_2000", |b| {
        b.to_async(&rt).iter(|| async {
            let start = 17_000_000_000 + next.fetch_add(2000, Ordering::Relaxed);
            let r = ns.generate(Pool::Managed, &owner, start, 2000, &|_| {}).await.unwrap();
            assert_eq!(r.saved.len(), 2000);
        })
    });
    g.finish();
}

criterion_group!(benches, inbound, transition, generate);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = inbound_cpu
}
criterion_main!(cpu, benches);

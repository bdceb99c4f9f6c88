//! `route()` with 100 pathological rules installed, against the same table without them.
//!
//! Run: `cargo bench -p stepswitch --bench hostile`. The table is 1,000 generated carrier
//! resources (the `route` bench's generator); the pathological set adds 100 resources, one rule
//! each, every one reached by every `+` number: 25 refused at compile time as catastrophic
//! (nested unbounded repetitions around a backreference), 25 that exceed the backtracking
//! budget on long numbers (quarantined on their first such lookup), 25 that exhaust the simple
//! matcher's steps (handed to the linear-time engine), 25 large counted repetitions (linear
//! time, large automata). Numbers: US numbers that hit the carriers, `+` numbers of 11 to 13
//! digits (what the backtracking rules choke on) and 40-digit ones.
//!
//! Before the criterion groups, a latency pass prints per-lookup p50 / p99 / max (wall, per
//! call `Instant`) of 20,000 lookups for both tables, after a first pass over the same numbers
//! whose maximum is printed too (the first lookups pay each slow rule's budget once).

mod common;
#[path = "common/pathological.rs"]
mod pathological;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{generate, mix, npa_nxx};
use criterion::Criterion;
use pathological::pathological;
use serde_json::Value;
use stepswitch::{compile, route, Config, RouteRequest, Scope, Tables};

/// The daemon's allocator, so the figures are the daemon's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CARRIERS: usize = 1_000;
const LOOKUPS: usize = 20_000;

fn numbers() -> Vec<String> {
    (0..LOOKUPS as u64)
        .map(|k| {
            let h = mix(k);
            match k % 4 {
                0 | 1 => {
                    let (npa, nxx) = npa_nxx(h % CARRIERS as u64);
                    format!("+1{npa}{nxx}{:04}", h % 10_000)
                }
                2 => {
                    let digits = 11 + (h % 3) as usize;
                    let body = format!("{:020}", h);
                    format!("+{}", &body[..digits])
                }
                _ => format!("+{:040}", u128::from(h) * u128::from(h | 1)),
            }
        })
        .collect()
}

fn tables(docs: &[Value]) -> Tables {
    let config = Config::kazoo_defaults();
    let (table, _) = compile(Scope::Global, docs, &[], &config);
    table.warm();
    let mut tables = Tables::new(Arc::new(config));
    tables.set_table(Arc::new(table));
    tables
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn latency(name: &str, tables: &Tables, requests: &[RouteRequest]) {
    let mut first = Duration::ZERO;
    for req in requests {
        let started = Instant::now();
        black_box(route(tables, black_box(req)));
        first = first.max(started.elapsed());
    }
    let mut times: Vec<Duration> = requests
        .iter()
        .map(|req| {
            let started = Instant::now();
            black_box(route(tables, black_box(req)));
            started.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "{name}: route() p50 {:.2?} p99 {:.2?} max {:.2?} over {} lookups (first pass max {:.2?}); \
         quarantined {}",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1],
        times.len(),
        first,
        tables.global.quarantined().len(),
    );
}

fn main() {
    let carriers = generate(CARRIERS);
    let mut hostile = carriers.clone();
    hostile.extend(pathological());
    let requests: Vec<RouteRequest> =
        numbers().iter().map(|n| RouteRequest::new(n.as_str())).collect();
    let baseline = tables(&carriers);
    let attacked = tables(&hostile);
    latency("baseline (1,000 carriers)", &baseline, &requests);
    latency("100 pathological rules added", &attacked, &requests);

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("hostile");
    for (name, tables) in [("baseline", &baseline), ("pathological_100", &attacked)] {
        let mut k = 0usize;
        group.bench_function(format!("route/{name}"), |b| {
            b.iter(|| {
                k = (k + 1) % requests.len();
                black_box(route(tables, &requests[k]))
            })
        });
    }
    group.finish();
    criterion.final_summary();
}

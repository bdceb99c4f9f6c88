//! Route lookup and compile benchmarks: the prefix-indexed `RouteTable` against a naive
//! Kazoo-style linear scan of the same generated resources, at 100 / 1k / 10k / 100k resources.
//!
//! Run: `CARGO_TARGET_DIR=target-stepswitch cargo bench -p stepswitch --bench route`.
//! Before the criterion groups, a p99 latency pass prints per-lookup percentiles of `select`,
//! the full `route()` (typed endpoints) and rendering an answer's endpoints to JSON.
//! Criterion groups: `lookup` (`indexed_select`, `indexed_route`, `render_json`, `serde_answer`
//! (the answer through `serde_json`), `write_json` (the answer from the prepared fragments),
//! `naive_linear_scan` up to 10k; this thread's CPU time, see [`ThreadCpu`]) and `compile`
//! (wall time).

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{generate, mix, npa_nxx, thread_cpu};
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkId, Criterion, Throughput};
use e164::Pattern;
use serde_json::Value;
use stepswitch::{
    compile, route, Config, ResourceDoc, RouteAnswer, RouteRequest, RouteTable, Scope, Tables,
};

/// The daemon's allocator (crates/switchboard/src/main.rs), so the figures are the daemon's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ALL_SIZES: [usize; 4] = [100, 1_000, 10_000, 100_000];

/// `STEPSWITCH_BENCH_SIZES=10000,100000` restricts the sizes (for profiling runs).
fn sizes() -> Vec<usize> {
    match std::env::var("STEPSWITCH_BENCH_SIZES") {
        Ok(list) => list.split(',').filter_map(|it| it.trim().parse().ok()).collect(),
        Err(_) => ALL_SIZES.to_vec(),
    }
}
/// The naive scan is measured up to this size (its eager regex compile needs ~GBs beyond).
const NAIVE_MAX: usize = 10_000;

/// Numbers that hit the generated rules (NANP rate centres and international groups).
fn lookup_numbers(n: usize, count: usize) -> Vec<String> {
    (0..count as u64)
        .map(|k| {
            let i = mix(k ^ 0x5555) % n as u64;
            let tail = mix(k) % 10_000;
            match k % 3 {
                0 => {
                    let (npa, nxx) = npa_nxx(i);
                    format!("+1{npa}{nxx}{tail:04}")
                }
                1 => {
                    let (npa, nxx) = npa_nxx(1_000_000 + i / 4);
                    format!("+1{npa}{nxx}{tail:04}")
                }
                _ => format!("+44{:05}{tail:04}", (i / 8) % 100_000),
            }
        })
        .collect()
}

/// Kazoo's in-memory resource (the parts the linear scan reads).
struct NaiveResource {
    weight: i64,
    flags: Vec<String>,
    require_flags: bool,
    ignore_flags: bool,
    classifier: Option<String>,
    rules: Vec<Pattern>,
}

/// Kazoo's load: every doc compiled eagerly, list prepended (cached order = reverse view order).
fn naive_compile(docs: &[Value], config: &Config) -> Vec<NaiveResource> {
    let mut sorted: Vec<ResourceDoc> =
        docs.iter().map(|doc| ResourceDoc::from_json(doc).unwrap().0).collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = Vec::with_capacity(sorted.len());
    for doc in sorted {
        let mut rules = Vec::new();
        for source in &doc.rules {
            if let Ok(pattern) = Pattern::new(source) {
                rules.insert(0, pattern);
            }
        }
        out.insert(
            0,
            NaiveResource {
                weight: doc.weight_cost.unwrap_or(config.default_weight).clamp(1, 100),
                flags: doc.flags,
                require_flags: doc.require_flags,
                ignore_flags: doc.ignore_flags,
                classifier: None,
                rules,
            },
        );
    }
    out
}

/// `stepswitch_resources:endpoints/2` as Kazoo runs it: filter, bucket, scan every rule of
/// every candidate, stable sort by weight. Returns (resource index, matched number).
fn naive_select(
    resources: &[NaiveResource],
    config: &Config,
    number: &str,
    flags: &[String],
) -> Vec<(usize, String)> {
    let filtered: Vec<usize> = if flags.is_empty() {
        (0..resources.len()).filter(|idx| !resources[*idx].require_flags).collect()
    } else {
        let mut kept: Vec<usize> = (0..resources.len())
            .filter(|idx| {
                let res = &resources[*idx];
                res.ignore_flags || flags.iter().all(|flag| res.flags.contains(flag))
            })
            .collect();
        kept.reverse();
        kept
    };
    let class = config.converters.classify(number).map(|it| it.name);
    let mut bucket: Vec<usize> =
        filtered.iter().copied().filter(|idx| resources[*idx].classifier == class).collect();
    if bucket.is_empty() {
        bucket = filtered.into_iter().filter(|idx| resources[*idx].classifier.is_none()).collect();
    }
    bucket.reverse();
    let mut chosen = Vec::new();
    for idx in bucket {
        for rule in &resources[idx].rules {
            if let Some(list) = rule.captures(number) {
                chosen.push((idx, number[stepswitch::select_capture(&list)].to_owned()));
                break;
            }
        }
    }
    chosen.sort_by_key(|(idx, _)| resources[*idx].weight);
    chosen
}

fn tables_for(table: RouteTable, config: &Config) -> Tables {
    let mut tables = Tables::new(Arc::new(config.clone()));
    tables.set_table(Arc::new(table));
    tables
}

/// Criterion measurement of this thread's CPU time per sample. On a shared, oversubscribed
/// machine wall-time means mostly measure how long the process waited for a core (at load 6
/// on 2 cores, about two thirds of the time); the lookup group reports CPU time instead.
/// (One `clock_gettime` per sample, not per iteration.)
struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu()
    }

    fn end(&self, started: Duration) -> Duration {
        thread_cpu().saturating_sub(started)
    }

    fn add(&self, v1: &Duration, v2: &Duration) -> Duration {
        *v1 + *v2
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats nanoseconds of CPU time like criterion's wall-time formatter.
struct CpuFormatter;

impl CpuFormatter {
    fn unit(typical_ns: f64) -> (f64, &'static str) {
        if typical_ns < 1e3 {
            (1.0, "ns")
        } else if typical_ns < 1e6 {
            (1e-3, "µs")
        } else if typical_ns < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        }
    }
}

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical_value: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = CpuFormatter::unit(typical_value);
        values.iter_mut().for_each(|it| *it *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _typical_value: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => {
                *n as f64
            }
        };
        values.iter_mut().for_each(|it| *it = per * 1e9 / *it);
        "/s"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn percentile(sorted: &[Duration], pct: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * pct).round() as usize;
    sorted[idx]
}

/// Percentiles of one timed pass: wall (`Instant`) and this thread's CPU time per call.
struct Pass {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Pass {
    fn new(n: usize) -> Pass {
        Pass { wall: Vec::with_capacity(n), cpu: Vec::with_capacity(n) }
    }

    /// Times `f` once: wall and CPU time.
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let cpu = thread_cpu();
        let started = Instant::now();
        let out = f();
        self.wall.push(started.elapsed());
        self.cpu.push(thread_cpu().saturating_sub(cpu));
        out
    }

    /// Times `f` once, wall time only: no `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` system call
    /// (not served by the vDSO) right before the call, whose kernel entry and exit disturb the
    /// caches and branch predictors the timed call then runs on.
    fn time_wall<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.wall.push(started.elapsed());
        out
    }

    /// `wall p50/p99` in ns.
    fn wall_summary(mut self) -> String {
        self.wall.sort();
        format!(
            "{}/{}",
            percentile(&self.wall, 0.5).as_nanos(),
            percentile(&self.wall, 0.99).as_nanos()
        )
    }

    /// `wall p50/p99 | cpu p50/p99` in ns.
    fn summary(mut self) -> String {
        self.wall.sort();
        self.cpu.sort();
        let pair = |list: &[Duration]| {
            format!("{}/{}", percentile(list, 0.5).as_nanos(), percentile(list, 0.99).as_nanos())
        };
        format!("{:>11} {:>11}", pair(&self.wall), pair(&self.cpu))
    }
}

/// Per-lookup latency percentiles (criterion reports means; the p99 target needs the tail).
///
/// Three separate passes over the same numbers, so no pass runs on caches another one just
/// warmed for the same number: `select` (`RouteTable::select` alone, classification outside
/// the timed call), `route` (the full lookup: normalize, classify, select, build the typed
/// endpoints; dropping the answer is outside the timed call) and `json` (rendering an answer's
/// endpoints to Kazoo's JSON objects with `Endpoint::to_json`, the edge cost).
fn latency_report() {
    let config = Config::kazoo_defaults();
    println!("stepswitch latency report (per lookup, warm tables)");
    println!(
        "wall = Instant per call; cpu = CLOCK_THREAD_CPUTIME_ID per call (excludes preemption); p50/p99 in ns"
    );
    println!(
        "{:<8} {:>10} {:>15} {:>7} | {:>23} | {:>23} | {:>23} | endpoints/lookup | wall-only passes: select route",
        "size",
        "compile_ms",
        "compile_docs_ms",
        "warm_ms",
        "select wall / cpu",
        "route wall / cpu",
        "json wall / cpu"
    );
    for n in sizes() {
        let docs = generate(n);
        let started = Instant::now();
        let (table, diagnostics) = compile(Scope::Global, &docs, &[], &config);
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let typed: Vec<ResourceDoc> =
            docs.iter().map(|doc| ResourceDoc::from_json(doc).unwrap().0).collect();
        let started = Instant::now();
        let (again, _) = stepswitch::compile_docs(Scope::Global, &typed, &[], &config);
        let compile_docs_ms = started.elapsed().as_secs_f64() * 1e3;
        drop(again);
        let started = Instant::now();
        table.warm();
        let warm_ms = started.elapsed().as_secs_f64() * 1e3;
        let tables = tables_for(table, &config);
        let numbers = lookup_numbers(n, 20_000);
        let classes: Vec<Option<&str>> = numbers
            .iter()
            .map(|number| config.converters.classifier_for(number).map(|it| it.name.as_str()))
            .collect();
        let requests: Vec<RouteRequest> =
            numbers.iter().map(|it| RouteRequest::new(it.clone())).collect();
        let flags: Vec<String> = Vec::new();
        let mut select = Pass::new(numbers.len());
        for (number, class) in numbers.iter().zip(&classes) {
            let selected = select.time(|| tables.global.select(number, *class, &flags, None));
            black_box(selected);
        }
        let mut lookup = Pass::new(numbers.len());
        let mut n_endpoints = 0usize;
        for request in &requests {
            let answer = lookup.time(|| route(&tables, request));
            n_endpoints += answer.endpoints.len();
            black_box(answer);
        }
        let mut select_wall = Pass::new(numbers.len());
        for (number, class) in numbers.iter().zip(&classes) {
            let selected =
                select_wall.time_wall(|| tables.global.select(number, *class, &flags, None));
            black_box(selected);
        }
        let mut lookup_wall = Pass::new(numbers.len());
        for request in &requests {
            let answer = lookup_wall.time_wall(|| route(&tables, request));
            black_box(answer);
        }
        let mut json = Pass::new(numbers.len());
        for request in &requests {
            let answer = route(&tables, request);
            let rendered = json.time(|| answer.endpoints_json());
            black_box(rendered);
        }
        println!(
            "{n:<8} {compile_ms:>10.1} {compile_docs_ms:>15.1} {warm_ms:>7.1} | {} | {} | {} | {:.2} | {:>11} {:>11}",
            select.summary(),
            lookup.summary(),
            json.summary(),
            n_endpoints as f64 / numbers.len() as f64,
            select_wall.wall_summary(),
            lookup_wall.wall_summary(),
        );
    }
}

fn bench_lookup(c: &mut Criterion<ThreadCpu>) {
    let config = Config::kazoo_defaults();
    let mut group = c.benchmark_group("lookup");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    for n in sizes() {
        let docs = generate(n);
        let (table, _) = compile(Scope::Global, &docs, &[], &config);
        table.warm();
        let tables = tables_for(table, &config);
        let numbers = lookup_numbers(n, 1024);
        let flags: Vec<String> = Vec::new();
        let mut k = 0usize;
        group.bench_function(BenchmarkId::new("indexed_select", n), |b| {
            b.iter(|| {
                k = (k + 1) % numbers.len();
                let number = &numbers[k];
                let class = config.converters.classifier_for(number).map(|it| it.name.as_str());
                black_box(tables.global.select(number, class, &flags, None))
            })
        });
        let requests: Vec<RouteRequest> =
            numbers.iter().map(|it| RouteRequest::new(it.clone())).collect();
        group.bench_function(BenchmarkId::new("indexed_route", n), |b| {
            b.iter(|| {
                k = (k + 1) % requests.len();
                black_box(route(&tables, &requests[k]))
            })
        });
        let answers: Vec<RouteAnswer> =
            requests.iter().map(|request| route(&tables, request)).collect();
        group.bench_function(BenchmarkId::new("render_json", n), |b| {
            b.iter(|| {
                k = (k + 1) % answers.len();
                black_box(answers[k].endpoints_json())
            })
        });
        // What the API used to send: the answer serialised through `serde_json` (each
        // endpoint's `to_json`), next to the answer written from the prepared fragments.
        group.bench_function(BenchmarkId::new("serde_answer", n), |b| {
            b.iter(|| {
                k = (k + 1) % answers.len();
                black_box(serde_json::to_string(&answers[k]).expect("serialises"))
            })
        });
        group.bench_function(BenchmarkId::new("write_json", n), |b| {
            b.iter(|| {
                k = (k + 1) % answers.len();
                let mut out = String::with_capacity(4096);
                answers[k].write_json(&mut out);
                black_box(out)
            })
        });
        drop(answers);
        if n <= NAIVE_MAX {
            let naive = naive_compile(&docs, &config);
            // Same answers as the index (resources and matched numbers, in order).
            for number in numbers.iter().take(50) {
                let class = config.converters.classifier_for(number).map(|it| it.name.as_str());
                let indexed: Vec<(String, String)> = tables
                    .global
                    .select(number, class, &flags, None)
                    .into_iter()
                    .map(|it| (it.resource.name.clone().unwrap_or_default(), it.matched.to_owned()))
                    .collect();
                let scanned: Vec<String> = naive_select(&naive, &config, number, &flags)
                    .into_iter()
                    .map(|it| it.1)
                    .collect();
                let indexed_numbers: Vec<String> = indexed.into_iter().map(|it| it.1).collect();
                assert_eq!(indexed_numbers, scanned, "{number}");
            }
            group.sample_size(10);
            group.bench_function(BenchmarkId::new("naive_linear_scan", n), |b| {
                b.iter(|| {
                    k = (k + 1) % numbers.len();
                    black_box(naive_select(&naive, &config, &numbers[k], &flags))
                })
            });
            group.sample_size(30);
        }
    }
    group.finish();
}

fn bench_compile(c: &mut Criterion) {
    let config = Config::kazoo_defaults();
    let mut group = c.benchmark_group("compile");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in sizes() {
        let docs = generate(n);
        // The compile alone: the table is dropped outside the timed region, as in the reactor,
        // where the replaced table is freed after the swap (off the build's critical path).
        group.bench_function(BenchmarkId::new("compile", n), |b| {
            b.iter_with_large_drop(|| compile(Scope::Global, &docs, &[], &config))
        });
        // The same with the drop of the table inside the timed region.
        group.bench_function(BenchmarkId::new("compile_and_drop", n), |b| {
            b.iter(|| black_box(compile(Scope::Global, &docs, &[], &config)))
        });
    }
    group.finish();
}

fn main() {
    latency_report();
    if std::env::var_os("STEPSWITCH_BENCH_LATENCY_ONLY").is_some() {
        return;
    }
    let mut lookup = Criterion::default().with_measurement(ThreadCpu).configure_from_args();
    bench_lookup(&mut lookup);
    lookup.final_summary();
    let mut criterion = Criterion::default().configure_from_args();
    bench_compile(&mut criterion);
    criterion.final_summary();
}

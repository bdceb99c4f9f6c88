//! Where `compile()` spends its time: `ResourceDoc::from_json`, `compile_docs`, and the whole
//! `compile()` on the same generated resources as `benches/route.rs` (per resource one
//! rate-centre rule pair of its own, a NANP rule shared by 4, an international rule shared by 8,
//! two gateways).
//!
//! Run: `CARGO_TARGET_DIR=target-lead cargo bench -p stepswitch --bench compile_parts`;
//! `STEPSWITCH_BENCH_SIZES=10000` picks the sizes, `STEPSWITCH_BENCH_ROUNDS=20` the repetitions.
//! Prints the min and median wall time and process CPU time (all threads) of each part;
//! `RAYON_NUM_THREADS=1` gives the serial figures (a plain harness, so that `perf record`
//! sees only compile work).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::generate;
use stepswitch::{compile, compile_docs, Config, ResourceDoc, Scope};

/// The daemon's allocator (crates/switchboard/src/main.rs), so the figures are the daemon's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(list) => list.split(',').filter_map(|it| it.trim().parse().ok()).collect(),
        Err(_) => default.to_vec(),
    }
}

/// CPU time of this process, all threads (rayon's workers included): the work done, which
/// preemption by the other processes on a shared machine does not inflate.
fn process_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// (min wall, median wall, min cpu, median cpu) over `rounds` runs.
fn time<T>(rounds: usize, mut run: impl FnMut() -> T) -> [Duration; 4] {
    let mut wall = Vec::with_capacity(rounds);
    let mut cpu = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let cpu_start = process_cpu();
        let started = Instant::now();
        let out = run();
        wall.push(started.elapsed());
        cpu.push(process_cpu().saturating_sub(cpu_start));
        drop(black_box(out));
    }
    wall.sort();
    cpu.sort();
    [wall[0], wall[rounds / 2], cpu[0], cpu[rounds / 2]]
}

fn main() {
    let config = Config::kazoo_defaults();
    let rounds = env_list("STEPSWITCH_BENCH_ROUNDS", &[15])[0].max(1);
    let only = std::env::var("STEPSWITCH_BENCH_PART").ok();
    let wanted = |part: &str| only.as_deref().is_none_or(|it| it == part);
    println!(
        "part          size     wall min / median ms   cpu (all threads) min / median ms  ({rounds} rounds)"
    );
    for n in env_list("STEPSWITCH_BENCH_SIZES", &[10_000]) {
        let docs = generate(n);
        let typed: Vec<ResourceDoc> =
            docs.iter().map(|doc| ResourceDoc::from_json(doc).unwrap().0).collect();
        let (table, diagnostics) = compile(Scope::Global, &docs, &[], &config);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(table.len(), n);
        drop(table);
        let show = |part: &str, [a, b, c, d]: [Duration; 4]| {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "{part:<13} {n:<8} {:>8.1} / {:<8.1}      {:>8.1} / {:<8.1}",
                ms(a),
                ms(b),
                ms(c),
                ms(d)
            );
        };
        if wanted("from_json") {
            show(
                "from_json",
                time(rounds, || {
                    docs.iter().map(|doc| ResourceDoc::from_json(doc).unwrap()).collect::<Vec<_>>()
                }),
            );
        }
        if wanted("compile_docs") {
            show(
                "compile_docs",
                time(rounds, || compile_docs(Scope::Global, &typed, &[], &config)),
            );
        }
        if wanted("compile") {
            show("compile", time(rounds, || compile(Scope::Global, &docs, &[], &config)));
        }
        if wanted("compile+drop") {
            // What criterion's `compile` figure measures: the table is dropped inside the loop.
            show(
                "compile+drop",
                time(rounds, || drop(black_box(compile(Scope::Global, &docs, &[], &config)))),
            );
        }
    }
}

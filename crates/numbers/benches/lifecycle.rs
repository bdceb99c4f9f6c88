//! Number-core benchmarks: reading (and migrating) a stored number document, and deciding a
//! transition, on Kazoo's own fixture documents.
//!
//! Run: `CARGO_TARGET_DIR=target-numbers cargo bench -p numbers --bench lifecycle`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::Criterion;
use e164::E164;
use numbers::lifecycle::Move;
use numbers::{transition, AccountInfo, AccountMap, AuthBy, Config, Ctx, NumberDoc, Operation};
use serde_json::Value;

const NOW: i64 = 63_800_000_000;

fn fixture(rel: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/numbers").join(rel);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn accounts() -> AccountMap {
    (1..=4)
        .map(|n| {
            fixture(&format!("fixturedb/accounts/docs/account000000000000000000000000{n}.json"))
        })
        .map(|v| AccountInfo::from_json(&v).unwrap())
        .collect()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let current = fixture("priv-fixtures/old_vsn_7.1.json");
    let legacy = fixture("priv-fixtures/old_vsn_5_in.json");
    c.bench_function("from_json current doc", |b| {
        b.iter(|| NumberDoc::from_json(black_box(&current), NOW).unwrap())
    });
    c.bench_function("from_json legacy doc (migrated)", |b| {
        b.iter(|| NumberDoc::from_json(black_box(&legacy), NOW).unwrap())
    });

    let config = Config::kazoo_defaults();
    let accounts = accounts();
    let child =
        AuthBy::Account(numbers::AccountId::parse("account0000000000000000000000003").unwrap());
    let ctx = Ctx {
        config: &config,
        accounts: &accounts,
        auth_by: Some(&child),
        dry_run: false,
        mdn_run: false,
        now: NOW,
    };
    let avail_raw = fixture("fixturedb/numbers%2F%2B1555/docs/%2B15551239876.json");
    let avail = NumberDoc::from_json(&avail_raw, NOW).unwrap();
    let number = E164::new("+15551239876").unwrap();
    let op = Operation::Move(Move {
        assign_to: Some(numbers::AccountId::parse("account0000000000000000000000003").unwrap()),
        ..Move::default()
    });
    c.bench_function("transition move (buy available)", |b| {
        b.iter(|| transition(black_box(&number), Some(black_box(&avail)), &op, &ctx).unwrap())
    });
    c.bench_function("read + decide + to_json (one CAS attempt's CPU)", |b| {
        b.iter(|| {
            let doc = NumberDoc::from_json(black_box(&avail_raw), NOW).unwrap();
            let d = transition(&number, Some(&doc), &op, &ctx).unwrap();
            d.doc.to_json()
        })
    });
    c.final_summary();
}

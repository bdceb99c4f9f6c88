//! Criterion benchmarks of the embedded store: single writes, bulk writes, reads, a one-shot change
//! scan and write-to-live-feed latency, on a store file in a temporary directory.
//!
//! Run: `cargo bench -p docstore --bench embedded`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use docstore::{ChangesQuery, DbName, DocStore, EmbeddedStore, FeedEvent, FeedQuery, Rev, Seq};
use futures::StreamExt;
use serde_json::{json, Value};

fn number_doc(n: usize) -> Value {
    json!({
        "_id": format!("+1415555{n:04}"),
        "pvt_type": "number",
        "pvt_state": "available",
        "pvt_module_name": "knm_local",
        "pvt_features": {"local": {}},
        "pvt_created": 63_637_990_840_u64,
        "pvt_modified": 63_637_990_853_u64,
    })
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = EmbeddedStore::open(dir.path()).expect("the embedded store");
    let db = DbName::new("numbers/+1415").unwrap();
    runtime.block_on(async {
        store.create_db(&db).await.unwrap();
        let docs = (0..1000).map(number_doc).collect();
        store.bulk_docs(&db, docs).await.unwrap();
    });

    let mut group = c.benchmark_group("embedded");
    group.throughput(Throughput::Elements(1));

    // A compare-and-swap update of one document, as a number transition is.
    let mut rev: Rev = runtime.block_on(store.put(&db, json!({"_id": "cas", "n": 0}))).unwrap();
    group.bench_function("put_update", |b| {
        b.iter(|| {
            let doc = json!({"_id": "cas", "_rev": rev.as_str(), "pvt_state": "reserved"});
            rev = runtime.block_on(store.put(&db, doc)).unwrap();
        })
    });

    group.bench_function("get", |b| {
        b.iter(|| runtime.block_on(store.get(&db, "+14155550500")).unwrap().unwrap())
    });

    group.throughput(Throughput::Elements(100));
    let mut batch = 0usize;
    group.bench_function("bulk_docs_100_new", |b| {
        b.iter_batched(
            || {
                batch += 1;
                (0..100)
                    .map(|n| json!({"_id": format!("bulk-{batch}-{n}"), "pvt_type": "number"}))
                    .collect::<Vec<_>>()
            },
            |docs| runtime.block_on(store.bulk_docs(&db, docs)).unwrap(),
            BatchSize::SmallInput,
        )
    });

    let scan_db = DbName::new("numbers/+1212").unwrap();
    runtime.block_on(async {
        store.create_db(&scan_db).await.unwrap();
        store.bulk_docs(&scan_db, (0..1000).map(number_doc).collect()).await.unwrap();
    });
    group.throughput(Throughput::Elements(1000));
    group.bench_function("changes_1000_with_docs", |b| {
        b.iter(|| {
            let page = runtime.block_on(store.changes(&scan_db, &ChangesQuery::since(Seq::zero())));
            assert_eq!(page.unwrap().results.len(), 1000);
        })
    });

    // From `put` returning to the change arriving on an open live feed.
    group.throughput(Throughput::Elements(1));
    let feed_db = DbName::new("offnet").unwrap();
    runtime.block_on(store.create_db(&feed_db)).unwrap();
    let query = FeedQuery {
        since: Seq::now(),
        include_docs: true,
        selector: None,
        heartbeat: Duration::from_secs(60),
        fields: None,
    };
    let mut feed = runtime.block_on(store.open_feed(&feed_db, &query)).unwrap();
    let mut n = 0usize;
    group.bench_function("put_to_live_feed", |b| {
        b.iter(|| {
            n += 1;
            runtime.block_on(async {
                store.put(&feed_db, json!({"_id": format!("r{n}")})).await.unwrap();
                loop {
                    match feed.next().await {
                        Some(Ok(FeedEvent::Change(_))) => break,
                        Some(Ok(_)) => {}
                        other => panic!("feed ended: {other:?}"),
                    }
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

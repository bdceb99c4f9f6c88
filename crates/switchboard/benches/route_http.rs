//! `/v2/stepswitch/route` end to end: the real daemon (release build) against a private
//! couch-peer, measured from an HTTP client on the same machine, before and after 100
//! pathological rules are written into `offnet`.
//!
//! Run: `cargo bench -p switchboard --bench route_http`. `offnet` gets 1,000 carrier resources
//! (one NANP rule each); the pathological set is the one `crates/stepswitch/benches/hostile.rs`
//! installs (catastrophic, budget-exceeding, step-exhausting and large-automaton rules, 25
//! each, every one reached by every `+` number). Each phase sends 4,000 requests from one
//! keep-alive client and then 8 clients × 1,000 at once, numbers cycling through US numbers,
//! 11–13 digit and 40-digit `+` numbers; it prints p50 / p99 / max of the request latency,
//! and of `/healthz` probed alongside the 8 clients.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{CouchServer, Daemon};

#[path = "../../stepswitch/benches/common/pathological.rs"]
mod pathological;
use pathological::pathological;

const CARRIERS: usize = 1_000;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn carriers() -> Vec<Value> {
    (0..CARRIERS)
        .map(|i| {
            let npa = 200 + i / 10;
            let nxx = 200 + (i % 10) * 71;
            json!({"_id": format!("carrier-{i:04}"), "pvt_type": "resource",
                   "weight_cost": 1 + i % 50, "rules": [format!("^\\+1({npa}{nxx}\\d{{4}})$")],
                   "gateways": [{"server": format!("gw{i}.example.net")}]})
        })
        .collect()
}

fn number(k: u64) -> String {
    let h = mix(k);
    match k % 4 {
        0 | 1 => {
            let i = h % CARRIERS as u64;
            format!("+1{}{}{:04}", 200 + i / 10, 200 + (i % 10) * 71, h % 10_000)
        }
        2 => format!("+{}", &format!("{h:020}")[..11 + (h % 3) as usize]),
        _ => format!("+{:040}", u128::from(h) * u128::from(h | 1)),
    }
}

fn bulk(couch: &str, docs: Vec<Value>) {
    let _ = testkit::http_request("PUT", &format!("{couch}/offnet"), None);
    let body = json!({ "docs": docs }).to_string();
    let (status, text) =
        testkit::http_request("POST", &format!("{couch}/offnet/_bulk_docs"), Some(&body))
            .expect("_bulk_docs");
    assert!(status == 201 || status == 200, "_bulk_docs: {status} {text}");
}

async fn wait_resources(client: &reqwest::Client, base: &str, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status: Value = client
            .get(format!("{base}/v2/stepswitch/status"))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status JSON");
        let global = status["data"]["tables"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["scope"] == "global").cloned());
        if global.is_some_and(|g| g["resources"].as_u64() == Some(count)) {
            return;
        }
        assert!(Instant::now() < deadline, "the table never reached {count} resources");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn timed_route(client: &reqwest::Client, base: &str, k: u64) -> Duration {
    let body = json!({"To-DID": number(k)}).to_string();
    let started = Instant::now();
    let resp = client
        .post(format!("{base}/v2/stepswitch/route"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("route");
    // A number no carrier takes is a 404: as much an answer as a route list.
    let status = resp.status();
    assert!(status.is_success() || status == reqwest::StatusCode::NOT_FOUND, "{status}");
    let _ = resp.bytes().await.expect("route body");
    started.elapsed()
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name}: p50 {:.2?} p99 {:.2?} max {:.2?} ({} requests)",
        at(0.5),
        at(0.99),
        times[times.len() - 1],
        times.len()
    );
}

async fn phase(name: &str, base: &str) {
    let client = reqwest::Client::new();
    // Warm-up (and the first lookups that pay each slow rule's budget once).
    for k in 0..400 {
        timed_route(&client, base, k).await;
    }
    let mut times = Vec::new();
    for k in 0..4_000 {
        times.push(timed_route(&client, base, k).await);
    }
    report(&format!("{name}, 1 client"), times);
    let mut tasks = Vec::new();
    for c in 0..8u64 {
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut times = Vec::new();
            for k in 0..1_000 {
                times.push(timed_route(&client, &base, c * 1_000 + k).await);
            }
            times
        }));
    }
    let health_base = base.to_owned();
    let health = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut times = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            let resp = client.get(format!("{health_base}/healthz")).send().await.expect("healthz");
            let _ = resp.bytes().await;
            times.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        times
    });
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    report(&format!("{name}, 8 clients at once"), all);
    report(&format!("{name}, /healthz during the 8 clients"), health.await.expect("healthz"));
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(server) = CouchServer::start_persistent(dir.path()) else {
        eprintln!("COUCHDB_URL is set: this bench needs a private server");
        return;
    };
    let couch = server.url_with_credentials();
    bulk(&couch, carriers());
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["--couch-url", &couch, "serve", "--listen", "127.0.0.1:0"],
        &[],
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        wait_resources(&client, daemon.base(), CARRIERS as u64).await;
        phase("baseline (1,000 carriers)", daemon.base()).await;
        bulk(&couch, pathological());
        wait_resources(&client, daemon.base(), CARRIERS as u64 + 100).await;
        phase("100 pathological rules added", daemon.base()).await;
    });
}

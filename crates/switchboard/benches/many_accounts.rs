//! Many account databases: the real daemon against couch-peer holding N account databases, 2 %
//! of them with one local resource (the rest with one non-resource document), each with its
//! design documents in place (one create and one `_bulk_docs` per database).
//!
//! Run: `MANY_ACCOUNTS=10000 cargo bench -p switchboard --bench many_accounts` (default 1,000).
//! It measures, from the daemon's start: global routing ready (`/healthz` `phase` leaves
//! `starting`) and every account table loaded (`phase` `ready`); then, idle: the daemon's TCP
//! connections to the store (its sockets whose peer is the server's port, from `/proc`), the CPU
//! of the daemon and of the server over 10 s, the daemon's RSS; then a local resource edit →
//! routed, and a new account database with a resource → routed (each from just before the write
//! to the first `/v2/stepswitch/route` answer that shows it).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use docstore::{AccountId, CouchConfig, CouchStore, DbName, DesignKind, SharedStore};
use futures::StreamExt;
use serde_json::{json, Value};
use testkit::{CouchServer, Daemon};

fn account(i: usize) -> AccountId {
    AccountId::new(&format!("{:032x}", 0xacc0_0000_0000u64 + i as u64)).expect("an account id")
}

fn resource(id: &str, server: &str) -> Value {
    json!({"_id": id, "pvt_type": "resource", "name": id, "weight_cost": 10,
           "rules": ["^\\+1(\\d{10})$"], "gateways": [{"server": server, "enabled": true}]})
}

/// Socket inodes of `pid`.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return HashSet::new() };
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            text.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// `(local port, remote port, state, inode)` of every TCP socket of the machine.
fn tcp_sockets() -> Vec<(u16, u16, String, u64)> {
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let port = |addr: &str| {
                addr.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()).unwrap_or(0)
            };
            let inode = f[9].parse().unwrap_or(0);
            out.push((port(f[1]), port(f[2]), f[3].to_owned(), inode));
        }
    }
    out
}

/// The daemon's established connections to the server's port.
fn connections_to(pid: u32, port: u16) -> usize {
    let mine = socket_inodes(pid);
    tcp_sockets()
        .iter()
        .filter(|(_, remote, state, inode)| {
            *remote == port && state == "01" && mine.contains(inode)
        })
        .count()
}

/// The process listening on `port`.
fn listener_pid(port: u16) -> Option<u32> {
    let listening: HashSet<u64> = tcp_sockets()
        .into_iter()
        .filter(|(local, _, state, _)| *local == port && state == "0A")
        .map(|(_, _, _, inode)| inode)
        .collect();
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        socket_inodes(pid).iter().any(|i| listening.contains(i)).then_some(pid)
    })
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn healthz(base: &str) -> Value {
    let (_, body) = testkit::http_request("GET", &format!("{base}/healthz"), None)
        .unwrap_or((0, String::new()));
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// The `Route`s the daemon answers for a local route of `id`.
fn routes(base: &str, id: &AccountId) -> Vec<String> {
    let body = json!({"To-DID": "+14155550100", "Account-ID": id.as_str(),
                      "Hunt-Account-ID": id.as_str()})
    .to_string();
    let url = format!("{base}/v2/stepswitch/route");
    let (_, text) = testkit::http_request("POST", &url, Some(&body)).unwrap_or((0, String::new()));
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let endpoints = answer["data"]["endpoints"].as_array().cloned().unwrap_or_default();
    endpoints.iter().filter_map(|ep| ep["Route"].as_str().map(str::to_owned)).collect()
}

/// Polls until `done`, every 2 ms; the time it took.
fn until(started: Instant, limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    while started.elapsed() < limit {
        if done() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn main() {
    let n: usize = std::env::var("MANY_ACCOUNTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let server = CouchServer::shared();
    let mut config = CouchConfig::from_url(server.url()).expect("url");
    let couch = server.url_with_credentials();
    if let Some((user, password)) = server.credentials() {
        config.user = Some(user);
        config.password = Some(password);
    }
    config.max_requests = 32;
    let port: u16 = server.url().rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    let store: SharedStore = Arc::new(CouchStore::new(config).expect("store"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    let building = Instant::now();
    runtime.block_on(async {
        let offnet = docstore::naming::offnet_db();
        store.ensure_db(&offnet).await.expect("offnet");
        let _ = store.put(&offnet, resource("global", "global.example.net")).await;
        store.ensure_db(&docstore::naming::accounts_db()).await.expect("accounts");
        // As in a cluster Switchboard has run beside before: the design documents are there.
        let design = DesignKind::Account.documents().expect("design documents");
        futures::stream::iter(0..n)
            .map(|i| {
                let (store, design) = (store.clone(), design.clone());
                async move {
                    let db = account(i).db_name();
                    store.create_db(&db).await.expect("account db");
                    let doc = if i % 50 == 0 {
                        resource("local", &format!("a{i}.example.net"))
                    } else {
                        json!({"_id": "user", "pvt_type": "user"})
                    };
                    let docs: Vec<Value> = std::iter::once(doc).chain(design).collect();
                    for item in store.bulk_docs(&db, docs).await.expect("docs") {
                        assert!(item.outcome.is_ok(), "{item:?}");
                    }
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
    });
    println!(
        "{n} account dbs ({} with a resource) built in {:?}",
        n.div_ceil(50),
        building.elapsed()
    );

    let started = Instant::now();
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["--couch-url", &couch, "serve", "--listen", "127.0.0.1:0"],
        &[],
    );
    let base = daemon.base().to_owned();
    let limit = Duration::from_secs(600);
    let global = until(started, limit, || healthz(&base)["phase"] != "starting");
    let all = until(started, limit, || healthz(&base)["phase"] == "ready");
    println!("global routing ready: {global:?}; all account tables loaded: {all:?}");
    let caught_up = until(started, limit, || healthz(&base)["status"] == "ready");
    println!("/healthz ready: {caught_up:?}");

    let pid = daemon.pid();
    let server_pid = listener_pid(port);
    std::thread::sleep(Duration::from_secs(2));
    println!("connections daemon → store: {}", connections_to(pid, port));
    let ticks = |p: Option<u32>| p.map_or(0, cpu_ticks);
    let (d0, s0) = (ticks(Some(pid)), ticks(server_pid));
    std::thread::sleep(Duration::from_secs(10));
    let (d1, s1) = (ticks(Some(pid)), ticks(server_pid));
    // 100 ticks a second (USER_HZ) over 10 s: ticks / 10 is percent of one core.
    println!(
        "idle CPU over 10 s: daemon {:.1} %, server {:.1} %",
        (d1 - d0) as f64 / 10.0,
        (s1 - s0) as f64 / 10.0
    );
    println!("daemon RSS: {:.1} MB", rss_mb(pid));

    // A local resource edit → routed.
    let edited = account(0);
    runtime.block_on(async {
        let db = edited.db_name();
        let mut doc = store.get(&db, "local").await.expect("get").expect("the resource");
        doc["gateways"][0]["server"] = json!("edited.example.net");
        let written = Instant::now();
        store.put(&db, doc).await.expect("edit");
        let took = until(written, Duration::from_secs(60), || {
            routes(&base, &edited).iter().any(|r| r.contains("edited.example.net"))
        });
        println!("local resource edit → routed: {took:?}");

        // A new account database → routed.
        let new = account(n + 1);
        let db: DbName = new.db_name();
        let written = Instant::now();
        store.create_db(&db).await.expect("new account db");
        store.put(&db, resource("local", "new.example.net")).await.expect("resource");
        let took = until(written, Duration::from_secs(60), || {
            routes(&base, &new).iter().any(|r| r.contains("new.example.net"))
        });
        println!("new account db → routed: {took:?}");
    });
    println!("connections daemon → store after the edits: {}", connections_to(pid, port));
    drop(daemon);
}

//! `/v2/stepswitch/route` against `/healthz` under `wrk`: the release daemon against a private
//! couch-peer holding the 10,000 generated resources of `crates/stepswitch/benches`, then in one
//! run `wrk -t1 -c8 --latency` on `/healthz` (the HTTP stack's ceiling), the JSON answer and the
//! text answer (`format=text`), each request a different number (a Lua script cycles through
//! 1,024 numbers that the generated rules route).
//!
//! Before the runs it prints the shape of the answers (endpoints and bytes per JSON answer over
//! the 1,024 numbers), and the machine's load average before and after.
//!
//! Run: `cargo bench -p switchboard --bench route_wrk` (needs `wrk` on the PATH, Debian package
//! `wrk`); `ROUTE_WRK_SECONDS=10` sets each run's duration, `ROUTE_WRK_RESOURCES` the size,
//! `ROUTE_WRK_DAEMON` the `switchboard` binary to measure (default: the one built with this
//! bench), so that two builds can be compared under the same harness.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{CouchServer, Daemon};

#[path = "../../stepswitch/benches/common/mod.rs"]
#[allow(dead_code)]
mod common;
use common::{generate, mix, npa_nxx};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|it| it.parse().ok()).unwrap_or(default)
}

fn bulk(couch: &str, docs: &[Value]) {
    let _ = testkit::http_request("PUT", &format!("{couch}/offnet"), None);
    for chunk in docs.chunks(2_000) {
        let body = json!({ "docs": chunk }).to_string();
        let (status, text) =
            testkit::http_request("POST", &format!("{couch}/offnet/_bulk_docs"), Some(&body))
                .expect("_bulk_docs");
        assert!(status == 201 || status == 200, "_bulk_docs: {status} {text}");
    }
}

fn wait_resources(base: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, text) = testkit::http_request("GET", &format!("{base}/v2/stepswitch/status"), None)
            .expect("status");
        let status: Value = serde_json::from_str(&text).unwrap_or_default();
        let global = status["data"]["tables"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["scope"] == "global").cloned());
        if global.is_some_and(|g| g["resources"].as_u64() == Some(count as u64)) {
            return;
        }
        assert!(Instant::now() < deadline, "the table never reached {count} resources");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `/healthz` answers 200 (every reactor caught up), so that the ceiling measured
/// is the ready reply's, not a 503's; panics with the last reply after two minutes.
fn wait_healthy(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, text) =
            testkit::http_request("GET", &format!("{base}/healthz"), None).expect("healthz");
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "/healthz never became ready: {status} {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Numbers the generated rules route (NANP rate centres, shared NANP groups, UK groups).
fn numbers(n: u64) -> Vec<String> {
    (0..1_024u64)
        .map(|k| {
            let i = mix(k ^ 0x5555) % n;
            let tail = mix(k) % 10_000;
            match k % 3 {
                0 => {
                    let (npa, nxx) = npa_nxx(i);
                    format!("%2B1{npa}{nxx}{tail:04}")
                }
                1 => {
                    let (npa, nxx) = npa_nxx(1_000_000 + i / 4);
                    format!("%2B1{npa}{nxx}{tail:04}")
                }
                _ => format!("%2B44{:05}{tail:04}", (i / 8) % 100_000),
            }
        })
        .collect()
}

fn wrk(base: &str, script: Option<&std::path::Path>, path: &str, seconds: u64) -> String {
    let mut command = Command::new("wrk");
    command.args(["-t1", "-c8", &format!("-d{seconds}s"), "--latency"]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(format!("{base}{path}")).output().expect("wrk on the PATH");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `Requests/sec` and the 99% latency line of a `wrk --latency` report.
fn summary(report: &str) -> String {
    let find = |prefix: &str| {
        report
            .lines()
            .find(|line| line.trim_start().starts_with(prefix))
            .map(|line| line.trim().to_owned())
            .unwrap_or_default()
    };
    format!("{} | {} | {} | {}", find("Requests/sec"), find("50%"), find("99%"), find("Non-2xx"))
}

/// The endpoints and bytes of each number's JSON answer: min, p50, p99 and max of each, and
/// how many numbers no carrier takes.
fn answer_shape(base: &str, list: &[String]) -> String {
    let mut bytes = Vec::with_capacity(list.len());
    let mut endpoints = Vec::with_capacity(list.len());
    let mut unrouted = 0;
    for number in list {
        let url = format!("{base}/v2/stepswitch/route?To-DID={number}");
        let (status, text) = testkit::http_request("GET", &url, None).expect("route");
        let answer: Value = serde_json::from_str(&text).expect("a JSON answer");
        if status != 200 {
            unrouted += 1;
            continue;
        }
        bytes.push(text.len());
        endpoints.push(answer["data"]["endpoints"].as_array().map_or(0, Vec::len));
    }
    let spread = |values: &mut Vec<usize>| {
        values.sort_unstable();
        let at = |q: f64| values.get(((values.len() as f64 - 1.0) * q) as usize).copied();
        format!(
            "min {:?}, p50 {:?}, p99 {:?}, max {:?}",
            at(0.0).unwrap_or_default(),
            at(0.5).unwrap_or_default(),
            at(0.99).unwrap_or_default(),
            at(1.0).unwrap_or_default()
        )
    };
    format!(
        "answers: endpoints {}; bytes {}; {unrouted} of {} numbers unrouted",
        spread(&mut endpoints),
        spread(&mut bytes),
        list.len()
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|it| it.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let n = env_number("ROUTE_WRK_RESOURCES", 10_000) as usize;
    let seconds = env_number("ROUTE_WRK_SECONDS", 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(server) = CouchServer::start_persistent(dir.path()) else {
        eprintln!("COUCHDB_URL is set: this bench needs a private server");
        return;
    };
    let couch = server.url_with_credentials();
    bulk(&couch, &generate(n));
    let binary = std::env::var("ROUTE_WRK_DAEMON")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").into());
    let daemon =
        Daemon::start(&binary, &["--couch-url", &couch, "serve", "--listen", "127.0.0.1:0"], &[]);
    wait_resources(daemon.base(), n);
    wait_healthy(daemon.base());
    let list = numbers(n as u64);
    let script = |extra: &str| {
        let path = dir.path().join(format!("numbers{}.lua", extra.len()));
        let quoted: Vec<String> = list.iter().map(|it| format!("\"{it}\"")).collect();
        let lua = format!(
            "local numbers = {{{}}}\nlocal k = 0\nrequest = function()\n  k = k % #numbers + 1\n  \
             return wrk.format(\"GET\", \"/v2/stepswitch/route?To-DID=\" .. numbers[k] .. \"{extra}\")\nend\n",
            quoted.join(",")
        );
        std::fs::write(&path, lua).expect("lua script");
        path
    };
    let json_script = script("");
    let text_script = script("&format=text");
    // Warm-up: every number once in both forms.
    wrk(daemon.base(), Some(&json_script), "/", 2);
    wrk(daemon.base(), Some(&text_script), "/", 2);
    println!("daemon: {binary}");
    println!("{}", answer_shape(daemon.base(), &list));
    println!("load average before: {}", load_average());
    println!("wrk -t1 -c8 -d{seconds}s --latency, {n} resources in offnet, 1,024 numbers cycled");
    println!("| target | Requests/sec | p50 | p99 | non-2xx |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, script, path) in [
        ("/healthz", None, "/healthz"),
        ("/route JSON", Some(&json_script), "/"),
        ("/route text", Some(&text_script), "/"),
        ("/healthz (again)", None, "/healthz"),
    ] {
        let report = wrk(daemon.base(), script.map(|it| it.as_path()), path, seconds);
        println!("| {name} | {} |", summary(&report));
    }
    println!("load average after: {}", load_average());
}

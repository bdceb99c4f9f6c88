//! A SIP proxy routing real calls through Switchboard: the test server, the daemon, Kamailio
//! with `contrib/kamailio/switchboard.cfg`, and SIPp as carrier gateways and callers, all on
//! free loopback ports.
//!
//! One test, in steps, because every step needs the same running pieces: calls complete via
//! carrier B after carrier A's 503 (and each gateway saw the Request-URI Switchboard gave);
//! a weight change written to the store reorders the carriers with no Kamailio reload; an
//! unroutable number gets 404; with Switchboard stopped, 503. Call counts are fixed and small;
//! every process is stopped when the test ends (or dies with it).
//!
//! Needs `kamailio` (with the `http_client` module) and `sipp`: without them the test says so
//! loudly and passes, except under `CI=true`, where it fails.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{find_program, http_request, require, CouchServer, Daemon, TestProcess};

const NUMBER: &str = "+14155550100";
/// What the carriers' rule captures from [`NUMBER`] (the user part each gateway must see).
const DIALLED: &str = "4155550100";
const UNROUTABLE: &str = "+442079460000";
const WAIT: Duration = Duration::from_secs(60);
const HTTP_CLIENT_MODULE: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules/http_client.so";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A free UDP port on the loopback (bound, then released).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free port").port()
}

/// Waits until something listens on UDP `port`.
fn wait_bound(port: u16, what: &str) {
    let deadline = Instant::now() + WAIT;
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "{what} never bound udp port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The test server's URL with credentials, for plain HTTP writes.
fn couch_url(server: &CouchServer) -> String {
    let mut url = server.url().to_owned();
    if let Some((user, password)) = server.credentials() {
        url = url.replacen("://", &format!("://{user}:{password}@"), 1);
    }
    url
}

/// Writes a carrier resource to `offnet` (replacing the stored revision, if any).
fn put_carrier(couch: &str, id: &str, weight: i64, gateway_port: u16) {
    let url = format!("{couch}/offnet/{id}");
    let mut doc = json!({
        "_id": id, "pvt_type": "resource", "name": id, "enabled": true, "weight_cost": weight,
        "rules": ["^\\+1(\\d{10})$"],
        "gateways": [{"server": "127.0.0.1", "port": gateway_port, "enabled": true}],
    });
    if let Ok((200, body)) = http_request("GET", &url, None) {
        let stored: Value = serde_json::from_str(&body).expect("a document");
        doc["_rev"] = stored["_rev"].clone();
    }
    let (status, body) = http_request("PUT", &url, Some(&doc.to_string())).expect("PUT");
    assert!(status == 201 || status == 202, "PUT {id}: {status} {body}");
}

/// Switchboard's text answer for `number` (status, lines).
fn text_routes(daemon: &Daemon, number: &str) -> (u16, String) {
    let url = format!("{}/v2/stepswitch/route?format=text&To-DID={number}", daemon.base());
    http_request("GET", &url, None).expect("GET /v2/stepswitch/route")
}

fn until_routes(daemon: &Daemon, expected: &str, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = text_routes(daemon, NUMBER);
        if status == 200 && body == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {status} {body:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A SIPp gateway on `port` running `scenario` (at most `calls` calls when given), recording
/// what it receives in `log`.
fn gateway(scenario: &str, port: u16, calls: Option<u32>, log: &Path) -> TestProcess {
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(repo().join("tests/sip").join(scenario))
        .args(["-p", &port.to_string(), "-i", "127.0.0.1", "-nostdin", "-trace_msg"])
        .arg("-message_file")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(calls) = calls {
        cmd.args(["-m", &calls.to_string()]);
    }
    let process = TestProcess::spawn(cmd);
    wait_bound(port, scenario);
    process
}

/// `calls` calls to `number` through the proxy with SIPp; panics unless every one completes.
fn place_calls(proxy: u16, number: &str, calls: u32, dir: &Path) {
    let errors = dir.join(format!("caller-{calls}-errors.log"));
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(repo().join("tests/sip/caller.xml"))
        .args(["-s", number, &format!("127.0.0.1:{proxy}")])
        .args(["-m", &calls.to_string(), "-r", "10", "-l", "10"])
        .args(["-p", &free_udp_port().to_string(), "-i", "127.0.0.1"])
        .args(["-timeout", "60s", "-timeout_error", "-nostdin", "-trace_err", "-error_file"])
        .arg(&errors)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut caller = TestProcess::spawn(cmd);
    let status = caller.wait_for_exit(WAIT + Duration::from_secs(10)).expect("the caller ends");
    let log = std::fs::read_to_string(&errors).unwrap_or_default();
    assert!(status.success(), "SIPp caller failed ({status}): {log}");
}

/// The Request-URIs of the INVITEs a gateway's message log shows.
fn invites_seen(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().strip_prefix("INVITE "))
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Every INVITE the gateway logged was for `uri`, and there was one per call at least (a
/// retransmission on a busy machine adds a line, never a call).
fn assert_invites(log: &Path, uri: &str, calls: usize, proxy_log: &str) {
    let seen = invites_seen(log);
    assert!(seen.len() >= calls && seen.iter().all(|it| it == uri), "{seen:?}\n{proxy_log}");
}

/// Sends one bare request to the proxy from a fresh socket and returns the first final status
/// (or, for `OPTIONS` probes, any status) within `timeout`.
fn sip_status(method: &str, proxy: u16, number: &str, timeout: Duration) -> Option<u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("a socket");
    let port = socket.local_addr().expect("its address").port();
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("a timeout");
    let tag = format!("{port}{}", std::process::id());
    let message = format!(
        "{method} sip:{number}@127.0.0.1:{proxy} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{tag}\r\n\
         From: <sip:probe@127.0.0.1:{port}>;tag={tag}\r\n\
         To: <sip:{number}@127.0.0.1:{proxy}>\r\n\
         Call-ID: {tag}@127.0.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:probe@127.0.0.1:{port}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    let mut sent = Instant::now() - Duration::from_secs(1);
    while Instant::now() < deadline {
        if sent.elapsed() >= Duration::from_millis(500) {
            socket.send_to(message.as_bytes(), ("127.0.0.1", proxy)).expect("send");
            sent = Instant::now();
        }
        let Ok(n) = socket.recv(&mut buf) else { continue };
        let reply = String::from_utf8_lossy(&buf[..n]);
        let status = reply
            .strip_prefix("SIP/2.0 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok());
        match status {
            Some(code) if code >= 200 || method != "INVITE" => return Some(code),
            _ => {}
        }
    }
    None
}

#[test]
fn kamailio_routes_calls_through_switchboard() {
    let kamailio = find_program("kamailio").is_some();
    let found = [
        ("kamailio", kamailio),
        ("kamailio's http_client module", Path::new(HTTP_CLIENT_MODULE).exists()),
        ("sipp", find_program("sipp").is_some()),
    ];
    let install = "apt-get install -y kamailio kamailio-utils-modules sip-tester";
    if !require("e2e_sip", &found, install) {
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = CouchServer::shared();
    let couch = couch_url(server);
    let _ = http_request("PUT", &format!("{couch}/offnet"), None);
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["serve", "--couch-url", &couch, "--listen", "127.0.0.1:0"],
        &[],
    );

    // Carrier A (weight 1, first) refuses with 503; carrier B (weight 2) answers.
    let (port_a, port_b) = (free_udp_port(), free_udp_port());
    put_carrier(&couch, "sip-a", 1, port_a);
    put_carrier(&couch, "sip-b", 2, port_b);
    let uri_a = format!("sip:{DIALLED}@127.0.0.1:{port_a}");
    let uri_b = format!("sip:{DIALLED}@127.0.0.1:{port_b}");
    until_routes(&daemon, &format!("{uri_a}\n{uri_b}\n"), "A then B");

    // Kamailio with the contrib config, its defines overridden on the command line.
    let proxy = free_udp_port();
    let kamailio_log = dir.path().join("kamailio.log");
    let mut cmd = Command::new("kamailio");
    cmd.arg("-f")
        .arg(repo().join("contrib/kamailio/switchboard.cfg"))
        .args(["-DD", "-E", "-m", "64", "-M", "8", "-w"])
        .arg(dir.path())
        .arg("-P")
        .arg(dir.path().join("kamailio.pid"))
        .args(["-A", &format!("SB_LISTEN=udp:127.0.0.1:{proxy}")])
        .args(["-A", &format!("SB_URL=\"{}\"", daemon.base())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&kamailio_log).expect("a log file"));
    let mut kamailio = TestProcess::spawn(cmd);
    let kamailio_pid = kamailio.pid();
    let log = || std::fs::read_to_string(&kamailio_log).unwrap_or_default();
    // Up when it answers: non-INVITE requests get a 405.
    let probe = sip_status("OPTIONS", proxy, NUMBER, WAIT);
    assert_eq!(probe, Some(405), "Kamailio did not come up:\n{}", log());

    // 1. Every call fails over from A's 503 to B and completes.
    let (log_a, log_b) = (dir.path().join("a1.log"), dir.path().join("b1.log"));
    let mut gateway_a = gateway("gateway_503.xml", port_a, Some(5), &log_a);
    let mut gateway_b = gateway("gateway_ok.xml", port_b, Some(5), &log_b);
    place_calls(proxy, NUMBER, 5, dir.path());
    for (gateway, what) in [(&mut gateway_a, "A"), (&mut gateway_b, "B")] {
        let status = gateway.wait_for_exit(WAIT).unwrap_or_else(|| panic!("gateway {what} ends"));
        assert!(status.success(), "gateway {what}: {status}\n{}", log());
    }
    assert_invites(&log_a, &uri_a, 5, &log());
    assert_invites(&log_b, &uri_b, 5, &log());

    // 2. A weight change in the store reorders the carriers; Kamailio is not reloaded.
    put_carrier(&couch, "sip-a", 9, port_a);
    until_routes(&daemon, &format!("{uri_b}\n{uri_a}\n"), "B then A");
    let (log_a, log_b) = (dir.path().join("a2.log"), dir.path().join("b2.log"));
    let mut gateway_a = gateway("gateway_503.xml", port_a, None, &log_a);
    let mut gateway_b = gateway("gateway_ok.xml", port_b, Some(3), &log_b);
    place_calls(proxy, NUMBER, 3, dir.path());
    let status = gateway_b.wait_for_exit(WAIT).expect("gateway B ends");
    assert!(status.success(), "gateway B: {status}");
    gateway_a.stop();
    assert_invites(&log_b, &uri_b, 3, &log());
    assert_eq!(invites_seen(&log_a), Vec::<String>::new(), "A is last now and B answers");
    assert!(kamailio.is_running() && kamailio.pid() == kamailio_pid, "Kamailio restarted");

    // 3. No carrier takes the number: 404 from Switchboard, 404 to the caller.
    assert_eq!(text_routes(&daemon, UNROUTABLE), (404, String::new()));
    assert_eq!(sip_status("INVITE", proxy, UNROUTABLE, WAIT), Some(404), "{}", log());

    // 4. Switchboard stopped: the caller gets a clear 503.
    drop(daemon);
    assert_eq!(sip_status("INVITE", proxy, NUMBER, WAIT), Some(503), "{}", log());
    kamailio.stop();
}

//! `/v2/openapi.json` is the API: schemathesis (the version pinned in
//! `tests/openapi/requirements.txt`) generates requests from the document — valid and invalid
//! bodies, query strings and headers — against `switchboard serve` on a throw-away data dir (the
//! demo data), with the demo superduper admin's token, fixed path parameters and a fixed seed,
//! and every check it has must pass: 0 failures, no list of known ones.
//!
//! schemathesis runs from a virtualenv: `SCHEMATHESIS` names the program when set (`.ci/run`
//! installs it), else the test makes the virtualenv itself under `target/` the first time. When
//! it cannot (no `python3 -m venv`, no network), the test is skipped loudly — and fails under
//! `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::require;
use testkit::Daemon;

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The pinned requirement (`schemathesis==X.Y.Z`).
fn requirement() -> String {
    let path = root().join("tests/openapi/requirements.txt");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("schemathesis=="))
        .expect("requirements.txt pins schemathesis")
        .to_owned()
}

/// Whether `program --version` names the pinned version.
fn is_pinned(program: &Path, requirement: &str) -> bool {
    let version = requirement.trim_start_matches("schemathesis==");
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(version))
}

/// The schemathesis program: `SCHEMATHESIS`, else the virtualenv under `target/`, made now if
/// it is missing. `None` when it cannot be had.
fn schemathesis() -> Option<PathBuf> {
    let requirement = requirement();
    if let Some(program) = std::env::var_os("SCHEMATHESIS") {
        let program = PathBuf::from(program);
        return is_pinned(&program, &requirement).then_some(program);
    }
    let venv = root().join("target").join(requirement.replace("==", "-"));
    let program = venv.join("bin/schemathesis");
    if is_pinned(&program, &requirement) {
        return Some(program);
    }
    let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
    if !made.is_ok_and(|s| s.success()) {
        return None;
    }
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(root().join("tests/openapi/requirements.txt"))
        .status();
    (installed.is_ok_and(|s| s.success()) && is_pinned(&program, &requirement)).then_some(program)
}

/// `PUT /v2/api_auth` with the demo key, once the accounts are read: the token and account id.
async fn login(daemon: &Daemon, key: &str) -> (String, String) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = client
            .put(format!("{}/v2/api_auth", daemon.base()))
            .json(&json!({"data": {"api_key": key}}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        if status == reqwest::StatusCode::CREATED {
            let token = body["auth_token"].as_str().unwrap().to_owned();
            return (token, body["data"]["account_id"].as_str().unwrap().to_owned());
        }
        assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(Instant::now() < deadline, "the accounts were never read: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `switchboard serve` on a fresh data dir under `dir` (the demo data), ready, and the demo
/// superduper admin's token and account id.
async fn demo_daemon(dir: &Path) -> (Daemon, String, String) {
    let data = dir.join("data");
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &[
            "serve",
            "--create-data-dir",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let seed: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/demo/seed.json")).unwrap(),
    )
    .unwrap();
    let key = seed["demo_api_key"].as_str().expect("the demo seed names its api key");
    let (token, account) = login(&daemon, key).await;
    wait_ready(&daemon).await;
    (daemon, token, account)
}

/// Waits until `/healthz` says ready (the routing tables and numbers read).
async fn wait_ready(daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = reqwest::get(format!("{}/healthz", daemon.base())).await.unwrap();
        if response.status().is_success() {
            return;
        }
        assert!(Instant::now() < deadline, "never ready: {}", response.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_difference_between_the_document_and_the_api() {
    let program = schemathesis();
    let install =
        "python3 -m venv VENV && VENV/bin/pip install -r tests/openapi/requirements.txt; \
                   then SCHEMATHESIS=VENV/bin/schemathesis (.ci/run does this)";
    if !require("e2e_openapi", &[("schemathesis", program.is_some())], install) {
        return;
    }
    let program = program.expect("required above");
    let dir = tempfile::tempdir().unwrap();
    let (daemon, token, account) = demo_daemon(dir.path()).await;
    let config = dir.path().join("schemathesis.toml");
    let template = std::fs::read_to_string(root().join("tests/openapi/schemathesis.toml")).unwrap();
    std::fs::write(&config, template.replace("ACCOUNT_ID", &account)).unwrap();
    let output = Command::new(&program)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/v2/openapi.json", daemon.base()))
        .args(["--header", &format!("X-Auth-Token: {token}")])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "schemathesis found differences:\n{report}");
    // The last line sums the run up: "No issues found in …", or its warnings (an example that
    // answers 401, say), but never a failure or an error.
    let summary = report.lines().rev().find(|line| line.starts_with("====")).unwrap_or_default();
    assert!(
        summary.contains(" in ") && !summary.contains("failure") && !summary.contains("error"),
        "{summary}\n{report}"
    );
    assert!(report.contains(" passed"), "{report}");
}

/// `/metrics` labels are bounded and name what the client called: a method the API does not
/// use is `method="other"` (not one series per name a client invents), a path no route matches
/// is `route="unmatched"`, and activating a number counts as `op="activate"` (the number
/// manager's `move` underneath is not what the client asked for).
#[tokio::test(flavor = "multi_thread")]
async fn metric_labels_are_bounded_and_named_after_the_operation_called() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, token, account) = demo_daemon(dir.path()).await;
    let client = reqwest::Client::new();
    let base = daemon.base();
    for method in ["ZZTEST1", "ZZTEST2"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client.request(method, format!("{base}/v2/resources")).send().await;
        assert_eq!(response.unwrap().status(), reqwest::StatusCode::METHOD_NOT_ALLOWED);
    }
    for path in ["/v2/nope/1", "/v2/nope/2", "/zz"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    }
    // The demo's available number, bought by the demo account.
    let response = client
        .put(format!("{base}/v2/accounts/{account}/phone_numbers/+14158867903/activate"))
        .header("X-Auth-Token", &token)
        .json(&json!({"data": {}}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(status, reqwest::StatusCode::OK, "{}", response.text().await.unwrap());
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let requests: Vec<&str> =
        metrics.lines().filter(|l| l.starts_with("switchboard_http_requests_total{")).collect();
    assert!(!metrics.contains("ZZTEST"), "{metrics}");
    assert!(requests.iter().any(|l| l.contains("method=\"other\"")), "{requests:?}");
    assert!(!metrics.contains("/v2/nope") && !metrics.contains("\"/zz\""), "{metrics}");
    let unmatched: Vec<&&str> = requests
        .iter()
        .filter(|l| l.contains("route=\"unmatched\"") && l.contains("method=\"GET\""))
        .collect();
    assert_eq!(unmatched.len(), 1, "one series for every unmatched GET 404: {requests:?}");
    assert!(unmatched[0].ends_with(" 3"), "{unmatched:?}");
    let transitions: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("switchboard_number_transitions_total{"))
        .collect();
    assert_eq!(transitions, ["switchboard_number_transitions_total{op=\"activate\"} 1"]);
}

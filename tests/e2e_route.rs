//! End-to-end tests of routing with the real binary: `switchboard serve` against a private
//! couch-peer (Kazoo's database names are fixed, so these tests do not share the server other
//! test binaries use) and `switchboard route` against the same server and an embedded store.
//!
//! Offnet resources are created, edited in place, broken and deleted with plain CouchDB writes
//! (as in Fauxton) and the HTTP answers follow with no reload call; a local resource routes with
//! a hunt account; Kazoo's own fixture routes through the CLI. Each test uses its own resource
//! ids and number ranges, so they run in parallel against one daemon. Waits are on conditions
//! with a generous upper bound, never sleep-then-assert.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use docstore::{AccountId, CouchConfig, CouchStore, DbName, DocStore, EmbeddedStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::CouchServer;

const WAIT: Duration = Duration::from_secs(60);

const CHILD: &str = "e2e00000000000000000000000000c01";
const PARENT: &str = "e2e00000000000000000000000000b01";

/// The private server and the daemon shared by every test of this binary.
struct World {
    couch_url: String,
    couch: CouchConfig,
    base: String,
    _daemon: Daemon,
    _server: CouchServer,
    _dir: tempfile::TempDir,
}

/// A running `switchboard serve`, killed with the test process.
struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.env_remove("COUCHDB_URL")
        .env_remove("COUCHDB_USER")
        .env_remove("COUCHDB_PASSWORD")
        .env_remove("SWITCHBOARD_CONFIG")
        .env_remove("SWITCHBOARD_DATA_DIR")
        .env("SWITCHBOARD_LOG", "warn");
    cmd
}

/// `None` when `COUCHDB_URL` names an external server: these tests need a private one.
fn world() -> Option<&'static World> {
    static WORLD: OnceLock<Option<World>> = OnceLock::new();
    WORLD
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let Some(server) = CouchServer::start_persistent(dir.path()) else {
                eprintln!("COUCHDB_URL is set: e2e_route needs a private server; skipped");
                return None;
            };
            let config = CouchConfig::from_url(&server.url_with_credentials()).expect("url");
            let mut cmd = binary();
            cmd.args(["--couch-url", server.url(), "serve", "--listen", "127.0.0.1:0"])
                .args(["--debounce", "20ms", "--discover-every", "200ms"])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            #[cfg(target_os = "linux")]
            unsafe {
                use std::os::unix::process::CommandExt;
                // The daemon dies with the test process, even on a panic.
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            // PR_SET_PDEATHSIG fires when the *forking thread* ends, and test threads end after
            // each test: fork from a thread that lives as long as the process.
            let (child_tx, child_rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = child_tx.send(cmd.spawn());
                loop {
                    std::thread::park();
                }
            });
            let mut child = child_rx.recv().expect("spawner").expect("start switchboard serve");
            let stdout = child.stdout.take().expect("piped stdout");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // Keep draining after the banner so the daemon never blocks on stdout.
                    let _ = tx.send(line);
                }
            });
            let deadline = Instant::now() + WAIT;
            let base = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = rx.recv_timeout(left).expect("switchboard serve prints its address");
                if let Some(base) = line.strip_prefix("switchboard listening on ") {
                    break base.trim().to_owned();
                }
            };
            Some(World {
                couch_url: server.url().to_owned(),
                couch: config,
                base,
                _daemon: Daemon { child },
                _server: server,
                _dir: dir,
            })
        })
        .as_ref()
}

impl World {
    /// A client on the calling test's runtime (a client outlives no runtime).
    fn store(&self) -> Arc<CouchStore> {
        Arc::new(CouchStore::new(self.couch.clone()).expect("couch store"))
    }
}

fn offnet() -> DbName {
    docstore::naming::offnet_db()
}

fn resource(id: &str, server: &str, rules: Value) -> Value {
    json!({
        "_id": id, "pvt_type": "resource", "name": id, "weight_cost": 10, "enabled": true,
        "rules": rules, "gateways": [{"server": server, "enabled": true}]
    })
}

async fn post(world: &World, path: &str, body: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", world.base))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

async fn get(world: &World, path: &str) -> Value {
    let response =
        reqwest::get(format!("{}{path}", world.base)).await.expect("request").error_for_status();
    response.expect("status").json().await.expect("JSON")
}

/// The `Route`s of the answer to an offnet_req (none: the 404 of a number no carrier takes).
async fn routes(world: &World, req: Value) -> Vec<String> {
    let (status, body) = post(world, "/v2/stepswitch/route", &req.to_string()).await;
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // The tables are not loaded yet (the daemon is reading the store): no route yet.
        return Vec::new();
    }
    if status == StatusCode::NOT_FOUND {
        assert_eq!(body["message"], "no_carrier", "{body}");
        assert_eq!(body["data"]["endpoints"], json!([]), "{body}");
        return Vec::new();
    }
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    body["data"]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|ep| ep["Route"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Polls until `done` holds for the routes of `req` (bounded; the reactor swaps within ms).
async fn until_routes(world: &World, req: Value, what: &str, done: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = routes(world, req.clone()).await;
        if done(&got) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last answer {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_status(world: &World, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = get(world, "/v2/stepswitch/status").await;
        if done(&status["data"]) {
            return status["data"].clone();
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last status {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn offnet_resource_create_edit_delete_live() {
    let Some(world) = world() else { return };
    let store = &world.store();
    store.ensure_db(&offnet()).await.expect("offnet");
    let req = json!({"To-DID": "2125550100", "Call-ID": "ignored", "Msg-ID": "also ignored"});
    let rules = json!(["^\\+1(212555\\d{4})$"]);

    let rev = store.put(&offnet(), resource("e2e-life", "one.example.com", rules.clone())).await;
    let rev = rev.expect("create");
    until_routes(world, req.clone(), "the new resource", |r| !r.is_empty()).await;
    let (_, body) = post(world, "/v2/stepswitch/route", &req.to_string()).await;
    let data = &body["data"];
    assert_eq!(data["number"], "+12125550100");
    assert_eq!(data["classification"], "did_us");
    assert_eq!(routes(world, req.clone()).await, ["sip:2125550100@one.example.com"]);

    // Edit in place (a plain CouchDB write): no reload call.
    let mut edited = resource("e2e-life", "two.example.com", rules.clone());
    edited["_rev"] = json!(rev.0);
    let rev = store.put(&offnet(), edited).await.expect("edit");
    until_routes(world, req.clone(), "the edit", |r| r == ["sip:2125550100@two.example.com"]).await;

    store.delete(&offnet(), "e2e-life", &rev).await.expect("delete");
    until_routes(world, req.clone(), "the deletion", |r| r.is_empty()).await;
}

#[tokio::test]
async fn bad_regex_is_reported_and_the_other_rules_route() {
    let Some(world) = world() else { return };
    let store = &world.store();
    store.ensure_db(&offnet()).await.expect("offnet");
    let rules = json!(["^\\+1(646555\\d{4}$", "^\\+1(646556\\d{4})$"]);
    store.put(&offnet(), resource("e2e-badregex", "re.example.com", rules)).await.expect("put");
    let status = until_status(world, "the bad regex", |data| {
        data["tables"].as_array().into_iter().flatten().any(|t| {
            t["scope"] == "global"
                && t["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e["resource_id"] == "e2e-badregex")
        })
    })
    .await;
    let global =
        status["tables"].as_array().expect("tables").iter().find(|t| t["scope"] == "global");
    let error = global.expect("global table")["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .find(|e| e["resource_id"] == "e2e-badregex")
        .expect("the error")
        .clone();
    assert_eq!(error["field"], "rules", "{error}");
    assert_eq!(error["index"], 0, "{error}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
    let good = json!({"To-DID": "+16465560100"});
    until_routes(world, good, "the good rule", |r| r == ["sip:6465560100@re.example.com"]).await;
    assert!(routes(world, json!({"To-DID": "+16465550100"})).await.is_empty());
}

#[tokio::test]
async fn local_resource_routes_with_a_hunt_account() {
    let Some(world) = world() else { return };
    let store = &world.store();
    let accounts = docstore::naming::accounts_db();
    store.ensure_db(&accounts).await.expect("accounts");
    for (id, tree) in [(PARENT, json!([])), (CHILD, json!([PARENT]))] {
        let doc = json!({"_id": id, "pvt_type": "account", "name": id, "pvt_tree": tree});
        store.put(&accounts, doc).await.expect("account doc");
    }
    let parent = AccountId::new(PARENT).expect("account id");
    store.create_db(&parent.db_name()).await.expect("account db");
    let rules = json!(["^\\+1(917555\\d{4})$"]);
    store
        .put(&parent.db_name(), resource("e2e-local", "byoc.example.com", rules))
        .await
        .expect("put");

    let req = json!({"To-DID": "+19175550100", "Account-ID": CHILD, "Hunt-Account-ID": PARENT});
    until_routes(world, req, "the local resource", |r| r == ["sip:9175550100@byoc.example.com"])
        .await;
    // Without the hunt account the global table answers (nothing there for this range); a hunt
    // account outside the caller's hierarchy routes nothing (`stepswitch_resources:maybe_get_endpoints/2`).
    assert!(routes(world, json!({"To-DID": "+19175550100", "Account-ID": CHILD})).await.is_empty());
    let outside = json!({"To-DID": "+19175550100", "Account-ID": PARENT, "Hunt-Account-ID": CHILD});
    assert!(routes(world, outside).await.is_empty());

    // The one-shot CLI reads the same documents.
    let out = binary()
        .args(["--couch-url", &world.couch_url, "route", "+19175550100"])
        .args(["--account-id", CHILD, "--hunt-account-id", PARENT, "--json"])
        .output()
        .expect("run switchboard route");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["endpoints"][0]["Route"], "sip:9175550100@byoc.example.com");

    // --explain: the hunt account's table, its resource taken by its rule, the final order.
    let out = binary()
        .args(["--couch-url", &world.couch_url, "route", "+19175550100"])
        .args(["--account-id", CHILD, "--hunt-account-id", PARENT, "--explain", "--json"])
        .output()
        .expect("run switchboard route --explain");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let explained: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(explained["table"], PARENT, "{explained}");
    let local = &explained["resources"][0];
    assert_eq!(local["id"], "e2e-local", "{explained}");
    assert_eq!(local["verdict"]["verdict"], "taken", "{explained}");
    assert_eq!(local["verdict"]["capture"], "9175550100", "{explained}");
    assert_eq!(explained["order"][0]["route"], "sip:9175550100@byoc.example.com");
    let out = binary()
        .args(["--couch-url", &world.couch_url, "route", "+19175550100", "--explain"])
        .args(["--account-id", PARENT, "--hunt-account-id", CHILD])
        .output()
        .expect("run switchboard route --explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no resource looked at: hierarchy"), "{text}");
}

#[tokio::test]
async fn bad_route_requests_get_400() {
    let Some(world) = world() else { return };
    for body in ["not json", "[]", "{}", r#"{"To-DID": ""}"#, r#"{"To-DID": "+1", "Flags": "x"}"#] {
        let (status, reply) = post(world, "/v2/stepswitch/route", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {reply}");
        assert_eq!(reply["status"], "error", "{reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()), "{reply}");
    }
}

#[tokio::test]
async fn reload_answers_with_the_status() {
    let Some(world) = world() else { return };
    world.store().ensure_db(&offnet()).await.expect("offnet");
    let (status, body) = post(world, "/v2/stepswitch/reload", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["tables"][0]["scope"], "global", "{body}");
    for garbage in [
        r#"{"account_id": "nope"}"#,
        r#"{"account_id": 42}"#,
        r#"{"account_id": "account/e2/e0/0000"}"#,
        r#"{"account_id": "account%2Fe2e000000000000000000000000000d01"}"#,
        r#"{"account_id": "E2E00000000000000000000000000D01"}"#,
        "not json",
    ] {
        let (status, body) = post(world, "/v2/stepswitch/reload", garbage).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{garbage} → {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
}

/// The table of `account` (the global one for `None`) in a status `data` object.
fn table_of<'a>(data: &'a Value, account: Option<&str>) -> Option<&'a Value> {
    data["tables"].as_array()?.iter().find(|t| match account {
        None => t["scope"] == "global",
        Some(id) => t["scope"] == "local" && t["account_id"] == id,
    })
}

/// The `builds` of one table in a status `data` object (0 when the table is not there).
fn builds_of(data: &Value, account: Option<&str>) -> u64 {
    table_of(data, account).and_then(|t| t["builds"].as_u64()).unwrap_or(0)
}

/// Kazoo's `reload_resources/1` with a real account, its id in each form Kazoo's
/// `kz_util:format_account_id/1` accepts (raw, `account/ab/cd/…`, `account%2Fab%2Fcd%2F…`; in the
/// body or the query), then `flush/0`: every answer is the status once the rebuild is live.
#[tokio::test]
async fn reload_of_an_account_in_every_id_form_and_flush() {
    const RELOADED: &str = "e2e00000000000000000000000000d01";
    let Some(world) = world() else { return };
    let store = &world.store();
    store.ensure_db(&offnet()).await.expect("offnet");
    let account = AccountId::new(RELOADED).expect("account id");

    // A valid id whose database does not exist: 404, not 400.
    let body = json!({"account_id": RELOADED}).to_string();
    let (status, reply) = post(world, "/v2/stepswitch/reload", &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");

    store.create_db(&account.db_name()).await.expect("account db");
    let rules = json!(["^\\+1(303555\\d{4})$"]);
    store
        .put(&account.db_name(), resource("e2e-reload", "reload.example.com", rules))
        .await
        .expect("put");

    let unencoded = account.db_name().as_str().to_owned();
    let encoded = account.encoded();
    assert!(unencoded.starts_with("account/e2/e0/") && encoded.starts_with("account%2Fe2%2Fe0%2F"));
    let mut last = 0;
    for (form, in_query) in [
        (RELOADED, false),
        (unencoded.as_str(), false),
        (encoded.as_str(), false),
        (unencoded.as_str(), true),
        (encoded.as_str(), true),
    ] {
        let (status, reply) = if in_query {
            // `%` escaped in the URL: the daemon receives the encoded form itself.
            let path = format!("/v2/stepswitch/reload?account_id={}", form.replace('%', "%25"));
            post(world, &path, "").await
        } else {
            post(world, "/v2/stepswitch/reload", &json!({"account_id": form}).to_string()).await
        };
        assert_eq!(status, StatusCode::OK, "{form} (query: {in_query}) → {reply}");
        let table = table_of(&reply["data"], Some(RELOADED))
            .unwrap_or_else(|| panic!("{form}: no table for the account in {reply}"));
        assert_eq!(table["resources"], 1, "{form}: {table}");
        let builds = builds_of(&reply["data"], Some(RELOADED));
        assert!(builds > last, "{form}: the reload did not rebuild the table ({last} → {builds})");
        last = builds;
    }
    let req =
        json!({"To-DID": "+13035550100", "Account-ID": RELOADED, "Hunt-Account-ID": RELOADED});
    assert_eq!(routes(world, req).await, ["sip:3035550100@reload.example.com"]);

    // flush/0: every table re-read and rebuilt, the status returned.
    let before = get(world, "/v2/stepswitch/status").await;
    let (status, reply) = post(world, "/v2/stepswitch/flush", "").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["status"], "success", "{reply}");
    for scope in [None, Some(RELOADED)] {
        let (was, now) = (builds_of(&before["data"], scope), builds_of(&reply["data"], scope));
        assert!(now > was, "{scope:?} was not rebuilt by the flush ({was} → {now})");
    }
    assert_eq!(
        table_of(&reply["data"], Some(RELOADED)).map(|t| t["resources"].clone()),
        Some(json!(1))
    );
}

/// Kazoo's fixtures (`fixtures/stepswitch`) in a fresh embedded store, routed by the CLI.
fn kazoo_fixture_store(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/stepswitch");
    let read = |rel: &str| -> Value {
        let text = std::fs::read_to_string(root.join(rel)).expect("fixture");
        serde_json::from_str(&text).expect("fixture JSON")
    };
    let resources = read("resources/global.json");
    let number_manager = read("system_config/number_manager.json");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    runtime.block_on(async {
        let store = EmbeddedStore::open(dir).expect("embedded store");
        store.ensure_db(&offnet()).await.expect("offnet");
        for doc in resources.as_array().expect("a list") {
            let mut doc = doc.clone();
            doc.as_object_mut().expect("object").remove("_rev");
            store.put(&offnet(), doc).await.expect("fixture resource");
        }
        let config = docstore::naming::system_config_db();
        store.ensure_db(&config).await.expect("system_config");
        let mut doc = number_manager;
        doc.as_object_mut().expect("object").remove("_rev");
        store.put(&config, doc).await.expect("number_manager");
    });
}

#[test]
fn cli_routes_kazoo_fixture_json_and_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    kazoo_fixture_store(dir.path());
    let run = |extra: &[&str]| {
        let out = binary()
            .args(["--data-dir", dir.path().to_str().expect("utf-8"), "route", "4158867900"])
            .args(extra)
            .output()
            .expect("run switchboard route");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let answer: Value = serde_json::from_str(&run(&["--json"])).expect("JSON");
    let keys: Vec<&String> = answer.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["number", "classification", "endpoints"]);
    assert_eq!(answer["number"], "+14158867900");
    assert_eq!(answer["classification"], "did_us");
    let endpoints = answer["endpoints"].as_array().expect("endpoints");
    assert!(!endpoints.is_empty(), "{answer}");
    // The fixture's gateway has a fixed `route` (Kazoo bridges to it verbatim).
    for ep in endpoints {
        assert!(ep["Route"].as_str().is_some_and(|r| r.contains("@2600hz.local")), "{ep:?}");
    }
    // Flags: a comma list; the fixture resource carries `fax` and `testing`.
    let flagged: Value =
        serde_json::from_str(&run(&["--flags", "fax,testing", "--json"])).expect("JSON");
    assert_eq!(flagged["endpoints"].as_array().map(Vec::len), Some(endpoints.len()));
    let unknown: Value =
        serde_json::from_str(&run(&["--flags", "no-such-flag", "--json"])).expect("JSON");
    assert_eq!(unknown["endpoints"], json!([]), "{unknown}");
    let table = run(&[]);
    assert!(table.contains("number: +14158867900") && table.contains("ROUTE"), "{table}");
}

/// `stepswitch_util:get_outbound_destination/1` and the on-net check (`knm_numbers:lookup_account/1`) through `POST /v2/stepswitch/outbound`: a number written into its
/// numbers database (as in Fauxton), owned by an account in service, loops back to the owner
/// once the inbound table has it; `Force-Outbound` and an unknown number get `/route`'s carrier
/// endpoints.
#[tokio::test]
async fn outbound_loops_an_on_net_number_back_and_routes_the_rest() {
    const OWNER: &str = "e2e00000000000000000000000000e01";
    let Some(world) = world() else { return };
    let store = &world.store();
    // Ready (every reactor caught up, the inbound table included) before the writes: the
    // answer then comes from the live table, not its start-up fallback.
    let deadline = Instant::now() + WAIT;
    loop {
        let response = reqwest::get(format!("{}/healthz", world.base)).await.expect("healthz");
        if response.status() == StatusCode::OK {
            break;
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "the daemon never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let accounts = docstore::naming::accounts_db();
    store.ensure_db(&accounts).await.expect("accounts");
    let owner = json!({"_id": OWNER, "pvt_type": "account", "name": OWNER, "pvt_tree": [],
                       "pvt_enabled": true});
    store.put(&accounts, owner).await.expect("account doc");
    store.ensure_db(&offnet()).await.expect("offnet");
    let rules = json!(["^\\+1(213555\\d{4})$"]);
    store.put(&offnet(), resource("e2e-outbound", "out.example.com", rules)).await.expect("put");
    let (ours, unknown) = ("+12135550100", "+12135550199");
    let numbers = docstore::naming::numbers_db(ours).expect("numbers db");
    store.ensure_db(&numbers).await.expect("numbers db");
    let doc = json!({"_id": ours, "pvt_type": "number", "pvt_state": "in_service",
        "pvt_assigned_to": OWNER, "pvt_module_name": "knm_inventory", "pvt_used_by": "callflow",
        "pvt_created": 63700000000u64, "pvt_modified": 63700000000u64});
    store.put(&numbers, doc).await.expect("number doc");
    until_routes(world, json!({"To-DID": ours}), "the carrier", |r| !r.is_empty()).await;

    let outbound = |body: Value| async move {
        let (status, reply) = post(world, "/v2/stepswitch/outbound", &body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["status"], "success", "{reply}");
        reply["data"].clone()
    };
    let deadline = Instant::now() + WAIT;
    let data = loop {
        // Ten digits: normalized first (`stepswitch_util:get_outbound_destination/1`).
        let data = outbound(json!({"To-DID": "2135550100", "Account-ID": OWNER})).await;
        if data["on_net"] == true {
            break data;
        }
        assert!(Instant::now() < deadline, "the number never became on-net: {data}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(data["number"], ours, "{data}");
    assert_eq!(data["account_id"], OWNER, "{data}");
    assert_eq!(data["used_by"], "callflow", "{data}");
    assert!(data.get("endpoints").is_none(), "{data}");

    // Force-Outbound, and a number that is nobody's: exactly /route's answer, off-net.
    for body in [json!({"To-DID": ours, "Force-Outbound": true}), json!({"To-DID": unknown})] {
        let data = outbound(body.clone()).await;
        let (_, mut expected) = post(world, "/v2/stepswitch/route", &body.to_string()).await;
        expected["data"]["on_net"] = json!(false);
        assert_eq!(data, expected["data"], "{body}");
        let route = data["endpoints"][0]["Route"].as_str();
        assert!(route.is_some_and(|r| r.ends_with("@out.example.com")), "{data}");
    }
}

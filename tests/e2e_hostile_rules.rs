//! Hostile rules against the real binary and a private couch-peer: a rule nested 10,000 levels
//! deep is refused by the API (400 naming `rules[0]`) and, written straight into `offnet` or an
//! account database, is a status diagnostic while the daemon keeps serving, restarts cleanly
//! and takes the next good edit; a catastrophic rule is quarantined (status names the resource
//! and rule index, `/metrics` counts it) while unrelated numbers route as usual.
//!
//! Every wait is for a condition (status, an answer) with a generous upper bound.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use testkit::kazoo::{account_db, couch, enc, make_account};
use testkit::{CouchServer, Daemon};

const WAIT: Duration = Duration::from_secs(60);

/// The superduper root and one sub-account of it (ids fixed: the server is private).
const ROOT: &str = "e2e0000000000000000000000000a001";
const ROOT_KEY: &str = "hostile-root-key";
const SUB: &str = "e2e0000000000000000000000000a002";
const SUB_KEY: &str = "hostile-sub-key";

struct World {
    /// The server URL with credentials, for plain CouchDB writes ("Fauxton").
    couch: String,
    _server: CouchServer,
    _dir: tempfile::TempDir,
}

fn deep_rule() -> String {
    format!("^\\+1{}5{}$", "(".repeat(10_000), ")".repeat(10_000))
}

/// Creates or replaces `doc` in `db` (creating the database), as an operator in Fauxton would.
fn couch_put(world: &World, db: &str, doc: &Value) {
    let _ = couch("PUT", &format!("{}/{}", world.couch, enc(db)), None);
    let id = doc["_id"].as_str().expect("_id");
    let url = format!("{}/{}/{}", world.couch, enc(db), enc(id));
    let mut doc = doc.clone();
    let (status, current) = couch("GET", &url, None);
    if status == 200 {
        doc["_rev"] = current["_rev"].clone();
    }
    let (status, body) = couch("PUT", &url, Some(&doc));
    assert!(status == 201 || status == 202, "PUT {db}/{id}: {status} {body}");
}

fn world() -> Option<&'static World> {
    static WORLD: OnceLock<Option<World>> = OnceLock::new();
    WORLD
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let Some(server) = CouchServer::start_persistent(dir.path()) else {
                eprintln!("COUCHDB_URL is set: e2e_hostile_rules needs a private server; skipped");
                return None;
            };
            let mut couch = server.url().to_owned();
            if let Some((user, password)) = server.credentials() {
                couch = couch.replacen("://", &format!("://{user}:{password}@"), 1);
            }
            let world = World { couch, _server: server, _dir: dir };
            make_account(&world.couch, ROOT, ROOT_KEY, &[], true);
            make_account(&world.couch, SUB, SUB_KEY, &[ROOT], false);
            Some(world)
        })
        .as_ref()
}

/// A daemon of its own for each test (one test restarts its daemon).
fn daemon(world: &World) -> Daemon {
    Daemon::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["--couch-url", &world.couch, "serve", "--listen", "127.0.0.1:0"],
        &[],
    )
}

async fn call(
    daemon: &Daemon,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    // One client per call: a pooled connection must not outlive the test's runtime.
    let mut req = Client::new().request(method, format!("{}{path}", daemon.base()));
    if let Some(token) = token {
        req = req.header("X-Auth-Token", token);
    }
    if let Some(body) = body {
        req = req.header("Content-Type", "application/json").body(body.to_string());
    }
    let resp = req.send().await.expect("request to switchboard");
    let status = resp.status();
    let text = resp.text().await.expect("response body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn login(daemon: &Daemon, key: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = json!({"data": {"api_key": key}});
        let (status, body) = call(daemon, Method::PUT, "/v2/api_auth", None, Some(body)).await;
        if status == StatusCode::CREATED {
            return body["auth_token"].as_str().expect("auth_token").to_owned();
        }
        assert!(Instant::now() < deadline, "login never succeeded: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `Route`s of the answer for `to_did` (none: the 404 of a number no carrier takes, or the
/// 503 of tables not loaded yet).
async fn routes(daemon: &Daemon, to_did: &str) -> Vec<String> {
    let req = json!({"To-DID": to_did});
    let (status, body) = call(daemon, Method::POST, "/v2/stepswitch/route", None, Some(req)).await;
    if status == StatusCode::NOT_FOUND {
        assert_eq!(body["message"], "no_carrier", "{body}");
        return Vec::new();
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return Vec::new();
    }
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|ep| ep["Route"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn until_routes(daemon: &Daemon, to_did: &str, expected: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = routes(daemon, to_did).await;
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{to_did}: waited for {expected:?}, got {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status error of table `account` (`None`: global) about `resource`'s `rules[index]`,
/// once it shows.
async fn until_error(daemon: &Daemon, account: Option<&str>, resource: &str, index: u64) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, status) = call(daemon, Method::GET, "/v2/stepswitch/status", None, None).await;
        let found = status["data"]["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| match account {
                None => t["scope"] == "global",
                Some(id) => t["scope"] == "local" && t["account_id"] == id,
            })
            .flat_map(|t| t["errors"].as_array().into_iter().flatten())
            .find(|e| e["resource_id"] == resource && e["field"] == "rules" && e["index"] == index)
            .cloned();
        if let Some(error) = found {
            return error;
        }
        assert!(Instant::now() < deadline, "no status error for {resource}: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn resource(id: &str, rules: Value, server: &str) -> Value {
    json!({"_id": id, "pvt_type": "resource", "name": id, "enabled": true, "weight_cost": 5,
           "rules": rules, "gateways": [{"server": server, "enabled": true}]})
}

/// The 400 of a write with the deep rule names `rules[0]`.
fn assert_names_rules_0(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["data"]["rules[0]"]["regex"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("bytes long"), "{body}");
}

#[tokio::test]
async fn deep_rule_refused_by_the_api_and_survived_in_the_databases() {
    let Some(world) = world() else { return };
    let mut first = daemon(world);
    let root = login(&first, ROOT_KEY).await;
    let sub = login(&first, SUB_KEY).await;

    // The API refuses it, account-local and global, create and update alike.
    let body = json!({"data": {"name": "deep", "rules": [deep_rule()],
                               "gateways": [{"server": "deep.example.com"}]}});
    let local = format!("/v2/accounts/{SUB}/resources");
    let (status, reply) = call(&first, Method::PUT, &local, Some(&sub), Some(body.clone())).await;
    assert_names_rules_0(status, &reply);
    let (status, reply) =
        call(&first, Method::PUT, "/v2/resources", Some(&root), Some(body.clone())).await;
    assert_names_rules_0(status, &reply);
    let good = json!({"data": {"name": "ok", "rules": ["^\\+1(505555\\d{4})$"],
                               "gateways": [{"server": "ok.example.com"}]}});
    let (status, reply) = call(&first, Method::PUT, &local, Some(&sub), Some(good)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let id = reply["data"]["id"].as_str().expect("id").to_owned();
    let patch = json!({"data": {"rules": ["^\\+1(505555\\d{4})$", deep_rule()]}});
    let path = format!("{local}/{id}");
    let (status, reply) = call(&first, Method::PATCH, &path, Some(&sub), Some(patch)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["data"]["rules[1]"]["regex"]["message"].is_string(), "{reply}");

    // Written straight into the databases: a diagnostic each, and the daemon keeps serving.
    let offnet_doc = resource("hostile-deep", json!([deep_rule()]), "deep.example.com");
    couch_put(world, "offnet", &offnet_doc);
    let local_doc = resource("hostile-deep-local", json!([deep_rule()]), "deep.example.com");
    couch_put(world, &account_db(SUB), &local_doc);
    let error = until_error(&first, None, "hostile-deep", 0).await;
    assert!(error["message"].as_str().is_some_and(|m| m.contains("bytes long")), "{error}");
    until_error(&first, Some(SUB), "hostile-deep-local", 0).await;
    assert!(first.is_running(), "the daemon survived the deep rules");

    // A restarted daemon starts with the documents still there, and reports them again.
    drop(first);
    let second = daemon(world);
    until_error(&second, None, "hostile-deep", 0).await;
    until_error(&second, Some(SUB), "hostile-deep-local", 0).await;

    // A later good edit of the same document is live.
    let fixed = resource("hostile-deep", json!(["^\\+1(313555\\d{4})$"]), "fixed.example.com");
    couch_put(world, "offnet", &fixed);
    until_routes(&second, "+13135550100", &["sip:3135550100@fixed.example.com"]).await;
}

#[tokio::test]
async fn catastrophic_rules_are_quarantined_and_other_numbers_route() {
    let Some(world) = world() else { return };
    let daemon = daemon(world);
    // Refused at compile time: nested unbounded repetitions around a backreference.
    let catastrophic = json!(["^\\+1(414555\\d{4})$", "^\\+(?=\\d)((\\d+)+)+\\2x$"]);
    couch_put(world, "offnet", &resource("hostile-cat", catastrophic, "cat.example.com"));
    // Accepted, but out of its backtracking budget on the first long number it sees.
    let slow = json!(["^\\+(\\d|\\d\\d|\\d\\d\\d)*(?=x)y"]);
    couch_put(world, "offnet", &resource("hostile-slow", slow, "slow.example.com"));
    let good = json!(["^\\+1(414556\\d{4})$"]);
    couch_put(world, "offnet", &resource("hostile-good", good, "good.example.com"));

    let error = until_error(&daemon, None, "hostile-cat", 1).await;
    assert!(error["message"].as_str().is_some_and(|m| m.starts_with("quarantined")), "{error}");
    until_routes(&daemon, "+14145560100", &["sip:4145560100@good.example.com"]).await;
    // The catastrophic document's other rule routes.
    until_routes(&daemon, "+14145550100", &["sip:4145550100@cat.example.com"]).await;

    // A long number reaches the slow rule: quarantined, named in status, counted in metrics.
    // (A change to any other offnet document, such as another test's, rebuilds the table and
    // gives the rule a fresh try: so the number is sent again until one snapshot shows both.)
    let long = format!("+{}", "1".repeat(40));
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(routes(&daemon, &long).await.is_empty());
        let (_, status) = call(&daemon, Method::GET, "/v2/stepswitch/status", None, None).await;
        let global = status["data"]["tables"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["scope"] == "global"))
            .cloned()
            .expect("global table");
        let slow = global["errors"].as_array().into_iter().flatten().find(|e| {
            e["resource_id"] == "hostile-slow" && e["field"] == "rules" && e["index"] == 0
        });
        let metrics = Client::new()
            .get(format!("{}/metrics", daemon.base()))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let gauge = metrics
            .lines()
            .find(|l| {
                l.starts_with("switchboard_routing_rules_quarantined{") && l.contains("global")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if let (Some(slow), Some(2..), Some(gauge)) = (slow, global["quarantined"].as_u64(), gauge)
        {
            let message = slow["message"].as_str().unwrap_or_default();
            assert!(message.starts_with("quarantined"), "{slow}");
            if gauge >= 2.0 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "slow rule never quarantined: {global}\n{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Unrelated numbers still route.
    assert_eq!(routes(&daemon, "+14145560100").await, ["sip:4145560100@good.example.com"]);
}

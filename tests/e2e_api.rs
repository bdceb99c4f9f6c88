//! End-to-end tests of `switchboard serve`: the real binary against the CouchDB-compatible test
//! server (testkit's couch-peer, or `COUCHDB_URL`), driven over HTTP like a Kazoo client would.
//! For each route: a success, an auth failure, a cross-account attempt and bad input; a direct
//! document edit (as in Fauxton) seen through the API and by routing; and the README's demo run
//! on a fresh embedded data dir.
//!
//! One daemon serves every test of this binary (loopback is *not* trusted there, so the routing
//! endpoints need a superduper token); each test makes its own accounts with random ids.
//! Waits are on conditions with generous upper bounds, never sleep-then-assert.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use testkit::kazoo::{account_db, couch, couch_put_doc, enc, make_account};
use testkit::CouchServer;

const WAIT: Duration = Duration::from_secs(60);

/// A running `switchboard serve`; SIGTERMed on drop.
struct Daemon {
    child: Child,
    base: String,
    banner: Vec<String>,
}

impl Daemon {
    /// Starts the binary with `args` and reads its banner up to the `try:` line.
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args(args)
            .env_remove("COUCHDB_URL")
            .env_remove("SWITCHBOARD_CONFIG")
            .env_remove("SWITCHBOARD_DATA_DIR")
            .env("SWITCHBOARD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            // The daemon dies with the test process, even on a panic or abort.
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start the switchboard binary");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep draining so the daemon never blocks.
                    continue;
                }
            }
        });
        let mut banner = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no banner from switchboard serve; got {banner:?}"));
            let done = line.starts_with("try:");
            banner.push(line);
            if done {
                break;
            }
        }
        let base = banner
            .iter()
            .find_map(|l| l.strip_prefix("switchboard listening on "))
            .expect("the banner names the address")
            .to_owned();
        Daemon { child, base, banner }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then wait for the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().expect("wait for switchboard")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.stop();
        }
    }
}

/// The shared world: couch-peer, the root (superduper) account, the daemon.
struct World {
    couch: String,
    daemon: Daemon,
    root_id: String,
    root_key: String,
}

fn hex_id() -> String {
    let mut id = String::new();
    while id.len() < 32 {
        id.push_str(&format!("{:016x}", rand_u64()));
    }
    id.truncate(32);
    id
}

fn rand_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ (std::process::id() as u128));
    h.finish()
}

fn couch_get_doc(couch_url: &str, db: &str, id: &str) -> Value {
    // Through `_all_docs` with keys: ids with `+` survive no URL-decoding quirks there.
    let (status, body) = couch(
        "POST",
        &format!("{couch_url}/{}/_all_docs?include_docs=true", enc(db)),
        Some(&json!({ "keys": [id] })),
    );
    assert_eq!(status, 200, "_all_docs of {db}: {body}");
    let doc = body["rows"][0]["doc"].clone();
    assert!(doc.is_object(), "{db}/{id} not found: {body}");
    doc
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let server = CouchServer::shared();
        let couch_url = server.url_with_credentials();
        let root = hex_id();
        let root_key = format!("root-{}", hex_id());
        make_account(&couch_url, &root, &root_key, &[], true);
        // Started from a thread that never ends: PR_SET_PDEATHSIG fires when the *thread* that
        // spawned the daemon exits, and test threads come and go.
        let (tx, rx) = std::sync::mpsc::channel();
        let url = couch_url.clone();
        std::thread::spawn(move || {
            let daemon = Daemon::start(
                &[
                    "serve",
                    "--couch-url",
                    &url,
                    "--listen",
                    "127.0.0.1:0",
                    "--trusted-networks",
                    "192.0.2.0/24",
                    "--max-body-size",
                    "64KiB",
                ],
                &[],
            );
            tx.send(daemon).expect("hand the daemon over");
            loop {
                std::thread::park();
            }
        });
        let daemon = rx.recv().expect("the shared daemon starts");
        World { couch: couch_url, daemon, root_id: root, root_key }
    })
}

/// One HTTP exchange with the daemon: the status and the JSON body.
async fn call(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call_raw(method, url, token, body.map(|b| b.to_string()), &[]).await
}

async fn call_raw(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    // One client per call: each test has its own runtime, and a pooled connection must not
    // outlive the runtime that opened it.
    let client = Client::new();
    let mut req = client.request(method, url);
    if let Some(token) = token {
        req = req.header("X-Auth-Token", token);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req.header("Content-Type", "application/json").body(body);
    }
    let resp = req.send().await.expect("request to switchboard");
    let status = resp.status();
    let text = resp.text().await.expect("response body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Logs in with an api key, waiting (bounded) until the daemon's account index has the account.
async fn login(key: &str) -> String {
    let w = world();
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = call(
            Method::PUT,
            &w.daemon.url("/v2/api_auth"),
            None,
            Some(json!({"data": {"api_key": key}})),
        )
        .await;
        if status == StatusCode::CREATED {
            let token = body["auth_token"].as_str().unwrap().to_owned();
            assert!(!token.is_empty());
            return token;
        }
        assert!(Instant::now() < deadline, "login never succeeded: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh account tree under root: (A, A's token, B (A's sibling), B's token).
async fn two_accounts() -> (String, String, String, String) {
    let w = world();
    let root = w.root_id.clone();
    let (a, b) = (hex_id(), hex_id());
    let (ka, kb) = (format!("key-{}", hex_id()), format!("key-{}", hex_id()));
    make_account(&w.couch, &a, &ka, &[&root], false);
    make_account(&w.couch, &b, &kb, &[&root], false);
    (a, login(&ka).await, b, login(&kb).await)
}

async fn root_token() -> String {
    login(&world().root_key).await
}

fn resource_body(name: &str) -> Value {
    json!({"data": {"name": name, "rules": ["^\\+1(\\d{10})$"], "gateways": [{"server": format!("{name}.example.com")}]}})
}

fn assert_envelope(body: &Value) {
    assert_eq!(body["status"], "success", "{body}");
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
    assert!(body["revision"].is_string(), "{body}");
    assert!(body.get("data").is_some(), "{body}");
}

fn assert_error(body: &Value, code: u16) {
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"], code.to_string(), "{body}");
    assert!(body["message"].is_string(), "{body}");
}

#[tokio::test]
async fn api_auth_success_bad_key_and_bad_input() {
    let w = world();
    let url = w.daemon.url("/v2/api_auth");
    let _ = login(&w.root_key).await; // waits until the account index has caught up
    let (status, body) =
        call(Method::PUT, &url, None, Some(json!({"data": {"api_key": w.root_key}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_envelope(&body);
    assert!(!body["auth_token"].as_str().unwrap().is_empty());
    assert!(body["data"]["account_id"].is_string());

    let (status, body) =
        call(Method::PUT, &url, None, Some(json!({"data": {"api_key": "nope"}}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, 401);
    assert_eq!(body["message"], "invalid_credentials");

    let (status, body) = call_raw(Method::PUT, &url, None, Some("{\"data\": ".into()), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, 400);
    assert_eq!(body["message"], "parse_error");

    let (status, body) = call(Method::PUT, &url, None, Some(json!({"data": {}}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["data"]["api_key"]["required"]["message"], "Field is required but missing");

    // A made-up token on an account route is a 401.
    let (status, body) =
        call(Method::GET, &w.daemon.url("/v2/resources"), Some("made-up"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, 401);
}

#[tokio::test]
async fn global_resources_crud_auth_and_bad_input() {
    let w = world();
    let root = root_token().await;
    let (_, a_token, _, _) = two_accounts().await;
    let list = w.daemon.url("/v2/resources");

    // Success: create, read, replace, merge, list, delete.
    let (status, body) = call(Method::PUT, &list, Some(&root), Some(resource_body("g1"))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_envelope(&body);
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(body["data"]["weight_cost"], 50, "schema default filled in");
    assert!(body["data"].get("pvt_type").is_none(), "private fields are not shown");
    let stored = couch_get_doc(&w.couch, "offnet", &id);
    assert_eq!(stored["pvt_type"], "resource");
    assert!(stored["pvt_created"].as_u64().unwrap() > 63_000_000_000);
    let one = w.daemon.url(&format!("/v2/resources/{id}"));
    let (status, body) = call(Method::GET, &one, Some(&root), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["revision"], stored["_rev"]);
    let (status, body) =
        call(Method::PATCH, &one, Some(&root), Some(json!({"data": {"weight_cost": 7}}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["weight_cost"], 7);
    assert_eq!(body["data"]["name"], "g1");
    let (status, body) =
        call(Method::POST, &one, Some(&root), Some(resource_body("g1-renamed"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["name"], "g1-renamed");
    assert_eq!(body["data"]["weight_cost"], 50, "POST replaces");
    let (status, body) = call(Method::GET, &list, Some(&root), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["data"].as_array().unwrap().iter().any(|r| r["id"] == id.as_str()));

    // Stale revision: 409, nothing written.
    let (status, body) = call_raw(
        Method::PATCH,
        &one,
        Some(&root),
        Some(json!({"data": {"weight_cost": 1}}).to_string()),
        &[("If-Match", "1-stale")],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["message"], "datastore_conflict");

    // Auth: no token 401, a non-admin 403.
    let (status, _) = call(Method::GET, &list, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(Method::PUT, &list, Some(&a_token), Some(resource_body("x"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, 403);

    // Bad input: schema violations (field → rule → message), malformed JSON, oversized body,
    // unknown id. Nothing is written.
    let before =
        call(Method::GET, &list, Some(&root), None).await.1["data"].as_array().unwrap().len();
    let (status, body) = call(
        Method::PUT,
        &list,
        Some(&root),
        Some(json!({"data": {"name": "x", "weight_cost": 500}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "validation error");
    assert_eq!(body["data"]["gateways"]["required"]["message"], "Field is required but missing");
    assert!(body["data"]["weight_cost"]["maximum"]["message"].is_string(), "{body}");
    let (status, body) = call_raw(Method::PUT, &list, Some(&root), Some("{nope".into()), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "parse_error");
    let huge = json!({"data": {"name": "x".repeat(70 * 1024), "gateways": [{"server": "s"}]}});
    let (status, _) = call(Method::PUT, &list, Some(&root), Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let after =
        call(Method::GET, &list, Some(&root), None).await.1["data"].as_array().unwrap().len();
    assert_eq!(before, after, "refused writes leave nothing behind");
    let (status, body) = call(
        Method::GET,
        &w.daemon.url("/v2/resources/ffffffffffffffffffffffffffffffff"),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "bad_identifier");

    let (status, _) = call(Method::DELETE, &one, Some(&root), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(Method::GET, &one, Some(&root), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn local_resources_crud_auth_cross_account_and_bad_input() {
    let w = world();
    let (a, a_token, b, b_token) = two_accounts().await;
    let list = w.daemon.url(&format!("/v2/accounts/{a}/resources"));
    let (status, body) =
        call(Method::PUT, &list, Some(&a_token), Some(resource_body("local1"))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    let stored = couch_get_doc(&w.couch, &account_db(&a), &id);
    assert_eq!(stored["pvt_account_id"], a.as_str());
    let one = w.daemon.url(&format!("/v2/accounts/{a}/resources/{id}"));
    let (status, body) =
        call(Method::PATCH, &one, Some(&a_token), Some(json!({"data": {"flags": ["fax"]}}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["flags"], json!(["fax"]));
    let (status, body) = call(Method::GET, &list, Some(&a_token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"].as_array().unwrap().len(), 1);

    // The superduper admin may act on any account.
    let root = root_token().await;
    let (status, _) = call(Method::GET, &one, Some(&root), None).await;
    assert_eq!(status, StatusCode::OK);

    // Cross-account: B may not read or write A's resources, nor A B's.
    let (status, body) = call(Method::GET, &one, Some(&b_token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, 403);
    let (status, _) = call(Method::PUT, &list, Some(&b_token), Some(resource_body("evil"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(Method::DELETE, &one, Some(&b_token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        Method::GET,
        &w.daemon.url(&format!("/v2/accounts/{b}/resources")),
        Some(&a_token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Auth failure.
    let (status, _) = call(Method::GET, &list, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Bad input.
    let (status, body) = call(
        Method::POST,
        &one,
        Some(&a_token),
        Some(json!({"data": {"name": "", "gateways": [{}]}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["data"]["gateways.0.server"]["required"].is_object(), "{body}");
    assert!(body["data"]["name"]["minLength"].is_object(), "{body}");
    let unchanged = couch_get_doc(&w.couch, &account_db(&a), &id);
    assert_eq!(unchanged["flags"], json!(["fax"]), "nothing half-written");

    let (status, _) = call(Method::DELETE, &one, Some(&a_token), None).await;
    assert_eq!(status, StatusCode::OK);
}

fn number_doc(number: &str, owner: &str, state: &str) -> Value {
    json!({"_id": number, "pvt_type": "number", "pvt_state": state, "pvt_assigned_to": owner,
           "pvt_module_name": "knm_local", "pvt_created": 63700000000u64, "pvt_modified": 63700000000u64,
           "pvt_db_name": enc(&format!("numbers/{}", &number[..5]))})
}

fn random_number() -> String {
    format!("+1555{:07}", rand_u64() % 10_000_000)
}

#[tokio::test]
async fn connectivity_marks_owned_dids_and_refuses_foreign_ones() {
    let w = world();
    let (a, a_token, b, b_token) = two_accounts().await;
    let (mine, theirs) = (random_number(), random_number());
    let ndb = format!("numbers/{}", &mine[..5]);
    couch_put_doc(&w.couch, &ndb, &number_doc(&mine, &a, "in_service"));
    couch_put_doc(&w.couch, &ndb, &number_doc(&theirs, &b, "in_service"));
    let list = w.daemon.url(&format!("/v2/accounts/{a}/connectivity"));
    let body = |did: &str| {
        json!({"data": {"name": "pbx", "servers": [{
        "auth": {"auth_method": "IP", "ip": "192.0.2.10"}, "DIDs": {did: {}}}]}})
    };

    let (status, created) = call(Method::PUT, &list, Some(&a_token), Some(body(&mine))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(couch_get_doc(&w.couch, &account_db(&a), &id)["pvt_type"], "sys_info");
    assert_eq!(couch_get_doc(&w.couch, &ndb, &mine)["pvt_used_by"], "trunkstore");
    let one = w.daemon.url(&format!("/v2/accounts/{a}/connectivity/{id}"));
    let (status, got) = call(Method::GET, &one, Some(&a_token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(got["data"]["servers"][0]["DIDs"].get(&mine).is_some());

    // A number A does not own: validation error naming the DID, nothing written.
    let (status, refused) = call(Method::PUT, &list, Some(&a_token), Some(body(&theirs))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let field = format!("servers.0.DIDs.{theirs}");
    assert!(refused["data"][&field]["not_owned"]["message"].is_string(), "{refused}");
    let (_, listed) = call(Method::GET, &list, Some(&a_token), None).await;
    assert_eq!(listed["data"], json!([id]));
    let theirs_doc = couch_get_doc(&w.couch, &ndb, &theirs);
    assert!(theirs_doc.get("pvt_used_by").is_none(), "{theirs_doc}");
    // Schema violations too.
    let (status, refused) = call(
        Method::PUT,
        &list,
        Some(&a_token),
        Some(json!({"data": {"servers": [{"name": "no auth"}]}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["data"]["servers.0.auth"]["required"].is_object(), "{refused}");

    // Cross-account and auth failures.
    let (status, _) = call(Method::GET, &one, Some(&b_token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        Method::PUT,
        &w.daemon.url(&format!("/v2/accounts/{b}/connectivity")),
        Some(&a_token),
        Some(body(&theirs)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(Method::GET, &list, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Removing the DID releases the number; deleting the document too.
    let (status, patched) = call(Method::POST, &one, Some(&a_token), Some(json!({"data": {"name": "pbx", "servers": [{"auth": {"auth_method": "IP", "ip": "192.0.2.10"}}]}}))).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert!(couch_get_doc(&w.couch, &ndb, &mine).get("pvt_used_by").is_none());
    let (status, _) = call(Method::PATCH, &one, Some(&a_token), Some(json!({"data": {"servers": [{"auth": {"auth_method": "IP"}, "DIDs": {mine.as_str(): {}}}]}}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(couch_get_doc(&w.couch, &ndb, &mine)["pvt_used_by"], "trunkstore");
    let (status, _) = call(Method::DELETE, &one, Some(&a_token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(couch_get_doc(&w.couch, &ndb, &mine).get("pvt_used_by").is_none());
}

#[tokio::test]
async fn a_direct_document_edit_is_seen_through_the_api_and_by_routing() {
    let w = world();
    // `/route` answers 503 until the routing tables are loaded.
    wait_ready().await;
    let root = root_token().await;
    // A Fauxton-style edit: a resource written straight into offnet.
    let id = hex_id();
    let prefix = format!("{}", 200 + rand_u64() % 700);
    let doc = json!({"_id": id, "pvt_type": "resource", "name": "fauxton", "enabled": true,
        "weight_cost": 1, "rules": [format!("^\\+1({prefix}\\d{{7}})$")],
        "gateways": [{"server": "fauxton.example.com", "enabled": true}]});
    let rev = couch_put_doc(&w.couch, "offnet", &doc);
    let (status, body) =
        call(Method::GET, &w.daemon.url(&format!("/v2/resources/{id}")), Some(&root), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["name"], "fauxton");
    assert_eq!(body["revision"], rev.as_str());

    // Routing picks it up through the change feed (loopback is not trusted in this daemon:
    // the superduper token lets the request through).
    let number = format!("+1{prefix}5550100");
    let route = w.daemon.url("/v2/stepswitch/route");
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) =
            call(Method::POST, &route, Some(&root), Some(json!({"To-DID": number}))).await;
        // 404 until a carrier takes the number.
        assert!(matches!(status, StatusCode::OK | StatusCode::NOT_FOUND), "{status} {body}");
        if body.to_string().contains("fauxton.example.com") {
            break;
        }
        assert!(Instant::now() < deadline, "routing never saw the edit: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // And the other way round: an API write is a document write routing sees the same way.
    let (status, body) = call(
        Method::PATCH,
        &w.daemon.url(&format!("/v2/resources/{id}")),
        Some(&root),
        Some(json!({"data": {"gateways": [{"server": "via-api.example.com", "enabled": true}]}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) =
            call(Method::POST, &route, Some(&root), Some(json!({"To-DID": number}))).await;
        // 404 until a carrier takes the number.
        assert!(matches!(status, StatusCode::OK | StatusCode::NOT_FOUND), "{status} {body}");
        if body.to_string().contains("via-api.example.com") {
            break;
        }
        assert!(Instant::now() < deadline, "routing never saw the API write: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn routing_needs_a_trusted_network_or_a_superduper_token() {
    let w = world();
    wait_ready().await;
    let (_, a_token, _, _) = two_accounts().await;
    let root = root_token().await;
    let route = w.daemon.url("/v2/stepswitch/route");
    let (status, body) =
        call(Method::POST, &route, None, Some(json!({"To-DID": "+14155550100"}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, 401);
    let (status, _) =
        call(Method::POST, &route, Some(&a_token), Some(json!({"To-DID": "+14155550100"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) =
        call(Method::POST, &route, Some(&root), Some(json!({"To-DID": "+14155550100"}))).await;
    // Through the gate: an answer (404 when no carrier of this shared store takes the number).
    match status {
        StatusCode::OK => assert_envelope(&body),
        StatusCode::NOT_FOUND => assert_eq!(body["message"], "no_carrier", "{body}"),
        other => panic!("{other}: {body}"),
    }
    // The outbound decision sits behind the same gate.
    let outbound = w.daemon.url("/v2/stepswitch/outbound");
    for (token, expected) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(a_token.as_str()), StatusCode::FORBIDDEN),
        (Some(root.as_str()), StatusCode::OK),
    ] {
        let req = json!({"To-DID": "+14155550100"});
        let (status, body) = call(Method::POST, &outbound, token, Some(req)).await;
        assert_eq!(status, expected, "{body}");
    }
    let (status, body) = call(Method::POST, &route, Some(&root), Some(json!({"Flags": "x"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, 400);
    let huge = json!({"To-DID": "+14155550100", "pad": "x".repeat(70 * 1024)});
    let (status, body) = call(Method::POST, &route, Some(&root), Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_error(&body, 413);
    let (status, body) =
        call(Method::GET, &w.daemon.url("/v2/stepswitch/status"), Some(&root), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) =
        call(Method::GET, &w.daemon.url("/v2/stepswitch/status"), Some(&a_token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = call(
        Method::POST,
        &w.daemon.url("/v2/stepswitch/reload?account_id=bad"),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// Waits (bounded, on the condition) until `/healthz` says every reactor has caught up.
async fn wait_ready() {
    let w = world();
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = call(Method::GET, &w.daemon.url("/healthz"), None, None).await;
        if status == StatusCode::OK {
            assert_eq!(body["status"], "ready");
            return;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn operations_endpoints() {
    let w = world();
    wait_ready().await;
    let _ = root_token().await;
    let resp = reqwest::get(w.daemon.url("/metrics")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(text.contains("switchboard_http_requests_total"), "{text}");
    assert!(text.contains("switchboard_routing_generation"), "{text}");

    let (status, doc) = call(Method::GET, &w.daemon.url("/v2/openapi.json"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v2/api_auth",
        "/v2/resources/{resource_id}",
        "/v2/accounts/{account_id}/connectivity",
        "/v2/accounts/{account_id}/phone_numbers/carriers_info",
        "/v2/accounts/{account_id}/phone_numbers/check",
        "/v2/stepswitch/route",
        "/v2/stepswitch/outbound",
        "/healthz",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    // An unknown route: Crossbar's 404 envelope.
    let (status, body) = call(Method::GET, &w.daemon.url("/v2/nope"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, 404);
}

/// The README's run command: `switchboard serve` on a fresh data dir seeds the demo documents,
/// prints the address, the demo key and an example request, and answers it.
#[tokio::test]
async fn the_demo_run_starts_and_answers_on_a_fresh_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut daemon = Daemon::start(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--create-data-dir",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let banner = daemon.banner.join("\n");
    assert!(banner.contains("demo data seeded"), "{banner}");
    let key = banner
        .split("api key ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the banner prints the demo api key")
        .to_owned();
    assert!(banner.contains("curl"), "{banner}");
    let (status, body) = call(
        Method::PUT,
        &daemon.url("/v2/api_auth"),
        None,
        Some(json!({"data": {"api_key": key}})),
    )
    .await;
    let deadline = Instant::now() + WAIT;
    let mut answer = (status, body);
    while answer.0 == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer = call(
            Method::PUT,
            &daemon.url("/v2/api_auth"),
            None,
            Some(json!({"data": {"api_key": key}})),
        )
        .await;
    }
    assert_eq!(answer.0, StatusCode::CREATED, "{}", answer.1);
    let token = answer.1["auth_token"].as_str().unwrap().to_owned();
    let (status, body) = call(Method::GET, &daemon.url("/v2/resources"), Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2, "the two demo carriers: {body}");
    // Loopback is trusted by default: the switch needs no token to route.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = call(
            Method::POST,
            &daemon.url("/v2/stepswitch/route"),
            None,
            Some(json!({"To-DID": "+14155550100"})),
        )
        .await;
        // 503 until the routing tables are loaded, 404 until the demo carriers are.
        assert!(
            matches!(
                status,
                StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE | StatusCode::NOT_FOUND
            ),
            "{status} {body}"
        );
        if body["data"]["endpoints"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the demo carriers never routed: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exit = daemon.stop();
    assert!(exit.success(), "SIGTERM is a clean exit: {exit:?}");

    // A second start on the same dir does not seed again and still answers.
    let mut again = Daemon::start(
        &["serve", "--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        &[],
    );
    assert!(again.banner.join("\n").contains("demo data present"), "{:?}", again.banner);
    assert!(again.stop().success());
}

#[tokio::test]
async fn phone_numbers_lifecycle_auth_cross_account_and_bad_input() {
    let w = world();
    let root = root_token().await;
    let (a, a_token, b, b_token) = two_accounts().await;
    let number = random_number();
    let one = w.daemon.url(&format!("/v2/accounts/{a}/phone_numbers/{number}"));

    // The superduper admin creates the number for A (`cb_phone_numbers_v2`'s routes PUT: create, default in_service).
    let (status, body) =
        call(Method::PUT, &one, Some(&root), Some(json!({"data": {"my_field": "x"}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_envelope(&body);
    assert_eq!(body["data"]["id"], number.as_str());
    assert_eq!(body["data"]["state"], "in_service", "{body}");
    assert_eq!(body["data"]["my_field"], "x");
    let stored = couch_get_doc(&w.couch, &format!("numbers/{}", &number[..5]), &number);
    assert_eq!(stored["pvt_assigned_to"], a.as_str());

    // A reads, merges a field, identifies and lists it. The features A may set (`knm_providers:list_available_features/1`) are in
    // `_read_only.features_available`: force_outbound always (vector K14), carrier_name only
    // for admins (K15), and no external feature on a local number.
    let (status, body) = call(Method::GET, &one, Some(&a_token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let available = body["data"]["_read_only"]["features_available"].as_array().expect("list");
    assert!(available.contains(&json!("force_outbound")), "{body}");
    assert!(!available.contains(&json!("carrier_name")), "{body}");
    assert!(!available.contains(&json!("e911")), "{body}");
    let (status, body) =
        call(Method::PATCH, &one, Some(&a_token), Some(json!({"data": {"other": 1}}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["my_field"], "x");
    assert_eq!(body["data"]["other"], 1);
    let (status, body) = call(Method::GET, &format!("{one}/identify"), Some(&a_token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["account_id"], a.as_str());
    let (status, body) = call(
        Method::GET,
        &w.daemon.url(&format!("/v2/accounts/{a}/phone_numbers")),
        Some(&a_token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["numbers"].get(&number).is_some(), "{body}");

    // Cross-account: B may not act through A's path; auth failure without a token.
    let (status, body) = call(Method::GET, &one, Some(&b_token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = call(Method::DELETE, &one, Some(&b_token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let theirs = w.daemon.url(&format!("/v2/accounts/{b}/phone_numbers/{number}/activate"));
    let (status, body) =
        call(Method::PUT, &theirs, Some(&b_token), Some(json!({"data": {}}))).await;
    assert!(status.is_client_error(), "B cannot take A's number: {status} {body}");
    assert_error(&body, status.as_u16());
    let (status, _) = call(Method::GET, &one, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Bad input: malformed JSON, a bad state, a number that does not exist.
    let (status, body) = call_raw(Method::POST, &one, Some(&a_token), Some("{".into()), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = call(
        Method::PUT,
        &w.daemon.url(&format!("/v2/accounts/{a}/phone_numbers/{}", random_number())),
        Some(&root),
        Some(json!({"data": {"create_with_state": "bogus"}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) =
        call(Method::PATCH, &one, Some(&a_token), Some(json!({"data": {"e911": "nope"}}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["data"]["e911"]["type"]["message"].is_string(), "{body}");
    let missing = w.daemon.url(&format!("/v2/accounts/{a}/phone_numbers/{}", random_number()));
    let (status, body) = call(Method::GET, &missing, Some(&a_token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["message"], "bad_identifier");
    assert_eq!(body["data"]["not_found"], "The number could not be found");

    // Collections: 200 with per-number results, even for the ones that fail (`cb_phone_numbers_v2`'s success replies).
    let coll = w.daemon.url(&format!("/v2/accounts/{a}/phone_numbers/collection"));
    let (n1, n2) = (random_number(), random_number());
    let (status, body) = call(
        Method::PUT,
        &coll,
        Some(&root),
        Some(json!({"data": {"numbers": [n1, n2, "nope"], "tag": "bulk"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["success"][&n1]["tag"], "bulk", "{body}");
    assert!(body["data"]["success"].get(&n2).is_some(), "{body}");
    assert!(body["data"]["error"].get("nope").is_some(), "{body}");
    let (status, body) =
        call(Method::PUT, &coll, Some(&root), Some(json!({"data": {"numbers": []}}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["data"]["numbers"]["minimum"].is_object(), "{body}");
    let (status, _) =
        call(Method::PUT, &coll, Some(&b_token), Some(json!({"data": {"numbers": [n1]}}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) =
        call(Method::DELETE, &coll, Some(&a_token), Some(json!({"data": {"numbers": [n1, n2]}})))
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["success"].get(&n1).is_some(), "{body}");

    // Classifiers.
    let (status, body) = call(
        Method::GET,
        &w.daemon.url(&format!("/v2/accounts/{a}/phone_numbers/classifiers/+18005550100")),
        Some(&a_token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["name"], "tollfree_us", "{body}");
    let (status, body) = call(
        Method::GET,
        &w.daemon.url(&format!("/v2/accounts/{a}/phone_numbers/classifiers")),
        Some(&b_token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // carriers_info (`knm_carriers:info/3`): default carriers knm_local (prefix 10, min 15); the superduper
    // admin may create in every state, a plain account in none (`knm_number:allowed_creation_states/2`).
    let info = w.daemon.url(&format!("/v2/accounts/{a}/phone_numbers/carriers_info"));
    let (status, body) = call(Method::GET, &info, Some(&root), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_envelope(&body);
    assert_eq!(body["data"]["maximal_prefix_length"], 10, "{body}");
    let usable = body["data"]["usable_carriers"].as_array().expect("usable_carriers");
    assert!(usable.contains(&json!("local")), "{body}");
    assert!(!usable.iter().any(|c| c.as_str().is_some_and(|c| c.starts_with("reserved"))));
    assert!(!usable.iter().any(|c| c.as_str().is_some_and(|c| c.starts_with("knm_"))));
    let states = body["data"]["usable_creation_states"].as_array().expect("states");
    for st in ["in_service", "reserved", "available"] {
        assert!(states.contains(&json!(st)), "{body}");
    }
    let (status, body) = call(Method::GET, &info, Some(&a_token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["usable_creation_states"], json!([]), "{body}");
    let (status, body) = call(Method::GET, &info, Some(&b_token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error(&body, 403);
    let (status, body) = call(Method::GET, &info, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, 401);

    // check (`knm_carriers:check/1`, vectors O7-O8): knm_local cannot check, so every number (deduplicated
    // after normalization) is "error"; an input that cannot be normalized is "error" too.
    let check = w.daemon.url(&format!("/v2/accounts/{a}/phone_numbers/check"));
    // An exchange digit of 2-9, so that the ten-digit form normalizes to the same NANP number.
    let n3 = format!("+1555{}{:06}", 2 + rand_u64() % 8, rand_u64() % 1_000_000);
    let (status, body) = call(
        Method::POST,
        &check,
        Some(&a_token),
        Some(json!({"data": {"numbers": [n3, n3.clone(), n3[2..].to_owned(), "nope"]}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_envelope(&body);
    assert_eq!(body["data"], json!({(n3.clone()): "error", "nope": "error"}), "{body}");
    let (status, body) =
        call(Method::POST, &check, Some(&b_token), Some(json!({"data": {"numbers": [n3]}}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error(&body, 403);
    let (status, body) =
        call(Method::POST, &check, None, Some(json!({"data": {"numbers": [n3]}}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, 401);
    for (data, rule) in [
        (json!({}), "required"),
        (json!({"numbers": []}), "minimum"),
        (json!({"numbers": "+15551230000"}), "type"),
        (json!({"numbers": [1]}), "type"),
    ] {
        let (status, body) =
            call(Method::POST, &check, Some(&a_token), Some(json!({ "data": data }))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{data}: {body}");
        assert_error(&body, 400);
        assert!(body["data"]["numbers"][rule]["message"].is_string(), "{data}: {body}");
    }
    let (status, body) =
        call_raw(Method::POST, &check, Some(&a_token), Some("{".into()), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Port-in and search (the search needs no token; a short prefix is refused).
    let ported = w.daemon.url(&format!("/v2/accounts/{a}/phone_numbers/{}/port", random_number()));
    let (status, body) = call(Method::PUT, &ported, Some(&root), Some(json!({"data": {}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["state"], "port_in", "{body}");
    let (status, body) =
        call(Method::GET, &w.daemon.url("/v2/phone_numbers?prefix=1555&quantity=5"), None, None)
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"].is_array(), "{body}");
    let (status, body) =
        call(Method::GET, &w.daemon.url("/v2/phone_numbers?prefix=1"), None, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["data"]["prefix"]["minLength"].is_object(), "{body}");

    // Release: the number leaves A.
    let (status, body) = call(Method::DELETE, &one, Some(&a_token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A knm_local number is deleted on release (`knm_numbers:release/2`); any other leaves A's hands.
    let db = enc(&format!("numbers/{}", &number[..5]));
    let (_, rows) = couch(
        "POST",
        &format!("{}/{db}/_all_docs?include_docs=true", w.couch),
        Some(&json!({ "keys": [number] })),
    );
    let row = &rows["rows"][0];
    let gone = row["value"]["deleted"] == true;
    assert!(gone || row["doc"]["pvt_assigned_to"] != a.as_str(), "{row}");
    let (status, _) = call(Method::GET, &one, Some(&a_token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "released");
}

/// `identify` follows the number documents live (the inbound table, read once the daemon is
/// ready): a number written straight into its numbers database after the daemon started,
/// moved to another account, taken out of service and deleted, each answer seen in turn, with
/// Crossbar's error shapes. Asked by the superduper admin, who may see every owner (an
/// account sees only the owners in its own tree: `tests/e2e_hostile_http.rs`).
#[tokio::test]
async fn identify_follows_number_documents_written_after_the_start() {
    let w = world();
    wait_ready().await;
    let (a, _, b, _) = two_accounts().await;
    let token = root_token().await;
    let number = random_number();
    let db = format!("numbers/{}", &number[..5]);
    let identify = w.daemon.url(&format!("/v2/accounts/{a}/phone_numbers/{number}/identify"));
    // Polls (bounded) until the answer is `expected`.
    let until = |what: &'static str, expected: (StatusCode, Value)| {
        let (identify, token) = (identify.clone(), token.clone());
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                let (status, body) = call(Method::GET, &identify, Some(&token), None).await;
                if (status, body["data"].clone()) == expected {
                    return body;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: never {expected:?}; last {status} {body}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let rev = couch_put_doc(&w.couch, &db, &number_doc(&number, &a, "in_service"));
    let body = until("created", (StatusCode::OK, json!({"account_id": a, "number": number}))).await;
    assert_envelope(&body);

    let mut moved = number_doc(&number, &b, "in_service");
    moved["_rev"] = json!(rev);
    let rev = couch_put_doc(&w.couch, &db, &moved);
    until("moved", (StatusCode::OK, json!({"account_id": b, "number": number}))).await;

    let mut out = number_doc(&number, &b, "released");
    out["_rev"] = json!(rev);
    let rev = couch_put_doc(&w.couch, &db, &out);
    let not_in_service = json!({"cause": "not_in_service", "account_id": b, "number": number});
    let body = until("out of service", (StatusCode::BAD_REQUEST, not_in_service)).await;
    assert_eq!(body["message"], "client error", "{body}");

    let url = format!("{}/{}/{}?rev={rev}", w.couch, enc(&db), enc(&number));
    let (status, body) = couch("DELETE", &url, None);
    assert_eq!(status, 200, "{body}");
    let not_found =
        json!({"message": "bad identifier", "not_found": "The number could not be found"});
    let body = until("deleted", (StatusCode::NOT_FOUND, not_found)).await;
    assert_eq!(body["message"], "bad_identifier", "{body}");
    assert_error(&body, 404);
}

/// A configuration file sets the store, the listen address and the token lifetime; an expired
/// token is a 401.
#[tokio::test]
async fn a_config_file_is_honoured_and_tokens_expire() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[embedded]\ndata_dir = {:?}\n[api]\nlisten = \"127.0.0.1:0\"\ntoken_lifetime = \"1s\"\n[log]\nlevel = \"warn\"\n",
            dir.path().join("data").to_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let mut daemon = Daemon::start(&["serve", "--config", config.to_str().unwrap()], &[]);
    let banner = daemon.banner.join("\n");
    assert!(banner.contains(dir.path().join("data").to_str().unwrap()), "{banner}");
    let key = banner.split("api key ").nth(1).and_then(|r| r.split(')').next()).unwrap().to_owned();
    let deadline = Instant::now() + WAIT;
    let token = loop {
        let (status, body) = call(
            Method::PUT,
            &daemon.url("/v2/api_auth"),
            None,
            Some(json!({"data": {"api_key": key}})),
        )
        .await;
        if status == StatusCode::CREATED {
            break body["auth_token"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The token works, then (1 s later) it does not: wait on that condition, bounded.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) =
            call(Method::GET, &daemon.url("/v2/resources"), Some(&token), None).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(body["message"], "invalid_credentials");
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(Instant::now() < deadline, "the token never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(daemon.stop().success());

    // A typo in the file: the daemon refuses to start and names the key.
    std::fs::write(&config, "[api]\nlisen = \"127.0.0.1:0\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lisen"), "{stderr}");
}

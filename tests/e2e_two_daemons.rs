//! Two `switchboard serve` processes on one test server, as two instances behind a load
//! balancer: a token issued by one is accepted by the other (and refused by both once its account
//! is disabled); an edit made through one daemon's API, or straight in the store (a
//! `number_manager` edit: a new classifier, a changed converter), reaches routing and the numbers
//! API of both; 200 concurrent reservations of one number split across both have exactly one
//! winner; the number crawler's start-up pass is done by one of them only (the crawler lease).
//!
//! Waits are on conditions with generous upper bounds, never sleep-then-assert; how long an edit
//! took to show is printed (speed is measured, not asserted).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Map, Value};
use testkit::kazoo::{couch, couch_put_doc, enc, make_account};
use testkit::{CouchServer, Daemon};

const WAIT: Duration = Duration::from_secs(60);
/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);
/// An `aging` number older than the crawler's 90 days, written before the daemons start.
const AGING_NUMBER: &str = "+14155559001";

/// The test server, the root (superduper) account and the two daemons.
struct World {
    couch: String,
    /// Their base URLs.
    bases: [String; 2],
    /// Kept running for the life of the test binary.
    _daemons: std::sync::Mutex<[Daemon; 2]>,
    root_id: String,
    root_key: String,
}

/// A random 32-digit lowercase hex id (an account id).
fn hex_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A random number below `n`.
fn random_below(n: u64) -> u64 {
    u64::from_str_radix(&hex_id()[..12], 16).unwrap() % n
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let server = CouchServer::shared();
        let couch_url = server.url_with_credentials();
        let root = hex_id();
        let root_key = format!("root-{}", hex_id());
        make_account(&couch_url, &root, &root_key, &[], true);
        // Aged in the store before either daemon runs: their start-up crawl ages it.
        let old = 63_000_000_000u64;
        couch_put_doc(
            &couch_url,
            "numbers/+1415",
            &json!({"_id": AGING_NUMBER, "pvt_type": "number", "pvt_state": "aging",
                    "pvt_module_name": "knm_local", "pvt_created": old, "pvt_modified": old}),
        );
        let start = || {
            Daemon::start(
                env!("CARGO_BIN_EXE_switchboard"),
                &["--couch-url", &couch_url, "serve", "--listen", "127.0.0.1:0"],
                &[],
            )
        };
        let daemons = [start(), start()];
        let bases = [daemons[0].base().to_owned(), daemons[1].base().to_owned()];
        World {
            couch: couch_url,
            bases,
            _daemons: std::sync::Mutex::new(daemons),
            root_id: root,
            root_key,
        }
    })
}

/// One HTTP exchange: the status and the JSON body (a string when it is not JSON).
async fn call(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    // A connection refused under a burst of connects is tried again: the request never
    // reached the daemon.
    let started = Instant::now();
    let resp = loop {
        let mut req = client().request(method.clone(), url);
        if let Some(token) = token {
            req = req.header("X-Auth-Token", token);
        }
        if let Some(body) = &body {
            req = req.header("Content-Type", "application/json").body(body.to_string());
        }
        match req.send().await {
            Ok(resp) => break resp,
            Err(err) if not_connected(&err) && started.elapsed() < WAIT => {
                tokio::time::sleep(POLL).await;
            }
            Err(err) => panic!("request to switchboard: {err:?}"),
        }
    };
    let status = resp.status();
    let text = resp.text().await.expect("response body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The HTTP client of this test thread (one per runtime: a pooled connection must not outlive
/// the runtime that opened it).
fn client() -> Client {
    thread_local! {
        static CLIENT: Client = Client::new();
    }
    CLIENT.with(Client::clone)
}

/// Whether a request failed before a connection was made (so the daemon never saw it).
fn not_connected(err: &reqwest::Error) -> bool {
    err.is_connect() || format!("{err:?}").contains("ConnectError")
}

fn url(daemon: usize, path: &str) -> String {
    format!("{}{path}", world().bases[daemon])
}

/// Polls `check` until it returns `Some`; panics with `what` after [`WAIT`].
async fn until<T, F, Fut>(what: &str, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return (value, started.elapsed());
        }
        assert!(started.elapsed() < WAIT, "never happened: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Logs in on `daemon`, waiting (bounded) until it knows the account.
async fn login(daemon: usize, key: &str) -> String {
    let (token, _) = until(&format!("login on daemon {daemon}"), || async {
        let body = json!({"data": {"api_key": key}});
        let (status, body) =
            call(Method::PUT, &url(daemon, "/v2/api_auth"), None, Some(body)).await;
        (status == StatusCode::CREATED).then(|| body["auth_token"].as_str().unwrap().to_owned())
    })
    .await;
    token
}

/// A new enabled sub-account of root: (id, api key).
fn new_account() -> (String, String) {
    let w = world();
    let (id, key) = (hex_id(), format!("key-{}", hex_id()));
    make_account(&w.couch, &id, &key, &[&w.root_id], false);
    (id, key)
}

fn couch_get(db: &str, id: &str) -> Value {
    let (status, doc) = couch("GET", &format!("{}/{}/{}", world().couch, enc(db), enc(id)), None);
    assert_eq!(status, 200, "GET {db}/{id}: {doc}");
    doc
}

#[tokio::test]
async fn a_token_from_one_daemon_works_on_the_other_until_its_account_is_disabled() {
    let (id, key) = new_account();
    let path = format!("/v2/accounts/{id}/phone_numbers/classifiers");
    for (issuer, other) in [(0, 1), (1, 0)] {
        let token = login(issuer, &key).await;
        // Both daemons read the account from their live copy of `accounts`: wait until the
        // other has it, then the token is accepted there.
        until(&format!("daemon {other} accepts daemon {issuer}'s token"), || async {
            let (status, _) = call(Method::GET, &url(other, &path), Some(&token), None).await;
            (status == StatusCode::OK).then_some(())
        })
        .await;
    }
    let token = login(0, &key).await;

    let mut doc = couch_get("accounts", &id);
    doc["pvt_enabled"] = json!(false);
    couch_put_doc(&world().couch, "accounts", &doc);
    for daemon in [0, 1] {
        let (body, took) = until(&format!("daemon {daemon} refuses the token"), || async {
            let (status, body) = call(Method::GET, &url(daemon, &path), Some(&token), None).await;
            (status == StatusCode::UNAUTHORIZED).then_some(body)
        })
        .await;
        assert_eq!(body["message"], "invalid_credentials", "{body}");
        eprintln!("daemon {daemon}: a disabled account's token refused after {took:?}");
        let body = json!({"data": {"api_key": key}});
        let (status, _) = call(Method::PUT, &url(daemon, "/v2/api_auth"), None, Some(body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Not a token of this deployment: refused by both.
    for daemon in [0, 1] {
        let (status, _) = call(Method::GET, &url(daemon, &path), Some("a.b.c"), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_number_manager_edit_reaches_routing_and_the_numbers_api_of_both() {
    let (id, key) = new_account();
    let tokens = [login(0, &key).await, login(1, &key).await];
    // The classifiers in force, with ours first; Kazoo's converters, with ours first.
    let path = format!("/v2/accounts/{id}/phone_numbers/classifiers");
    let (status, body) = call(Method::GET, &url(0, &path), Some(&tokens[0]), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut classifiers = Map::new();
    classifiers.insert(
        "switchboard_live".into(),
        json!({"regex": "^\\+4420\\d{6}$", "friendly_name": "Live edit"}),
    );
    classifiers.extend(body["data"].as_object().unwrap().clone());
    let converters = json!({
        "^5550(\\d{6})$": {"prefix": "+4420"},
        "^(\\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$": {"prefix": "+1"},
        "^011(\\d{5,})$|^00(\\d{5,})$": {"prefix": "+"},
        "^[2-9]\\d{7,}$": {"prefix": "+"},
    });
    let (_, current) =
        couch("GET", &format!("{}/system_config/number_manager", world().couch), None);
    let mut doc = json!({"_id": "number_manager",
        "default": {"classifiers": classifiers, "e164_converters": converters}});
    if let Some(rev) = current.get("_rev") {
        doc["_rev"] = rev.clone();
    }
    couch_put_doc(&world().couch, "system_config", &doc);

    for daemon in [0, 1] {
        // Routing: the new converter, then the new classifier.
        let (_, took) = until(&format!("daemon {daemon} routes with the edit"), || async {
            let body = json!({"To-DID": "5550123456"});
            let (_, answer) =
                call(Method::POST, &url(daemon, "/v2/stepswitch/route"), None, Some(body)).await;
            let data = &answer["data"];
            (data["number"] == "+4420123456" && data["classification"] == "switchboard_live")
                .then_some(())
        })
        .await;
        eprintln!("daemon {daemon}: number_manager edit routed after {took:?}");
        // The numbers API.
        let path = format!("{path}/5550123456");
        let token = &tokens[daemon];
        let (data, took) = until(&format!("daemon {daemon}'s numbers API sees it"), || async {
            let (status, body) = call(Method::GET, &url(daemon, &path), Some(token), None).await;
            (status == StatusCode::OK && body["data"]["name"] == "switchboard_live")
                .then(|| body["data"].clone())
        })
        .await;
        assert_eq!(data["e164"], "+4420123456", "{data}");
        eprintln!("daemon {daemon}: number_manager edit in the numbers API after {took:?}");
    }
}

#[tokio::test]
async fn an_edit_through_one_daemon_routes_on_the_other() {
    let w = world();
    let root = login(0, &w.root_key).await;
    let prefix = 200 + random_below(700);
    let body = json!({"data": {"name": "via-a", "rules": [format!("^\\+1({prefix}\\d{{7}})$")],
        "gateways": [{"server": "via-a.example.com", "enabled": true}]}});
    let (status, body) = call(Method::PUT, &url(0, "/v2/resources"), Some(&root), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let number = format!("+1{prefix}5550100");
    let (_, took) = until("daemon 1 routes with daemon 0's edit", || async {
        let body = json!({"To-DID": number});
        let (_, answer) =
            call(Method::POST, &url(1, "/v2/stepswitch/route"), None, Some(body)).await;
        answer.to_string().contains("via-a.example.com").then_some(())
    })
    .await;
    eprintln!("daemon 1: a resource written through daemon 0 routed after {took:?}");
}

#[tokio::test]
async fn concurrent_reservations_across_both_daemons_have_one_winner() {
    let w = world();
    let number = format!("+1415{}", 2_000_000 + random_below(7_000_000));
    couch_put_doc(
        &w.couch,
        "numbers/+1415",
        &json!({"_id": number, "pvt_type": "number", "pvt_state": "available",
                "pvt_module_name": "knm_local", "pvt_created": 63_800_000_000u64,
                "pvt_modified": 63_800_000_000u64}),
    );
    // Twenty sibling accounts, ten tries each, alternating daemons: 200 at once.
    let mut accounts = Vec::new();
    for _ in 0..20 {
        let (id, key) = new_account();
        let tokens = [login(0, &key).await, login(1, &key).await];
        accounts.push((id, tokens));
    }
    let mut tries = Vec::new();
    for i in 0..200 {
        let (id, tokens) = &accounts[i % 20];
        let daemon = (i / 20) % 2;
        let path = format!("/v2/accounts/{id}/phone_numbers/{}/reserve", enc(&number));
        let (target, token) = (url(daemon, &path), tokens[daemon].clone());
        let id = id.clone();
        tries.push(tokio::spawn(async move {
            let (status, body) =
                call(Method::PUT, &target, Some(&token), Some(json!({"data": {}}))).await;
            (id, status, body)
        }));
    }
    let mut winners = Vec::new();
    for t in tries {
        let (id, status, body) = t.await.unwrap();
        assert!(!status.is_server_error(), "{status} {body}");
        if status.is_success() {
            winners.push(id);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let doc = couch_get("numbers/+1415", &number);
    assert_eq!(doc["pvt_state"], "reserved", "{doc}");
    assert_eq!(doc["pvt_assigned_to"], winners[0].as_str(), "{doc}");
}

/// The value of `switchboard_number_crawler_passes_total{outcome="…"}` in a `/metrics` text.
fn passes(metrics: &str, outcome: &str) -> u64 {
    let label = format!("switchboard_number_crawler_passes_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&label))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_start_up_crawl_is_done_by_one_daemon() {
    world();
    until("the aging number is made available", || async {
        let doc = couch_get("numbers/+1415", AGING_NUMBER);
        (doc["pvt_state"] == "available").then_some(())
    })
    .await;
    // Both tried once (the next pass is a day away): one crawled, the other found the lease held.
    let (counts, _) = until("both daemons tried their start-up pass", || async {
        let mut counts = Vec::new();
        for daemon in [0, 1] {
            let (status, body) = call(Method::GET, &url(daemon, "/metrics"), None, None).await;
            assert_eq!(status, StatusCode::OK);
            let text = body.as_str().unwrap_or_default().to_owned();
            counts.push((passes(&text, "done"), passes(&text, "skipped"), passes(&text, "failed")));
        }
        (counts.iter().map(|(d, s, f)| d + s + f).sum::<u64>() == 2).then_some(counts)
    })
    .await;
    let done: u64 = counts.iter().map(|c| c.0).sum();
    let skipped: u64 = counts.iter().map(|c| c.1).sum();
    assert_eq!((done, skipped), (1, 1), "per daemon (done, skipped, failed): {counts:?}");
    let lease = couch_get("system_switchboard", "lease_number_crawler");
    assert!(lease["holder"].as_str().is_some_and(|h| !h.is_empty()), "{lease}");
}

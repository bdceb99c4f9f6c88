//! Switchboard beside a live Kazoo cluster, end to end with the real binary against a private
//! couch-peer (Kazoo's database names are fixed, so this binary does not share the server other
//! test binaries use):
//!
//! - Kazoo's own design documents (here a `_design/resources` shaped as a Kazoo node stores it,
//!   with its `listing_uac_gateways`) are left exactly as they are: same `_rev`, working view.
//! - Switchboard's `_design/switchboard_*` reach every matching database as it appears (an
//!   account database created after start, `offnet` deleted and created again, a number pool),
//!   and come back when removed; Kazoo's are created only where missing.
//! - The resource validator refuses a rule JavaScript cannot compile, with the rule's index, and
//!   never refuses a rule the router compiles (every rule of Kazoo's fixtures and of the routing
//!   tests, plus the PCRE extensions the router accepts).
//! - One `number_manager` configuration (converters, classifiers) for the numbers API,
//!   connectivity and routing, live.
//! - Search then buy: an account's search finds its `knm_managed` numbers and a global search a
//!   carrier's (Bandwidth2 played by a mock), with `offset` and `country`; activating or
//!   creating a found number buys it, on any daemon (the hits are `discovery` records in the
//!   number databases); the number then identifies and lists (Kazoo's listing shape) as the
//!   account's.
//!
//! Waits are on conditions with a generous upper bound, never sleep-then-assert.

use std::future::Future;
use std::time::{Duration, Instant};

use docstore::{CouchConfig, CouchStore, DbName, DocStore, Rev, ViewQuery};
use serde_json::{json, Value};
use testkit::{CouchServer, Daemon};

const WAIT: Duration = Duration::from_secs(60);
const ACCOUNT_BEFORE: &str = "account/4b/a0/000000000000000000000000000a";
const ACCOUNT_AFTER: &str = "account/4b/a0/000000000000000000000000000b";
const ACCOUNT_RULES: &str = "account/4b/a0/000000000000000000000000000c";

/// A `_design/resources` shaped as a Kazoo node stores its own: a `kazoo` registration key, each
/// function one string, and a gateway registration view (`listing_uac_gateways`) that emits a
/// different value than the one Switchboard would create, so any rewrite would show.
fn kazoo_resources_ddoc() -> Value {
    json!({
        "_id": "_design/resources",
        "kazoo": {"view_map": [{"classification": "resource"}]},
        "language": "javascript",
        "views": {
            "listing_by_id": {
                "map": "function(doc) { if (doc.pvt_type != 'resource' || doc.pvt_deleted) return; emit(doc._id, doc.name); }"
            },
            "listing_uac_gateways": {
                "map": "function(doc) {\n  if (doc.pvt_type != 'resource' || doc.pvt_deleted || !doc.enabled) return;\n  (doc.gateways || []).forEach(function(gw) {\n    if (gw && gw.register && gw.enabled !== false) emit(doc._id, {server: gw.server, username: gw.username, kazoo_node: true});\n  });\n}"
            }
        }
    })
}

fn db(name: &str) -> DbName {
    DbName::new(name).unwrap()
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn has_doc(store: &CouchStore, name: &str, id: &str) -> bool {
    matches!(store.get(&db(name), id).await, Ok(Some(_)))
}

fn rev_of(doc: &Value) -> String {
    doc["_rev"].as_str().unwrap().to_owned()
}

fn private_server() -> Option<(CouchServer, CouchConfig, String, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(server) = CouchServer::start_persistent(dir.path()) else {
        eprintln!("COUCHDB_URL is set: e2e_kazoo needs a private server; skipped");
        return None;
    };
    let url = server.url_with_credentials();
    let config = CouchConfig::from_url(&url).expect("url");
    Some((server, config, url, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_design_documents_are_left_alone_and_ours_follow_every_database() {
    let Some((_server, config, url, _dir)) = private_server() else { return };
    let store = CouchStore::new(config).unwrap();
    let offnet = db("offnet");
    for name in ["offnet", "accounts", "system_config", ACCOUNT_BEFORE] {
        store.ensure_db(&db(name)).await.unwrap();
    }
    let theirs = kazoo_resources_ddoc();
    let offnet_rev = store.put(&offnet, theirs.clone()).await.unwrap();
    let account_rev = store.put(&db(ACCOUNT_BEFORE), theirs).await.unwrap();
    store
        .put(
            &offnet,
            json!({"_id": "registering", "pvt_type": "resource", "enabled": true,
                   "rules": ["^\\+1(\\d{10})$"],
                   "gateways": [{"server": "sip.example.net", "register": true, "username": "u"}]}),
        )
        .await
        .unwrap();

    let _daemon = Daemon::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["--couch-url", &url, "serve", "--listen", "127.0.0.1:0", "--discover-every", "100ms"],
        &[],
    );

    // Ours arrive beside Kazoo's, which keeps its revision and its views.
    for name in ["offnet", ACCOUNT_BEFORE] {
        wait_for(&format!("_design/switchboard_resources in {name}"), || {
            has_doc(&store, name, "_design/switchboard_resources")
        })
        .await;
    }
    let kept = store.get(&offnet, "_design/resources").await.unwrap().unwrap();
    assert_eq!(rev_of(&kept), offnet_rev.as_str());
    assert!(kept["kazoo"].is_object(), "Kazoo's document is not rewritten: {kept}");
    let kept = store.get(&db(ACCOUNT_BEFORE), "_design/resources").await.unwrap().unwrap();
    assert_eq!(rev_of(&kept), account_rev.as_str());
    let rows = store
        .view(&offnet, "resources", "listing_uac_gateways", &ViewQuery::default())
        .await
        .expect("Kazoo's gateway registration view still answers");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].value["server"], "sip.example.net");
    assert_eq!(rows[0].value["kazoo_node"], true, "the view is still Kazoo's: {rows:?}");

    // A customer's account database created after start gets ours and Kazoo's (missing there),
    // and its validator refuses what the router could not use.
    store.ensure_db(&db(ACCOUNT_AFTER)).await.unwrap();
    for id in ["_design/switchboard_resources", "_design/resources", "_design/phone_numbers"] {
        wait_for(&format!("{id} in the new account db"), || has_doc(&store, ACCOUNT_AFTER, id))
            .await;
    }
    let refused = store
        .put(&db(ACCOUNT_AFTER), json!({"_id": "bad", "pvt_type": "resource", "rules": "^1"}))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("resource bad: rules must be an array"), "{refused}");

    // Ours removed is put back; Kazoo's removed is created again.
    let ours = store.get(&offnet, "_design/switchboard_resources").await.unwrap().unwrap();
    store.delete(&offnet, "_design/switchboard_resources", &Rev(rev_of(&ours))).await.unwrap();
    wait_for("_design/switchboard_resources put back in offnet", || {
        has_doc(&store, "offnet", "_design/switchboard_resources")
    })
    .await;
    // Ours edited is put back (seen in the database's changes: no periodic sweep).
    let mut edited = store.get(&offnet, "_design/switchboard_resources").await.unwrap().unwrap();
    let validator = edited["validate_doc_update"].clone();
    edited["validate_doc_update"] = json!("function(newDoc) {}");
    store.put(&offnet, edited).await.unwrap();
    wait_for("the edited _design/switchboard_resources put back", || async {
        let doc = store.get(&offnet, "_design/switchboard_resources").await.ok().flatten();
        doc.is_some_and(|doc| doc["validate_doc_update"] == validator)
    })
    .await;
    let theirs = store.get(&db(ACCOUNT_BEFORE), "_design/resources").await.unwrap().unwrap();
    store.delete(&db(ACCOUNT_BEFORE), "_design/resources", &Rev(rev_of(&theirs))).await.unwrap();
    wait_for("Kazoo's _design/resources created again in the account db", || {
        has_doc(&store, ACCOUNT_BEFORE, "_design/resources")
    })
    .await;

    // `offnet` deleted and created again gets both once more.
    store.delete_db(&offnet).await.unwrap();
    store.create_db(&offnet).await.unwrap();
    for id in ["_design/switchboard_resources", "_design/resources"] {
        wait_for(&format!("{id} in the new offnet"), || has_doc(&store, "offnet", id)).await;
    }
    let created = store.get(&offnet, "_design/resources").await.unwrap().unwrap();
    assert!(created.get("kazoo").is_none(), "stored as Kazoo stores it: {created}");
    assert!(created["views"]["listing_uac_gateways"].is_object());

    // The managed pool gets the number validator and Kazoo's pool view.
    let managed = db("numbers/managed");
    store.ensure_db(&managed).await.unwrap();
    for id in ["_design/switchboard_numbers", "_design/numbers", "_design/numbers_managed"] {
        wait_for(&format!("{id} in numbers/managed"), || has_doc(&store, "numbers/managed", id))
            .await;
    }
    store
        .put(
            &managed,
            json!({"_id": "+14155550100", "pvt_state": "available", "pvt_account_id": "a1"}),
        )
        .await
        .unwrap();
    let rows =
        store.view(&managed, "numbers_managed", "status", &ViewQuery::default()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].key, json!(["a1", "available", "+14155550100"]));
}

/// Every string under a `rules`, `cid_rules` or `regex` key, and every key of an
/// `e164_converters` object, anywhere in `value`.
fn collect_patterns(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("rules" | "cid_rules", Value::Array(items)) => {
                        out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned));
                    }
                    ("regex", Value::String(text)) => out.push(text.clone()),
                    ("e164_converters", Value::Object(converters)) => {
                        out.extend(converters.keys().cloned());
                    }
                    _ => {}
                }
                collect_patterns(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_patterns(item, out)),
        _ => {}
    }
}

/// The regular expressions written as string literals in Rust source: every literal that starts
/// with `^`, raw (`r"…"`, `r#"…"#`) or with its escapes undone.
fn patterns_in_rust_source(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("\"^") {
        let before = &rest[..start];
        let body = &rest[start + 1..];
        rest = &body[1..];
        if before.ends_with("r#") {
            if let Some(end) = body.find("\"#") {
                out.push(body[..end].to_owned());
            }
            continue;
        }
        if before.ends_with('r') {
            if let Some(end) = body.find('"') {
                out.push(body[..end].to_owned());
            }
            continue;
        }
        let mut text = String::new();
        let mut chars = body.chars();
        while let Some(ch) = chars.next() {
            match ch {
                '\\' => match chars.next() {
                    Some('n') => text.push('\n'),
                    Some(other) => text.push(other),
                    None => break,
                },
                '"' => {
                    out.push(std::mem::take(&mut text));
                    break;
                }
                other => text.push(other),
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_validator_refuses_only_what_the_router_cannot_compile() {
    let Some((_server, config, _url, _dir)) = private_server() else { return };
    let store = CouchStore::new(config).unwrap();
    let account = db(ACCOUNT_RULES);
    store.ensure_db(&account).await.unwrap();
    docstore::deploy(&store, &account, docstore::DesignKind::Account).await.unwrap();

    let mut corpus = Vec::new();
    for fixture in [
        include_str!("../fixtures/stepswitch/resources/global.json"),
        include_str!("../fixtures/stepswitch/system_config/number_manager.json"),
        include_str!("../fixtures/numbers/account-configs/master_configs_number_manager.json"),
        include_str!("../fixtures/demo/seed.json"),
    ] {
        collect_patterns(&serde_json::from_str(fixture).unwrap(), &mut corpus);
    }
    corpus.extend(patterns_in_rust_source(include_str!("../crates/stepswitch/tests/kazoo.rs")));
    corpus.extend(patterns_in_rust_source(include_str!("../crates/e164/src/converters.rs")));
    let from_files = corpus.len();
    assert!(from_files > 30, "the corpus is the fixtures' and tests' rules: {corpus:?}");
    // The PCRE extensions the router compiles and JavaScript spells differently, and rules the
    // router refuses.
    for rule in [
        r"(?i)^\+1(800)$",
        r"^(?i:abc)\d+$",
        r"^(?-i)x$",
        r"^(?P<npa>\d{3})(?P=npa)$",
        r"^(?<npa>\d{3})\k<npa>$",
        r"^(?>\+1)\d++$",
        r"^\d*+x$",
        r"^(?<=\+)1\d{10}$",
        r"^(?<!\+)1\d{10}$",
        r"^(?=\+1)\+1\d{10}$",
        r"^[]a]$",
        r"^[^]a]$",
        r"\A\+1\d{10}\z",
        r"^\+1\d{10}$|^(?:011|00)(\d+)$",
        r"^a{2}{3}$",
        r"^a**$",
        r"^(?x) \+ 1 # comment$",
        r"^\+1((33\d{7})$",
        r"^[0-9$",
        r"^(\d{3}$",
        r"^+1$",
        r"^\d{3,2}$",
        r"^+([2-9]\d{7,})$",
        r"^+?1$",
        r"\b+1",
        r"a|*b",
    ] {
        corpus.push(rule.to_owned());
    }
    corpus.sort();
    corpus.dedup();

    let mut router_refused = Vec::new();
    for (n, rule) in corpus.iter().enumerate() {
        let router_accepts = e164::Pattern::new(rule).is_ok();
        let doc = json!({"_id": format!("r{n}"), "pvt_type": "resource",
                         "rules": ["^\\+1(\\d{10})$", rule]});
        let outcome = store.put(&account, doc).await;
        if router_accepts {
            assert!(
                outcome.is_ok(),
                "the router compiles {rule:?}, the validator refused: {outcome:?}"
            );
        } else {
            router_refused.push(rule.clone());
            if let Err(err) = outcome {
                let text = err.to_string();
                assert!(
                    text.contains(&format!("resource r{n}: rules[1] ")),
                    "{rule:?}: the message names the rule: {text}"
                );
            }
        }
    }
    // The issue's example is refused by both, with the index the operator needs.
    assert!(router_refused.iter().any(|r| r == r"^\+1((33\d{7})$"), "{router_refused:?}");
    let err = store
        .put(
            &account,
            json!({"_id": "unbalanced", "pvt_type": "resource",
                               "rules": ["^1", "^2", r"^\+1((33\d{7})$"]}),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("resource unbalanced: rules[2] is not a valid regular expression"),
        "{err}"
    );

    // weight_cost: what Kazoo converts passes, what it would silently ignore is refused.
    for (n, weight) in
        [json!(7), json!(7.5), json!("50"), json!("50.5"), json!("-3"), json!("1.5e1")]
            .into_iter()
            .enumerate()
    {
        let doc = json!({"_id": format!("w{n}"), "pvt_type": "resource", "weight_cost": weight});
        assert!(store.put(&account, doc).await.is_ok(), "weight_cost {weight} is Kazoo's");
        assert!(stepswitch::kazoo_integer(&weight).is_some(), "{weight}");
    }
    for (n, weight) in
        [json!("5e2"), json!("50."), json!(" 7"), json!("x"), json!(true)].into_iter().enumerate()
    {
        let doc = json!({"_id": format!("v{n}"), "pvt_type": "resource", "weight_cost": weight});
        let err = store.put(&account, doc).await.unwrap_err();
        assert!(err.to_string().contains("weight_cost must be"), "{weight}: {err}");
        assert!(stepswitch::kazoo_integer(&weight).is_none(), "{weight}");
    }
}

async fn call(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, url);
    if let Some(token) = token {
        req = req.header("X-Auth-Token", token);
    }
    if let Some(body) = body {
        req = req.header("Content-Type", "application/json").body(body.to_string());
    }
    let resp = req.send().await.expect("request to switchboard");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("response body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A superduper admin account `id` (32 hex characters) with `api_key`, its database, and an
/// empty `system_config`.
async fn make_admin_account(store: &CouchStore, id: &str, api_key: &str) {
    let account_db = format!("account/{}/{}/{}", &id[..2], &id[2..4], &id[4..]);
    for name in ["accounts", "system_config", account_db.as_str()] {
        store.ensure_db(&db(name)).await.unwrap();
    }
    store
        .put(
            &db("accounts"),
            json!({"_id": id, "name": id, "pvt_type": "account", "pvt_api_key": api_key,
                   "pvt_tree": [], "pvt_superduper_admin": true, "pvt_enabled": true,
                   "pvt_account_id": id, "pvt_account_db": docstore::naming::encoded(&db(&account_db))}),
        )
        .await
        .unwrap();
}

/// `switchboard serve` against the CouchDB at `url`, on a free port.
fn serve(url: &str) -> Daemon {
    Daemon::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["--couch-url", url, "serve", "--listen", "127.0.0.1:0", "--discover-every", "100ms"],
        &[],
    )
}

/// Logs in with `api_key`, waiting (bounded) until the daemon's account index has the account.
async fn login(daemon: &Daemon, api_key: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = call(
            reqwest::Method::PUT,
            &format!("{}/v2/api_auth", daemon.base()),
            None,
            Some(json!({"data": {"api_key": api_key}})),
        )
        .await;
        if status == 201 {
            return body["auth_token"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "login never succeeded: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The configured `e164_converters` and `classifiers` are the ones the numbers API and
/// connectivity use (not Kazoo's defaults), and an edit of `system_config/number_manager`
/// reaches them without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_number_manager_configuration_for_numbers_connectivity_and_routing() {
    use reqwest::Method;
    let Some((_server, config, url, _dir)) = private_server() else { return };
    let store = CouchStore::new(config).unwrap();
    let account = "4ba0000000000000000000000000000d";
    make_admin_account(&store, account, "fr-key").await;
    let number_manager = json!({"_id": "number_manager", "default": {
        "e164_converters": {
            "^0([67]\\d{8})$": {"prefix": "+33"},
            "^\\+?1?(\\d{10})$": {"prefix": "+1"}
        },
        "classifiers": {
            "fr_mobile": {"regex": "^\\+33([67]\\d{8})$", "friendly_name": "FR mobile"},
            "did_us": {"regex": "^\\+1(\\d{10})$", "friendly_name": "US DID"}
        }
    }});
    let rev = store.put(&db("system_config"), number_manager.clone()).await.unwrap();

    let daemon = serve(&url);
    let api = |path: &str| format!("{}{path}", daemon.base());
    let token = login(&daemon, "fr-key").await;
    let token = Some(token.as_str());

    // The classifiers listed and used are the configured ones.
    let classifiers = api(&format!("/v2/accounts/{account}/phone_numbers/classifiers"));
    let (status, listed) = call(Method::GET, &classifiers, token, None).await;
    assert_eq!(status, 200, "{listed}");
    let names: Vec<&String> = listed["data"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["fr_mobile", "did_us"], "{listed}");
    let (status, one) = call(Method::GET, &format!("{classifiers}/0612345678"), token, None).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["data"]["name"], "fr_mobile");
    assert_eq!(one["data"]["e164"], "+33612345678");

    // A number created from its national form lands under the configured E.164 form, and
    // connectivity normalises its DIDs the same way (with Kazoo's defaults "0612345678" would be
    // a US number the account does not own).
    let (status, created) = call(
        Method::PUT,
        &api(&format!("/v2/accounts/{account}/phone_numbers/0612345678")),
        token,
        Some(json!({"data": {}})),
    )
    .await;
    assert!(status == 201 || status == 200, "{status} {created}");
    assert_eq!(created["data"]["id"], "+33612345678", "{created}");
    let (status, trunk) = call(
        Method::PUT,
        &api(&format!("/v2/accounts/{account}/connectivity")),
        token,
        Some(json!({"data": {"name": "pbx", "servers": [{
            "auth": {"auth_method": "IP", "ip": "192.0.2.10"}, "DIDs": {"0612345678": {}}}]}})),
    )
    .await;
    assert_eq!(status, 201, "{trunk}");
    let number = store.get(&db("numbers/+3361"), "+33612345678").await.unwrap().unwrap();
    assert_eq!(number["pvt_used_by"], "trunkstore", "{number}");

    // An edit of number_manager reaches the numbers API without a restart.
    let mut edited = number_manager;
    edited["_rev"] = Value::from(rev.as_str());
    edited["default"]["classifiers"]["fr_fixed"] =
        json!({"regex": "^\\+33([1-5]\\d{8})$", "friendly_name": "FR fixed"});
    store.put(&db("system_config"), edited).await.unwrap();
    wait_for("the new classifier in the numbers API", || async {
        let (_, listed) = call(Method::GET, &classifiers, token, None).await;
        listed["data"].get("fr_fixed").is_some()
    })
    .await;
}

/// Search then buy, as Kazoo's clients do it, against `knm_managed`: the account's own pool
/// numbers are found by the account's search (`GET /v2/accounts/{A}/phone_numbers?prefix=`),
/// and activating one found that way buys it: the number lands `in_service` for the account and
/// the pool document is marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_search_finds_its_managed_numbers_and_activate_buys_one() {
    use reqwest::Method;
    let Some((_server, config, url, _dir)) = private_server() else { return };
    let store = CouchStore::new(config).unwrap();
    let account = "4ba0000000000000000000000000000e";
    make_admin_account(&store, account, "buyer-key").await;
    store.ensure_db(&db("numbers/managed")).await.unwrap();
    store
        .put(
            &db("system_config"),
            json!({"_id": "number_manager", "default": {"carrier_modules": ["knm_managed"]}}),
        )
        .await
        .unwrap();
    for number in ["+14152220001", "+14152220002"] {
        store
            .put(
                &db("numbers/managed"),
                json!({"_id": number, "pvt_state": "available", "pvt_account_id": account,
                       "pvt_module_name": "knm_managed"}),
            )
            .await
            .unwrap();
    }

    let daemon = serve(&url);
    let api = |path: &str| format!("{}{path}", daemon.base());
    let token = login(&daemon, "buyer-key").await;
    let token = Some(token.as_str());

    let (status, found) = call(
        Method::GET,
        &api(&format!("/v2/accounts/{account}/phone_numbers?prefix=415222&quantity=5")),
        token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let numbers: Vec<&str> =
        found["data"].as_array().unwrap().iter().map(|r| r["number"].as_str().unwrap()).collect();
    assert_eq!(numbers, ["+14152220001", "+14152220002"], "{found}");
    assert_eq!(found["data"][0]["state"], "discovery", "{found}");

    let (status, bought) = call(
        Method::PUT,
        &api(&format!("/v2/accounts/{account}/phone_numbers/+14152220001/activate")),
        token,
        Some(json!({"data": {}})),
    )
    .await;
    assert_eq!(status, 200, "{bought}");
    assert_eq!(bought["data"]["_read_only"]["state"], "in_service", "{bought}");
    let doc = store.get(&db("numbers/+1415"), "+14152220001").await.unwrap().unwrap();
    assert_eq!(doc["pvt_state"], "in_service", "{doc}");
    assert_eq!(doc["pvt_assigned_to"], account, "{doc}");
    assert_eq!(doc["pvt_module_name"], "knm_managed", "{doc}");
    let pooled = store.get(&db("numbers/managed"), "+14152220001").await.unwrap().unwrap();
    assert_ne!(pooled["pvt_state"], "available", "the pool number is taken: {pooled}");

    // A plain create of the other number found buys it the same way (create_with_state
    // defaults to in_service).
    let (status, created) = call(
        Method::PUT,
        &api(&format!("/v2/accounts/{account}/phone_numbers/+14152220002")),
        token,
        Some(json!({"data": {}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["data"]["_read_only"]["state"], "in_service", "{created}");
    let pooled = store.get(&db("numbers/managed"), "+14152220002").await.unwrap().unwrap();
    assert_eq!(pooled["pvt_state"], "in_service", "{pooled}");
    assert_eq!(pooled["pvt_assigned_to"], account, "{pooled}");

    // Both are the account's: identify and the listing (Kazoo's shape) say so.
    for number in ["+14152220001", "+14152220002"] {
        let (status, who) = call(
            Method::GET,
            &api(&format!("/v2/accounts/{account}/phone_numbers/{number}/identify")),
            token,
            None,
        )
        .await;
        assert_eq!(status, 200, "{who}");
        assert_eq!(who["data"], json!({"account_id": account, "number": number}), "{who}");
    }
    let (status, listed) =
        call(Method::GET, &api(&format!("/v2/accounts/{account}/phone_numbers")), token, None)
            .await;
    assert_eq!(status, 200, "{listed}");
    let row = &listed["data"]["numbers"]["+14152220002"];
    assert_eq!(row["state"], "in_service", "{listed}");
    assert_eq!(row["assigned_to"], account, "{listed}");
    assert!(row["features"].is_array(), "features are names: {listed}");
    assert!(row["features_available"].is_array(), "{listed}");
    assert_eq!(listed["data"]["cascade_quantity"], json!({"did_us": 2}), "{listed}");

    // A number nobody offered is still not found.
    let (status, body) = call(
        Method::PUT,
        &api(&format!("/v2/accounts/{account}/phone_numbers/+14152229999/activate")),
        token,
        Some(json!({"data": {}})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
}

/// Search then buy against an external carrier (Bandwidth2, played by a mock answering Kazoo's
/// own fixture bodies): the global search offers the carrier's numbers, and activating one
/// orders it from the carrier and lands it `in_service` for the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_found_at_a_carrier_is_bought_from_it_by_activate() {
    use reqwest::Method;
    use wiremock::matchers::{body_string_contains, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let Some((_server, config, url, _dir)) = private_server() else { return };
    let store = CouchStore::new(config).unwrap();
    let account = "4ba0000000000000000000000000000f";
    make_admin_account(&store, account, "carrier-key").await;

    let fixture = |name: &str| {
        let file = format!("{}/../../fixtures/numbers/carriers/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let xml = |body: String| ResponseTemplate::new(200).set_body_raw(body, "application/xml");
    let carrier = MockServer::start().await;
    let base = "/api/accounts/e2e";
    Mock::given(method("GET"))
        .and(path(format!("{base}/availableNumbers")))
        .and(query_param("areaCode", "973"))
        .respond_with(xml(fixture("bandwidth2_find_by_npa_no_detail.xml")))
        .mount(&carrier)
        .await;
    // Kazoo's order fixtures, for the number bought here.
    let order = |name: &str| fixture(name).replace("9734096113", "9733705112");
    Mock::given(method("POST"))
        .and(path(format!("{base}/orders")))
        .and(body_string_contains("<TelephoneNumber>9733705112</TelephoneNumber>"))
        .respond_with(xml(order("bandwidth2_buy_a_number.xml")))
        .expect(1)
        .mount(&carrier)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{base}/orders/dc0008ec-07fc-41bf-a3bd-6c6ebf913f1c")))
        .respond_with(xml(order("bandwidth2_check_order.xml")))
        .mount(&carrier)
        .await;
    let system_config = db("system_config");
    store
        .put(
            &system_config,
            json!({"_id": "number_manager", "default": {"carrier_modules": ["knm_bandwidth2"]}}),
        )
        .await
        .unwrap();
    store
        .put(
            &system_config,
            json!({"_id": "number_manager.bandwidth2", "default": {
                "base_url": format!("{}/api", carrier.uri()), "account_id": "e2e",
                "api_username": "bw-user", "api_password": "bw-s3cret",
                "site_id": "1337", "sip_peer": "13337",
                "enable_provisioning": true, "sandbox_provisioning": false,
                "order_poll_interval_ms": 10}}),
        )
        .await
        .unwrap();

    // One daemon searches, another buys: the hits are `discovery` records in the number
    // databases, not one process's memory.
    let searcher = serve(&url);
    let daemon = serve(&url);
    let api = |path: &str| format!("{}{path}", daemon.base());
    let token = login(&daemon, "carrier-key").await;
    let token = Some(token.as_str());
    let _ = login(&searcher, "carrier-key").await;

    let search = |query: &str| format!("{}/v2/phone_numbers?{query}", searcher.base());
    let (status, found) = call(Method::GET, &search("prefix=973&quantity=2"), None, None).await;
    assert_eq!(status, 200, "{found}");
    let rows = found["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{found}");
    assert!(rows.iter().any(|r| r["number"] == "+19733705112"), "{found}");
    assert!(rows.iter().all(|r| r["state"] == "discovery"), "{found}");
    assert!(rows.iter().all(|r| r.as_object().unwrap().len() == 2), "Kazoo's rows: {found}");
    // offset pages through the same answer; country picks the dialling code.
    let (_, all) = call(Method::GET, &search("prefix=973&quantity=10"), None, None).await;
    let (status, paged) =
        call(Method::GET, &search("prefix=973&quantity=1&offset=1&country=US"), None, None).await;
    assert_eq!(status, 200, "{paged}");
    assert_eq!(paged["data"], json!([all["data"][1]]), "{paged} / {all}");
    let (status, refused) = call(Method::GET, &search("prefix=973&country=ZZZ"), None, None).await;
    assert_eq!(status, 400, "{refused}");
    let record = store.get(&db("numbers/+1973"), "+19733705112").await.unwrap().unwrap();
    assert_eq!(record["pvt_state"], "discovery", "{record}");

    let (status, bought) = call(
        Method::PUT,
        &api(&format!("/v2/accounts/{account}/phone_numbers/+19733705112/activate")),
        token,
        Some(json!({"data": {}})),
    )
    .await;
    assert_eq!(status, 200, "{bought}");
    let doc = store.get(&db("numbers/+1973"), "+19733705112").await.unwrap().unwrap();
    assert_eq!(doc["pvt_state"], "in_service", "{doc}");
    assert_eq!(doc["pvt_assigned_to"], account, "{doc}");
    assert_eq!(doc["pvt_module_name"], "knm_bandwidth2", "{doc}");
    assert_eq!(doc["pvt_carrier_data"]["order_name"], "Kazoo-63628571101", "{doc}");
}

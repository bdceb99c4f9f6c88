//! An operator editing carriers in Fauxton, in headless Chromium over WebDriver, against the
//! test server (which serves Fauxton at `/_utils`) and the real daemon.
//!
//! A rule added in Fauxton's document editor and saved routes as soon as the daemon has
//! applied the change (the test waits for it and prints how long it took); a broken document
//! is refused at Save by the `validate_doc_update` function, the validator's message shows on
//! the page, and nothing changes. A screenshot of each step is written to
//! `target/fauxton-screenshots/` for a person to look at.
//!
//! Needs `chromium` and `chromedriver` (Debian: `chromium`, `chromium-driver`): without them
//! the test says so loudly and passes, except under `CI=true`, where it fails.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use testkit::{find_program, http_request, require, CouchServer, Daemon, TestProcess};

const WAIT: Duration = Duration::from_secs(60);
const DOC: &str = "fx-carrier";
const CHROMIUM: &str = "chromium";
const CHROMEDRIVER: &str = "chromedriver";

fn screenshots() -> PathBuf {
    // `CARGO_TARGET_TMPDIR` is `target/tmp`: the screenshots go next to it.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(&tmp).join("fauxton-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    let path = screenshots().join(name);
    std::fs::write(&path, png).expect("write the screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// Switchboard's text answer for `number`.
fn routes(daemon: &Daemon, number: &str) -> (u16, String) {
    let url = format!("{}/v2/stepswitch/route?format=text&To-DID={number}", daemon.base());
    http_request("GET", &url, None).expect("GET /v2/stepswitch/route")
}

/// Polls `check` until it holds (bounded by [`WAIT`]).
async fn until(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        match check() {
            Ok(()) => return,
            Err(last) => assert!(Instant::now() < deadline, "timed out waiting for {what}: {last}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stored(couch: &str) -> Value {
    let (status, body) = http_request("GET", &format!("{couch}/offnet/{DOC}"), None).expect("GET");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("a document")
}

/// The document in Fauxton's editor, once the page has loaded revision `rev`.
async fn editor_doc(client: &Client, rev: &str) -> Value {
    let script = "var e = document.getElementById('doc-editor');
                  return e && e.env && e.env.editor ? e.env.editor.getValue() : null;";
    let deadline = Instant::now() + WAIT;
    loop {
        let text = client.execute(script, Vec::new()).await.expect("read the editor");
        if let Some(doc) = text.as_str().and_then(|t| serde_json::from_str::<Value>(t).ok()) {
            if doc["_rev"] == rev {
                return doc;
            }
        }
        assert!(Instant::now() < deadline, "Fauxton's editor never showed {DOC} at {rev}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replaces the editor's text with `doc` and presses Save.
async fn save(client: &Client, doc: &Value) {
    let text = serde_json::to_string_pretty(doc).expect("JSON");
    let script = "document.getElementById('doc-editor').env.editor.setValue(arguments[0], -1);";
    client.execute(script, vec![json!(text)]).await.expect("set the editor");
    let button = client
        .find(Locator::Css("#doc-editor-actions-panel button.save-doc"))
        .await
        .expect("the Save button");
    button.click().await.expect("click Save");
}

/// Starts chromedriver on a free port and opens a headless Chromium session.
async fn browser() -> (TestProcess, Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut cmd = Command::new(CHROMEDRIVER);
    cmd.arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null());
    let driver = TestProcess::spawn(cmd);
    let url = format!("http://127.0.0.1:{port}");
    // chromedriver keeps connections open: asked with reqwest, which reads by length.
    let deadline = Instant::now() + WAIT;
    loop {
        match reqwest::get(format!("{url}/status")).await {
            Ok(response) if response.status().is_success() => break,
            other => assert!(Instant::now() < deadline, "chromedriver never ready: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                        "--window-size=1280,900"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&url)
        .await
        .expect("a WebDriver session");
    (driver, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fauxton_edits_route_and_refused_saves_change_nothing() {
    let found = [
        (CHROMIUM, find_program(CHROMIUM).is_some()),
        (CHROMEDRIVER, find_program(CHROMEDRIVER).is_some()),
    ];
    if !require("e2e_fauxton", &found, "apt-get install -y chromium chromium-driver") {
        return;
    }
    let server = CouchServer::shared();
    if server.credentials().is_some() {
        eprintln!("e2e_fauxton: the test server needs a login; Fauxton is driven without one");
        return;
    }
    let couch = server.url().to_owned();
    let _ = http_request("PUT", &format!("{couch}/offnet"), None);
    let carrier = json!({
        "_id": DOC, "pvt_type": "resource", "name": "Fauxton carrier", "enabled": true,
        "rules": ["^\\+1(212\\d{7})$"], "gateways": [{"server": "fx.example.com"}],
    });
    let put = http_request("PUT", &format!("{couch}/offnet/{DOC}"), Some(&carrier.to_string()));
    assert!(matches!(put, Ok((201, _))), "{put:?}");
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["serve", "--couch-url", &couch, "--listen", "127.0.0.1:0"],
        &[],
    );
    // The daemon deploys the validator to `offnet` at start.
    let validator = format!("{couch}/offnet/_design/switchboard_resources");
    until("the validator", || match http_request("GET", &validator, None) {
        Ok((200, _)) => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    until("the first rule to route", || match routes(&daemon, "+12125550100") {
        (200, body) if body == "sip:2125550100@fx.example.com\n" => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    assert_eq!(routes(&daemon, "+16465550100").0, 404);

    let (mut driver, client) = browser().await;
    let page = format!("{couch}/_utils/#/database/offnet/{DOC}");

    // 1. A rule added and saved in Fauxton routes.
    client.goto(&page).await.expect("open the document");
    let rev = stored(&couch)["_rev"].as_str().expect("a revision").to_owned();
    let mut doc = editor_doc(&client, &rev).await;
    screenshot(&client, "1-document-open.png").await;
    doc["rules"].as_array_mut().expect("rules").push(json!("^\\+1(646\\d{7})$"));
    save(&client, &doc).await;
    let saved_at = Instant::now();
    until("the new rule to route", || match routes(&daemon, "+16465550100") {
        (200, body) if body == "sip:6465550100@fx.example.com\n" => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    eprintln!("Fauxton Save → routed in {:?}", saved_at.elapsed());
    screenshot(&client, "2-rule-saved-and-routed.png").await;

    // 2. A broken document is refused at Save, with the validator's message on the page.
    client.goto(&page).await.expect("open the document again");
    let rev = stored(&couch)["_rev"].as_str().expect("a revision").to_owned();
    let mut broken = editor_doc(&client, &rev).await;
    broken["rules"] = json!("^\\+1(718\\d{7})$");
    save(&client, &broken).await;
    let deadline = Instant::now() + WAIT;
    let message = loop {
        let text = match client.find(Locator::Css("#global-notifications")).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains("Save failed") {
            break text;
        }
        assert!(Instant::now() < deadline, "no refusal shown; last notifications {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(message.contains("rules must be an array"), "{message}");
    // The notification fades in: let it settle for the person looking at the screenshot.
    tokio::time::sleep(Duration::from_millis(600)).await;
    screenshot(&client, "3-broken-document-refused.png").await;
    assert_eq!(stored(&couch)["_rev"], rev, "the refused save changed the document");
    assert_eq!(routes(&daemon, "+17185550100").0, 404);
    assert_eq!(routes(&daemon, "+16465550100"), (200, "sip:6465550100@fx.example.com\n".into()));

    client.close().await.expect("end the browser session");
    driver.stop();
}

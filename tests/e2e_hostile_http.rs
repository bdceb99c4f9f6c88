//! End-to-end tests of the daemon under hostile HTTP clients: the real binary against the
//! CouchDB-compatible test server. Contention on one number is a 409, never a 500, and loses no
//! acknowledged write; a pin (`If-Match`, a body's `_rev`) that cannot be read is a 400 and a
//! stale one a 409; over-long ids and URIs are client errors with the Crossbar JSON body; slow
//! or silent connections are closed after the header timeout; a declared oversize body is a 413
//! before it is sent; connections over the cap are refused with a 503; `identify` does not
//! reveal who owns another tree's number.
//!
//! One daemon (small timeouts) serves most tests; the connection-cap test starts its own. Raw
//! TCP is used where the test needs to misbehave below HTTP. Waits are bounded reads, never
//! sleep-then-assert.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use testkit::kazoo::make_account;
use testkit::{CouchServer, Daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(60);
/// The shared daemon's header read timeout (also its keep-alive idle timeout).
const HEADER_TIMEOUT: &str = "2s";
/// The shared daemon's body read timeout.
const BODY_TIMEOUT: &str = "2s";
/// A generous bound on any single read, so that a regression hangs no longer than this.
const READ_BOUND: Duration = Duration::from_secs(30);

struct World {
    couch: String,
    /// Kept for the life of the test process (the daemon dies with it).
    _daemon: std::sync::Mutex<Daemon>,
    base: String,
    root_key: String,
    root_id: String,
}

/// 32 lowercase hex characters, from the OS-seeded hasher.
fn hex_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    while out.len() < 32 {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(32);
    out
}

fn couch_url() -> String {
    CouchServer::shared().url_with_credentials()
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let couch = couch_url();
        let root_id = hex_id();
        let root_key = format!("root-{}", hex_id());
        make_account(&couch, &root_id, &root_key, &[], true);
        let daemon = Daemon::start(
            env!("CARGO_BIN_EXE_switchboard"),
            &[
                "serve",
                "--couch-url",
                &couch,
                "--listen",
                "127.0.0.1:0",
                "--header-read-timeout",
                HEADER_TIMEOUT,
                "--body-read-timeout",
                BODY_TIMEOUT,
                "--max-body-size",
                "64KiB",
                "--max-connections",
                "256",
            ],
            &[],
        );
        let base = daemon.base().to_owned();
        World { couch, _daemon: std::sync::Mutex::new(daemon), base, root_key, root_id }
    })
}

fn url(path: &str) -> String {
    format!("{}{path}", world().base)
}

fn addr() -> String {
    world().base.trim_start_matches("http://").to_owned()
}

async fn call(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, reqwest::header::HeaderValue)],
) -> (StatusCode, Value) {
    // One client, never reusing a connection: the daemon closes idle connections after 2 s,
    // and a pooled one could be reused just as it closes.
    static CLIENT: OnceLock<Client> = OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        Client::builder().pool_max_idle_per_host(0).build().expect("an HTTP client")
    });
    let mut req = client.request(method, url);
    if let Some(token) = token {
        req = req.header("X-Auth-Token", token);
    }
    for (k, v) in headers {
        req = req.header(*k, v.clone());
    }
    if let Some(body) = body {
        req = req.header("Content-Type", "application/json").body(body.to_string());
    }
    let resp = req.send().await.expect("request to switchboard");
    let status = resp.status();
    let text = resp.text().await.expect("response body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn login(key: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = call(
            Method::PUT,
            &url("/v2/api_auth"),
            None,
            Some(json!({"data": {"api_key": key}})),
            &[],
        )
        .await;
        if status == StatusCode::CREATED {
            return body["auth_token"].as_str().expect("a token").to_owned();
        }
        assert!(Instant::now() < deadline, "login never succeeded: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A new account under root, and its token.
async fn account() -> (String, String) {
    let w = world();
    let id = hex_id();
    let key = format!("key-{}", hex_id());
    make_account(&w.couch, &id, &key, &[&w.root_id], false);
    (id.clone(), login(&key).await)
}

fn random_number() -> String {
    let n = u64::from_str_radix(&hex_id()[..12], 16).unwrap_or(7);
    format!("+1555{:07}", n % 10_000_000)
}

/// Root creates `number` for `account` (in service); returns its revision.
async fn create_number(account: &str, number: &str) -> String {
    let root = login(&world().root_key).await;
    let (status, body) = call(
        Method::PUT,
        &url(&format!("/v2/accounts/{account}/phone_numbers/{number}")),
        Some(&root),
        Some(json!({"data": {}})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["revision"].as_str().expect("a revision").to_owned()
}

fn assert_json_error(status: StatusCode, body: &Value) {
    assert_eq!(body["status"], "error", "{status}: {body}");
    assert_eq!(body["error"], status.as_u16().to_string(), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["request_id"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

/// One HTTP/1.1 reply read off a raw connection: status, head, body (by Content-Length).
async fn read_reply(conn: &mut TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(READ_BOUND, conn.read(&mut chunk))
            .await
            .expect("a reply within the bound")
            .expect("read");
        assert!(n > 0, "the connection closed before a reply: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head[9..12].parse().expect("a status code");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(READ_BOUND, conn.read(&mut chunk))
            .await
            .expect("the body within the bound")
            .expect("read");
        assert!(n > 0, "the connection closed inside the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    (status, head, body)
}

/// Waits (bounded) for the server to close `conn`: EOF or a reset, with nothing else sent.
async fn assert_closed_by_server(conn: &mut TcpStream) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(READ_BOUND, conn.read_to_end(&mut rest)).await;
    match read {
        Ok(Ok(_)) => assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest)),
        Ok(Err(err)) => assert!(
            matches!(err.kind(), std::io::ErrorKind::ConnectionReset),
            "unexpected error: {err}"
        ),
        Err(_) => panic!("the server kept the connection open past {READ_BOUND:?}"),
    }
}

/// 50 concurrent PATCHes of one number: none is a 5xx; every 2xx's field is in the final
/// document (a 409 is a clean refusal the client may retry).
#[tokio::test]
async fn concurrent_patches_of_one_number_are_stored_or_409() {
    let (a, token) = account().await;
    let number = random_number();
    create_number(&a, &number).await;
    let one = url(&format!("/v2/accounts/{a}/phone_numbers/{number}"));
    let patches = (0..50).map(|i| {
        let (one, token) = (one.clone(), token.clone());
        tokio::spawn(async move {
            let body = json!({"data": {format!("field_{i}"): i}});
            (i, call(Method::PATCH, &one, Some(&token), Some(body), &[]).await)
        })
    });
    let mut stored = Vec::new();
    for patch in futures::future::join_all(patches).await {
        let (i, (status, body)) = patch.expect("the PATCH task");
        assert!(!status.is_server_error(), "PATCH {i}: {status} {body}");
        match status {
            StatusCode::OK => stored.push(i),
            StatusCode::CONFLICT => {
                assert_json_error(status, &body);
                assert_eq!(body["message"], "datastore_conflict", "{body}");
            }
            other => panic!("PATCH {i}: unexpected {other} {body}"),
        }
    }
    assert!(!stored.is_empty(), "no PATCH succeeded");
    println!("{} of 50 concurrent PATCHes stored, the others answered 409", stored.len());
    let (status, body) = call(Method::GET, &one, Some(&token), None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for i in stored {
        assert_eq!(body["data"][format!("field_{i}")], i, "PATCH {i} was acknowledged: {body}");
    }
}

/// `If-Match` with a byte that is not text: 400, nothing written; a stale `_rev` in the body (or
/// in `If-Match`): 409; the current one: 200. For resources and for numbers.
#[tokio::test]
async fn unreadable_if_match_is_a_400_and_a_stale_rev_a_409() {
    use reqwest::header::HeaderValue;
    let (a, token) = account().await;
    let resources = url(&format!("/v2/accounts/{a}/resources"));
    let body = json!({"data": {"name": "r", "rules": ["^\\+1(\\d{10})$"], "gateways": [{"server": "gw.example.com"}]}});
    let (status, created) = call(Method::PUT, &resources, Some(&token), Some(body), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let one = format!("{resources}/{}", created["data"]["id"].as_str().expect("an id"));
    let first = created["revision"].as_str().expect("a revision").to_owned();
    let (status, body) = call(
        Method::PATCH,
        &one,
        Some(&token),
        Some(json!({"data": {"name": "r2"}})),
        &[("If-Match", HeaderValue::from_str(&first).unwrap())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = body["revision"].as_str().unwrap().to_owned();

    // Byte 0xFF first: a legal header byte (obs-text) that is not text.
    let unreadable = HeaderValue::from_bytes(&[&[0xff][..], first.as_bytes()].concat()).unwrap();
    for method in [Method::PATCH, Method::POST, Method::DELETE] {
        let (status, body) = call(
            method.clone(),
            &one,
            Some(&token),
            Some(json!({"data": {"name": "stale", "gateways": [{"server": "x.example.com"}]}})),
            &[("If-Match", unreadable.clone())],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method}: {body}");
        assert_json_error(status, &body);
    }
    let (status, body) = call(
        Method::PATCH,
        &one,
        Some(&token),
        Some(json!({"data": {"name": "stale", "_rev": first}})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_json_error(status, &body);
    let (status, body) = call(Method::GET, &one, Some(&token), None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["name"], "r2", "nothing stale was written: {body}");
    assert_eq!(body["revision"], second.as_str());
    let (status, body) = call(
        Method::PATCH,
        &one,
        Some(&token),
        Some(json!({"data": {"name": "r3", "_rev": second}})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Numbers: the same pins on the number document's revision.
    let number = random_number();
    let rev = create_number(&a, &number).await;
    let n = url(&format!("/v2/accounts/{a}/phone_numbers/{number}"));
    let (status, body) = call(
        Method::PATCH,
        &n,
        Some(&token),
        Some(json!({"data": {"x": 1}})),
        &[("If-Match", HeaderValue::from_bytes(&[&[0xff][..], rev.as_bytes()].concat()).unwrap())],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_json_error(status, &body);
    let (status, body) =
        call(Method::PATCH, &n, Some(&token), Some(json!({"data": {"x": 2, "_rev": rev}})), &[])
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        call(Method::PATCH, &n, Some(&token), Some(json!({"data": {"x": 3, "_rev": rev}})), &[])
            .await;
    assert_eq!(status, StatusCode::CONFLICT, "the revision moved on: {body}");
    assert_json_error(status, &body);
    let (_, body) = call(Method::GET, &n, Some(&token), None, &[]).await;
    assert_eq!(body["data"]["x"], 2, "{body}");
}

/// A 10,000-character id (resource, number, account) is a 400 or 414 with the JSON error body,
/// never a 503; so is a URI longer than the HTTP parser reads, and a request it cannot parse.
#[tokio::test]
async fn over_long_ids_and_malformed_requests_get_json_client_errors() {
    let (a, token) = account().await;
    let root = login(&world().root_key).await;
    let long = "a".repeat(10_000);
    for (path, token) in [
        (format!("/v2/accounts/{a}/resources/{long}"), &token),
        (format!("/v2/resources/{long}"), &root),
        (format!("/v2/accounts/{a}/phone_numbers/{long}"), &token),
        (format!("/v2/accounts/{long}/resources"), &token),
    ] {
        for method in [Method::GET, Method::PATCH, Method::DELETE] {
            let body = (method == Method::PATCH).then(|| json!({"data": {"name": "x"}}));
            let (status, reply) = call(method.clone(), &url(&path), Some(token), body, &[]).await;
            assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::URI_TOO_LONG,
                "{method} {}…: {status} {reply}",
                &path[..40]
            );
            assert_json_error(status, &reply);
        }
    }
    // An id just long enough to pass the URI limit but not the id limit.
    let (status, reply) = call(
        Method::GET,
        &url(&format!("/v2/accounts/{a}/resources/{}", "b".repeat(600))),
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_json_error(status, &reply);

    // Below the router: a request line longer than hyper reads, and one it cannot parse.
    for (request, code) in [
        (format!("GET /v2/{} HTTP/1.1\r\nHost: x\r\n\r\n", "c".repeat(70_000)), 414),
        ("GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".to_owned(), 400),
    ] {
        let mut conn = TcpStream::connect(addr()).await.expect("connect");
        conn.write_all(request.as_bytes()).await.expect("send");
        let (status, _, body) = read_reply(&mut conn).await;
        assert_eq!(status, code, "{body}");
        let body: Value = serde_json::from_str(&body).expect("a JSON body");
        assert_json_error(StatusCode::from_u16(code).unwrap(), &body);
    }
    // 405 from the router.
    let (status, reply) = call(Method::DELETE, &url("/v2/api_auth"), None, None, &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{reply}");
    assert_json_error(status, &reply);
}

/// Connections that send nothing, half a header, or stay idle after a reply are closed after
/// the header timeout; a body that stops arriving is a 408.
#[tokio::test]
async fn slow_partial_and_idle_connections_are_closed() {
    let _ = world();
    let mut silent = TcpStream::connect(addr()).await.expect("connect");
    let mut partial = TcpStream::connect(addr()).await.expect("connect");
    partial.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.expect("send");
    let mut idle = TcpStream::connect(addr()).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
    let (status, _, _) = read_reply(&mut idle).await;
    assert!(status == 200 || status == 503, "{status}");
    for conn in [&mut silent, &mut partial, &mut idle] {
        assert_closed_by_server(conn).await;
    }

    // A body that stops arriving: 408 with the JSON body, then the connection closes.
    let (a, token) = account().await;
    let mut slow_body = TcpStream::connect(addr()).await.expect("connect");
    let head = format!(
        "PUT /v2/accounts/{a}/resources HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"data\":"
    );
    slow_body.write_all(head.as_bytes()).await.expect("send");
    let (status, _, body) = read_reply(&mut slow_body).await;
    assert_eq!(status, 408, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_json_error(StatusCode::REQUEST_TIMEOUT, &body);
    assert_closed_by_server(&mut slow_body).await;
}

/// `Content-Length: 2147483648` with no body: 413 with the JSON body at once (the reply comes
/// without a byte of the body being sent), and the connection closes.
#[tokio::test]
async fn a_declared_oversize_body_is_a_413_before_it_is_sent() {
    let (a, token) = account().await;
    let mut conn = TcpStream::connect(addr()).await.expect("connect");
    let head = format!(
        "PUT /v2/accounts/{a}/resources HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: 2147483648\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.expect("send");
    let (status, head, body) = read_reply(&mut conn).await;
    assert_eq!(status, 413, "{head}{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_json_error(StatusCode::PAYLOAD_TOO_LARGE, &body);
    assert_closed_by_server(&mut conn).await;
}

/// With `--max-connections 2`, a third connection is answered 503 `too_many_connections` and
/// closed (refused, not queued); once one of the two closes, connections are served again.
#[tokio::test]
async fn connections_over_the_cap_are_refused_with_a_503() {
    let data = tempfile::tempdir().expect("a temp dir");
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &[
            "serve",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--no-demo",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "2",
            "--header-read-timeout",
            "60s",
        ],
        &[],
    );
    let addr = daemon.base().trim_start_matches("http://").to_owned();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(&addr).await.expect("connect");
        conn.write_all(request).await.expect("send");
        let (status, _, _) = read_reply(&mut conn).await;
        assert!(status == 200 || status == 503, "{status}");
        held.push(conn);
    }
    let mut third = TcpStream::connect(&addr).await.expect("connect");
    third.write_all(request).await.expect("send");
    let (status, head, body) = read_reply(&mut third).await;
    assert_eq!(status, 503, "{head}{body}");
    assert!(head.to_ascii_lowercase().contains("retry-after: 1"), "{head}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_json_error(StatusCode::SERVICE_UNAVAILABLE, &body);
    assert_eq!(body["message"], "too_many_connections");
    assert_closed_by_server(&mut third).await;

    drop(held.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let mut conn = TcpStream::connect(&addr).await.expect("connect");
        conn.write_all(request).await.expect("send");
        let (_, _, body) = read_reply(&mut conn).await;
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if body["message"] != "too_many_connections" {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `identify` of a number owned by another tree answers like a number that does not exist; the
/// owner and the superduper admin see the owner.
#[tokio::test]
async fn identify_of_a_foreign_number_hides_the_owner() {
    let (a, a_token) = account().await;
    let (b, b_token) = account().await;
    let number = random_number();
    create_number(&b, &number).await;
    let (status, body) = call(
        Method::GET,
        &url(&format!("/v2/accounts/{a}/phone_numbers/{number}/identify")),
        Some(&a_token),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_json_error(status, &body);
    assert!(!body.to_string().contains(&b), "the owner leaked: {body}");
    let missing = random_number();
    let (_, unknown) = call(
        Method::GET,
        &url(&format!("/v2/accounts/{a}/phone_numbers/{missing}/identify")),
        Some(&a_token),
        None,
        &[],
    )
    .await;
    assert_eq!(
        body["data"], unknown["data"],
        "indistinguishable from a number that does not exist"
    );

    let (status, body) = call(
        Method::GET,
        &url(&format!("/v2/accounts/{b}/phone_numbers/{number}/identify")),
        Some(&b_token),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["account_id"], b.as_str());
    let root = login(&world().root_key).await;
    let root_id = &world().root_id;
    let (status, body) = call(
        Method::GET,
        &url(&format!("/v2/accounts/{root_id}/phone_numbers/{number}/identify")),
        Some(&root),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["account_id"], b.as_str());
}
